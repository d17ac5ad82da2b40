"""With dropout on, an uninterrupted run, a run killed and resumed (between stages and inside one) and a
sweep whose stages run as separate processes compute the same thing: every stage seeds torch from
(seed, stage), whatever ran before it in the process."""

import pytest
from conftest import QUICK, kill_and_resume, outcome, run_cli, uninterrupted_outcome

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("seeding")]  # one worker: one reference run

ARGS = [*QUICK, "model.dropout=0.2", "training.checkpoint_every=10"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    return uninterrupted_outcome(tmp_path_factory.mktemp("reference") / "run", ARGS)


@pytest.mark.parametrize("point", ["marker:label.round001", "checkpoint:train.round002.voter0:10"])
def test_dropout_run_killed_and_resumed_matches(tmp_path, reference, point):
    run_dir = tmp_path / "run"
    kill_and_resume(run_dir, point, ARGS)
    assert outcome(run_dir) == reference


def test_dropout_sweep_of_separate_processes_matches(tmp_path, reference):
    sweep = tmp_path / "sweep"
    proc = run_cli(*ARGS, "--cluster", "local", "--dir", str(sweep), script="sweep.py", timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert outcome(sweep / "0") == reference
