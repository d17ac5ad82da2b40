"""Forward addition (the paper's `forward2`): `a+b=` -> a + b, most significant digit first, no padding.

Difficulty n: two n-digit operands (no leading zero). The sum has n or n + 1 digits, so a label of any
other length is structurally impossible: the paper's length filter drops the too-short ones, the
labels of a model that has not yet learned to carry into a new leading digit.

`data.pad_sum=true` writes the sum zero-padded to n + 1 digits (`12+39=` -> `051`, Cho et al. 2024's format):
every answer digit then has a significance known from the prompt alone, so the task can couple positions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from selfimprove.tasks.base import (
    Difficulty,
    Example,
    Presentation,
    Task,
    coupled_ids,
    random_numbers,
    swapped_operands,
)


@dataclass
class ForwardAdditionParameters:
    pad_sum: bool = False  # the sum zero-padded to n + 1 digits: the only form whose ids can be coupled


class ForwardAdditionTask(Task):
    name = "forward_addition"
    Parameters = ForwardAdditionParameters
    presentations = 2  # a+b and b+a
    prompt_pattern = re.compile(r"(0|[1-9][0-9]*)\+(0|[1-9][0-9]*)=")
    prompt_rule = "two numbers of as many digits, no leading zero, joined by '+', then '=', e.g. 12+39="

    def prompt_error(self, prompt: str) -> str | None:
        match = self.prompt_pattern.fullmatch(prompt)
        if match is None or len(match[1]) != len(match[2]):  # difficulty n: two n-digit operands
            return f"not a {self.name} prompt ({self.prompt_rule})"
        return None

    def solve(self, prompt: str) -> str:
        a, b = prompt.removesuffix("=").split("+")
        total = str(int(a) + int(b))
        return total.zfill(len(a) + 1) if self.params.pad_sum else total

    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        n = int(difficulty)
        prompts = map("{}+{}=".format, random_numbers(n, count, rng), random_numbers(n, count, rng))
        return [Example(prompt, self.solve(prompt)) for prompt in prompts]

    def check(self, prompt: str, label: str) -> bool:
        return label == self.solve(prompt)

    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        return int(difficulty) + self.params.pad_sum <= len(label) <= int(difficulty) + 1

    def answer_tokens(self, difficulty: Difficulty) -> int:
        return int(difficulty) + 1

    def prompt_tokens(self, difficulty: Difficulty) -> int:
        return 2 * int(difficulty) + 2

    def positions(self, prompt: str, answer_tokens: int) -> list[int] | None:
        """With a padded sum: coupled by significance, the digit of 10^i in either operand and in the sum has id
        i + 1, read from the right; "+" has id 0. Unpadded, where the sum's first digit sits depends on whether it
        has a new leading digit, which is part of the answer: no ids."""
        if not self.params.pad_sum:
            return None
        a, b = prompt.removesuffix("=").split("+")
        places = lambda digits: list(range(digits, 0, -1))  # noqa: E731
        return coupled_ids([*places(len(a)), 0, *places(len(b)), 0], places(len(a) + 1), answer_tokens)

    def max_position(self, difficulty: Difficulty) -> int | None:
        return int(difficulty) + 1 if self.params.pad_sum else None

    def no_positions_reason(self) -> str:
        return "data.task=forward_addition gives them only with data.pad_sum=true"

    def rewrite(self, prompt: str, index: int, rng: np.random.Generator) -> Presentation:
        return swapped_operands(prompt, "+")
