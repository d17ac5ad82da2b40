"""Where a run stops after round 0: every voter's base model must have learnt its base set."""

from conftest import REPO
from hydra import compose, initialize_config_dir

from selfimprove.config import register_configs
from selfimprove.loop.graph import collapse
from selfimprove.loop.runstate import eval_stage
from selfimprove.store import RunDir

register_configs()


def base_eval(run: RunDir, voter_accuracy: list[list[float]]) -> None:
    """Round 0's evaluation marker, written by hand: base 1-3 and two lengths past it, per voter."""
    mean = [sum(column) / len(column) for column in zip(*voter_accuracy, strict=True)]
    run.mark_done(
        eval_stage(0), {"round": 0, "points": [1, 2, 3, 4, 5], "accuracy": mean, "voter_accuracy": voter_accuracy}
    )


def test_one_voter_that_did_not_learn_its_base_stops_the_run_though_the_mean_passes(tmp_path):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["data.base_max=3", "si.filters.voters=3"])
    learnt, unlearnt = [1.0, 1.0, 0.99, 0.4, 0.0], [1.0, 0.9, 0.1, 0.0, 0.0]
    run = RunDir(tmp_path / "run")

    base_eval(run, [learnt, unlearnt, learnt])  # the mean at 3 is 0.69: above 0.5, so the mean alone would pass
    why = collapse(cfg, run, 0)
    assert why is not None and why.startswith("the base model of voter 1 (of 3) did not learn its base set")
    assert "(accuracy 1: 1.000, 2: 0.900, 3: 0.100;" in why  # that voter's base lengths only, not 4 and 5
    # Voters 0 and 2 learnt: the message says how to vote among them alone.
    assert f"base_from={run.root} base_from_voters=[0,2] si.filters.voters=2;" in why

    base_eval(run, [learnt, unlearnt, unlearnt])  # one voter that learnt is no vote: no such advice
    why = collapse(cfg, run, 0)
    assert why is not None and "base_from_voters" not in why

    base_eval(run, [learnt, learnt, learnt])  # 0.4 at 4 is past the base: not a reason to stop
    assert collapse(cfg, run, 0) is None
