"""Accuracy per difficulty on held-out prompts, judged by the task's `check`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from selfimprove.models.decoder import Decoder
from selfimprove.models.generate import complete
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.tasks import Difficulty, Example, Task
from selfimprove.tasks.difficulty import sides

# Separate random streams, so that evaluation prompts never share a generator with training data.
EVAL_STREAM, LABEL_STREAM, TRAIN_STREAM, NOISE_STREAM, PRESENT_STREAM = 101, 202, 303, 404, 505


def judged(task: Task, prompts: Sequence[str], labels: Sequence[str], finished: Sequence[bool]) -> np.ndarray:
    """Per prompt: its label ended with EOS and the task's `check` accepts it."""
    return np.array([bool(ok) and task.check(p, label) for p, label, ok in zip(prompts, labels, finished, strict=True)])


def eval_examples(task: Task, difficulty: Difficulty, samples: int, seed: int) -> list[Example]:
    """The held-out prompts of one difficulty: the same in every round, so rounds compare directly."""
    return task.sample(difficulty, samples, np.random.default_rng([seed, EVAL_STREAM, *sides(difficulty)]))


def accuracy_per_difficulty(
    model: Decoder,
    tokenizer: Tokenizer,
    task: Task,
    difficulties: Sequence[Difficulty],
    samples: int,
    seed: int,
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    progress: str | None = None,
) -> dict[Difficulty, float]:
    """Share of held-out prompts of each difficulty answered correctly (and ended with EOS)."""
    prompts = [e.prompt for d in difficulties for e in eval_examples(task, d, samples, seed)]
    budget = [task.answer_tokens(d) for d in difficulties for _ in range(samples)]
    out = complete(model, tokenizer, prompts, budget, batch_size, device, precision, progress, positions=task.positions)
    correct = judged(task, prompts, out.labels, out.finished)
    rows = correct.reshape(len(difficulties), samples)
    return {d: float(row.mean()) for d, row in zip(difficulties, rows, strict=True)}
