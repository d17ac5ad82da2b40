"""Where numbers go: metrics.jsonl always, the console, and wandb when configured."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfimprove.config import LoggerConfig


class MetricsLogger:
    """Appends one JSON object per event to metrics.jsonl; mirrors numbers to wandb if enabled."""

    def __init__(self, path: Path, cfg: LoggerConfig, config: dict[str, Any], run_name: str) -> None:
        self.path = path
        self.wandb = None
        if cfg.name == "wandb":
            import wandb

            self.wandb = wandb.init(
                project=cfg.project,
                entity=cfg.entity,
                mode=cfg.mode,
                dir=str(path.parent),
                name=run_name,
                id=hashlib.sha1(str(path.parent.resolve()).encode()).hexdigest()[:16],  # one id per run dir
                resume="allow",  # a resumed run keeps logging into the same wandb run
                config=config,  # a plain container: wandb cannot serialise DictConfig nodes
                tags=list(cfg.tags),
            )

    def log(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            numbers = {f"{event}/{k}": v for k, v in fields.items() if isinstance(v, int | float)}
            if numbers:
                self.wandb.log(numbers)

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain fixed-width console table."""
    cells = [[str(h) for h in headers], *[[_fmt(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
