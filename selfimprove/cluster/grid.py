"""A sweep's grid: command-line overrides split into config and launcher settings, Hydra's sweep syntax
expanded into points, and each point composed and validated (and checked against its run directory when it
ran before), all before anything is submitted.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from selfimprove.cluster.sweepdir import SweepDir
from selfimprove.config import CONF, HOW, check_keys, check_overrides, keys_with, register_configs, validate
from selfimprove.errors import BaseFromError, ConfigError, CorruptFileError, LaunchError, ResumeError, one_line
from selfimprove.loop import pipeline
from selfimprove.store import RunDir

# Launcher keys that sweep.py sets itself (per step) or that only make sense in a Hydra multirun.
OWN_LAUNCHER_KEYS = ("_target_", "submitit_folder", "name")


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


def parse_overrides(args: list[str]) -> tuple[list[str], list[str]]:
    """Split command-line overrides into config overrides and `hydra.launcher.*` resource overrides."""
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except HydraException as e:
        raise LaunchError(f"bad override: {one_line(e)}") from None
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
    """The grid points of Hydra sweep syntax (`a=1,2 b=range(3)`), in the order of a Hydra multirun (its basic
    sweeper's: the product of each key's values, a key's place fixed by its first override, its values by its
    last)."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as e:
        raise LaunchError(f"bad sweep: {one_line(e)}") from None
    values: dict[str, list[str]] = {}
    for o, text in zip(parsed, overrides, strict=True):
        key = o.get_key_element()
        if not o.is_sweep_override():
            values[key] = [f"{key}={o.get_value_element_as_str()}"]
        elif o.is_discrete_sweep():
            values[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
        else:
            raise LaunchError(f"bad sweep: {text}: an interval has no grid points (sweep a list, range() or choice())")
    return [list(point) for point in itertools.product(*values.values())]


@contextlib.contextmanager
def hydra_session() -> Iterator[None]:
    """Hydra initialised on the project's conf/, for `compose_point` and `launcher_params`."""
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3", job_name="sweep"):
        yield


def compose_point(overrides: list[str]) -> DictConfig:
    """Compose and validate one point; LaunchError names the point when it does not."""
    try:
        check_keys(overrides)
    except ConfigError as e:  # names the override already
        raise LaunchError(str(e)) from None
    try:
        cfg = compose(config_name="config", overrides=overrides)
        check_overrides(cfg, overrides)
        validate(cfg)
    except (HydraException, OmegaConfBaseException, ConfigError) as e:
        raise LaunchError(f"{' '.join(overrides)}: {one_line(e)}") from None
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
        raise LaunchError(f"launcher settings: {one_line(e)}") from None
    return {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in params.items()}


def _dedupe(overrides: list[str]) -> list[str]:
    """Later overrides of the same key replace earlier ones."""
    keys = [o.key_or_group for o in OverridesParser.create().parse_overrides(overrides)]
    return [o for i, o in enumerate(overrides) if keys[i] not in keys[i + 1 :]]


def resume_free(overrides: list[str]) -> bool:
    parsed = OverridesParser.create().parse_overrides(overrides)
    return all(not o.is_sweep_override() and pipeline.resume_free(o.key_or_group) for o in parsed)


def point_overrides(config_overrides: list[str], sweep: SweepDir | None) -> tuple[list[list[str]], list[str]]:
    """The points' overrides, and the overrides added to all of them when a sweep is resumed."""
    if sweep is None:
        return expand(config_overrides), []
    grid = [p["overrides"] for p in sweep.data["points"]]
    extras = list(sweep.data.get("resume_overrides", []))
    if config_overrides and config_overrides != sweep.data["overrides"]:
        if not resume_free(config_overrides):
            raise LaunchError(
                f"{sweep.root} is the sweep `{' '.join(sweep.data['overrides'])}`: re-run it with the same overrides,"
                f" none, or only ones that do not change results ({', '.join(keys_with(HOW))})"
            )
        extras = _dedupe([*extras, *config_overrides])
    return grid, extras


def make_point(num: int, overrides: list[str], extras: list[str], sweep: SweepDir | None, root: Path) -> Point:
    """Point `num` with the resume overrides on top, composed and validated; refused when its run directory
    ran before with results that the overrides would change."""
    run_dir = sweep.run_dir(num) if sweep else root / str(num)
    effective = _dedupe([*overrides, *extras])
    point = Point(num, effective, run_dir, compose_point(effective))
    try:
        pipeline.check_base_from(point.cfg, run_dir)
    except BaseFromError as e:
        raise LaunchError(f"point {num}: {e}") from None
    if RunDir(run_dir).is_run():  # a point that ran before: refuse what would change its results
        try:
            pipeline.check_resumable(pipeline.saved_run(run_dir), point.cfg)
        except (ResumeError, CorruptFileError) as e:
            raise LaunchError(f"{run_dir}: {e}") from None
    return point
