from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from selfimprove.config import (
    DataConfig,
    LoggerConfig,
    ModelConfig,
    SIConfig,
    TrainingConfig,
    register_configs,
    validate,
)
from selfimprove.errors import ConfigError

CONF = str(Path(__file__).resolve().parents[1] / "conf")
GROUPS = {
    group: sorted(p.stem for p in (Path(CONF) / group).glob("*.yaml"))
    for group in ("model", "data", "training", "si", "logger", "experiment")
}

register_configs()


def make(*overrides: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_defaults():
    cfg = make()
    assert cfg.model.n_layer == 3 and cfg.data.task == "copy" and cfg.si.schedule == "linear"
    assert cfg.logger.name == "none" and cfg.training.precision == "auto"
    validate(cfg)


def test_the_schema_defaults_are_what_a_user_gets():
    """Code and tests that build a group from its dataclass run the default experiment's values, not others."""
    cfg = make()
    for group, schema in [
        ("model", ModelConfig),
        ("data", DataConfig),
        ("training", TrainingConfig),
        ("si", SIConfig),
        ("logger", LoggerConfig),
    ]:
        assert OmegaConf.structured(schema) == cfg[group], group


@pytest.mark.parametrize(("group", "option"), [(g, o) for g, options in GROUPS.items() for o in options])
def test_every_group_option_composes_and_validates(group, option, request):
    cfg = make(f"{group}={option}")
    if cfg.model.kind == "hf":  # a pretrained model: validated against the tiny Llama's config and tokenizer
        cfg.model.path = str(request.getfixturevalue("tiny_llama"))
    validate(cfg)


def test_small_is_the_papers_model():
    cfg = make("model=small")
    assert (cfg.model.n_layer, cfg.model.n_head, cfg.model.n_embd) == (6, 6, 384)
    assert cfg.model.pos_encoding == "nope"


def test_paper_experiments():
    copy = make("experiment=paper_copy")
    assert copy.training.batch_size == 1024 and copy.training.optim.lr == 5e-4
    assert copy.training.schedule == "wsd" and copy.si.samples_per_round == 20000
    assert (copy.training.base_steps, copy.training.round_steps, copy.si.rounds) == (2000, 500, 100)
    assert (copy.model.n_layer, copy.model.n_embd, copy.model.ffn_hidden) == (6, 384, 1536)
    addition = make("experiment=paper_reverse_addition")
    assert addition.data.task == "reverse_addition" and addition.data.base_max == 16
    assert (addition.training.base_steps, addition.training.round_steps) == (10000, 1000)
    assert addition.si.samples_per_round == 50000 and addition.si.rounds == 100
    forward = make("experiment=paper_forward_addition")
    assert forward.si.rounds == 60 and forward.si.filters.length
    mult = make("experiment=paper_multiplication")
    assert (mult.data.base_min, mult.data.base_max, mult.si.rounds) == (1, 5, 40)  # 40 steps: (1,6) ... (10,10)
    assert (mult.si.filters.voters, mult.si.filters.vote_threshold) == (5, 0.7)
    maze = make("experiment=paper_maze")
    assert (maze.data.base_max, maze.si.rounds) == (9, 21)  # hops 10 ... 30


def test_pretrained_presets_are_the_papers():
    small = make("experiment=paper_pretrained_1b")
    assert (small.model.kind, small.model.path) == ("hf", "meta-llama/Llama-3.2-1B")
    assert (small.model.lora.r, small.model.lora.alpha) == (64, 128)
    assert list(small.model.lora.target_modules) == [f"{m}_proj" for m in ("q", "k", "v", "o", "gate", "up", "down")]
    assert (small.data.task, small.data.base_min, small.data.base_max) == ("reverse_addition", 1, 16)
    assert (small.si.schedule, small.si.samples_per_round) == ("accelerated", 10000)
    assert (small.training.optim.lr, small.training.base_steps, small.training.round_steps) == (1e-4, 1200, 600)
    assert (small.training.precision, small.training.batch_size) == ("bf16", 128)
    large = make("experiment=paper_pretrained_3b")
    assert (large.model.path, large.model.lora.r, large.model.lora.alpha) == ("meta-llama/Llama-3.2-3B", 32, 128)
    assert (large.training.batch_size, large.training.length_buckets) == (64, 4)  # 16 rows x 4, as the paper
    assert (large.si.samples_per_round, large.training.optim.lr, large.training.round_steps) == (10000, 1e-4, 600)


def test_unknown_key_fails_at_composition():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        make("model.n_layers=4")


def test_wrong_type_fails_at_composition():
    with pytest.raises(ConfigCompositionException):
        make("model.n_layer=three")


def test_unknown_option_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="small"):  # the error lists the valid options
        make("model=huge")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.block_size=32"], "block_size=32 is too small"),
        (["si.rounds=40"], "block_size=96 is too small"),
        (["si.filters.voters=0"], "voters=0 must be at least 1"),
        (["si.filters.vote_threshold=0"], "vote_threshold=0.0 must lie in"),
        (["si.filters.vote_threshold=1.5"], "vote_threshold=1.5 must lie in"),
        (["data.base_min=5", "data.base_max=3"], "the base set is empty"),
        (["data.base_min=0"], "data.base_min=0: copy difficulties start at 1"),
        (["data=maze", "data.nodes=8"], "maze: 19 hops need at least 20 nodes"),
        (["data=maze", "data.maze_difficulty=nodes", "data.base_min=3"], "a maze of data.hops=5 hops has at least 6"),
        (["data=multiplication", "model.block_size=128"], r"multiplication at size 8 \(base 5 \+ 13 rounds.*231"),
        (["si.noise.kind=shuffle"], "si.noise.kind='shuffle' is not one of uniform, drop, perturb"),
        (["si.noise.rate=1.5"], "si.noise.rate=1.5 must lie in"),
        (["si.noise.rounds=[0]"], "rounds are numbered from 1"),
        (["model.n_head=5"], "not divisible"),
        (["model.norm=batchnorm"], "model.norm='batchnorm' is not one of"),
        (["training.optim.lr=-1"], "must be positive"),
        (["data.task=sorting"], "data.task='sorting' is not one of"),
        (["model.n_embd=0"], r"model.n_embd=0 must be at least 1"),  # divisible by n_head, trained zero-wide once
        (["training.optim.grad_clip=-1"], r"grad_clip=-1.0 must be >= 0"),
        (["training.optim.weight_decay=-0.1"], r"weight_decay=-0.1 must be >= 0"),
        (["training.optim.beta1=-0.1"], r"beta1=-0.1 must lie in \[0, 1\)"),
        (["training.optim.beta2=1"], r"beta2=1.0 must lie in \[0, 1\)"),
        (["training.seed=-1"], r"training.seed=-1 must be >= 0"),
        (["training.warmup_steps=1801"], r"warmup_steps=1801 is longer than a stage \(training.base_steps=1800"),
        (["training.warmup_steps=301"], r"warmup_steps=301 is longer than a stage"),  # a round is 300 steps
        (["training.round_warmup_steps=301"], r"round_warmup_steps=301 is longer than a stage \(training.round_st"),
        (["training.round_warmup_steps=-1"], r"training.round_warmup_steps=-1 must be >= 0"),
    ],
)
def test_inconsistent_values_are_one_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(make(*overrides))


def test_warmup_longer_than_a_round_is_fine_without_rounds():
    validate(make("si=none", "training.warmup_steps=301"))  # only the base stage runs: 1800 steps


def test_base_warmup_longer_than_a_round_is_fine_with_a_round_warmup_of_its_own():
    validate(make("training.warmup_steps=301", "training.round_warmup_steps=20"))
