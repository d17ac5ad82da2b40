"""Reversed addition with index hints (Zhou et al. 2023): every digit is preceded by a letter naming its place.

`k1l2m3+k4l5m6=` -> `k5l7m9n0`: the operands 321 and 654 written least-significant digit first, each digit
after its hint; the answer is the reversed, zero-padded sum of `reverse_addition` with the same hints, plus
the next letter for the carry digit. The hints are a run of consecutive letters of HINTS, starting at a
random place in every instance, so every letter is trained on at small sizes too. A model then finds the
digits to add by matching letters, not by counting positions, which a small NoPE decoder does poorly.
Difficulty n: two n-digit operands (leading zeros allowed), at most len(HINTS) - 1.
"""

from __future__ import annotations

import numpy as np

from selfimprove.tasks.base import Difficulty, Example, random_digits
from selfimprove.tasks.index_hints import HINTS, HintedAdditionTask, hint_run, hinted
from selfimprove.tasks.reverse_addition import reversed_sum


class HintedReverseAdditionTask(HintedAdditionTask):
    name = "reverse_addition_hints"
    prompt_rule = (
        "two hinted numbers of as many digits, least significant first, each digit after its letter, the letters "
        "a run of a-z then A-Z, the same in both, then '=', e.g. k1l2m3+k4l5m6="
    )

    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        n = int(difficulty)
        starts = rng.integers(0, len(HINTS) - n, size=count)
        firsts, seconds = random_digits(n, count, rng), random_digits(n, count, rng)
        prompts = [
            f"{hinted(a, HINTS[s : s + n])}+{hinted(b, HINTS[s : s + n])}="
            for s, a, b in zip(starts.tolist(), firsts, seconds, strict=True)
        ]
        return [Example(prompt, self.solve(prompt)) for prompt in prompts]

    def operand_ok(self, operand: str) -> bool:
        letters = operand[::2]
        return letters == hint_run(letters[0], len(letters) + 1)[:-1]  # consecutive, and one more for the carry

    def operands(self, prompt: str) -> tuple[int, int]:
        first, second = prompt.removesuffix("=").split("+")
        return int(first[1::2][::-1]), int(second[1::2][::-1])

    def with_operands(self, prompt: str, a: int, b: int) -> str:
        hints = prompt[: prompt.index("+") : 2]
        return f"{hinted(str(a).zfill(len(hints))[::-1], hints)}+{hinted(str(b).zfill(len(hints))[::-1], hints)}="

    def operand_bounds(self, prompt: str) -> tuple[int, int]:
        return 0, 10 ** (prompt.index("+") // 2) - 1  # leading zeros allowed

    def solve(self, prompt: str) -> str:
        first, second = prompt.removesuffix("=").split("+")
        hints = hint_run(first[0], len(first) // 2 + 1)
        return hinted(reversed_sum(first[1::2], second[1::2]), hints)

    def check(self, prompt: str, label: str) -> bool:
        return label == self.solve(prompt)

    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        return len(label) == 2 * (int(difficulty) + 1)
