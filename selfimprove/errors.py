"""Every error this project raises on purpose: one root type, whose message is one line that says what is wrong
and what to do. The entry points (run.py, sweep.py, python -m selfimprove.compare) catch `SelfImproveError`
and print `error: <message>`; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class SelfImproveError(Exception):
    """The root: a refusal or failure the user can act on, said in one line."""


class ConfigError(SelfImproveError, ValueError):
    """An inconsistent configuration: reported before any work starts."""


class ResumeError(SelfImproveError):
    """A resume that would change results, or a path that is not a run directory."""


class BaseFromError(SelfImproveError, ValueError):
    """The base_from run cannot serve as this run's base."""


class RunLockedError(SelfImproveError):
    """Another process holds the run directory (or it cannot be locked)."""


class CorruptFileError(SelfImproveError):
    """A run-directory file that cannot be read; the message names its path."""


class IncompatibleCheckpointError(SelfImproveError):
    """A checkpoint written for another vocabulary, model shape or base model; the message names its path."""


class NonFiniteLossError(SelfImproveError):
    """The loss became NaN or inf; the message says which stage and step."""


class LaunchError(SelfImproveError):
    """A sweep's bad input, found before anything is submitted."""


class CompareError(SelfImproveError):
    """Directories that cannot be compared (no runs, an unknown key)."""


class LoadError(SelfImproveError):
    """A run, voter or round that `selfimprove.load` cannot give a model for."""


def one_line(e: BaseException) -> str:
    """An exception (and its cause, when it adds something) as one line."""
    text = f"{e}: {e.__cause__}" if e.__cause__ and str(e.__cause__) not in str(e) else str(e)
    return " ".join(text.split())


def refuse(message: str) -> NoReturn:
    """The entry points' way out: `error: <message>` on stderr, exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class ArgumentParser(argparse.ArgumentParser):
    """argparse, whose refusals are one line naming the help (not a usage block)."""

    def error(self, message: str) -> NoReturn:
        refuse(f"{message} ({self.prog} --help)")
