"""`python sweep.py status DIR`: a table per pipeline of a sweep directory, with each job's state as the
scheduler reports it and, for a failed job, its log and the end of its traceback."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfimprove.cluster import scheduler, sweeplock
from selfimprove.cluster.sweepdir import SweepDir
from selfimprove.errors import CorruptFileError
from selfimprove.loop import graph
from selfimprove.results.metrics import table
from selfimprove.store import RunDir, read_json


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
    return [line for line in body if not line.startswith(scheduler.OWN_LOG_LINES)][-lines:]


def status(root: str | Path) -> Report:
    """A table per pipeline: the stage it reached, its jobs' states, the latest reach and label accuracy,
    and for each failed job the path of its log and the end of its traceback."""
    sweep = SweepDir.load(root)
    states = scheduler.job_states(sweep.records(), sweeplock.held(sweep.root))
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
            if r and state in scheduler.FAILED and not run.is_done(s)
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
