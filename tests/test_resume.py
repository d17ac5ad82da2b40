"""Kill a real run at several points (SIGKILL, no clean-up), resume it, and compare with a run never killed."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import QUICK, REPO, kill_and_resume, outcome, run_cli, uninterrupted_outcome

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("resume")]  # one worker: one reference run

# Checkpoints every 10 steps, so that kills land inside training stages too.
ARGS = [*QUICK, "training.checkpoint_every=10"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    return uninterrupted_outcome(tmp_path_factory.mktemp("reference") / "run", ARGS)


@pytest.mark.parametrize(
    "point",
    [
        "checkpoint:base.voter0:40",  # inside base training
        "rename:latest.pt",  # while the first checkpoint is being written
        "marker:label.round001",  # round data written, marker not
        "rename:round_002.jsonl",  # while round data is being written
        "checkpoint:train.round002.voter0:10",  # inside a round's training
        "marker:eval.round001",  # evaluation done, marker not
    ],
)
def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path, reference, point):
    run_dir = tmp_path / "run"
    kill_and_resume(run_dir, point, ARGS)
    assert outcome(run_dir) == reference


def test_external_kill_during_training_then_resume(tmp_path, reference):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *ARGS, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = run_dir / "checkpoints" / "voter0" / "latest.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists()
    resumed = run_cli(*ARGS, f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert outcome(run_dir) == reference


def test_resuming_a_finished_run_recomputes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(*ARGS, f"hydra.run.dir={run_dir}").returncode == 0
    written = [p for p in run_dir.rglob("*") if p.is_file() and p.parent.name in ("done", "data", "voter0")]
    before = {p: p.stat().st_mtime_ns for p in written}
    again = run_cli(*ARGS, f"resume={run_dir}")
    assert again.returncode == 0, again.stderr[-3000:]
    after = {p: p.stat().st_mtime_ns for p in before}
    assert before == after


def test_resume_can_add_rounds(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(*ARGS, f"hydra.run.dir={run_dir}").returncode == 0
    more = run_cli(*ARGS, f"resume={run_dir}", "si.rounds=3")
    assert more.returncode == 0, more.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["targets"] for r in summary["rounds"][1:]] == [[11], [12], [13]]


def test_resume_with_a_result_changing_config_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli(*ARGS, "si.rounds=0", f"hydra.run.dir={run_dir}").returncode == 0
    refused = run_cli(*ARGS, f"resume={run_dir}", "training.optim.lr=0.5")
    assert refused.returncode != 0
    assert "resuming would change results" in refused.stderr and "training.optim.lr" in refused.stderr
