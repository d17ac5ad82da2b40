import itertools

import pytest

from selfimprove.config import SIConfig, TrainingConfig
from selfimprove.schedule import next_lengths, reach
from selfimprove.train import lr_at


def test_linear_schedule():
    assert next_lengths(SIConfig(schedule="linear", length_step=1), 10, {}) == [11]
    assert next_lengths(SIConfig(schedule="linear", length_step=3), 12, {}) == [13, 14, 15]


def test_accelerated_schedule_extends_over_accurate_lengths():
    si = SIConfig(schedule="accelerated", accelerate_threshold=0.99)
    accuracy = {10: 1.0, 11: 0.995, 12: 0.99, 13: 0.98, 14: 1.0}
    assert next_lengths(si, 10, accuracy) == [11, 12]  # stops at the first length below threshold
    assert next_lengths(si, 12, accuracy) == [13]  # none good: the next length alone
    assert next_lengths(si, 14, accuracy) == [15]  # no measurement: the next length alone


def test_reach_needs_every_length_up_to_it():
    assert reach({1: 1.0, 2: 0.99, 3: 0.97, 4: 1.0}, 0.98) == 2
    assert reach({1: 0.5}, 0.98) == 0
    assert reach({n: 1.0 for n in range(1, 17)}, 0.98) == 16


def test_wsd_schedule():
    cfg = TrainingConfig(schedule="wsd", warmup_steps=10, decay_fraction=0.2)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    peak = cfg.optim.lr
    assert lrs[0] == pytest.approx(peak / 10) and lrs[9] == pytest.approx(peak)
    assert all(lr == peak for lr in lrs[10:80])  # stable
    assert lrs[-1] == pytest.approx(peak * cfg.optim.min_lr_ratio)  # decayed to the floor
    assert all(a > b for a, b in itertools.pairwise(lrs[79:]))  # decaying


def test_cosine_schedule():
    cfg = TrainingConfig(schedule="cosine", warmup_steps=0)
    lrs = [lr_at(s, 100, cfg) for s in range(101)]
    assert lrs[0] == pytest.approx(cfg.optim.lr)
    assert lrs[50] == pytest.approx(cfg.optim.lr * (1 + cfg.optim.min_lr_ratio) / 2)
    assert lrs[100] == pytest.approx(cfg.optim.lr * cfg.optim.min_lr_ratio)
    assert all(a >= b for a, b in itertools.pairwise(lrs))
