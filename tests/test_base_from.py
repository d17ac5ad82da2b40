"""`base_from=<run dir>`: a run that starts from another run's base models instead of training its own."""

import json
import re

import pytest
import torch
from conftest import QUICK, REPO, SHARED_RUNS, copy_run, outcome, read_jsonl, run_cli
from hydra import compose, initialize_config_dir

from selfimprove.config import register_configs
from selfimprove.errors import BaseFromError
from selfimprove.loop.pipeline import check_base_from

pytestmark = pytest.mark.slow


@SHARED_RUNS
def test_a_run_from_another_runs_base_computes_what_that_run_did(tmp_path, kept_run):
    """Run A keeps its base models (round_000.pt); run B starts from them and, with the same seeds, must
    compute A's rounds exactly — without a single base training step of its own."""
    source, reused = kept_run, tmp_path / "b"
    assert (source / "checkpoints" / "voter0" / "round_000.pt").exists()
    proc = run_cli(*QUICK, "si.keep_round_checkpoints=true", f"base_from={source}", f"hydra.run.dir={reused}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    assert outcome(reused) == outcome(source)
    base = json.loads((reused / "done" / "base.voter0.json").read_text())
    assert base["base_from"] == str(source.resolve()) and base["seconds"] == 0.0
    trained = {e["stage"] for e in read_jsonl(reused / "metrics.jsonl") if e["event"] == "train"}
    assert trained == {"train.round001.voter0", "train.round002.voter0"}
    assert json.loads((reused / "run.json").read_text())["config"]["base_from"] == str(source)


@SHARED_RUNS
def test_base_from_refuses_what_cannot_serve_as_a_base(tmp_path, kept_run, base_run):
    # Rounds trained latest.pt further, and no round_000.pt was kept: nothing holds the base any more.
    rounds_done = copy_run(kept_run, tmp_path / "rounds")
    for kept in rounds_done.glob("checkpoints/voter*/round_*.pt"):
        kept.unlink()
    base_only = base_run  # si.rounds=0: its latest.pt is the base
    # As a user meets it: one line, exit status 2, nothing written.
    target = tmp_path / "refused"
    proc = run_cli(*QUICK, f"base_from={rounds_done}", f"hydra.run.dir={target}")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()], proc.stderr
    assert "holds no base model for voter 0" in proc.stderr
    assert not target.exists()
    # The other refusals, from the same check run.py and sweep.py call, in this process.
    register_configs()
    refusals = [
        ([f"base_from={base_only}", "si.filters.voters=2"], "has 1 voter(s), 0 to 0, and this run asks for its voter"),
        ([f"base_from={base_only}", "model.n_embd=32"], "trained another base: model.n_embd: 64 there, 32 here"),
        ([f"base_from={base_only}", "data=reverse"], "trained another base: data.task: 'copy' there, 'reverse' here"),
        ([f"base_from={tmp_path / 'nothing'}"], "is not a selfimprove run directory"),
    ]
    for overrides, message in refusals:
        with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[*QUICK, *overrides])
        with pytest.raises(BaseFromError, match=re.escape(message)):
            check_base_from(cfg, target)
    sweep = run_cli(*QUICK, f"base_from={rounds_done}", "--dry-run", script="sweep.py")
    assert sweep.returncode == 2 and "point 0: base_from=" in sweep.stderr, sweep.stderr  # refused before submitting
    ok = run_cli(*QUICK, "si.rounds=0", f"base_from={base_only}", f"hydra.run.dir={tmp_path / 'ok'}")
    assert ok.returncode == 0, ok.stderr[-3000:]
    evaluated = [json.loads((run / "done" / "eval.round000.json").read_text()) for run in (base_only, tmp_path / "ok")]
    assert evaluated[0]["accuracy"] == evaluated[1]["accuracy"]  # the same base model, from its latest.pt


def test_a_run_votes_among_the_voters_it_picks_from_another_run(tmp_path):
    """base_from_voters=[1]: this run's voter 0 is the source's voter 1 — its weights, its accuracy — and
    a run from this one in turn finds that base model where a base stage leaves it."""
    source, picked, chained = tmp_path / "two", tmp_path / "picked", tmp_path / "chained"
    proc = run_cli(*QUICK, "si.filters.voters=2", "si.rounds=0", f"hydra.run.dir={source}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli(*QUICK, "si.rounds=0", f"base_from={source}", "base_from_voters=[1]", f"hydra.run.dir={picked}")
    assert proc.returncode == 0, proc.stderr[-3000:]

    weights = [
        torch.load(run / "checkpoints" / voter / "latest.pt", weights_only=False)["model"]
        for run, voter in [(source, "voter0"), (source, "voter1"), (picked, "voter0")]
    ]
    assert all(torch.equal(weights[1][k], weights[2][k]) for k in weights[1])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])  # not the source's voter 0
    assert json.loads((picked / "done" / "base.voter0.json").read_text())["base_from_voter"] == 1
    evaluated = [json.loads((run / "done" / "eval.round000.json").read_text()) for run in (source, picked)]
    assert evaluated[1]["voter_accuracy"] == [evaluated[0]["voter_accuracy"][1]]

    proc = run_cli(*QUICK, "si.rounds=0", f"base_from={picked}", f"hydra.run.dir={chained}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((chained / "done" / "eval.round000.json").read_text())["accuracy"] == evaluated[1]["accuracy"]


def test_an_adopted_base_is_recorded_with_the_settings_that_trained_it(tmp_path):
    """run.json records what ran: a run from another run's base holds that run's base-training settings, not the
    ones its own preset would have trained with, and it resumes (compare --by training.base_steps groups it right)."""
    source, adopted = tmp_path / "source", tmp_path / "adopted"
    proc = run_cli(*QUICK, "training.base_steps=80", "si.rounds=0", f"hydra.run.dir={source}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli(*QUICK, f"base_from={source}", "si.rounds=0", f"hydra.run.dir={adopted}")  # the preset says 60
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((adopted / "run.json").read_text())["config"]["training.base_steps"] == 80
    again = run_cli(*QUICK, f"resume={adopted}", "si.rounds=1")
    assert again.returncode == 0, again.stderr[-3000:]
