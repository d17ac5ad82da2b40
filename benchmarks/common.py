"""What every benchmark shares: model shapes from conf/model, the machine, timing, peak FLOPs, output.

Every benchmark runs its contenders side by side in one process and reports ratios, because a
shared 2-core machine is too noisy for absolute figures from separate runs to compare.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from selfimprove.config import ModelConfig, TrainingConfig
from selfimprove.models.native import Transformer
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.tasks import get_task

CONF = Path(__file__).resolve().parents[1] / "conf"
TASK = "copy"  # the task every benchmark draws its data from (the default experiment's)


def tokenizer(task: str = TASK) -> Tokenizer:
    """The tokenizer of `task`'s vocabulary (what a run of that task builds)."""
    return Tokenizer(get_task(task).vocabulary)


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The model shape of conf/model/<name>.yaml (what `model=<name>` selects), with overrides."""
    merged = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / "model" / f"{name}.yaml"))
    return OmegaConf.to_object(OmegaConf.merge(merged, overrides))


def training_config(**overrides: Any) -> TrainingConfig:
    """The training schema's defaults (what the step does: AdamW, grad clip, precision) with overrides."""
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainingConfig), overrides))


def new_model(cfg: ModelConfig, device: torch.device, seed: int = 0, task: str = TASK) -> Transformer:
    """A randomly initialised model of shape `cfg` over `task`'s vocabulary."""
    torch.manual_seed(seed)
    return Transformer(cfg, tokenizer(task).vocab_size).to(device)


def llama_like(cfg: ModelConfig, device: torch.device, seed: int = 0, task: str = TASK) -> torch.nn.Module:
    """A Hugging Face Llama of the same width, depth, heads, ffn and vocabulary (`task`'s). rope_theta=inf is
    how the paper's code turns Llama's rotary embedding off (NoPE)."""
    try:
        from transformers import LlamaConfig, LlamaForCausalLM
    except ImportError:
        raise SystemExit("this comparison needs Hugging Face transformers: pip install -e '.[bench]'") from None
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=tokenizer(task).vocab_size,
        hidden_size=cfg.n_embd,
        intermediate_size=cfg.ffn_hidden,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_head,
        max_position_embeddings=cfg.block_size,
        rope_theta=float("inf"),
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config).to(device)


def machine(device: torch.device) -> dict[str, Any]:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = next(
            (line.split(":", 1)[1].strip() for line in _cpuinfo() if line.startswith("model name")),
            platform.processor(),
        )
    return {
        "device": name,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": dt.date.today().isoformat(),
    }


def _cpuinfo() -> list[str]:
    path = Path("/proc/cpuinfo")
    return path.read_text().splitlines() if path.exists() else []


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Fastest of `repeats` timed calls (the caller warms up first): the least noisy estimate of cost."""
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def peak_flops(dtype: torch.dtype, device: torch.device, size: int = 4096) -> float:
    """The machine's matmul peak in `dtype`, measured: FLOP/s of a large square matmul (MFU's denominator)."""
    a = torch.randn(size, size, device=device).to(dtype)
    a @ a
    seconds = best_seconds(lambda: a @ a, device, repeats=10)
    return 2 * size**3 / seconds


def peaks(device: torch.device, quick: bool = False) -> dict[str, float]:
    """Measured matmul peak per precision name, the denominators of MFU. `quick`: a 512-square matmul, a
    rough figure in seconds (a 4096-square bf16 matmul takes minutes on a CPU without bf16 instructions)."""
    size = 512 if quick else 4096
    return {"fp32": peak_flops(torch.float32, device, size), "bf16": peak_flops(torch.bfloat16, device, size)}


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    return p


def emit(name: str, info: dict[str, Any], rows: Sequence[dict[str, Any]], columns: Sequence[str], path: Path | None):
    """Print `rows` as a Markdown table of `columns` (as pasted into docs/performance.md), then every figure
    as one JSON object on the last line; also write that JSON to `path`."""
    print(f"# {name} on {info['device']} ({info['torch_threads']} threads, torch {info['torch']}, {info['date']})")
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in rows:
        print("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    result = {"benchmark": name, "machine": info, "results": list(rows)}
    print(json.dumps(result))
    if path is not None:
        path.write_text(json.dumps(result, indent=1) + "\n")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)
