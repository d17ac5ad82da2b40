"""model.kind=native: this project's decoder-only transformer, trained from scratch: pre-norm blocks, SwiGLU MLP,
NoPE | RoPE | learned | coupled positions (a learned table or RoPE over the task's ids), SDPA.

Read top to bottom: its settings, the KV cache, attention, the MLP, a block, the model, its spec. `forward` takes an
optional cache and the position of the first token so that generation can feed one token at a time, and for
coupled positions the ids the task gives its tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from selfimprove.choices import Choice
from selfimprove.errors import ConfigError
from selfimprove.models.decoder import ModelSpec, PositionTable
from selfimprove.models.tokenizer import Tokenizer

if TYPE_CHECKING:
    from selfimprove.config import ModelConfig  # the whole model group: block_size and NativeConfig's fields


class Norm(Choice):
    layernorm = "layernorm"
    rmsnorm = "rmsnorm"


class Positions(Choice):
    nope = "nope"  # none: the causal mask alone tells positions apart
    rope = "rope"
    learned = "learned"
    # a learned table indexed by the position ids the task gives (position coupling, Cho et al. 2024), shifted in
    # training by a random offset per sequence
    coupled = "coupled"
    # RoPE rotated by the ids the task gives instead of by places: attention sees how far apart two tokens' ids are
    # (a digit's significance against the one being written), the same difference at every size, with no table
    # rows to train
    coupled_rope = "coupled_rope"


class AttentionScale(Choice):
    none = "none"
    # a query's attention logits times the log of the number of keys it sees (scalable softmax), so attention stays
    # as sharp past the trained lengths as within them instead of spreading over more keys
    log = "log"


@dataclass
class NativeConfig:
    """The decoder's shape: the model.* settings of model.kind=native."""

    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 128
    ffn_hidden: int = 352  # SwiGLU hidden width (about 8/3 of n_embd keeps the parameter count of a 4x MLP)
    bias: bool = False
    norm: Norm = Norm.layernorm
    pos_encoding: Positions = Positions.nope
    rope_theta: float = 10000.0
    # the angle, in radians, by which a step of one position (or id) turns the fastest frequency; the others turn it
    # times theta^(-2k/d). RoPE's is 1, which comes near a full turn at a difference of 6 and there mistakes a digit
    # for one at the same place; below 1 that first near turn moves out to about 2 pi / rope_step
    rope_step: float = 1.0
    # the share of each head's dimensions RoPE rotates (rope, coupled_rope); the rest see content alone, so that a
    # query can attend to a token (BOS: a sink) by a score no id difference changes, also one it never saw
    rope_fraction: float = 1.0
    # coupled, coupled_rope: each training sequence's ids shift by a random offset in [0, max_position_offset], so
    # that rows past the ids of the trained sizes are trained too (coupled_rope: so that a token with no place, id 0,
    # is seen at every distance); the table holds block_size + max_position_offset ids
    max_position_offset: int = 0
    # coupled, coupled_rope: how many ids the task gives each token (multiplication's chain of thought: 2, one by the
    # digit of a and one by the row). coupled sums a table row per level; coupled_rope rotates the frequencies in turn
    # by each level's id (every other frequency by the first of two), so that each level has fast and slow ones
    position_levels: int = 1
    attention_scale: AttentionScale = AttentionScale.log
    dropout: float = 0.0


Rope = tuple[torch.Tensor, torch.Tensor]  # cos, sin of the tokens' angles: (T, head_dim / 2) or (B, 1, T, head_dim / 2)
LayerCache = tuple[torch.Tensor, torch.Tensor]  # keys, values of one layer


@dataclass
class KVCache:
    """Preallocated keys and values, one (B, H, T_max, head_dim) pair per layer."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def empty(cls, cfg: ModelConfig, batch: int, length: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        shape = (batch, cfg.n_head, length, cfg.n_embd // cfg.n_head)
        make = lambda: [torch.empty(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]  # noqa: E731
        return cls(make(), make())

    def select(self, rows: torch.Tensor) -> None:
        """Keep only `rows` of the batch (finished rows leave the batch during generation)."""
        self.keys = [k[rows] for k in self.keys]
        self.values = [v[rows] for v in self.values]


def rotated_dims(cfg: ModelConfig) -> int:
    """How many of a head's dimensions RoPE rotates: rope_fraction of them, rounded down to an even count."""
    return int(cfg.n_embd // cfg.n_head * cfg.rope_fraction) // 2 * 2


def rope_tables(cfg: ModelConfig, rows: int) -> Rope:
    """cos, sin of the angles of positions 0..rows - 1, (rows, rotated_dims / 2)."""
    head_dim = rotated_dims(cfg)
    inv_freq = cfg.rope_theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(rows, dtype=torch.float32) * cfg.rope_step, inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`x` with its first 2 * cos.shape[-1] dimensions rotated, in pairs; the others as they are."""
    dims = 2 * cos.shape[-1]
    x1, x2 = x[..., 0:dims:2], x[..., 1:dims:2]
    rotated = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).type_as(x)
    return rotated if dims == x.shape[-1] else torch.cat((rotated, x[..., dims:]), dim=-1)


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(cfg.n_embd)
    return nn.LayerNorm(cfg.n_embd, bias=cfg.bias)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, dropout: float) -> torch.Tensor:
    """SDPA. Under bf16 autocast on the CPU, attention that will be backpropagated runs in fp32: PyTorch's
    bf16 flash-attention backward there is several times slower than the fp32 one, while the matmuls
    around it gain from bf16 (benchmarks/training.py). Its forward alone is faster in bf16."""
    if q.device.type == "cpu" and q.requires_grad and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=causal, dropout_p=dropout)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal, dropout_p=dropout)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.log_scale = cfg.attention_scale == "log"

    def forward(
        self,
        x: torch.Tensor,
        rope: Rope | None,
        cache: LayerCache | None,
        pos: int,
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)
        if rope is not None:  # cached keys are stored rotated
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            cache[0][:, :, pos : pos + T] = k
            cache[1][:, :, pos : pos + T] = v
            k, v = cache[0][:, :, : pos + T], cache[1][:, :, : pos + T]
        # A query block that starts at 0 is causal; a single new token sees everything cached before it.
        assert T == 1 or pos == 0, "multi-token forward passes must start at position 0"
        if self.log_scale:  # the query at position p sees p + 1 keys (padding only ever follows a row's tokens)
            keys_seen = torch.arange(pos + 1, pos + T + 1, device=q.device, dtype=torch.float32)
            q = q * keys_seen.log().to(q.dtype).view(1, 1, T, 1)
        y = attention(q, k, v, causal=T > 1, dropout=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gate = nn.Linear(cfg.n_embd, cfg.ffn_hidden, bias=cfg.bias)
        self.up = nn.Linear(cfg.n_embd, cfg.ffn_hidden, bias=cfg.bias)
        self.down = nn.Linear(cfg.ffn_hidden, cfg.n_embd, bias=cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.norm1 = make_norm(cfg)
        self.attn = Attention(cfg)
        self.norm2 = make_norm(cfg)
        self.mlp = SwiGLU(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope: Rope | None, cache: LayerCache | None, pos: int) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), rope, cache, pos))
        return x + self.drop(self.mlp(self.norm2(x)))


class Transformer(nn.Module):
    base_identity = None  # trained from scratch: tuned from no pretrained model (the Decoder protocol)

    def __init__(self, cfg: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(vocab_size, cfg.n_embd)
        table = position_table(cfg)  # coupled ids; places have one row per position
        rows = table.rows if table is not None else cfg.block_size
        self.pos_emb = None
        if cfg.pos_encoding == "learned":
            self.pos_emb = nn.Embedding(rows, cfg.n_embd)
        elif cfg.pos_encoding == "coupled":  # a block of rows per level: level l's id i has row l * rows + i
            self.pos_emb = nn.Embedding(rows * cfg.position_levels, cfg.n_embd)
            self.register_buffer("level_rows", torch.arange(cfg.position_levels) * rows, persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = make_norm(cfg)
        self.head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        self.head.weight = self.tok_emb.weight  # tied embeddings, as nanoGPT
        if cfg.pos_encoding in ("rope", "coupled_rope"):
            cos, sin = rope_tables(cfg, rows)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("attn.proj.weight", "mlp.down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / (2 * cfg.n_layer) ** 0.5)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward), nanoGPT/PaLM style: 6N + 12 L T d."""
        c = self.cfg
        return 6 * self.num_params() + 12 * c.n_layer * seq_len * c.n_embd

    def leveled(self, positions: torch.Tensor) -> torch.Tensor:
        """`positions` as (B, T, levels), refusing ids of another number of levels than the model's."""
        levels = self.cfg.position_levels
        shaped = positions.unsqueeze(-1) if positions.dim() == 2 else positions
        if shaped.shape[-1] != levels:
            raise ValueError(f"model.position_levels={levels}, but the tokens have {shaped.shape[-1]} ids each")
        return shaped

    def new_cache(self, batch: int, length: int, dtype: torch.dtype | None = None) -> KVCache:
        """An empty cache; `dtype` is the activations' dtype (bf16 under autocast), the weights' by default."""
        weight = self.tok_emb.weight
        return KVCache.empty(self.cfg, batch, length, weight.device, dtype or weight.dtype)

    def forward(
        self, idx: torch.Tensor, cache: KVCache | None = None, pos: int = 0, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits (B, T, vocab) for tokens `idx` (B, T) that start at position `pos`; `positions` (B, T), or
        (B, T, levels) where a token has several: the position ids the task gives them, read only by the coupled
        encodings (which need them)."""
        T = idx.shape[1]
        if pos + T > self.cfg.block_size:
            raise ValueError(f"sequence of {pos + T} tokens exceeds block_size={self.cfg.block_size}")
        encoding = self.cfg.pos_encoding
        if encoding in ("coupled", "coupled_rope") and positions is None:
            raise ValueError(f"model.pos_encoding={encoding} needs the position ids of the tokens")
        if positions is not None:
            positions = self.leveled(positions)
        x = self.tok_emb(idx)
        if encoding == "coupled":
            x = x + self.pos_emb(positions + self.level_rows).sum(2)
        elif self.pos_emb is not None:
            x = x + self.pos_emb(torch.arange(pos, pos + T, device=idx.device))
        x = self.drop(x)
        rope = None
        if encoding == "rope":
            rope = self.rope_cos[pos : pos + T], self.rope_sin[pos : pos + T]
        elif encoding == "coupled_rope":  # (B, 1, T, head_dim / 2): a token's angles, the same in every head
            frequency = torch.arange(self.rope_cos.shape[1], device=idx.device)
            ids = positions[..., frequency % self.cfg.position_levels]  # frequency f turns by level f mod levels
            rope = self.rope_cos[ids, frequency].unsqueeze(1), self.rope_sin[ids, frequency].unsqueeze(1)
        for i, block in enumerate(self.blocks):
            layer_cache = (cache.keys[i], cache.values[i]) if cache is not None else None
            x = block(x, rope, layer_cache, pos)
        return self.head(self.norm(x))


def check(cfg: ModelConfig, tokenizer: Tokenizer) -> None:
    """Refuse, in one line, a shape the decoder cannot have."""
    for key in ("n_layer", "n_head", "n_embd", "ffn_hidden"):
        if cfg[key] < 1:
            raise ConfigError(f"model.{key}={cfg[key]} must be at least 1")
    if cfg.n_embd % cfg.n_head:
        raise ConfigError(f"model.n_embd={cfg.n_embd} is not divisible by model.n_head={cfg.n_head}")
    if cfg.pos_encoding in ("rope", "coupled_rope") and (cfg.n_embd // cfg.n_head) % 2:
        raise ConfigError(f"model.pos_encoding={cfg.pos_encoding} needs an even head width")
    if not 0.0 < cfg.rope_fraction <= 1.0:
        raise ConfigError(f"model.rope_fraction={cfg.rope_fraction} must lie in (0, 1]")
    if cfg.pos_encoding in ("rope", "coupled_rope") and rotated_dims(cfg) == 0:
        raise ConfigError(f"model.rope_fraction={cfg.rope_fraction} rotates none of a head's dimensions")
    if cfg.rope_step <= 0:
        raise ConfigError(f"model.rope_step={cfg.rope_step} must be > 0")
    if not 0.0 <= cfg.dropout < 1.0:
        raise ConfigError(f"model.dropout={cfg.dropout} must lie in [0, 1)")
    if cfg.max_position_offset < 0:
        raise ConfigError(f"model.max_position_offset={cfg.max_position_offset} must be >= 0")
    if cfg.position_levels < 1:
        raise ConfigError(f"model.position_levels={cfg.position_levels} must be at least 1")
    if cfg.pos_encoding == "coupled_rope" and rotated_dims(cfg) // 2 < cfg.position_levels:
        raise ConfigError(
            f"model.position_levels={cfg.position_levels}: coupled_rope needs a rotated frequency per level, and "
            f"model.rope_fraction={cfg.rope_fraction} rotates {rotated_dims(cfg) // 2}"
        )


def position_table(cfg: ModelConfig) -> PositionTable | None:
    """The table of task-given position ids of the coupled encodings (None: the model reads none). A task's ids mostly
    lie below its sequence's token count, which block_size bounds (multiplication's signs a few past it); a training
    offset adds at most max_position_offset. `validate` refuses a run whose ids would pass the table."""
    if cfg.pos_encoding not in ("coupled", "coupled_rope"):
        return None
    return PositionTable(cfg.block_size + cfg.max_position_offset, cfg.max_position_offset, cfg.position_levels)


def build(cfg: ModelConfig, tokenizer: Tokenizer, device: torch.device, precision: str) -> Transformer:
    """Initial weights from torch's RNG, in fp32 whatever the precision (autocast runs the matmuls in bf16)."""
    return Transformer(cfg, tokenizer.vocab_size).to(device)


SPEC = ModelSpec("native", NativeConfig, build, check, position_table)
