"""Multiplication with a chain of thought (the paper's format), every number least-significant digit first.

Prompt `a_rev*b_rev=`. Answer: for each digit b_i of b (least significant first) the partial product
b_i * a * 10^i, reversed and zero-padded to i + len(a) + 1 digits, joined by `+`; after each partial
product but the first and the last, the running sum in parentheses, reversed and padded the same way;
then `=` and the product, reversed and zero-padded to len(a) + len(b) digits.
    123 * 45:  `321*54=` -> `5160+02940=53550`
Difficulty (len a, len b). Labels with the same product vote together; `check` wants the whole chain.
"""

from __future__ import annotations

import re

import numpy as np

from selfimprove.tasks.base import DIGITS, Difficulty, Example, Task, random_numbers
from selfimprove.tasks.difficulty import PAIRS


def reversed_padded(value: int, width: int) -> str:
    return str(value).zfill(width)[::-1]


def chain_of_thought(a_rev: str, b_rev: str) -> str:
    a, la, lb = int(a_rev[::-1]), len(a_rev), len(b_rev)
    parts, total = [], 0
    for i, digit in enumerate(b_rev):
        partial = int(digit) * a * 10**i
        total += partial
        part = reversed_padded(partial, i + la + 1)
        if 0 < i < lb - 1:
            part += f"({reversed_padded(total, i + la + 1)})"
        parts.append(part)
    return "+".join(parts) + "=" + reversed_padded(total, la + lb)


class MultiplicationTask(Task):
    name = "multiplication"
    difficulties = PAIRS
    # Reversed, so a number's leading digit is last: no 0 there (but the number 0 itself).
    prompt_pattern = re.compile(r"(0|[0-9]*[1-9])\*(0|[0-9]*[1-9])=")
    prompt_rule = "two numbers, least significant digit first, joined by '*', then '=', e.g. 321*54="

    @property
    def vocabulary(self) -> list[str]:
        return list(DIGITS + "*+()=")

    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        la, lb = difficulty  # type: ignore[misc]
        pairs = zip(random_numbers(la, count, rng), random_numbers(lb, count, rng), strict=True)
        return [Example(f"{a[::-1]}*{b[::-1]}=", chain_of_thought(a[::-1], b[::-1])) for a, b in pairs]

    def check(self, prompt: str, label: str) -> bool:
        a_rev, b_rev = prompt.removesuffix("=").split("*")
        return label == chain_of_thought(a_rev, b_rev)

    def vote_key(self, label: str) -> str:
        return label.rpartition("=")[2]  # the product

    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        return len(label) == self.answer_tokens(difficulty)

    def answer_tokens(self, difficulty: Difficulty) -> int:
        la, lb = difficulty  # type: ignore[misc]
        partials = sum(i + la + 1 for i in range(lb)) + (lb - 1)  # digits and "+"
        running = sum(i + la + 1 + 2 for i in range(1, lb - 1))  # digits and parentheses
        return partials + running + 1 + la + lb

    def prompt_tokens(self, difficulty: Difficulty) -> int:
        la, lb = difficulty  # type: ignore[misc]
        return la + lb + 2
