"""Numeric precision of training and decoding: fp32, bf16 autocast, or auto (bf16 where it is fast)."""

from __future__ import annotations

import contextlib
import functools

import torch


@functools.cache  # asked at every training step and decoding batch; the hardware does not change
def has_fast_bf16(device: torch.device) -> bool:
    """bf16 matmul units: a CUDA GPU with bf16 support, or a CPU with AMX tiles (Sapphire Rapids and later),
    where bf16 matmuls run several times faster than fp32 ones (benchmarks/training.py)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return device.type == "cpu" and amx is not None and amx()


def resolve(precision: str, device: torch.device) -> str:
    """fp32 | bf16; `auto` becomes bf16 where the device has fast bf16, fp32 elsewhere."""
    if precision == "auto":
        return "bf16" if has_fast_bf16(device) else "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast for matmuls and attention (weights and optimiser state stay fp32), or nothing."""
    if resolve(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
