"""The curriculum (the si/ group's schedule): the base set, the order of harder difficulties, the next
round's targets, the difficulties evaluated and the reach.

Past the base set, difficulties come in *steps*, taken in order: for each size n = base_max + 1, base_max + 2, ...
the steps the task's difficulty type gives that size (selfimprove/tasks/difficulty.py):
- int difficulties (lengths, hops): {n};
- pair difficulties (a, b), base base_min..base_max on both sides: {(1, n), (n, 1)}, {(2, n), (n, 2)}, ...,
  {(n, n)}: the paper's order for multiplication.
linear takes `si.length_step` steps per round; accelerated (the paper's fast mode) takes every
consecutive step whose difficulties all score at least `si.accelerate_threshold` (the next one alone
when none does). Either moves past the newest step only once it scores at least `si.advance_threshold`
(0: always): below, the next round labels that step again. The *size* of a difficulty is the int itself
or the larger side of a pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from selfimprove.tasks import Difficulty, Task
from selfimprove.tasks.difficulty import Difficulties, size


class Curriculum:
    def __init__(
        self,
        difficulties: Difficulties,
        low: int,
        base_min: int,
        base_max: int,
        schedule: str = "linear",
        steps_per_round: int = 1,
        accelerate_threshold: float = 0.99,
        lookahead: int = 1,
        advance_threshold: float = 0.0,
    ) -> None:
        self.difficulties, self.low, self.base_min, self.base_max = difficulties, low, base_min, base_max
        self.schedule, self.steps_per_round = schedule, steps_per_round
        self.accelerate_threshold, self.lookahead = accelerate_threshold, lookahead
        self.advance_threshold = advance_threshold

    @classmethod
    def from_config(cls, cfg: Any, task: Task) -> Curriculum:
        return cls(
            task.difficulties,
            task.min_difficulty,
            cfg.data.base_min,
            cfg.data.base_max,
            cfg.si.schedule,
            cfg.si.length_step,
            cfg.si.accelerate_threshold,
            cfg.data.eval_lookahead,
            cfg.si.advance_threshold,
        )

    # -- the order of difficulties --------------------------------------------------------------
    @property
    def base(self) -> list[Difficulty]:
        return self.difficulties.base(self.base_min, self.base_max)

    def steps_of_size(self, n: int) -> list[list[Difficulty]]:
        return self.difficulties.steps(n, self.low)

    def step(self, index: int) -> list[Difficulty]:
        """The difficulties of step `index` (0: the first past the base set)."""
        n = self.base_max + 1
        while index >= len(self.steps_of_size(n)):
            index -= len(self.steps_of_size(n))
            n += 1
        return self.steps_of_size(n)[index]

    def step_index(self, difficulty: Difficulty) -> int:
        n = size(difficulty)
        before = sum(len(self.steps_of_size(m)) for m in range(self.base_max + 1, n))
        return before + next(i for i, step in enumerate(self.steps_of_size(n)) if difficulty in step)

    def steps_taken(self, targets: Iterable[Difficulty]) -> int:
        """How many steps past the base the targets so far cover (they are taken in order)."""
        return max((self.step_index(t) + 1 for t in targets), default=0)

    # -- rounds ---------------------------------------------------------------------------------
    def next_targets(self, targets: Iterable[Difficulty], accuracy: Mapping[Difficulty, float]) -> list[Difficulty]:
        """The next round's targets, given every earlier round's targets and the latest accuracies."""
        targets = list(targets)
        if targets and self.advance_threshold > 0:
            newest = self.newest(targets)
            if any(accuracy.get(d, 0.0) < self.advance_threshold for d in newest):
                return newest  # not learnt well enough to label past it: label it again
        first = self.steps_taken(targets)
        if self.schedule == "linear":
            return [d for i in range(first, first + self.steps_per_round) for d in self.step(i)]
        taken: list[Difficulty] = []
        index = first
        while all(accuracy.get(d, 0.0) >= self.accelerate_threshold for d in self.step(index)):
            taken += self.step(index)
            index += 1
        return taken or self.step(first)

    def newest(self, targets: Iterable[Difficulty]) -> list[Difficulty]:
        """The last step the targets so far reach (the base's largest difficulty before any round)."""
        taken = self.steps_taken(targets)
        if taken:
            return self.step(taken - 1)
        return [self.difficulties.hardest(self.base_max)]

    def next_step(self, targets: Iterable[Difficulty]) -> list[Difficulty]:
        return self.step(self.steps_taken(targets))

    def largest_size(self, targets: Iterable[Difficulty]) -> int:
        return max([self.base_max, *(size(t) for t in targets)])

    def of_size(self, n: int) -> list[Difficulty]:
        return self.difficulties.of_size(n, self.low)

    def up_to(self, n: int) -> list[Difficulty]:
        """Every difficulty of size at most `n`."""
        return [d for m in range(self.low, n + 1) for d in self.of_size(m)]

    def eval_difficulties(self, targets: Iterable[Difficulty]) -> list[Difficulty]:
        """Every difficulty up to `eval_lookahead` sizes past the largest trained one."""
        return self.up_to(self.largest_size(targets) + self.lookahead)

    def reach(self, accuracy: Mapping[Difficulty, float], threshold: float) -> int:
        """The largest size n such that every difficulty of size at most n scores at least `threshold`
        (0 if none); for pairs: every (a, b) with a, b <= n."""
        n = self.low - 1
        while all(accuracy.get(d, 0.0) >= threshold for d in self.of_size(n + 1)):
            n += 1
        return n if n >= self.low else 0

    def furthest_size(self, rounds: int) -> int:
        """The largest size a run of `rounds` rounds can train or evaluate on, whatever its results:
        accelerated takes at most the evaluated sizes, `eval_lookahead` past the largest trained one."""
        if self.schedule == "accelerated":
            return self.base_max + (rounds + 1) * self.lookahead
        if rounds == 0:
            return self.base_max + self.lookahead
        return size(self.step(rounds * self.steps_per_round - 1)[0]) + self.lookahead
