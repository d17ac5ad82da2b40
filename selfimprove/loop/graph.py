"""The round graph of a self-improvement run, defined once: its steps in order, what each step waits for,
the stage function each task calls, and where the run stops.

    base (array over voters) -> eval r0 -> label r1 -> train r1 (array) -> eval r1 -> label r2 -> ...

`pipeline.run` walks the steps in one process; `sweep.py` submits each step as a job (an array over the
voters for base and train) that waits (`afterok`) for the jobs of the steps in its `after`. Both run a
task with `run_step_task`. A step may stop the run, and nothing after it runs: the evaluation of round 0
when a base model (any voter's) scores below si.collapse_threshold at some base difficulty (it did not learn
its base set), of round r >= 1 when accuracy at the round's newest difficulty fell below it; the labelling of a round
whose filters kept no label (there is nothing to train on). si.collapse_threshold=0 runs every round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from selfimprove.loop import stages
from selfimprove.store import RunDir


@dataclass(frozen=True)
class Step:
    """One node of the graph: a single task (label, eval) or one task per voter (base, train)."""

    kind: str  # base | eval | label | train
    round: int
    voters: int  # array size of base/train steps; 1 otherwise
    after: tuple[int, ...]  # indices of the steps whose tasks must all succeed first

    @property
    def name(self) -> str:
        return "base" if self.kind == "base" else f"{self.kind} r{self.round}"

    @property
    def is_array(self) -> bool:
        return self.kind in ("base", "train")

    def task_voters(self) -> range:
        """The voter of each task: every voter for base and train; 0 for label and eval (they read all)."""
        return range(self.voters if self.is_array else 1)

    def stages(self) -> list[str]:
        """The stage markers of the step's tasks, one per task."""
        return [stage_name(self.kind, self.round, k) for k in self.task_voters()]


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


def stage_name(kind: str, round_: int, voter: int) -> str:
    if kind == "base":
        return stages.base_stage(voter)
    if kind == "train":
        return stages.train_stage(round_, voter)
    if kind == "label":
        return stages.label_stage(round_)
    if kind == "eval":
        return stages.eval_stage(round_)
    raise ValueError(f"unknown stage kind {kind!r}")


def run_step_task(ctx: stages.Context, kind: str, round_: int, voter: int) -> dict[str, Any]:
    """Run one task of a step (a no-op when its marker exists) and return the stage's result; a labelling's
    and an evaluation's result also hold `stopped`: why the run stops there, or None."""
    if kind == "base":
        return stages.train_base(ctx, voter)
    if kind == "label":
        result = stages.label(ctx, round_)
        stopped = no_labels(ctx.cfg, ctx.run, round_)
        if result["kept"] == 0 and not stopped:  # said once: a round that stops says why where it stops
            print(
                f"round {round_}: the filters kept none of {result['generated']} labels at {result['targets']}; "
                "si.collapse_threshold=0, so the round trains on the older data",
                flush=True,
            )
        return {**result, "stopped": stopped}
    if kind == "train":
        return stages.train_round(ctx, round_, voter)
    if kind == "eval":
        result = stages.evaluate(ctx, round_)
        return {**result, "stopped": collapse(ctx.cfg, ctx.run, round_, ctx.cfg.si.collapse_threshold)}
    raise ValueError(f"unknown stage kind {kind!r}")


def collapse(cfg: DictConfig, run: RunDir, round_: int, threshold: float) -> str | None:
    """Why the run stops after round `round_`'s evaluation (si.collapse_threshold), read from the markers, or
    None. Round 0: a base model (any voter's: one that learnt nothing only thins the vote) scores below
    `threshold` at some base difficulty — it did not learn what it was trained on, and self-improvement
    cannot start from it. A later round: accuracy at its newest difficulty fell below `threshold`."""
    if round_ == 0:
        voters = stages.base_accuracy(cfg, run)
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
    newest, accuracy = stages.newest_accuracy(cfg, run, round_)
    if accuracy >= threshold:
        return None
    return (
        f"collapse: after round {round_} accuracy at {newest} is {accuracy:.3f} < "
        f"si.collapse_threshold={threshold}; stopping (every finished round is kept in {run.root})"
    )


def no_labels(cfg: DictConfig, run: RunDir, round_: int) -> str | None:
    """Why the run stops after round `round_`'s labelling, read from its marker, or None. With
    si.collapse_threshold=0 (smoke tests: every round runs) the round trains on the older data instead."""
    labelled = run.result(stages.label_stage(round_))
    if labelled["kept"] > 0 or cfg.si.collapse_threshold == 0:
        return None
    return (
        f"round {round_} kept no labels: the filters (si.filters) rejected all {labelled['generated']} answers at "
        f"{labelled['targets']}, so there is nothing to train on; stopping (every finished round is kept in {run.root})"
    )


def first_stop(cfg: DictConfig, run: RunDir, graph: list[Step]) -> tuple[int, str] | None:
    """The first finished step of `graph` that stops the run: its index, and why."""
    for i, step in enumerate(graph):
        if step.kind in ("label", "eval") and run.is_done(step.stages()[0]):
            if step.kind == "label":
                reason = no_labels(cfg, run, step.round)
            else:
                reason = collapse(cfg, run, step.round, cfg.si.collapse_threshold)
            if reason:
                return i, reason
    return None
