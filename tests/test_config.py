import dataclasses
import enum
import json
import typing
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from selfimprove.config import (
    Config,
    DataConfig,
    LoggerConfig,
    ModelConfig,
    SIConfig,
    TrainingConfig,
    check_keys,
    register_configs,
    validate,
    with_parts,
)
from selfimprove.errors import ConfigError, IncompatibleCheckpointError
from selfimprove.loop.checkpoint import Checkpoint, restore
from selfimprove.models.decoder import build
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.tasks import TASKS

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


def test_unknown_key_fails_at_composition():
    with pytest.raises((ConfigCompositionException, ConfigKeyError)):
        make("model.n_layers=4")


def test_wrong_type_fails_at_composition():
    with pytest.raises(ConfigCompositionException):
        make("model.n_layer=three")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("si.noise.kind=shuffle", "si.noise.kind=shuffle: not one of uniform, drop, perturb"),
        ("model.norm=batchnorm", "model.norm=batchnorm: not one of layernorm, rmsnorm"),
        ("data.maze_difficulty=edges", "data.maze_difficulty=edges: not one of hops, nodes, path"),
        ("logger.mode=loud", "logger.mode=loud: not one of online, offline, disabled"),
        ("model.n_layer=three", "model.n_layer=three: Value 'three' of type 'str' could not be converted to Integer"),
    ],
)
def test_a_value_the_schema_does_not_take_fails_at_composition_and_before_it_in_one_line(override, message):
    with pytest.raises(ConfigCompositionException):
        make(override)
    with pytest.raises(ConfigError) as refused:
        check_keys([override])
    assert str(refused.value) == message


def test_values_the_schema_takes_pass_the_check_before_composition():
    check_keys(["model.norm=rmsnorm", "logger.mode=null", "model.n_layer=2,4", "training.optim.lr=${oc.env:LR,1e-3}"])


def enum_fields(schema: type):
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        for kind in typing.get_args(hints[f.name]) or (hints[f.name],):
            if isinstance(kind, type) and issubclass(kind, enum.Enum):
                yield kind
            elif dataclasses.is_dataclass(kind):
                yield from enum_fields(kind)


def test_a_choice_is_written_as_the_string_a_user_types():
    """OmegaConf reads an Enum field by its member's name; run.json, checkpoints and messages show its value."""
    kinds = list(enum_fields(Config))
    assert len(kinds) >= 8
    for kind in kinds:
        assert all(member.name == member.value and repr(member) == repr(member.value) for member in kind), kind
    assert json.dumps(OmegaConf.to_container(make("data=maze").data)["maze_difficulty"]) == '"hops"'


def test_every_task_parameter_is_a_data_key_whatever_the_task():
    """run.json records the same keys for every task, so a run of one task resumes whatever tasks are added."""
    keys = {f.name for f in dataclasses.fields(DataConfig)}
    assert all(set(cls.parameters()) <= keys for cls in TASKS.values())
    assert {"nodes", "maze_difficulty", "hops", "side_nodes"} <= set(make("data=copy").data)


def test_two_tasks_cannot_give_one_key_two_meanings():
    @dataclasses.dataclass
    class One:
        nodes: int = 20

    @dataclasses.dataclass
    class Other:
        nodes: int = 30

    assert with_parts("data", [One, None, One]) == (One, One)
    with pytest.raises(TypeError, match=r"data\.nodes is declared twice"):
        with_parts("data", [One, Other])


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
        (["si.noise.rate=1.5"], "si.noise.rate=1.5 must lie in"),
        (["si.noise.rounds=[0]"], "rounds are numbered from 1"),
        (["model.n_head=5"], "not divisible"),
        (["model.kind=gguf"], "model.kind='gguf' is not one of hf, native"),
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
        (
            ["model.pos_encoding=coupled", "data=sort"],
            "^model.pos_encoding=coupled needs position ids: data.task=sort gi",
        ),
        (
            ["model.pos_encoding=coupled_rope", "data=forward_addition"],
            "^model.pos_encoding=coupled_rope needs position ids: data.task=forward_addition gives them only with "
            "data.pad_sum=true$",
        ),
        (["model.pos_encoding=coupled_rope", "model.n_head=2", "model.n_embd=126"], "coupled_rope needs an even head"),
        (["model.rope_fraction=0"], r"^model.rope_fraction=0.0 must lie in \(0, 1\]$"),
        (["model.pos_encoding=rope", "model.rope_fraction=0.05"], "rope_fraction=0.05 rotates none of a head's"),
        (["model.rope_step=0"], r"^model.rope_step=0.0 must be > 0$"),
        (["si.filters.presentations=2", "data=sort"], "^si.filters.presentations=2: data.task=sort declares no rewr"),
        (["si.filters.presentations=3", "data=multiplication"], "data.task=multiplication has 2 presentations of"),
        (["si.filters.presentations=0"], r"^si.filters.presentations=0 must be at least 1$"),
        (["si.filters.presentation_threshold=0"], r"presentation_threshold=0.0 must lie in \(0, 1\]"),
        (
            ["model.pos_encoding=coupled", "model.max_position_offset=-1"],
            r"^model.max_position_offset=-1 must be >= 0$",
        ),
    ],
)
def test_inconsistent_values_are_one_clear_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        validate(make(*overrides))


def test_warmup_longer_than_a_round_is_fine_without_rounds():
    validate(make("si=none", "training.warmup_steps=301"))  # only the base stage runs: 1800 steps


def test_base_warmup_longer_than_a_round_is_fine_with_a_round_warmup_of_its_own():
    validate(make("training.warmup_steps=301", "training.round_warmup_steps=20"))


def test_coupled_positions_fit_their_table_at_the_furthest_size(monkeypatch):
    """copy's ids at size 26 (base 10 + 13 rounds + 3 lookahead) go up to 26: the table holds block_size 96 + the
    offset; a task whose ids reached past it is refused before any work."""
    coupled = ("model.pos_encoding=coupled", "model.max_position_offset=50")
    validate(make(*coupled))
    monkeypatch.setattr(TASKS["copy"], "max_position", lambda self, difficulty: int(difficulty) + 69)
    validate(make(*coupled))  # 96 + 50 rows hold ids up to 95 + 50
    monkeypatch.setattr(TASKS["copy"], "max_position", lambda self, difficulty: int(difficulty) + 70)
    with pytest.raises(ConfigError, match=r"^copy at size 26 has position ids up to 96, \+ model.max_position_off"):
        validate(make(*coupled))


def test_a_coupled_model_takes_as_many_ids_a_token_as_the_task_gives():
    coupled = ("data=multiplication", "data.base_max=3", "model.pos_encoding=coupled_rope")
    validate(make(*coupled))  # data=multiplication sets model.position_levels=2
    with pytest.raises(ConfigError, match=r"^model.position_levels=1, but data.task=multiplication gives 2 ids a tok"):
        validate(make(*coupled, "model.position_levels=1"))
    with pytest.raises(ConfigError, match=r"^model.position_levels=2, but data.task=reverse_addition gives 1 ids a"):
        validate(make("data=reverse_addition", "model.pos_encoding=coupled", "model.position_levels=2"))
    with pytest.raises(ConfigError, match=r"^model.position_levels=2: coupled_rope needs a rotated frequency per lev"):
        validate(make(*coupled, "model.rope_fraction=0.0625"))  # 2 of a head's 32 dimensions: one frequency


def test_a_checkpoint_of_another_position_table_is_refused(tmp_path):
    """The checkpoint's model config records the encoding and the table's size (block_size + max_position_offset)."""
    tokenizer, cpu = Tokenizer(TASKS["copy"]().vocabulary), torch.device("cpu")
    shape = {"n_layer": 1, "n_head": 2, "n_embd": 16, "ffn_hidden": 32, "pos_encoding": "coupled"}
    saved = OmegaConf.structured(ModelConfig(**shape, max_position_offset=4))
    path = tmp_path / "latest.pt"
    config = OmegaConf.to_container(saved, enum_to_str=True)
    model = build(saved, tokenizer, cpu, "fp32")
    Checkpoint(model.state_dict(), "base.voter0", 0, model_config=config, vocabulary=tokenizer.vocabulary).save(path)
    restore(path, saved, tokenizer, cpu, "fp32")  # the same table: accepted
    other = OmegaConf.structured(ModelConfig(**shape, max_position_offset=8))
    with pytest.raises(
        IncompatibleCheckpointError, match=f"^{path} was written for another model: .*'max_position_off"
    ):
        restore(path, other, tokenizer, cpu, "fp32")
