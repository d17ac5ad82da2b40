"""The four stages of a self-improvement run, each a function from run-directory state to run-directory state:
train a voter's base, label a round, train a voter on a round, evaluate.

A stage returns at once with its stored result when its marker says it is done; otherwise it reads
what it needs from the run directory, writes its outputs atomically, and writes its marker last.
Training stages also checkpoint every `training.checkpoint_every` steps and resume from there.
`graph` orders them: `pipeline.run` walks that graph in one process, `sweep.py` submits it as jobs.
Every stage seeds torch from (seed, stage), so what it computes does not depend on the process.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from selfimprove.errors import NonFiniteLossError
from selfimprove.loop import base_from, noise
from selfimprove.loop.checkpoint import Checkpoint
from selfimprove.loop.context import Context, seed_torch
from selfimprove.loop.data import BaseSource, MixtureSampler, Source, round_mixture
from selfimprove.loop.evaluate import (
    LABEL_STREAM,
    NOISE_STREAM,
    PRESENT_STREAM,
    TRAIN_STREAM,
    accuracy_per_difficulty,
    judged,
)
from selfimprove.loop.filters import VoterLabels, agree, filter_labels
from selfimprove.loop.runstate import (
    accuracy_after,
    base_attempt_stage,
    base_stage,
    eval_stage,
    global_step,
    label_stage,
    targets_until,
    train_stage,
)
from selfimprove.loop.train import StepLog, make_optimizer, peak_lr, train_steps, warmup_steps
from selfimprove.models import precision
from selfimprove.models.decoder import position_table
from selfimprove.models.generate import complete
from selfimprove.tasks import difficulty_name


def base_sources(cfg: DictConfig) -> list[tuple[int, str]]:
    """The base_from run's voter (and its base stage) that each voter of this run adopts."""
    picked = cfg.base_from_voters or range(cfg.si.filters.voters)
    return [(voter, base_stage(voter)) for voter in picked]


# -- training ---------------------------------------------------------------------------------------
def _train(
    ctx: Context, stage: str, voter: int, round_: int, total: int, sampler_rng_seed: list[int], mark: bool = True
) -> dict:
    """Train `stage` to `total` steps (continuing an interrupted attempt at it) and return its result; `mark`:
    write its marker (a base attempt's is written once its model has been checked)."""
    run, training = ctx.run, ctx.training
    if run.is_done(stage):
        return run.result(stage)
    started = time.perf_counter()
    path = run.checkpoint(voter)
    rng = np.random.default_rng(sampler_rng_seed)
    start, window = 0, (0.0, 0)
    seed_torch(training.seed, stage, voter)  # the base stage's seed also sets the voter's initial weights
    # A base stage starts from new weights unless the checkpoint is its own, interrupted (not an earlier attempt's).
    if round_ == 0 and (not path.exists() or Checkpoint.load(path).stage != stage):
        model = ctx.new_model()
        optimizer = make_optimizer(model, training, ctx.device)
    else:
        model, checkpoint = ctx.restore(path)
        optimizer = make_optimizer(model, training, ctx.device)
        optimizer.load_state_dict(checkpoint.optimizer)  # moments carry over from round to round
        if checkpoint.stage == stage:  # this very stage was interrupted: continue where it stopped
            start, window = checkpoint.step, checkpoint.loss_window
            rng.bit_generator.state = checkpoint.rng
            torch.set_rng_state(checkpoint.torch_rng)
            if checkpoint.cuda_rng is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(checkpoint.cuda_rng)

    ctx.metrics.forget(stage, after_step=start)  # what the interrupted attempt logged past its checkpoint

    def save(step: int, window: tuple[float, int] = (0.0, 0), target: Path = path) -> None:
        Checkpoint(
            model=model.state_dict(),
            stage=stage,
            step=step,
            optimizer=optimizer.state_dict(),
            loss_window=window,
            rng=rng.bit_generator.state,
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if ctx.device.type == "cuda" else None,
            model_config=OmegaConf.to_container(ctx.cfg.model, enum_to_str=True),
            base_model=model.base_identity,
            vocabulary=ctx.tokenizer.vocabulary,
        ).save(target)

    last: list[StepLog] = []

    def log(entry: StepLog) -> None:
        last[:] = [entry]
        ctx.metrics.log(
            "train",
            stage=stage,
            voter=voter,
            round=round_,
            step=entry.step,
            global_step=global_step(training, round_, entry.step),
            loss=entry.loss,
            lr=entry.lr,
            tokens_per_s=round(entry.tokens_per_s),
        )

    table = position_table(ctx.cfg.model)
    sampler = MixtureSampler(
        ctx.tokenizer,
        _sources(ctx, round_),
        training.batch_size,
        rng,
        ctx.data.loss_on_prompt,
        training.length_buckets,
        positions=None if table is None else ctx.task.positions,
        max_offset=0 if table is None else table.max_offset,
    )
    try:
        train_steps(
            model,
            optimizer,
            sampler,
            training,
            ctx.device,
            start,
            total,
            stage,
            on_log=log,
            on_checkpoint=save,
            progress=ctx.cfg.progress,
            window=window,
            warmup=warmup_steps(training, round_),
            peak=peak_lr(training, round_),
        )
    except NonFiniteLossError as e:
        raise NonFiniteLossError(f"{e}; {_last_good(path)}") from None
    save(total)
    if ctx.si.keep_round_checkpoints:  # round 0 too: the base models, which base_from can start from
        save(total, target=run.checkpoint(voter, f"round_{round_:03d}"))
    result = {
        "steps": total,
        "resumed_from_step": start,
        "final_loss": last[0].loss if last else None,
        "precision": precision.resolve(training.precision, ctx.device),
        "seconds": round(time.perf_counter() - started, 2),
    }
    if mark:
        run.mark_done(stage, result)
    return result


def _last_good(path: Path) -> str:
    if not path.exists():
        return "no checkpoint was written for this voter yet"
    checkpoint = Checkpoint.load(path)
    return f"the last good checkpoint is kept: {path} ({checkpoint.stage}, step {checkpoint.step})"


def _sources(ctx: Context, round_: int) -> list[tuple[Source, float]]:
    base = BaseSource(ctx.task, ctx.curriculum.base)
    if round_ == 0:
        return [(base, 1.0)]
    rounds = [ctx.run.read_round(r) for r in range(1, round_ + 1)]
    return round_mixture(base, rounds, ctx.si.mixing.newest_share, ctx.si.mixing.base_share)


def _base_sampler_seed(seed: int, voter: int, attempt: int) -> list[int]:
    """The base-data stream of an attempt at a voter's base: the first attempt's is the one a base has always had."""
    return [seed, TRAIN_STREAM, voter, 0] + ([attempt] if attempt else [])


def base_learnt(accuracy: Mapping[Any, float], threshold: float) -> bool:
    """A base model learnt its base set: its accuracy at every base difficulty is at least `threshold`
    (si.collapse_threshold: below it, the run stops at round 0)."""
    return min(accuracy.values()) >= threshold


def train_base(ctx: Context, voter: int) -> dict:
    """Train voter `voter` from scratch on the base length range, or adopt its base model from `base_from`.
    With training.base_attempts > 1, a base that did not learn its base set is trained again from a new seed:
    whether a small model leaves its loss plateau in a CPU budget can depend on the seed alone."""
    run, training, stage = ctx.run, ctx.training, base_stage(voter)
    if ctx.cfg.base_from:
        source_voter, source_stage = base_sources(ctx.cfg)[voter]
        return base_from.adopt(run, ctx.cfg.base_from, voter, stage, source_voter, source_stage)
    if training.base_attempts == 1:  # nothing to check it for: the round-0 evaluation judges it
        return _train(ctx, stage, voter, 0, training.base_steps, _base_sampler_seed(training.seed, voter, 0))
    if run.is_done(stage):
        return run.result(stage)
    tried = [_base_attempt(ctx, voter, 0)]
    while not tried[-1]["learnt"] and len(tried) < training.base_attempts:
        tried.append(_base_attempt(ctx, voter, len(tried)))
    # The voter's checkpoints are the last attempt's: recorded as the base stage's, as a one-attempt base is.
    for path in (run.checkpoint(voter), run.checkpoint(voter, "round_000")):
        if path.exists():
            Checkpoint.load(path).restarted(stage).save(path)
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
    run, training, data = ctx.run, ctx.training, ctx.data
    marker = f"{base_attempt_stage(voter, attempt)}.checked"
    if run.is_done(marker):
        return run.result(marker)
    seed = _base_sampler_seed(training.seed, voter, attempt)
    trained = _train(ctx, base_attempt_stage(voter, attempt), voter, 0, training.base_steps, seed, mark=False)
    started = time.perf_counter()
    accuracy = accuracy_per_difficulty(
        ctx.load_model(voter),
        ctx.tokenizer,
        ctx.task,
        ctx.curriculum.base,
        data.eval_samples,
        training.seed,
        data.generate_batch_size,
        ctx.device,
        training.precision,
    )
    learnt = base_learnt(accuracy, ctx.si.collapse_threshold)
    if not learnt:
        scores = ", ".join(f"{difficulty_name(d)}: {a:.3f}" for d, a in accuracy.items())
        again = "training it again from a new seed" if attempt + 1 < training.base_attempts else "no attempts left"
        print(
            f"voter {voter}'s base (attempt {attempt + 1} of {training.base_attempts}) did not learn its"
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
    seed = [ctx.training.seed, TRAIN_STREAM, voter, round_]
    return _train(ctx, train_stage(round_, voter), voter, round_, ctx.training.round_steps, seed)


# -- labelling --------------------------------------------------------------------------------------
def label(ctx: Context, round_: int) -> dict:
    """Every voter labels fresh prompts at the round's targets; the filters decide what is kept; optional
    noise is injected into what is kept; the task's `check` audits what is stored (measured, never used to
    filter)."""
    run, task, training, si = ctx.run, ctx.task, ctx.training, ctx.si
    stage = label_stage(round_)
    if run.is_done(stage):
        return run.result(stage)
    started = time.perf_counter()
    ctx.metrics.forget(stage)  # a run killed after logging and before the marker logged it once already
    seed_torch(training.seed, stage)
    targets = ctx.curriculum.next_targets(targets_until(run, round_ - 1), accuracy_after(run, round_ - 1))
    rng = np.random.default_rng([training.seed, LABEL_STREAM, round_])
    share = np.full(len(targets), si.samples_per_round // len(targets))
    share[: si.samples_per_round % len(targets)] += 1
    difficulties = [d for d, count in zip(targets, share, strict=True) for _ in range(count)]
    prompts = [e.prompt for d, count in zip(targets, share, strict=True) for e in task.sample(d, int(count), rng)]

    filters = si.filters
    # Every voter answers the same presentations; presentation 0 is the prompts themselves.
    present_rng = np.random.default_rng([training.seed, PRESENT_STREAM, round_])
    shown = [[task.present(p, j, present_rng) for p in prompts] for j in range(filters.presentations)]
    # each presentation's difficulties: a rewrite of another difficulty is budgeted and checked at its own
    asked_at = [
        [d if v.difficulty is None else v.difficulty for v, d in zip(p, difficulties, strict=True)] for p in shown
    ]
    voters, answers, agreeing = [], [], np.zeros(len(prompts), dtype=np.int64)
    for voter in range(ctx.voters):
        model = ctx.load_model(voter)
        views = []
        for j, presentation in enumerate(shown):
            bar = f"{stage}.voter{voter}" + (f".presentation{j}" if j else "") if ctx.cfg.progress else None
            out = complete(
                model,
                ctx.tokenizer,
                [view.prompt for view in presentation],
                [task.answer_tokens(d) for d in asked_at[j]],
                ctx.data.generate_batch_size,
                ctx.device,
                training.precision,
                bar,
                positions=task.positions,
            )
            back = [view.back(label) for view, label in zip(presentation, out.labels, strict=True)]
            key_only = any(view.difficulty is not None for view in presentation)
            views.append(VoterLabels(back, out.finished, out.min_prob, key_only))
        answers.append(views[0])
        if len(views) == 1:
            voters.append(views[0])
            continue
        agreed, counts = agree(views, asked_at, task, filters)
        voters.append(agreed)
        agreeing += counts
    verdicts = filter_labels(voters, difficulties, task, filters)
    kept = [i for i, v in enumerate(verdicts) if v.label is not None]
    labels = [verdicts[i].label for i in kept]
    noisy = [False] * len(kept)
    if noise.applies(si.noise, round_):
        noise_rng = np.random.default_rng([training.seed, NOISE_STREAM, round_])
        labels, noisy = noise.inject(labels, si.noise, ctx.tokenizer, noise_rng)

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
    if filters.presentations > 1:  # the share of all voters' presentations that gave the kept label's vote key
        for row, i in zip(rows, kept, strict=True):
            row["agreement"] = round(int(agreeing[i]) / (ctx.voters * filters.presentations), 5)
    run.write_round(round_, rows)
    voter_accuracy = [float(judged(task, prompts, v.labels, v.finished).mean()) for v in answers]
    result = {
        "round": round_,
        "targets": targets,
        "generated": len(prompts),
        "kept": len(rows),
        "kept_fraction": len(rows) / len(prompts),
        "noisy": sum(noisy),
        "label_accuracy": float(np.mean([r["correct"] for r in rows])) if rows else None,
        "voter_accuracy": voter_accuracy,  # share of each voter's raw labels to the prompts themselves that were right
        "seconds": round(time.perf_counter() - started, 2),
    }
    ctx.metrics.log("label", stage=stage, global_step=global_step(training, round_ - 1), **result)
    run.mark_done(stage, result)
    return result


# -- evaluation -------------------------------------------------------------------------------------
def evaluate(ctx: Context, round_: int) -> dict:
    """Accuracy (the task's `check`) at every difficulty the curriculum evaluates, for every voter; the reach
    from their mean."""
    run, training = ctx.run, ctx.training
    stage = eval_stage(round_)
    if run.is_done(stage):
        return run.result(stage)
    started = time.perf_counter()
    ctx.metrics.forget(stage)  # a run killed after logging and before the marker logged it once already
    seed_torch(training.seed, stage)
    trained = targets_until(run, round_)
    evaluated = ctx.curriculum.eval_difficulties(trained)
    per_voter = []
    for voter in range(ctx.voters):
        accuracy = accuracy_per_difficulty(
            ctx.load_model(voter),
            ctx.tokenizer,
            ctx.task,
            evaluated,
            ctx.data.eval_samples,
            training.seed,
            ctx.data.generate_batch_size,
            ctx.device,
            training.precision,
            progress=f"{stage}.voter{voter}" if ctx.cfg.progress else None,
        )
        per_voter.append([accuracy[d] for d in evaluated])
    mean = np.mean(per_voter, axis=0).tolist()
    result: dict[str, Any] = {
        "round": round_,
        "trained_size": ctx.curriculum.largest_size(trained),
        "points": evaluated,  # the difficulties evaluated (the key old runs have)
        "accuracy": mean,
        "voter_accuracy": per_voter,
        "reach": ctx.curriculum.reach(dict(zip(evaluated, mean, strict=True)), ctx.si.reach_threshold),
        "seconds": round(time.perf_counter() - started, 2),
    }
    ctx.metrics.log("eval", stage=stage, global_step=global_step(training, round_), **result)
    run.mark_done(stage, result)
    return result
