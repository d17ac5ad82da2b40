import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from selfimprove.config import ModelConfig, TrainingConfig
from selfimprove.loop.data import IGNORE, BaseSource, MixtureSampler, StoredSource, bucketed, collate, round_mixture
from selfimprove.loop.train import make_optimizer, train_step
from selfimprove.models.native import Transformer
from selfimprove.models.tokenizer import BOS, EOS, PAD, Tokenizer
from selfimprove.tasks import Example, get_task

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


def test_bucketed_sorts_rows_by_length_and_pads_each_bucket_to_its_own_longest():
    tok = Tokenizer(COPY.vocabulary)
    examples = [Example("1234=", "1234"), Example("1=", "1"), Example("12=", "12"), Example("123=", "123")]
    step = bucketed(tok, examples, buckets=2)
    # Sequences BOS + prompt + answer + EOS are 5, 7, 9, 11 tokens: inputs drop the last one.
    assert [tuple(part.inputs.shape) for part in step.parts] == [(2, 6), (2, 10)]
    assert tok.decode(step.parts[0].inputs[0, 1:4].tolist()) == "1=1"
    assert tok.decode(step.parts[1].inputs[1, 1:].tolist()) == "1234=1234"
    assert step.target_count == (1 + 2 + 3 + 4) + 4  # answer tokens and one EOS per row
    assert step.tokens == 2 * 6 + 2 * 10  # a whole batch would be 4 * 10
    assert len(bucketed(tok, examples[:1], buckets=3).parts) == 1


def test_length_buckets_leave_the_step_unchanged():
    """The gradient accumulated over buckets is that of the one padded batch: same loss, same weights after."""
    tok = Tokenizer(COPY.vocabulary)
    rng = np.random.default_rng(0)
    examples = [e for n in (1, 4, 9, 13) for e in COPY.sample(n, 3, rng)]
    training = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainingConfig), {"precision": "fp32"}))
    cpu = torch.device("cpu")

    def weights(model: Transformer) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    results = []
    for buckets in (1, 3):
        torch.manual_seed(0)
        model = Transformer(ModelConfig(n_layer=1, n_head=2, n_embd=16, ffn_hidden=32), tok.vocab_size)
        initial = weights(model)
        loss = train_step(model, make_optimizer(model, training, cpu), bucketed(tok, examples, buckets), training, cpu)
        results.append((loss.item(), weights(model)))
    (loss_whole, after_whole), (loss_buckets, after_buckets) = results
    assert not torch.allclose(after_whole, initial)  # the step moved the weights
    assert loss_buckets == pytest.approx(loss_whole, rel=1e-5)
    assert torch.allclose(after_buckets, after_whole, atol=1e-6)


def test_collate_carries_position_ids_aligned_with_the_inputs():
    tok = Tokenizer(COPY.vocabulary)
    examples = [Example("12=", "12"), Example("3=", "3")]
    ids = [np.array(COPY.positions(prompt, len(answer) + 1)) for prompt, answer in examples]
    batch = collate(tok, examples, positions=ids)
    # BOS 1 2 = 1 2 (EOS, only a target): 0 1 2, then "=" writes the 1 (1), "1" the 2 (2), "2" the EOS (0);
    # BOS 3 = 3 EOS PAD: 0 1, "=" writes the 3 (1), "3" the EOS (0), the EOS slot 0, and padding 0
    assert batch.positions.tolist() == [[0, 1, 2, 1, 2, 0], [0, 1, 1, 0, 0, 0]]
    assert collate(tok, examples).positions is None


def test_collate_carries_two_ids_a_token_with_padding_at_both_levels():
    mul = get_task("multiplication")
    examples = [Example("3*2=", "60=60"), Example("21*3=", "630=630")]  # 3 x 2 = 6 and 12 x 3 = 36, reversed
    ids = [np.array(mul.positions(prompt, len(answer) + 1)) for prompt, answer in examples]
    batch = collate(Tokenizer(mul.vocabulary), examples, positions=ids)
    # "3*2=60=60" (la = lb = 1): a's 3 at (0 + 1, 0), b's 2 at (0, 1); "=" writes the 6 of 10^0 (x 0 - 0 + 1, row
    # y 1), the 6 writes the 0 of 10^1 (2, 1), that 0 writes "=" (the row's top x 2, + 11), "=" writes the product's
    # 6 (1, 2), the 6 its 0 (2, 2), the 0 writes EOS (0, 0)
    first = [(0, 0), (1, 0), (0, 0), (0, 1), (1, 1), (2, 1), (13, 1), (1, 2), (2, 2), (0, 0)]
    assert batch.positions.shape == (2, 13, 2)  # BOS and the 12 tokens of the longer
    assert batch.positions[0].tolist() == [list(pair) for pair in first] + [[0, 0]] * 3  # and padding
    assert batch.positions[1].tolist() == ids[1][:-1].tolist()  # the inputs: the EOS slot dropped


def coupled_sampler(max_offset: int, rng: np.random.Generator) -> MixtureSampler:
    reverse = get_task("reverse")
    source = [(StoredSource([Example("0123=", "3210")]), 1.0)]
    tok = Tokenizer(reverse.vocabulary)
    return MixtureSampler(tok, source, 64, rng, buckets=2, positions=reverse.positions, max_offset=max_offset)


def test_training_shifts_each_sequences_ids_by_one_random_offset_in_range():
    unshifted = np.array(get_task("reverse").positions("0123=", 5)[:-1])  # the inputs: EOS dropped
    offsets = []
    for _ in range(20):
        for part in coupled_sampler(3, np.random.default_rng(len(offsets))).next_batch().parts:
            for row in part.positions.numpy():
                shift = np.unique(row[unshifted > 0] - unshifted[unshifted > 0])
                assert len(shift) == 1  # one offset per sequence
                assert (row[unshifted == 0] == 0).all()  # BOS and "=" have no place: never shifted
                offsets.append(int(shift[0]))
    assert set(offsets) == {0, 1, 2, 3}
    rows = coupled_sampler(0, np.random.default_rng(0)).next_batch().parts[0].positions.numpy()
    assert (rows == unshifted).all()


def test_offsets_are_drawn_only_for_a_coupled_model():
    """A sampler without position ids draws what it always drew: the same batches, the same generator state."""
    tok = Tokenizer(COPY.vocabulary)
    plain = MixtureSampler(tok, [(BaseSource(COPY, [1, 2, 3]), 1.0)], 16, np.random.default_rng(0))
    batch = plain.next_batch()
    assert all(part.positions is None for part in batch.parts)
    rng = np.random.default_rng(0)
    examples = BaseSource(COPY, [1, 2, 3]).draw(int(rng.multinomial(16, [1.0])[0]), rng)
    assert torch.equal(batch.parts[0].inputs, bucketed(tok, examples).parts[0].inputs)
    assert plain.rng.bit_generator.state == rng.bit_generator.state


def test_a_coupled_model_trains_on_the_batches_position_ids():
    sampler = coupled_sampler(2, np.random.default_rng(0))
    no_decay = {"precision": "fp32", "optim": {"weight_decay": 0.0}}  # a row without gradient then stays put
    training = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainingConfig), no_decay))
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    cfg = ModelConfig(n_layer=1, n_head=2, n_embd=16, ffn_hidden=32, pos_encoding="coupled", max_position_offset=2)
    model = Transformer(cfg, sampler.tokenizer.vocab_size)
    assert model.pos_emb.num_embeddings == cfg.block_size + 2
    table = model.pos_emb.weight.detach().clone()
    train_step(model, make_optimizer(model, training, cpu), sampler.next_batch(), training, cpu)
    moved = (model.pos_emb.weight.detach() != table).any(1).nonzero().flatten().tolist()
    assert moved == list(range(4 + 2 + 1))  # the rows of the ids the batch held: "0123=" has up to 4, offsets up to 2
