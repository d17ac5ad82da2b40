"""Starting a run from another run's base models (`base_from=<run dir>`): the base stage of each voter
adopts that run's base checkpoint instead of training, so a sweep over filters, schedules or noise from
one base spends no time on base training.

The source must hold each voter's base model: a run with `si=none` (its latest checkpoint is the base)
or with `si.keep_round_checkpoints=true` (round_000.pt). Its model, task, task parameters and base set
must be this run's; the base-training settings (`training.base_steps`, ...) are the source's. Voter k
adopts the source's voter k, or the k-th of `base_from_voters` (a vote among the voters whose bases
learnt, when one of the source's did not).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from selfimprove.config import role_of, saved_value
from selfimprove.errors import BaseFromError, CorruptFileError
from selfimprove.loop.checkpoint import Checkpoint
from selfimprove.store import RunDir


def defines_base(key: str) -> bool:
    """What the base models are: their shape, and the task and difficulties they learned (not how they are
    evaluated, nor how the run runs)."""
    return key.startswith(("model.", "data.")) and role_of(key) is None


def base_checkpoint(source: RunDir, voter: int, stage: str) -> Path | None:
    """The voter's base checkpoint in `source`: round_000.pt when kept, else latest.pt while it still holds
    the base stage's model (no round has trained it further); None when neither does."""
    kept = source.checkpoint(voter, "round_000")
    if kept.exists():
        return kept
    latest = source.checkpoint(voter)
    if latest.exists() and source.is_done(stage) and Checkpoint.load(latest).stage == stage:
        return latest
    return None


def check(base_from: str, config: Mapping[str, Any], vocabulary: list[str], sources: list[tuple[int, str]]) -> None:
    """Refuse, in one line, a source that is not a run, learned something else, or no longer holds a base
    model for each of `sources` (the source's voter and its base stage, one per voter of this run). `config`
    is this run's flattened result config."""
    source = RunDir(base_from)
    try:
        saved = source.record()
    except CorruptFileError:
        raise BaseFromError(
            f"base_from={base_from} is not a selfimprove run directory (no readable run.json)"
        ) from None
    if saved.get("vocabulary") != vocabulary:
        raise BaseFromError(f"base_from={base_from} was trained on another vocabulary: {saved.get('vocabulary')}")
    theirs = saved["config"]
    differ = [  # a key the source's run.json lacks (the config gained it later): as on resume (saved_value)
        f"{key}: {saved_value(theirs, key, None)!r} there, {value!r} here"
        for key, value in config.items()
        if defines_base(key) and saved_value(theirs, key, value) != value
    ]
    if differ:
        raise BaseFromError(f"base_from={base_from} trained another base: " + "; ".join(differ))
    held = saved_value(theirs, "si.filters.voters", 1)
    for voter, stage in sources:
        if voter >= held:
            raise BaseFromError(
                f"base_from={base_from} has {held} voter(s), 0 to {held - 1}, and this run asks for its voter {voter}:"
                " fewer voters here (si.filters.voters), or pick which of its voters with base_from_voters=[...]"
            )
        if base_checkpoint(source, voter, stage) is None:
            raise BaseFromError(
                f"base_from={base_from} holds no base model for voter {voter} (its rounds trained it further): start"
                " from a run with si=none or si.keep_round_checkpoints=true"
            )


def adopt(run: RunDir, base_from: str, voter: int, stage: str, source_voter: int, source_stage: str) -> dict[str, Any]:
    """The base stage `stage` of `voter` from the source's `source_voter`: its checkpoint copied in as this
    stage's (so that a later base_from can start from this run in turn), its marker's result noted."""
    if run.is_done(stage):
        return run.result(stage)
    source = RunDir(base_from)
    path = base_checkpoint(source, source_voter, source_stage)
    if path is None:
        raise BaseFromError(f"base_from={base_from} no longer holds a base model for voter {source_voter}")
    Checkpoint.load(path).restarted(stage).save(run.checkpoint(voter))
    trained = source.result(source_stage)
    result = {
        **trained,
        "base_from": str(Path(base_from).resolve()),
        "base_from_voter": source_voter,
        "source_seconds": trained["seconds"],
        "seconds": 0.0,
    }
    run.mark_done(stage, result)
    return result
