"""The model a run trains, whichever `model.kind` names, and the one place it is built.

- native: this project's decoder (model.py), trained from scratch;
- hf: a pretrained Hugging Face causal LM with peft LoRA (hf_model.py; transformers and peft are imported
  only for it).
Both speak what the stages use: `forward(idx, cache=None, pos=0)` gives logits over the task tokenizer's
ids; `new_cache(batch, length, dtype)` a KV cache whose `select(rows)` keeps the rows still generating;
`cfg.block_size`; `state_dict` / `load_state_dict` what a checkpoint holds (all weights; LoRA weights only);
`base_identity` what the weights were tuned from (None: trained from scratch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import torch

from selfimprove.config import ModelConfig
from selfimprove.models.native import Transformer
from selfimprove.models.precision import resolve
from selfimprove.models.tokenizer import Tokenizer

if TYPE_CHECKING:
    from selfimprove.models.hf import HFModel

Decoder: TypeAlias = "Transformer | HFModel"


def build(cfg: ModelConfig, tokenizer: Tokenizer, device: torch.device, precision: str) -> Decoder:
    """A new model on `device`, its initial (native) or LoRA (hf) weights drawn from torch's RNG. `precision`
    is training.precision: a pretrained model's frozen weights are kept in bf16 where it resolves to bf16."""
    if cfg.kind == "hf":
        from selfimprove.models.hf import HFModel

        dtype = torch.bfloat16 if resolve(precision, device) == "bf16" else torch.float32
        return HFModel(cfg, tokenizer, dtype).to(device)
    return Transformer(cfg, tokenizer.vocab_size).to(device)
