import numpy as np
import pytest

from selfimprove.data import IGNORE, BaseSource, MixtureSampler, StoredSource, collate, round_mixture
from selfimprove.tasks import Example, get_task
from selfimprove.tokenizer import BOS, EOS, PAD, Tokenizer

COPY = get_task("copy")


def test_collate_layout_and_loss_mask():
    tok = Tokenizer(COPY.vocabulary)
    batch = collate(tok, [Example("12=", "12"), Example("3=", "3")])
    assert batch.inputs.shape == batch.targets.shape == (2, 6)
    first = batch.inputs[0].tolist()
    assert first[0] == BOS and tok.decode(first[1:]) == "12=12"
    # Loss only on the answer and EOS: row 0 predicts "1", "2", EOS at input positions 3, 4, 5.
    assert batch.targets[0].tolist() == [IGNORE, IGNORE, IGNORE, *tok.encode("12").tolist(), EOS]
    assert batch.targets[1].tolist() == [IGNORE, IGNORE, *tok.encode("3").tolist(), EOS, IGNORE, IGNORE]
    assert batch.inputs[1, 5].item() == PAD


def test_collate_with_loss_on_prompt():
    tok = Tokenizer(COPY.vocabulary)
    batch = collate(tok, [Example("12=", "12")], loss_on_prompt=True)
    assert batch.targets[0].tolist() == [*tok.encode("12=12").tolist(), EOS]


def test_base_source_covers_its_difficulties():
    source = BaseSource(COPY, [3, 4, 5, 6])
    lengths = [len(e.answer) for e in source.draw(4000, np.random.default_rng(0))]
    assert set(lengths) == {3, 4, 5, 6}
    assert np.allclose(np.bincount(lengths)[3:] / 4000, 0.25, atol=0.03)


def test_round_mixture_weights():
    base = BaseSource(COPY, list(range(1, 11)))
    r1, r2, r3 = [Example("1=", "1")], [Example("22=", "22")], [Example("333=", "333")]
    only_base = round_mixture(base, [], 0.5, 0.5)
    assert [w for _, w in only_base] == [1.0]
    first = round_mixture(base, [r1], 0.6, 0.5)  # no older rounds: the rest is all base
    assert [w for _, w in first] == pytest.approx([0.4, 0.6])
    third = round_mixture(base, [r1, r2, r3], 0.5, 0.25)
    assert [w for _, w in third] == pytest.approx([0.125, 0.375, 0.5])
    assert third[2][0].examples == r3 and third[1][0].examples == r1 + r2


def test_sampler_draws_in_proportion():
    tok = Tokenizer(COPY.vocabulary)
    base = BaseSource(COPY, [1, 2, 3, 4, 5])  # answers of at most 5 digits
    older = [Example("111111=", "111111")]
    newest = [Example("2222222=", "2222222")]
    sampler = MixtureSampler(tok, round_mixture(base, [older, newest], 0.5, 0.4), 256, np.random.default_rng(0))
    counts = {"base": 0, "older": 0, "newest": 0}
    for _ in range(40):
        for e in sampler.examples():
            kind = "newest" if e.answer == "2222222" else "older" if e.answer == "111111" else "base"
            counts[kind] += 1
    total = sum(counts.values())
    assert total == 40 * 256
    assert counts["newest"] / total == pytest.approx(0.5, abs=0.02)
    assert counts["base"] / total == pytest.approx(0.2, abs=0.02)
    assert counts["older"] / total == pytest.approx(0.3, abs=0.02)


def test_stored_source_needs_examples():
    with pytest.raises(ValueError):
        StoredSource([])


def test_collate_masks_the_prompt_by_tokens_not_characters():
    maze = get_task("maze")  # node labels 1-99 are one token each
    tok = Tokenizer(maze.vocabulary)
    prompt = "12>7#12:7-7:12="  # 12 tokens in 15 characters
    batch = collate(tok, [Example(prompt, "12>7")])
    assert batch.inputs.shape == (1, 1 + 12 + 3)  # BOS + prompt + answer (EOS is only a target)
    assert batch.targets[0].tolist() == [IGNORE] * 12 + [*tok.encode("12>7").tolist(), EOS]


def test_base_source_draws_pair_difficulties():
    source = BaseSource(get_task("multiplication"), [(1, 2), (2, 1)])
    examples = source.draw(200, np.random.default_rng(0))
    shapes = {tuple(len(n) for n in e.prompt.removesuffix("=").split("*")) for e in examples}
    assert shapes == {(1, 2), (2, 1)}
