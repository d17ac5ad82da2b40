"""Launching a sweep: the points of `grid`, what `plan` leaves of each point's round graph, submitted as
jobs (`jobs`) through the `scheduler`, and every job recorded in the sweep directory (`sweepdir`).

  slurm  every step is submitted at once with `afterok` dependencies; sweep.py returns (or --wait);
  local, debug  step by step, each step's jobs waited for before the next is submitted; sweep.py blocks.
Re-launching on a sweep directory skips every stage whose marker exists, waits for jobs still queued or
running, and resubmits the rest; nothing finished is written again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from selfimprove.cluster import scheduler, sweeplock
from selfimprove.cluster.grid import hydra_session, launcher_params, make_point, parse_overrides, point_overrides
from selfimprove.cluster.plan import Plan, describe, plan
from selfimprove.cluster.scheduler import CLUSTERS, Executor
from selfimprove.cluster.status import status
from selfimprove.cluster.sweepdir import SweepDir
from selfimprove.errors import CompareError, LaunchError
from selfimprove.results.compare import compare_dirs
from selfimprove.store import RunDir


# -- submission -------------------------------------------------------------------------------------
def submit_slurm(sweep: SweepDir, plans: list[Plan], executor: Executor, launch: int) -> list[str]:
    """Every step of every plan, at once, each depending (afterok) on the jobs of the steps it waits for."""
    submitted: list[str] = []
    for p in plans:
        ids: dict[int, list[str]] = {}
        chain = []
        for todo in p.todo:
            deps = [job_id for a in todo.step.after for job_id in ids.get(a, [])]
            step_ids = [j.active for j in todo.jobs if j.active]
            new = [j for j in todo.jobs if not j.active]
            if new:
                name = f"si{p.point.num}.{todo.step.name.replace(' ', '')}"
                jobs = executor.submit([j.call for j in new], name=name, after=deps)
                for pending, job in zip(new, jobs, strict=True):
                    sweep.add_job(p.point.num, pending.stage, job, launch)
                step_ids += [j.id for j in jobs]
                submitted += [j.id for j in jobs]
            ids[todo.index] = step_ids
            chain.append(f"{todo.step.name} {' '.join(step_ids)}")
        sweep.save()  # after each pipeline: a failure half-way still leaves the ids of what was submitted
        print(f"pipeline {p.point.num}: {p.point.label()}")
        print("  " + (" -> ".join(chain) if chain else "nothing to do"))
    return submitted


def run_blocking(sweep: SweepDir, plans: list[Plan], executor: Executor, launch: int) -> None:
    """Local and debug executors know no dependencies: submit the next step of every pipeline, wait for
    all of them, and go on; a pipeline stops at its first failed step or at a collapse."""
    queues = {p.point.num: list(p.todo) for p in plans}
    labels = {p.point.num: p.point.label() for p in plans}
    while any(queues.values()):
        wave = []
        for num, todos in queues.items():
            if todos:
                todo = todos.pop(0)
                jobs = executor.submit([j.call for j in todo.jobs])
                for pending, job in zip(todo.jobs, jobs, strict=True):  # debug jobs run one by one, when waited for
                    sweep.add_job(num, pending.stage, job, launch)
                wave.append((num, todo, jobs))
        sweep.save()
        for num, todo, jobs in wave:
            states = []
            for pending, job in zip(todo.jobs, jobs, strict=True):
                state, result = job.outcome()
                sweep.jobs(num, pending.stage)[-1]["state"] = state
                states.append(state)
                if state != "COMPLETED" or (result and (result.get("stopped") or result.get("skipped"))):
                    queues[num] = []
            ids = " ".join(j.id for j in jobs)
            print(f"pipeline {num} ({labels[num]}): {todo.step.name} [{ids}] {', '.join(states)}", flush=True)
        sweep.save()


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
    sweep = SweepDir.existing(root)
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
        states = scheduler.job_states(sweep.records() if sweep else [])
        print(chosen)
        print(f"sweep dir: {root}{'' if sweep else ' (new)'}   cluster: {cluster}   (dry run: nothing is submitted)")
        print(describe([plan(p, sweep, states, threads) for p in points]))
        return 0
    if cluster == "slurm":
        scheduler.check_slurm(params.get("partition"))

    sweep = sweep or SweepDir(root)
    with sweeplock.hold(sweep.root):
        if not sweep.data:
            sweep.new_record(config_overrides, [(p.num, p.overrides) for p in points])
        sweep.data.update(resume_overrides=extras, cluster=cluster)
        for p in points:
            sweep.data["points"][p.num].update(voters=p.voters, rounds=p.rounds)
        plans = [plan(p, sweep, scheduler.job_states(sweep.records()), threads) for p in points]
        # Only SLURM can make new jobs wait for a job of an earlier launch.
        busy = [(p.point.num, j) for p in plans for j in p.active() if not cluster == j.active_cluster == "slurm"]
        if busy:
            num, job = busy[0]
            raise LaunchError(
                f"pipeline {num}: {job.stage} still has {job.active_cluster} job {job.active} running from an "
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
        executor = Executor(cluster, sweep.submitit_folder, params)
        if cluster != "slurm":
            run_blocking(sweep, plans, executor, launch_no)
        else:
            try:
                ids = submit_slurm(sweep, plans, executor, launch_no)
            except LaunchError as e:  # sbatch refused a step: the jobs submitted before it are recorded
                sweep.save()
                raise LaunchError(
                    f"{e} (any job submitted before is recorded in {sweep.file};"
                    " re-running sweep.py on the directory resumes)"
                ) from None
            print(f"submitted {len(ids)} job(s); status: python sweep.py status {sweep.root}")
            if not req.wait:
                print(f"(the jobs run on their own; `python sweep.py --dir {sweep.root}` resumes the sweep)")
                return 0
            scheduler.wait(ids + [j.active for p in plans for j in p.active() if j.active])
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
