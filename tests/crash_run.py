"""`python tests/crash_run.py POINT <run.py args>`: run.py, SIGKILLed by itself at POINT.

POINT is one of
  marker:STAGE          the stage's outputs are written, its done-marker is not
  checkpoint:STAGE:STEP a mid-stage training checkpoint at STEP was just written
  rename:FILENAME       a file's temporary copy is complete, the rename over FILENAME is not done
A real SIGKILL: no exception handler, atexit hook or finally block runs.
"""

from __future__ import annotations

import os
import runpy
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from selfimprove import store
from selfimprove.loop.checkpoint import Checkpoint


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


kind, _, where = sys.argv.pop(1).partition(":")
if kind == "marker":
    mark_done = store.RunDir.mark_done

    def crash_before_marker(self, stage, result):
        if stage == where:
            die()
        mark_done(self, stage, result)

    store.RunDir.mark_done = crash_before_marker
elif kind == "checkpoint":
    stage, step = where.rsplit(":", 1)
    save = Checkpoint.save

    def crash_after_checkpoint(self, path):
        save(self, path)
        if self.stage == stage and self.step == int(step):
            die()

    Checkpoint.save = crash_after_checkpoint
elif kind == "rename":
    replace = os.replace

    def crash_before_rename(src, dst):
        if Path(dst).name == where:
            die()
        replace(src, dst)

    store.os.replace = crash_before_rename
else:
    raise SystemExit(f"unknown crash point {kind!r}")

# Run run.py as a script, so that Hydra finds conf/ beside it.
runpy.run_path(str(Path(__file__).resolve().parents[1] / "run.py"), run_name="__main__")
