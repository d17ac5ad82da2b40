"""sweep.py and Hydra multiruns: the job graph and the grid, bad input, and the scenarios every cluster must pass,
each written once over the clusters it runs on: a multirun, a failed job reported by status and finished by a
re-launch, a job preempted mid-training that requeues and resumes. Their SLURM cases run on a real one-node
cluster (scripts/slurm-local.sh); what only SLURM does (dependencies it enforces, partitions): test_slurm.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ON_SLURM, QUICK, REPO, TINY, finished_run, give_to_user, queued, read_only, run_cli, sacct

from selfimprove.cluster import grid
from selfimprove.errors import LaunchError
from selfimprove.loop import graph
from selfimprove.results import compare


def sweep_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python sweep.py ...` as a user runs it."""
    return run_cli(*args, script="sweep.py", timeout=timeout, env=env)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def markers(run_dir: Path) -> dict[str, dict]:
    """Every stage result, without its timing."""
    out = {}
    for path in sorted((run_dir / "done").glob("*.json")):
        result = json.loads(path.read_text())
        result.pop("seconds", None)
        out[path.stem] = result
    return out


def mtimes(run_dir: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / "done").glob("*.json")}


# -- the graph and the grid (in-process, fast) -------------------------------------------------------
def test_pipeline_graph():
    steps = graph.steps(voters=2, rounds=2)
    names = [s.name for s in steps]
    assert names == ["base", "eval r0", "label r1", "train r1", "eval r1", "label r2", "train r2", "eval r2"]
    after = {s.name: [steps[a].name for a in s.after] for s in steps}
    assert after["label r1"] == ["base", "eval r0"]  # every voter, and the evaluation the schedule reads
    assert after["train r1"] == ["label r1"] and after["eval r1"] == ["train r1"]
    assert after["label r2"] == ["train r1", "eval r1"]
    assert steps[0].stages() == ["base.voter0", "base.voter1"] and steps[0].is_array
    assert steps[3].stages() == ["train.round001.voter0", "train.round001.voter1"]
    assert steps[2].stages() == ["label.round001"] and not steps[2].is_array


def test_grid_expands_like_a_hydra_multirun():
    assert grid.expand(["data=copy,reverse", "si.rounds=2,4", "experiment=quick"]) == [
        ["data=copy", "si.rounds=2", "experiment=quick"],
        ["data=copy", "si.rounds=4", "experiment=quick"],
        ["data=reverse", "si.rounds=2", "experiment=quick"],
        ["data=reverse", "si.rounds=4", "experiment=quick"],
    ]
    # a key's place is its first override's, its values its last one's, as in a multirun
    assert grid.expand(["si.rounds=1,2", "data=copy", "si.rounds=range(3,5)"]) == [
        ["si.rounds=3", "data=copy"],
        ["si.rounds=4", "data=copy"],
    ]
    assert grid.expand([]) == [[]]  # no override: one point, the defaults
    with pytest.raises(LaunchError, match=r"bad sweep: si.rounds=interval\(1,2\): an interval has no grid points"):
        grid.expand(["si.rounds=interval(1,2)"])
    config, launcher = grid.parse_overrides(["data=copy,reverse", "hydra.launcher.partition=gpu"])
    assert config == ["data=copy,reverse"] and launcher == ["hydra.launcher.partition=gpu"]


def test_project_launcher_defaults():
    with grid.hydra_session():
        slurm = grid.launcher_params("slurm", ["hydra.launcher.partition=gpu", "hydra.launcher.gpus_per_node=1"])
        local = grid.launcher_params("local", [])
    assert slurm["partition"] == "gpu" and slurm["gpus_per_node"] == 1
    assert slurm["max_num_timeout"] == 3 and slurm["cpus_per_task"] == 1 and slurm["timeout_min"] == 60
    assert local["cpus_per_task"] == 1 and local["timeout_min"] == 600
    assert "submitit_folder" not in slurm and "_target_" not in local  # sweep.py sets those itself


@pytest.mark.slow
def test_every_paper_preset_prints_its_whole_job_graph(tmp_path):
    """One sweep over the six presets: each composes, validates and lists every round it will run."""
    tasks = "copy,reverse,reverse_addition,forward_addition,multiplication,maze"
    proc = sweep_cli(f"experiment=paper_{tasks.replace(',', ',paper_')}", "--dry-run", "--dir", str(tmp_path / "s"))
    assert proc.returncode == 0, proc.stderr
    for num, (task, rounds, voters) in enumerate(
        [("copy", 100, 1), ("reverse", 100, 1), ("reverse_addition", 100, 1), ("forward_addition", 60, 1),
         ("multiplication", 40, 5), ("maze", 21, 1)]
    ):  # fmt: skip
        graph = proc.stdout.split(f"pipeline {num}: experiment=paper_{task} ")[1].split("pipeline ")[0]
        assert f"eval r{rounds} " in graph and f"eval r{rounds + 1} " not in graph
        assert f"base       array of {voters} " in graph


# -- bad input: one line, exit 2, nothing written ---------------------------------------------------
@pytest.mark.slow
def test_dry_run_prints_the_graph_and_writes_nothing(tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = sweep_cli("data=copy,reverse", "si.rounds=1,2", *TINY[:2], "--dry-run", "--dir", str(sweep_dir))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("pipeline ") == 4
    # no --cluster: SLURM, and the first line says so before anything else (a forgotten --cluster local)
    assert proc.stdout.splitlines()[0].startswith("cluster: slurm, from the default: the jobs run on SLURM")
    assert "pipeline 3: data=reverse si.rounds=2" in proc.stdout
    assert "label r2   job          after: train r1, eval r1" in proc.stdout
    assert "train r2   array of 2" in proc.stdout
    assert not sweep_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "pbs"], "unknown cluster 'pbs': choose one of slurm, local, debug"),
        (["--cluster", "debug", "model=huge"], "Could not find 'model/huge'"),
        (["--cluster", "debug", "model.n_layers=4"], "model has no key 'n_layers': did you mean model.n_layer?"),
        (["--cluster", "debug", "+si.round=3"], "+si.round=3: si has no key 'round'"),
        (["--cluster", "debug", "si.filters.voters=2,0"], "si.filters.voters=0 must be at least 1"),
        (["--cluster", "debug", "si=none"], "experiment=quick sets si.rounds=2 after it: add si.rounds=0"),
        (["--cluster", "debug", "hydra.run.dir=x"], "sweep.py takes hydra.launcher.* settings only"),
        (["--cluster", "local", "hydra.launcher.partitions=gpu"], "launcher settings"),
    ],
)
def test_bad_input_stops_before_anything_is_submitted(tmp_path, args, message):
    sweep_dir = tmp_path / "sweep"
    proc = sweep_cli(*TINY, *args, "--dir", str(sweep_dir))
    assert message in one_error_line(proc)
    assert not sweep_dir.exists()


@pytest.mark.slow
def test_a_directory_that_is_not_a_sweep(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    assert "is not a sweep directory" in one_error_line(sweep_cli("status", str(tmp_path)))
    proc = sweep_cli(*TINY, "--cluster", "debug", "--dir", str(tmp_path))
    assert "is not a sweep directory (no sweep.json) and not empty" in one_error_line(proc)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_status_reads_a_read_only_sweep(user_dir):
    """status only reads, as compare and load do: a sweep its user made read-only (chmod a-w) is reported."""
    sweep_dir = user_dir / "sweep"
    proc = sweep_cli(*QUICK, "si.rounds=0", "training.threads=1", "--cluster", "debug", "--dir", str(sweep_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (sweep_dir / ".sweep.lock").exists()
    give_to_user(sweep_dir)
    read_only(sweep_dir)
    status = run_cli("status", str(sweep_dir), script="sweep.py", as_user=True)
    assert status.returncode == 0, status.stderr[-3000:]
    assert "reached: finished" in status.stdout


@pytest.mark.slow
def test_slurm_that_is_not_reachable(tmp_path):
    sweep_dir = tmp_path / "sweep"
    no_slurm = {"PATH": str(tmp_path / "empty-bin")}  # no sbatch, srun or sinfo anywhere
    proc = sweep_cli(*TINY, "--cluster", "slurm", "--dir", str(sweep_dir), env=no_slurm)
    assert "SLURM is not reachable: `sbatch` not found" in one_error_line(proc)
    if shutil.which("sinfo"):  # installed, but its controller does not answer
        conf = tmp_path / "slurm.conf"
        conf.write_text(
            "ClusterName=nowhere\nSlurmctldHost=nowhere(127.0.0.1)\nSlurmctldPort=6999\n"
            "MessageTimeout=1\n"  # fail at once (the default retries a connection for 9 s)
            "NodeName=n1 CPUs=1\nPartitionName=p Nodes=n1\n"
        )
        proc = sweep_cli(*TINY, "--cluster", "slurm", "--dir", str(sweep_dir), env={"SLURM_CONF": str(conf)})
        assert "SLURM is not reachable: `sinfo` failed: slurm_load_partitions: Unable" in one_error_line(proc)
    assert not sweep_dir.exists()


@pytest.mark.slow
def test_a_preset_over_seeds_reports_its_spread(tmp_path):
    """The README's multi-seed command: one sweep over seeds, local processes, ends with the spread over them."""
    sweep_dir = tmp_path / "seeds"
    seeds = ["experiment=quick", "si.rounds=1", "training.seed=0,1"]
    proc = sweep_cli(*seeds, "--cluster", "local", "--dir", str(sweep_dir))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    finals = [json.loads((sweep_dir / n / "summary.json").read_text())["reach"] for n in ("0", "1")]
    spread = proc.stdout.split("over the 2 pipelines (python -m selfimprove.compare")[1]
    (row,) = [line for line in spread.splitlines() if line.startswith("all runs")]
    cells = [c.strip() for c in row.split("  ") if c.strip()]
    low, high = min(finals), max(finals)
    # the final reach, read back: one figure when the seeds agree, else the median and the range
    assert cells[2] == (f"{low}" if low == high else f"{(low + high) / 2:g} [{low}-{high}]"), row
    assert cells[-2:] == ["2", "done 2"], row


# -- the same scenarios on every cluster --------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["basic", "local", pytest.param("slurm", marks=ON_SLURM)], indirect=True)
def test_multirun(tmp_path, cluster):
    """run.py -m: Hydra's basic launcher (one point after another, here) and the submitit plugin's."""
    sweep_dir = tmp_path / "multirun"
    extra = [] if cluster == "basic" else [f"hydra/launcher={cluster}"]
    proc = run_cli(
        "-m", *extra, *QUICK, "si.rounds=0", "data=copy,reverse", "training.threads=1", f"hydra.sweep.dir={sweep_dir}"
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for num, task in [(0, "copy"), (1, "reverse")]:
        summary = json.loads((sweep_dir / str(num) / "summary.json").read_text())
        assert summary["task"] == task and [r["round"] for r in summary["rounds"]] == [0]
    assert (sweep_dir / ".submitit").is_dir() == (cluster != "basic")
    groups = compare.group_runs([compare.load_run(p) for p in compare.find_runs([sweep_dir])])
    assert {g.label: [run.state for run in g.runs] for g in groups} == {
        "data.task=copy": ["done"],
        "data.task=reverse": ["done"],
    }
    if cluster == "slurm":  # one job array, whose tasks SLURM's accounting records as completed
        ids = sorted(p.name for p in (sweep_dir / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
        assert len(ids) == 2 and ids[0].split("_")[0] == ids[1].split("_")[0]
        assert [row["State"] for row in sacct(ids)] == ["COMPLETED", "COMPLETED"]


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """Base training and one round of the same experiment through run.py, in one process, uninterrupted."""
    return finished_run(tmp_path_factory.mktemp("reference") / "run", *QUICK, *TINY, "si.rounds=1")


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["debug", pytest.param("slurm", marks=ON_SLURM)], indirect=True)
def test_a_failed_job_shows_in_status_and_a_relaunch_finishes(tmp_path, reference_run, cluster):
    """In this process (debug) and as SLURM jobs, which SLURM cancels after a failed one; the local executor's
    processes run in test_resume (a sweep of separate processes) and the preemption test below."""
    sweep_dir = tmp_path / "sweep"
    run_dir = sweep_dir / "0"
    wait = ["--wait"] if cluster == "slurm" else []  # block until the jobs have ended, as debug does
    proc = sweep_cli(*TINY, "si.rounds=0", "--cluster", cluster, "--dir", str(sweep_dir), *wait)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reached: finished" in proc.stdout
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["points"][0]["overrides"] == [*TINY, "si.rounds=0"]
    assert sorted(record["jobs"]["0"]) == ["base.voter0", "base.voter1", "eval.round000"]
    if cluster == "debug":  # the launcher records what it waited for (SLURM's states are asked of SLURM)
        assert {stage: jobs[-1]["state"] for stage, jobs in record["jobs"]["0"].items()} == {
            "base.voter0": "COMPLETED",
            "base.voter1": "COMPLETED",
            "eval.round000": "COMPLETED",
        }

    # A change that would alter finished results is refused, before anything runs.
    proc = sweep_cli("--dir", str(sweep_dir), "model.n_layer=3")
    assert "only ones that do not change results" in one_error_line(proc)

    # Add a round, with voter 1's checkpoint broken: labelling fails, and status says where and why.
    checkpoint = run_dir / "checkpoints" / "voter1" / "latest.pt"
    good = checkpoint.read_bytes()
    checkpoint.write_bytes(b"not a checkpoint")
    before = mtimes(run_dir)
    proc = sweep_cli("--dir", str(sweep_dir), "si.rounds=1", *wait)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = sweep_cli("status", str(sweep_dir))
    assert report.returncode == 0
    assert "reached: at label r1" in report.stdout and "(resumed with si.rounds=1)" in report.stdout
    line = next(x for x in report.stdout.splitlines() if x.startswith("FAILED label.round001"))
    assert "FAILED   log: " in line
    log = Path(line.split("log: ")[1])
    assert log.is_file() and log.is_relative_to(sweep_dir / ".submitit")
    assert f"CorruptFileError: corrupt checkpoint {checkpoint}" in report.stdout  # the traceback's last line
    if cluster == "slurm":  # the jobs after it never ran: cancelled (kill-on-invalid-dep), not left pending
        assert re.search(r"train r1 +0/2 +\S+ \S+ +CANCELLED x2\n +eval r1 +0/1 +\S+ +CANCELLED", report.stdout)

    # Fixed: re-running on the sweep directory finishes it; nothing finished is run again.
    checkpoint.write_bytes(good)
    proc = sweep_cli("--dir", str(sweep_dir), *wait)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "reached: finished" in proc.stdout and "FAILED" not in proc.stdout
    after = mtimes(run_dir)
    assert {k: after[k] for k in before} == before
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert [j["launch"] for j in record["jobs"]["0"]["label.round001"]] == [2, 3]
    assert [j["launch"] for j in record["jobs"]["0"]["base.voter0"]] == [1]
    # The jobs called the stage functions run.py calls: what the uninterrupted run computes, stage by stage.
    assert markers(run_dir) == markers(reference_run)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1]


def send_timeout_signal(cluster: str, job_id: str) -> None:
    """USR2, what submitit's local controller and SLURM (signal_delay_s before the limit) send a job near its time
    limit; on SLURM, the requeued job then released at once."""
    if cluster == "local":  # a local job is its controller process, which runs the job as its one child
        children = subprocess.run(["pgrep", "-P", job_id], capture_output=True, text=True).stdout.split()
        assert len(children) == 1
        os.kill(int(children[0]), signal.SIGUSR2)
        return
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    deadline = time.time() + 60
    while "BeginTime" not in queued(job_id):  # requeued: SLURM holds it back for cred_expire (120 s)
        assert time.time() < deadline, f"job {job_id} was not requeued: {queued(job_id)!r}"
        time.sleep(0.2)
    # Not `now`: slurmd refuses a credential made in the second its job's old one was revoked (at the requeue).
    subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now+2"], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("cluster", ["local", pytest.param("slurm", marks=ON_SLURM)], indirect=True)
def test_a_job_sent_the_timeout_signal_requeues_and_resumes_from_its_checkpoint(tmp_path, cluster):
    sweep_dir = tmp_path / "sweep"
    checkpoint = sweep_dir / "0" / "checkpoints" / "voter0" / "latest.pt"
    steps, every = (400, 20) if cluster == "local" else (800, 25)  # SLURM's signal takes longer to arrive
    args = [*TINY, "si.filters.voters=1", "si.rounds=0", f"training.base_steps={steps}"]
    args += [f"training.checkpoint_every={every}", "--cluster", cluster, "--dir", str(sweep_dir)]
    launcher = subprocess.Popen(
        [sys.executable, str(REPO / "sweep.py"), *args, *(["--wait"] if cluster == "slurm" else [])],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.time() + 120
        while not checkpoint.exists():  # training has begun and saved a checkpoint
            assert launcher.poll() is None and time.time() < deadline, "no checkpoint appeared"
            time.sleep(0.2)
        record = json.loads((sweep_dir / "sweep.json").read_text())
        job = record["jobs"]["0"]["base.voter0"][-1]
        send_timeout_signal(cluster, job["id"])
        out, _ = launcher.communicate(timeout=300)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode == 0, out[-3000:]
    assert "reached: finished" in out
    result = json.loads((sweep_dir / "0" / "done" / "base.voter0.json").read_text())
    assert result["steps"] == steps and 0 < result["resumed_from_step"] < steps
    assert "Requeued job" in Path(job["stdout"]).read_text()
    if cluster == "slurm":
        assert [row["State"] for row in sacct([job["id"]], duplicates=True)] == ["REQUEUED", "COMPLETED"]
