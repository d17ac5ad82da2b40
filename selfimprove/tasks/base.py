"""What every task provides. A task knows everything about its problem and nothing about training:
its vocabulary, its difficulty, how to sample instances, the one judge of correctness (`check`), which
labels vote together, the structural length rule the length filter may use, its token budget, its prompt
grammar (the prompts it writes: what `load().answer()` accepts), and optionally the position ids of its tokens
(position coupling: `positions`) and rewrites of a prompt that must give the same answer (`present`)."""

from __future__ import annotations

import random
import re
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import fields
from math import factorial
from typing import Any, ClassVar, NamedTuple

import numpy as np

from selfimprove.tasks.difficulty import NUMBERS, Difficulties, Difficulty

DIGITS = "0123456789"
# One vocabulary for every task written in digits, "+" and "=": a checkpoint of one (copy) can go on
# training on another (reverse, addition) with no change of embedding.
DIGIT_VOCABULARY = [*DIGITS, "+", "="]

REGISTRY: dict[str, type[Task]] = {}

# A token's position id, or its ids at each level where a task gives several (`Task.position_levels`)
PositionId = int | tuple[int, ...]


class Example(NamedTuple):
    prompt: str  # ends with "=": the model writes the answer after it
    answer: str


class Presentation(NamedTuple):
    """A prompt asked another way: `prompt` must have the answer of the original up to a map the task knows."""

    prompt: str
    back: Callable[[str], str]  # a label of `prompt` -> the label it stands for of the original prompt
    # A rewrite whose answer is another label with the same vote key (multiplication's b*a: another chain of thought,
    # the same product) gives its own difficulty: its answers are budgeted and checked at it, count in a vote by their
    # key alone and are never kept as the prompt's label. None: `back` gives a whole label of the original prompt.
    difficulty: Difficulty | None = None


def unchanged(label: str) -> str:
    return label


class RenamedDigits:
    """Rewrites for a task whose answer is renamed with its prompt's digits (copy, reverse): the prompt with its
    digits renamed by a random permutation (digit d written perm[d]); `back` renames a label's digits back. Listed
    before the task's base class, so that its `presentations` and `rewrite` are the task's."""

    presentations = factorial(10)  # every permutation of 0-9

    def rewrite(self, prompt: str, index: int, rng: np.random.Generator) -> Presentation:
        perm = "".join(map(str, rng.permutation(10)))
        back = str.maketrans(perm, DIGITS)
        return Presentation(prompt.translate(str.maketrans(DIGITS, perm)), lambda label: label.translate(back))


class RegroupedOperands(ABC):
    """Rewrites for an addition `a+b=`: the same sum split another way, `(a+d)+(b-d)=`, with d drawn at random among
    the nonzero shifts that keep both operands numbers of the prompt's size (b+a is the shift d = b - a). Every digit
    and carry the model works through changes while the answer does not, so its errors on the two seldom coincide,
    where b+a, a digit sum being symmetric, is worked digit for digit as a+b is. The rewrite reads the operands'
    values, never the sum. Listed before the task's base class, as `RenamedDigits`; the task reads and writes an
    operand (`operands`, `with_operands`) and bounds it (`operand_bounds`)."""

    presentations = sys.maxsize  # a shift drawn anew for each: as many as the operands allow

    @abstractmethod
    def operands(self, prompt: str) -> tuple[int, int]:
        """The values a and b of the prompt's operands."""

    @abstractmethod
    def with_operands(self, prompt: str, a: int, b: int) -> str:
        """The prompt with its operands' values replaced by a and b, written at its size (and hints)."""

    @abstractmethod
    def operand_bounds(self, prompt: str) -> tuple[int, int]:
        """The least and the largest value an operand of the prompt's size can have."""

    def rewrite(self, prompt: str, index: int, rng: np.random.Generator) -> Presentation:
        a, b = self.operands(prompt)
        low, high = self.operand_bounds(prompt)
        least, most = max(low - a, b - high), min(high - a, b - low)  # the shifts allowed: 0 (the prompt), b - a
        # Python's integers, not numpy's: the number of n-digit shifts outgrows 64 bits past 18 digits.
        d = least + random.Random(int(rng.integers(2**63))).randrange(max(most - least, 1))
        d += d >= 0 and most > least  # d = 0 is the prompt itself: skipped where another shift exists
        return Presentation(self.with_operands(prompt, a + d, b - d), unchanged)


def random_digits(length: int, count: int, rng: np.random.Generator) -> list[str]:
    """`count` uniformly random digit strings of exactly `length` digits (leading zeros allowed)."""
    digits = rng.integers(0, 10, size=(count, length), dtype=np.uint8) + ord("0")
    return [row.tobytes().decode("ascii") for row in digits]


def n_digit_bounds(digits: int) -> tuple[int, int]:
    """The least and the largest number `random_numbers` draws of `digits` digits."""
    return (0 if digits == 1 else 10 ** (digits - 1)), 10**digits - 1


def random_numbers(digits: int, count: int, rng: np.random.Generator) -> list[str]:
    """`count` uniformly random numbers of exactly `digits` digits, as strings: no leading zero (one
    digit: 0-9)."""
    if digits == 1:
        return random_digits(1, count, rng)
    leads = rng.integers(1, 10, size=count).tolist()
    return [f"{lead}{rest}" for lead, rest in zip(leads, random_digits(digits - 1, count, rng), strict=True)]


def coupled_ids(
    prompt_ids: list[PositionId], answer_ids: list[PositionId], answer_tokens: int, blank: PositionId = 0
) -> list[PositionId]:
    """Position ids for BOS (0), a prompt's tokens and `answer_tokens` answer slots, from each prompt token's own id
    (`prompt_ids`) and each answer token's (`answer_ids`, in writing order). A token is written by the input before
    it, so where the answer begins every input carries the id of the token it is about to write: the last prompt
    token ("=") the first answer token's, answer slot j the id of slot j + 1. The input that writes EOS has id 0,
    BOS's, and so have the slots past it (whatever decoding writes after EOS): "my id is BOS's" is a rule for ending
    that holds at every size (an id one past the answer's last generalised worse: docs/trials.md). A query then finds
    the prompt tokens it needs by their ids (Cho et al. 2024). `blank`: the id of no place (a tuple of zeros where a
    token has an id per level)."""
    about_to_write = [answer_ids[j + 1] if j + 1 < len(answer_ids) else blank for j in range(answer_tokens)]
    return [blank, *prompt_ids[:-1], answer_ids[0], *about_to_write]


class Task(ABC):
    """Subclasses with a `name` register themselves: `data.task=<name>` finds them."""

    name: ClassVar[str]
    # The prompts this task writes, as a pattern and in words; `prompt_error` adds what a pattern cannot say.
    prompt_pattern: ClassVar[re.Pattern[str]]
    prompt_rule: ClassVar[str]
    # The task's own settings, a dataclass with their defaults: each field is a `data.<field>` key (the data schema
    # holds every task's, so that a run.json records the same keys whatever the task). None: it has none.
    Parameters: ClassVar[type | None] = None
    difficulties: ClassVar[Difficulties] = NUMBERS  # an int per difficulty, or PAIRS
    min_difficulty: int = 1  # the smallest difficulty (per side, for pairs)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTRY[cls.name] = cls

    def __init__(self, params: Any = None) -> None:
        """`params`: the task's settings, an instance of `Parameters` (None: its defaults)."""
        self.params = self.Parameters() if params is None and self.Parameters is not None else params

    @classmethod
    def parameters(cls) -> tuple[str, ...]:
        """The data config keys the task may read (beyond the base set): the fields of its `Parameters`."""
        return tuple(f.name for f in fields(cls.Parameters)) if cls.Parameters is not None else ()

    @classmethod
    def from_config(cls, data: Any) -> Task:
        """The task with its parameters from `data`, the data config group (None: the defaults)."""
        if data is None or cls.Parameters is None:
            return cls()
        return cls(cls.Parameters(**{name: getattr(data, name) for name in cls.parameters()}))

    def settings(self) -> tuple[str, ...]:
        """The `parameters` this task, with its values of them, reads: a value given for another does nothing."""
        return self.parameters()

    # -- vocabulary -----------------------------------------------------------------------------
    @property
    def vocabulary(self) -> list[str]:
        """Every token a prompt or answer is written with (the tokenizer is built from it)."""
        return list(DIGIT_VOCABULARY)

    # -- instances and the judge ----------------------------------------------------------------
    @abstractmethod
    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        """`count` random instances of `difficulty`, with their true answers."""

    @abstractmethod
    def check(self, prompt: str, label: str) -> bool:
        """Whether `label` is a correct answer to `prompt`: the one judge of correctness."""

    def prompt_error(self, prompt: str) -> str | None:
        """Why `prompt` is not one this task can have written (None: it is): a model answers only those."""
        if self.prompt_pattern.fullmatch(prompt) is None:
            return f"not a {self.name} prompt ({self.prompt_rule})"
        return None

    def vote_key(self, label: str) -> str:
        """Labels with the same key vote together in the majority vote."""
        return label

    # -- structure ------------------------------------------------------------------------------
    def consistent(self, label: str) -> bool:
        """Whether the parts of `label` agree with each other (a scratchpad and the answer it leads to): a rule on the
        label alone, never the oracle, which the consistency filter applies. True for a label of one part."""
        return True

    @abstractmethod
    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        """The structural length rule the length filter applies (never the oracle)."""

    @abstractmethod
    def answer_tokens(self, difficulty: Difficulty) -> int:
        """The most answer tokens an instance of `difficulty` can have (EOS excluded)."""

    @abstractmethod
    def prompt_tokens(self, difficulty: Difficulty) -> int:
        """The most prompt tokens (the "=" included) an instance of `difficulty` can have."""

    def sequence_tokens(self, difficulty: Difficulty) -> int:
        """Tokens of a whole training sequence at most: BOS + prompt + answer + EOS."""
        return 1 + self.prompt_tokens(difficulty) + self.answer_tokens(difficulty) + 1

    # -- position coupling (model.pos_encoding=coupled) -----------------------------------------
    # How many ids a token has: 1, or a tuple of `position_levels` ids (model.position_levels must agree).
    position_levels: ClassVar[int] = 1

    def positions(self, prompt: str, answer_tokens: int) -> list[PositionId] | None:
        """The position ids of BOS, `prompt`'s tokens and `answer_tokens` answer slots (EOS is a slot; decoding may
        ask for slots past it), one id per token (a tuple of one per level if `position_levels` > 1): tokens that
        share an id are coupled. A function of the prompt and of the slot's index, never of an answer's content.
        Ids of an instance of difficulty d lie in [0, max_position(d)]; 0 is the id of a token with no place (BOS,
        signs, slots past the answer), which a training offset leaves at 0. None: the task gives no ids (the
        default)."""
        return None

    def max_position(self, difficulty: Difficulty) -> int | None:
        """The largest position id `positions` gives an instance of `difficulty` (None: the task gives none)."""
        return None

    def no_positions_reason(self) -> str:
        """Why this task, with these parameters, gives no position ids (said when a coupled model asks for them)."""
        return f"data.task={self.name} gives none"

    # -- presentations (si.filters.presentations) ---------------------------------------------------
    # How many distinct presentations of one prompt the task can write, the prompt itself included (1: no rewrites).
    presentations: ClassVar[int] = 1

    def present(self, prompt: str, index: int, rng: np.random.Generator) -> Presentation:
        """Presentation `index` (0 <= index < presentations) of `prompt`: 0 is the prompt itself, every other one a
        rewrite that must have the same answer up to a map the task knows (never the oracle); `rng` draws what a
        rewrite chooses at random. Applying a rewrite's `back` to the rewrite's true answer gives the prompt's."""
        if index == 0:
            return Presentation(prompt, unchanged)
        return self.rewrite(prompt, index, rng)

    def rewrite(self, prompt: str, index: int, rng: np.random.Generator) -> Presentation:
        """Presentation `index` >= 1 of `prompt` (see `present`); tasks with `presentations` > 1 write it."""
        raise NotImplementedError(f"{self.name} declares no rewrites of a prompt")

    def difficulty_error(self, difficulty: Difficulty) -> str | None:
        """Why instances of `difficulty` cannot be made with this task's parameters (None: they can)."""
        return None

    def parameter_error(self) -> str | None:
        """Why a parameter this task reads (`settings`) has a value it cannot use, naming that key (None: fine)."""
        return None

    def base_error(self, base_min: int) -> str | None:
        """Why the base set cannot start at `base_min` (None: it can)."""
        if base_min >= self.min_difficulty:
            return None
        return f"data.base_min={base_min}: {self.name} difficulties start at {self.min_difficulty}"


class DigitsTask(Task):
    """A task whose prompt is one digit string `a=` and whose answer is a function of it, of equal length."""

    prompt_pattern = re.compile(r"[0-9]+=")
    prompt_rule = "digits, then '=', e.g. 0123="

    @abstractmethod
    def transform(self, digits: str) -> str:
        """The answer to the digit string `digits`."""

    def sample(self, difficulty: Difficulty, count: int, rng: np.random.Generator) -> list[Example]:
        return [Example(f"{a}=", self.transform(a)) for a in random_digits(int(difficulty), count, rng)]

    def check(self, prompt: str, label: str) -> bool:
        return label == self.transform(prompt.removesuffix("="))

    def length_ok(self, difficulty: Difficulty, label: str) -> bool:
        return len(label) == difficulty

    def answer_tokens(self, difficulty: Difficulty) -> int:
        return int(difficulty)

    def prompt_tokens(self, difficulty: Difficulty) -> int:
        return int(difficulty) + 1
