import numpy as np
import pytest

from selfimprove.config import DataConfig, FilterConfig
from selfimprove.loop.filters import VoterLabels, agree, filter_labels, majority_vote
from selfimprove.tasks import get_task

COPY = get_task("copy")  # length rule: a label of difficulty n has n digits


def voter(labels, finished=None, min_prob=None, key_only=False) -> VoterLabels:
    n = len(labels)
    return VoterLabels(
        labels,
        np.ones(n, bool) if finished is None else np.array(finished),
        np.ones(n) if min_prob is None else np.array(min_prob, dtype=float),
        key_only,
    )


@pytest.mark.parametrize(
    ("candidates", "threshold", "kept"),
    [
        (["12", "12", "13"], 0.5, "12"),  # 2/3 >= 0.5
        (["12", "12", "13"], 0.7, None),  # 2/3 < 0.7
        (["12", "12", "12"], 1.0, "12"),  # unanimity
        (["12", "13"], 0.5, None),  # a tie keeps nothing
        (["12", "12", "13", "13", "14"], 0.4, None),  # tie at the top
        (["12", None, None], 0.5, None),  # abstentions count against: 1/3 < 0.5
        (["12", "12", None], 0.5, "12"),
        ([None, None], 0.5, None),
        (["12"], 0.5, "12"),  # one voter
    ],
)
def test_majority_vote(candidates, threshold, kept):
    assert majority_vote(candidates, threshold)[0] == kept


def test_length_filter_rejects_wrong_lengths_and_can_be_switched_off():
    voters = [voter(["123", "12", "1234"])]
    on = filter_labels(voters, [3, 3, 3], COPY, FilterConfig(length=True))
    assert [v.label for v in on] == ["123", None, None]
    off = filter_labels(voters, [3, 3, 3], COPY, FilterConfig(length=False))
    assert [v.label for v in off] == ["123", "12", "1234"]


def test_unfinished_labels_are_never_kept():
    voters = [voter(["123", "456"], finished=[True, False])]
    assert [v.label for v in filter_labels(voters, [3, 3], COPY, FilterConfig(length=False))] == ["123", None]


def test_confidence_filter_and_reported_confidence():
    voters = [voter(["11", "22"], min_prob=[0.95, 0.6]), voter(["11", "22"], min_prob=[0.97, 0.99])]
    verdicts = filter_labels(voters, [2, 2], COPY, FilterConfig(voters=2, min_confidence=0.9, vote_threshold=1.0))
    assert [v.label for v in verdicts] == ["11", None]  # voter 0 abstains on the second prompt
    assert verdicts[0].confidence == pytest.approx(0.95) and verdicts[0].votes == 2


def test_filters_compose_vote_after_length():
    # Voter 2 gives a too-long label: with the length filter it abstains, and 2 of 3 agree.
    voters = [voter(["55"]), voter(["55"]), voter(["555"])]
    cfg = FilterConfig(voters=3, vote_threshold=0.6)
    assert filter_labels(voters, [2], COPY, cfg)[0].label == "55"
    voters = [voter(["55"]), voter(["56"]), voter(["555"])]
    assert filter_labels(voters, [2], COPY, cfg)[0].label is None  # 1-1 tie after the length filter


def test_labels_with_the_same_vote_key_vote_together():
    # 123 * 45 in multiplication's format: `321*54=` -> partial products, then "=" and the product (the vote key).
    task = get_task("multiplication")
    right, wrong_chain, wrong_product = "5160+02940=53550", "5160+02941=53550", "5160+02940=53551"
    assert task.check("321*54=", right) and not task.check("321*54=", wrong_chain)
    voters = [voter([right]), voter([wrong_chain]), voter([wrong_product])]
    verdict = filter_labels(voters, [(3, 2)], task, FilterConfig(voters=3, vote_threshold=0.5))[0]
    # The product 53550 wins 2 of 3 (each whole label alone has 1 vote: a 3-way tie that would keep nothing).
    assert verdict.votes == 2
    assert verdict.label == right  # of the two labels with that product, each given once: the first
    assert majority_vote([right, wrong_chain, wrong_product], 0.5)[0] is None  # without the key: a tie


def test_the_kept_label_is_the_most_common_one_with_the_winning_key():
    task = get_task("multiplication")
    right, wrong_chain, wrong_product = "5160+02940=53550", "5160+02941=53550", "5160+02940=53551"
    candidates = [wrong_chain, right, right, wrong_product]
    assert majority_vote(candidates, 0.5, key=task.vote_key) == (right, 3)  # 3 of 4 give 53550; 2 of them `right`
    assert majority_vote([wrong_chain, right, wrong_product, "0000+00000=00000"], 0.5, key=task.vote_key) == (
        wrong_chain,
        2,
    )  # 1-1 between the labels with the winning product: the first
    assert majority_vote([right, wrong_product], 0.5, key=task.vote_key) == (None, 1)  # 1-1 between products


def test_presentations_agree_or_the_voter_abstains():
    """One voter, two presentations of three copy prompts (labels already mapped back): the first agree, the second
    disagree (a tie), the third's second presentation fails the length rule (an abstention). Unanimity keeps only
    the first; a threshold of 0.5 keeps the third too (1 of 2, no other label), never the tie."""
    views = [voter(["123", "456", "789"], min_prob=[0.9, 0.9, 0.9]), voter(["123", "457", "78"], min_prob=[0.95, 1, 1])]
    agreed, agreeing = agree(views, [[3, 3, 3]] * 2, COPY, FilterConfig(presentations=2, presentation_threshold=1.0))
    assert list(agreed.finished) == [True, False, False]
    assert agreed.labels[0] == "123" and agreed.min_prob[0] == pytest.approx(0.9)  # the least of the agreeing
    assert agreeing.tolist() == [2, 0, 0]
    agreed, agreeing = agree(views, [[3, 3, 3]] * 2, COPY, FilterConfig(presentations=2, presentation_threshold=0.5))
    assert [agreed.labels[i] if agreed.finished[i] else None for i in range(3)] == ["123", None, "789"]
    assert agreeing.tolist() == [2, 0, 1]


def test_a_rewrite_of_another_chain_votes_by_its_product_and_is_never_kept():
    """Multiplication asked as a*b and as b*a (12 x 3 = 36 and 3 x 12, reversed): the chains differ, the products
    (`=630`) must agree. Worked by hand: `21*3=` -> `630=630`; `3*21=` -> `60+030=630`."""
    mul = get_task("multiplication")
    asked_at = [[(2, 1)] * 4, [(1, 2)] * 4]
    prompt_chains = voter(["630=630", "630=630", "630=630", "63=63"])  # the last: too short for (2, 1)
    swapped_chains = voter(["60+030=630", "60+030=730", "60+03=630", "60+030=630"], key_only=True)
    # 1: both give 630; 2: 730 against 630; 3: the rewrite's chain fails the length rule of (1, 2); 4: presentation 0
    # fails its own
    agreed, agreeing = agree([prompt_chains, swapped_chains], asked_at, mul, FilterConfig(presentations=2))
    assert [agreed.labels[i] if agreed.finished[i] else None for i in range(4)] == ["630=630", None, None, None]
    assert agreeing.tolist() == [2, 0, 0, 0]
    # at 0.5 one presentation is enough, but only a whole label is kept: the fourth prompt's product came from b*a
    # alone, so it is still dropped; the third is kept on presentation 0's word
    agreed, _ = agree(
        [prompt_chains, swapped_chains], asked_at, mul, FilterConfig(presentations=2, presentation_threshold=0.5)
    )
    assert [agreed.labels[i] if agreed.finished[i] else None for i in range(4)] == ["630=630", None, "630=630", None]


def test_agreed_labels_then_vote_among_voters():
    """Two voters, each agreed from its presentations: voter 1's presentations disagree on the prompt, so it
    abstains, and the voters' vote at 0.5 keeps voter 0's label (1 of 2)."""
    config = FilterConfig(voters=2, presentations=2, vote_threshold=0.5)
    first, _ = agree([voter(["12"]), voter(["12"])], [[2], [2]], COPY, config)
    second, _ = agree([voter(["12"]), voter(["21"])], [[2], [2]], COPY, config)
    assert [v.label for v in filter_labels([first, second], [2], COPY, config)] == ["12"]


def test_the_consistency_rule_drops_a_scratchpad_whose_sums_disagree_and_can_be_switched_off():
    scratchpad = get_task("forward_addition", DataConfig(task="forward_addition", scratchpad=True))
    voters = [voter(["150=51", "150=52"])]
    on = filter_labels(voters, [2, 2], scratchpad, FilterConfig())
    assert [v.label for v in on] == ["150=51", None]
    off = filter_labels(voters, [2, 2], scratchpad, FilterConfig(consistency=False))
    assert [v.label for v in off] == ["150=51", "150=52"]
