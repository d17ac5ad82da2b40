"""Kill a real run at several points (SIGKILL, no clean-up), resume it, and compare with a run never killed;
run the same experiment as a sweep whose stages are separate processes, and compare again. Dropout is on, so
equality needs every stage to seed torch from (seed, stage), whatever ran before it in the process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import (
    QUICK,
    REPO,
    SHARED_RUNS,
    copy_run,
    kill_and_resume,
    outcome,
    read_jsonl,
    run_cli,
    uninterrupted_outcome,
)

import selfimprove
from selfimprove.loop import runlock

pytestmark = pytest.mark.slow

# Checkpoints every 10 steps, so that kills land inside training stages too; dropout draws from torch's RNG.
ARGS = [*QUICK, "model.dropout=0.2", "training.checkpoint_every=10"]


@pytest.fixture(scope="module")  # once per xdist worker that runs a test needing it: the tests spread over both
def reference(tmp_path_factory) -> dict:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    return {**uninterrupted_outcome(run_dir, ARGS), "logged": logged(run_dir)}


def logged(run_dir) -> list[dict]:
    """metrics.jsonl without what depends on the clock."""
    return [
        {k: v for k, v in record.items() if k not in ("time", "seconds", "tokens_per_s")}
        for record in read_jsonl(run_dir / "metrics.jsonl")
    ]


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
    # The same results, and the same log: every event once, the same losses (a training stage's loss window
    # carries over its checkpoint), final_loss included.
    assert {**outcome(run_dir), "logged": logged(run_dir)} == reference


def test_sweep_of_separate_processes_matches(tmp_path, reference):
    sweep = tmp_path / "sweep"
    proc = run_cli(*ARGS, "--cluster", "local", "--dir", str(sweep), script="sweep.py", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert outcome(sweep / "0") == {k: v for k, v in reference.items() if k != "logged"}


def kill_at_first_checkpoint(proc: subprocess.Popen, run_dir: Path) -> Path:
    """SIGKILL `proc` as soon as voter 0's first checkpoint exists (or after 2 minutes); that checkpoint's path."""
    checkpoint = run_dir / "checkpoints" / "voter0" / "latest.pt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return checkpoint


def test_external_kill_during_training_then_resume(tmp_path, reference):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *ARGS, f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    assert kill_at_first_checkpoint(proc, run_dir).exists()
    resumed = run_cli(*ARGS, f"resume={run_dir}")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert {**outcome(run_dir), "logged": logged(run_dir)} == reference


def test_a_killed_run_has_said_where_it_is(tmp_path):
    """Its output redirected to a file (block-buffered: no PYTHONUNBUFFERED), a run SIGKILLed in its first
    stage has already written its run directory there."""
    run_dir, log = tmp_path / "run", tmp_path / "log.txt"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    args = [*QUICK, "training.base_steps=100000", "training.checkpoint_every=10", f"hydra.run.dir={run_dir}"]
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, str(REPO / "run.py"), *args], cwd=REPO, stdout=out, env=env)
        checkpoint = kill_at_first_checkpoint(proc, run_dir)
    assert checkpoint.exists() and proc.returncode == -signal.SIGKILL
    assert f"run dir: {run_dir}" in log.read_text()


def test_resuming_a_finished_run_recomputes_nothing_and_can_add_rounds_in_any_directory(tmp_path):
    run_dir = tmp_path / "my runs" / "lösung"  # a space and a non-ASCII letter
    assert run_cli(*ARGS, f"hydra.run.dir='{run_dir}'").returncode == 0  # Hydra's grammar wants it quoted
    written = [p for p in run_dir.rglob("*") if p.is_file() and p.parent.name in ("done", "data", "voter0")]
    before = {p: p.stat().st_mtime_ns for p in written}
    again = run_cli(*ARGS, f"resume={run_dir}", "si.rounds=1")  # the path as the shell gives it; fewer rounds
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in before} == before
    # said once, with what is done; and a resume that did nothing leaves no record of itself
    assert again.stdout.count("round  targets") == 1 and "nothing to do: 2 round(s) done, si.rounds=1" in again.stdout
    assert not list((run_dir / ".hydra").glob("resume-*"))
    more = run_cli(*ARGS, f"resume={run_dir}", "si.rounds=3")
    assert more.returncode == 0, more.stderr[-3000:]
    assert len(list((run_dir / ".hydra").glob("resume-*"))) == 1 and "nothing to do" not in more.stdout
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["targets"] for r in summary["rounds"][1:]] == [[11], [12], [13]]


def files(run_dir) -> dict:
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()}


@SHARED_RUNS
def test_resume_with_a_result_changing_config_is_refused_and_changes_nothing(tmp_path, base_run):
    run_dir = copy_run(base_run, tmp_path / "run")
    before = files(run_dir)
    refused = run_cli(*QUICK, "si.rounds=0", f"resume={run_dir}", "training.optim.lr=0.5")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "resuming would change results" in refused.stderr and "training.optim.lr" in refused.stderr
    assert files(run_dir) == before  # no .hydra/ record rewritten or added, nothing else touched


def test_a_second_process_on_a_running_run_is_refused(tmp_path):
    """run.py holds the run directory's lock while it works; the OS drops it when the holder is killed."""
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, str(REPO / "run.py"), *QUICK, "training.base_steps=100000", f"hydra.run.dir={run_dir}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while not ((run_dir / "run.json").exists() and runlock.held(run_dir)):  # the run is open: work begins
            assert first.poll() is None and time.time() < deadline, "the first run did not start"
            time.sleep(0.1)
        second = run_cli(f"resume={run_dir}")
        assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
        assert second.stderr.startswith(f"error: another process is running {run_dir}")
        assert not list(run_dir.glob(".hydra/resume-*"))  # the refused resume recorded nothing
        assert runlock.held(run_dir)
    finally:
        first.kill()
        first.wait()
    assert not runlock.held(run_dir)  # SIGKILL, no clean-up: the lock is gone with its holder


@SHARED_RUNS
def test_a_run_saved_before_attention_scale_existed_resumes_only_as_it_ran(tmp_path, base_run):
    """model.attention_scale came with log as the tiny model's default; a run (run.json and checkpoint) saved
    without the key ran plain attention, so resuming it with the new default is refused, and with
    model.attention_scale=none it goes on."""
    run_dir = copy_run(base_run, tmp_path / "run")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["config"].pop("model.attention_scale") == "log"  # the premise: the quick model's default
    (run_dir / "run.json").write_text(json.dumps(record))
    path = run_dir / "checkpoints" / "voter0" / "latest.pt"
    checkpoint = torch.load(path, weights_only=False)
    del checkpoint["model_config"]["attention_scale"]
    torch.save(checkpoint, path)

    assert selfimprove.load(run_dir).model.cfg.attention_scale == "none"  # loaded as it ran

    refused = run_cli(*QUICK, f"resume={run_dir}", "si.rounds=1")
    assert refused.returncode == 2
    assert "model.attention_scale: 'none' -> 'log'" in refused.stderr
    resumed = run_cli(*QUICK, f"resume={run_dir}", "si.rounds=1", "model.attention_scale=none")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["rounds"][-1]["round"] == 1
