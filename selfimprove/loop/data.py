"""Training batches: fresh base-range instances, stored rounds, and their mixture.

A batch is built with whole-array NumPy operations (no Python loop over characters). Samplers
draw from one numpy Generator whose state is saved in checkpoints, so an interrupted stage resumes
with the batches it would have seen. For a model that reads the position ids a task gives (position
coupling), a batch carries them too, each sequence's shifted by a random offset drawn from that Generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from selfimprove.models.decoder import PositionsOf
from selfimprove.models.tokenizer import BOS, EOS, Tokenizer
from selfimprove.tasks import Difficulty, Example, Task

IGNORE = -100  # target value that carries no loss


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T) token ids
    targets: torch.Tensor  # (B, T) next-token ids, IGNORE where no loss is taken
    # (B, T) or (B, T, levels): the inputs' task-given position ids, 0 on padding (coupled only)
    positions: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        non_blocking = device.type == "cuda"  # overlap the copy with compute
        move = lambda t: t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.inputs), move(self.targets), None if self.positions is None else move(self.positions))


@dataclass
class StepBatch:
    """The rows of one optimiser step as micro-batches of similar length: each is padded only to its own
    longest row, and the step's loss is the mean over `target_count`, the loss positions of all of them,
    so the gradient is that of the one padded batch."""

    parts: list[Batch]
    target_count: int

    def to(self, device: torch.device) -> StepBatch:
        return StepBatch([part.to(device) for part in self.parts], self.target_count)

    @property
    def tokens(self) -> int:
        """Token positions computed, padding included."""
        return sum(part.inputs.numel() for part in self.parts)


def collate(
    tokenizer: Tokenizer,
    examples: Sequence[Example],
    loss_on_prompt: bool = False,
    positions: Sequence[np.ndarray] | None = None,
) -> Batch:
    """BOS + prompt + answer + EOS, right-padded; loss on answer and EOS (and prompt if asked). `positions`: each
    example's position ids, one per token of that sequence (a coupled model's)."""
    texts = [prompt + answer for prompt, answer in examples]
    prompt_lengths = tokenizer.lengths([prompt for prompt, _ in examples])
    ids, lengths = tokenizer.encode_padded(texts)
    B, width = ids.shape
    seq = np.zeros((B, width + 2), dtype=np.int64)
    seq[:, 0] = BOS
    seq[:, 1 : width + 1] = ids
    rows = np.arange(B)
    seq[rows, lengths + 1] = EOS
    inputs, targets = seq[:, :-1], seq[:, 1:].copy()
    # targets[:, j] is token j + 1 of the sequence; the answer starts at token 1 + len(prompt).
    position = np.arange(width + 1)[None, :] + 1
    first = 1 if loss_on_prompt else 1 + prompt_lengths[:, None]
    keep = (position >= first) & (position <= lengths[:, None] + 1)
    targets[~keep] = IGNORE
    place = None if positions is None else input_positions(positions, lengths + 2, width + 2)
    return Batch(torch.from_numpy(np.ascontiguousarray(inputs)), torch.from_numpy(targets), place)


def input_positions(positions: Sequence[np.ndarray], lengths: np.ndarray, width: int) -> torch.Tensor:
    """The ids of the input tokens (B, width - 1), or (B, width - 1, levels), of sequences of `lengths` tokens padded
    to `width`: padding has 0."""
    place = np.zeros((len(positions), width, *positions[0].shape[1:]), dtype=np.int64)
    place[np.arange(width)[None, :] < lengths[:, None]] = np.concatenate(positions)
    return torch.from_numpy(np.ascontiguousarray(place[:, :-1]))


def bucketed(
    tokenizer: Tokenizer,
    examples: Sequence[Example],
    buckets: int = 1,
    loss_on_prompt: bool = False,
    positions: Sequence[np.ndarray] | None = None,
) -> StepBatch:
    """`examples` (and their `positions`, as `collate`'s) sorted by length and cut into `buckets` micro-batches of
    (nearly) equal row counts."""
    lengths = tokenizer.lengths([prompt + answer for prompt, answer in examples])
    order = np.argsort(lengths, kind="stable")
    parts = [
        collate(
            tokenizer,
            [examples[i] for i in rows],
            loss_on_prompt,
            None if positions is None else [positions[i] for i in rows],
        )
        for rows in np.array_split(order, min(buckets, len(examples)))
    ]
    return StepBatch(parts, sum(int((part.targets != IGNORE).sum()) for part in parts))


class BaseSource:
    """Fresh instances with difficulties drawn uniformly from the base set."""

    def __init__(self, task: Task, difficulties: Sequence[Difficulty]) -> None:
        self.task, self.difficulties = task, list(difficulties)

    def draw(self, count: int, rng: np.random.Generator) -> list[Example]:
        picks = rng.integers(0, len(self.difficulties), size=count)
        indices, counts = np.unique(picks, return_counts=True)
        out: list[Example] = []
        for index, n in zip(indices.tolist(), counts.tolist(), strict=True):
            out.extend(self.task.sample(self.difficulties[index], n, rng))
        return out


class StoredSource:
    """Uniform draws, with replacement, from stored examples (self-labelled rounds)."""

    def __init__(self, examples: Sequence[Example]) -> None:
        if not examples:
            raise ValueError("a stored source needs at least one example")
        self.examples = list(examples)

    def draw(self, count: int, rng: np.random.Generator) -> list[Example]:
        return [self.examples[i] for i in rng.integers(0, len(self.examples), size=count)]


Source = BaseSource | StoredSource


def round_mixture(
    base: BaseSource, rounds: Sequence[Sequence[Example]], newest_share: float, base_share: float
) -> list[tuple[Source, float]]:
    """Sources and weights for training after a round: the newest round's data gets `newest_share`,
    the rest is split between base data (`base_share` of it) and all older rounds pooled together.
    Sources with no data drop out, their weight going to the others."""
    newest = list(rounds[-1]) if rounds else []
    older = [e for r in rounds[:-1] for e in r]
    rest = 1.0 - newest_share if newest else 1.0
    parts: list[tuple[Source, float]] = [(base, rest * base_share if older else rest)]
    if older:
        parts.append((StoredSource(older), rest * (1.0 - base_share)))
    if newest:
        parts.append((StoredSource(newest), newest_share))
    parts = [(source, weight) for source, weight in parts if weight > 0]
    total = sum(weight for _, weight in parts)
    return [(source, weight / total) for source, weight in parts]


class MixtureSampler:
    """Batches whose rows come from each source in proportion to its weight (multinomial per batch),
    each cut into `buckets` length-sorted micro-batches. `positions`: the task's, given only for a model that
    reads them; each sequence's nonzero ids then shift by a random offset in [0, `max_offset`]."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        sources: Sequence[tuple[Source, float]],
        batch_size: int,
        rng: np.random.Generator,
        loss_on_prompt: bool = False,
        buckets: int = 1,
        positions: PositionsOf | None = None,
        max_offset: int = 0,
    ) -> None:
        self.tokenizer, self.batch_size, self.rng, self.loss_on_prompt = tokenizer, batch_size, rng, loss_on_prompt
        self.buckets, self.positions, self.max_offset = buckets, positions, max_offset
        self.sources = [source for source, _ in sources]
        self.weights = np.array([weight for _, weight in sources], dtype=np.float64)

    def examples(self) -> list[Example]:
        counts = self.rng.multinomial(self.batch_size, self.weights)
        return [e for source, n in zip(self.sources, counts, strict=True) if n for e in source.draw(n, self.rng)]

    def shifted_positions(self, positions: PositionsOf, examples: Sequence[Example]) -> list[np.ndarray]:
        """Each example's position ids (BOS, prompt, answer, EOS), its nonzero ids shifted by its random offset:
        every row of the table up to the trained sizes' ids + max_offset is trained (id 0, no place, stays 0)."""
        slots = self.tokenizer.lengths([answer for _, answer in examples]) + 1  # EOS is an answer slot
        offsets = self.rng.integers(0, self.max_offset + 1, size=len(examples))
        rows = [np.array(positions(prompt, n)) for (prompt, _), n in zip(examples, slots.tolist(), strict=True)]
        return [row + offset * (row > 0) for row, offset in zip(rows, offsets.tolist(), strict=True)]

    def next_batch(self) -> StepBatch:
        examples = self.examples()
        # Offsets are drawn only for a coupled model: any other draws exactly the batches it always drew.
        positions = None if self.positions is None else self.shifted_positions(self.positions, examples)
        return bucketed(self.tokenizer, examples, self.buckets, self.loss_on_prompt, positions)
