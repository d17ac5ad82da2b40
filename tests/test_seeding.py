"""With dropout on, an uninterrupted run, a run killed and resumed (between stages and inside one) and a
sweep whose stages run as separate processes compute the same thing: every stage seeds torch from
(seed, stage), whatever ran before it in the process."""

import signal
import subprocess
import sys

import pytest
from conftest import QUICK, REPO, outcome, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("seeding")]  # one worker: one reference run

ARGS = [*QUICK, "model.dropout=0.2", "training.checkpoint_every=10"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    proc = run_cli(*ARGS, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return outcome(run_dir)


@pytest.mark.parametrize("point", ["marker:label.round001", "checkpoint:train.round002.voter0:10"])
def test_dropout_run_killed_and_resumed_matches(tmp_path, reference, point):
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tests" / "crash_run.py"), point, *ARGS, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed at {point}: {proc.stderr[-2000:]}"
    resumed = run_cli(*ARGS, f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert outcome(run_dir) == reference


def test_dropout_sweep_of_separate_processes_matches(tmp_path, reference):
    sweep = tmp_path / "sweep"
    proc = run_cli(*ARGS, "--cluster", "local", "--dir", str(sweep), script="sweep.py", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert outcome(sweep / "0") == reference
