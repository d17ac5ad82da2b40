"""The stages of a self-improvement run, each a function from run-directory state to run-directory state.

A stage returns at once with its stored result when its marker says it is done; otherwise it reads
what it needs from the run directory, writes its outputs atomically, and writes its marker last.
Training stages also checkpoint every `training.checkpoint_every` steps and resume from there.
`pipeline.run` calls them in order in one process; a cluster launcher can call them as separate jobs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from selfimprove import precision, schedule
from selfimprove.data import BaseSource, MixtureSampler, Source, round_mixture
from selfimprove.evaluate import LABEL_STREAM, TRAIN_STREAM, exact_match
from selfimprove.filters import VoterLabels, filter_labels
from selfimprove.generate import complete
from selfimprove.logging import MetricsLogger
from selfimprove.model import Transformer
from selfimprove.store import RunDir
from selfimprove.tasks import Task, get_task
from selfimprove.tokenizer import Tokenizer
from selfimprove.train import NonFiniteLossError, StepLog, make_optimizer, resolve_device, train_steps


def base_stage(voter: int) -> str:
    return f"base.voter{voter}"


def label_stage(round_: int) -> str:
    return f"label.round{round_:03d}"


def train_stage(round_: int, voter: int) -> str:
    return f"train.round{round_:03d}.voter{voter}"


def eval_stage(round_: int) -> str:
    return f"eval.round{round_:03d}"


@dataclass
class Context:
    """What every stage needs, built once per process from the config and the run directory."""

    cfg: DictConfig
    run: RunDir
    task: Task
    tokenizer: Tokenizer
    device: torch.device
    metrics: MetricsLogger

    @classmethod
    def create(cls, cfg: DictConfig, root: str | Path) -> Context:
        run = RunDir(root)
        # Under SLURM, torch would start a thread per core of the node, not per core of the job.
        threads = cfg.training.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0))
        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(cfg.training.device)
        config = OmegaConf.to_container(cfg, resolve=True)
        metrics = MetricsLogger(run.metrics, cfg.logger, config, run_name=f"{run.root.parent.name}/{run.root.name}")
        return cls(cfg, run, get_task(cfg.data.task), Tokenizer(), device, metrics)

    @property
    def voters(self) -> int:
        return self.cfg.si.filters.voters

    def new_model(self) -> Transformer:
        return Transformer(self.cfg.model, self.tokenizer.vocab_size).to(self.device)

    def load_model(self, voter: int) -> Transformer:
        model = self.new_model()
        model.load_state_dict(self.run.load_checkpoint(self.run.checkpoint(voter))["model"])
        return model.eval()


# -- what the markers say ---------------------------------------------------------------------------
def round_targets(run: RunDir, round_: int) -> list[int]:
    return run.result(label_stage(round_))["targets"]


def trained_max(ctx: Context, round_: int) -> int:
    """The longest length trained on after `round_` rounds."""
    longest = ctx.cfg.data.base_max_length
    for r in range(1, round_ + 1):
        longest = max(longest, *round_targets(ctx.run, r))
    return longest


def accuracy_after(run: RunDir, round_: int) -> dict[int, float]:
    result = run.result(eval_stage(round_))
    return dict(zip(result["lengths"], result["accuracy"], strict=True))


# -- training ---------------------------------------------------------------------------------------
def _train(ctx: Context, stage: str, voter: int, round_: int, total: int, sampler_rng_seed: list[int]) -> dict:
    cfg, run = ctx.cfg, ctx.run
    if run.is_done(stage):
        return run.result(stage)
    started = time.perf_counter()
    path = run.checkpoint(voter)
    rng = np.random.default_rng(sampler_rng_seed)
    start = 0
    if round_ == 0 and not path.exists():
        torch.manual_seed(cfg.training.seed * 1000 + voter)  # independently seeded voters
        model = ctx.new_model()
        optimizer = make_optimizer(model, cfg.training, ctx.device)
    else:
        checkpoint = run.load_checkpoint(path)
        model = ctx.new_model()
        model.load_state_dict(checkpoint["model"])
        optimizer = make_optimizer(model, cfg.training, ctx.device)
        optimizer.load_state_dict(checkpoint["optimizer"])  # moments carry over from round to round
        if checkpoint["stage"] == stage:  # this very stage was interrupted: continue where it stopped
            start = checkpoint["step"]
            rng.bit_generator.state = checkpoint["rng"]
            torch.set_rng_state(checkpoint["torch_rng"])

    def save(step: int, target: Path = path) -> None:
        run.save_checkpoint(
            target,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "stage": stage,
                "step": step,
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "model_config": OmegaConf.to_container(cfg.model),
            },
        )

    last: list[StepLog] = []

    def log(entry: StepLog) -> None:
        last[:] = [entry]
        ctx.metrics.log(
            "train",
            stage=stage,
            voter=voter,
            round=round_,
            step=entry.step,
            loss=entry.loss,
            lr=entry.lr,
            tokens_per_s=round(entry.tokens_per_s),
        )

    sampler = MixtureSampler(
        ctx.tokenizer, _sources(ctx, round_), cfg.training.batch_size, rng, cfg.data.loss_on_prompt
    )
    try:
        train_steps(
            model,
            optimizer,
            sampler,
            cfg.training,
            ctx.device,
            start,
            total,
            stage,
            on_log=log,
            on_checkpoint=save,
            progress=cfg.progress,
        )
    except NonFiniteLossError as e:
        raise NonFiniteLossError(f"{e}; {_last_good(run, path)}") from None
    save(total)
    if round_ > 0 and cfg.si.keep_round_checkpoints:
        save(total, run.checkpoint(voter, f"round_{round_:03d}"))
    result = {
        "steps": total,
        "resumed_from_step": start,
        "final_loss": last[0].loss if last else None,
        "precision": precision.resolve(cfg.training.precision, ctx.device),
        "seconds": round(time.perf_counter() - started, 2),
    }
    run.mark_done(stage, result)
    return result


def _last_good(run: RunDir, path: Path) -> str:
    if not path.exists():
        return "no checkpoint was written for this voter yet"
    checkpoint = run.load_checkpoint(path)
    return f"the last good checkpoint is kept: {path} ({checkpoint['stage']}, step {checkpoint['step']})"


def _sources(ctx: Context, round_: int) -> list[tuple[Source, float]]:
    data = ctx.cfg.data
    base = BaseSource(ctx.task, data.base_min_length, data.base_max_length)
    if round_ == 0:
        return [(base, 1.0)]
    rounds = [ctx.run.read_round(r) for r in range(1, round_ + 1)]
    mixing = ctx.cfg.si.mixing
    return round_mixture(base, rounds, mixing.newest_share, mixing.base_share)


def train_base(ctx: Context, voter: int) -> dict:
    """Train voter `voter` from scratch on the base length range."""
    seed = [ctx.cfg.training.seed, TRAIN_STREAM, voter, 0]
    return _train(ctx, base_stage(voter), voter, 0, ctx.cfg.training.base_steps, seed)


def train_round(ctx: Context, round_: int, voter: int) -> dict:
    """Continue training voter `voter` on the mix of base data and the self-labelled rounds so far."""
    seed = [ctx.cfg.training.seed, TRAIN_STREAM, voter, round_]
    return _train(ctx, train_stage(round_, voter), voter, round_, ctx.cfg.training.round_steps, seed)


# -- labelling --------------------------------------------------------------------------------------
def label(ctx: Context, round_: int) -> dict:
    """Every voter labels fresh prompts at the round's target lengths; the filters decide what is kept;
    the oracle audits what was kept (measured, never used to filter)."""
    cfg, run, task = ctx.cfg, ctx.run, ctx.task
    stage = label_stage(round_)
    if run.is_done(stage):
        return run.result(stage)
    started = time.perf_counter()
    targets = schedule.next_lengths(cfg.si, trained_max(ctx, round_ - 1), accuracy_after(ctx.run, round_ - 1))
    rng = np.random.default_rng([cfg.training.seed, LABEL_STREAM, round_])
    share = np.full(len(targets), cfg.si.samples_per_round // len(targets))
    share[: cfg.si.samples_per_round % len(targets)] += 1
    examples = [e for n, count in zip(targets, share, strict=True) for e in task.sample(n, int(count), rng)]
    prompts = [e.prompt for e in examples]
    lengths = [task.length_of(p) for p in prompts]
    expected = [task.answer_length(n) for n in lengths]

    voters = []
    for voter in range(ctx.voters):
        bar = f"{stage}.voter{voter}" if cfg.progress else None
        model = ctx.load_model(voter)
        batch_size = cfg.data.generate_batch_size
        out = complete(model, ctx.tokenizer, prompts, expected, batch_size, ctx.device, cfg.training.precision, bar)
        voters.append(VoterLabels(out.labels, out.finished, out.min_prob))
    verdicts = filter_labels(voters, expected, cfg.si.filters)

    rows = [
        {
            "prompt": e.prompt,
            "label": v.label,
            "length": n,
            "votes": v.votes,
            "confidence": round(v.confidence, 5),
            "correct": v.label == e.answer,
        }
        for e, n, v in zip(examples, lengths, verdicts, strict=True)
        if v.label is not None
    ]
    run.write_round(round_, rows)
    voter_accuracy = [
        float(np.mean([ok and label == e.answer for ok, label, e in zip(v.finished, v.labels, examples, strict=True)]))
        for v in voters
    ]
    result = {
        "round": round_,
        "targets": targets,
        "generated": len(prompts),
        "kept": len(rows),
        "kept_fraction": len(rows) / len(prompts),
        "label_accuracy": float(np.mean([r["correct"] for r in rows])) if rows else None,
        "voter_accuracy": voter_accuracy,  # share of each voter's raw labels that were right
        "seconds": round(time.perf_counter() - started, 2),
    }
    ctx.metrics.log("label", **result)
    run.mark_done(stage, result)
    return result


# -- evaluation -------------------------------------------------------------------------------------
def evaluate(ctx: Context, round_: int) -> dict:
    """Exact match per length, 1 .. trained_max + eval_lookahead, for every voter; reach from the mean."""
    cfg, run = ctx.cfg, ctx.run
    stage = eval_stage(round_)
    if run.is_done(stage):
        return run.result(stage)
    started = time.perf_counter()
    longest = trained_max(ctx, round_)
    lengths = list(range(1, longest + cfg.data.eval_lookahead + 1))
    per_voter = []
    for voter in range(ctx.voters):
        accuracy = exact_match(
            ctx.load_model(voter),
            ctx.tokenizer,
            ctx.task,
            lengths,
            cfg.data.eval_samples,
            cfg.training.seed,
            cfg.data.generate_batch_size,
            ctx.device,
            cfg.training.precision,
            progress=f"{stage}.voter{voter}" if cfg.progress else None,
        )
        per_voter.append([accuracy[n] for n in lengths])
    mean = np.mean(per_voter, axis=0).tolist()
    result: dict[str, Any] = {
        "round": round_,
        "trained_max": longest,
        "lengths": lengths,
        "accuracy": mean,
        "voter_accuracy": per_voter,
        "reach": schedule.reach(dict(zip(lengths, mean, strict=True)), cfg.si.reach_threshold),
        "seconds": round(time.perf_counter() - started, 2),
    }
    ctx.metrics.log("eval", **result)
    run.mark_done(stage, result)
    return result
