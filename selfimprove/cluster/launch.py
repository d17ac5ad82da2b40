"""Launching a sweep: the points of `grid`, what `plan` leaves of each point's round graph, submitted as
submitit jobs (`jobs`) to a cluster, and every job recorded in the sweep directory (`sweepdir`).

A sweep directory holds one run directory per grid point (`<sweep>/<num>/`, a normal run directory),
submitit's logs (`.submitit/<job id>/`) and `sweep.json`: the grid, the points' overrides and, per stage,
every job submitted for it. Clusters:
  slurm  every step is submitted at once with `afterok` dependencies; sweep.py returns (or --wait);
  local  submitit's LocalExecutor: processes on this machine, step by step; sweep.py blocks;
  debug  submitit's DebugExecutor: every job in this process, one after another; sweep.py blocks.
Re-launching on a sweep directory skips every stage whose marker exists, waits for jobs still queued or
running, and resubmits the rest; nothing finished is written again.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import submitit

from selfimprove.cluster.grid import Point, hydra_session, launcher_params, make_point, parse_overrides, point_overrides
from selfimprove.cluster.plan import Plan, Task, describe, plan
from selfimprove.cluster.sweepdir import ACTIVE, SWEEP_FILE, SweepDir, job_states, queued_states, status
from selfimprove.errors import CompareError, LaunchError, one_line
from selfimprove.results.compare import compare_dirs
from selfimprove.store import RunDir

CLUSTERS = ("slurm", "local", "debug")
# submitit's cluster-independent parameters; every other launcher key is prefixed with the cluster's name.
GENERIC_PARAMS = {
    "timeout_min",
    "cpus_per_task",
    "gpus_per_node",
    "tasks_per_node",
    "mem_gb",
    "nodes",
    "stderr_to_stdout",
}


# -- the cluster ------------------------------------------------------------------------------------
def check_slurm(partition: str | None) -> None:
    """SLURM must answer, and know the partition asked for, before anything is submitted."""
    for command in ("sbatch", "srun", "sinfo"):
        if shutil.which(command) is None:
            raise LaunchError(f"SLURM is not reachable: `{command}` not found (use --cluster local or debug)")
    try:
        proc = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        raise LaunchError("SLURM is not reachable: `sinfo` did not answer in 30 s") from None
    if proc.returncode != 0:
        message = " ".join((proc.stderr or proc.stdout).split()) or f"exit status {proc.returncode}"
        raise LaunchError(f"SLURM is not reachable: `sinfo` failed: {message}")
    partitions = [p.rstrip("*") for p in proc.stdout.split()]
    if partition and partition not in partitions:
        raise LaunchError(
            f"hydra.launcher.partition={partition}: no such partition (SLURM has {', '.join(partitions)})"
        )


def make_executor(cluster: str, folder: Path, params: dict[str, Any]) -> submitit.AutoExecutor:
    """submitit's executor for `cluster`, with the launcher settings mapped as the Hydra plugin maps them."""
    if cluster == "debug":
        return submitit.AutoExecutor(folder=folder, cluster="debug")
    params = {k: v for k, v in params.items() if v is not None}
    init = {}
    if "max_num_timeout" in params:  # how often a job that timed out requeues itself
        init[f"{cluster}_max_num_timeout"] = params.pop("max_num_timeout")
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **init)
        executor.update_parameters(**{k if k in GENERIC_PARAMS else f"{cluster}_{k}": v for k, v in params.items()})
    except (ValueError, NameError, AssertionError, RuntimeError) as e:
        raise LaunchError(f"launcher settings for {cluster}: {one_line(e)}") from None
    return executor


# -- submission -------------------------------------------------------------------------------------
def _record(sweep: SweepDir, num: int, task: Task, job: submitit.Job, cluster: str, launch: int, state: str) -> None:
    sweep.jobs(num, task.stage).append(
        {
            "id": job.job_id,
            "cluster": cluster,
            "launch": launch,
            "state": state,
            "stdout": str(job.paths.stdout),
            "stderr": str(job.paths.stderr),
        }
    )


def submit_slurm(
    sweep: SweepDir, plans: list[Plan], executor: submitit.AutoExecutor, params: dict[str, Any], launch: int
) -> list[str]:
    """Every step of every plan, at once, each depending (afterok) on the jobs of the steps it waits for."""
    submitted: list[str] = []
    for p in plans:
        ids: dict[int, list[str]] = {}
        chain = []
        for todo in p.todo:
            deps = [job_id for a in todo.step.after for job_id in ids.get(a, [])]
            step_ids = [t.active for t in todo.tasks if t.active]
            new = [t for t in todo.tasks if not t.active]
            if new:
                extra = {**(params.get("additional_parameters") or {}), "kill-on-invalid-dep": "yes"}
                if deps:
                    extra["dependency"] = "afterok:" + ":".join(deps)
                executor.update_parameters(
                    name=f"si{p.point.num}.{todo.step.name.replace(' ', '')}", slurm_additional_parameters=extra
                )
                jobs = executor.submit_array([t.job for t in new])
                for task, job in zip(new, jobs, strict=True):
                    _record(sweep, p.point.num, task, job, "slurm", launch, "SUBMITTED")
                step_ids += [j.job_id for j in jobs]
                submitted += [j.job_id for j in jobs]
            ids[todo.index] = step_ids
            chain.append(f"{todo.step.name} {' '.join(step_ids)}")
        sweep.save()  # after each pipeline: a failure half-way still leaves the ids of what was submitted
        print(f"pipeline {p.point.num}: {p.point.label()}")
        print("  " + (" -> ".join(chain) if chain else "nothing to do"))
    return submitted


def _outcome(job: submitit.Job, cluster: str) -> tuple[str, dict[str, Any] | None]:
    try:
        return "COMPLETED", job.result()
    except Exception:
        if cluster == "debug":  # in-process: keep the traceback where status looks for it
            job.paths.stderr.parent.mkdir(parents=True, exist_ok=True)
            with job.paths.stderr.open("a") as f:
                f.write(traceback.format_exc())
        return "FAILED", None


def run_blocking(
    sweep: SweepDir, plans: list[Plan], executor: submitit.AutoExecutor, cluster: str, launch: int
) -> None:
    """Local and debug executors know no dependencies: submit the next step of every pipeline, wait for
    all of them, and go on; a pipeline stops at its first failed step or at a collapse."""
    queues = {p.point.num: list(p.todo) for p in plans}
    labels = {p.point.num: p.point.label() for p in plans}
    while any(queues.values()):
        wave = []
        for num, todos in queues.items():
            if todos:
                todo = todos.pop(0)
                jobs = executor.submit_array([t.job for t in todo.tasks])
                for task, job in zip(todo.tasks, jobs, strict=True):  # debug jobs run one by one, when waited for
                    _record(sweep, num, task, job, cluster, launch, "RUNNING" if cluster == "local" else "PENDING")
                wave.append((num, todo, jobs))
        sweep.save()
        for num, todo, jobs in wave:
            states = []
            for task, job in zip(todo.tasks, jobs, strict=True):
                state, result = _outcome(job, cluster)
                sweep.jobs(num, task.stage)[-1]["state"] = state
                states.append(state)
                if state != "COMPLETED" or (result and (result.get("stopped") or result.get("skipped"))):
                    queues[num] = []
            ids = " ".join(j.job_id for j in jobs)
            print(f"pipeline {num} ({labels[num]}): {todo.step.name} [{ids}] {', '.join(states)}", flush=True)
        sweep.save()


def wait_slurm(ids: list[str], poll_s: float = 5.0) -> None:
    """Until none of the jobs is left in the queue (pending, running or requeued)."""
    while any(queued_states().get(i) in ACTIVE for i in ids):
        time.sleep(poll_s)


# -- the launch -------------------------------------------------------------------------------------
@dataclass
class Request:
    overrides: list[str]
    cluster: str | None = None
    dir: str | None = None
    wait: bool = False
    dry_run: bool = False


def launch(req: Request) -> int:
    """Compose and validate every point, then submit (or run) what is left of each pipeline.
    Every check that can fail on bad input comes before the first job is submitted."""
    config_overrides, launcher_overrides = parse_overrides(req.overrides)
    root = Path(req.dir).resolve() if req.dir else default_dir().resolve()
    sweep = _existing_sweep(root)
    cluster = req.cluster or (sweep.data.get("cluster") if sweep else None) or "slurm"
    origin = "--cluster" if req.cluster else "the sweep's last launch" if sweep else "the default"
    chosen = cluster_line(cluster, origin)
    if cluster not in CLUSTERS:
        raise LaunchError(f"unknown cluster {cluster!r}: choose one of {', '.join(CLUSTERS)}")
    overrides, extras = point_overrides(config_overrides, sweep)
    with hydra_session():
        points = [make_point(num, o, extras, sweep, root) for num, o in enumerate(overrides)]
        params = launcher_params(cluster, launcher_overrides)
    threads = int(params.get("cpus_per_task") or 0)
    if req.dry_run:
        states = job_states(sweep.records() if sweep else [])
        print(chosen)
        print(f"sweep dir: {root}{'' if sweep else ' (new)'}   cluster: {cluster}   (dry run: nothing is submitted)")
        print(describe([plan(p, sweep, states, threads) for p in points]))
        return 0
    if cluster == "slurm":
        check_slurm(params.get("partition"))

    sweep = sweep or SweepDir(root)
    with sweep.lock():
        if not sweep.data:
            sweep.data = _new_record(sweep, config_overrides, points)
        sweep.data.update(resume_overrides=extras, cluster=cluster)
        for p in points:
            sweep.data["points"][p.num].update(voters=p.voters, rounds=p.rounds)
        plans = [plan(p, sweep, job_states(sweep.records()), threads) for p in points]
        # Only SLURM can make new jobs wait for a job of an earlier launch.
        busy = [(p.point.num, t) for p in plans for t in p.active() if not cluster == t.active_cluster == "slurm"]
        if busy:
            num, task = busy[0]
            raise LaunchError(
                f"pipeline {num}: {task.stage} still has {task.active_cluster} job {task.active} running from an "
                f"earlier launch; wait for it (python sweep.py status {sweep.root}) or cancel it first"
            )
        launch_no = len(sweep.data["launches"]) + 1
        now = datetime.now().isoformat(timespec="seconds")
        sweep.data["launches"].append({"launch": launch_no, "time": now, "cluster": cluster})
        sweep.save()  # from here on the directory is a sweep directory, whatever happens next
        for p in points:
            RunDir(p.run_dir).write_config_record(p.cfg, p.overrides, again=False)
        print(chosen)
        print(f"sweep dir: {sweep.root}   cluster: {cluster}   launch {launch_no}")
        executor = make_executor(cluster, sweep.submitit_folder, params)
        if cluster != "slurm":
            run_blocking(sweep, plans, executor, cluster, launch_no)
        else:
            try:
                ids = submit_slurm(sweep, plans, executor, params, launch_no)
            except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError, OSError) as e:
                sweep.save()
                raise LaunchError(
                    f"sbatch failed: {one_line(e)} (any job submitted before is recorded in {sweep.file};"
                    " re-running sweep.py on the directory resumes)"
                ) from None
            print(f"submitted {len(ids)} job(s); status: python sweep.py status {sweep.root}")
            if not req.wait:
                print(f"(the jobs run on their own; `python sweep.py --dir {sweep.root}` resumes the sweep)")
                return 0
            wait_slurm(ids + [t.active for p in plans for t in p.active() if t.active])
    report = status(sweep.root)
    print(report.text)
    if len(points) > 1:  # seeds or a grid: the spread over its points, as `python -m selfimprove.compare` prints it
        with contextlib.suppress(CompareError):  # no pipeline has opened its run yet: nothing to compare
            spread = compare_dirs([sweep.root])
            print(f"\nover the {len(points)} pipelines (python -m selfimprove.compare {sweep.root}):\n{spread}")
    return 1 if report.failed else 0


def cluster_line(cluster: str, origin: str) -> str:
    """The first line sweep.py prints: where the jobs run, and why there (slurm is the default)."""
    where = {
        "slurm": "SLURM: every job is submitted with sbatch",
        "local": "local processes on this machine",
        "debug": "this process, one job after another",
    }.get(cluster, cluster)
    other = " (--cluster local runs them here)" if cluster == "slurm" and origin == "the default" else ""
    return f"cluster: {cluster}, from {origin}: the jobs run on {where}{other}"


def default_dir() -> Path:
    return Path("outputs") / "sweeps" / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def _existing_sweep(root: Path) -> SweepDir | None:
    if (root / SWEEP_FILE).exists():
        return SweepDir.load(root)
    if root.exists() and (not root.is_dir() or {p.name for p in root.iterdir()} - {".sweep.lock"}):
        raise LaunchError(f"{root} is not a sweep directory (no {SWEEP_FILE}) and not empty: refusing to write there")
    return None


def _new_record(sweep: SweepDir, overrides: list[str], points: list[Point]) -> dict[str, Any]:
    return {
        "sweep": 1,
        "created": datetime.now().isoformat(timespec="seconds"),
        "overrides": overrides,
        "resume_overrides": [],
        "points": [{"num": p.num, "overrides": p.overrides, "run_dir": str(p.num)} for p in points],
        "submitit_folder": str(sweep.submitit_folder),
        "jobs": {},
        "launches": [],
    }
