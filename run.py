"""Run one self-improvement experiment: `python run.py [group=option ...] [key=value ...]`.

`python run.py --help` says what the project is, how to resume and where results go, and lists the config
groups; `python run.py --cfg job` prints the composed config.
`python run.py resume=<run dir> [key=value ...]` continues a run where it stopped.
"""

from __future__ import annotations

import contextlib
import sys
from functools import partial
from pathlib import Path
from typing import NoReturn

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.errors import OverrideParseException
from omegaconf import DictConfig

from selfimprove.base_from import BaseFromError
from selfimprove.config import ConfigError, check_keys, check_overrides, register_configs, validate
from selfimprove.pipeline import ResumeError, run, saved_run
from selfimprove.runlock import LOCK_FILE, RunLockedError
from selfimprove.store import CorruptFileError, IncompatibleCheckpointError, RunDir
from selfimprove.train import NonFiniteLossError

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
    try:
        if cfg.resume:
            cfg = resume_config(run_dir, overrides)
            overrides = saved_run(run_dir)["overrides"]
        else:  # a resumed run was checked when it started
            check_overrides(cfg, overrides)
        validate(cfg)
        cfg.progress = bool(cfg.progress and sys.stderr.isatty())  # no tqdm bars in a log file or a pipe
        # Hydra's .hydra/ record (output_subdir is null) is written once the run is open, so a refused start
        # changes nothing in an existing run; a resume's record goes beside the run's own.
        record = partial(RunDir(run_dir).write_config_record, cfg, command_overrides, hydra_cfg)
        run(cfg, run_dir, overrides, on_open=record)
    except (
        BaseFromError,
        ConfigError,
        ResumeError,
        RunLockedError,
        CorruptFileError,
        IncompatibleCheckpointError,
        NonFiniteLossError,
    ) as e:
        remove_if_unstarted(run_dir)
        refuse(str(e))


def remove_if_unstarted(run_dir: Path) -> None:
    """A start refused before run.json was written leaves no directory behind (Hydra created it empty);
    anything else in it, and every started run, stays as it is."""
    if not (run_dir / "run.json").exists():
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty: not ours to remove
            run_dir.rmdir()


def hydra_quoted(value: str) -> str:
    """A value as one Hydra override token, whatever it holds (spaces, non-ASCII letters, quotes)."""
    return "'" + value.replace("'", "\\'") + "'"


def refuse(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def checked_arguments(argv: list[str]) -> list[str]:
    """The command line checked before Hydra creates or writes anything: every key is the schema's, and a
    resume path is a run directory, quoted for Hydra's override grammar (so that any path a run was created in
    can be resumed)."""
    overrides = get_args_parser().parse_known_intermixed_args(argv)[0].overrides
    try:
        check_keys(overrides)
    except OverrideParseException:
        pass  # not an override Hydra can read: its own message says why
    except ConfigError as e:
        refuse(str(e))
    args = []
    for arg in argv:
        if arg.startswith("resume=") and arg.removeprefix("resume=") not in ("", "null"):
            path = arg.removeprefix("resume=")
            if len(path) > 1 and path[0] == path[-1] and path[0] in "'\"":  # quoted already, as Hydra allows
                path = path[1:-1]
            try:
                saved_run(Path(path))
            except (ResumeError, CorruptFileError) as e:
                refuse(str(e))
            arg = f"resume={hydra_quoted(path)}"
        args.append(arg)
    return args


if __name__ == "__main__":
    sys.argv[1:] = checked_arguments(sys.argv[1:])
    main()
