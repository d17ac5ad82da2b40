"""Where numbers go: metrics.jsonl always, the console, and wandb when configured."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfimprove.config import LoggerConfig
from selfimprove.results.wandb_sink import WandbSink
from selfimprove.store import atomic_write_bytes


class MetricsLogger:
    """Appends one JSON object per event to metrics.jsonl; mirrors them to wandb when logger=wandb."""

    def __init__(
        self, path: Path, cfg: LoggerConfig, config: dict[str, Any], run_name: str, part: str | None = None
    ) -> None:
        self.path = path
        self.wandb = WandbSink(cfg, path.parent, config, run_name, part) if cfg.name == "wandb" else None

    def log(self, event: str, **fields: Any) -> None:
        record = {"event": event, "time": round(time.time(), 3), **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            self.wandb.log(event, fields)

    def publish(self, summary: dict[str, Any], step: int, plots: Path) -> None:
        """A round's summary is out (summary.json and plots/ written)."""
        if self.wandb is not None:
            self.wandb.publish(summary, step, plots)

    def forget(self, stage: str, after_step: int | None = None) -> None:
        """Drop what an interrupted attempt at `stage` logged (past `after_step`, the step its checkpoint
        holds, for training), and a line torn by a kill: the stage logs it again as it resumes, so every
        event is in the file once. The file is rewritten only when there is something to drop."""
        if not self.path.exists():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        keep = [line for line in lines if line.endswith("\n") and not _stale(line, stage, after_step)]
        if len(keep) < len(lines):
            atomic_write_bytes(self.path, "".join(keep).encode())

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.close()


def _stale(line: str, stage: str, after_step: int | None) -> bool:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:  # torn by a kill, then appended to
        return True
    return record.get("stage") == stage and (after_step is None or record.get("step", 0) > after_step)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 0) -> str:
    """A plain fixed-width console table; the first `left` columns (names) aligned left, the rest right."""
    cells = [[str(h) for h in headers], *[[_fmt(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
