"""Copy: `a=` -> `a`."""

from __future__ import annotations

import numpy as np

from selfimprove.tasks.base import Example, Task, random_digits


class CopyTask(Task):
    name = "copy"

    def transform(self, digits: str) -> str:
        return digits

    def sample(self, length: int, count: int, rng: np.random.Generator) -> list[Example]:
        return [Example(f"{a}=", self.transform(a)) for a in random_digits(length, count, rng)]

    def solve(self, prompt: str) -> str:
        return self.transform(prompt.removesuffix("="))

    def answer_length(self, length: int) -> int:
        return length

    def prompt_length(self, length: int) -> int:
        return length + 1

    def length_of(self, prompt: str) -> int:
        return len(prompt) - 1
