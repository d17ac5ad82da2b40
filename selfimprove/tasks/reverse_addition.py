"""Reversed addition: operands and sum written least-significant digit first.

`a_rev+b_rev=` -> (a + b) reversed, zero-padded to max(len a, len b) + 1 digits, so the model
emits the sum in the order a carry propagates. Difficulty n: two n-digit operands (leading zeros
allowed).
"""

from __future__ import annotations

import re

import numpy as np

from selfimprove.tasks.base import (
    Difficulty,
    Example,
    RegroupedOperands,
    Task,
    coupled_ids,
    random_digits,
)


def reversed_sum(a_rev: str, b_rev: str) -> str:
    """a + b of two reversed operands, reversed and zero-padded to max(len a, len b) + 1 digits."""
    width = max(len(a_rev), len(b_rev)) + 1
    return str(int(a_rev[::-1]) + int(b_rev[::-1])).zfill(width)[::-1]


class ReverseAdditionTask(RegroupedOperands, Task):
    name = "reverse_addition"
    prompt_pattern = re.compile(r"([0-9]+)\+([0-9]+)=")
    prompt_rule = "two numbers of as many digits, least significant first, joined by '+', then '=', e.g. 21+93="

    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        n = int(difficulty)
        firsts, seconds = random_digits(n, count, rng), random_digits(n, count, rng)
        return [Example(prompt, self.solve(prompt)) for prompt in map("{}+{}=".format, firsts, seconds)]

    def prompt_error(self, prompt: str) -> str | None:
        match = self.prompt_pattern.fullmatch(prompt)
        if match is None or len(match[1]) != len(match[2]):  # difficulty n: two n-digit operands
            return f"not a {self.name} prompt ({self.prompt_rule})"
        return None

    def operands(self, prompt: str) -> tuple[int, int]:
        a, b = prompt.removesuffix("=").split("+")
        return int(a[::-1]), int(b[::-1])

    def with_operands(self, prompt: str, a: int, b: int) -> str:
        n = prompt.index("+")
        return f"{str(a).zfill(n)[::-1]}+{str(b).zfill(n)[::-1]}="

    def operand_bounds(self, prompt: str) -> tuple[int, int]:
        return 0, 10 ** prompt.index("+") - 1  # leading zeros allowed

    def solve(self, prompt: str) -> str:
        return reversed_sum(*prompt.removesuffix("=").split("+"))

    def check(self, prompt: str, label: str) -> bool:
        return label == self.solve(prompt)

    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        return len(label) == int(difficulty) + 1

    def answer_tokens(self, difficulty: Difficulty) -> int:
        return int(difficulty) + 1

    def prompt_tokens(self, difficulty: Difficulty) -> int:
        return 2 * int(difficulty) + 2

    def positions(self, prompt: str, answer_tokens: int) -> list[int]:
        """Coupled by significance: the digit of 10^i in either operand and in the sum has id i + 1 (the sum's
        extra top digit the next one); "+" has id 0."""
        a, b = prompt.removesuffix("=").split("+")
        places = lambda digits: list(range(1, digits + 1))  # noqa: E731
        return coupled_ids([*places(len(a)), 0, *places(len(b)), 0], places(max(len(a), len(b)) + 1), answer_tokens)

    def max_position(self, difficulty: Difficulty) -> int:
        return int(difficulty) + 1
