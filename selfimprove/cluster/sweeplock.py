"""One launcher per sweep directory at a time: `.sweep.lock`, held with flock by the sweep.py launching into it
(a local or debug launcher holds it until its jobs end, so status can tell whether their jobs still run)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from selfimprove.errors import LaunchError

LOCK_FILE = ".sweep.lock"


@contextlib.contextmanager
def hold(root: Path) -> Iterator[None]:
    """The lock of sweep directory `root` (made if missing), with this process's pid in it; refused when another
    sweep.py holds it."""
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise LaunchError(f"another sweep.py is launching into {root} (pid {f.read().strip()})") from None
        f.truncate(0)
        f.write(str(os.getpid()))
        f.flush()
        yield


def held(root: Path) -> bool:
    """Whether a sweep.py holds the lock of `root` now."""
    path = root / LOCK_FILE
    if not path.exists():
        return False
    with path.open("r") as f:  # read-only, as status is: a sweep directory it cannot write is still read
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False
