"""A run in one process: its run directory (a new one, or a resume that must not change results), the
round graph of `graph` walked stage by stage, and the summary published after every evaluation."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from selfimprove.config import BASE, HOW, keys_with, role_of, saved_value
from selfimprove.errors import CorruptFileError, ResumeError
from selfimprove.loop import base_from, graph, runlock
from selfimprove.loop.context import Context, task_of
from selfimprove.loop.publish import publish
from selfimprove.loop.runstate import base_stage
from selfimprove.loop.stages import base_sources
from selfimprove.loop.train import resolve_device
from selfimprove.results import wandb_sink
from selfimprove.store import RunDir, read_json


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def resume_free(key: str) -> bool:
    """Whether a (dotted) config key may change on resume: it changes how the run runs, not what it computes."""
    return role_of(key) == HOW


def result_config(cfg: DictConfig) -> dict[str, Any]:
    """The flattened config values that determine a run's results. A run that adopts its base models
    (base_from) records the base-training settings they were trained with: its source's, as far as the
    source's run.json can be read (a source that cannot is refused by the base_from check)."""
    flat = {k: v for k, v in _flatten(OmegaConf.to_container(cfg, resolve=True)).items() if not resume_free(k)}
    source = RunDir(cfg.base_from or "")
    if cfg.base_from and source.is_run():
        with contextlib.suppress(CorruptFileError, KeyError):
            theirs = source.record()["config"]
            flat.update({key: saved_value(theirs, key, flat[key]) for key in keys_with(BASE)})
    return flat


def saved_run(run_dir: Path, named: str | None = None) -> dict[str, Any]:
    """run.json of an existing run directory, or ResumeError when `run_dir` is not one; `named` is how the
    user named the directory (default: resume=<run_dir>)."""
    run = RunDir(run_dir)
    named = named or f"resume={run_dir}"
    if not run_dir.is_dir():
        raise ResumeError(f"{named}: no such directory")
    if not run.is_run():
        raise ResumeError(f"{named} is not a selfimprove run directory (no run.json)")
    return run.record()


def check_resumable(saved: dict[str, Any], cfg: DictConfig) -> None:
    vocabulary = task_of(cfg).vocabulary
    if saved.get("vocabulary", vocabulary) != vocabulary:
        raise ResumeError(f"resuming would change the vocabulary, refused: {saved['vocabulary']} -> {vocabulary}")
    # With base_from, the base-training settings are the source's, recorded when the run began (the source may be
    # gone since): they do not change what this run computes.
    adopted = keys_with(BASE) if cfg.base_from else []
    mine = result_config(cfg)  # once: under base_from it reads the source's run.json
    changed = [
        f"{key}: {saved_value(saved['config'], key, None)!r} -> {value!r}"
        for key, value in mine.items()
        if key not in adopted and saved_value(saved["config"], key, value) != value
    ] + [f"{key}: removed" for key in saved["config"] if key not in mine]
    if changed:
        raise ResumeError("resuming would change results, refused: " + "; ".join(changed))


def check_base_from(cfg: DictConfig, run_dir: Path) -> None:
    """`base_from` names a run that holds base models this run can start from (unless its base is adopted)."""
    base_stages = [base_stage(voter) for voter in range(cfg.si.filters.voters)]
    if cfg.base_from and not all(RunDir(run_dir).is_done(stage) for stage in base_stages):
        base_from.check(cfg.base_from, result_config(cfg), task_of(cfg).vocabulary, base_sources(cfg))


def open_run(cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str] = (), part: str | None = None) -> Context:
    """The stage context for `run_dir`: records run.json in a new run, refuses a result-changing resume.
    `part`: the stage a sweep job runs (None: the whole run, in this process)."""
    run_dir = Path(run_dir)
    resolve_device(cfg.training.device)  # here, where it runs, and before run.json: an absent GPU is one line
    wandb_sink.check(cfg.logger)  # logger.mode=online without credentials or network: one line, before any work
    check_base_from(cfg, run_dir)
    run = RunDir(run_dir)
    if run.is_run():
        record = saved_run(run_dir)
        check_resumable(record, cfg)
    else:
        record = {
            "overrides": list(overrides),
            "config": result_config(cfg),
            "vocabulary": task_of(cfg).vocabulary,  # the tokenizer's tokens after <pad> <bos> <eos>
        }
    if record.get("rounds") != cfg.si.rounds:  # how far the run goes now (a resume may extend or shorten it)
        run.write_record({**record, "rounds": cfg.si.rounds})
    return Context.create(cfg, run_dir, part)


def run(
    cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str] = (), on_open: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Run (or continue) the experiment in `run_dir`; returns the summary. `on_open` is called once the run
    is open (locked, and its run.json written or checked), before any stage, when there is a stage to run."""
    started = time.perf_counter()
    with runlock.hold(run_dir):  # a second run.py on this directory is refused, not run twice
        ctx = open_run(cfg, run_dir, overrides)
        # First, and flushed: a run killed later (the case resume is for) has said where it is, even into a file.
        print(f"run dir: {ctx.run.root}", flush=True)
        try:
            left = work_left(ctx)
            if on_open is not None and left:  # a resume with nothing to do leaves the run as it was
                on_open()
            _walk(ctx)
            summary = read_json(ctx.run.summary)
            if not left:
                done = len(summary["rounds"]) - 1
                print(f"nothing to do: {done} round(s) done, si.rounds={ctx.si.rounds}", flush=True)
        finally:
            ctx.metrics.close()
    print(f"run dir: {ctx.run.root}  (this process: {time.perf_counter() - started:.0f}s)")
    return summary


def work_left(ctx: Context) -> bool:
    """Whether a stage of the round graph, up to where the run stops, has not run yet."""
    steps = graph.steps(ctx.voters, ctx.si.rounds)
    stop = graph.first_stop(ctx.cfg, ctx.run, steps)
    upto = steps[: stop[0] + 1] if stop else steps
    return any(not ctx.run.is_done(stage) for step in upto for stage in step.stages())


def _walk(ctx: Context) -> None:
    """Every stage of the round graph in order, until a step that stops the run (a collapsed round, a round that
    kept no labels). `graph.run_stage` publishes the summary after each evaluation that ran here and at a stop;
    an evaluation found done is published only if none after it is, so a resume shows its table once."""
    unpublished = False
    for step in graph.steps(ctx.voters, ctx.si.rounds):
        results = [graph.run_stage(ctx, step, voter) for voter in step.stage_voters()]
        if results[0]["published"]:
            unpublished = False
        elif step.kind == "eval":
            unpublished = True
        if results[0]["stopped"]:
            print(results[0]["stopped"])
            break
    if unpublished:
        publish(ctx)
