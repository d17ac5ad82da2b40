import itertools

import pytest

from selfimprove.config import TrainingConfig
from selfimprove.loop.curriculum import Curriculum
from selfimprove.loop.train import lr_at, peak_lr, warmup_steps
from selfimprove.tasks.difficulty import NUMBERS, PAIRS


def lengths(schedule="linear", step=1, base_max=10, lookahead=3, advance=0.0):
    return Curriculum(NUMBERS, 1, 1, base_max, schedule, step, 0.99, lookahead, advance)


def pairs(schedule="linear", step=1, base_max=5, lookahead=1, advance=0.0):
    return Curriculum(PAIRS, 1, 1, base_max, schedule, step, 0.99, lookahead, advance)


def test_linear_lengths():
    assert lengths().next_targets([], {}) == [11]
    assert lengths().next_targets([11, 12], {}) == [13]
    assert lengths(step=3).next_targets([11, 12], {}) == [13, 14, 15]


def test_accelerated_lengths_extend_over_accurate_ones():
    accuracy = {10: 1.0, 11: 0.995, 12: 0.99, 13: 0.98, 14: 1.0}
    assert lengths("accelerated").next_targets([], accuracy) == [11, 12]  # stops at the first below threshold
    assert lengths("accelerated").next_targets([11, 12], accuracy) == [13]  # none good: the next alone
    assert lengths("accelerated").next_targets([11, 12, 13, 14], accuracy) == [15]  # unmeasured: the next alone


def test_the_newest_length_is_labelled_again_until_it_scores_the_advance_threshold():
    below, above = {10: 1.0, 11: 0.97, 12: 0.99, 13: 0.99}, {10: 1.0, 11: 0.98, 12: 0.99, 13: 0.99}
    assert lengths(advance=0.98).next_targets([11], below) == [11]  # 11 at 0.97: again
    assert lengths(advance=0.98).next_targets([11, 11], above) == [12]  # 11 at 0.98: on to 12
    assert lengths(advance=0.0).next_targets([11], below) == [12]  # 0: always on
    assert lengths(advance=0.98).next_targets([], {10: 0.5}) == [11]  # round 1 labels past the base, whatever it scores
    # the accelerated schedule extends over accurate lengths only from a newest length that passed
    assert lengths("accelerated", advance=0.98).next_targets([11], below) == [11]
    assert lengths("accelerated", advance=0.98).next_targets([11], above) == [12, 13]
    assert lengths(step=2, advance=0.98).next_targets([11, 12], {11: 1.0, 12: 0.9}) == [12]  # the newest step alone


def test_a_pair_step_is_labelled_again_when_either_of_its_pairs_scores_below():
    accuracy = {(1, 6): 1.0, (6, 1): 0.9}
    assert pairs(advance=0.98).next_targets([(1, 6), (6, 1)], accuracy) == [(1, 6), (6, 1)]
    assert pairs(advance=0.98).next_targets([(1, 6), (6, 1)], {(1, 6): 1.0, (6, 1): 0.99}) == [(2, 6), (6, 2)]


def test_pairs_come_in_the_papers_order():
    """Base 1-5 x 1-5, then (1,6)&(6,1), (2,6)&(6,2), ..., (6,6), then the 7s."""
    c, trained, rounds = pairs(), [], []
    for _ in range(8):
        targets = c.next_targets(trained, {})
        rounds.append(targets)
        trained += targets
    assert rounds == [
        [(1, 6), (6, 1)],
        [(2, 6), (6, 2)],
        [(3, 6), (6, 3)],
        [(4, 6), (6, 4)],
        [(5, 6), (6, 5)],
        [(6, 6)],
        [(1, 7), (7, 1)],
        [(2, 7), (7, 2)],
    ]
    assert pairs(step=2).next_targets([(1, 6), (6, 1)], {}) == [(2, 6), (6, 2), (3, 6), (6, 3)]


def test_accelerated_pairs_take_every_consecutive_step_above_threshold():
    accuracy = {(1, 6): 1.0, (6, 1): 0.995, (2, 6): 1.0, (6, 2): 0.99, (3, 6): 0.999, (6, 3): 0.5}
    assert pairs("accelerated").next_targets([], accuracy) == [(1, 6), (6, 1), (2, 6), (6, 2)]
    # (6, 3) is below the threshold: the step (3,6)&(6,3) is not taken, nor anything after it
    assert pairs("accelerated").next_targets([(1, 6), (6, 1), (2, 6), (6, 2)], accuracy) == [(3, 6), (6, 3)]


def test_evaluated_difficulties_reach_one_size_past_the_largest_trained():
    assert lengths().eval_difficulties([11, 12]) == list(range(1, 16))
    points = pairs().eval_difficulties([(1, 6), (6, 1)])
    assert len(points) == 49 and set(points) == {(a, b) for a in range(1, 8) for b in range(1, 8)}
    assert pairs().eval_difficulties([]) == [(a, b) for n in range(1, 7) for (a, b) in pairs().of_size(n)]


def test_newest_and_next_step():
    assert lengths().newest([]) == [10] and lengths().newest([11, 12]) == [12]
    assert pairs().newest([(1, 6), (6, 1), (2, 6), (6, 2)]) == [(2, 6), (6, 2)]
    assert pairs().newest([]) == [(5, 5)]
    assert pairs().next_step([(1, 6), (6, 1)]) == [(2, 6), (6, 2)]


def test_reach_needs_every_difficulty_up_to_it():
    c = lengths()
    assert c.reach({1: 1.0, 2: 0.99, 3: 0.97, 4: 1.0}, 0.98) == 2
    assert c.reach({1: 0.5}, 0.98) == 0
    assert c.reach({n: 1.0 for n in range(1, 17)}, 0.98) == 16


def test_reach_over_pairs_is_the_largest_full_square():
    accuracy = {(a, b): 1.0 for a in range(1, 6) for b in range(1, 6)}
    assert pairs().reach(accuracy, 0.98) == 5
    accuracy[(4, 2)] = 0.9  # below the threshold: every (a, b) with a, b <= 4 is no longer above it
    assert pairs().reach(accuracy, 0.98) == 3
    accuracy = {(a, b): 1.0 for a in range(1, 8) for b in range(1, 8) if (a, b) != (7, 1)}
    assert pairs().reach(accuracy, 0.98) == 6  # (7, 1) unmeasured counts as 0


def test_reach_counts_from_the_smallest_difficulty():
    nodes = Curriculum(NUMBERS, 6, 6, 10)  # maze by node count at 5 hops: 6 nodes at least
    assert nodes.reach({6: 1.0, 7: 1.0, 8: 0.5}, 0.98) == 7
    assert nodes.reach({6: 0.5}, 0.98) == 0


def test_furthest_size_bounds_what_a_run_can_reach():
    assert lengths(lookahead=3).furthest_size(8) == 10 + 8 + 3
    assert lengths("accelerated", lookahead=3).furthest_size(8) == 10 + 9 * 3
    assert pairs().furthest_size(6) == 6 + 1  # six steps end at (6, 6); evaluation goes one side further
    assert pairs().furthest_size(7) == 7 + 1
    assert pairs().furthest_size(0) == 5 + 1


def test_wsd_schedule():
    cfg = TrainingConfig(schedule="wsd", warmup_steps=10, decay_fraction=0.2)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    peak = cfg.optim.lr
    assert lrs[0] == pytest.approx(peak / 10) and lrs[9] == pytest.approx(peak)
    assert all(lr == peak for lr in lrs[10:80])  # stable
    assert lrs[-1] == pytest.approx(peak * cfg.optim.min_lr_ratio)  # decayed to the floor
    assert all(a > b for a, b in itertools.pairwise(lrs[79:]))  # decaying


def test_rounds_warm_up_over_their_own_steps():
    cfg = TrainingConfig(warmup_steps=10, round_warmup_steps=4)
    assert (warmup_steps(cfg, 0), warmup_steps(cfg, 1), warmup_steps(cfg, 7)) == (10, 4, 4)
    assert warmup_steps(TrainingConfig(warmup_steps=10, round_warmup_steps=None), 3) == 10  # the base stage's
    peak = cfg.optim.lr
    lrs = [lr_at(s, 100, cfg, warmup_steps(cfg, 1)) for s in range(6)]
    assert lrs == pytest.approx([peak / 4, peak / 2, 3 * peak / 4, peak, peak, peak])
    assert lr_at(0, 100, cfg, 0) == peak  # no warmup: the peak from the first step


def test_rounds_train_at_their_own_peak_learning_rate():
    cfg = TrainingConfig(warmup_steps=0, round_lr=5e-4)  # optim.lr: 1e-3, min_lr_ratio: 0.1
    assert (peak_lr(cfg, 0), peak_lr(cfg, 1), peak_lr(cfg, 9)) == (1e-3, 5e-4, 5e-4)
    assert peak_lr(TrainingConfig(), 3) == 1e-3  # null: the base stage's
    lrs = [lr_at(s, 100, cfg, 0, peak_lr(cfg, 1)) for s in range(100)]
    assert lrs[0] == lrs[79] == 5e-4 and lrs[-1] == pytest.approx(5e-5)  # WSD from the round's own peak


def test_cosine_schedule():
    cfg = TrainingConfig(schedule="cosine", warmup_steps=0)
    lrs = [lr_at(s, 100, cfg) for s in range(101)]
    assert lrs[0] == pytest.approx(cfg.optim.lr)
    assert lrs[50] == pytest.approx(cfg.optim.lr * (1 + cfg.optim.min_lr_ratio) / 2)
    assert lrs[100] == pytest.approx(cfg.optim.lr * cfg.optim.min_lr_ratio)
    assert all(a >= b for a, b in itertools.pairwise(lrs))
