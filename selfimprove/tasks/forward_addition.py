"""Forward addition (the paper's `forward2`): `a+b=` -> a + b, most significant digit first, no padding.

Difficulty n: two n-digit operands (no leading zero). The sum has n or n + 1 digits, so a label of any
other length is structurally impossible: the paper's length filter drops the too-short ones, the
labels of a model that has not yet learned to carry into a new leading digit.
"""

from __future__ import annotations

import re

import numpy as np

from selfimprove.tasks.base import Difficulty, Example, Task, random_numbers


class ForwardAdditionTask(Task):
    name = "forward_addition"
    prompt_pattern = re.compile(r"(0|[1-9][0-9]*)\+(0|[1-9][0-9]*)=")
    prompt_rule = "two numbers of as many digits, no leading zero, joined by '+', then '=', e.g. 12+39="

    def prompt_error(self, prompt: str) -> str | None:
        match = self.prompt_pattern.fullmatch(prompt)
        if match is None or len(match[1]) != len(match[2]):  # difficulty n: two n-digit operands
            return f"not a {self.name} prompt ({self.prompt_rule})"
        return None

    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        n = int(difficulty)
        pairs = zip(random_numbers(n, count, rng), random_numbers(n, count, rng), strict=True)
        return [Example(f"{a}+{b}=", str(int(a) + int(b))) for a, b in pairs]

    def check(self, prompt: str, label: str) -> bool:
        a, b = prompt.removesuffix("=").split("+")
        return label == str(int(a) + int(b))

    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        return int(difficulty) <= len(label) <= int(difficulty) + 1

    def answer_tokens(self, difficulty: Difficulty) -> int:
        return int(difficulty) + 1

    def prompt_tokens(self, difficulty: Difficulty) -> int:
        return 2 * int(difficulty) + 2
