"""A run in one process: its run directory (a new one, or a resume that must not change results), the
round graph of `graph` walked task by task, and the summary published after every evaluation."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from selfimprove import base_from, graph, report, runlock, stages, wandb_sink
from selfimprove.config import saved_value
from selfimprove.store import RunDir, atomic_write_json, read_json
from selfimprove.train import resolve_device

# Keys that may change when a run resumes: they change how it runs, not what it computes.
RESUME_FREE = (
    "resume",
    "progress",
    "logger",
    "si.rounds",
    "si.drift_rounds",
    "training.device",
    "training.threads",
    "training.log_every",
    "training.checkpoint_every",
    "data.generate_batch_size",
)


class ResumeError(RuntimeError):
    """A resume that would change results, or a path that is not a run directory."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def resume_free(key: str) -> bool:
    """Whether a (dotted) config key may change on resume: it is, or lies under, one of RESUME_FREE."""
    return any(key == free or key.startswith(free + ".") for free in RESUME_FREE)


def result_config(cfg: DictConfig) -> dict[str, Any]:
    """The flattened config values that determine a run's results."""
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    return {k: v for k, v in flat.items() if not resume_free(k)}


def saved_run(run_dir: Path) -> dict[str, Any]:
    """run.json of an existing run directory, or ResumeError when `run_dir` is not one."""
    path = run_dir / "run.json"
    if not run_dir.is_dir():
        raise ResumeError(f"resume={run_dir}: no such directory")
    if not path.exists():
        raise ResumeError(f"resume={run_dir} is not a selfimprove run directory (no run.json)")
    return read_json(path)


def check_resumable(saved: dict[str, Any], cfg: DictConfig) -> None:
    vocabulary = stages.task_of(cfg).vocabulary
    if saved.get("vocabulary", vocabulary) != vocabulary:
        raise ResumeError(f"resuming would change the vocabulary, refused: {saved['vocabulary']} -> {vocabulary}")
    changed = [
        f"{key}: {saved_value(saved['config'], key, None)!r} -> {value!r}"
        for key, value in result_config(cfg).items()
        if saved_value(saved["config"], key, value) != value
    ] + [f"{key}: removed" for key in saved["config"] if key not in result_config(cfg)]
    if changed:
        raise ResumeError("resuming would change results, refused: " + "; ".join(changed))


def check_base_from(cfg: DictConfig, run_dir: Path) -> None:
    """`base_from` names a run that holds base models this run can start from (unless its base is adopted)."""
    base_stages = [stages.base_stage(voter) for voter in range(cfg.si.filters.voters)]
    if cfg.base_from and not all(RunDir(run_dir).is_done(stage) for stage in base_stages):
        base_from.check(cfg.base_from, result_config(cfg), stages.task_of(cfg).vocabulary, stages.base_sources(cfg))


def open_run(
    cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str] = (), part: str | None = None
) -> stages.Context:
    """The stage context for `run_dir`: records run.json in a new run, refuses a result-changing resume.
    `part`: the stage a sweep job runs (None: the whole run, in this process)."""
    run_dir = Path(run_dir)
    resolve_device(cfg.training.device)  # here, where it runs, and before run.json: an absent GPU is one line
    wandb_sink.check(cfg.logger)  # logger.mode=online without credentials or network: one line, before any work
    check_base_from(cfg, run_dir)
    if (run_dir / "run.json").exists():
        check_resumable(saved_run(run_dir), cfg)
    else:
        record = {
            "overrides": list(overrides),
            "config": result_config(cfg),
            "vocabulary": stages.task_of(cfg).vocabulary,  # the tokenizer's tokens after <pad> <bos> <eos>
        }
        atomic_write_json(run_dir / "run.json", record)
    return stages.Context.create(cfg, run_dir, part)


def run(
    cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str] = (), on_open: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run (or continue) the experiment in `run_dir`; returns the summary. `on_open` is called once the run
    is open (locked, and its run.json written or checked), before any stage."""
    started = time.perf_counter()
    with runlock.hold(run_dir):  # a second run.py on this directory is refused, not run twice
        ctx = open_run(cfg, run_dir, overrides)
        # First, and flushed: a run killed later (the case resume is for) has said where it is, even into a file.
        print(f"run dir: {ctx.run.root}", flush=True)
        try:
            if on_open is not None:
                on_open()
            summary = _walk(ctx)
        finally:
            ctx.metrics.close()
    print(f"run dir: {ctx.run.root}  (this process: {time.perf_counter() - started:.0f}s)")
    return summary


def _walk(ctx: stages.Context) -> dict[str, Any]:
    """Every task of the round graph in order; after each evaluation the summary is published, and the
    run stops after a step that says so (a collapsed round, a round that kept no labels)."""
    summary: dict[str, Any] = {}
    for step in graph.steps(ctx.voters, ctx.cfg.si.rounds):
        results = [graph.run_step_task(ctx, step.kind, step.round, voter) for voter in step.task_voters()]
        stopped = results[0].get("stopped")
        if step.kind == "eval" or stopped:
            summary = publish(ctx, stopped)
        if stopped:
            print(stopped)
            break
    return summary


def publish(ctx: stages.Context, stopped: str | None = None) -> dict[str, Any]:
    summary = report.summarize(ctx, stopped)
    atomic_write_json(ctx.run.summary, summary)
    report.plot(summary, ctx.run.plots)
    if summary["rounds"]:
        ctx.metrics.publish(summary, stages.global_step(ctx.cfg, summary["rounds"][-1]["round"]), ctx.run.plots)
    print("\n" + report.round_table(summary), flush=True)
    if summary["drift"]:
        print(summary["drift"], flush=True)
    return summary
