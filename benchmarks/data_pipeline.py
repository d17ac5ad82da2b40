"""Data pipeline cost: building a training batch (drawing task instances and stored labels, tokenising,
padding, loss masks) as a share of the training step it feeds, in the same process; and the share of
the step's token positions that are padding, with the batch whole and cut into length buckets.

    python -m benchmarks.data_pipeline        # tiny at batch 128 and small at batch 1024; target < 5%
    python -m benchmarks.data_pipeline --models tiny --buckets 1 2 4 8
"""

from __future__ import annotations

import numpy as np
import torch

from benchmarks import common
from selfimprove.config import TrainingConfig
from selfimprove.loop.data import BaseSource, MixtureSampler, Source, round_mixture
from selfimprove.loop.train import make_optimizer, resolve_device, train_step
from selfimprove.models.tokenizer import PAD
from selfimprove.tasks import get_task

POINTS = [("tiny", 128), ("small", 1024)]


def sources(kind: str) -> list[tuple[Source, float]]:
    """`base`: the base stage's fresh 1-10 digit copies; `round`: round 3's mixture of base data and
    three stored rounds of 8000 self-labelled examples (lengths 11, 12, 13), default shares."""
    task = get_task("copy")
    base = BaseSource(task, list(range(1, 11)))
    if kind == "base":
        return [(base, 1.0)]
    rng = np.random.default_rng(0)
    rounds = [task.sample(difficulty, 8000, rng) for difficulty in (11, 12, 13)]
    return round_mixture(base, rounds, newest_share=0.2, base_share=0.5)


def measure(
    model_name: str, batch_size: int, kind: str, buckets: int, training: TrainingConfig, device: torch.device, args
) -> dict:
    model = common.new_model(common.model_config(model_name), device)
    optimizer = make_optimizer(model, training, device)
    tokenizer = common.tokenizer("copy")
    sampler = MixtureSampler(tokenizer, sources(kind), batch_size, np.random.default_rng(1), buckets=buckets)
    sampler.next_batch()
    build = common.best_seconds(lambda: [sampler.next_batch() for _ in range(args.batches)], device, repeats=3)
    batches = [sampler.next_batch().to(device) for _ in range(args.steps + 1)]
    train_step(model, optimizer, batches[0], training, device)  # warm up
    step = common.best_seconds(
        lambda: [train_step(model, optimizer, batch, training, device) for batch in batches[1:]], device, repeats=2
    )
    batch_ms, step_ms = 1000 * build / args.batches, 1000 * step / args.steps
    computed = sum(batch.tokens for batch in batches)
    padding = sum(int((part.inputs == PAD).sum()) for batch in batches for part in batch.parts)
    return {
        "model": model_name,
        "batch": batch_size,
        "data": kind,
        "buckets": buckets,
        "padding": padding / computed,
        "batch_ms": batch_ms,
        "step_ms": step_ms,
        "share_of_step": batch_ms / step_ms,
    }


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=50, help="batches built per measurement")
    p.add_argument("--steps", type=int, default=3, help="training steps timed per point")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--models", nargs="+", default=[name for name, _ in POINTS], help="of: tiny, small")
    p.add_argument("--buckets", type=int, nargs="+", default=[1, 4], help="length buckets per batch to compare")
    args = p.parse_args()
    device = resolve_device(args.device)
    training = common.training_config(precision=args.precision)
    points = [("tiny", 8)] if args.quick else [(name, batch) for name, batch in POINTS if name in args.models]
    rows = [
        measure(name, batch, kind, buckets, training, device, args)
        for name, batch in points
        for kind in ("base", "round")
        for buckets in args.buckets
    ]
    info = {**common.machine(device), "precision": args.precision}
    columns = ["model", "batch", "data", "buckets", "padding", "batch_ms", "step_ms", "share_of_step"]
    common.emit("data_pipeline", info, rows, columns, args.json)


if __name__ == "__main__":
    main()
