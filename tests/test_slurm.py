"""What only SLURM does, on a real one-node cluster (scripts/slurm-local.sh, started when not running): a partition
it does not have is refused before anything is submitted, and a sweep.py job graph runs with every dependency
enforced by SLURM. The scenarios every cluster passes (a multirun, a failed job and a re-launch, a requeued job)
run on SLURM too, in test_sweep.py."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from conftest import ON_SLURM, TINY, run_cli, sacct

from selfimprove.loop import graph

pytestmark = [*ON_SLURM, pytest.mark.slow]


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def test_unknown_partition_stops_before_anything_is_submitted(slurm, tmp_path):
    args = [*TINY, "hydra.launcher.partition=nope", "--cluster", "slurm", "--dir", str(tmp_path / "sweep")]
    proc = run_cli(*args, script="sweep.py")
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: hydra.launcher.partition=nope: no such partition (SLURM has ")
    assert not (tmp_path / "sweep").exists()


def test_job_graph_runs_with_its_dependencies_in_force(slurm, tmp_path):
    """2 voters, 1 round: every job submitted at once, sweep.py waiting for the end."""
    sweep_dir = tmp_path / "sweep"
    proc = run_cli(*TINY, "si.rounds=1", "--cluster", "slurm", "--dir", str(sweep_dir), "--wait", script="sweep.py")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reached: finished" in proc.stdout
    jobs = json.loads((sweep_dir / "sweep.json").read_text())["jobs"]["0"]
    steps = graph.steps(voters=2, rounds=1)
    ids = {i: [jobs[stage][0]["id"] for stage in step.stages()] for i, step in enumerate(steps)}
    assert all(jobs[stage][0]["launch"] == 1 for step in steps for stage in step.stages())
    assert len({i.split("_")[0] for i in ids[0]}) == 1 and len(ids[0]) == 2  # base: one array of 2
    rows = {row["JobID"]: row for row in sacct([i for s in ids.values() for i in s], "Submit", "Start", "End")}
    assert {row["State"] for row in rows.values()} == {"COMPLETED"}
    # Everything was queued before the first job ended: SLURM, not sweep.py, held each job back ...
    assert max(when(r["Submit"]) for r in rows.values()) <= min(when(rows[i]["End"]) for i in ids[0])
    # ... until every job it depends on (afterok) had ended.
    for i, step in enumerate(steps):
        for before in step.after:
            assert min(when(rows[j]["Start"]) for j in ids[i]) >= max(when(rows[j]["End"]) for j in ids[before])
    summary = json.loads((sweep_dir / "0" / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1] and summary["voters"] == 2
