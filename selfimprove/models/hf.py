"""model.kind=hf: a pretrained Hugging Face causal LM, LoRA-tuned with peft, behind the Decoder protocol
(`model=hf`, `model.path=<local dir or hub id>`).

The stages see what they see of the native `Transformer`: `forward(idx, cache, pos)` gives logits over the task
tokenizer's ids, `new_cache` a KV cache whose finished rows leave the batch, `state_dict` what a
checkpoint holds. Underneath:
- every task token is one of the pretrained tokenizer's own single-token ids (BOS and EOS are its own too):
  the input goes through a table of those ids, and the logits are those of the same rows of the output
  embedding only, so a label is always a string of the task's tokens and decodes to the task's text
  exactly. PAD and BOS are never emitted. (The softmax thus runs over the task's tokens, not over the
  whole pretrained vocabulary: the full distribution conditioned on writing a task token.)
- the base weights are frozen, in bf16 where the run's precision resolves to bf16 (fp32 otherwise); peft's
  LoRA weights, in fp32, are the only trainable parameters and the only tensors a checkpoint holds, next
  to the base model's identity (its path and a fingerprint of its weights).
Only this module imports transformers and peft, and only when a model of this kind is checked or built: a native
run needs neither.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from selfimprove.errors import ConfigError
from selfimprove.models.decoder import ModelSpec
from selfimprove.models.precision import resolve
from selfimprove.models.tokenizer import BOS, PAD, Tokenizer

if TYPE_CHECKING:
    import peft
    import transformers

    from selfimprove.config import ModelConfig  # the whole model group: block_size and HFConfig's fields


@dataclass
class LoraConfig:
    """peft LoRA on a pretrained model: low-rank updates of the named projections."""

    r: int = 64
    alpha: int = 128  # peft's lora_alpha: the update is scaled by alpha / r
    dropout: float = 0.0
    # Module names (peft matches a name or a dotted suffix): every attention and MLP projection of a Llama.
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class HFConfig:
    """The model.* settings of model.kind=hf."""

    path: str | None = None  # a local model directory, or a Hugging Face hub id found in the local cache
    lora: LoraConfig = field(default_factory=LoraConfig)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, slower steps


# peft asks transformers a question it renamed; the answer is the same (transformers 5).
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


@functools.cache
def libraries() -> tuple[ModuleType, ModuleType]:
    """transformers and peft, imported on first use."""
    try:
        import peft
        import transformers
    except ImportError as e:
        raise ConfigError(f"model.kind=hf needs transformers and peft ({e}): pip install -e '.[hf]'") from None
    # Weight loading draws a progress bar per model: a run loads one per stage and voter, and has its own bars.
    transformers.utils.logging.disable_progress_bar()
    return transformers, peft


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


@functools.cache  # validation and every model of a process read them: once per path
def pretrained(path: str) -> tuple[transformers.PretrainedConfig, transformers.PreTrainedTokenizerBase]:
    """The config and the tokenizer at `path` (a local model directory, or a hub id: the hub, or its local
    cache with HF_HUB_OFFLINE=1)."""
    if path.startswith(("/", "./", "../", "~")) and not Path(path).is_dir():  # a path, not a hub id
        raise ConfigError(f"model.path={path}: no such model directory")
    transformers = libraries()[0]
    try:
        return transformers.AutoConfig.from_pretrained(path), transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(
            f"model.path={path}: not a model directory, nor a model the Hugging Face hub or its cache has "
            f"({_first_line(e)})"
        ) from None


def token_ids(tokenizer: Tokenizer, path: str) -> list[int]:
    """The pretrained id of each id of the task's `tokenizer` (PAD, BOS, EOS, then the task's tokens); a
    task token that is not one token of the pretrained tokenizer is refused in one line."""
    pretrained_tokenizer = pretrained(path)[1]
    vocab = pretrained_tokenizer.get_vocab()
    ids = {token: vocab.get(token) for token in tokenizer.vocabulary}
    missing = [t for t, i in ids.items() if i is None or pretrained_tokenizer.decode([i]) != t]
    if missing:
        shown = " ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        raise ConfigError(
            f"model.path={path}: its tokenizer has no single-token id for {shown}: each of the task's "
            f"{len(tokenizer.vocabulary)} tokens must be one token of the pretrained vocabulary"
        )
    eos = pretrained_tokenizer.eos_token_id
    if eos is None:
        raise ConfigError(f"model.path={path}: its tokenizer has no EOS token to end an answer with")
    bos = pretrained_tokenizer.bos_token_id
    # Models without a BOS token (GPT-2's family) start a document after an EOS. PAD only fills the end of a
    # batch's shorter rows, which nothing attends to and no loss is taken on: any id does.
    return [eos, eos if bos is None else bos, eos, *ids.values()]


def lora_config(cfg: LoraConfig) -> peft.LoraConfig:
    return libraries()[1].LoraConfig(
        task_type="CAUSAL_LM",  # a standard causal-LM adapter: `.peft.save_pretrained(dir)` exports it as one
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
    )


def check(cfg: ModelConfig, tokenizer: Tokenizer) -> None:
    """Refuse, in one line, a model=hf config that cannot run: no path, a path that holds no causal LM, a tokenizer
    without a single-token id for a task token, a block size past the model's positions, LoRA target modules
    the model does not have. Reads the config and tokenizer; builds no weights."""
    lora = cfg.lora
    if not cfg.path:
        raise ConfigError("model=hf needs model.path=<a local model directory or a Hugging Face hub id>")
    if lora.r < 1 or lora.alpha <= 0:
        raise ConfigError(f"model.lora.r={lora.r} and model.lora.alpha={lora.alpha} must be positive")
    if not 0.0 <= lora.dropout < 1.0:
        raise ConfigError(f"model.lora.dropout={lora.dropout} must lie in [0, 1)")
    if len(lora.target_modules) == 0:
        raise ConfigError("model.lora.target_modules is empty: LoRA would train nothing")
    transformers, peft = libraries()
    config = pretrained(cfg.path)[0]
    token_ids(tokenizer, cfg.path)
    longest = getattr(config, "max_position_embeddings", None)
    if longest is not None and cfg.block_size > longest:
        raise ConfigError(f"model.block_size={cfg.block_size} is past model.path={cfg.path}'s {longest} positions")
    try:
        with torch.device("meta"):  # the modules without their weights: where LoRA would go
            skeleton = transformers.AutoModelForCausalLM.from_config(config)
    except ValueError as e:
        raise ConfigError(f"model.path={cfg.path}: not a causal language model ({_first_line(e)})") from None
    try:
        peft.get_peft_model(skeleton, lora_config(cfg.lora))
    except ValueError as e:
        raise ConfigError(f"model.lora.target_modules={list(cfg.lora.target_modules)}: {_first_line(e)}") from None


def fingerprint(model: nn.Module) -> str:
    """A hash of the first values of every weight, in bf16: the same whatever the device or the dtype the
    weights were loaded in, and another for a fine-tuned copy put at the same path."""
    digest = hashlib.sha256()
    for name, weight in model.named_parameters():
        head = weight.detach().flatten()[:64].to("cpu", torch.bfloat16)
        digest.update(name.encode())
        digest.update(head.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]


class HFCache:
    """transformers' DynamicCache behind the native cache's interface. It grows token by token (the native
    cache is preallocated), so the length and dtype it is made with are not needed."""

    def __init__(self, config: transformers.PretrainedConfig) -> None:
        self.kv = libraries()[0].DynamicCache(config=config)

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` of the batch (finished rows leave the batch during generation)."""
        self.kv.batch_select_indices(rows)


class HFModel(nn.Module):
    """The pretrained model at `cfg.path`, its weights frozen in `dtype`, with fresh LoRA weights (drawn from
    torch's RNG, as the native model's initial weights are) on `cfg.lora.target_modules`."""

    def __init__(self, cfg: ModelConfig, tokenizer: Tokenizer, dtype: torch.dtype) -> None:
        super().__init__()
        transformers, peft = libraries()
        self.cfg = cfg
        lm = transformers.AutoModelForCausalLM.from_pretrained(cfg.path, dtype=dtype)
        self.base_identity = {"path": cfg.path, "fingerprint": fingerprint(lm)}
        if cfg.gradient_checkpointing:
            # Non-reentrant: the gradient reaches the LoRA weights although the frozen embeddings need none.
            lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        self.peft = peft.get_peft_model(lm, lora_config(cfg.lora))  # freezes the base; LoRA weights in fp32
        self.register_buffer("ids", torch.tensor(token_ids(tokenizer, cfg.path)), persistent=False)
        never = torch.zeros(tokenizer.vocab_size)
        never[[PAD, BOS]] = float("-inf")  # they only ever fill or start a sequence
        self.register_buffer("never", never, persistent=False)

    @property
    def lm(self) -> transformers.PreTrainedModel:
        """The causal LM, with peft's LoRA layers in place of its target modules."""
        return self.peft.get_base_model()

    def new_cache(self, batch: int, length: int, dtype: torch.dtype | None = None) -> HFCache:
        return HFCache(self.lm.config)

    def forward(
        self, idx: torch.Tensor, cache: HFCache | None = None, pos: int = 0, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, vocab of the task tokenizer) for task-token ids `idx` (B, T) starting at `pos`. It reads no
        task-given position ids (its spec has no position table): `positions` is not used."""
        T = idx.shape[1]
        if pos + T > self.cfg.block_size:
            raise ValueError(f"sequence of {pos + T} tokens exceeds block_size={self.cfg.block_size}")
        out = self.lm.get_decoder()(
            input_ids=self.ids[idx],
            position_ids=torch.arange(pos, pos + T, device=idx.device)[None],
            cache=None if cache is None else cache.kv,
            use_cache=cache is not None,
        )
        head = self.lm.get_output_embeddings().weight[self.ids]  # the task tokens' rows only
        return F.linear(out.last_hidden_state, head) + self.never

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """The LoRA weights only: what a checkpoint holds (the base model stays at model.path)."""
        return {name: p.detach() for name, p in self.lm.named_parameters() if p.requires_grad}

    def load_state_dict(self, state: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        own = self.state_dict()
        if state.keys() != own.keys():
            missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own.keys())
            raise RuntimeError(f"LoRA weights do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            for name, tensor in state.items():
                own[name].copy_(tensor)


def build(cfg: ModelConfig, tokenizer: Tokenizer, device: torch.device, precision: str) -> HFModel:
    dtype = torch.bfloat16 if resolve(precision, device) == "bf16" else torch.float32
    return HFModel(cfg, tokenizer, dtype).to(device)


SPEC = ModelSpec("hf", HFConfig, build, check)
