"""Sort: `a=` -> the digits of `a` in ascending order. Difficulty: the number of digits.

The README's "Extending" example: this file, conf/data/sort.yaml and its rows in tests/test_tasks.py are
all it takes.
"""

from __future__ import annotations

from selfimprove.tasks.base import DigitsTask


class SortTask(DigitsTask):
    name = "sort"

    def transform(self, digits: str) -> str:
        return "".join(sorted(digits))
