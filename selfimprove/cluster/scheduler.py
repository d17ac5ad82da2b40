"""The one adapter to submitit and SLURM: executors built from the launcher settings, the check that SLURM
answers, submission (names, `afterok` dependencies), each job's state and waiting for jobs to leave the queue.

Clusters:
  slurm  submitit's SlurmExecutor: sbatch, with dependencies that SLURM enforces;
  local  submitit's LocalExecutor: one controller process per job on this machine;
  debug  submitit's DebugExecutor: every job in this process, run when its result is asked for.
"""

from __future__ import annotations

import contextlib
import pickle
import shutil
import subprocess
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from selfimprove.errors import LaunchError, one_line

CLUSTERS = ("slurm", "local", "debug")
# Scheduler states of a job that may still run (or run again): such a job is waited for, not resubmitted.
ACTIVE = {
    "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
    "SUSPENDED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED",
}  # fmt: skip
FAILED = {"FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
# submitit's cluster-independent parameters; every other launcher key is prefixed with the cluster's name, as
# Hydra's submitit launcher plugin does (its conf/hydra/launcher/*.yaml keys are the ones mapped here).
GENERIC_PARAMS = {
    "timeout_min",
    "cpus_per_task",
    "gpus_per_node",
    "tasks_per_node",
    "mem_gb",
    "nodes",
    "stderr_to_stdout",
}
# The lines SLURM itself writes into a job's log (after the job's own traceback).
OWN_LOG_LINES = ("srun: ", "slurmstepd")
# The state a job is recorded with when submitted: a local job runs at once, a debug job when waited for.
SUBMITTED_STATE = {"slurm": "SUBMITTED", "local": "RUNNING", "debug": "PENDING"}

# The base class of a job that submitit requeues on a timeout or preemption (it calls the job's `checkpoint`).
Requeueable = submitit.helpers.Checkpointable


# -- launching --------------------------------------------------------------------------------------
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


@dataclass
class Submitted:
    """A job just submitted: its id and log paths (what the sweep records) and submitit's handle."""

    id: str
    cluster: str
    state: str  # as recorded at submission (SUBMITTED_STATE)
    stdout: Path
    stderr: Path
    job: submitit.Job = field(repr=False)

    def outcome(self) -> tuple[str, Any]:
        """COMPLETED and the job's return value, or FAILED; blocks until the job has ended (a debug job runs
        now, in this process)."""
        try:
            return "COMPLETED", self.job.result()
        except Exception:
            if self.cluster == "debug":  # in-process: keep the traceback where status looks for it
                self.stderr.parent.mkdir(parents=True, exist_ok=True)
                with self.stderr.open("a") as f:
                    f.write(traceback.format_exc())
            return "FAILED", None


class Executor:
    """submitit's executor for `cluster` (one of CLUSTERS), writing its pickles and logs to `folder` (`%j`: the
    job id), with the launcher settings mapped as Hydra's submitit plugin maps them."""

    def __init__(self, cluster: str, folder: Path, params: dict[str, Any]) -> None:
        self.cluster = cluster
        self.params = {k: v for k, v in params.items() if v is not None}
        if cluster == "debug":
            self.executor = submitit.AutoExecutor(folder=folder, cluster="debug")
            return
        settings = dict(self.params)
        init = {}
        if "max_num_timeout" in settings:  # how often a job that timed out requeues itself
            init[f"{cluster}_max_num_timeout"] = settings.pop("max_num_timeout")
        try:
            self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **init)
            self.executor.update_parameters(
                **{k if k in GENERIC_PARAMS else f"{cluster}_{k}": v for k, v in settings.items()}
            )
        except (ValueError, NameError, AssertionError, RuntimeError) as e:
            raise LaunchError(f"launcher settings for {cluster}: {one_line(e)}") from None

    def submit(self, calls: Sequence[Callable[[], Any]], name: str = "", after: Sequence[str] = ()) -> list[Submitted]:
        """`calls` as one job array. On SLURM: named `name`, started once every job of `after` has completed
        (afterok), and cancelled by SLURM if one of those fails (kill-on-invalid-dep); sbatch's refusal is a
        LaunchError. Local and debug executors know no dependencies: `after` must be done already."""
        if self.cluster == "slurm":
            extra = {**(self.params.get("additional_parameters") or {}), "kill-on-invalid-dep": "yes"}
            if after:
                extra["dependency"] = "afterok:" + ":".join(after)
            self.executor.update_parameters(name=name, slurm_additional_parameters=extra)
            try:
                jobs = self.executor.submit_array(list(calls))
            except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError, OSError) as e:
                raise LaunchError(f"sbatch failed: {one_line(e)}") from None
        else:
            jobs = self.executor.submit_array(list(calls))
        state = SUBMITTED_STATE[self.cluster]
        return [Submitted(j.job_id, self.cluster, state, Path(j.paths.stdout), Path(j.paths.stderr), j) for j in jobs]


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
    """A local job is its controller process (its pid is the job id), which outlives a killed launcher."""
    try:
        return "submitit.local._local" in Path(f"/proc/{job_id}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return False


def _result_state(record: dict[str, Any]) -> str | None:
    """COMPLETED or FAILED from the result file submitit writes beside the job's log; None when there is none."""
    path = Path(record.get("stderr", "")).with_name(f"{record['id']}_0_result.pkl")
    try:
        with path.open("rb") as f:
            outcome = pickle.load(f)[0]
    except (OSError, pickle.UnpicklingError, EOFError, IndexError, TypeError):
        return None
    return "COMPLETED" if outcome == "success" else "FAILED"


def job_states(records: list[dict[str, Any]], launcher_running: bool = False) -> dict[str, str]:
    """The state of each recorded job (`id`, `cluster`, `state`, `stderr` of a sweep's job record), by id: the
    scheduler's word for SLURM jobs, the launcher's record for local and debug jobs (checked against the
    processes still alive: a killed launcher leaves no liar)."""
    slurm = slurm_states([r["id"] for r in records if r["cluster"] == "slurm"])
    states = {}
    for r in records:
        state = r.get("state") or "UNKNOWN"
        if r["cluster"] == "slurm":
            state = slurm.get(r["id"]) or _result_state(r) or "UNKNOWN"
        elif r["cluster"] == "local" and state == "RUNNING":
            state = "RUNNING" if _local_alive(r["id"]) else _result_state(r) or "INTERRUPTED"
        elif r["cluster"] == "debug" and state in ("PENDING", "RUNNING") and not launcher_running:
            state = "INTERRUPTED"  # it ran inside a launcher that is gone
        states[r["id"]] = state
    return states


def wait(ids: list[str], poll_s: float = 5.0) -> None:
    """Until none of these SLURM jobs is left in the queue (pending, running or requeued)."""
    while any(queued_states().get(i) in ACTIVE for i in ids):
        time.sleep(poll_s)
