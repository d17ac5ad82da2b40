# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
# CPU wheel by default; on a GPU machine: make install TORCH=torch  (or pip install torch first)
TORCH  ?= torch==2.13.0

.PHONY: install run test test-fast lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) run.py $(ARGS)

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The edit-test loop: every test not marked slow (no SLURM, no SIGKILL/resume matrix, no end-to-end training).
test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
