"""Forward addition with index hints: every digit is preceded by a letter naming its place value.

`m1l2k3+m4l5k6=` -> `m5l7k9`: 123 + 456 = 579, most significant digit first as in `forward_addition`, each
digit after the letter of its place (units `k`, tens `l`, ...); a sum with a new leading digit takes the
next letter (`l9k9+l1k1=` -> `m1l1k0`). The letters of a place are a run of consecutive letters of HINTS,
starting at a random place in every instance (as in `reverse_addition_hints`), so a model finds the two
digits to add by matching letters, not by counting positions from the end of each operand.
Difficulty n: two n-digit operands (no leading zero), at most len(HINTS) - 1.
"""

from __future__ import annotations

import numpy as np

from selfimprove.tasks.base import Difficulty, Example, n_digit_bounds, random_numbers
from selfimprove.tasks.index_hints import HINTS, HintedAdditionTask, hint_run, hinted


def place_hinted(number: str, units: int) -> str:
    """`number` (most significant digit first) with the letter of each digit's place, HINTS[units] for units."""
    return hinted(number, hint_run(HINTS[units], len(number))[::-1])


class HintedForwardAdditionTask(HintedAdditionTask):
    name = "forward_addition_hints"
    prompt_rule = (
        "two hinted numbers of as many digits, no leading zero, each digit after the letter of its place, the "
        "letters a run of a-z then A-Z down to the units', the same in both, then '=', e.g. m1l2k3+m4l5k6="
    )

    def operand_ok(self, operand: str) -> bool:
        letters, digits = operand[::2], operand[1::2]
        units = HINTS.index(letters[-1])
        fits = units + len(letters) < len(HINTS)  # a letter left for a carry into a new leading digit
        return fits and operand == place_hinted(digits, units) and (len(digits) == 1 or digits[0] != "0")

    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        n = int(difficulty)
        units = rng.integers(0, len(HINTS) - n, size=count)  # n + 1 letters fit: room for a carry digit
        pairs = zip(units.tolist(), random_numbers(n, count, rng), random_numbers(n, count, rng), strict=True)
        return [
            Example(f"{place_hinted(a, u)}+{place_hinted(b, u)}=", place_hinted(str(int(a) + int(b)), u))
            for u, a, b in pairs
        ]

    def operands(self, prompt: str) -> tuple[int, int]:
        first, second = prompt.removesuffix("=").split("+")
        return int(first[1::2]), int(second[1::2])

    def with_operands(self, prompt: str, a: int, b: int) -> str:
        units = HINTS.index(prompt[prompt.index("+") - 2])
        return f"{place_hinted(str(a), units)}+{place_hinted(str(b), units)}="

    def operand_bounds(self, prompt: str) -> tuple[int, int]:
        return n_digit_bounds(prompt.index("+") // 2)

    def check(self, prompt: str, label: str) -> bool:
        first, second = prompt.removesuffix("=").split("+")
        units = HINTS.index(first[-2])
        return label == place_hinted(str(int(first[1::2]) + int(second[1::2])), units)

    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        return len(label) in (2 * int(difficulty), 2 * (int(difficulty) + 1))
