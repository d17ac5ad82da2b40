"""A run's state as its stage markers record it: the name of every stage, and what the finished stages found
(each round's targets, the accuracies after it). A job reads the same markers as the in-process walk, so these
answer alike in both."""

from __future__ import annotations

from omegaconf import DictConfig

from selfimprove.loop.curriculum import Curriculum
from selfimprove.store import RunDir
from selfimprove.tasks import Difficulty, as_difficulty, difficulty_name


def base_stage(voter: int) -> str:
    return f"base.voter{voter}"


def base_attempt_stage(voter: int, attempt: int) -> str:
    """The stage attempt `attempt` (from 0) at a voter's base trains as: the first is the base stage itself, seeded
    as always; a later one is named by its number as the console counts it (`base.voter1.attempt2` is the
    second), so it has its own seed and its own training log."""
    return base_stage(voter) if attempt == 0 else f"{base_stage(voter)}.attempt{attempt + 1}"


def label_stage(round_: int) -> str:
    return f"label.round{round_:03d}"


def train_stage(round_: int, voter: int) -> str:
    return f"train.round{round_:03d}.voter{voter}"


def eval_stage(round_: int) -> str:
    return f"eval.round{round_:03d}"


def round_targets(run: RunDir, round_: int) -> list[Difficulty]:
    return [as_difficulty(d) for d in run.result(label_stage(round_))["targets"]]


def targets_until(run: RunDir, round_: int) -> list[Difficulty]:
    """Every target of rounds 1..`round_`: with the base set, what has been trained on after `round_`."""
    return [d for r in range(1, round_ + 1) for d in round_targets(run, r)]


def accuracy_after(run: RunDir, round_: int, voter: int | None = None) -> dict[Difficulty, float]:
    """Accuracy at every evaluated difficulty after round `round_`: the voters' mean, or one voter's."""
    result = run.result(eval_stage(round_))
    accuracy = result["accuracy"] if voter is None else result["voter_accuracy"][voter]
    return {as_difficulty(d): a for d, a in zip(result["points"], accuracy, strict=True)}


def base_accuracy(run: RunDir, curriculum: Curriculum, voters: int) -> list[dict[str, float]]:
    """Each voter's accuracy at every base difficulty after base training, by difficulty name."""
    after = (accuracy_after(run, 0, voter) for voter in range(voters))
    return [{difficulty_name(d): accuracy[d] for d in curriculum.base} for accuracy in after]


def newest_accuracy(run: RunDir, curriculum: Curriculum, round_: int) -> tuple[str, float]:
    """The round's newest curriculum step (named for messages) and its lowest accuracy after the round."""
    newest = curriculum.newest(targets_until(run, round_))
    accuracy = accuracy_after(run, round_)
    return ", ".join(map(difficulty_name, newest)), min(accuracy[d] for d in newest)


def global_step(training: DictConfig, round_: int, step: int | None = None) -> int:
    """Training steps since the first base step: after round `round_`'s training (0: the base), or `step`
    steps into it (the x axis of every wandb chart)."""
    if step is None:
        return training.base_steps + round_ * training.round_steps
    return step if round_ == 0 else training.base_steps + (round_ - 1) * training.round_steps + step
