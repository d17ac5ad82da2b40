"""The in-process round loop: base training, then label -> train -> evaluate per round; resume; collapse stop."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from selfimprove import report, stages
from selfimprove.store import RunDir, atomic_write_json, read_json

# Keys that may change when a run resumes: they change how it runs, not what it computes.
RESUME_FREE = (
    "resume",
    "progress",
    "logger",
    "si.rounds",
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
    changed = [
        f"{key}: {saved['config'].get(key)!r} -> {value!r}"
        for key, value in result_config(cfg).items()
        if saved["config"].get(key, value) != value
    ] + [f"{key}: removed" for key in saved["config"] if key not in result_config(cfg)]
    if changed:
        raise ResumeError("resuming would change results, refused: " + "; ".join(changed))


def open_run(cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str] = ()) -> stages.Context:
    """The stage context for `run_dir`: records run.json in a new run, refuses a result-changing resume."""
    run_dir = Path(run_dir)
    if (run_dir / "run.json").exists():
        check_resumable(saved_run(run_dir), cfg)
    else:
        atomic_write_json(run_dir / "run.json", {"overrides": list(overrides), "config": result_config(cfg)})
    return stages.Context.create(cfg, run_dir)


def run(cfg: DictConfig, run_dir: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Run (or continue) the experiment in `run_dir`; returns the summary."""
    started = time.perf_counter()
    ctx = open_run(cfg, run_dir, overrides)
    try:
        summary = _rounds(ctx)
    finally:
        ctx.metrics.close()
    print(f"run dir: {ctx.run.root}  (this process: {time.perf_counter() - started:.0f}s)")
    return summary


def _rounds(ctx: stages.Context) -> dict[str, Any]:
    cfg = ctx.cfg
    for voter in range(ctx.voters):
        stages.train_base(ctx, voter)
    stages.evaluate(ctx, 0)
    summary = publish(ctx)
    for round_ in range(1, cfg.si.rounds + 1):
        stages.label(ctx, round_)
        for voter in range(ctx.voters):
            stages.train_round(ctx, round_, voter)
        stages.evaluate(ctx, round_)
        stopped = collapse(ctx.run, round_, cfg.si.collapse_threshold)
        summary = publish(ctx, stopped)
        if stopped:
            print(stopped)
            break
    return summary


def collapse(run: RunDir, round_: int, threshold: float) -> str | None:
    """A message when accuracy at the round's newest length fell below `threshold` (si.collapse_threshold),
    read from the round's markers."""
    newest = max(stages.round_targets(run, round_))
    accuracy = stages.accuracy_after(run, round_)[newest]
    if accuracy >= threshold:
        return None
    return (
        f"collapse: after round {round_} accuracy at length {newest} is {accuracy:.3f} < "
        f"si.collapse_threshold={threshold}; stopping (every finished round is kept in {run.root})"
    )


def first_collapse(run: RunDir, threshold: float, rounds: int) -> tuple[int, str] | None:
    """The first of rounds 1..`rounds` that is evaluated and collapsed, with its message."""
    for round_ in range(1, rounds + 1):
        if run.is_done(stages.eval_stage(round_)):
            stopped = collapse(run, round_, threshold)
            if stopped:
                return round_, stopped
    return None


def publish(ctx: stages.Context, stopped: str | None = None) -> dict[str, Any]:
    summary = report.summarize(ctx, stopped)
    atomic_write_json(ctx.run.summary, summary)
    report.plot(summary, ctx.run.plots)
    print("\n" + report.round_table(summary), flush=True)
    return summary
