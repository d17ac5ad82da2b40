"""Which lengths a round labels next (the si/ group's schedule)."""

from __future__ import annotations

from collections.abc import Mapping

from selfimprove.config import SIConfig


def next_lengths(si: SIConfig, trained_max: int, accuracy: Mapping[int, float]) -> list[int]:
    """Target lengths for the next round, given the longest length trained so far and the latest
    accuracy per length.

    linear: the next `length_step` lengths. accelerated (the paper's fast mode): every consecutive
    length past `trained_max` whose accuracy is at least `accelerate_threshold`; the next length
    alone when there is none.
    """
    if si.schedule == "linear":
        return list(range(trained_max + 1, trained_max + 1 + si.length_step))
    targets = []
    while accuracy.get(trained_max + 1 + len(targets), 0.0) >= si.accelerate_threshold:
        targets.append(trained_max + 1 + len(targets))
    return targets or [trained_max + 1]


def reach(accuracy: Mapping[int, float], threshold: float) -> int:
    """Longest L such that accuracy at every length 1..L is at least `threshold` (0 if none)."""
    length = 0
    while accuracy.get(length + 1, 0.0) >= threshold:
        length += 1
    return length
