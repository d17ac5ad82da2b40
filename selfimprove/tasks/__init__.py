"""Tasks: a generator of instances of a given length and an oracle that checks labels."""

from __future__ import annotations

from selfimprove.tasks.base import Example, Task
from selfimprove.tasks.copy import CopyTask
from selfimprove.tasks.reverse import ReverseTask
from selfimprove.tasks.reverse_addition import ReverseAdditionTask

TASKS: dict[str, type[Task]] = {
    "copy": CopyTask,
    "reverse": ReverseTask,
    "reverse_addition": ReverseAdditionTask,
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]()


__all__ = ["TASKS", "Example", "Task", "get_task"]
