"""Sweeps of self-improvement pipelines, submitted through submitit as job graphs (see `jobs`).

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
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import submitit
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from selfimprove import graph, pipeline
from selfimprove.config import ConfigError, register_configs, validate
from selfimprove.jobs import StageJob, step_jobs
from selfimprove.store import CorruptFileError, RunDir
from selfimprove.sweepdir import ACTIVE, SWEEP_FILE, LaunchError, SweepDir, job_states, queued_states, status

CLUSTERS = ("slurm", "local", "debug")
CONF = Path(__file__).resolve().parents[1] / "conf"
# Launcher keys that sweep.py sets itself (per step) or that only make sense in a Hydra multirun.
OWN_LAUNCHER_KEYS = ("_target_", "submitit_folder", "name")
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


# -- the grid ---------------------------------------------------------------------------------------
@dataclass
class Point:
    """One grid point: its overrides, its run directory and its composed, validated config."""

    num: int
    overrides: list[str]
    run_dir: Path
    cfg: DictConfig

    @property
    def voters(self) -> int:
        return self.cfg.si.filters.voters

    @property
    def rounds(self) -> int:
        return self.cfg.si.rounds

    def label(self) -> str:
        return " ".join(self.overrides) or "(defaults)"


def _one_line(e: BaseException) -> str:
    text = f"{e}: {e.__cause__}" if e.__cause__ and str(e.__cause__) not in str(e) else str(e)
    return " ".join(text.split())


def parse_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """Split command-line overrides into config overrides and `hydra.launcher.*` resource overrides."""
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException as e:
        raise LaunchError(f"bad override: {_one_line(e)}") from None
    config, launcher = [], []
    for o, text in zip(parsed, args, strict=True):
        key = o.key_or_group
        if key.startswith("hydra.launcher."):
            if o.is_sweep_override():
                raise LaunchError(f"{text}: launcher settings cannot be swept")
            launcher.append(text)
        elif key == "hydra" or key.startswith(("hydra.", "hydra/")):
            raise LaunchError(f"{text}: sweep.py takes hydra.launcher.* settings only (the cluster is --cluster)")
        elif key == "resume":
            raise LaunchError("resume= is for run.py; re-run sweep.py with --dir <sweep dir> to resume a sweep")
        else:
            config.append(text)
    return config, launcher


def expand(overrides: list[str]) -> list[list[str]]:
    """The grid points of Hydra sweep syntax (`a=1,2 b=range(3)`), in Hydra's multirun order."""
    try:
        batches = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(overrides), None)
    except HydraException as e:
        raise LaunchError(f"bad sweep: {_one_line(e)}") from None
    return [list(point) for batch in batches for point in batch]


@contextlib.contextmanager
def _hydra() -> Iterator[None]:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="sweep"):
        yield


def compose_point(overrides: list[str]) -> DictConfig:
    """Compose and validate one point; LaunchError names the point when it does not."""
    try:
        cfg = compose(config_name="config", overrides=overrides)
        validate(cfg)
    except (HydraException, OmegaConfBaseException, ConfigError) as e:
        raise LaunchError(f"{' '.join(overrides)}: {_one_line(e)}") from None
    return cfg


def launcher_params(cluster: str, overrides: list[str]) -> dict[str, Any]:
    """The resources of every job: conf/hydra/launcher/<cluster>.yaml (the same file a Hydra multirun
    uses with hydra/launcher=<cluster>) with `hydra.launcher.*` overrides on top."""
    if cluster == "debug":
        return {}
    try:
        cfg = compose(
            config_name="config", overrides=[f"hydra/launcher={cluster}", *overrides], return_hydra_config=True
        )
        node = cfg.hydra.launcher
        params = {k: node[k] for k in node if k not in OWN_LAUNCHER_KEYS}
    except (HydraException, OmegaConfBaseException) as e:
        raise LaunchError(f"launcher settings: {_one_line(e)}") from None
    return {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in params.items()}


def _dedupe(overrides: list[str]) -> list[str]:
    """Later overrides of the same key replace earlier ones."""
    keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)]
    return [o for i, o in enumerate(overrides) if keys[i] not in keys[i + 1 :]]


def resume_free(overrides: list[str]) -> bool:
    parsed = OverridesParser.create().parse_overrides(overrides)
    return all(not o.is_sweep_override() and pipeline.resume_free(o.key_or_group) for o in parsed)


def default_dir() -> Path:
    return Path("outputs") / "sweeps" / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


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


# -- planning ---------------------------------------------------------------------------------------
@dataclass
class Task:
    stage: str
    job: StageJob
    active: str | None = None  # a job of an earlier launch that is still queued or running
    active_cluster: str | None = None


@dataclass
class Todo:
    index: int
    step: graph.Step
    tasks: list[Task]  # the tasks of the step that are not done


@dataclass
class Plan:
    point: Point
    steps: list[graph.Step]
    todo: list[Todo]
    stopped: str | None = None


def plan(point: Point, sweep: SweepDir | None, states: dict[str, str], threads: int) -> Plan:
    """What is left of a point's graph: steps after a collapse are dropped, stages marked done are skipped,
    and a task whose latest job is still active is waited for instead of resubmitted."""
    steps = graph.steps(point.voters, point.rounds)
    run = RunDir(point.run_dir)
    stopped = None
    collapsed = graph.first_collapse(point.cfg, run, point.cfg.si.collapse_threshold, point.rounds)
    if collapsed:  # the in-process walk stops after that round's evaluation too
        round_, stopped = collapsed
        steps = graph.stop_after(steps, round_)
    container = OmegaConf.to_container(point.cfg, resolve=True)
    todo = []
    for i, step in enumerate(steps):
        jobs = step_jobs(step, str(point.run_dir), point.overrides, container, threads)  # type: ignore[arg-type]
        tasks = []
        for stage, job in zip(step.stages(), jobs, strict=True):
            if run.is_done(stage):
                continue
            latest = sweep.latest(point.num, stage) if sweep else None
            if latest and states.get(latest["id"]) in ACTIVE:
                tasks.append(Task(stage, job, latest["id"], latest["cluster"]))
            else:
                tasks.append(Task(stage, job))
        if tasks:
            todo.append(Todo(i, step, tasks))
    return Plan(point, steps, todo, stopped)


def describe(plans: list[Plan]) -> str:
    """The job graph, one line per step: what it waits for and what is left of it."""
    lines = []
    for p in plans:
        lines.append(f"pipeline {p.point.num}: {p.point.label()}  ->  {p.point.run_dir}")
        left = {t.index: t for t in p.todo}
        for i, step in enumerate(p.steps):
            after = ", ".join(p.steps[a].name for a in step.after) or "-"
            tasks = f"array of {step.voters}" if step.is_array else "job"
            todo = left.get(i)
            if todo is None:
                what = "done"
            else:
                waiting = [t.active for t in todo.tasks if t.active]
                what = f"{len(todo.tasks) - len(waiting)} to submit"
                what += f", waits for queued/running job(s) {' '.join(waiting)}" if waiting else ""
            lines.append(f"  {step.name:<10} {tasks:<12} after: {after:<22} {what}")
        if p.stopped:
            lines.append(f"  stopped: {p.stopped}")
    return "\n".join(lines)


# -- submission -------------------------------------------------------------------------------------
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
        raise LaunchError(f"launcher settings for {cluster}: {_one_line(e)}") from None
    return executor


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
    if cluster not in CLUSTERS:
        raise LaunchError(f"unknown cluster {cluster!r}: choose one of {', '.join(CLUSTERS)}")
    grid, extras = _grid(config_overrides, sweep)
    with _hydra():
        points = [_point(num, overrides, extras, sweep, root) for num, overrides in enumerate(grid)]
        params = launcher_params(cluster, launcher_overrides)
    threads = int(params.get("cpus_per_task") or 0)
    if req.dry_run:
        states = job_states(sweep.records() if sweep else [])
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
        busy = [(p.point.num, t) for p in plans for t in _active(p) if not cluster == t.active_cluster == "slurm"]
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
            _write_hydra_record(p)
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
                    f"sbatch failed: {_one_line(e)} (any job submitted before is recorded in {sweep.file};"
                    " re-running sweep.py on the directory resumes)"
                ) from None
            print(f"submitted {len(ids)} job(s); status: python sweep.py status {sweep.root}")
            if not req.wait:
                print(f"(the jobs run on their own; `python sweep.py --dir {sweep.root}` resumes the sweep)")
                return 0
            wait_slurm(ids + [t.active for p in plans for t in _active(p) if t.active])
    report = status(sweep.root)
    print(report.text)
    return 1 if report.failed else 0


def _existing_sweep(root: Path) -> SweepDir | None:
    if (root / SWEEP_FILE).exists():
        return SweepDir.load(root)
    if root.exists() and (not root.is_dir() or {p.name for p in root.iterdir()} - {".sweep.lock"}):
        raise LaunchError(f"{root} is not a sweep directory (no {SWEEP_FILE}) and not empty: refusing to write there")
    return None


def _grid(config_overrides: list[str], sweep: SweepDir | None) -> tuple[list[list[str]], list[str]]:
    """The points' overrides, and the overrides added to all of them when a sweep is resumed."""
    if sweep is None:
        return (expand(config_overrides) if config_overrides else [[]]), []
    grid = [p["overrides"] for p in sweep.data["points"]]
    extras = list(sweep.data.get("resume_overrides", []))
    if config_overrides and config_overrides != sweep.data["overrides"]:
        if not resume_free(config_overrides):
            raise LaunchError(
                f"{sweep.root} is the sweep `{' '.join(sweep.data['overrides'])}`: re-run it with the same overrides,"
                f" none, or only ones that do not change results ({', '.join(pipeline.RESUME_FREE)})"
            )
        extras = _dedupe([*extras, *config_overrides])
    return grid, extras


def _point(num: int, overrides: list[str], extras: list[str], sweep: SweepDir | None, root: Path) -> Point:
    run_dir = sweep.run_dir(num) if sweep else root / str(num)
    effective = _dedupe([*overrides, *extras])
    point = Point(num, effective, run_dir, compose_point(effective))
    if (run_dir / "run.json").exists():  # a point that ran before: refuse what would change its results
        try:
            pipeline.check_resumable(pipeline.saved_run(run_dir), point.cfg)
        except (pipeline.ResumeError, CorruptFileError) as e:
            raise LaunchError(f"{run_dir}: {e}") from None
    return point


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


def _active(p: Plan) -> list[Task]:
    return [t for todo in p.todo for t in todo.tasks if t.active]


def _write_hydra_record(point: Point) -> None:
    """Like Hydra's own run directories: .hydra/config.yaml and overrides.yaml, written once."""
    record = point.run_dir / ".hydra"
    if not (record / "config.yaml").exists():
        record.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(point.cfg, record / "config.yaml")
        OmegaConf.save(OmegaConf.create(point.overrides), record / "overrides.yaml")
