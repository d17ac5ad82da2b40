"""Batched greedy decoding with a preallocated KV cache; rows leave the batch at their own EOS."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from selfimprove.models.decoder import Decoder, PositionsOf, position_table
from selfimprove.models.precision import autocast
from selfimprove.models.tokenizer import BOS, EOS, PAD, Tokenizer

# Tokens allowed past the task's answer budget, so that a too-long answer is seen as such
# (and rejected by the length filter) rather than cut off to look right.
LENGTH_SLACK = 2


@dataclass
class Generation:
    tokens: torch.Tensor  # (B, max_new_tokens) emitted tokens, EOS included, PAD after it
    finished: torch.Tensor  # (B,) bool: the row emitted EOS
    min_prob: torch.Tensor  # (B,) probability of the least likely token the row emitted


@torch.inference_mode()
def generate(
    model: Decoder, prompts: torch.Tensor, max_new_tokens: int, positions: torch.Tensor | None = None
) -> Generation:
    """Greedy continuation of equal-length `prompts` (B, T), at most `max_new_tokens` each. `positions`
    (B, T + max_new_tokens): the position ids of the prompts' tokens and of every answer slot, for a model that
    reads them (a `position_table`), or (B, T + max_new_tokens, levels) where a token has several; a token fed back is
    given its slot's ids."""
    B, T = prompts.shape
    device = prompts.device
    tokens = torch.full((B, max_new_tokens), PAD, dtype=torch.long, device=device)
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    min_prob = torch.ones(B, device=device)
    rows = torch.arange(B, device=device)  # batch index of every row still generating
    # Under autocast the cache holds what attention sees: bf16 keys and values (half the memory traffic).
    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
    cache = model.new_cache(B, T + max_new_tokens - 1, dtype)  # the last token is never fed back
    logits = model(prompts, cache, pos=0, positions=None if positions is None else positions[:, :T])[:, -1]
    for step in range(max_new_tokens):
        prob, token = logits.float().softmax(-1).max(-1)
        tokens[rows, step] = token
        min_prob[rows] = torch.minimum(min_prob[rows], prob)
        ended = token == EOS
        finished[rows[ended]] = True
        if step == max_new_tokens - 1:
            break
        if ended.any():
            going = ~ended
            if not going.any():
                break
            rows, token = rows[going], token[going]
            cache.select(going)
        step_positions = None if positions is None else positions[rows, T + step, None]
        logits = model(token[:, None], cache, pos=T + step, positions=step_positions)[:, -1]
    return Generation(tokens, finished, min_prob)


@dataclass
class Completions:
    labels: list[str]  # decoded answers (up to EOS)
    finished: np.ndarray  # bool per prompt: an EOS ended the answer
    min_prob: np.ndarray  # float per prompt


def complete(
    model: Decoder,
    tokenizer: Tokenizer,
    prompts: Sequence[str],
    answer_budget: Sequence[int],
    batch_size: int,
    device: torch.device,
    precision: str = "fp32",
    progress: str | None = None,
    positions: PositionsOf | None = None,
) -> Completions:
    """Greedy answers to `prompts`, batched by prompt length (in tokens) so no padding is ever computed.

    `answer_budget[i]` is the most answer tokens prompt i can have (the task's `answer_tokens`);
    generation stops LENGTH_SLACK tokens past it (plus EOS). `precision` as training's (fp32 | bf16 |
    auto). `progress` names a tqdm bar (None: no bar). `positions`: the task's, read only by a model with a
    position table.
    """
    coupled = position_table(model.cfg) is not None
    was_training = model.training
    model.eval()
    labels = [""] * len(prompts)
    finished = np.zeros(len(prompts), dtype=bool)
    min_prob = np.zeros(len(prompts), dtype=np.float32)
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    prompt_lengths = tokenizer.lengths(prompts).tolist()
    for i, (prompt_len, n) in enumerate(zip(prompt_lengths, answer_budget, strict=True)):
        groups[prompt_len, n].append(i)
    bar = tqdm(total=len(prompts), desc=progress, disable=progress is None, leave=False, dynamic_ncols=True)
    for (prompt_len, n), indices in groups.items():
        max_new = min(n + 1 + LENGTH_SLACK, model.cfg.block_size - prompt_len)
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            texts = [prompts[i] for i in chunk]
            ids = np.concatenate([np.full((len(chunk), 1), BOS), tokenizer.encode_batch(texts)], axis=1)
            place = torch.from_numpy(prompt_positions(positions, texts, max_new)).to(device) if coupled else None
            with autocast(precision, device):
                out = generate(model, torch.from_numpy(ids).to(device), max_new, place)
            tokens = out.tokens.cpu().numpy()
            finished[chunk] = out.finished.cpu().numpy()
            min_prob[chunk] = out.min_prob.cpu().numpy()
            for row, i in enumerate(chunk):
                labels[i] = tokenizer.decode(tokens[row])
            bar.update(len(chunk))
    bar.close()
    model.train(was_training)
    return Completions(labels, finished, min_prob)


def prompt_positions(positions: PositionsOf | None, prompts: Sequence[str], answer_slots: int) -> np.ndarray:
    """The position ids of BOS, the prompt and `answer_slots` answer slots, a row per prompt (of one token length).
    No offset: a label or a score is then a function of the model and the prompt alone, and the ids of the largest
    sizes sit as low in the table as they can, in rows that training's random offsets reached from smaller sizes."""
    rows = [positions(prompt, answer_slots) for prompt in prompts] if positions is not None else [None]
    if any(row is None for row in rows):
        raise ValueError("the model reads the position ids a task gives its tokens: this task gives none")
    return np.array(rows, dtype=np.int64)
