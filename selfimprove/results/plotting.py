"""What every figure of a run or a comparison shares: axes of counts (rounds, sizes) with whole-number ticks."""

from __future__ import annotations

from typing import Any


def integer_axis(ax: Any, which: str, spread: bool = True) -> None:
    """Whole-number ticks on `ax`'s `which` axis ("x" or "y"). With `spread`, an axis whose data span less than
    2 (one round, one reach) is widened to one unit either side: matplotlib's own margin around a single value
    is ±0.04, which draws fractional ticks."""
    from matplotlib.ticker import MaxNLocator

    getattr(ax, f"{which}axis").set_major_locator(MaxNLocator(integer=True))
    low, high = getattr(ax, f"get_{which}lim")()
    if spread and high - low < 2:
        middle = (low + high) / 2
        getattr(ax, f"set_{which}lim")(middle - 1, middle + 1)
