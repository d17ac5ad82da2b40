"""What every stage of a run needs, built once per process: the run directory, the task and its curriculum,
the tokenizer, the device and the metrics log, and the config groups the stages read."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from selfimprove.loop.checkpoint import Checkpoint, restore
from selfimprove.loop.curriculum import Curriculum
from selfimprove.loop.runstate import base_stage
from selfimprove.loop.train import resolve_device
from selfimprove.models.decoder import Decoder, build
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.results.metrics import MetricsLogger
from selfimprove.store import RunDir
from selfimprove.tasks import Task, get_task


def task_of(cfg: DictConfig) -> Task:
    return get_task(cfg.data.task, cfg.data)


def curriculum_of(cfg: DictConfig) -> Curriculum:
    return Curriculum.from_config(cfg, task_of(cfg))


def seed_torch(seed: int, stage: str, voter: int = 0) -> None:
    """Seed torch (CPU and CUDA) from (seed, stage): a stage computes the same whichever process ran the
    stages before it (dropout, weight init). A voter's base stage keeps the seed its initial weights have
    always had, seed * 1000 + voter, so that the runs measured before stay reproducible."""
    if stage == base_stage(voter):
        torch.manual_seed(seed * 1000 + voter)
    else:
        torch.manual_seed(int(np.random.SeedSequence([seed, zlib.crc32(stage.encode())]).generate_state(1)[0]))


@dataclass
class Context:
    cfg: DictConfig  # the whole config: the summary and wandb record it; a stage reads only its groups below
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
    def training(self) -> DictConfig:
        return self.cfg.training

    @property
    def si(self) -> DictConfig:
        return self.cfg.si

    @property
    def data(self) -> DictConfig:
        return self.cfg.data

    @property
    def voters(self) -> int:
        return self.si.filters.voters

    def new_model(self) -> Decoder:
        return build(self.cfg.model, self.tokenizer, self.device, self.training.precision)

    def restore(self, path: Path) -> tuple[Decoder, Checkpoint]:
        return restore(path, self.cfg.model, self.tokenizer, self.device, self.training.precision)

    def load_model(self, voter: int) -> Decoder:
        return self.restore(self.run.checkpoint(voter))[0].eval()
