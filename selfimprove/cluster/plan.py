"""What is left of each point's round graph before a launch: the steps up to a collapse, and per step the
jobs whose stage is not done, each either to submit or to wait for (a job of an earlier launch that is still
queued or running).
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import OmegaConf

from selfimprove.cluster.grid import Point
from selfimprove.cluster.jobs import StageJob, step_jobs
from selfimprove.cluster.scheduler import ACTIVE
from selfimprove.cluster.sweepdir import SweepDir
from selfimprove.loop import graph
from selfimprove.store import RunDir


@dataclass
class PendingJob:
    """A job of a step whose stage is not done: its stage marker and the call that runs it."""

    stage: str
    call: StageJob
    active: str | None = None  # a job of an earlier launch that is still queued or running
    active_cluster: str | None = None


@dataclass
class Todo:
    """A step with jobs left; `index` is its place in the plan's steps (what `Step.after` names)."""

    index: int
    step: graph.Step
    jobs: list[PendingJob]  # one per stage of the step that is not done


@dataclass
class Plan:
    """A point's graph (cut after a step that stopped the run, then `stopped` says why) and what is left."""

    point: Point
    steps: list[graph.Step]
    todo: list[Todo]
    stopped: str | None = None

    def active(self) -> list[PendingJob]:
        """The jobs that wait for a queued or running job of an earlier launch."""
        return [j for todo in self.todo for j in todo.jobs if j.active]


def plan(point: Point, sweep: SweepDir | None, states: dict[str, str], threads: int) -> Plan:
    """What is left of a point's graph: steps after a stop are dropped, stages marked done are skipped,
    and a stage whose latest job is still active is waited for instead of resubmitted."""
    steps = graph.steps(point.voters, point.rounds)
    run = RunDir(point.run_dir)
    stopped = None
    stop = graph.first_stop(point.cfg, run, steps)
    if stop:  # the in-process walk stops after that step too
        last, stopped = stop
        steps = steps[: last + 1]
    container = OmegaConf.to_container(point.cfg, resolve=True)
    todo = []
    for i, step in enumerate(steps):
        calls = step_jobs(step, str(point.run_dir), point.overrides, container, threads)  # type: ignore[arg-type]
        pending = []
        for stage, call in zip(step.stages(), calls, strict=True):
            if run.is_done(stage):
                continue
            latest = sweep.latest(point.num, stage) if sweep else None
            if latest and states.get(latest["id"]) in ACTIVE:
                pending.append(PendingJob(stage, call, latest["id"], latest["cluster"]))
            else:
                pending.append(PendingJob(stage, call))
        if pending:
            todo.append(Todo(i, step, pending))
    return Plan(point, steps, todo, stopped)


def describe(plans: list[Plan]) -> str:
    """The job graph, one line per step: what it waits for and what is left of it."""
    lines = []
    for p in plans:
        lines.append(f"pipeline {p.point.num}: {p.point.label()}  ->  {p.point.run_dir}")
        left = {t.index: t for t in p.todo}
        for i, step in enumerate(p.steps):
            after = ", ".join(p.steps[a].name for a in step.after) or "-"
            shape = f"array of {step.voters}" if step.is_array else "job"
            todo = left.get(i)
            if todo is None:
                what = "done"
            else:
                waiting = [j.active for j in todo.jobs if j.active]
                what = f"{len(todo.jobs) - len(waiting)} to submit"
                what += f", waits for queued/running job(s) {' '.join(waiting)}" if waiting else ""
            lines.append(f"  {step.name:<10} {shape:<12} after: {after:<22} {what}")
        if p.stopped:
            lines.append(f"  stopped: {p.stopped}")
    return "\n".join(lines)
