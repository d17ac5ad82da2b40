"""model=hf: a pretrained Hugging Face causal LM with peft LoRA (selfimprove/models/hf.py), on a tiny random Llama
saved to a temporary directory with its own tokenizer (tests/tiny_llama.py, whose ids its docstring
lists), offline: the token mapping, decoding, precision and gradient checkpointing in process; the whole loop
through sweep.py and run.py, killed and resumed; bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import QUICK, kill_and_resume, outcome, read_jsonl, run_cli
from hydra import compose
from omegaconf import OmegaConf

import selfimprove
from selfimprove.cluster import grid
from selfimprove.config import ModelConfig, check_overrides, validate
from selfimprove.errors import ConfigError, IncompatibleCheckpointError
from selfimprove.loop.checkpoint import Checkpoint, restore
from selfimprove.loop.data import collate
from selfimprove.models.decoder import build
from selfimprove.models.generate import complete, generate
from selfimprove.models.hf import LoraConfig
from selfimprove.models.tokenizer import BOS, EOS, Tokenizer
from selfimprove.store import RunDir
from selfimprove.tasks import get_task

CPU = torch.device("cpu")
TASK = get_task("reverse_addition")
TOKENIZER = Tokenizer(TASK.vocabulary)  # <pad> <bos> <eos> 0-9 + =


@pytest.fixture(autouse=True)
def offline_on_one_thread(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # inherited by every run.py and sweep.py started here
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)  # read at import: here too
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs as fast on one, and parallel tests do not oversubscribe
    yield
    torch.set_num_threads(threads)


def model_config(path: Path, **overrides) -> ModelConfig:
    return OmegaConf.structured(ModelConfig(kind="hf", path=str(path), lora=LoraConfig(r=4, alpha=8), **overrides))


def new_model(path: Path, precision: str = "fp32", seed: int = 0, **overrides):
    torch.manual_seed(seed)  # draws the LoRA weights
    return build(model_config(path, **overrides), TOKENIZER, CPU, precision)


# -- tokens, decoding, precision (in process) -------------------------------------------------------
def test_task_tokens_are_the_pretrained_tokenizers_own_single_token_ids(tiny_llama):
    from selfimprove.models.hf import pretrained, token_ids

    table = token_ids(TOKENIZER, str(tiny_llama))
    # PAD (any id: it is never attended to), BOS, EOS, then 0-9 + = (the tiny tokenizer's ids, written by hand)
    assert table == [18, 17, 18, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0, 1]
    ours = [table[i] for i in [BOS, *TOKENIZER.encode("12+34=")]]
    assert ours == [17, 6, 7, 0, 8, 9, 1]
    theirs = pretrained(str(tiny_llama))[1]
    assert theirs("12+34=", add_special_tokens=False).input_ids == [15, 0, 16, 1]  # "12" and "34" merged
    assert theirs.decode(ours) == "<|begin_of_text|>12+34="


def test_cached_decoding_equals_recomputation_and_labels_decode_to_the_tasks_text(tiny_llama):
    from test_generate import recompute_greedy

    from selfimprove.models.hf import pretrained

    model = new_model(tiny_llama).eval()
    rng = np.random.default_rng(0)
    prompts = [e.prompt for e in TASK.sample(3, 16, rng)]
    ids = torch.from_numpy(np.concatenate([np.full((16, 1), BOS), TOKENIZER.encode_batch(prompts)], axis=1))
    out = generate(model, ids, max_new_tokens=6)
    assert torch.equal(out.tokens, recompute_greedy(model, ids, 6))  # the KV cache, rows leaving at EOS
    labels = complete(model, TOKENIZER, prompts, [3] * 16, batch_size=16, device=CPU).labels  # 3 + 3 tokens
    assert len(set(labels)) > 4 and len({len(label) for label in labels}) > 2  # varied: the check can fail
    hf_tokenizer = pretrained(str(tiny_llama))[1]
    for label, row in zip(labels, out.tokens.tolist(), strict=True):
        emitted = row[: row.index(EOS)] if EOS in row else row
        assert hf_tokenizer.decode(model.ids[emitted].tolist()) == label  # the pretrained tokenizer agrees
        assert set(label) <= set(TASK.vocabulary)


def test_only_lora_trains_and_gradient_checkpointing_changes_no_gradient(tiny_llama):
    plain, checkpointed = new_model(tiny_llama), new_model(tiny_llama, gradient_checkpointing=True)
    assert checkpointed.lm.is_activation_checkpointing and not plain.lm.is_activation_checkpointing
    trainable = {n for n, p in plain.lm.named_parameters() if p.requires_grad}
    assert trainable == set(plain.state_dict()) and all(".lora_" in n for n in trainable)
    batch = collate(TOKENIZER, TASK.sample(2, 8, np.random.default_rng(1)))
    for model in (plain, checkpointed):
        model.train()
        logits = model(batch.inputs)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=-100).backward()
    grads = [{n: p.grad for n, p in m.lm.named_parameters() if p.requires_grad} for m in (plain, checkpointed)]
    # B starts at zero (LoRA starts as the base model), so A's first gradient is zero and B's is not: in every layer.
    assert all((g.abs().sum() > 0) == (".lora_B." in n) for n, g in grads[1].items())
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad)
    assert all(p.grad is None for p in plain.lm.parameters() if not p.requires_grad)


def test_bf16_keeps_the_frozen_weights_in_bf16_and_lora_in_fp32(tiny_llama):
    model = new_model(tiny_llama, precision="bf16")
    dtypes = {(p.requires_grad, p.dtype) for p in model.parameters()}
    assert dtypes == {(False, torch.bfloat16), (True, torch.float32)}
    fp32 = new_model(tiny_llama)
    prompts = [e.prompt for e in TASK.sample(2, 32, np.random.default_rng(2))]
    exact = complete(fp32, TOKENIZER, prompts, [3] * 32, 32, CPU, "fp32").labels
    rounded = complete(model, TOKENIZER, prompts, [3] * 32, 32, CPU, "bf16").labels
    assert len(set(exact)) > 4
    assert np.mean([a == b for a, b in zip(exact, rounded, strict=True)]) >= 0.8  # rounding may flip a near-tie


# -- checkpoints ------------------------------------------------------------------------------------
def save_checkpoint(run: RunDir, model, model_cfg) -> Path:
    """What a training stage's checkpoint holds of the model (stages._train)."""
    path = run.checkpoint(0)
    config = OmegaConf.to_container(model_cfg)
    Checkpoint(
        model.state_dict(),
        "base.voter0",
        0,
        model_config=config,
        base_model=model.base_identity,
        vocabulary=TOKENIZER.vocabulary,
    ).save(path)
    return path


def test_a_checkpoint_is_refused_on_another_base_model_at_its_path(tmp_path):
    from tiny_llama import save_tiny_llama

    base = save_tiny_llama(tmp_path / "model")
    run = RunDir(tmp_path / "run")
    path = save_checkpoint(run, new_model(base), model_config(base))
    restored, _ = restore(path, model_config(base), TOKENIZER, CPU, "fp32")  # the same base: accepted
    assert restored.base_identity == new_model(base, seed=1).base_identity  # LoRA's draw is not the base
    save_tiny_llama(base, seed=1)  # another model (the same shape and tokenizer) written over the directory
    with pytest.raises(IncompatibleCheckpointError, match=f"{path} was tuned from another base model: "):
        restore(path, model_config(base), TOKENIZER, CPU, "fp32")


def test_a_native_checkpoint_from_before_model_kind_existed_is_still_read(tmp_path):
    """Its model config lacks kind, path, lora, gradient_checkpointing: they had their defaults."""
    cfg = OmegaConf.structured(ModelConfig(n_layer=1, n_head=2, n_embd=16, ffn_hidden=32))
    model = build(cfg, TOKENIZER, CPU, "fp32")
    run = RunDir(tmp_path / "run")
    path = save_checkpoint(run, model, cfg)
    old = torch.load(path, weights_only=False)
    old["model_config"] = {k: v for k, v in old["model_config"].items() if k not in ("kind", "path", "lora",
                           "gradient_checkpointing")}  # fmt: skip
    del old["base_model"]
    torch.save(old, path)
    restored, _ = restore(path, cfg, TOKENIZER, CPU, "fp32")
    assert all(torch.equal(restored.state_dict()[n], t) for n, t in model.state_dict().items())
    old["model_config"]["n_layer"] = 2
    torch.save(old, path)
    with pytest.raises(IncompatibleCheckpointError, match="was written for another model"):
        restore(path, cfg, TOKENIZER, CPU, "fp32")


# -- the whole loop ---------------------------------------------------------------------------------
SHARES_REFERENCE = pytest.mark.xdist_group("hf")  # one worker runs the reference once


def hf_args(tiny_llama: Path) -> list[str]:
    """The quick experiment on the tiny Llama: reversed addition from 1-3 digits, LoRA r=4, 30 base steps, a
    checkpoint every 10 steps (kills land inside a stage), every round's checkpoint kept, fp32 (labels compare
    exactly)."""
    return [
        *QUICK,
        "model=hf",
        f"model.path={tiny_llama}",
        "model.lora.r=4",
        "model.lora.alpha=8",
        "data=reverse_addition",
        "data.base_max=3",
        "training.base_steps=30",
        "training.precision=fp32",
        "training.checkpoint_every=10",
        "si.keep_round_checkpoints=true",
    ]


@pytest.fixture(scope="module")
def reference(tiny_llama, tmp_path_factory) -> Path:
    """Base + 2 rounds on the tiny Llama as a sweep.py pipeline (one job per stage, in this process)."""
    sweep_dir = tmp_path_factory.mktemp("hf") / "sweep"
    proc = run_cli(*hf_args(tiny_llama), "--cluster", "debug", "--dir", str(sweep_dir), script="sweep.py")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return sweep_dir / "0"


@pytest.mark.slow
@SHARES_REFERENCE
def test_the_whole_loop_runs_on_a_pretrained_model_and_checkpoints_only_lora(reference, tiny_llama):
    summary = json.loads((reference / "summary.json").read_text())
    assert [(r["round"], r["targets"]) for r in summary["rounds"]] == [(0, None), (1, [4]), (2, [5])]
    assert sum(r["kept"] for r in summary["rounds"][1:]) > 0, "the test needs kept labels"
    for r in (1, 2):
        for row in read_jsonl(reference / "data" / f"round_{r:03d}.jsonl"):
            assert set(row["label"]) <= set(TASK.vocabulary) and len(row["label"]) == row["difficulty"] + 1
            assert row["correct"] == TASK.check(row["prompt"], row["label"])

    checkpoint = torch.load(reference / "checkpoints" / "voter0" / "latest.pt", weights_only=False)
    assert checkpoint["stage"] == "train.round002.voter0"
    assert checkpoint["base_model"]["path"] == str(tiny_llama) and len(checkpoint["base_model"]["fingerprint"]) == 16
    weights = checkpoint["model"]
    targets = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj"]  # fmt: skip
    names = [f"model.layers.{i}.{target}.lora_{ab}.default.weight" for i in (0, 1) for target in targets for ab in "AB"]
    assert sorted(weights) == sorted(names)
    # r=4 on 32-wide layers (k and v 16 wide: 2 of 4 heads; the MLP 64): per layer 4 * (32+32 + 32+16 + 32+16 +
    # 32+32 + 32+64 + 32+64 + 64+32) = 2048 numbers, against 9280 in the layer and 19200 in the whole base model.
    assert sum(t.numel() for t in weights.values()) == 2 * 2048

    loaded = selfimprove.load(reference)
    assert type(loaded.model).__name__ == "HFModel" and loaded.stage == "train.round002.voter0"
    assert all(torch.equal(loaded.model.state_dict()[n], t) for n, t in weights.items())
    assert sum(p.numel() for p in loaded.model.lm.parameters() if not p.requires_grad) == 19200
    # The base model (round 0, kept) answers round 1's prompts with the labels it gave them.
    kept = read_jsonl(reference / "data" / "round_001.jsonl")
    base = selfimprove.load(reference, round=0)
    assert base.answer([row["prompt"] for row in kept]) == [row["label"] for row in kept]


@pytest.mark.slow
@SHARES_REFERENCE
def test_killed_and_resumed_run_gives_the_uninterrupted_lora_weights(reference, tiny_llama, tmp_path):
    run_dir = tmp_path / "run"
    kill_and_resume(run_dir, "checkpoint:train.round001.voter0:10", hf_args(tiny_llama))  # inside a round
    assert outcome(run_dir) == outcome(reference)  # rounds, kept labels and the LoRA weights


# -- bad input ----------------------------------------------------------------------------------------
def compose_config(*overrides: str):
    with grid.hydra_session():
        return compose(config_name="config", overrides=list(overrides))


def test_pretrained_configs_that_cannot_run_are_refused_in_one_line(tiny_llama, tmp_path):
    from tiny_llama import save_tiny_llama

    no_plus = save_tiny_llama(tmp_path / "no-plus", without=["+"])
    base = ["model=hf", f"model.path={tiny_llama}", "data=reverse_addition"]
    for overrides, message in [
        ([*base, "model.path=/no/such/model"], "model.path=/no/such/model: no such model directory"),
        ([*base, "model.path=nobody/no-such-model"], "model.path=nobody/no-such-model: not a model directory, nor"),
        ([*base, f"model.path={no_plus}"], f"model.path={no_plus}: its tokenizer has no single-token id for +: "),
        ([*base, "model.lora.target_modules=[qkv_proj]"], "model.lora.target_modules=['qkv_proj']: Target modules"),
        ([*base, "model.block_size=513"], f"model.block_size=513 is past model.path={tiny_llama}'s 512 positions"),
        (["model.path=/models/llama"], "model.path=/models/llama has no effect: model.kind=native does not read it"),
    ]:
        with pytest.raises(ConfigError) as refused:
            cfg = compose_config(*overrides)
            check_overrides(cfg, overrides)
            validate(cfg)
        assert str(refused.value).startswith(message) and "\n" not in str(refused.value), overrides

    # Through run.py: one line, exit 2, before anything is written.
    run_dir = tmp_path / "run"
    proc = run_cli(*QUICK, "model=hf", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: model=hf needs model.path=<a local model directory or a Hugging Face hub id>"
    ]
    assert not run_dir.exists()
