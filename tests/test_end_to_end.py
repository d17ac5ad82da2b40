"""A tiny real run of base + 2 rounds through `python run.py`, and the files and numbers it writes."""

import json

import pytest
from conftest import QUICK, read_jsonl, run_cli

from selfimprove.tasks import get_task

pytestmark = pytest.mark.slow


def test_quick_run_writes_a_consistent_run_dir(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(*QUICK, "si.filters.voters=2", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "acc@newest" in proc.stdout  # the per-round console table

    for path in [
        "run.json",
        "metrics.jsonl",
        "summary.json",
        "plots/accuracy.png",
        "plots/labels.png",
        ".hydra/config.yaml",
        "checkpoints/voter0/latest.pt",
        "checkpoints/voter1/latest.pt",
    ]:
        assert (run_dir / path).exists(), path
    for stage in [
        "base.voter0",
        "base.voter1",
        "eval.round000",
        "label.round001",
        "train.round001.voter0",
        "train.round001.voter1",
        "eval.round001",
        "label.round002",
        "train.round002.voter1",
        "eval.round002",
    ]:
        assert (run_dir / "done" / f"{stage}.json").exists(), stage

    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert summary["voters"] == 2
    task = get_task("copy")
    for r, targets in [(1, [11]), (2, [12])]:
        info = summary["rounds"][r]
        assert info["targets"] == targets
        assert info["generated"] == 200
        rows = read_jsonl(run_dir / "data" / f"round_{r:03d}.jsonl")
        assert info["kept"] == len(rows)
        assert info["kept_fraction"] == pytest.approx(len(rows) / 200)
        for row in rows:  # the audit is the oracle's verdict, and every kept label passed the filters
            assert row["correct"] == task.check(row["prompt"], row["label"])
            assert len(row["label"]) == row["length"] == 11 + r - 1
            assert row["votes"] in (1, 2) and 0.0 < row["confidence"] <= 1.0
        if rows:
            assert info["label_accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / len(rows))
        assert sorted(int(n) for n in info["accuracy"]) == list(range(1, 10 + r + 3 + 1))
        assert info["seconds"] > 0
    for info in summary["rounds"]:
        accuracy = {int(n): a for n, a in info["accuracy"].items()}
        reach = info["reach"]
        assert all(accuracy[n] >= 0.98 for n in range(1, reach + 1))
        assert reach == max(accuracy) or accuracy[reach + 1] < 0.98

    events = read_jsonl(run_dir / "metrics.jsonl")
    assert {e["event"] for e in events} == {"train", "label", "eval"}
    assert sum(e["event"] == "eval" for e in events) == 3


def test_training_learns_short_copies(tmp_path):
    """Not a smoke test: base training alone must actually learn a short range."""
    run_dir = tmp_path / "run"
    proc = run_cli(
        "experiment=quick",
        "progress=false",
        "si.rounds=0",
        "data.base_max_length=4",
        "training.base_steps=800",
        "training.batch_size=64",
        "training.optim.lr=3e-3",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    accuracy = summary["rounds"][0]["accuracy"]
    assert all(accuracy[str(n)] >= 0.9 for n in range(1, 5)), accuracy
    assert summary["reach"] >= 3


def test_wandb_logger_runs_offline(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        *QUICK,
        "si.rounds=1",
        "logger=wandb",
        "logger.mode=offline",
        f"hydra.run.dir={run_dir}",
        env={"WANDB_SILENT": "true"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
