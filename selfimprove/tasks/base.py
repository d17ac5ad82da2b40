"""What every task provides: instances of a length, the answer's length, and the oracle."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np


class Example(NamedTuple):
    prompt: str  # ends with "=": the model writes the answer after it
    answer: str


def random_digits(length: int, count: int, rng: np.random.Generator) -> list[str]:
    """`count` uniformly random digit strings of exactly `length` digits (leading zeros allowed)."""
    digits = rng.integers(0, 10, size=(count, length), dtype=np.uint8) + ord("0")
    return [row.tobytes().decode("ascii") for row in digits]


class Task(ABC):
    name: str

    @abstractmethod
    def sample(self, length: int, count: int, rng: np.random.Generator) -> list[Example]:
        """`count` random instances of size `length`, with their true answers."""

    @abstractmethod
    def solve(self, prompt: str) -> str:
        """The oracle: the one correct answer to a prompt."""

    @abstractmethod
    def answer_length(self, length: int) -> int:
        """Number of answer characters of an instance of size `length`."""

    @abstractmethod
    def prompt_length(self, length: int) -> int:
        """Number of prompt characters (the "=" included) of an instance of size `length`."""

    @abstractmethod
    def length_of(self, prompt: str) -> int:
        """The size of the instance a prompt poses."""

    def check(self, prompt: str, label: str) -> bool:
        return label == self.solve(prompt)

    def sequence_length(self, length: int) -> int:
        """Tokens of a whole training sequence: BOS + prompt + answer + EOS."""
        return 1 + self.prompt_length(length) + self.answer_length(length) + 1
