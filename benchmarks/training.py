"""Training throughput: tokens/s and model FLOPs utilisation of one optimiser step, ours in fp32 and
bf16 autocast, eager and compiled, against a Hugging Face Llama of the same shape doing the same
step (forward, fp32 loss, backward, grad clip, AdamW) on the same batches.

    python -m benchmarks.training                      # tiny@128 and small@256 on this machine
    python -m benchmarks.training --models small --batch 1024
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from benchmarks import common
from selfimprove.loop.data import BaseSource, MixtureSampler, StepBatch
from selfimprove.loop.train import make_optimizer, resolve_device, train_step
from selfimprove.tasks import get_task

DEFAULT_BATCH = {"tiny": 128, "small": 256}  # the CPU training batch of tiny; small at a CPU-sized batch


@dataclass
class Contender:
    name: str
    precision: str  # fp32 | bf16
    compile: bool = False
    transformers: bool = False


def contenders(compile_too: bool) -> list[Contender]:
    out = []
    for precision in ("fp32", "bf16"):
        out.append(Contender("ours", precision))
        if compile_too:
            out.append(Contender("ours+compile", precision, compile=True))
        out.append(Contender("transformers", precision, transformers=True))
    return out


def copy_batches(batch_size: int, count: int, device: torch.device) -> list[StepBatch]:
    """Batches of the default experiment's base data (copy, 1-10 digits), built up front so that
    only the step is timed (benchmarks.data_pipeline times building them)."""
    base = BaseSource(get_task("copy"), list(range(1, 11)))
    sampler = MixtureSampler(common.tokenizer("copy"), [(base, 1.0)], batch_size, np.random.default_rng(0))
    return [sampler.next_batch().to(device) for _ in range(count)]


def measure(
    contender: Contender, model_name: str, batches: list[StepBatch], device: torch.device, repeats: int, peak: float
) -> dict:
    cfg = common.model_config(model_name)
    training = common.training_config(precision=contender.precision)
    ours = common.new_model(cfg, device)
    if contender.transformers:
        model = common.llama_like(cfg, device)

        # train_step passes the batch's position ids too: none here (batches of a model without coupled positions)
        def forward(ids: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
            return model(input_ids=ids, use_cache=False).logits
    else:
        model = ours
        forward = torch.compile(model) if contender.compile else model
    model.train()
    optimizer = make_optimizer(model, training, device)

    def steps(todo: list[StepBatch]) -> None:
        for batch in todo:
            train_step(forward, optimizer, batch, training, device)

    first = common.best_seconds(lambda: steps(batches[:1]), device, repeats=1)  # includes compiling
    steps(batches[:2])
    seconds = common.best_seconds(lambda: steps(batches), device, repeats)
    parts = [part for batch in batches for part in batch.parts]
    tokens = sum(part.inputs.numel() for part in parts)
    flops = sum(ours.flops_per_token(part.inputs.shape[1]) * part.inputs.numel() for part in parts)
    return {
        "model": model_name,
        "batch": sum(len(part.inputs) for part in batches[0].parts),
        "contender": contender.name,
        "precision": contender.precision,
        "step_ms": 1000 * seconds / len(batches),
        "tokens_per_s": tokens / seconds,
        "mfu": flops / seconds / peak,
        "first_step_s": first,
    }


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["tiny", "small"])
    p.add_argument("--batch", type=int, help="one batch size for every model (default: tiny 128, small 256)")
    p.add_argument("--steps", type=int, help="steps per timed repeat (default: tiny 20, small 4)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--no-compile", action="store_true", help="leave out torch.compile (slow to compile on a CPU)")
    p.add_argument("--no-transformers", action="store_true", help="leave out the Hugging Face Llama")
    args = p.parse_args()
    device = resolve_device(args.device)  # TF32 on CUDA, as in training
    if args.quick:
        args.models, args.batch, args.steps, args.repeats, args.no_compile = ["tiny"], 8, 2, 1, True
    peaks = common.peaks(device, args.quick)
    rows = []
    for model_name in args.models:
        batch_size = args.batch or DEFAULT_BATCH.get(model_name, 256)
        count = args.steps or (20 if model_name == "tiny" else 4)
        batches = copy_batches(batch_size, count, device)
        for contender in contenders(not args.no_compile):
            if contender.transformers and args.no_transformers:
                continue
            rows.append(measure(contender, model_name, batches, device, args.repeats, peaks[contender.precision]))
    for row in rows:
        row["vs_transformers"] = _ratio(rows, row, contender="transformers", precision=row["precision"])
        row["vs_fp32"] = _ratio(rows, row, contender=row["contender"], precision="fp32")
    info = {**common.machine(device), "peak_flops": peaks}
    columns = ["model", "batch", "contender", "precision", "step_ms", "tokens_per_s", "mfu"]
    columns += ["vs_transformers", "vs_fp32", "first_step_s"]
    common.emit("training", info, rows, columns, args.json)


def _ratio(rows: list[dict], row: dict, contender: str, precision: str) -> float | None:
    """`row`'s tokens/s over that of `contender` in `precision` at the same model and batch."""
    for peer in rows:
        same_point = peer["model"] == row["model"] and peer["batch"] == row["batch"]
        if same_point and peer["contender"] == contender and peer["precision"] == precision:
            return row["tokens_per_s"] / peer["tokens_per_s"]
    return None


if __name__ == "__main__":
    main()
