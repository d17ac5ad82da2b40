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


def outcome(run_dir: Path) -> dict:
    """What a run computed: per-round accuracies, kept labels and the final weights (not timings or the
    logged loss, whose averaging window a resume cuts short)."""
    import torch

    summary = json.loads((run_dir / "summary.json").read_text())
    weights = torch.load(run_dir / "checkpoints" / "voter0" / "latest.pt", weights_only=False)["model"]
    return {
        "rounds": [(r["round"], r["targets"], r["kept"], r["accuracy"]) for r in summary["rounds"]],
        "data": {p.name: read_jsonl(p) for p in sorted((run_dir / "data").glob("*.jsonl"))},
        "weights": {name: tensor.tolist() for name, tensor in weights.items()},
    }


@pytest.fixture
def quick_run(tmp_path: Path):
    """Run the quick experiment into a fresh directory; returns (completed process, run dir)."""

    def _run(*extra: str) -> tuple[subprocess.CompletedProcess, Path]:
        run_dir = tmp_path / "run"
        proc = run_cli(*QUICK, f"hydra.run.dir={run_dir}", *extra)
        return proc, run_dir

    return _run
