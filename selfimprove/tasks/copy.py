"""Copy: `a=` -> `a`. Difficulty: the number of digits."""

from __future__ import annotations

from selfimprove.tasks.base import DigitsTask


class CopyTask(DigitsTask):
    name = "copy"

    def transform(self, digits: str) -> str:
        return digits
