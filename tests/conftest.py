from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A run that takes seconds: the quick experiment, no progress bars.
QUICK = ["experiment=quick", "progress=false"]
# A tiny sweep pipeline: 2 voters, one torch thread per job (the 2-core CI machine runs several jobs at once).
TINY = ["experiment=quick", "si.filters.voters=2", "training.threads=1"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The SLURM tests first: they mostly wait on the cluster, one worker takes them and the other worker fills
    that time, instead of the suite ending on them."""
    items.sort(key=lambda item: item.get_closest_marker("slurm") is None)


# The user that tests of permissions run commands as when the tests run as root (whom no chmod stops): nobody.
USER_ID = 65534


def unprivileged() -> list[str]:
    """A command prefix that runs a process as a user other than root; none when the tests run as one. The process
    keeps the right to read and search any folder (CAP_DAC_READ_SEARCH: this interpreter may live where only root
    can look), not the right to write through permissions."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("the tests run as root, and setpriv (util-linux), which runs a command as another user, is absent")
    caps = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return ["setpriv", f"--reuid={USER_ID}", f"--regid={USER_ID}", "--clear-groups", *caps, "--"]


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A folder owned by the user that `run_cli(..., as_user=True)` runs as."""
    folder = tmp_path / "user"
    folder.mkdir()
    if os.geteuid() == 0:
        os.chown(folder, USER_ID, USER_ID)
    return folder


def give_to_user(path: Path) -> None:
    """`path` and everything under it owned by the user of `user_dir`."""
    if os.geteuid() == 0:
        for p in [path, *path.rglob("*")]:
            os.chown(p, USER_ID, USER_ID)


def read_only(path: Path) -> None:
    """chmod a-w on `path` and everything under it."""
    for p in [path, *path.rglob("*")]:
        p.chmod(p.stat().st_mode & ~0o222)


def run_cli(
    *args: str, script: str = "run.py", timeout: float = 300, env: dict | None = None, as_user: bool = False
) -> subprocess.CompletedProcess:
    """Run a project command in a fresh Python process, as a user would (`as_user`: one who is not root)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    prefix = unprivileged() if as_user else []
    if prefix:  # matplotlib keeps a cache in the home folder, which is not this user's
        full_env["MPLCONFIGDIR"] = f"/tmp/selfimprove-tests-mpl-{USER_ID}"
    return subprocess.run(
        [*prefix, sys.executable, str(REPO / script), *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,  # a failing debug job must not wait on pdb
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def outcome(run_dir: Path) -> dict:
    """What a run computed: per-round accuracies, kept labels and the final weights (not timings, nor the
    log: test_resume compares that too)."""
    import torch

    summary = json.loads((run_dir / "summary.json").read_text())
    weights = torch.load(run_dir / "checkpoints" / "voter0" / "latest.pt", weights_only=False)["model"]
    return {
        "rounds": [(r["round"], r["targets"], r["kept"], r["accuracy"]) for r in summary["rounds"]],
        "data": {p.name: read_jsonl(p) for p in sorted((run_dir / "data").glob("*.jsonl"))},
        "weights": {name: tensor.tolist() for name, tensor in weights.items()},
    }


def finished_run(run_dir: Path, *args: str) -> Path:
    """run.py with `args`, run to the end in `run_dir`."""
    proc = run_cli(*args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def uninterrupted_outcome(run_dir: Path, args: list[str]) -> dict:
    """`outcome` of run.py with `args`, run to the end in `run_dir`."""
    return outcome(finished_run(run_dir, *args))


def kill_and_resume(run_dir: Path, point: str, args: list[str]) -> None:
    """Run run.py with `args` until tests/crash_run.py SIGKILLs it at `point`, then resume it to the end."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "crash_run.py"), point, *args, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed at {point}: {proc.stderr[-2000:]}"
    resumed = run_cli(*args, f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]


# The tests that use the session's shared runs below: one xdist worker, so that each run is made once.
SHARED_RUNS = pytest.mark.xdist_group("shared_runs")


@pytest.fixture(scope="session")
def kept_run(tmp_path_factory) -> Path:
    """The quick experiment (2 rounds) with every round's checkpoint kept, round 0 (the base) included.
    Read-only: a test that changes files works on a copy (`copy_run`)."""
    return finished_run(tmp_path_factory.mktemp("kept") / "run", *QUICK, "si.keep_round_checkpoints=true")


@pytest.fixture(scope="session")
def base_run(tmp_path_factory) -> Path:
    """The quick experiment's base stage alone (si.rounds=0), finished. Read-only, like kept_run."""
    return finished_run(tmp_path_factory.mktemp("base") / "run", *QUICK, "si.rounds=0")


def copy_run(run_dir: Path, to: Path) -> Path:
    """A copy of a finished run to change: resuming it continues the same run (run.json, markers, checkpoints)."""
    shutil.copytree(run_dir, to)
    return to


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny random Llama and its own tokenizer saved as a model directory (tests/tiny_llama.py): what
    model=hf runs on here, offline."""
    from tiny_llama import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def quick_run(tmp_path: Path):
    """Run the quick experiment into a fresh directory; returns (completed process, run dir)."""

    def _run(*extra: str) -> tuple[subprocess.CompletedProcess, Path]:
        run_dir = tmp_path / "run"
        proc = run_cli(*QUICK, f"hydra.run.dir={run_dir}", *extra)
        return proc, run_dir

    return _run


# -- a real SLURM cluster (scripts/slurm-local.sh) ---------------------------------------------------
# The marks of a test (or a parameter) that runs on it: one xdist worker runs them all, as they share it.
ON_SLURM = [pytest.mark.slurm, pytest.mark.xdist_group("slurm")]


def slurm_local(command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "scripts" / "slurm-local.sh"), command], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def slurm():
    """The project's one-node cluster: used when healthy, else started (and then stopped afterwards)."""
    if slurm_local("status").returncode == 0:
        yield
        return
    started = slurm_local("start")
    if started.returncode != 0:
        why = (started.stderr or started.stdout).strip().splitlines()[-1:] or ["no output"]
        if shutil.which("sbatch") is None:
            pytest.skip(f"SLURM (sbatch) cannot be installed here: {why[0]}")
        pytest.fail(f"scripts/slurm-local.sh start failed:\n{started.stdout}\n{started.stderr}")
    yield
    slurm_local("stop")


@pytest.fixture
def cluster(request: pytest.FixtureRequest) -> str:
    """The cluster a scenario runs on, its parameter (indirect); for "slurm", the real one-node cluster."""
    if request.param == "slurm":
        request.getfixturevalue("slurm")
    return request.param


def sacct(ids: list[str], *fields: str, duplicates: bool = False, settle: float = 60) -> list[dict[str, str]]:
    """One row per job (array task), as sacct records it once no job is still running: a job's end reaches
    accounting a moment after its result file (which is all submitit and Hydra wait for)."""
    names = ["JobID", "State", *fields]
    command = ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", ",".join(names)]
    deadline = time.time() + settle
    while True:
        out = subprocess.run(command + (["-D"] if duplicates else []), capture_output=True, text=True, check=True)
        rows = [dict(zip(names, line.split("|"), strict=True)) for line in out.stdout.splitlines()]
        if time.time() > deadline or not any(r["State"] in ("PENDING", "RUNNING", "COMPLETING") for r in rows):
            return rows


def queued(job_id: str) -> str:
    """squeue's state and reason for a job; empty once it has left the queue."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True)
    return out.stdout.strip()
