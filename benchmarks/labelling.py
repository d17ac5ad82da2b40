"""Labelling throughput: greedy answers to copy prompts per second, ours (batched, preallocated KV
cache, rows leave at EOS) against the seed's full recomputation (the whole prefix re-run at every
step, rows stop-checked in Python) and Hugging Face `LlamaForCausalLM.generate` of the same shape.

Weights are random and EOS is masked out, so every contender emits exactly answer length + 1 tokens
per row: the same work for all, and the worst case for ours (no row leaves early).

    python -m benchmarks.labelling                    # tiny and small, batch 256 and 1024, lengths 10 30 60
    python -m benchmarks.labelling --voters 5         # also: 5 voters one by one vs stacked with vmap
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch.func import functional_call, stack_module_state

from benchmarks import common
from selfimprove.loop.train import resolve_device
from selfimprove.models.generate import Generation, generate
from selfimprove.models.native import KVCache, Transformer
from selfimprove.models.precision import autocast
from selfimprove.models.tokenizer import BOS, EOS, PAD
from selfimprove.tasks import get_task

Decode = Callable[[torch.Tensor, int], object]  # (prompt ids, tokens to generate) -> whatever it returns

# Recomputation costs O(length^2) forward tokens; past this many model FLOPs a point is skipped (minutes).
RECOMPUTE_FLOP_LIMIT = 3.5e13


def prompts(batch: int, length: int, device: torch.device) -> torch.Tensor:
    """BOS + `batch` copy prompts of `length` digits ("1234=")."""
    examples = get_task("copy").sample(length, batch, np.random.default_rng(length))
    ids = common.tokenizer("copy").encode_batch([e.prompt for e in examples])
    return torch.from_numpy(np.concatenate([np.full((batch, 1), BOS), ids], axis=1)).to(device)


def never_eos(head: torch.nn.Module) -> None:
    """Mask EOS in `head`'s logits, so that no row ends early (equal work for every contender)."""

    def hook(_module: torch.nn.Module, _inputs: tuple, logits: torch.Tensor) -> torch.Tensor:
        logits[..., EOS] = float("-inf")
        return logits

    head.register_forward_hook(hook)


def labeller(model_name: str, longest: int, device: torch.device, seed: int = 0) -> Transformer:
    """A randomly initialised model of `model_name`'s shape for copy prompts up to `longest` digits, EOS masked."""
    block_size = get_task("copy").sequence_tokens(longest)
    model = common.new_model(common.model_config(model_name, block_size=block_size), device, seed).eval()
    never_eos(model.head)
    return model


@torch.inference_mode()
def recompute(model: Transformer, ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """The seed's decoding: no cache, the whole sequence through the model for every new token."""
    done = [False] * ids.shape[0]
    for _ in range(max_new_tokens):
        token = model(ids)[:, -1].argmax(-1)
        ids = torch.cat([ids, token[:, None]], dim=1)
        for row, t in enumerate(token.tolist()):
            done[row] = done[row] or t == EOS
        if all(done):
            break
    return ids


@torch.inference_mode()
def stacked_generate(models: list[Transformer], ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
    """All voters in one pass: their weights stacked, every decoding step vmapped over the voters."""
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0])  # the module structure functional_call runs (ties kept)
    cfg, (B, T) = models[0].cfg, ids.shape
    shape = (len(models), B, cfg.n_head, T + max_new_tokens, cfg.n_embd // cfg.n_head)
    keys = [ids.new_empty(shape, dtype=params["tok_emb.weight"].dtype) for _ in range(cfg.n_layer)]
    values = [torch.empty_like(k) for k in keys]

    def step(p: dict, b: dict, k: list, v: list, x: torch.Tensor, pos: int) -> torch.Tensor:
        return functional_call(skeleton, (p, b), (x,), {"cache": KVCache(k, v), "pos": pos})[:, -1].argmax(-1)

    prefill = torch.vmap(step, in_dims=(0, 0, 0, 0, None, None))
    decode = torch.vmap(step, in_dims=(0, 0, 0, 0, 0, None))
    tokens = [prefill(params, buffers, keys, values, ids, 0)]  # (K, B) each
    for s in range(max_new_tokens - 1):
        tokens.append(decode(params, buffers, keys, values, tokens[-1][..., None], T + s))
    return torch.stack(tokens, -1)


def hf_generate(model: torch.nn.Module) -> Decode:
    def run(ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,  # masks EOS, as the hook does for ours
            do_sample=False,
            eos_token_id=EOS,
            pad_token_id=PAD,
        )

    return run


def measure(name: str, run: Decode, ids: torch.Tensor, answer: int, repeats: int) -> dict:
    device = ids.device
    run(ids[:8], answer + 1)  # warm up
    seconds = common.best_seconds(lambda: run(ids, answer + 1), device, repeats)
    batch = ids.shape[0]
    return {
        "contender": name,
        "batch": batch,
        "length": answer,
        "seconds": seconds,
        "prompts_per_s": batch / seconds,
        "tokens_per_s": batch * (answer + 1) / seconds,
    }


def recompute_flops(num_params: int, batch: int, prompt: int, new: int) -> float:
    """Forward FLOPs of recomputation: every step re-runs the whole sequence so far."""
    return 2 * num_params * batch * sum(prompt + s for s in range(new))


def contenders(model_name: str, args, device: torch.device) -> dict[str, tuple[str, Decode]]:
    """name -> (precision, decode): ours in fp32 and in bf16 autocast (what `precision: auto` picks on
    AMX CPUs and GPUs), the recomputation baseline, and transformers in fp32 and in bf16 weights."""
    ours = labeller(model_name, max(args.lengths), device)

    def ours_bf16(ids: torch.Tensor, n: int) -> Generation:
        with autocast("bf16", device):
            return generate(ours, ids, n)

    out: dict[str, tuple[str, Decode]] = {
        "ours": ("fp32", lambda ids, n: generate(ours, ids, n)),
        "ours-bf16": ("bf16", ours_bf16),
        "recompute": ("fp32", lambda ids, n: recompute(ours, ids, n)),
    }
    if not args.no_transformers:
        hf = common.llama_like(ours.cfg, device).eval()
        out["transformers"] = ("fp32", hf_generate(hf))
        out["transformers-bf16"] = ("bf16", hf_generate(copy.deepcopy(hf).to(torch.bfloat16)))
    return out


def throughput(args, device: torch.device, peaks: dict[str, float]) -> list[dict]:
    rows = []
    for model_name in args.models:
        decoders = contenders(model_name, args, device)
        num_params = common.new_model(common.model_config(model_name), device).num_params()
        for batch in args.batches:
            for length in args.lengths:
                ids = prompts(batch, length, device)
                rows += point(model_name, decoders, ids, length, num_params, peaks, args)
    return rows


def point(
    model_name: str, decoders: dict, ids: torch.Tensor, length: int, num_params: int, peaks: dict, args
) -> list[dict]:
    """Every contender labelling one batch of prompts. ours_vs: how many times faster ours is, in the same
    precision; mfu: the FLOPs a cached decoder needs (2 x params per token fed) per second over the peak."""
    rows = []
    needed = 2 * num_params * ids.shape[0] * (ids.shape[1] + length)
    for name, (precision, decode) in decoders.items():
        if name == "recompute" and recompute_flops(num_params, *ids.shape, length + 1) > args.recompute_flops:
            continue
        repeats = 1 if name == "recompute" else args.repeats  # minutes long: noise is small
        row = {"model": model_name, "precision": precision, **measure(name, decode, ids, length, repeats)}
        row["mfu"] = needed / row["seconds"] / peaks[precision]
        rows.append(row)
    for row in rows:
        ours = next(r for r in rows if r["contender"].startswith("ours") and r["precision"] == row["precision"])
        row["ours_vs"] = ours["prompts_per_s"] / row["prompts_per_s"]
    print(" | ".join(f"{model_name} {tuple(ids.shape)} {r['contender']} {r['seconds']:.2f}s" for r in rows), flush=True)
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """One row per point: ours in prompts/s, and how many times faster ours is than each contender
    (same precision; `bf16_vs_transformers`: ours in bf16 against transformers' default fp32)."""
    out = []
    for key in dict.fromkeys((r["model"], r["batch"], r["length"]) for r in rows):
        at = {r["contender"]: r for r in rows if (r["model"], r["batch"], r["length"]) == key}
        row = dict(zip(("model", "batch", "length"), key, strict=True))
        row["ours_prompts_per_s"] = at["ours"]["prompts_per_s"]
        row["ours_bf16_prompts_per_s"] = at["ours-bf16"]["prompts_per_s"]
        row["ours_mfu"] = at["ours"]["mfu"]
        for name in ("recompute", "transformers", "transformers-bf16"):
            row[f"vs_{name}"] = at[name]["ours_vs"] if name in at else None
        if "transformers" in at:
            row["bf16_vs_transformers"] = at["ours-bf16"]["prompts_per_s"] / at["transformers"]["prompts_per_s"]
        out.append(row)
    return out


def voters(args, device: torch.device) -> list[dict]:
    """K voters labelling one batch: one by one against stacked weights + vmap."""
    models = [labeller("tiny", max(args.lengths), device, seed=k) for k in range(args.voters)]
    rows = []
    for length in args.lengths:
        ids = prompts(args.batches[0], length, device)
        one_by_one = measure("one_by_one", lambda x, n: [generate(m, x, n) for m in models], ids, length, args.repeats)
        stacked = measure("vmap", lambda x, n: stacked_generate(models, x, n), ids, length, args.repeats)
        for row in (one_by_one, stacked):
            row.update(model="tiny", voters=args.voters, vs_one_by_one=one_by_one["seconds"] / row["seconds"])
            rows.append(row)
    return rows


def profile(precision: str, args, device: torch.device) -> None:
    """Where ours spends one labelling batch (the first model, batch and length asked for): torch.profiler's
    operators by self time, and the prefill (the prompts' one forward pass) against the whole."""
    length = args.lengths[0]
    model = labeller(args.models[0], max(args.lengths), device)
    ids = prompts(args.batches[0], length, device)

    def decode() -> Generation:
        with autocast(precision, device):
            return generate(model, ids, length + 1)

    def prefill() -> torch.Tensor:
        with autocast(precision, device), torch.inference_mode():
            return model(ids)

    decode()
    whole, first = common.best_seconds(decode, device, 2), common.best_seconds(prefill, device, 2)
    with torch.profiler.profile() as prof:
        decode()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))
    point = f"{args.models[0]} {precision} prompts {tuple(ids.shape)} -> {length + 1} tokens"
    print(f"{point}: {whole:.3f} s, of which the prefill {first:.3f} s")


def main() -> None:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["tiny", "small"])
    p.add_argument("--batches", nargs="+", type=int, default=[256, 1024])
    p.add_argument("--lengths", nargs="+", type=int, default=[10, 30, 60], help="answer lengths")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--voters", type=int, default=0, help="also compare K voters one by one and vmapped (0: skip)")
    p.add_argument("--recompute-flops", type=float, default=RECOMPUTE_FLOP_LIMIT, help="skip longer recomputations")
    p.add_argument("--no-transformers", action="store_true", help="leave out the Hugging Face Llama")
    p.add_argument("--profile", choices=["fp32", "bf16"], help="only profile ours, in this precision, at one point")
    args = p.parse_args()
    if args.quick:
        args.models, args.batches, args.lengths, args.repeats = ["tiny"], [16], [4], 1
        args.voters = args.voters and 2
    device = resolve_device(args.device)
    if args.profile:
        return profile(args.profile, args, device)
    peaks = common.peaks(device, args.quick)
    info = {**common.machine(device), "peak_flops": peaks}
    rows = throughput(args, device, peaks)
    columns = ["model", "batch", "length", "contender", "precision", "seconds", "prompts_per_s", "tokens_per_s"]
    columns += ["mfu", "ours_vs"]
    common.emit("labelling", info, rows, columns, args.json and args.json.with_suffix(".throughput.json"))
    table = summary(rows)
    common.emit("labelling-summary", info, table, list(table[0]), args.json and args.json.with_suffix(".summary.json"))
    if args.voters:
        rows = voters(args, device)
        columns = ["model", "voters", "batch", "length", "contender", "seconds", "prompts_per_s", "vs_one_by_one"]
        common.emit("labelling-voters", info, rows, columns, args.json and args.json.with_suffix(".voters.json"))


if __name__ == "__main__":
    main()
