"""Reverse: `a=` -> `a` reversed. Difficulty: the number of digits."""

from __future__ import annotations

from selfimprove.tasks.base import Difficulty, DigitsTask, RenamedDigits, coupled_ids


class ReverseTask(RenamedDigits, DigitsTask):
    name = "reverse"

    def transform(self, digits: str) -> str:
        return digits[::-1]

    def positions(self, prompt: str, answer_tokens: int) -> list[int]:
        """Coupled: prompt digit i and the answer digit it becomes share id i + 1."""
        places = list(range(1, len(prompt)))  # the digits before "="
        return coupled_ids([*places, 0], places[::-1], answer_tokens)

    def max_position(self, difficulty: Difficulty) -> int:
        return int(difficulty)
