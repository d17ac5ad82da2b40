import math

import numpy as np
import pytest
import torch

from selfimprove.config import ModelConfig
from selfimprove.models.generate import LENGTH_SLACK, complete, generate
from selfimprove.models.native import Attention, Transformer, apply_rope, rope_tables
from selfimprove.models.tokenizer import BOS, EOS, PAD, Tokenizer
from selfimprove.tasks import get_task

TOKENIZER = Tokenizer(get_task("copy").vocabulary)  # every prompt here is a copy prompt: digits and "="


def tiny_model(
    pos_encoding: str,
    seed: int = 0,
    attention_scale: str = "none",
    max_position_offset: int = 0,
    rope_fraction: float = 1.0,
    position_levels: int = 1,
) -> Transformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        n_layer=2,
        n_head=2,
        n_embd=32,
        ffn_hidden=64,
        pos_encoding=pos_encoding,
        attention_scale=attention_scale,
        block_size=48,
        max_position_offset=max_position_offset,
        rope_fraction=rope_fraction,
        position_levels=position_levels,
    )
    model = Transformer(cfg, TOKENIZER.vocab_size).eval()
    with torch.no_grad():  # larger weights than the init so logits are far from ties and EOS comes early
        for p in model.parameters():
            p.mul_(8.0)
    return model


@torch.no_grad()
def recompute_greedy(
    model: Transformer, prompts: torch.Tensor, max_new_tokens: int, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """Reference decoding: re-run the whole sequence at every step, each row on its own (with its position ids)."""
    out = torch.full((len(prompts), max_new_tokens), PAD)
    for row, prompt in enumerate(prompts):
        seq = prompt.tolist()
        for step in range(max_new_tokens):
            ids = None if positions is None else positions[row : row + 1, : len(seq)]
            token = int(model(torch.tensor([seq]), positions=ids)[0, -1].argmax())
            out[row, step] = token
            if token == EOS:
                break
            seq.append(token)
    return out


@pytest.mark.parametrize(
    ("pos_encoding", "attention_scale"), [("nope", "none"), ("rope", "none"), ("learned", "none"), ("nope", "log")]
)
def test_cached_decoding_equals_full_recomputation(pos_encoding, attention_scale):
    model = tiny_model(pos_encoding, attention_scale=attention_scale)
    tok = TOKENIZER
    rng = np.random.default_rng(0)
    prompts = torch.from_numpy(
        np.concatenate(
            [
                np.full((16, 1), BOS),
                tok.encode_batch(["".join(map(str, rng.integers(0, 10, 9))) + "=" for _ in range(16)]),
            ],
            axis=1,
        )
    )
    out = generate(model, prompts, max_new_tokens=20)
    reference = recompute_greedy(model, prompts, 20)
    assert torch.equal(out.tokens, reference)
    assert torch.equal(out.finished, (reference == EOS).any(1))


def copy_prompts(count: int, digits: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(map(str, rng.integers(0, 10, digits))) + "=" for _ in range(count)]


def with_bos(prompts: list[str]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate([np.full((len(prompts), 1), BOS), TOKENIZER.encode_batch(prompts)], axis=1))


@pytest.mark.parametrize(
    ("pos_encoding", "rope_fraction"), [("coupled", 1.0), ("coupled_rope", 1.0), ("coupled_rope", 0.5)]
)
def test_cached_coupled_decoding_equals_full_recomputation(pos_encoding, rope_fraction):
    """Each fed-back token is given its own row's id of its answer slot, also as rows leave the batch."""
    model = tiny_model(pos_encoding, rope_fraction=rope_fraction)
    prompts = with_bos(copy_prompts(16, 9))
    torch.manual_seed(1)
    positions = torch.randint(0, 48, (16, 10 + 20))  # every row its own ids
    out = generate(model, prompts, 20, positions)
    ends = {row.tolist().index(EOS) for row in out.tokens if EOS in row.tolist()}
    assert len(ends) > 1, "the test needs rows that leave the batch at different steps"
    assert torch.equal(out.tokens, recompute_greedy(model, prompts, 20, positions))
    # the ids are read: reverse's ids decode otherwise
    reverse_ids = torch.tensor([get_task("reverse").positions(prompt, 20) for prompt in copy_prompts(16, 9)])
    assert not torch.equal(generate(model, prompts, 20, reverse_ids).tokens, out.tokens)


@pytest.mark.parametrize("pos_encoding", ["coupled", "coupled_rope"])
def test_cached_decoding_with_two_ids_a_token_equals_full_recomputation(pos_encoding):
    """Two levels (multiplication's): each fed-back token is given both ids of its slot; each level is read."""
    model = tiny_model(pos_encoding, position_levels=2)
    prompts = with_bos(copy_prompts(16, 9))
    torch.manual_seed(1)
    positions = torch.randint(0, 48, (16, 10 + 20, 2))
    out = generate(model, prompts, 20, positions)
    assert torch.equal(out.tokens, recompute_greedy(model, prompts, 20, positions))
    for level in (0, 1):
        other = positions.clone()
        other[..., level] = torch.randint(0, 48, (16, 30))
        assert not torch.equal(generate(model, prompts, 20, other).tokens, out.tokens)
    with pytest.raises(ValueError, match=r"^model.position_levels=2, but the tokens have 1 ids each"):
        model(prompts, positions=positions[:, :10, 0])


@torch.no_grad()
def test_coupled_rope_with_two_levels_reads_how_far_apart_each_levels_ids_are():
    """Shifting one level's ids by a common amount leaves the logits; moving one token's id at either level does not.
    Frequency f turns by level f mod 2: with 2 heads of 16 dims fully rotated, 8 frequencies, 4 a level."""
    model = tiny_model("coupled_rope", position_levels=2)
    prompts = with_bos(copy_prompts(4, 9))
    ids = torch.stack([torch.arange(1, 12), torch.arange(20, 9, -1)], dim=-1).repeat(4, 1, 1)  # (4, 11, 2)
    logits = model(prompts, positions=ids)
    for shift in ([7, 0], [0, 5], [3, 9]):
        assert torch.allclose(model(prompts, positions=ids + torch.tensor(shift)), logits, atol=1e-4)
    for level in (0, 1):
        moved = ids.clone()
        moved[:, 3, level] += 4
        assert not torch.allclose(model(prompts, positions=moved), logits, atol=1e-2)
    swapped = ids.flip(-1)  # the levels are told apart: the same ids at the other level give other logits
    assert not torch.allclose(model(prompts, positions=swapped), logits, atol=1e-2)


def test_complete_gives_a_coupled_model_the_tasks_ids_unshifted():
    """Labelling and evaluation: offset 0, the task's own ids, whatever model.max_position_offset."""
    model = tiny_model("coupled", max_position_offset=5)
    reverse = get_task("reverse")
    prompts = copy_prompts(6, 4)
    labels = complete(model, TOKENIZER, prompts, [4] * 6, 6, torch.device("cpu"), positions=reverse.positions).labels
    slots = 4 + 1 + LENGTH_SLACK
    by_hand = generate(model, with_bos(prompts), slots, torch.tensor([reverse.positions(p, slots) for p in prompts]))
    assert labels == [TOKENIZER.decode(row) for row in by_hand.tokens.tolist()]
    with pytest.raises(ValueError, match="this task gives none"):
        complete(model, TOKENIZER, prompts, [4] * 6, 6, torch.device("cpu"), positions=get_task("sort").positions)
    with pytest.raises(ValueError, match="coupled needs the position ids"):
        model(with_bos(prompts))


def test_rope_rotates_the_first_pairs_of_dimensions_and_leaves_the_rest():
    """By hand: the pair (1, 0) turned a quarter (cos 0, sin 1) is (0, 1); the pair (0, 1) at angle 0 stays; the
    last two dimensions, past the rotated ones (rope_fraction 2/3 of 6), are untouched."""
    x = torch.tensor([1.0, 0.0, 0.0, 1.0, 5.0, 6.0])
    assert apply_rope(x, torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0])).tolist() == [0.0, 1.0, 0.0, 1.0, 5.0, 6.0]


def test_rope_step_is_the_fastest_frequencys_angle_per_position():
    """By hand: one head of 4 dimensions at theta 100 has frequencies 1 and 100^(-1/2) = 0.1 rad per position; with
    rope_step 0.5 position 2 turns them by 2 * 0.5 * 1 = 1 and 2 * 0.5 * 0.1 = 0.1 rad."""
    cos, sin = rope_tables(ModelConfig(n_head=1, n_embd=4, rope_theta=100.0, rope_step=0.5), 3)
    assert torch.allclose(cos[2], torch.tensor([math.cos(1.0), math.cos(0.1)]))
    assert torch.allclose(sin[2], torch.tensor([math.sin(1.0), math.sin(0.1)]))
    assert torch.equal(cos[0], torch.ones(2))


@pytest.mark.parametrize("rope_fraction", [1.0, 0.5])
@torch.no_grad()
def test_coupled_rope_reads_only_how_far_apart_the_ids_are(rope_fraction):
    """Shifting every id by the same amount leaves the logits as they were (rotations by a common angle cancel in
    q.k); moving one token's id changes them."""
    model = tiny_model("coupled_rope", rope_fraction=rope_fraction)
    prompts = with_bos(copy_prompts(4, 9))
    ids = torch.arange(1, 12).repeat(4, 1)  # BOS, 9 digits, "="
    logits = model(prompts, positions=ids)
    assert torch.allclose(model(prompts, positions=ids + 7), logits, atol=1e-4)
    moved = ids.clone()
    moved[:, 3] = 9
    assert not torch.allclose(model(prompts, positions=moved), logits, atol=1e-2)


@torch.no_grad()
def test_log_attention_scale_multiplies_a_querys_logits_by_the_log_of_the_keys_it_sees():
    """One attention layer, worked by hand: the query at position p sees p + 1 keys, its logits q.k / sqrt(d)
    are multiplied by log(p + 1) before the softmax (so the first token's are 0, the third's by log 3)."""
    cfg = ModelConfig(n_head=1, n_embd=4, attention_scale="log")
    layer = Attention(cfg).eval()
    x = torch.randn(1, 3, 4)
    q, k, v = layer.qkv(x).split(4, dim=-1)
    weights = [torch.softmax(math.log(p + 1) * (k[0, : p + 1] @ q[0, p]) / 2.0, dim=0) for p in range(3)]
    by_hand = torch.stack([w @ v[0, : len(w)] for w in weights])
    assert torch.allclose(layer(x, None, None, 0)[0], layer.proj(by_hand), atol=1e-6)
    # Decoding the third token alone against a cache of the first two scales it the same way.
    cache = (torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 3, 4))
    layer(x[:, :2], None, cache, 0)
    assert torch.allclose(layer(x[:, 2:], None, cache, 2)[0, 0], layer.proj(by_hand[2]), atol=1e-6)


def test_rows_stop_at_their_own_eos():
    model = tiny_model("nope")
    tok = TOKENIZER
    prompts = torch.from_numpy(
        np.concatenate([np.full((64, 1), BOS), tok.encode_batch([f"{i:02d}=" for i in range(64)])], axis=1)
    )
    out = generate(model, prompts, max_new_tokens=30)
    ends = [row.tolist().index(EOS) if EOS in row.tolist() else None for row in out.tokens]
    assert len({e for e in ends if e is not None}) > 1, "the test needs rows that end at different steps"
    for row, end in zip(out.tokens, ends, strict=True):
        if end is not None:
            assert (row[end + 1 :] == PAD).all()  # nothing emitted after a row's EOS
    assert ((out.min_prob > 0) & (out.min_prob <= 1)).all()


def test_complete_groups_mixed_lengths_and_keeps_order():
    model = tiny_model("nope", seed=1)
    tok = TOKENIZER
    prompts = ["12=", "345=", "6=", "7890=", "11="]
    budget = [2, 3, 1, 4, 2]  # copy's answer tokens per prompt
    together = complete(model, tok, prompts, budget, batch_size=2, device=torch.device("cpu"))
    for i, prompt in enumerate(prompts):
        alone = complete(model, tok, [prompt], [budget[i]], batch_size=1, device=torch.device("cpu"))
        assert together.labels[i] == alone.labels[0]
        assert together.finished[i] == alone.finished[0]


def test_bf16_decoding_caches_bf16_and_answers_like_fp32():
    model = tiny_model("nope", seed=2)
    tok = TOKENIZER
    prompts = [f"{i:03d}=" for i in range(0, 1000, 37)]
    fp32 = complete(model, tok, prompts, [3] * len(prompts), batch_size=8, device=torch.device("cpu"))
    bf16 = complete(model, tok, prompts, [3] * len(prompts), 8, torch.device("cpu"), precision="bf16")
    assert len(set(fp32.labels)) > 1
    # bf16 rounding may flip a near-tie; the answers must still agree almost everywhere
    assert np.mean([a == b for a, b in zip(fp32.labels, bf16.labels, strict=True)]) >= 0.9
    assert np.abs(fp32.min_prob - bf16.min_prob).mean() < 0.05
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ids = torch.from_numpy(np.concatenate([np.full((2, 1), BOS), tok.encode_batch(["12=", "34="])], axis=1))
        assert model.new_cache(2, 8, torch.get_autocast_dtype("cpu")).keys[0].dtype == torch.bfloat16
        assert generate(model, ids, 4).tokens.shape == (2, 4)
