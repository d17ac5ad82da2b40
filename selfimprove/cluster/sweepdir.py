"""The sweep directory and its record, sweep.json:

- `<sweep>/sweep.json`: the grid, each point's overrides and run directory, every job submitted per stage;
- `<sweep>/<num>/`: one run directory per point (what run.py writes, plus .hydra/ from the sweep);
- `<sweep>/.submitit/<job id>/`: submitit's pickles and each job's stdout/stderr log;
- `<sweep>/.sweep.lock`: held by the sweep.py launching into it (`sweeplock`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from selfimprove.cluster.scheduler import Submitted
from selfimprove.cluster.sweeplock import LOCK_FILE
from selfimprove.errors import CorruptFileError, LaunchError
from selfimprove.store import atomic_write_json, read_json

SWEEP_FILE = "sweep.json"


@dataclass
class SweepDir:
    root: Path
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def file(self) -> Path:
        return self.root / SWEEP_FILE

    @property
    def submitit_folder(self) -> Path:
        return self.root / ".submitit" / "%j"  # %j: the job id

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

    @classmethod
    def existing(cls, root: Path) -> SweepDir | None:
        """The sweep directory at `root`; None where a new one may be made (nothing there, or an empty folder)."""
        if (root / SWEEP_FILE).exists():
            return cls.load(root)
        if root.exists() and (not root.is_dir() or {p.name for p in root.iterdir()} - {LOCK_FILE}):
            raise LaunchError(
                f"{root} is not a sweep directory (no {SWEEP_FILE}) and not empty: refusing to write there"
            )
        return None

    def new_record(self, overrides: list[str], points: list[tuple[int, list[str]]]) -> None:
        """The record of a new sweep: its overrides and its points' (number, overrides); no job yet."""
        self.data = {
            "sweep": 1,
            "created": datetime.now().isoformat(timespec="seconds"),
            "overrides": overrides,
            "resume_overrides": [],
            "points": [{"num": num, "overrides": o, "run_dir": str(num)} for num, o in points],
            "submitit_folder": str(self.submitit_folder),
            "jobs": {},
            "launches": [],
        }

    def save(self) -> None:
        atomic_write_json(self.file, self.data)

    def run_dir(self, num: int) -> Path:
        return self.root / self.data["points"][num]["run_dir"]

    def jobs(self, num: int, stage: str) -> list[dict[str, Any]]:
        return self.data["jobs"].setdefault(str(num), {}).setdefault(stage, [])

    def add_job(self, num: int, stage: str, job: Submitted, launch: int) -> None:
        """Record a job submitted for `stage` of point `num` in launch number `launch`."""
        self.jobs(num, stage).append(
            {
                "id": job.id,
                "cluster": job.cluster,
                "launch": launch,
                "state": job.state,
                "stdout": str(job.stdout),
                "stderr": str(job.stderr),
            }
        )

    def records(self) -> list[dict[str, Any]]:
        """Every job ever submitted into this sweep."""
        return [r for stages in self.data["jobs"].values() for jobs in stages.values() for r in jobs]

    def latest(self, num: int, stage: str) -> dict[str, Any] | None:
        jobs = self.data["jobs"].get(str(num), {}).get(stage, [])
        return jobs[-1] if jobs else None
