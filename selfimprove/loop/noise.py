"""Label noise injected into the kept labels of a round (the paper's robustness study).

A share `si.noise.rate` of the kept rows, chosen at random, gets a corrupted label; the row is marked
`noisy` and its `correct` flag stays the oracle's verdict on the label actually stored. Kinds, on the
label's tokens (numbers are the vocabulary's all-digit tokens: digits, or maze node labels):
- uniform: every number replaced by a random one (separators kept): random tokens of the right length;
- drop:    1-3 of the label's last 3 tokens deleted;
- perturb: 1-3 of its last 3 numbers shifted by +-1 (cyclically through the vocabulary's numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selfimprove.config import NoiseConfig
from selfimprove.models.tokenizer import Tokenizer


def applies(cfg: NoiseConfig, round_: int) -> bool:
    return cfg.rate > 0 and (not cfg.rounds or round_ in cfg.rounds)


def numbers_of(tokenizer: Tokenizer) -> list[str]:
    """The vocabulary's numeric tokens, in ascending order."""
    return sorted((t for t in tokenizer.vocabulary if t.isdigit()), key=int)


def corrupt(tokens: list[str], kind: str, numbers: Sequence[str], rng: np.random.Generator) -> list[str]:
    """A noisy copy of a label's tokens; `numbers` as `numbers_of` gives them."""
    out = list(tokens)
    numeric = set(numbers)
    if kind == "uniform":
        return [numbers[rng.integers(len(numbers))] if t in numeric else t for t in out]
    if kind == "drop":
        last = np.arange(max(0, len(out) - 3), len(out))
        for i in sorted(rng.choice(last, size=min(len(last), int(rng.integers(1, 4))), replace=False), reverse=True):
            del out[i]
        return out
    positions = [i for i, t in enumerate(out) if t in numeric][-3:]
    rank = {t: r for r, t in enumerate(numbers)}
    for i in rng.choice(positions, size=min(len(positions), int(rng.integers(1, 4))), replace=False).tolist():
        out[i] = numbers[(rank[out[i]] + int(rng.choice((-1, 1)))) % len(numbers)]
    return out


def inject(
    labels: Sequence[str], cfg: NoiseConfig, tokenizer: Tokenizer, rng: np.random.Generator
) -> tuple[list[str], list[bool]]:
    """The labels with round(rate * len(labels)) of them, chosen at random, corrupted; and which ones."""
    numbers = numbers_of(tokenizer)
    chosen = set(rng.choice(len(labels), size=round(cfg.rate * len(labels)), replace=False).tolist())
    noisy = [i in chosen for i in range(len(labels))]
    out = [
        "".join(corrupt(tokenizer.split(label), cfg.kind, numbers, rng)) if flag else label
        for label, flag in zip(labels, noisy, strict=True)
    ]
    return out, noisy
