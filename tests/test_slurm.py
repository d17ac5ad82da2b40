"""A real SLURM cluster (scripts/slurm-local.sh): a Hydra multirun through submitit_slurm, a sweep.py job graph
whose dependencies SLURM enforces, a job preempted mid-training that requeues itself and resumes from its
checkpoint, and a failed job that status reports and a re-launch finishes. Started here when not running."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest
from conftest import QUICK, REPO, run_cli

# One xdist worker runs them all: they share the cluster and a module-scoped pipeline.
pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.xdist_group("slurm")]

SCRIPT = REPO / "scripts" / "slurm-local.sh"
TINY = ["experiment=quick", "si.filters.voters=2", "training.threads=1"]


def cluster(command: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), command], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm():
    """The project's one-node cluster: used when healthy, else started (and then stopped afterwards)."""
    if cluster("status").returncode == 0:
        yield
        return
    started = cluster("start")
    if started.returncode != 0:
        why = (started.stderr or started.stdout).strip().splitlines()[-1:] or ["no output"]
        if shutil.which("sbatch") is None:
            pytest.skip(f"SLURM (sbatch) cannot be installed here: {why[0]}")
        pytest.fail(f"scripts/slurm-local.sh start failed:\n{started.stdout}\n{started.stderr}")
    yield
    cluster("stop")


def sweep(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return run_cli(*args, script="sweep.py", timeout=timeout)


def sacct(ids: list[str], *fields: str, duplicates: bool = False, settle: float = 60) -> list[dict[str, str]]:
    """One row per job (array task), as sacct records it once no job is still running: a job's end reaches
    accounting a moment after its result file (which is all submitit and Hydra wait for)."""
    names = ["JobID", "State", *fields]
    command = ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", ",".join(names)]
    deadline = time.time() + settle
    while True:
        out = subprocess.run(command + (["-D"] if duplicates else []), capture_output=True, text=True, check=True)
        rows = [dict(zip(names, line.split("|"), strict=True)) for line in out.stdout.splitlines()]
        if time.time() > deadline or not any(r["State"] in ("PENDING", "RUNNING", "COMPLETING") for r in rows):
            return rows


def queued(job_id: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T %r"], capture_output=True, text=True)
    return out.stdout.strip()


def wait_until_gone(ids: list[str], timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while any(queued(i) for i in ids):
        assert time.time() < deadline, f"jobs {ids} still queued after {timeout} s"
        time.sleep(1)


def mtimes(run_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / "done").glob("*.json")}


def when(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp)


def test_hydra_multirun_through_submitit_slurm(slurm, tmp_path):
    sweep_dir = tmp_path / "multirun"
    proc = run_cli(
        "-m",
        "hydra/launcher=slurm",
        *QUICK,
        "si.rounds=0",
        "data=copy,reverse",
        "training.threads=1",
        f"hydra.sweep.dir={sweep_dir}",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for num, task in [(0, "copy"), (1, "reverse")]:
        assert json.loads((sweep_dir / str(num) / "summary.json").read_text())["task"] == task
    ids = sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(ids) == 2 and ids[0].split("_")[0] == ids[1].split("_")[0]  # one job array
    assert [row["State"] for row in sacct(ids)] == ["COMPLETED", "COMPLETED"]


def test_unknown_partition_stops_before_anything_is_submitted(slurm, tmp_path):
    proc = sweep(*TINY, "hydra.launcher.partition=nope", "--cluster", "slurm", "--dir", str(tmp_path / "sweep"))
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: hydra.launcher.partition=nope: no such partition (SLURM has ")
    assert not (tmp_path / "sweep").exists()


@pytest.fixture(scope="module")
def pipeline(slurm, tmp_path_factory) -> Path:
    """2 voters, 1 round: every job submitted at once, sweep.py waiting for the end."""
    sweep_dir = tmp_path_factory.mktemp("slurm") / "sweep"
    proc = sweep(*TINY, "si.rounds=1", "--cluster", "slurm", "--dir", str(sweep_dir), "--wait")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reached: finished" in proc.stdout
    return sweep_dir


def test_job_graph_runs_with_its_dependencies_in_force(pipeline):
    from selfimprove.loop import graph

    record = json.loads((pipeline / "sweep.json").read_text())
    jobs = record["jobs"]["0"]
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
    summary = json.loads((pipeline / "0" / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1] and summary["voters"] == 2


def test_failed_job_shows_in_status_then_a_relaunch_finishes(pipeline):
    run_dir = pipeline / "0"
    checkpoint = run_dir / "checkpoints" / "voter1" / "latest.pt"
    good = checkpoint.read_bytes()
    checkpoint.write_bytes(b"not a checkpoint")
    before = mtimes(run_dir)
    proc = sweep("--dir", str(pipeline), "si.rounds=2", "--wait")  # one more round: labelling reads voter 1
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]

    report = sweep("status", str(pipeline)).stdout
    assert "reached: at label r2" in report
    line = next(x for x in report.splitlines() if x.startswith("FAILED label.round002"))
    assert "FAILED   log: " in line
    assert Path(line.split("log: ")[1]).is_file()
    assert f"CorruptFileError: corrupt checkpoint {checkpoint}" in report  # the end of the job's traceback
    # The jobs after it never ran: SLURM cancelled them (kill-on-invalid-dep) instead of keeping them pending.
    assert re.search(r"train r2 +0/2 +\S+ \S+ +CANCELLED x2\n +eval r2 +0/1 +\S+ +CANCELLED", report), report

    checkpoint.write_bytes(good)
    proc = sweep("--dir", str(pipeline), "--wait")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reached: finished" in proc.stdout and "FAILED" not in proc.stdout
    after = mtimes(run_dir)
    assert {k: after[k] for k in before} == before  # nothing finished ran again
    record = json.loads((pipeline / "sweep.json").read_text())
    assert [j["launch"] for j in record["jobs"]["0"]["label.round002"]] == [2, 3]
    assert [j["launch"] for j in record["jobs"]["0"]["label.round001"]] == [1]


def test_job_sent_the_timeout_signal_requeues_and_resumes_from_its_checkpoint(slurm, tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = [*TINY, "si.filters.voters=1", "si.rounds=0", "training.base_steps=800", "training.checkpoint_every=25"]
    proc = sweep(*args, "--cluster", "slurm", "--dir", str(sweep_dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((sweep_dir / "sweep.json").read_text())
    job = record["jobs"]["0"]["base.voter0"][0]
    evaluation = record["jobs"]["0"]["eval.round000"][0]["id"]

    checkpoint = sweep_dir / "0" / "checkpoints" / "voter0" / "latest.pt"
    deadline = time.time() + 120
    while not checkpoint.exists():
        assert time.time() < deadline and queued(job["id"]), "training never saved a checkpoint"
        time.sleep(0.2)
    # USR2 is what SLURM sends signal_delay_s before the time limit (submitit asks for it with --signal).
    subprocess.run(["scancel", "--signal=USR2", job["id"]], check=True)
    deadline = time.time() + 60
    while "BeginTime" not in queued(job["id"]):  # requeued: SLURM holds it back for cred_expire (120 s)
        assert time.time() < deadline, f"job {job['id']} was not requeued: {queued(job['id'])!r}"
        time.sleep(0.2)
    # Not `now`: slurmd refuses a credential made in the second its job's old one was revoked (at the requeue).
    subprocess.run(["scontrol", "update", f"JobId={job['id']}", "StartTime=now+2"], check=True)
    wait_until_gone([job["id"], evaluation])

    done = sweep_dir / "0" / "done" / "base.voter0.json"
    if not done.exists():  # the attempts' states and the job's log say why, read only then
        pytest.fail(f"{sacct([job['id'], evaluation], duplicates=True)}\n{Path(job['stderr']).read_text()[-3000:]}")
    result = json.loads(done.read_text())
    assert result["steps"] == 800 and 0 < result["resumed_from_step"] < 800
    attempts = [row["State"] for row in sacct([job["id"]], duplicates=True)]
    assert attempts == ["REQUEUED", "COMPLETED"]
    assert "Requeued job" in Path(job["stdout"]).read_text()
    status = sweep("status", str(sweep_dir)).stdout
    assert "reached: finished" in status
