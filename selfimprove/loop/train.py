"""Optimiser, learning-rate schedules, precision, and the training step loop of one stage."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from selfimprove.config import TrainingConfig
from selfimprove.errors import ConfigError, NonFiniteLossError
from selfimprove.loop.data import IGNORE, MixtureSampler, StepBatch
from selfimprove.models.decoder import Decoder
from selfimprove.models.precision import autocast


def resolve_device(name: str) -> torch.device:
    """`auto` (CUDA when present) | cpu | cuda | cuda:N | mps; on CUDA also lets fp32 matmuls use TF32.
    Checked where the run executes (a sweep's login node may have no GPU): ConfigError when it is absent."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"training.device={name!r} is not a device: use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"training.device={name}: no CUDA device is visible to this process")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"training.device={name}: this process sees {torch.cuda.device_count()} CUDA devices")
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"training.device={name}: no Apple MPS device is available here")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"training.device={name}: selfimprove runs on cpu, cuda or mps")
    return device


def warmup_steps(cfg: TrainingConfig, round_: int) -> int:
    """The warmup of round `round_`'s training (0: the base stage)."""
    if round_ == 0 or cfg.round_warmup_steps is None:
        return cfg.warmup_steps
    return cfg.round_warmup_steps


def peak_lr(cfg: TrainingConfig, round_: int) -> float:
    """The peak learning rate of round `round_`'s training (0: the base stage)."""
    if round_ == 0 or cfg.round_lr is None:
        return cfg.optim.lr
    return cfg.round_lr


def lr_at(step: int, total: int, cfg: TrainingConfig, warmup: int | None = None, peak: float | None = None) -> float:
    """Learning rate at `step` of a stage of `total` steps: linear warmup (`warmup` steps, by default
    training.warmup_steps) to `peak` (by default training.optim.lr), then WSD or cosine down to
    optim.min_lr_ratio of it."""
    peak = cfg.optim.lr if peak is None else peak
    floor = peak * cfg.optim.min_lr_ratio
    warmup = min(cfg.warmup_steps if warmup is None else warmup, total // 2)
    if step < warmup:
        return peak * (step + 1) / warmup
    if cfg.schedule == "cosine":
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    decay_steps = int(cfg.decay_fraction * total)
    decay_start = total - decay_steps
    if step < decay_start:
        return peak
    return peak - (peak - floor) * (step - decay_start + 1) / decay_steps


def make_optimizer(model: nn.Module, cfg: TrainingConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only; fused kernels on CUDA, foreach elsewhere."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.optim.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=(cfg.optim.beta1, cfg.optim.beta2), **fast)


def train_step(
    forward: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    batch: StepBatch,
    cfg: TrainingConfig,
    device: torch.device,
) -> torch.Tensor:
    """One optimiser step on `batch` (already on `device`), accumulating the gradient over its
    micro-batches; returns the mean loss over all its loss positions without a host sync."""
    loss = torch.zeros((), device=device)
    for part in batch.parts:
        with autocast(cfg.precision, device):
            logits = forward(part.inputs, positions=part.positions)
        flat = logits.float().flatten(0, 1)
        part_loss = F.cross_entropy(flat, part.targets.flatten(), ignore_index=IGNORE, reduction="sum")
        part_loss = part_loss / batch.target_count
        part_loss.backward()
        loss += part_loss.detach()
    if cfg.optim.grad_clip > 0:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.grad_clip, foreach=True)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss


@dataclass
class StepLog:
    step: int
    loss: float
    lr: float
    tokens_per_s: float


def train_steps(
    model: Decoder,
    optimizer: torch.optim.Optimizer,
    sampler: MixtureSampler,
    cfg: TrainingConfig,
    device: torch.device,
    start: int,
    total: int,
    stage: str,
    on_log: Callable[[StepLog], None],
    on_checkpoint: Callable[[int, tuple[float, int]], None],
    progress: bool = True,
    window: tuple[float, int] = (0.0, 0),
    warmup: int | None = None,
    peak: float | None = None,
) -> None:
    """Run steps [start, total) of a stage. Checks the loss for NaN/inf at every log, and the loss and
    the weights before every checkpoint, so that a checkpoint on disk is always a finite one.
    `window` is the loss sum and step count since the last log; a checkpoint is given it, and a resume
    passes it back, so that the loss logged after a resume is the same mean an uninterrupted stage logs.
    `warmup` and `peak` shape the stage's learning rate (`lr_at`)."""
    model.train()
    forward = torch.compile(model) if cfg.compile else model
    running = torch.tensor(window[0], device=device)
    since_check, tokens = window[1], 0
    last_log = time.perf_counter()
    bar = tqdm(total=total, initial=start, desc=stage, disable=not progress, leave=False, dynamic_ncols=True)

    def check_finite(step: int) -> float:
        mean = running.item() / max(1, since_check)
        if not math.isfinite(mean):
            raise NonFiniteLossError(f"non-finite loss ({mean}) in {stage} before step {step}")
        return mean

    for step in range(start, total):
        lr = lr_at(step, total, cfg, warmup, peak)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = sampler.next_batch().to(device)
        running += train_step(forward, optimizer, batch, cfg, device)
        since_check += 1
        tokens += batch.tokens
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == total:
            mean = check_finite(done)
            now = time.perf_counter()
            on_log(StepLog(done, mean, lr, tokens / (now - last_log)))
            last_log = now
            bar.set_postfix(loss=f"{mean:.4f}")
            running.zero_()
            since_check, tokens = 0, 0
        if done % cfg.checkpoint_every == 0 and done < total:
            check_finite(done)
            if not all(torch.isfinite(p).all() for p in model.parameters()):
                raise NonFiniteLossError(f"non-finite weights in {stage} after step {done}")
            on_checkpoint(done, (running.item(), since_check))
    bar.close()
