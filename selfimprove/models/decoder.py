"""The model a run trains, whichever `model.kind` names: the interface every kind speaks (`Decoder`), the spec each
kind registers (`ModelSpec`), and `build`, the one place a model is made.

A kind is one module of this package that defines `SPEC = ModelSpec(...)`, plus a conf/model/<option>.yaml that
sets `kind: <its name>`:
- native.py: this project's decoder, trained from scratch;
- hf.py: a pretrained Hugging Face causal LM with peft LoRA (transformers and peft are imported only for it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

from selfimprove.models.tokenizer import Tokenizer

if TYPE_CHECKING:
    from selfimprove.tasks.base import PositionId


class Decoder(Protocol):
    """What the stages use of a model (an nn.Module), whatever its kind."""

    cfg: Any  # the model config group it was built from (cfg.block_size: its longest sequence)
    base_identity: dict[str, str] | None  # what the weights were tuned from (None: trained from scratch)

    def __call__(
        self, idx: torch.Tensor, cache: Any = None, pos: int = 0, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, vocab of the task tokenizer) for task-token ids `idx` (B, T) starting at position `pos`;
        `positions` (B, T), or (B, T, levels): the position ids the task gives them, for a model with a
        `position_table`."""
        ...

    def new_cache(self, batch: int, length: int, dtype: torch.dtype | None = None) -> Any:
        """An empty KV cache whose `select(rows)` keeps the rows still generating."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """What a checkpoint holds of the model (all weights; LoRA weights only)."""
        ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> Any: ...

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


@dataclass(frozen=True)
class PositionTable:
    """A model that reads the position ids a task gives (position coupling): ids 0..rows - 1 have a row, and a
    training sequence's nonzero ids shift by a random offset in [0, max_offset] (labelling and evaluation: 0). A
    token has `levels` ids (one per level, each with rows of its own)."""

    rows: int
    max_offset: int
    levels: int = 1


# A task's `positions`: (prompt, answer slots) -> the ids of BOS, the prompt and the slots (None: it gives none)
PositionsOf = Callable[[str, int], "list[PositionId] | None"]


def no_position_table(cfg: Any) -> PositionTable | None:
    return None


KINDS: dict[str, ModelSpec] = {}  # model.kind -> its spec; models/__init__.py imports every module, so all are here


@dataclass(frozen=True)
class ModelSpec:
    """A model kind: its name (`model.kind`), its own settings and how to build and check them."""

    name: str
    # A dataclass of its model.* settings with their defaults (the model schema holds every kind's, so a checkpoint
    # and a run.json record the same keys whatever the kind).
    config: type
    # (model config group, task tokenizer, device, training.precision) -> a new model, its trainable weights drawn
    # from torch's RNG
    build: Callable[[Any, Tokenizer, torch.device, str], Decoder]
    # (model config group, task tokenizer) -> None, or ConfigError in one line on a value the kind cannot run with
    check: Callable[[Any, Tokenizer], None]
    # model config group -> the table of task-given position ids it reads (None: it reads none)
    position_table: Callable[[Any], PositionTable | None] = no_position_table

    def __post_init__(self) -> None:
        KINDS[self.name] = self


def position_table(cfg: Any) -> PositionTable | None:
    """The table of task-given position ids a model of config `cfg` reads (None: it reads none)."""
    return KINDS[cfg.kind].position_table(cfg)


def build(cfg: Any, tokenizer: Tokenizer, device: torch.device, precision: str) -> Decoder:
    """A new model of kind `cfg.kind` on `device`. `precision` is training.precision: a pretrained model's frozen
    weights are kept in bf16 where it resolves to bf16."""
    return KINDS[cfg.kind].build(cfg, tokenizer, device, precision)
