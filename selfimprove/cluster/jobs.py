"""The round graph of `graph` as jobs: one job per stage of a step (per voter of an array step), each running
that stage.

A job opens the run directory with `pipeline.open_run` and runs its stage, which returns at once when its
marker exists and resumes from its checkpoint otherwise: so a requeued, resubmitted or duplicated job
only repeats what was not finished. A job after a collapsed round does nothing, as `run.py` stops there.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from selfimprove.cluster.scheduler import Requeueable
from selfimprove.config import typed
from selfimprove.loop import graph, pipeline, runlock
from selfimprove.store import RunDir


@dataclass
class StageJob(Requeueable):
    """One stage of a step. On timeout or preemption submitit calls `checkpoint`, which requeues the same
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
        return graph.KINDS[self.kind].stage(self.round, self.voter)

    def __call__(self) -> dict[str, Any]:
        cfg = typed(self.config)
        cfg.progress = bool(cfg.progress and sys.stderr.isatty())  # no tqdm bars in job logs
        if not cfg.training.threads and self.threads:
            cfg.training.threads = self.threads  # Context.create applies it: torch would use every core otherwise
        if RunDir(self.run_dir).is_done(self.stage):
            return {"stage": self.stage, "done": True}
        with runlock.hold(self.run_dir, exclusive=False):  # shared: the voters of a step run side by side
            ctx = pipeline.open_run(cfg, self.run_dir, self.overrides, part=self.stage)
            try:
                steps = graph.steps(ctx.voters, cfg.si.rounds)
                here = next(i for i, s in enumerate(steps) if (s.kind, s.round) == (self.kind, self.round))
                stop = graph.first_stop(cfg, ctx.run, steps[:here])
                if stop:  # the in-process walk stops before this step too: nothing is run and nothing is marked
                    return {"stage": self.stage, "skipped": stop[1]}
                result = graph.run_stage(ctx, steps[here], self.voter)  # publishes after an evaluation or a stop
                return {"stage": self.stage, **result}
            finally:
                ctx.metrics.close()


def step_jobs(
    step: graph.Step, run_dir: str, overrides: list[str], config: dict[str, Any], threads: int
) -> list[StageJob]:
    """One job per stage of `step`, in the order of `step.stages()`."""
    return [StageJob(run_dir, overrides, config, step.kind, step.round, k, threads) for k in step.stage_voters()]
