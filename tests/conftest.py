from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# A run that takes seconds: the quick experiment, no progress bars.
QUICK = ["experiment=quick", "progress=false"]


def run_cli(
    *args: str, script: str = "run.py", timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run a project command in a fresh Python process, as a user would."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,  # a failing debug job must not wait on pdb
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def quick_run(tmp_path: Path):
    """Run the quick experiment into a fresh directory; returns (completed process, run dir)."""

    def _run(*extra: str) -> tuple[subprocess.CompletedProcess, Path]:
        run_dir = tmp_path / "run"
        proc = run_cli(*QUICK, f"hydra.run.dir={run_dir}", *extra)
        return proc, run_dir

    return _run
