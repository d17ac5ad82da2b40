"""The stages of a self-improvement run, each a function from run-directory state to run-directory state.

A stage returns at once with its stored result when its marker says it is done; otherwise it reads
what it needs from the run directory, writes its outputs atomically, and writes its marker last.
Training stages also checkpoint every `training.checkpoint_every` steps and resume from there.
`graph` orders them: `pipeline.run` walks that graph in one process, `sweep.py` submits it as jobs.
Every stage seeds torch from (seed, stage), so what it computes does not depend on the process.
"""

from __future__ import annotations

import os
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from selfimprove.config import typed
from selfimprove.errors import IncompatibleCheckpointError, NonFiniteLossError
from selfimprove.loop import base_from, noise
from selfimprove.loop.curriculum import Curriculum
from selfimprove.loop.data import BaseSource, MixtureSampler, Source, round_mixture
from selfimprove.loop.evaluate import LABEL_STREAM, NOISE_STREAM, TRAIN_STREAM, accuracy_per_difficulty, judged
from selfimprove.loop.filters import VoterLabels, filter_labels
from selfimprove.loop.train import StepLog, make_optimizer, peak_lr, resolve_device, train_steps, warmup_steps
from selfimprove.models import precision
from selfimprove.models.decoder import Decoder, build
from selfimprove.models.generate import complete
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.results.metrics import MetricsLogger
from selfimprove.store import RunDir
from selfimprove.tasks import Difficulty, Task, as_difficulty, difficulty_name, get_task


def base_stage(voter: int) -> str:
    return f"base.voter{voter}"


def base_sources(cfg: DictConfig) -> list[tuple[int, str]]:
    """The base_from run's voter (and its base stage) that each voter of this run adopts."""
    picked = cfg.base_from_voters or range(cfg.si.filters.voters)
    return [(voter, base_stage(voter)) for voter in picked]


def label_stage(round_: int) -> str:
    return f"label.round{round_:03d}"


def train_stage(round_: int, voter: int) -> str:
    return f"train.round{round_:03d}.voter{voter}"


def eval_stage(round_: int) -> str:
    return f"eval.round{round_:03d}"


def seed_torch(seed: int, stage: str, voter: int = 0) -> None:
    """Seed torch (CPU and CUDA) from (seed, stage): a stage computes the same whichever process ran the
    stages before it (dropout, weight init). A voter's base stage keeps the seed its initial weights have
    always had, seed * 1000 + voter, so that the runs measured before stay reproducible."""
    if stage == base_stage(voter):
        torch.manual_seed(seed * 1000 + voter)
    else:
        torch.manual_seed(int(np.random.SeedSequence([seed, zlib.crc32(stage.encode())]).generate_state(1)[0]))


def task_of(cfg: DictConfig) -> Task:
    return get_task(cfg.data.task, cfg.data)


def curriculum_of(cfg: DictConfig) -> Curriculum:
    return Curriculum.from_config(cfg, task_of(cfg))


@dataclass
class Context:
    """What every stage needs, built once per process from the config and the run directory."""

    cfg: DictConfig
    run: RunDir
    task: Task
    curriculum: Curriculum
    tokenizer: Tokenizer
    device: torch.device
    metrics: MetricsLogger

    @classmethod
    def create(cls, cfg: DictConfig, root: str | Path, part: str | None = None) -> Context:
        """`part`: the stage a sweep job runs (its own wandb run); None for a whole run in one process."""
        run = RunDir(root)
        # Under SLURM, torch would start a thread per core of the node, not per core of the job.
        threads = cfg.training.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", 0))
        if threads:
            torch.set_num_threads(threads)
        device = resolve_device(cfg.training.device)
        config = OmegaConf.to_container(cfg, resolve=True)
        name = f"{run.root.parent.name}/{run.root.name}"
        metrics = MetricsLogger(run.metrics, cfg.logger, config, name, part)
        task = task_of(cfg)
        return cls(cfg, run, task, Curriculum.from_config(cfg, task), Tokenizer(task.vocabulary), device, metrics)

    @property
    def voters(self) -> int:
        return self.cfg.si.filters.voters

    def new_model(self) -> Decoder:
        return build(self.cfg.model, self.tokenizer, self.device, self.cfg.training.precision)

    def restore(self, path: Path) -> tuple[Decoder, dict[str, Any]]:
        return restore(self.run, path, self.cfg.model, self.tokenizer, self.device, self.cfg.training.precision)

    def load_model(self, voter: int) -> Decoder:
        return self.restore(self.run.checkpoint(voter))[0].eval()


def restore(
    run: RunDir, path: Path, model_cfg: DictConfig, tokenizer: Tokenizer, device: torch.device, precision: str
) -> tuple[Decoder, dict[str, Any]]:
    """A model with the checkpoint's weights, and the checkpoint; refused in one line when the checkpoint
    was written for another vocabulary, model shape or base model."""
    checkpoint = run.load_checkpoint(path)
    # A key the model config gained after the checkpoint was written had there what a saved config lacking it
    # is typed with: its value from before it existed, else its default.
    saved_model = {**OmegaConf.to_container(typed({"model": {}}).model), **checkpoint.get("model_config", {})}
    for what, mine, saved in (
        ("vocabulary", tokenizer.vocabulary, checkpoint.get("vocabulary")),
        ("model", OmegaConf.to_container(model_cfg), saved_model),
    ):
        if saved != mine:
            raise IncompatibleCheckpointError(f"{path} was written for another {what}: {saved} (this run: {mine})")
    model = build(model_cfg, tokenizer, device, precision)
    base = checkpoint.get("base_model")  # None: trained from scratch
    if base != model.base_identity:
        raise IncompatibleCheckpointError(
            f"{path} was tuned from another base model: {base} (this run: {model.base_identity})"
        )
    model.load_state_dict(checkpoint["model"])
    return model, checkpoint


# -- what the markers say ---------------------------------------------------------------------------
def round_targets(run: RunDir, round_: int) -> list[Difficulty]:
    return [as_difficulty(d) for d in run.result(label_stage(round_))["targets"]]


def targets_until(run: RunDir, round_: int) -> list[Difficulty]:
    """Every target of rounds 1..`round_`: with the base set, what has been trained on after `round_`."""
    return [d for r in range(1, round_ + 1) for d in round_targets(run, r)]


def accuracy_after(run: RunDir, round_: int, voter: int | None = None) -> dict[Difficulty, float]:
    """Accuracy at every evaluated difficulty after round `round_`: the voters' mean, or one voter's."""
    result = run.result(eval_stage(round_))
    accuracy = result["accuracy"] if voter is None else result["voter_accuracy"][voter]
    return {as_difficulty(d): a for d, a in zip(result["points"], accuracy, strict=True)}


def base_accuracy(cfg: DictConfig, run: RunDir) -> list[dict[str, float]]:
    """Each voter's accuracy at every base difficulty after base training, by difficulty name."""
    base = curriculum_of(cfg).base
    voters = (accuracy_after(run, 0, voter) for voter in range(cfg.si.filters.voters))
    return [{difficulty_name(d): accuracy[d] for d in base} for accuracy in voters]


def newest_accuracy(cfg: DictConfig, run: RunDir, round_: int) -> tuple[str, float]:
    """The round's newest curriculum step (named for messages) and its lowest accuracy after the round."""
    newest = curriculum_of(cfg).newest(targets_until(run, round_))
    accuracy = accuracy_after(run, round_)
    return ", ".join(map(difficulty_name, newest)), min(accuracy[d] for d in newest)


def global_step(cfg: DictConfig, round_: int, step: int | None = None) -> int:
    """Training steps since the first base step: after round `round_`'s training (0: the base), or `step`
    steps into it (the x axis of every wandb chart)."""
    t = cfg.training
    if step is None:
        return t.base_steps + round_ * t.round_steps
    return step if round_ == 0 else t.base_steps + (round_ - 1) * t.round_steps + step


# -- training ---------------------------------------------------------------------------------------
def _train(
    ctx: Context, stage: str, voter: int, round_: int, total: int, sampler_rng_seed: list[int], mark: bool = True
) -> dict:
    """Train `stage` to `total` steps (continuing an interrupted attempt at it) and return its result; `mark`:
    write its marker (a base attempt's is written once its model has been checked)."""
    cfg, run = ctx.cfg, ctx.run
    if run.is_done(stage):
        return run.result(stage)
    started = time.perf_counter()
    path = run.checkpoint(voter)
    rng = np.random.default_rng(sampler_rng_seed)
    start, window = 0, (0.0, 0)
    seed_torch(cfg.training.seed, stage, voter)  # the base stage's seed also sets the voter's initial weights
    # A base stage starts from new weights unless the checkpoint is its own, interrupted (not an earlier attempt's).
    if round_ == 0 and (not path.exists() or run.load_checkpoint(path)["stage"] != stage):
        model = ctx.new_model()
        optimizer = make_optimizer(model, cfg.training, ctx.device)
    else:
        model, checkpoint = ctx.restore(path)
        optimizer = make_optimizer(model, cfg.training, ctx.device)
        optimizer.load_state_dict(checkpoint["optimizer"])  # moments carry over from round to round
        if checkpoint["stage"] == stage:  # this very stage was interrupted: continue where it stopped
            start, window = checkpoint["step"], tuple(checkpoint.get("loss_window", (0.0, 0)))
            rng.bit_generator.state = checkpoint["rng"]
            torch.set_rng_state(checkpoint["torch_rng"])
            if checkpoint.get("cuda_rng") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(checkpoint["cuda_rng"])

    ctx.metrics.forget(stage, after_step=start)  # what the interrupted attempt logged past its checkpoint

    def save(step: int, window: tuple[float, int] = (0.0, 0), target: Path = path) -> None:
        run.save_checkpoint(
            target,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "stage": stage,
                "step": step,
                "loss_window": window,  # the loss sum and steps since the last log
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if ctx.device.type == "cuda" else None,
                "model_config": OmegaConf.to_container(cfg.model, enum_to_str=True),
                "base_model": model.base_identity,  # what LoRA weights were tuned from; None: from scratch
                "vocabulary": ctx.tokenizer.vocabulary,
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
            global_step=global_step(cfg, round_, entry.step),
            loss=entry.loss,
            lr=entry.lr,
            tokens_per_s=round(entry.tokens_per_s),
        )

    sampler = MixtureSampler(
        ctx.tokenizer,
        _sources(ctx, round_),
        cfg.training.batch_size,
        rng,
        cfg.data.loss_on_prompt,
        cfg.training.length_buckets,
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
            window=window,
            warmup=warmup_steps(cfg.training, round_),
            peak=peak_lr(cfg.training, round_),
        )
    except NonFiniteLossError as e:
        raise NonFiniteLossError(f"{e}; {_last_good(run, path)}") from None
    save(total)
    if cfg.si.keep_round_checkpoints:  # round 0 too: the base models, which base_from can start from
        save(total, target=run.checkpoint(voter, f"round_{round_:03d}"))
    result = {
        "steps": total,
        "resumed_from_step": start,
        "final_loss": last[0].loss if last else None,
        "precision": precision.resolve(cfg.training.precision, ctx.device),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if mark:
        run.mark_done(stage, result)
    return result


def _last_good(run: RunDir, path: Path) -> str:
    if not path.exists():
        return "no checkpoint was written for this voter yet"
    checkpoint = run.load_checkpoint(path)
    return f"the last good checkpoint is kept: {path} ({checkpoint['stage']}, step {checkpoint['step']})"


def _sources(ctx: Context, round_: int) -> list[tuple[Source, float]]:
    base = BaseSource(ctx.task, ctx.curriculum.base)
    if round_ == 0:
        return [(base, 1.0)]
    rounds = [ctx.run.read_round(r) for r in range(1, round_ + 1)]
    mixing = ctx.cfg.si.mixing
    return round_mixture(base, rounds, mixing.newest_share, mixing.base_share)


def base_attempt_stage(voter: int, attempt: int) -> str:
    """The stage attempt `attempt` (from 0) at a voter's base trains as: the first is the base stage itself, seeded
    as always; a later one is named by its number as the console counts it (`base.voter1.attempt2` is the
    second), so it has its own seed (seed_torch) and its own training log."""
    return base_stage(voter) if attempt == 0 else f"{base_stage(voter)}.attempt{attempt + 1}"


def _base_sampler_seed(cfg: DictConfig, voter: int, attempt: int) -> list[int]:
    """The base-data stream of an attempt at a voter's base: the first attempt's is the one a base has always had."""
    return [cfg.training.seed, TRAIN_STREAM, voter, 0] + ([attempt] if attempt else [])


def base_learnt(accuracy: Mapping[Any, float], threshold: float) -> bool:
    """A base model learnt its base set: its accuracy at every base difficulty is at least `threshold`
    (si.collapse_threshold: below it, the run stops at round 0)."""
    return min(accuracy.values()) >= threshold


def train_base(ctx: Context, voter: int) -> dict:
    """Train voter `voter` from scratch on the base length range, or adopt its base model from `base_from`.
    With training.base_attempts > 1, a base that did not learn its base set is trained again from a new seed:
    whether a small model leaves its loss plateau in a CPU budget can depend on the seed alone."""
    cfg, run, stage = ctx.cfg, ctx.run, base_stage(voter)
    if cfg.base_from:
        source_voter, source_stage = base_sources(cfg)[voter]
        return base_from.adopt(run, cfg.base_from, voter, stage, source_voter, source_stage)
    attempts = cfg.training.base_attempts
    if attempts == 1:  # nothing to check it for: the round-0 evaluation judges it
        return _train(ctx, stage, voter, 0, cfg.training.base_steps, _base_sampler_seed(cfg, voter, 0))
    if run.is_done(stage):
        return run.result(stage)
    tried = [_base_attempt(ctx, voter, 0)]
    while not tried[-1]["learnt"] and len(tried) < attempts:
        tried.append(_base_attempt(ctx, voter, len(tried)))
    # The voter's checkpoints are the last attempt's: recorded as the base stage's, as a one-attempt base is.
    for path in (run.checkpoint(voter), run.checkpoint(voter, "round_000")):
        if path.exists():
            run.save_checkpoint(path, {**run.load_checkpoint(path), "stage": stage})
    result = {
        **{k: v for k, v in tried[-1].items() if k not in ("accuracy", "learnt")},
        "attempts": [{"accuracy": t["accuracy"], "learnt": t["learnt"]} for t in tried],
        "seconds": round(sum(t["seconds"] for t in tried), 2),
    }
    run.mark_done(stage, result)
    return result


def _base_attempt(ctx: Context, voter: int, attempt: int) -> dict:
    """Train attempt `attempt` at a voter's base and check it on the base set with the round-0 evaluation's
    prompts; its result, with that accuracy, is marked done as `<its stage>.checked`."""
    cfg, run = ctx.cfg, ctx.run
    marker = f"{base_attempt_stage(voter, attempt)}.checked"
    if run.is_done(marker):
        return run.result(marker)
    seed = _base_sampler_seed(cfg, voter, attempt)
    trained = _train(ctx, base_attempt_stage(voter, attempt), voter, 0, cfg.training.base_steps, seed, mark=False)
    started = time.perf_counter()
    accuracy = accuracy_per_difficulty(
        ctx.load_model(voter),
        ctx.tokenizer,
        ctx.task,
        ctx.curriculum.base,
        cfg.data.eval_samples,
        cfg.training.seed,
        cfg.data.generate_batch_size,
        ctx.device,
        cfg.training.precision,
    )
    learnt = base_learnt(accuracy, cfg.si.collapse_threshold)
    if not learnt:
        scores = ", ".join(f"{difficulty_name(d)}: {a:.3f}" for d, a in accuracy.items())
        again = "training it again from a new seed" if attempt + 1 < cfg.training.base_attempts else "no attempts left"
        print(
            f"voter {voter}'s base (attempt {attempt + 1} of {cfg.training.base_attempts}) did not learn its"
            f" base set (accuracy {scores}): {again}",
            flush=True,
        )
    result = {
        **trained,
        "accuracy": {difficulty_name(d): a for d, a in accuracy.items()},
        "learnt": learnt,
        "seconds": round(trained["seconds"] + time.perf_counter() - started, 2),
    }
    run.mark_done(marker, result)
    return result


def train_round(ctx: Context, round_: int, voter: int) -> dict:
    """Continue training voter `voter` on the mix of base data and the self-labelled rounds so far."""
    seed = [ctx.cfg.training.seed, TRAIN_STREAM, voter, round_]
    return _train(ctx, train_stage(round_, voter), voter, round_, ctx.cfg.training.round_steps, seed)


# -- labelling --------------------------------------------------------------------------------------
def label(ctx: Context, round_: int) -> dict:
    """Every voter labels fresh prompts at the round's targets; the filters decide what is kept; optional
    noise is injected into what is kept; the task's `check` audits what is stored (measured, never used to
    filter)."""
    cfg, run, task = ctx.cfg, ctx.run, ctx.task
    stage = label_stage(round_)
    if run.is_done(stage):
        return run.result(stage)
    started = time.perf_counter()
    ctx.metrics.forget(stage)  # a run killed after logging and before the marker logged it once already
    seed_torch(cfg.training.seed, stage)
    targets = ctx.curriculum.next_targets(targets_until(run, round_ - 1), accuracy_after(run, round_ - 1))
    rng = np.random.default_rng([cfg.training.seed, LABEL_STREAM, round_])
    share = np.full(len(targets), cfg.si.samples_per_round // len(targets))
    share[: cfg.si.samples_per_round % len(targets)] += 1
    difficulties = [d for d, count in zip(targets, share, strict=True) for _ in range(count)]
    prompts = [e.prompt for d, count in zip(targets, share, strict=True) for e in task.sample(d, int(count), rng)]
    budget = [task.answer_tokens(d) for d in difficulties]

    voters = []
    for voter in range(ctx.voters):
        bar = f"{stage}.voter{voter}" if cfg.progress else None
        model = ctx.load_model(voter)
        batch_size = cfg.data.generate_batch_size
        out = complete(model, ctx.tokenizer, prompts, budget, batch_size, ctx.device, cfg.training.precision, bar)
        voters.append(VoterLabels(out.labels, out.finished, out.min_prob))
    verdicts = filter_labels(voters, difficulties, task, cfg.si.filters)
    kept = [i for i, v in enumerate(verdicts) if v.label is not None]
    labels = [verdicts[i].label for i in kept]
    noisy = [False] * len(kept)
    if noise.applies(cfg.si.noise, round_):
        noise_rng = np.random.default_rng([cfg.training.seed, NOISE_STREAM, round_])
        labels, noisy = noise.inject(labels, cfg.si.noise, ctx.tokenizer, noise_rng)

    rows = [
        {
            "prompt": prompts[i],
            "label": label,
            "difficulty": difficulties[i],
            "votes": verdicts[i].votes,
            "confidence": round(verdicts[i].confidence, 5),
            "correct": task.check(prompts[i], label),
            "noisy": flag,
        }
        for i, label, flag in zip(kept, labels, noisy, strict=True)
    ]
    run.write_round(round_, rows)
    voter_accuracy = [float(judged(task, prompts, v.labels, v.finished).mean()) for v in voters]
    result = {
        "round": round_,
        "targets": targets,
        "generated": len(prompts),
        "kept": len(rows),
        "kept_fraction": len(rows) / len(prompts),
        "noisy": sum(noisy),
        "label_accuracy": float(np.mean([r["correct"] for r in rows])) if rows else None,
        "voter_accuracy": voter_accuracy,  # share of each voter's raw labels that were right
        "seconds": round(time.perf_counter() - started, 2),
    }
    ctx.metrics.log("label", stage=stage, global_step=global_step(cfg, round_ - 1), **result)
    run.mark_done(stage, result)
    return result


# -- evaluation -------------------------------------------------------------------------------------
def evaluate(ctx: Context, round_: int) -> dict:
    """Accuracy (the task's `check`) at every curriculum evaluation point, for every voter; the reach
    from their mean."""
    cfg, run = ctx.cfg, ctx.run
    stage = eval_stage(round_)
    if run.is_done(stage):
        return run.result(stage)
    started = time.perf_counter()
    ctx.metrics.forget(stage)  # a run killed after logging and before the marker logged it once already
    seed_torch(cfg.training.seed, stage)
    trained = targets_until(run, round_)
    points = ctx.curriculum.eval_difficulties(trained)
    per_voter = []
    for voter in range(ctx.voters):
        accuracy = accuracy_per_difficulty(
            ctx.load_model(voter),
            ctx.tokenizer,
            ctx.task,
            points,
            cfg.data.eval_samples,
            cfg.training.seed,
            cfg.data.generate_batch_size,
            ctx.device,
            cfg.training.precision,
            progress=f"{stage}.voter{voter}" if cfg.progress else None,
        )
        per_voter.append([accuracy[d] for d in points])
    mean = np.mean(per_voter, axis=0).tolist()
    result: dict[str, Any] = {
        "round": round_,
        "trained_size": ctx.curriculum.largest_size(trained),
        "points": points,
        "accuracy": mean,
        "voter_accuracy": per_voter,
        "reach": ctx.curriculum.reach(dict(zip(points, mean, strict=True)), cfg.si.reach_threshold),
        "seconds": round(time.perf_counter() - started, 2),
    }
    ctx.metrics.log("eval", stage=stage, global_step=global_step(cfg, round_), **result)
    run.mark_done(stage, result)
    return result
