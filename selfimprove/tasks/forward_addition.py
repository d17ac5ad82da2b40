"""Forward addition (the paper's `forward2`): `a+b=` -> a + b, most significant digit first, no padding.

Difficulty n: two n-digit operands (no leading zero). The sum has n or n + 1 digits, so a label of any
other length is structurally impossible: the paper's length filter drops the too-short ones, the
labels of a model that has not yet learned to carry into a new leading digit.

`data.pad_sum=true` writes the sum zero-padded to n + 1 digits (`12+39=` -> `051`, Cho et al. 2024's format):
every answer digit then has a significance known from the prompt alone, so the task can couple positions.

`data.scratchpad=true` first writes the sum least significant digit first, zero-padded to n + 1 digits (the order in
which a carry propagates), then `=`, then the sum as above: `12+39=` -> `150=51`. `check` judges the final sum; a
label whose two sums disagree is inconsistent (`consistent`, no oracle), and the filter drops it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from selfimprove.tasks.base import (
    Difficulty,
    Example,
    RegroupedOperands,
    Task,
    coupled_ids,
    n_digit_bounds,
    random_numbers,
)


@dataclass
class ForwardAdditionParameters:
    pad_sum: bool = False  # the sum zero-padded to n + 1 digits: the only form whose ids can be coupled
    scratchpad: bool = False  # the reversed sum first, then "=" and the sum


class ForwardAdditionTask(RegroupedOperands, Task):
    name = "forward_addition"
    Parameters = ForwardAdditionParameters
    prompt_pattern = re.compile(r"(0|[1-9][0-9]*)\+(0|[1-9][0-9]*)=")
    prompt_rule = "two numbers of as many digits, no leading zero, joined by '+', then '=', e.g. 12+39="

    def prompt_error(self, prompt: str) -> str | None:
        match = self.prompt_pattern.fullmatch(prompt)
        if match is None or len(match[1]) != len(match[2]):  # difficulty n: two n-digit operands
            return f"not a {self.name} prompt ({self.prompt_rule})"
        return None

    def operands(self, prompt: str) -> tuple[int, int]:
        a, b = prompt.removesuffix("=").split("+")
        return int(a), int(b)

    def with_operands(self, prompt: str, a: int, b: int) -> str:
        return f"{a}+{b}="

    def operand_bounds(self, prompt: str) -> tuple[int, int]:
        return n_digit_bounds(prompt.index("+"))

    def final_sum(self, total: int, digits: int) -> str:
        """The sum as the answer ends with it: padded to `digits` + 1 digits or not."""
        return str(total).zfill(digits + 1) if self.params.pad_sum else str(total)

    def solve(self, prompt: str) -> str:
        a, b = prompt.removesuffix("=").split("+")
        total = int(a) + int(b)
        final = self.final_sum(total, len(a))
        return f"{str(total).zfill(len(a) + 1)[::-1]}={final}" if self.params.scratchpad else final

    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        n = int(difficulty)
        prompts = map("{}+{}=".format, random_numbers(n, count, rng), random_numbers(n, count, rng))
        return [Example(prompt, self.solve(prompt)) for prompt in prompts]

    def check(self, prompt: str, label: str) -> bool:
        """The final sum is right (with a scratchpad, whatever the reversed sum before it says)."""
        return self.vote_key(label) == self.vote_key(self.solve(prompt))

    def vote_key(self, label: str) -> str:
        return label.rpartition("=")[2]  # the final sum

    def consistent(self, label: str) -> bool:
        """With a scratchpad, the reversed sum read back is the final sum (both n + 1 digits once padded)."""
        if not self.params.scratchpad:
            return True
        reversed_sum, _, final = label.partition("=")
        if not (reversed_sum.isdigit() and final.isdigit()):
            return False
        return self.final_sum(int(reversed_sum[::-1]), len(reversed_sum) - 1) == final

    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        n = int(difficulty)
        if self.params.scratchpad:
            reversed_sum, sep, label = label.partition("=")
            if not (sep and len(reversed_sum) == n + 1):
                return False
        return n + self.params.pad_sum <= len(label) <= n + 1

    def answer_tokens(self, difficulty: Difficulty) -> int:
        return (int(difficulty) + 1) * (2 if self.params.scratchpad else 1) + self.params.scratchpad

    def prompt_tokens(self, difficulty: Difficulty) -> int:
        return 2 * int(difficulty) + 2

    def positions(self, prompt: str, answer_tokens: int) -> list[int] | None:
        """With a padded sum: coupled by significance, the digit of 10^i in either operand and in the sum has id
        i + 1, read from the right (a scratchpad's reversed sum too); "+" and a scratchpad's "=" have id 0.
        Unpadded, where the sum's first digit sits depends on whether it has a new leading digit, which is part of
        the answer: no ids."""
        if not self.params.pad_sum:
            return None
        digits = prompt.index("+")  # both operands have n digits
        places = list(range(digits, 0, -1))
        final = [digits + 1, *places]
        answer = [*final[::-1], 0, *final] if self.params.scratchpad else final
        return coupled_ids([*places, 0, *places, 0], answer, answer_tokens)

    def max_position(self, difficulty: Difficulty) -> int | None:
        return int(difficulty) + 1 if self.params.pad_sum else None

    def no_positions_reason(self) -> str:
        return "data.task=forward_addition gives them only with data.pad_sum=true"
