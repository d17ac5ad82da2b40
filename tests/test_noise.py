"""Label-noise injection per kind, checked against what each kind promises (docs/label-noise.md)."""

import numpy as np
import pytest

from selfimprove.config import NoiseConfig
from selfimprove.loop.noise import applies, corrupt, inject, numbers_of
from selfimprove.models.tokenizer import Tokenizer
from selfimprove.tasks import get_task

DIGITS = list("0123456789")


def corrupted(tokens, kind, numbers=DIGITS, trials=300):
    rng = np.random.default_rng(0)
    return [corrupt(list(tokens), kind, numbers, rng) for _ in range(trials)]


def test_uniform_keeps_the_length_and_the_separators():
    label = list("060+0840(0450)+00630=04140")
    outs = corrupted(label, "uniform")
    for out in outs:
        assert len(out) == len(label)
        assert all(o == t for o, t in zip(out, label, strict=True) if not t.isdigit())  # "+", "(", ")", "=" stay
        assert all(o.isdigit() for o, t in zip(out, label, strict=True) if t.isdigit())
    assert sum(out != label for out in outs) == len(outs)  # 18 random digits: never all the same by chance


def test_drop_deletes_one_to_three_of_the_last_three_tokens():
    label = list("123456")
    outs = corrupted(label, "drop")
    for out in outs:
        assert 3 <= len(out) <= 5 and out[:3] == list("123")
        assert all(t in "456" for t in out[3:]) and out[3:] == sorted(out[3:])  # a subsequence of "456"
    assert {len(out) for out in outs} == {3, 4, 5}


def test_perturb_shifts_one_to_three_of_the_last_three_digits_by_one():
    label = list("1290=90")  # the last three digits: 0, 9, 0 (the "=" is not a digit)
    outs = corrupted(label, "perturb")
    for out in outs:
        assert len(out) == len(label) and out[:3] == list("129") and out[4] == "="
        changed = [(t, o) for t, o in zip(label, out, strict=True) if t != o]
        assert 1 <= len(changed) <= 3
        assert all((int(o) - int(t)) % 10 in (1, 9) for t, o in changed)  # +1 or -1, cyclically (0 -> 9)
    assert {sum(a != b for a, b in zip(label, out, strict=True)) for out in outs} == {1, 2, 3}


def test_perturb_moves_maze_labels_to_neighbouring_labels():
    numbers = numbers_of(Tokenizer(get_task("maze").vocabulary))
    assert numbers[:3] == ["1", "2", "3"] and numbers[-1] == "99"
    for out in corrupted(["99", ">", "1"], "perturb", numbers):
        assert out[1] == ">" and out[0] in ("98", "1", "99") and out[2] in ("2", "99", "1")
        assert out != ["99", ">", "1"]


def test_inject_corrupts_the_asked_share_and_marks_it():
    tokenizer = Tokenizer(get_task("copy").vocabulary)
    labels = [f"{i:06d}" for i in range(200)]
    out, noisy = inject(labels, NoiseConfig(rate=0.2, kind="drop"), tokenizer, np.random.default_rng(0))
    assert sum(noisy) == 40
    assert all(o == label for o, label, flag in zip(out, labels, noisy, strict=True) if not flag)
    assert all(len(o) < 6 for o, flag in zip(out, noisy, strict=True) if flag)


@pytest.mark.parametrize(
    ("rate", "rounds", "round_", "on"),
    [(0.0, [], 1, False), (0.1, [], 3, True), (0.1, [2], 1, False), (0.1, [2], 2, True)],
)
def test_noise_applies_to_the_chosen_rounds(rate, rounds, round_, on):
    assert applies(NoiseConfig(rate=rate, rounds=rounds), round_) is on
