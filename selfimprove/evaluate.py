"""Exact-match accuracy per length on held-out prompts, measured with the task's oracle."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from selfimprove.generate import complete
from selfimprove.model import Transformer
from selfimprove.tasks import Example, Task
from selfimprove.tokenizer import Tokenizer

# Separate random streams, so that evaluation prompts never share a generator with training data.
EVAL_STREAM, LABEL_STREAM, TRAIN_STREAM = 101, 202, 303


def eval_examples(task: Task, length: int, samples: int, seed: int) -> list[Example]:
    """The held-out prompts of one length: the same in every round, so rounds compare directly."""
    return task.sample(length, samples, np.random.default_rng([seed, EVAL_STREAM, length]))


def exact_match(
    model: Transformer,
    tokenizer: Tokenizer,
    task: Task,
    lengths: Sequence[int],
    samples: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    progress: str | None = None,
) -> dict[int, float]:
    """Share of held-out prompts of each length answered exactly right (and ended with EOS)."""
    examples = [e for n in lengths for e in eval_examples(task, n, samples, seed)]
    expected = [task.answer_length(n) for n in lengths for _ in range(samples)]
    prompts = [e.prompt for e in examples]
    out = complete(model, tokenizer, prompts, expected, batch_size, device, precision, progress)
    correct = np.array(
        [ok and label == e.answer for ok, label, e in zip(out.finished, out.labels, examples, strict=True)]
    )
    return {n: float(row.mean()) for n, row in zip(lengths, correct.reshape(len(lengths), samples), strict=True)}
