"""A voter's checkpoint: model, optimiser, step, RNG streams, and what it was written for (model config,
base model, vocabulary), so that a stage resumes exactly and a checkpoint is never loaded into another model.

On disk it is a plain dict of these fields (torch.save), as it has always been: files written before a field
existed are read with the value it had then.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from selfimprove.config import typed
from selfimprove.errors import CorruptFileError, IncompatibleCheckpointError
from selfimprove.models.decoder import Decoder, build
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.store import atomic_write_bytes


@dataclass
class Checkpoint:
    model: dict[str, torch.Tensor]  # the state dict (for LoRA models: the trainable weights)
    stage: str  # the stage that wrote it
    step: int  # training steps of that stage done
    optimizer: dict[str, Any] = field(default_factory=dict)
    loss_window: tuple[float, int] = (0.0, 0)  # the loss sum and steps since the last log
    rng: dict[str, Any] | None = None  # the batch sampler's numpy bit-generator state
    torch_rng: torch.Tensor | None = None
    cuda_rng: list[torch.Tensor] | None = None
    model_config: dict[str, Any] = field(default_factory=dict)  # cfg.model as a plain container
    base_model: str | None = None  # what LoRA weights were tuned from; None: trained from scratch
    vocabulary: list[str] | None = None

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        # Not dataclasses.asdict: it would deep-copy every tensor of the model and the optimiser.
        torch.save({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        try:
            # Our own files: they hold numpy RNG state next to tensors, so the full unpickler is needed.
            saved = torch.load(path, map_location="cpu", weights_only=False)
        except FileNotFoundError:
            raise
        except Exception as e:
            raise CorruptFileError(f"corrupt checkpoint {path}: {type(e).__name__}: {e}") from e
        known = {f.name for f in dataclasses.fields(cls)}
        checkpoint = cls(**{k: v for k, v in saved.items() if k in known})
        checkpoint.loss_window = tuple(checkpoint.loss_window)  # type: ignore[assignment]
        return checkpoint

    def restarted(self, stage: str) -> Checkpoint:
        """The same weights recorded as `stage`'s (an adopted or a retried base)."""
        return dataclasses.replace(self, stage=stage)


def restore(
    path: Path, model_cfg: DictConfig, tokenizer: Tokenizer, device: torch.device, precision: str
) -> tuple[Decoder, Checkpoint]:
    """A model with the checkpoint's weights, and the checkpoint; refused in one line when the checkpoint
    was written for another vocabulary, model shape or base model."""
    checkpoint = Checkpoint.load(path)
    # A key the model config gained after the checkpoint was written had there what a saved config lacking it
    # is typed with: its value from before it existed, else its default.
    saved_model = {**OmegaConf.to_container(typed({"model": {}}).model, enum_to_str=True), **checkpoint.model_config}
    for what, mine, saved in (
        ("vocabulary", tokenizer.vocabulary, checkpoint.vocabulary),
        ("model", OmegaConf.to_container(model_cfg, enum_to_str=True), saved_model),
    ):
        if saved != mine:
            raise IncompatibleCheckpointError(f"{path} was written for another {what}: {saved} (this run: {mine})")
    model = build(model_cfg, tokenizer, device, precision)
    if checkpoint.base_model != model.base_identity:
        raise IncompatibleCheckpointError(
            f"{path} was tuned from another base model: {checkpoint.base_model} (this run: {model.base_identity})"
        )
    model.load_state_dict(checkpoint.model)
    return model, checkpoint
