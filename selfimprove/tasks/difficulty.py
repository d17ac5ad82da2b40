"""What a difficulty is: an int (copy: digits; maze: hops) or a pair (multiplication: digits of a, digits of b).

The one home of every int-or-pair branch. A task declares which it has (`Task.difficulties`: NUMBERS or PAIRS);
the curriculum, evaluation and reports go through that object and the functions here, never `isinstance`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

Difficulty = int | tuple[int, ...]


def sides(difficulty: Difficulty) -> tuple[int, ...]:
    """The numbers a difficulty is made of: `(12,)`, or `(3, 4)` for a pair."""
    return difficulty if isinstance(difficulty, tuple) else (difficulty,)


def size(difficulty: Difficulty) -> int:
    """The int itself, or the larger side of a pair: what `eval_lookahead`, reach and block sizes count in."""
    return max(sides(difficulty))


def as_difficulty(value: Any) -> Difficulty:
    """A difficulty read back from JSON (where tuples became lists)."""
    return tuple(value) if isinstance(value, list) else int(value)


def difficulty_name(difficulty: Difficulty) -> str:
    """How a difficulty is written in summaries and tables: `12`, or `3x4` for a pair."""
    return "x".join(map(str, sides(difficulty)))


def from_name(name: str) -> Difficulty:
    """The difficulty a `difficulty_name` names."""
    numbers = tuple(int(n) for n in name.split("x"))
    return numbers if len(numbers) > 1 else numbers[0]


class Difficulties(ABC):
    """The difficulties of one shape, and how they group: the base grid, all of one size, the curriculum steps."""

    pair: ClassVar[bool]  # recorded in summary.json: how its plots lay the difficulties out

    @abstractmethod
    def hardest(self, size: int) -> Difficulty:
        """The difficulty of `size` on every side."""

    @abstractmethod
    def base(self, low: int, high: int) -> list[Difficulty]:
        """Every difficulty with each side in low..high."""

    @abstractmethod
    def of_size(self, size: int, low: int) -> list[Difficulty]:
        """Every difficulty of `size` whose sides are at least `low`, in evaluation order."""

    @abstractmethod
    def steps(self, size: int, low: int) -> list[list[Difficulty]]:
        """The curriculum steps that take the difficulties of `size` in, in the order they are taken."""


class Numbers(Difficulties):
    pair = False

    def hardest(self, size: int) -> Difficulty:
        return size

    def base(self, low: int, high: int) -> list[Difficulty]:
        return list(range(low, high + 1))

    def of_size(self, size: int, low: int) -> list[Difficulty]:
        return [size]

    def steps(self, size: int, low: int) -> list[list[Difficulty]]:
        return [[size]]


class Pairs(Difficulties):
    """(a, b), side n taken in steps {(1, n), (n, 1)}, {(2, n), (n, 2)}, ..., {(n, n)}: the paper's multiplication."""

    pair = True

    def hardest(self, size: int) -> Difficulty:
        return (size, size)

    def base(self, low: int, high: int) -> list[Difficulty]:
        sides = range(low, high + 1)
        return [(a, b) for a in sides for b in sides]

    def of_size(self, size: int, low: int) -> list[Difficulty]:
        return [(a, size) for a in range(low, size + 1)] + [(size, b) for b in range(low, size)]

    def steps(self, size: int, low: int) -> list[list[Difficulty]]:
        return [[(k, size), (size, k)] for k in range(low, size)] + [[(size, size)]]


NUMBERS, PAIRS = Numbers(), Pairs()
