"""The GPU paths switch on by config and stay correct on a CPU: bf16 autocast and torch.compile."""

import numpy as np
import pytest
import torch

from selfimprove.config import ModelConfig, TrainingConfig
from selfimprove.loop.data import BaseSource, MixtureSampler
from selfimprove.loop.train import make_optimizer, train_steps
from selfimprove.models import precision
from selfimprove.models.native import Transformer
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.tasks import get_task

COPY = get_task("copy")


def losses_of(cfg: TrainingConfig, steps: int) -> list[float]:
    torch.manual_seed(0)
    tokenizer = Tokenizer(COPY.vocabulary)
    model = Transformer(ModelConfig(n_layer=2, n_embd=64, ffn_hidden=160), tokenizer.vocab_size)
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    sampler = MixtureSampler(tokenizer, [(BaseSource(COPY, [1, 2, 3, 4]), 1.0)], 32, np.random.default_rng(0))
    logged: list[float] = []
    train_steps(
        model,
        optimizer,
        sampler,
        cfg,
        torch.device("cpu"),
        0,
        steps,
        "test",
        on_log=lambda entry: logged.append(entry.loss),
        on_checkpoint=lambda step: None,
        progress=False,
    )
    return logged


@pytest.mark.slow  # 120 training steps: bf16 on a CPU without AMX is emulated and slow
def test_bf16_autocast_trains_like_fp32():
    fp32 = losses_of(TrainingConfig(precision="fp32", warmup_steps=5, log_every=20), 60)
    bf16 = losses_of(TrainingConfig(precision="bf16", warmup_steps=5, log_every=20), 60)
    assert bf16[-1] < 0.8 * bf16[0]  # it learns
    assert bf16 == pytest.approx(fp32, rel=0.1)  # and follows the fp32 curve


@pytest.mark.slow
def test_compiled_training_matches_eager():
    eager = losses_of(TrainingConfig(compile=False, warmup_steps=2, log_every=5), 10)
    compiled = losses_of(TrainingConfig(compile=True, warmup_steps=2, log_every=5), 10)
    assert compiled == pytest.approx(eager, rel=1e-3)


def test_auto_precision_is_bf16_only_where_bf16_is_fast():
    cpu = torch.device("cpu")
    assert precision.resolve("fp32", cpu) == "fp32" and precision.resolve("bf16", cpu) == "bf16"
    assert precision.resolve("auto", cpu) == ("bf16" if precision.has_fast_bf16(cpu) else "fp32")
    amx = getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    assert precision.has_fast_bf16(cpu) == amx
    with precision.autocast("auto", cpu):
        assert torch.is_autocast_enabled("cpu") == amx
    with precision.autocast("fp32", cpu):
        assert not torch.is_autocast_enabled("cpu")


def test_cpu_bf16_training_backpropagates_attention_in_fp32(monkeypatch):
    """PyTorch's bf16 flash-attention backward is slow on CPUs, so training attention runs in fp32 there."""
    model = Transformer(
        ModelConfig(n_layer=1, n_embd=32, ffn_hidden=64, n_head=2), Tokenizer(COPY.vocabulary).vocab_size
    )
    seen: list[torch.dtype] = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(q, *args, **kwargs):
        seen.append(q.dtype)
        return original(q, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.ones(2, 5, dtype=torch.long)).sum().backward()  # training: fp32 attention
        with torch.inference_mode():
            model(torch.ones(2, 5, dtype=torch.long))  # decoding: bf16 attention (its forward is fast)
    assert seen == [torch.float32, torch.bfloat16]
