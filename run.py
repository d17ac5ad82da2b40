"""Run one self-improvement experiment: `python run.py [group=option ...] [key=value ...]`.

`python run.py --help` lists the config groups; `python run.py --cfg job` prints the composed config.
`python run.py resume=<run dir> [key=value ...]` continues a run where it stopped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from selfimprove.base_from import BaseFromError
from selfimprove.config import ConfigError, register_configs, validate
from selfimprove.pipeline import ResumeError, run, saved_run
from selfimprove.store import CorruptFileError, IncompatibleCheckpointError
from selfimprove.train import NonFiniteLossError

register_configs()


def resume_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The run's own config with this command's overrides applied on top."""
    saved = saved_run(run_dir)
    return hydra.compose(config_name="config", overrides=[*saved["overrides"], *overrides, f"resume={run_dir}"])


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("resume=")]
    try:
        run_dir = Path(HydraConfig.get().runtime.output_dir)  # the resumed run's own dir on resume
        if cfg.resume:
            cfg = resume_config(run_dir, overrides)
            overrides = saved_run(run_dir)["overrides"]
        validate(cfg)
        run(cfg, run_dir, overrides)
    except (
        BaseFromError,
        ConfigError,
        ResumeError,
        CorruptFileError,
        IncompatibleCheckpointError,
        NonFiniteLossError,
    ) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def check_resume_argument(argv: list[str]) -> None:
    """Refuse a resume path that is not a run directory before Hydra creates or writes anything there."""
    for arg in argv:
        if arg.startswith("resume=") and arg.removeprefix("resume=") not in ("", "null"):
            try:
                saved_run(Path(arg.removeprefix("resume=")))
            except (ResumeError, CorruptFileError) as e:
                print(f"error: {e}", file=sys.stderr)
                sys.exit(2)


if __name__ == "__main__":
    check_resume_argument(sys.argv[1:])
    main()
