"""Reversed addition: operands and sum written least-significant digit first.

`a_rev+b_rev=` -> (a + b) reversed, zero-padded to max(len a, len b) + 1 digits, so the model
emits the sum in the order a carry propagates. An instance of size n has two n-digit operands.
"""

from __future__ import annotations

import numpy as np

from selfimprove.tasks.base import Example, Task, random_digits


class ReverseAdditionTask(Task):
    name = "reverse_addition"

    def sample(self, length: int, count: int, rng: np.random.Generator) -> list[Example]:
        firsts = random_digits(length, count, rng)
        seconds = random_digits(length, count, rng)
        return [Example(prompt, self.solve(prompt)) for prompt in map("{}+{}=".format, firsts, seconds)]

    def solve(self, prompt: str) -> str:
        a_rev, b_rev = prompt.removesuffix("=").split("+")
        width = max(len(a_rev), len(b_rev)) + 1
        total = int(a_rev[::-1]) + int(b_rev[::-1])
        return str(total).zfill(width)[::-1]

    def answer_length(self, length: int) -> int:
        return length + 1

    def prompt_length(self, length: int) -> int:
        return 2 * length + 2

    def length_of(self, prompt: str) -> int:
        return len(prompt.split("+")[0])
