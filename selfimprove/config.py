"""Config schemas: one dataclass per Hydra group, under one root schema registered in the ConfigStore.

conf/config.yaml names the root schema first in its defaults list, so a mistyped key, a value of the wrong type or
one not among a field's choices (an Enum) in any group file or override fails at composition with Hydra's own error
(`check_keys` says it in one line for a command's overrides, before composition). A group file sets only what differs
from these defaults. Checks that span several values (a block size too small for the lengths the schedule will reach,
...) live in `validate`.

The core names no task and no model kind: each task declares its parameters (`Task.Parameters`) and each model kind
its settings (`ModelSpec.config`), and the data and model schemas hold every one's, under `data.` and `model.`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from selfimprove.choices import Choice
from selfimprove.errors import ConfigError
from selfimprove.loop.curriculum import Curriculum
from selfimprove.models.decoder import KINDS, position_table
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.tasks import TASKS, get_task

CONF = Path(__file__).resolve().parents[1] / "conf"  # the Hydra config groups, one folder each

# What a key is to a run's results: one word per key, as field metadata (`role`); a key without one determines them.
HOW = "how"  # how a run runs, not what it computes (device, threads, logging, how many rounds): may change on resume
MEASURE = "measure"  # what is measured of the models, not what they are (evaluation sizes and samples)
BASE = "base"  # read by base training only: a run that adopts its base models (base_from) has its source's
SEED = "seed"  # a repetition of one experiment: compare pools runs over it
FILES = "files"  # which files a run keeps: nothing it computes, but a resume may not change it


def role(word: str, default: Any) -> Any:
    """A schema field with its role (HOW, MEASURE, BASE, SEED or FILES)."""
    return field(default=default, metadata={"role": word})


def with_parts(group: str, given: Iterable[type | None]) -> tuple[type, ...]:
    """The bases of a group's schema beyond its core: every task's (or model kind's) own dataclass. Two that declare
    one key declare it alike, or the key would mean two things (refused when the package is imported)."""
    parts = [p for p in given if p is not None]
    seen: dict[str, Any] = {}
    for part in parts:
        for f in dataclasses.fields(part):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            if seen.setdefault(f.name, (f.type, default)) != (f.type, default):
                raise TypeError(f"{group}.{f.name} is declared twice, with another type or default ({part.__name__})")
    return tuple(reversed(parts))  # the first part's fields come first


@dataclass
class ModelCore:
    kind: str = "native"  # a model kind: a module of selfimprove/models that defines a SPEC
    block_size: int = 96  # longest token sequence: BOS + prompt + answer + EOS


@dataclass
class ModelConfig(*with_parts("model", [spec.config for spec in KINDS.values()]), ModelCore):
    """The model group: its kind, block_size, and every kind's own settings (a kind reads only its own)."""


# What a key had before it existed, where that differs from its schema default: a run.json or a checkpoint saved
# before the key was added ran with this value, and is read so (a resume, base_from, a restored model).
BEFORE_THE_KEY: dict[str, Any] = {"model.attention_scale": "none"}


def saved_value(saved: dict[str, Any], key: str, today: Any) -> Any:
    """A dotted key's value in a saved, flattened config: one it lacks had its value from before the key existed
    (BEFORE_THE_KEY), else counts as `today`'s (unchanged)."""
    return saved[key] if key in saved else BEFORE_THE_KEY.get(key, today)


@dataclass
class DataCore:
    task: str = "copy"  # a task (a module of selfimprove/tasks)
    base_min: int = 1  # base difficulties: base_min..base_max (per side for pair difficulties)
    base_max: int = 10
    loss_on_prompt: bool = False  # the seed trained on the whole sequence; default is answer tokens only
    eval_samples: int = role(MEASURE, 1000)  # fresh held-out prompts per difficulty
    eval_lookahead: int = role(MEASURE, 3)  # evaluate this many sizes past the largest trained one
    generate_batch_size: int = role(HOW, 1024)  # prompts per greedy-decoding batch (labelling and evaluation)


@dataclass
class DataConfig(*with_parts("data", [task.Parameters for task in TASKS.values()]), DataCore):
    """The data group: the task, its base set, evaluation, and every task's parameters (a task reads only its own)."""


@dataclass
class OptimConfig:
    lr: float = 1e-3
    min_lr_ratio: float = 0.1  # final lr as a fraction of lr
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping


class LRSchedule(Choice):
    wsd = "wsd"  # warmup-stable-decay
    cosine = "cosine"


class Precision(Choice):
    fp32 = "fp32"
    bf16 = "bf16"  # autocast
    auto = "auto"  # bf16 where the device has fast bf16 (CUDA, CPUs with AMX), fp32 elsewhere


@dataclass
class TrainingConfig:
    device: str = role(HOW, "auto")  # auto (CUDA when present) | cpu | cuda | cuda:N
    seed: int = role(SEED, 0)
    batch_size: int = 128
    # a batch's rows sorted by length and cut into this many micro-batches: less padding (on a 2-core CPU, 4 leave
    # ~9% padding instead of 22-36%, and steps run ~23% faster)
    length_buckets: int = 4
    base_steps: int = role(BASE, 1800)  # enough for the tiny model to copy 1-10 digits
    # seeds a voter's base stage may try: a base scoring below si.collapse_threshold at some base difficulty (it
    # did not learn its base set) is trained again from a new seed; 1: one seed, as before
    base_attempts: int = role(BASE, 1)
    round_steps: int = 300  # the default experiment's calibration is in docs/trials.md
    schedule: LRSchedule = LRSchedule.wsd
    warmup_steps: int = 100
    # a round's warmup (null: warmup_steps, as the base stage); a round goes on from the last one's optimiser moments
    round_warmup_steps: int | None = None
    # a round's peak learning rate (null: optim.lr, as the base stage): a base may want a larger one to leave its
    # loss plateau than a round, which goes on from a trained model
    round_lr: float | None = None
    decay_fraction: float = 0.2  # WSD: share of a stage's steps spent decaying
    optim: OptimConfig = field(default_factory=OptimConfig)
    precision: Precision = Precision.auto  # also decoding's
    compile: bool = False  # on a 2-core CPU its compile time outweighs its gain
    threads: int = role(HOW, 0)  # torch CPU threads; 0 keeps torch's default
    log_every: int = role(HOW, 100)
    checkpoint_every: int = role(HOW, 500)


@dataclass
class FilterConfig:
    length: bool = True  # keep only labels of the task's answer length
    consistency: bool = True  # keep only labels whose parts agree (Task.consistent: a scratchpad and its answer)
    voters: int = 1  # independently seeded models labelling every prompt
    vote_threshold: float = 0.5  # keep the most common label when more than this share of voters gave it
    min_confidence: float = 0.8  # keep labels whose least probable token has at least this probability (0: off)
    # each prompt asked in this many presentations the task declares equivalent (a+b as (a+d)+(b-d); copy with its
    # digits renamed), each voter's labels mapped back to the prompt's: a voter gives a label when at least
    # presentation_threshold of its presentations agree on its vote key (1: only the prompt itself)
    presentations: int = 1
    presentation_threshold: float = 1.0


class NoiseKind(Choice):
    uniform = "uniform"  # random tokens
    drop = "drop"  # 1-3 of the last 3 tokens deleted
    perturb = "perturb"  # digits +-1


@dataclass
class NoiseConfig:
    """Label noise injected into the kept labels (the paper's robustness study); off at rate 0."""

    rate: float = 0.0  # share of kept labels replaced by a noisy one
    kind: NoiseKind = NoiseKind.uniform
    rounds: list[int] = field(default_factory=list)  # the rounds to inject into; empty: every round


@dataclass
class MixingConfig:
    newest_share: float = 0.2  # share of each batch drawn from the newest round's data
    base_share: float = 0.5  # of the rest, the share of fresh base-range data; older rounds get the remainder


class Pace(Choice):
    """How far each round reaches (selfimprove/loop/curriculum.py)."""

    linear = "linear"  # si.length_step steps a round
    accelerated = "accelerated"  # the paper's fast mode: every consecutive step already accurate enough


@dataclass
class SIConfig:
    schedule: Pace = Pace.linear
    rounds: int = role(HOW, 13)  # a run resumed with more goes on, with fewer stops earlier
    length_step: int = 1  # linear: curriculum steps per round (a length; for pairs, one (k, n) & (n, k) pair)
    accelerate_threshold: float = 0.99  # accelerated: extend over steps whose difficulties are at least this accurate
    # move past the newest step only once all its difficulties score at least this; below, the next round labels
    # it again, with the model that trained on it (0: always move on)
    advance_threshold: float = 0.0
    samples_per_round: int = 8000
    filters: FilterConfig = field(default_factory=FilterConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    reach_threshold: float = 0.98  # reach: largest size n with accuracy >= this at every difficulty up to n
    collapse_threshold: float = 0.5  # stop when accuracy at the newest step (or any base difficulty) falls below this
    # say the run is drifting when label accuracy fell this many rounds in a row while the newest step stayed under
    # reach_threshold: its errors feed on themselves, usually rounds before a collapse (0: never; it never stops a run)
    drift_rounds: int = role(HOW, 3)
    keep_round_checkpoints: bool = role(FILES, False)


class LoggerName(Choice):
    none = "none"  # console and metrics.jsonl only
    wandb = "wandb"  # Weights & Biases as well


class WandbMode(Choice):
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.none
    mode: WandbMode | None = None  # wandb's; null: $WANDB_MODE, else offline
    project: str = "selfimprove"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class Config:
    model: ModelConfig = MISSING
    data: DataConfig = MISSING
    training: TrainingConfig = MISSING
    si: SIConfig = MISSING
    logger: LoggerConfig = field(default=MISSING, metadata={"role": HOW})
    resume: str | None = role(HOW, None)  # a run directory to continue
    base_from: str | None = None  # a run directory whose base models this run starts from (no base training)
    base_from_voters: list[int] | None = None  # which of base_from's voters this run's voters adopt (None: 0, 1, ...)
    progress: bool = role(HOW, True)  # tqdm bars


def typed(container: dict[str, Any]) -> Any:
    """A composed config kept as a plain container (a job's, a run.json's), typed again by the schema: a key
    the container lacks takes its value from before the key existed (BEFORE_THE_KEY), else the schema's default."""
    before = OmegaConf.from_dotlist([f"{key}={value}" for key, value in BEFORE_THE_KEY.items()])
    return OmegaConf.merge(OmegaConf.structured(Config), before, container)


@functools.cache
def roles(schema: type = Config, prefix: str = "") -> dict[str, str]:
    """Every dotted key (or group) of the schema that has a role, with it; the one list of what determines
    a run's results, read by resume, base_from and compare."""
    found: dict[str, str] = {}
    hints = typing.get_type_hints(schema)  # the fields' types (their annotations are strings here)
    for f in dataclasses.fields(schema):
        if "role" in f.metadata:
            found[prefix + f.name] = f.metadata["role"]
        elif dataclasses.is_dataclass(hints[f.name]):
            found.update(roles(hints[f.name], f"{prefix}{f.name}."))
    return found


def role_of(key: str) -> str | None:
    """The role of a dotted key: its own, or that of the group it lies under (logger.*: how); None: it
    determines results."""
    known = roles()
    return next((known[k] for k in (key, *_parents(key)) if k in known), None)


def _parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def keys_with(word: str) -> list[str]:
    return [key for key, r in roles().items() if r == word]


def check_overrides(cfg: Any, overrides: list[str]) -> None:
    """Refuse, in one line, a command whose settings would not do what they say, though each value is valid:
    - `si=none` asks for the base alone, but an experiment preset merges after the si group and may set
      `si.rounds` itself (unless the command sets si.rounds as well);
    - a base-training setting given with base_from, whose base models were trained by that run's settings;
    - a task parameter (data.*) the task does not read, with its other parameters;
    - a model setting (model.*) of another model kind.
    run.json would record each as a result-determining setting that nothing read."""
    given = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(overrides)}
    for key in keys_with(BASE):
        if cfg.base_from and key in given:
            raise ConfigError(
                f"{key}={given[key]} has no effect with base_from={cfg.base_from}: its base models are adopted as "
                f"that run trained them (leave {key} out)"
            )
    task = get_task(cfg.data.task, cfg.data)
    for name in sorted({p for cls in TASKS.values() for p in cls.parameters()} - set(task.settings())):
        if f"data.{name}" in given:
            reads = ", ".join(f"data.{s}={cfg.data[s]}" for s in task.settings()) or "no task parameter"
            raise ConfigError(f"data.{name}={given[f'data.{name}']} has no effect: data.task={task.name} reads {reads}")
    kind = cfg.model.kind
    for key, value in given.items():
        name = key.split(".")[1] if key.startswith("model.") else ""
        owners = [k for k, spec in KINDS.items() if name in {f.name for f in dataclasses.fields(spec.config)}]
        if owners and kind not in owners:
            raise ConfigError(
                f"{key}={value} has no effect: model.kind={kind} does not read it (model.kind={owners[0]} does)"
            )
    if given.get("si") == "none" and "si.rounds" not in given and cfg.si.rounds > 0:
        raise ConfigError(
            f"si=none trains and evaluates the base only, but experiment={given.get('experiment')} sets "
            f"si.rounds={cfg.si.rounds} after it: add si.rounds=0 (or leave out si=none to run the rounds)"
        )


def check_keys(overrides: Sequence[str]) -> None:
    """Refuse, in one line and before composition, an override of a key the schema does not have, with or without
    `+` (Hydra's own refusal of `si.round=3` spans several lines and suggests `+si.round=3`, which adds the key to
    the config, where nothing reads it but run.json records it as a result-determining setting), or of a value the
    key's type does not take (`model.norm=batchnorm`: Hydra's refusal spans several lines too)."""
    groups = {p.name for p in CONF.iterdir() if p.is_dir()}
    schema = OmegaConf.structured(
        Config(model=ModelConfig(), data=DataConfig(), training=TrainingConfig(), si=SIConfig(), logger=LoggerConfig())
    )
    for override, text in zip(OverridesParser.create().parse_overrides(list(overrides)), overrides, strict=True):
        key = override.key_or_group
        if key.split("/")[0] in groups or key.split(".")[0] == "hydra":  # a group choice, or Hydra's own
            continue
        *parents, leaf = key.split(".")
        node = OmegaConf.select(schema, ".".join(parents)) if parents else schema
        if OmegaConf.is_dict(node) and leaf in node:
            if not override.is_delete() and not override.is_sweep_override():
                _check_value(node, leaf, override.value(), text)
            continue
        where = ".".join(parents)
        known = list(node.keys()) if OmegaConf.is_dict(node) else []
        near = difflib.get_close_matches(leaf, known, n=1)
        hint = f": did you mean {'.'.join([*parents, near[0]])}?" if near else ""
        raise ConfigError(f"{text}: {where or 'the config'} has no key {leaf!r}{hint}")


def _check_value(node: Any, leaf: str, value: Any, text: str) -> None:
    """`value` set at `leaf` of the schema `node` as composition sets it; refused in one line if it does not fit."""
    try:
        OmegaConf.merge(node, {leaf: value})
    except OmegaConfBaseException as e:
        choices = getattr(node._get_node(leaf), "enum_type", None)  # an Enum field: its choices say it best
        if choices is not None:
            raise ConfigError(f"{text}: not one of {', '.join(c.value for c in choices)}") from None
        raise ConfigError(f"{text}: {str(e).splitlines()[0]}") from None


def register_configs() -> None:
    """Schemas into the ConfigStore, and the resolver conf/config.yaml uses to place resumed runs."""
    if not OmegaConf.has_resolver("if_resume"):
        OmegaConf.register_new_resolver("if_resume", lambda resume, then, otherwise: then if resume else otherwise)
    # One schema for the whole tree: its typed fields check every group file merged into them.
    ConfigStore.instance().store(name="config_schema", node=Config)


def validate(cfg: Any) -> None:
    """Raise ConfigError on the first inconsistent value, before any work starts."""

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    need(cfg.data.task in TASKS, f"data.task={cfg.data.task!r} is not one of {', '.join(sorted(TASKS))}")
    m = cfg.model
    need(m.kind in KINDS, f"model.kind={m.kind!r} is not one of {', '.join(sorted(KINDS))}")
    need(m.block_size >= 1, f"model.block_size={m.block_size} must be at least 1")

    d = cfg.data
    task = get_task(d.task, d)
    problem = task.parameter_error() or task.base_error(d.base_min)
    need(problem is None, str(problem))
    need(d.base_min <= d.base_max, f"data.base_min={d.base_min} > data.base_max={d.base_max}: the base set is empty")
    need(
        d.eval_samples >= 1 and d.generate_batch_size >= 1,
        "data.eval_samples and data.generate_batch_size must be >= 1",
    )
    need(d.eval_lookahead >= 1, f"data.eval_lookahead={d.eval_lookahead} must be at least 1")

    t = cfg.training
    need(t.batch_size >= 1, f"training.batch_size={t.batch_size} must be at least 1")
    need(t.base_steps >= 1, f"training.base_steps={t.base_steps} must be at least 1")
    need(t.base_attempts >= 1, f"training.base_attempts={t.base_attempts} must be at least 1")
    need(t.round_steps >= 1, f"training.round_steps={t.round_steps} must be at least 1")
    need(t.seed >= 0, f"training.seed={t.seed} must be >= 0")
    need(t.warmup_steps >= 0, f"training.warmup_steps={t.warmup_steps} must be >= 0")
    round_key = "warmup_steps" if t.round_warmup_steps is None else "round_warmup_steps"  # what a round warms up by
    round_warmup = getattr(t, round_key)
    need(round_warmup >= 0, f"training.{round_key}={round_warmup} must be >= 0")
    never_peaks = "the learning rate would never reach its peak"
    need(
        t.warmup_steps <= t.base_steps,
        f"training.warmup_steps={t.warmup_steps} is longer than a stage (training.base_steps={t.base_steps}): "
        + never_peaks,
    )
    need(
        cfg.si.rounds == 0 or round_warmup <= t.round_steps,
        f"training.{round_key}={round_warmup} is longer than a stage (training.round_steps={t.round_steps}): "
        + never_peaks,
    )
    need(0.0 <= t.decay_fraction <= 1.0, f"training.decay_fraction={t.decay_fraction} must lie in [0, 1]")
    need(math.isfinite(t.optim.lr) and t.optim.lr > 0, f"training.optim.lr={t.optim.lr} must be positive")
    need(
        t.round_lr is None or (math.isfinite(t.round_lr) and t.round_lr > 0),
        f"training.round_lr={t.round_lr} must be positive (or null: training.optim.lr)",
    )
    need(0.0 <= t.optim.min_lr_ratio <= 1.0, "training.optim.min_lr_ratio must lie in [0, 1]")
    for key in ("weight_decay", "grad_clip"):
        need(getattr(t.optim, key) >= 0, f"training.optim.{key}={getattr(t.optim, key)} must be >= 0")
    for key in ("beta1", "beta2"):
        need(0.0 <= getattr(t.optim, key) < 1.0, f"training.optim.{key}={getattr(t.optim, key)} must lie in [0, 1)")
    need(t.log_every >= 1 and t.checkpoint_every >= 1, "training.log_every/checkpoint_every must be >= 1")
    need(t.threads >= 0, "training.threads must be >= 0")
    need(1 <= t.length_buckets <= t.batch_size, "training.length_buckets must be between 1 and training.batch_size")

    s = cfg.si
    need(s.rounds >= 0, f"si.rounds={s.rounds} must be >= 0")
    need(s.length_step >= 1, f"si.length_step={s.length_step} must be at least 1")
    need(s.samples_per_round >= 1, f"si.samples_per_round={s.samples_per_round} must be at least 1")
    f = s.filters
    need(f.voters >= 1, f"si.filters.voters={f.voters} must be at least 1")
    need(0.0 < f.vote_threshold <= 1.0, f"si.filters.vote_threshold={f.vote_threshold} must lie in (0, 1]")
    need(0.0 <= f.min_confidence <= 1.0, f"si.filters.min_confidence={f.min_confidence} must lie in [0, 1]")
    need(f.presentations >= 1, f"si.filters.presentations={f.presentations} must be at least 1")
    need(
        f.presentations <= task.presentations,
        f"si.filters.presentations={f.presentations}: data.task={d.task} "
        + (f"has {task.presentations} presentations of a prompt" if task.presentations > 1 else "declares no rewrites"),
    )
    need(
        0.0 < f.presentation_threshold <= 1.0,
        f"si.filters.presentation_threshold={f.presentation_threshold} must lie in (0, 1]",
    )
    if cfg.base_from_voters is not None:
        picked = list(cfg.base_from_voters)
        need(bool(cfg.base_from), "base_from_voters needs base_from: the run whose voters it picks")
        need(
            len(picked) == f.voters,
            f"base_from_voters={picked} names {len(picked)} voters, si.filters.voters={f.voters}: one each",
        )
        need(
            min(picked) >= 0 and len(set(picked)) == len(picked),
            f"base_from_voters={picked}: distinct voter numbers >= 0 (a vote needs independent models)",
        )
    noise = s.noise
    need(0.0 <= noise.rate <= 1.0, f"si.noise.rate={noise.rate} must lie in [0, 1]")
    need(all(r >= 1 for r in noise.rounds), f"si.noise.rounds={list(noise.rounds)}: rounds are numbered from 1")
    for key in ("newest_share", "base_share"):
        value = getattr(s.mixing, key)
        need(0.0 <= value <= 1.0, f"si.mixing.{key}={value} must lie in [0, 1]")
    for key in ("reach_threshold", "collapse_threshold", "accelerate_threshold", "advance_threshold"):
        value = getattr(s, key)
        need(0.0 <= value <= 1.0, f"si.{key}={value} must lie in [0, 1]")
    need(s.drift_rounds >= 0, f"si.drift_rounds={s.drift_rounds} must be >= 0 (0: never report drift)")

    furthest = Curriculum.from_config(cfg, task).furthest_size(s.rounds)
    point = task.difficulties.hardest(furthest)
    problem = task.difficulty_error(point)
    need(problem is None, f"{problem}: base {d.base_max} + {s.rounds} rounds of {s.schedule} reach size {furthest}")
    tokens = task.sequence_tokens(point)
    need(
        tokens <= m.block_size,
        f"model.block_size={m.block_size} is too small: {d.task} at size {furthest} "
        f"(base {d.base_max} + {s.rounds} rounds of {s.schedule} + {d.eval_lookahead} eval lookahead) "
        f"needs {tokens} tokens",
    )
    table = position_table(m)
    if table is not None:  # the model reads the position ids the task gives: every id the run will see has a row
        top = task.max_position(point)
        need(top is not None, f"model.pos_encoding={m.pos_encoding} needs position ids: {task.no_positions_reason()}")
        need(
            task.position_levels == table.levels,
            f"model.position_levels={table.levels}, but data.task={d.task} gives {task.position_levels} ids a token",
        )
        need(
            top + table.max_offset < table.rows,
            f"{d.task} at size {furthest} has position ids up to {top}, + model.max_position_offset="
            f"{table.max_offset} in training: past the {table.rows} rows of the table (model.block_size + the offset)",
        )
    KINDS[m.kind].check(m, Tokenizer(task.vocabulary))  # last: a pretrained kind reads its model's files
