"""The GPU paths switch on by config and stay correct on a CPU: bf16 autocast and torch.compile."""

import numpy as np
import pytest
import torch

from selfimprove.config import ModelConfig, TrainingConfig
from selfimprove.data import BaseSource, MixtureSampler
from selfimprove.model import Transformer
from selfimprove.tasks import get_task
from selfimprove.tokenizer import Tokenizer
from selfimprove.train import make_optimizer, train_steps


def losses_of(cfg: TrainingConfig, steps: int) -> list[float]:
    torch.manual_seed(0)
    tokenizer = Tokenizer()
    model = Transformer(ModelConfig(n_layer=2, n_embd=64, ffn_hidden=160), tokenizer.vocab_size)
    optimizer = make_optimizer(model, cfg, torch.device("cpu"))
    sampler = MixtureSampler(tokenizer, [(BaseSource(get_task("copy"), 1, 4), 1.0)], 32, np.random.default_rng(0))
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
