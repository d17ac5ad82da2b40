"""A run's trained model, to ask questions: `selfimprove.load(run_dir, voter=0, round=None).answer(prompts)`.

Read-only: the model is built from the run's run.json (its result-determining config) and one checkpoint,
`latest.pt` (the newest weights) or `round_<r>.pt` (kept by si.keep_round_checkpoints; round 0 is the base).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from selfimprove.config import typed
from selfimprove.errors import LoadError, ResumeError
from selfimprove.loop.checkpoint import restore
from selfimprove.loop.context import task_of
from selfimprove.loop.pipeline import saved_run
from selfimprove.loop.train import resolve_device
from selfimprove.models.decoder import Decoder
from selfimprove.models.generate import complete
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.store import RunDir
from selfimprove.tasks import Task


@dataclass
class TrainedModel:
    task: Task
    model: Decoder
    tokenizer: Tokenizer
    device: torch.device
    precision: str  # the run's training.precision, used for decoding as the run did
    config: DictConfig  # the run's config (result-determining keys from run.json, schema defaults elsewhere)
    checkpoint: Path
    stage: str  # the stage that wrote these weights, e.g. train.round008.voter0

    def answer(self, prompts: Sequence[str], batch_size: int = 512, keep_cut: bool = False) -> list[str]:
        """Greedy answers to `prompts`, a list of the task's prompts (e.g. ["0123="] for copy), batched, with the
        KV cache. A prompt the task cannot have written, and an answer the block size cuts before it ends, are
        errors naming the prompt: the model was never asked the one, and the other is no answer (`keep_cut`: the
        cut answer is returned as it is, for a judge such as task.check to find wrong, as an evaluation does)."""
        if isinstance(prompts, str):  # a string is a sequence too: each character would be a prompt
            raise TypeError(f"answer() takes a list of prompts, not one string: answer([{prompts!r}])")
        block = self.model.cfg.block_size
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise TypeError(f"prompt {prompt!r}: a prompt is a string")
            try:
                tokens = len(self.tokenizer.encode(prompt))
            except ValueError as e:
                raise ValueError(f"prompt {prompt!r}: {e} (the task's tokens: {self.task.vocabulary})") from None
            problem = self.task.prompt_error(prompt)
            if problem is not None:
                raise ValueError(f"prompt {prompt!r}: {problem}")
            if tokens + 2 > block:  # BOS + prompt + at least one answer token
                raise ValueError(f"prompt {prompt!r} has {tokens} tokens: model.block_size={block} leaves no room")
        budget = [block] * len(prompts)  # the task's difficulty of a free prompt is unknown: up to the block
        out = complete(
            self.model,
            self.tokenizer,
            prompts,
            budget,
            batch_size,
            self.device,
            self.precision,
            positions=self.task.positions,
        )
        for prompt, label, ended in zip(prompts, out.labels, out.finished, strict=True):
            if not ended and not keep_cut:
                raise ValueError(
                    f"prompt {prompt!r}: the answer {label!r} reached model.block_size={block} before it ended"
                )
        return out.labels


def load(run_dir: str | Path, voter: int = 0, round: int | None = None, device: str = "auto") -> TrainedModel:
    """Voter `voter`'s model of the run in `run_dir`: its newest weights, or after round `round` when the run
    kept its round checkpoints (si.keep_round_checkpoints=true; round 0 is the base model)."""
    run = RunDir(run_dir)
    try:
        saved = saved_run(run.root, f"selfimprove.load({str(run_dir)!r})")
    except ResumeError as e:
        raise LoadError(str(e)) from None
    cfg = typed(_nested(saved["config"]))
    voters = cfg.si.filters.voters
    if not 0 <= voter < voters:
        raise LoadError(f"voter={voter}: the run has voters 0 to {voters - 1}")
    path = run.checkpoint(voter, "latest" if round is None else f"round_{round:03d}")
    if not path.exists():
        kept = sorted(p.stem for p in path.parent.glob("*.pt"))
        raise LoadError(
            f"{path} does not exist (this voter has: {', '.join(kept) or 'no checkpoint'}); round checkpoints are "
            "kept with si.keep_round_checkpoints=true"
        )
    task = task_of(cfg)
    tokenizer = Tokenizer(task.vocabulary)
    torch_device = resolve_device(device)
    model, checkpoint = restore(path, cfg.model, tokenizer, torch_device, cfg.training.precision)
    model.eval()
    return TrainedModel(task, model, tokenizer, torch_device, cfg.training.precision, cfg, path, checkpoint.stage)


def _nested(flat: dict[str, Any]) -> dict[str, Any]:
    """{"model.n_layer": 3} -> {"model": {"n_layer": 3}}."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return tree
