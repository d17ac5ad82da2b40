"""Weights & Biases, as its users expect: every chart against the global training step, a round's accuracy
per difficulty as a table and the heatmap, the final reach in the run's summary, plots/*.png uploaded.

One wandb run per process that works on a run directory: `run.py`'s walk is one (resumed with the run),
each job of a sweep is another (the voters of a step run side by side); all of a run directory's wandb
runs share its wandb group, so wandb shows them together, and no run id is ever used twice at once.
"""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from selfimprove.config import LoggerConfig
from selfimprove.errors import ConfigError

STEP = "global_step"  # the x axis: training steps since the first base step, across rounds
ENV_MODES = ("online", "offline", "disabled", "dryrun", "run")  # what wandb accepts in WANDB_MODE
DEFAULT_MODE = "offline"  # when neither logger.mode nor WANDB_MODE says: a machine without network still runs


def mode_of(cfg: LoggerConfig) -> str:
    """logger.mode when given, else the environment's WANDB_MODE, else offline."""
    return cfg.mode or os.environ.get("WANDB_MODE") or DEFAULT_MODE


def check(cfg: LoggerConfig) -> None:
    """Before any work: WANDB_MODE, which wandb reads whatever logger.mode says, is one of its modes; an online run
    needs credentials and a reachable server (one line, not a pydantic traceback or a 90 s hang)."""
    if cfg.name != "wandb":
        return
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode is not None and env_mode not in ENV_MODES:
        raise ConfigError(
            f"WANDB_MODE={env_mode!r} (set in the environment) is not a wandb mode: unset it, or set it to online, "
            "offline or disabled"
        )
    if mode_of(cfg) != "online":
        return
    import wandb

    if not wandb.login(verify=False, prompt=False):  # looks for a key (env, netrc, settings), not the network
        raise ConfigError(
            "logger.mode=online: no wandb API key (run `wandb login` or set WANDB_API_KEY); logger.mode=offline "
            "logs locally"
        )
    url = urlparse(os.environ.get("WANDB_BASE_URL") or wandb.Settings().base_url)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=5).close()
    except OSError as e:
        raise ConfigError(
            f"logger.mode=online: cannot reach {url.geturl()} ({e}); logger.mode=offline logs locally"
        ) from None


class WandbSink:
    def __init__(self, cfg: LoggerConfig, run_dir: Path, config: dict[str, Any], name: str, part: str | None) -> None:
        import wandb

        group = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]  # one per run directory
        self.wandb = wandb
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            mode=mode_of(cfg),
            dir=str(run_dir),
            name=f"{name}/{part}" if part else name,
            group=group,
            job_type=part.split(".")[0] if part else "run",
            id=hashlib.sha1(f"{group}/{part}".encode()).hexdigest()[:16],  # a resumed run or requeued job continues
            resume="allow",
            config=config,  # the composed config, as a plain container
            tags=list(cfg.tags),
            settings=wandb.Settings(init_timeout=60, silent=True),
        )
        self.run.define_metric(STEP)
        self.run.define_metric("*", step_metric=STEP)
        self.run_dir = run_dir

    def log(self, event: str, fields: dict[str, Any]) -> None:
        """The numbers of a metrics.jsonl event, at its global step; a training loss per voter."""
        if STEP not in fields:
            return
        prefix = f"{event}/voter{fields['voter']}" if event == "train" else event
        numbers = {
            f"{prefix}/{k}": v
            for k, v in fields.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k not in (STEP, "voter", "round", "step")
        }
        self.run.log({STEP: fields[STEP], **numbers})

    def publish(self, summary: dict[str, Any], step: int, plots: Path) -> None:
        """After a round's evaluation: its accuracy per difficulty (table and heatmap), the reach so far in
        the summary, and the plots as files."""
        latest = summary["rounds"][-1]
        table = self.wandb.Table(columns=["round", "difficulty", "accuracy"])
        for difficulty, accuracy in latest["accuracy"].items():
            table.add_data(latest["round"], difficulty, accuracy)
        record: dict[str, Any] = {STEP: step, "round/round": latest["round"], "round/reach": latest["reach"]}
        record["round/accuracy"] = table
        for key in ("label_accuracy", "kept_fraction"):
            if latest[key] is not None:
                record[f"round/{key}"] = latest[key]
        heatmap = plots / "accuracy.png"
        if heatmap.exists():
            record["round/heatmap"] = self.wandb.Image(str(heatmap))
        self.run.log(record)
        self.run.summary["reach"] = summary["reach"]
        self.run.summary["rounds"] = latest["round"]
        for png in plots.glob("*.png"):
            self.run.save(str(png), base_path=str(self.run_dir), policy="live")

    def close(self) -> None:
        self.run.finish()
