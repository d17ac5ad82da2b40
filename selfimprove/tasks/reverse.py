"""Reverse: `a=` -> `a` reversed. Difficulty: the number of digits."""

from __future__ import annotations

from selfimprove.tasks.base import DigitsTask


class ReverseTask(DigitsTask):
    name = "reverse"

    def transform(self, digits: str) -> str:
        return digits[::-1]
