"""Run one self-improvement experiment: `python run.py [group=option ...] [key=value ...]`.

`python run.py --help` says what the project is, how to resume and where results go, and lists the config
groups; `python run.py --cfg job` prints the composed config.
`python run.py resume=<run dir> [key=value ...]` continues a run where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import sys
from functools import partial
from pathlib import Path

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import DictConfig

from selfimprove.config import CONF, check_keys, check_overrides, register_configs, validate
from selfimprove.errors import ConfigError, CorruptFileError, ResumeError, SelfImproveError, refuse
from selfimprove.loop.pipeline import run, saved_run
from selfimprove.loop.runlock import LOCK_FILE
from selfimprove.loop.train import resolve_device
from selfimprove.store import RunDir

register_configs()


def resume_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The run's own config with this command's overrides applied on top."""
    saved = saved_run(run_dir)
    resume = f"resume={hydra_quoted(str(run_dir))}"
    return hydra.compose(config_name="config", overrides=[*saved["overrides"], *overrides, resume])


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    command_overrides = list(hydra_cfg.overrides.task)
    overrides = [o for o in command_overrides if not o.startswith("resume=")]
    run_dir = Path(hydra_cfg.runtime.output_dir)  # the resumed run's own dir on resume
    if not cfg.resume:
        check_new_run_dir(run_dir)
    try:
        if cfg.resume:
            cfg = resume_config(run_dir, overrides)
            overrides = saved_run(run_dir)["overrides"]
        else:  # a resumed run was checked when it started
            check_overrides(cfg, overrides)
        validate(cfg)
        note_gpu_preset(cfg, overrides)
        cfg.progress = bool(cfg.progress and sys.stderr.isatty())  # no tqdm bars in a log file or a pipe
        # Hydra's .hydra/ record (output_subdir is null) is written once the run is open, so a refused start
        # changes nothing in an existing run; a resume's record goes beside the run's own.
        record = partial(RunDir(run_dir).write_config_record, cfg, command_overrides, hydra_cfg)
        run(cfg, run_dir, overrides, on_open=record)
    except SelfImproveError as e:
        remove_if_unstarted(run_dir)
        refuse(str(e))


def note_gpu_preset(cfg: DictConfig, overrides: list[str]) -> None:
    """A paper preset is sized for a GPU: on a CPU say so, and what it asks for, in one line before any work."""
    preset = next((o.removeprefix("experiment=") for o in overrides if o.startswith("experiment=paper_")), None)
    if preset is None or resolve_device(cfg.training.device).type != "cpu":
        return
    t, si = cfg.training, cfg.si
    steps = (t.base_steps + si.rounds * t.round_steps) * si.filters.voters
    cpu = f"experiment=cpu_{preset.removeprefix('paper_')}"
    sized = f"; {cpu} is sized for a CPU" if (CONF / "experiment" / f"{cpu.split('=')[1]}.yaml").exists() else ""
    print(
        f"note: experiment={preset} is sized for a GPU, and this run is on the CPU: {steps} training steps of "
        f"{t.batch_size} sequences and {si.rounds} rounds of {si.samples_per_round} labels (days here{sized})",
        file=sys.stderr,
        flush=True,
    )


def check_new_run_dir(run_dir: Path) -> None:
    """A new run's directory is new, or empty, as sweep.py's --dir is: a run there continues only with resume=,
    and the user's own files are not written beside. Refused before anything is written there."""
    if RunDir(run_dir).is_run():
        refuse(f"hydra.run.dir={run_dir} is a run already: continue it with resume={run_dir}")
    if {p.name for p in run_dir.iterdir()} - {LOCK_FILE}:  # a lock alone: a start refused or killed at once
        refuse(f"hydra.run.dir={run_dir} is not a run directory (no run.json) and not empty: refusing to write there")


def check_output_dir(overrides: list[str]) -> None:
    """Where Hydra will create a new run's directory (hydra.run.dir, else outputs/) is, or can be made, a
    directory this user can write in: else Hydra's own FileExistsError or PermissionError is a traceback."""
    given = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(overrides)}
    if given.get("resume") not in (None, "null") or "${" in str(given.get("hydra.run.dir", "")):
        return  # the resumed run's own directory (its lock says when it is not writable), or a computed one
    path = Path(str(given.get("hydra.run.dir", "outputs")))
    what = f"hydra.run.dir={path}" if "hydra.run.dir" in given else f"{path.resolve()} (where new runs go)"
    existing = next(p for p in [path, *path.parents] if p.exists())
    if not existing.is_dir():
        refuse(f"{what}: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        refuse(f"{what}: cannot write in {existing.resolve()} (permission denied)")


def remove_if_unstarted(run_dir: Path) -> None:
    """A start refused before run.json was written leaves no directory behind (Hydra creates it, empty, before
    it calls main, and has no setting to defer that); anything else in it, and every started run, stays as it is."""
    if not RunDir(run_dir).is_run():
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: not ours to remove
            run_dir.rmdir()


def hydra_quoted(value: str) -> str:
    """A value as one Hydra override token, whatever it holds (spaces, non-ASCII letters, quotes)."""
    return "'" + value.replace("'", "\\'") + "'"


def checked_arguments(argv: list[str]) -> list[str]:
    """The command line checked before Hydra creates or writes anything: a resume path is a run directory
    (quoted for Hydra's override grammar, so that any path a run was created in can be resumed), every key is the
    schema's, and a new run's directory can be written."""
    args = [quoted_resume(arg) for arg in argv]
    # Hydra's own parser (internal: no public API tells its overrides from its flags, -m, --cfg job, -cp, --info...).
    overrides = get_args_parser().parse_known_intermixed_args(args)[0].overrides
    try:
        check_keys(overrides)
        check_output_dir(overrides)
    except OverrideParseException:
        pass  # not an override Hydra can read: its own message says why
    except ConfigError as e:
        refuse(str(e))
    return args


def quoted_resume(arg: str) -> str:
    """`resume=<path>` refused unless the path is a run directory, and quoted as one override token."""
    if not arg.startswith("resume=") or arg.removeprefix("resume=") in ("", "null"):
        return arg
    path = arg.removeprefix("resume=")
    if len(path) > 1 and path[0] == path[-1] and path[0] in "'\"":  # quoted already, as Hydra allows
        path = path[1:-1]
    try:
        saved_run(Path(path))
    except (ResumeError, CorruptFileError) as e:
        refuse(str(e))
    return f"resume={hydra_quoted(path)}"


if __name__ == "__main__":
    sys.argv[1:] = checked_arguments(sys.argv[1:])
    main()
