"""Tasks: every module of this package that defines a Task subclass with a `name` registers it."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from selfimprove.tasks.base import REGISTRY, Example, Task
from selfimprove.tasks.difficulty import Difficulty, as_difficulty, difficulty_name

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

TASKS = REGISTRY


def get_task(name: str, data: Any = None) -> Task:
    """The task `name`, with its parameters from `data` (the data config group) when it has any."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name].from_config(data)


__all__ = ["TASKS", "Difficulty", "Example", "Task", "as_difficulty", "difficulty_name", "get_task"]
