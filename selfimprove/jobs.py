"""A self-improvement run as a graph of cluster jobs, each calling one stage function of `stages`.

`pipeline.run` calls the stages in order in one process; `sweep.py` submits the same stages as jobs:

    base (array over voters) -> eval r0 -> label r1 -> train r1 (array) -> eval r1 -> label r2 -> ...

A job opens the run directory with `pipeline.open_run` and calls one stage, which returns at once when
its marker exists and resumes from its checkpoint otherwise: so a requeued, resubmitted or duplicated
job only repeats what was not finished.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import submitit
from omegaconf import DictConfig, OmegaConf

from selfimprove import pipeline, stages
from selfimprove.config import Config
from selfimprove.store import RunDir


@dataclass(frozen=True)
class Step:
    """One node of a pipeline: a single job (label, eval) or a job array over the voters (base, train)."""

    kind: str  # base | eval | label | train
    round: int
    voters: int  # array size of base/train steps; 1 otherwise
    after: tuple[int, ...]  # indices of the steps whose jobs must all succeed first

    @property
    def name(self) -> str:
        return "base" if self.kind == "base" else f"{self.kind} r{self.round}"

    @property
    def is_array(self) -> bool:
        return self.kind in ("base", "train")

    def stages(self) -> list[str]:
        """The stage markers of the step's tasks, one per array task."""
        return [stage_name(self.kind, self.round, k) for k in range(self.voters if self.is_array else 1)]


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


def pipeline_steps(voters: int, rounds: int) -> list[Step]:
    """The job graph of one run, in an order where every step comes after the steps it waits for."""
    steps = [Step("base", 0, voters, ()), Step("eval", 0, 1, (0,))]
    trained, evaluated = 0, 1  # the steps that wrote the latest checkpoints and the latest evaluation
    for r in range(1, rounds + 1):
        steps.append(Step("label", r, 1, (trained, evaluated)))  # reads every voter and the last eval
        steps.append(Step("train", r, voters, (len(steps) - 1,)))
        trained = len(steps) - 1
        steps.append(Step("eval", r, 1, (trained,)))
        evaluated = len(steps) - 1
    return steps


def make_config(container: dict[str, Any]) -> DictConfig:
    """A composed config sent to a job as a plain container, typed again by the schema."""
    return OmegaConf.merge(OmegaConf.structured(Config), container)  # type: ignore[return-value]


@dataclass
class StageJob(submitit.helpers.Checkpointable):
    """One task of a step. On timeout or preemption submitit calls `checkpoint`, which requeues the same
    object: calling it again resumes the stage from its last training checkpoint."""

    run_dir: str
    overrides: list[str]  # recorded in run.json, so that `run.py resume=<run dir>` works on a sweep point too
    config: dict[str, Any]  # the composed, validated config
    kind: str
    round: int = 0
    voter: int = 0
    threads: int = 0  # torch threads when training.threads is 0: the job's cpus_per_task

    @property
    def stage(self) -> str:
        return stage_name(self.kind, self.round, self.voter)

    def __call__(self) -> dict[str, Any]:
        cfg = make_config(self.config)
        cfg.progress = bool(cfg.progress and sys.stderr.isatty())  # no tqdm bars in job logs
        if not cfg.training.threads and self.threads:
            cfg.training.threads = self.threads  # Context.create applies it: torch would use every core otherwise
        if RunDir(self.run_dir).is_done(self.stage):
            return {"stage": self.stage, "done": True}
        ctx = pipeline.open_run(cfg, self.run_dir, self.overrides)
        try:
            collapsed = pipeline.first_collapse(ctx.run, cfg.si.collapse_threshold, self.round - 1)
            if collapsed:  # the in-process loop stops here too: nothing is run and nothing is marked
                return {"stage": self.stage, "skipped": collapsed[1]}
            result = self._run(ctx)
            if self.kind == "eval":
                stopped = pipeline.collapse(ctx.run, self.round, cfg.si.collapse_threshold) if self.round else None
                pipeline.publish(ctx, stopped)
                result = {**result, "stopped": stopped}
            return {"stage": self.stage, **result}
        finally:
            ctx.metrics.close()

    def _run(self, ctx: stages.Context) -> dict[str, Any]:
        if self.kind == "base":
            return stages.train_base(ctx, self.voter)
        if self.kind == "label":
            return stages.label(ctx, self.round)
        if self.kind == "train":
            return stages.train_round(ctx, self.round, self.voter)
        return stages.evaluate(ctx, self.round)


def step_jobs(step: Step, run_dir: str, overrides: list[str], config: dict[str, Any], threads: int) -> list[StageJob]:
    """One job per task of `step`, in the order of `step.stages()`."""
    voters = range(step.voters) if step.is_array else [0]
    return [StageJob(run_dir, overrides, config, step.kind, step.round, k, threads) for k in voters]
