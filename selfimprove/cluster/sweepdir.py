"""The sweep directory: sweep.json, the states of its jobs, and the status report.

- `<sweep>/sweep.json`: the grid, each point's overrides and run directory, every job submitted per stage;
- `<sweep>/<num>/`: one run directory per point (what run.py writes, plus .hydra/ from the sweep);
- `<sweep>/.submitit/<job id>/`: submitit's pickles and each job's stdout/stderr log.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from selfimprove.errors import CorruptFileError, LaunchError
from selfimprove.loop import graph
from selfimprove.results.metrics import table
from selfimprove.store import RunDir, atomic_write_json, read_json

SWEEP_FILE = "sweep.json"
# Scheduler states of a job that may still run (or run again): such a job is waited for, not resubmitted.
ACTIVE = {
    "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
    "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
}  # fmt: skip
FAILED = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


# -- the sweep directory ----------------------------------------------------------------------------
@dataclass
class SweepDir:
    root: Path
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        return self.root / SWEEP_FILE

    @property
    def submitit_folder(self) -> Path:
        return self.root / ".submitit" / "%j"

    @classmethod
    def load(cls, root: str | Path) -> SweepDir:
        root = Path(root).resolve()
        if not (root / SWEEP_FILE).is_file():
            raise LaunchError(f"{root} is not a sweep directory (no {SWEEP_FILE})")
        try:
            data = read_json(root / SWEEP_FILE)
        except CorruptFileError as e:
            raise LaunchError(str(e)) from None
        if not isinstance(data, dict) or "points" not in data:
            raise LaunchError(f"{root / SWEEP_FILE} is not a sweep record")
        return cls(root, data)

    def save(self) -> None:
        atomic_write_json(self.file, self.data)

    def run_dir(self, num: int) -> Path:
        return self.root / self.data["points"][num]["run_dir"]

    def jobs(self, num: int, stage: str) -> list[dict[str, Any]]:
        return self.data["jobs"].setdefault(str(num), {}).setdefault(stage, [])

    def records(self) -> list[dict[str, Any]]:
        """Every job ever submitted into this sweep."""
        return [r for stages in self.data["jobs"].values() for jobs in stages.values() for r in jobs]

    def latest(self, num: int, stage: str) -> dict[str, Any] | None:
        jobs = self.data["jobs"].get(str(num), {}).get(stage, [])
        return jobs[-1] if jobs else None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """One launcher per sweep directory at a time (local and debug launchers hold it until the end)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".sweep.lock").open("a+") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                raise LaunchError(f"another sweep.py is launching into {self.root} (pid {f.read().strip()})") from None
            f.truncate(0)
            f.write(str(os.getpid()))
            f.flush()
            yield

    def launcher_running(self) -> bool:
        """Whether a sweep.py holds the lock now (a local or debug launcher runs until its jobs end)."""
        path = self.root / ".sweep.lock"
        if not path.exists():
            return False
        with path.open("r") as f:  # read-only, as status is: a sweep directory it cannot write is still read
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(f, fcntl.LOCK_UN)
            return False


# -- job states -------------------------------------------------------------------------------------
def queued_states() -> dict[str, str]:
    """squeue's state of this user's jobs, one line per array task."""
    states: dict[str, str] = {}
    if shutil.which("squeue") is None:
        return states
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["squeue", "--me", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True, timeout=30)
        for line in out.stdout.splitlines():
            job_id, _, state = line.partition("|")
            states[job_id.strip()] = state.strip()
    return states


def slurm_states(ids: list[str]) -> dict[str, str]:
    """squeue for queued jobs, then sacct (through submitit's watcher) for finished ones."""
    if not ids:
        return {}
    states = queued_states()
    rest = [i for i in ids if i not in states]
    if rest and shutil.which("sacct"):
        watcher = submitit.slurm.slurm.SlurmInfoWatcher(delay_s=0)
        for job_id in rest:
            watcher.register_job(job_id)
        watcher.update()
        for job_id in rest:
            state = watcher.get_state(job_id, mode="cache")
            if state != "UNKNOWN":
                states[job_id] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    return states


def _local_alive(job_id: str) -> bool:
    """A local job is its controller process, which outlives a killed launcher."""
    try:
        return "submitit.local._local" in Path(f"/proc/{job_id}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return False


def _from_result_pickle(record: dict[str, Any]) -> str | None:
    path = Path(record.get("stderr", "")).with_name(f"{record['id']}_0_result.pkl")
    try:
        with path.open("rb") as f:
            outcome = pickle.load(f)[0]
    except (OSError, pickle.UnpicklingError, EOFError, IndexError, TypeError):
        return None
    return "COMPLETED" if outcome == "success" else "FAILED"


def job_states(records: list[dict[str, Any]], launcher_running: bool = False) -> dict[str, str]:
    """The state of each recorded job, by id: the scheduler's word for SLURM jobs, the launcher's record for
    local and debug jobs (checked against the processes still alive: a killed launcher leaves no liar)."""
    slurm = slurm_states([r["id"] for r in records if r["cluster"] == "slurm"])
    states = {}
    for r in records:
        state = r.get("state") or "UNKNOWN"
        if r["cluster"] == "slurm":
            state = slurm.get(r["id"]) or _from_result_pickle(r) or "UNKNOWN"
        elif r["cluster"] == "local" and state == "RUNNING":
            state = "RUNNING" if _local_alive(r["id"]) else _from_result_pickle(r) or "INTERRUPTED"
        elif r["cluster"] == "debug" and state in ("PENDING", "RUNNING") and not launcher_running:
            state = "INTERRUPTED"  # it ran inside a launcher that is gone
        states[r["id"]] = state
    return states


# -- status -----------------------------------------------------------------------------------------
@dataclass
class Report:
    text: str
    failed: bool


def traceback_tail(path: Path, lines: int = 8) -> list[str]:
    """The last lines of the last traceback in a job's log (or of the log when it has none), without the
    scheduler's own lines after it."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return [f"(no log at {path})"]
    start = text.rfind("Traceback (most recent call last)")
    body = (text[start:] if start >= 0 else text).rstrip().splitlines()
    return [line for line in body if not line.startswith(("srun: ", "slurmstepd"))][-lines:]


def status(root: str | Path) -> Report:
    """A table per pipeline: the stage it reached, its jobs' states, the latest reach and label accuracy,
    and for each failed job the path of its log and the end of its traceback."""
    sweep = SweepDir.load(root)
    states = job_states(sweep.records(), sweep.launcher_running())
    lines, failed = [f"sweep dir: {sweep.root}   ({len(sweep.data['points'])} pipeline(s))"], False
    extras = sweep.data.get("resume_overrides") or []
    for entry in sweep.data["points"]:
        report = _pipeline(sweep, entry, extras, states)
        lines += ["", report.text]
        failed = failed or report.failed
    return Report("\n".join(lines), failed)


def _pipeline(sweep: SweepDir, entry: dict[str, Any], extras: list[str], states: dict[str, str]) -> Report:
    num = entry["num"]
    run = RunDir(sweep.run_dir(num))
    try:
        summary = read_json(run.summary) if run.summary.exists() else {}
    except CorruptFileError:
        summary = {}
    rows, failures, reached = [], [], None
    for step in graph.steps(entry.get("voters", 1), entry.get("rounds", 0)):
        stages = step.stages()
        done = [s for s in stages if run.is_done(s)]
        latest = [sweep.latest(num, s) for s in stages]
        step_states = [states.get(r["id"], "UNKNOWN") if r else "-" for r in latest]
        if len(done) < len(stages) and reached is None:
            reached = step.name
        ids = " ".join(r["id"] for r in latest if r) or "-"
        counts = Counter(step_states)
        rows.append(
            [
                step.name,
                f"{len(done)}/{len(stages)}",
                ids,
                ", ".join(f"{s} x{n}" if n > 1 else s for s, n in counts.items()),
            ]
        )
        failures += [
            (s, r, state)
            for s, r, state in zip(stages, latest, step_states, strict=True)
            if r and state in FAILED and not run.is_done(s)
        ]
    rounds = summary.get("rounds") or []
    label_accuracy = next((r["label_accuracy"] for r in reversed(rounds) if r["label_accuracy"] is not None), None)
    if summary.get("stopped"):
        where = f"stopped: {summary['stopped']}"
    else:
        where = "finished" if reached is None else f"at {reached}"
    resumed = f"   (resumed with {' '.join(extras)})" if extras else ""
    lines = [
        f"pipeline {num}: {' '.join(entry['overrides']) or '(defaults)'}{resumed}   run dir: {run.root}",
        f"reached: {where}   reach: {summary.get('reach', '-') if rounds else '-'}   label accuracy: "
        + (f"{label_accuracy:.3f}" if label_accuracy is not None else "-"),
        table(["step", "done", "job", "state"], rows),
    ]
    if summary.get("drift"):  # summaries written before drift was reported have no such key
        lines.insert(2, summary["drift"])
    for stage, r, state in failures:
        lines.append(f"FAILED {stage}: job {r['id']} {state}   log: {r['stderr']}")
        lines += ["    " + line for line in traceback_tail(Path(r["stderr"]))]
    return Report("\n".join(lines), bool(failures))
