"""Index hints (Zhou et al. 2023), shared by the hinted addition tasks: a letter before every digit naming its place.

The letters of an instance are a run of consecutive letters of HINTS that starts at a random place, so every
letter is trained on at small sizes too; a model then finds the digits to add by matching letters, not by
counting positions, which a small NoPE decoder does poorly.
"""

from __future__ import annotations

import re
from abc import abstractmethod

from selfimprove.tasks.base import DIGIT_VOCABULARY, Difficulty, RegroupedOperands, Task

HINTS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def hinted(digits: str, hints: str) -> str:
    """`digits` with hint letter i before digit i."""
    return "".join(hint + digit for hint, digit in zip(hints, digits, strict=True))


def hint_run(start: str, length: int) -> str:
    """`length` consecutive letters of HINTS from `start`."""
    first = HINTS.index(start)
    return HINTS[first : first + length]


class HintedAdditionTask(RegroupedOperands, Task):
    """What both hinted additions share: two hinted n-digit operands, a sum of up to n + 1 hinted digits."""

    prompt_pattern = re.compile(r"((?:[a-zA-Z][0-9])+)\+((?:[a-zA-Z][0-9])+)=")

    def prompt_error(self, prompt: str) -> str | None:
        match = self.prompt_pattern.fullmatch(prompt)
        if match is None or match[1][::2] != match[2][::2] or not all(map(self.operand_ok, match.groups())):
            return f"not a {self.name} prompt ({self.prompt_rule})"
        return None

    @abstractmethod
    def operand_ok(self, operand: str) -> bool:
        """Whether a hinted operand (its letters the other's) is one this task writes, with a letter left for
        the sum's carry digit."""

    @property
    def vocabulary(self) -> list[str]:
        return [*DIGIT_VOCABULARY, *HINTS]

    def answer_tokens(self, difficulty: Difficulty) -> int:
        return 2 * (int(difficulty) + 1)

    def prompt_tokens(self, difficulty: Difficulty) -> int:
        return 4 * int(difficulty) + 2

    def difficulty_error(self, difficulty: Difficulty) -> str | None:
        if int(difficulty) >= len(HINTS):
            return f"{difficulty} digits need {int(difficulty) + 1} hint letters; there are {len(HINTS)}"
        return None
