"""The round graph of a self-improvement run, defined once: its steps in order, what each step waits for,
the stage function each kind of step calls (KINDS, the one table of them), and where the run stops.

    base (array over voters) -> eval r0 -> label r1 -> train r1 (array) -> eval r1 -> label r2 -> ...

`pipeline.run` walks the steps in one process; `sweep.py` submits each step as a job (an array over the
voters for base and train) that waits (`afterok`) for the jobs of the steps in its `after`. Both run a
stage with `run_stage`, which also publishes the summary after an evaluation or a stop. A step may stop the
run, and nothing after it runs: the evaluation of round 0 when a base model (any voter's) scores below
si.collapse_threshold at some base difficulty (it did not learn its base set), of round r >= 1 when accuracy
at the round's newest difficulty fell below it; the labelling of a round whose filters kept no label (there
is nothing to train on). si.collapse_threshold=0 runs every round.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from selfimprove.loop import stages
from selfimprove.loop.context import Context, curriculum_of
from selfimprove.loop.publish import publish
from selfimprove.loop.runstate import (
    base_accuracy,
    base_stage,
    eval_stage,
    label_stage,
    newest_accuracy,
    train_stage,
)
from selfimprove.store import RunDir


@dataclass(frozen=True)
class Kind:
    """What a kind of step is: one stage per voter or one for all, its stage's name, the stage function, and the
    rule that may stop the run after it (read from the markers: why it stops, or None)."""

    per_voter: bool
    stage: Callable[[int, int], str]  # (round, voter) -> the stage's marker name
    run: Callable[[Context, int, int], dict[str, Any]]  # (ctx, round, voter) -> the stage's result
    stops: Callable[[DictConfig, RunDir, int], str | None] | None = None


@dataclass(frozen=True)
class Step:
    """One node of the graph: a single stage (label, eval) or one stage per voter (base, train)."""

    kind: str  # a key of KINDS: base | eval | label | train
    round: int
    voters: int  # array size of base/train steps; 1 otherwise
    after: tuple[int, ...]  # indices of the steps whose stages must all succeed first

    @property
    def name(self) -> str:
        return "base" if self.kind == "base" else f"{self.kind} r{self.round}"

    @property
    def is_array(self) -> bool:
        return KINDS[self.kind].per_voter

    def stage_voters(self) -> range:
        """The voter of each stage: every voter for base and train; 0 for label and eval (they read all)."""
        return range(self.voters if self.is_array else 1)

    def stages(self) -> list[str]:
        """The stage markers of the step, one per stage."""
        return [KINDS[self.kind].stage(self.round, k) for k in self.stage_voters()]


def steps(voters: int, rounds: int) -> list[Step]:
    """The graph of one run, in an order where every step comes after the steps it waits for."""
    graph = [Step("base", 0, voters, ()), Step("eval", 0, 1, (0,))]
    trained, evaluated = 0, 1  # the steps that wrote the latest checkpoints and the latest evaluation
    for r in range(1, rounds + 1):
        graph.append(Step("label", r, 1, (trained, evaluated)))  # reads every voter and the last eval
        graph.append(Step("train", r, voters, (len(graph) - 1,)))
        trained = len(graph) - 1
        graph.append(Step("eval", r, 1, (trained,)))
        evaluated = len(graph) - 1
    return graph


def run_stage(ctx: Context, step: Step, voter: int) -> dict[str, Any]:
    """Run one stage of a step (a no-op when its marker exists) and return its result, with `stopped`: why the
    run stops after it, or None, and `published`: whether the summary was published after it. It is published
    after an evaluation that ran here and after every stage that stops the run, in a job as in one process."""
    kind = KINDS[step.kind]
    ran = not ctx.run.is_done(kind.stage(step.round, voter))
    result = kind.run(ctx, step.round, voter)
    stopped = kind.stops(ctx.cfg, ctx.run, step.round) if kind.stops else None
    published = bool(stopped) or (ran and step.kind == "eval")
    if published:
        publish(ctx, stopped)
    return {**result, "stopped": stopped, "published": published}


def collapse(cfg: DictConfig, run: RunDir, round_: int) -> str | None:
    """Why the run stops after round `round_`'s evaluation (si.collapse_threshold), read from the markers, or
    None. Round 0: a base model (any voter's: one that learnt nothing only thins the vote) scores below
    the threshold at some base difficulty — it did not learn what it was trained on, and self-improvement
    cannot start from it. A later round: accuracy at its newest difficulty fell below the threshold."""
    threshold = cfg.si.collapse_threshold
    curriculum = curriculum_of(cfg)
    if round_ == 0:
        voters = base_accuracy(run, curriculum, cfg.si.filters.voters)
        failed = [(v, base) for v, base in enumerate(voters) if not stages.base_learnt(base, threshold)]
        if not failed:
            return None
        voter, base = failed[0]
        model = "the base model" if len(voters) == 1 else f"the base model of voter {voter} (of {len(voters)})"
        scores = ", ".join(f"{name}: {a:.3f}" for name, a in base.items())
        learnt = sorted(set(range(len(voters))) - {v for v, _ in failed})
        # The voters that learnt are not lost: a new run can vote among them alone (base_from_voters).
        picks = ",".join(map(str, learnt))
        among = (
            f", or vote among the voters that learnt: base_from={run.root} base_from_voters=[{picks}]"
            f" si.filters.voters={len(learnt)}"
            if len(learnt) >= 2
            else ""
        )
        return (
            f"{model} did not learn its base set (accuracy {scores}; below si.collapse_threshold="
            f"{threshold}), so self-improvement cannot start from it: train it longer (training.base_steps), "
            f"from more seeds (training.base_attempts), larger (model) or on a smaller base set (data.base_max)"
            f"{among}; stopping ({run.root})"
        )
    newest, accuracy = newest_accuracy(run, curriculum, round_)
    if accuracy >= threshold:
        return None
    return (
        f"collapse: after round {round_} accuracy at {newest} is {accuracy:.3f} < "
        f"si.collapse_threshold={threshold}; stopping (every finished round is kept in {run.root})"
    )


def no_labels(cfg: DictConfig, run: RunDir, round_: int) -> str | None:
    """Why the run stops after round `round_`'s labelling, read from its marker, or None. With
    si.collapse_threshold=0 (smoke tests: every round runs) the round trains on the older data instead."""
    labelled = run.result(label_stage(round_))
    if labelled["kept"] > 0 or cfg.si.collapse_threshold == 0:
        return None
    return (
        f"round {round_} kept no labels: the filters (si.filters) rejected all {labelled['generated']} answers at "
        f"{labelled['targets']}, so there is nothing to train on; stopping (every finished round is kept in {run.root})"
    )


def first_stop(cfg: DictConfig, run: RunDir, graph: list[Step]) -> tuple[int, str] | None:
    """The first finished step of `graph` that stops the run: its index, and why."""
    for i, step in enumerate(graph):
        stops = KINDS[step.kind].stops
        if stops and run.is_done(step.stages()[0]):
            reason = stops(cfg, run, step.round)
            if reason:
                return i, reason
    return None


def _label(ctx: Context, round_: int, voter: int) -> dict[str, Any]:
    result = stages.label(ctx, round_)
    if result["kept"] == 0 and not no_labels(ctx.cfg, ctx.run, round_):  # a round that stops says why elsewhere
        print(
            f"round {round_}: the filters kept none of {result['generated']} labels at {result['targets']}; "
            "si.collapse_threshold=0, so the round trains on the older data",
            flush=True,
        )
    return result


KINDS: dict[str, Kind] = {
    "base": Kind(True, lambda r, k: base_stage(k), lambda ctx, r, k: stages.train_base(ctx, k)),
    "label": Kind(False, lambda r, k: label_stage(r), _label, no_labels),
    "train": Kind(True, train_stage, lambda ctx, r, k: stages.train_round(ctx, r, k)),
    "eval": Kind(False, lambda r, k: eval_stage(r), lambda ctx, r, k: stages.evaluate(ctx, r), collapse),
}
