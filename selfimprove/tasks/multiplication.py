"""Multiplication with a chain of thought (the paper's format), every number least-significant digit first.

Prompt `a_rev*b_rev=`. Answer: for each digit b_i of b (least significant first) the partial product
b_i * a * 10^i, reversed and zero-padded to i + len(a) + 1 digits, joined by `+`; after each partial
product but the first and the last, the running sum in parentheses, reversed and padded the same way;
then `=` and the product, reversed and zero-padded to len(a) + len(b) digits.
    123 * 45:  `321*54=` -> `5160+02940=53550`
Difficulty (len a, len b). Labels with the same product vote together; `check` wants the whole chain.

Position ids on two levels (`positions`), so that every lookup a digit of the chain needs is one constant difference
of ids at every size: (the index of the digit of a that makes it, offset by len(b); its row).
"""

from __future__ import annotations

import re

import numpy as np

from selfimprove.tasks.base import (
    DIGITS,
    Difficulty,
    Example,
    PositionId,
    Presentation,
    Task,
    coupled_ids,
    random_numbers,
    unchanged,
)
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


# How far past its row's top digit a sign's x lies (the top digit's x is len(a) + len(b)). The input that writes a
# sign holds the row's top digit, so the next row finds that digit at one id difference at every size; and it finds
# no digit of a near its own x, at every size, which ends rows right where a sign one past the top (a gap of 1)
# ended the running sums at the trained lengths only, and a sign at x 0 ended them right but hid the top digits
# from the rows after (docs/trials.md).
SIGN_GAP = 11


class MultiplicationTask(Task):
    name = "multiplication"
    difficulties = PAIRS
    presentations = 2  # a*b and b*a: the same product by another chain of thought
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

    def rewrite(self, prompt: str, index: int, rng: np.random.Generator) -> Presentation:
        """b*a: its chain multiplies by a's digits instead of b's, and its product is a*b's (a vote key of the same
        width), so the two agree only where the model multiplies both ways alike."""
        a, b = prompt.removesuffix("=").split("*")
        return Presentation(f"{b}*{a}=", unchanged, difficulty=(len(b), len(a)))

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

    position_levels = 2

    def positions(self, prompt: str, answer_tokens: int) -> list[PositionId]:
        """Two ids a token, (x, y). The digit of 10^s in row r of the chain (partial product b_r * a * 10^r, or the
        running sum after it) has x = s - r + len(b): the digit of a it multiplies, a's digit j having x = j + len(b)
        (the offset keeps every x of the chain >= 1). y names the row: partial product r 2r + 1 (as b's digit r,
        whose x is 0), the running sum after it 2r + 2, the product 2 len(b) (the running sum after the last row), a's
        digits 0. So a partial-product digit finds its digit of a by x and its digit of b by y, and a sum digit the
        two it adds at (0, -1) and (+1, -2) from its own ids (the first row's partial product, which no sum
        precedes, at (+1, -3)). The signs after a row's digits have the row's y and x SIGN_GAP past its top digit's:
        "*" has (0, 0)."""
        a, b = prompt.removesuffix("=").split("*")
        la, lb = len(a), len(b)
        past_top = la + lb + SIGN_GAP

        def row(r: int, y: int, digits: int) -> list[tuple[int, int]]:  # the digits of 10^0.. of row r
            return [(s - r + lb, y) for s in range(digits)]

        answer: list[PositionId] = []
        for r in range(lb):
            answer += [*row(r, 2 * r + 1, r + la + 1), (past_top, 2 * r + 1)]  # and "+", "(" or "="
            if 0 < r < lb - 1:
                answer += [*row(r, 2 * r + 2, r + la + 1), (past_top, 2 * r + 2), (past_top, 2 * r + 2)]  # ")+"
        answer += row(lb - 1, 2 * lb, la + lb)
        prompt_ids = [*((j + lb, 0) for j in range(la)), (0, 0), *((0, 2 * r + 1) for r in range(lb)), (0, 0)]
        return coupled_ids(prompt_ids, answer, answer_tokens, blank=(0, 0))

    def max_position(self, difficulty: Difficulty) -> int:
        la, lb = difficulty  # type: ignore[misc]
        return max(la + lb + SIGN_GAP, 2 * lb)
