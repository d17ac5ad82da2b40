"""One writer per run directory: `run.py` holds `<run dir>/.lock` exclusively while it walks the round graph;
a sweep's jobs hold it shared (the voters of one step train in parallel). The OS releases the lock when
its holder dies, so a run killed at any moment resumes without clean-up.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from selfimprove.errors import RunLockedError

LOCK_FILE = ".lock"
RETRY_S = 2.0  # `held` takes the lock for an instant: a starting run waits that long before refusing


@contextmanager
def hold(run_dir: str | Path, exclusive: bool = True) -> Iterator[None]:
    """Hold the run's lock for the block, or raise RunLockedError when another process holds it."""
    path = Path(run_dir) / LOCK_FILE
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    except PermissionError:
        raise RunLockedError(
            f"cannot write in {run_dir} (permission denied): a run goes on only where it can write; compare and "
            "selfimprove.load read it as it is"
        ) from None
    try:
        if not _take(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, wait_s=RETRY_S):
            raise RunLockedError(
                f"another process is running {run_dir} (a run.py or a sweep's jobs): wait for it to end or stop it"
            )
        yield
    finally:
        os.close(fd)  # releases the lock


def held(run_dir: str | Path) -> bool:
    """Whether a process holds the run's lock now (read-only: the lock file is never created here)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not _take(fd, fcntl.LOCK_EX, wait_s=0.0)
    finally:
        os.close(fd)


def _take(fd: int, mode: int, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
