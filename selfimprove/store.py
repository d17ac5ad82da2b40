"""The run directory: atomic writes, done-markers, run.json, the paths of checkpoints, and round data.

Every file that a later stage reads is written to a temporary file in the same folder, fsynced,
and renamed over its target, so a kill at any moment leaves either the old or the new file. A
stage is done when its marker `done/<stage>.json` exists; the marker is written last.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from selfimprove.errors import CorruptFileError
from selfimprove.tasks import Example


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600: let the group read results, as open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"cannot read {path}: {e}") from e


class RunDir:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- stage markers --------------------------------------------------------------------------
    def marker(self, stage: str) -> Path:
        return self.root / "done" / f"{stage}.json"

    def is_done(self, stage: str) -> bool:
        return self.marker(stage).exists()

    def result(self, stage: str) -> dict[str, Any]:
        return read_json(self.marker(stage))

    def mark_done(self, stage: str, result: dict[str, Any]) -> None:
        atomic_write_json(self.marker(stage), result)

    # -- files ------------------------------------------------------------------------------------
    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def is_run(self) -> bool:
        """Whether a run began here: its run.json (overrides, result config, vocabulary) is written first."""
        return self.run_json.exists()

    def record(self) -> dict[str, Any]:
        """run.json: the overrides, the result-determining config (flattened) and the vocabulary."""
        return read_json(self.run_json)

    def write_record(self, record: dict[str, Any]) -> None:
        atomic_write_json(self.run_json, record)

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    def checkpoint(self, voter: int, name: str = "latest") -> Path:
        return self.root / "checkpoints" / f"voter{voter}" / f"{name}.pt"

    def round_data(self, round_: int) -> Path:
        return self.root / "data" / f"round_{round_:03d}.jsonl"

    def write_config_record(
        self, cfg: DictConfig, overrides: Sequence[str], hydra: DictConfig | None = None, again: bool = True
    ) -> None:
        """Hydra's record of a start: .hydra/{config,overrides,hydra}.yaml. A later start of the same run (a
        resume) goes beside the first in .hydra/resume-<time>/, or writes nothing when `again` is false."""
        record = self.root / ".hydra"
        if (record / "config.yaml").exists():
            if not again:
                return
            record = record / f"resume-{datetime.now():%Y-%m-%d_%H-%M-%S}"
        record.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, record / "config.yaml")
        OmegaConf.save(OmegaConf.create(list(overrides)), record / "overrides.yaml")
        if hydra is not None:
            OmegaConf.save(OmegaConf.create({"hydra": hydra}), record / "hydra.yaml")

    # -- round data -------------------------------------------------------------------------------
    def write_round(self, round_: int, rows: Iterable[dict[str, Any]]) -> None:
        text = "".join(json.dumps(row) + "\n" for row in rows)
        atomic_write_bytes(self.round_data(round_), text.encode())

    def read_round(self, round_: int) -> list[Example]:
        path = self.round_data(round_)
        examples: list[Example] = []
        try:
            with path.open() as f:
                for line in f:
                    row = json.loads(line)
                    examples.append(Example(row["prompt"], row["label"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CorruptFileError(
                f"corrupt round data {path} (line {len(examples) + 1}): {type(e).__name__}: {e}"
            ) from e
        return examples
