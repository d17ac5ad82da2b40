"""Reverse: `a=` -> `a` reversed."""

from __future__ import annotations

from selfimprove.tasks.copy import CopyTask


class ReverseTask(CopyTask):
    name = "reverse"

    def transform(self, digits: str) -> str:
        return digits[::-1]
