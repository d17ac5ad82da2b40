"""Wall time of self-improvement rounds of an experiment (the default CPU one unless overridden),
split into labelling (the voters' greedy decoding), filtering (sampling prompts, length filter, vote,
oracle audit, writing the round's data), training (all voters) and evaluation.

    python -m benchmarks.round --save-base /tmp/base       # trains the base once, keeps it, times round 1
    python -m benchmarks.round --base /tmp/base            # times round 1 again from that same base
    python -m benchmarks.round --base /tmp/base training.precision=fp32   # Hydra overrides at the end
    python -m benchmarks.round --base /tmp/base --rounds 3 --vs training.length_buckets=4

`--vs "OVERRIDES"` (repeatable) adds a contender: the same rounds from the same base with those overrides
added, timed round by round in turn with the first, so the machine's noise falls on all of them alike;
`vs_first` is a round's total time over the first contender's.

A base stage's outputs (checkpoints, done/base.* and done/eval.round000.json) can be reused by a later
call, also by another checkout of the project: the way to time before and after a change.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir

from benchmarks import common
from selfimprove.config import register_configs, validate
from selfimprove.loop import graph, pipeline, stages
from selfimprove.loop.context import Context
from selfimprove.loop.runstate import eval_stage

BASE_OUTPUTS = ("checkpoints", "done/base.voter*.json", "done/eval.round000.json")


class Stopwatch:
    """Total seconds spent in the functions it wraps."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


def copy_base(source: Path, target: Path) -> None:
    for pattern in BASE_OUTPUTS:
        for path in source.glob(pattern):
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, destination)


def commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=common.CONF.parent
    )
    return out.stdout.strip() or "unknown"


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, help="reuse the base stage of this run directory")
    p.add_argument("--save-base", type=Path, help="train the base here (kept) instead of in a temporary dir")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--vs", action="append", default=[], metavar="OVERRIDES", help="another contender's overrides")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for run.py")
    args = p.parse_args()
    if args.save_base and args.vs:
        p.error("--save-base times one contender; train the base first, then compare with --base")
    common_overrides = [*(["experiment=quick"] if args.quick else []), *args.overrides, "progress=false"]
    contenders = [common_overrides] + [[*common_overrides, *extra.split()] for extra in args.vs]
    register_configs()
    configs = []
    with initialize_config_dir(config_dir=str(common.CONF), version_base="1.3"):
        for overrides in contenders:
            configs.append(compose("config", overrides=overrides))
            validate(configs[-1])
    labelling = Stopwatch()
    stages.complete = labelling.wrap(stages.complete)  # the voters' decoding inside the label stage
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        runs = []
        for index, (cfg, overrides) in enumerate(zip(configs, contenders, strict=True)):
            root = Path(scratch) / f"run{index}"
            root.mkdir()
            if args.base:
                copy_base(args.base, root)
            ctx = pipeline.open_run(cfg, root, overrides)
            rounds = itertools.groupby(graph.steps(ctx.voters, args.rounds), key=lambda step: step.round)
            runs.append((" ".join(overrides[len(common_overrides) :]) or "-", ctx, rounds))
        for _ in range(args.rounds + 1):  # round 0 (the base stage) and each round, contender by contender
            for name, ctx, rounds in runs:
                round_, round_steps = next(rounds)
                rows.append({"contender": name, **time_round(ctx, round_, round_steps, labelling)})
                if round_ == 0 and args.save_base:  # now, before the rounds move the checkpoints on
                    copy_base(ctx.run.root, args.save_base)
    for row in rows:
        first = next(peer for peer in rows if peer["round"] == row["round"])
        if "total_s" in row and "total_s" in first:
            row["vs_first"] = row["total_s"] / first["total_s"]
    info = {**common.machine(ctx.device), "commit": commit(), "overrides": common_overrides}
    columns = ["contender", "round", "labelling_s", "filtering_s", "training_s", "evaluation_s", "total_s", "vs_first"]
    common.emit("round", info, rows, columns, args.json)


# The column each kind of step's time goes to; the label step's is split into labelling and filtering.
COLUMNS = {"base": "training_s", "label": "label_s", "train": "training_s", "eval": "evaluation_s"}


def time_round(ctx: Context, round_: int, steps: Iterable[graph.Step], labelling: Stopwatch) -> dict:
    """Every stage of the round's steps (round 0: the base stage and its evaluation), as the pipeline runs
    them, without the summary published after an evaluation; no figures for a base stage that was reused."""
    if round_ == 0 and ctx.run.is_done(eval_stage(0)):
        return {"round": 0, "reused": True}
    labelling.seconds = 0.0
    spent = dict.fromkeys(COLUMNS.values(), 0.0)
    for step in steps:
        for voter in step.stage_voters():
            start = time.perf_counter()
            graph.KINDS[step.kind].run(ctx, step.round, voter)
            spent[COLUMNS[step.kind]] += time.perf_counter() - start
    label = spent.pop("label_s")
    split = {"labelling_s": labelling.seconds, "filtering_s": label - labelling.seconds} if round_ else {}
    return {"round": round_, **split, **spent, "total_s": label + sum(spent.values())}


if __name__ == "__main__":
    main()
