"""Which self-generated labels to keep: validity (EOS, the task's length and consistency rules, confidence), then
a majority vote.

Every voter's label first passes the per-label checks; a label that fails them is an abstention.
Labels vote together when the task gives them the same vote key (multiplication: the same product).
The vote keeps the most common key when its share of *all* voters is at least `vote_threshold` and no
other key has as many votes (a tie keeps nothing); the kept label is the key's most common label.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from selfimprove.config import FilterConfig
from selfimprove.tasks import Difficulty, Task


@dataclass
class VoterLabels:
    labels: Sequence[str]
    finished: np.ndarray  # bool per prompt: EOS ended the label
    min_prob: np.ndarray  # probability of the label's least likely token
    # answers to a rewrite of another difficulty (`Presentation.difficulty`): they vote by their key alone, and are
    # never the kept label
    key_only: bool = False


@dataclass
class Verdict:
    label: str | None  # the kept label, None when the prompt is dropped
    votes: int  # voters that gave the kept label (or the top label when dropped)
    confidence: float  # least min_prob among the voters that voted for it (gave a label of its vote key)


def valid_labels(
    voter: VoterLabels, difficulties: Sequence[Difficulty], task: Task, cfg: FilterConfig
) -> list[str | None]:
    """The voter's labels, None where a per-label filter rejects it."""
    out: list[str | None] = []
    for i, label in enumerate(voter.labels):
        ok = bool(voter.finished[i])
        ok = ok and (not cfg.length or task.length_ok(difficulties[i], label))
        ok = ok and (not cfg.consistency or task.consistent(label))
        ok = ok and float(voter.min_prob[i]) >= cfg.min_confidence
        out.append(label if ok else None)
    return out


def majority_vote(
    candidates: Sequence[str | None], threshold: float, key: Callable[[str], str] = str
) -> tuple[str | None, int]:
    """The kept label and its votes; candidates are one label (or None, an abstention) per voter, and
    labels with the same `key` vote together."""
    keys = [key(c) if c is not None else None for c in candidates]
    counts = Counter(k for k in keys if k is not None).most_common(2)
    if not counts:
        return None, 0
    winner, votes = counts[0]
    tied = len(counts) > 1 and counts[1][1] == votes
    if tied or votes / len(candidates) < threshold:
        return None, votes
    label = Counter(c for c, k in zip(candidates, keys, strict=True) if k == winner).most_common(1)[0][0]
    return label, votes


def vote(
    candidates: Sequence[str | None], min_probs: Sequence[float], threshold: float, key: Callable[[str], str]
) -> tuple[str | None, int, float]:
    """`majority_vote`, and the kept label's confidence: the least `min_probs` of the candidates that gave its
    vote key (0.0 when nothing is kept)."""
    label, votes = majority_vote(candidates, threshold, key)
    if label is None:
        return None, votes, 0.0
    winner = key(label)
    return (
        label,
        votes,
        min(p for c, p in zip(candidates, min_probs, strict=True) if c is not None and key(c) == winner),
    )


def filter_labels(
    voters: Sequence[VoterLabels], difficulties: Sequence[Difficulty], task: Task, cfg: FilterConfig
) -> list[Verdict]:
    per_voter = [valid_labels(v, difficulties, task, cfg) for v in voters]
    return [
        Verdict(*vote(candidates, [float(v.min_prob[i]) for v in voters], cfg.vote_threshold, task.vote_key))
        for i, candidates in enumerate(zip(*per_voter, strict=True))
    ]


def agree(
    presentations: Sequence[VoterLabels],
    difficulties: Sequence[Sequence[Difficulty]],
    task: Task,
    cfg: FilterConfig,
) -> tuple[VoterLabels, np.ndarray]:
    """One voter's labels from its answers to every presentation of the prompts (each already mapped back to the
    prompt's, or `key_only`), checked at `difficulties` (one list per presentation: a rewrite's own where it has
    one): per prompt, the per-label checks, then a vote among the presentations at `cfg.presentation_threshold`; a
    prompt they do not agree on is an abstention, and so is one whose agreed key no whole label gave. Also the number
    of presentations per prompt that gave the agreed label's vote key (0 where none was agreed)."""
    per_view = [valid_labels(view, at, task, cfg) for view, at in zip(presentations, difficulties, strict=True)]
    count = len(presentations[0].labels)
    labels, finished = [""] * count, np.zeros(count, dtype=bool)
    min_prob, agreeing = np.zeros(count, dtype=np.float32), np.zeros(count, dtype=np.int64)
    for i, candidates in enumerate(zip(*per_view, strict=True)):
        probs = [float(view.min_prob[i]) for view in presentations]
        label, votes, confidence = vote(candidates, probs, cfg.presentation_threshold, task.vote_key)
        if label is None:
            continue
        whole = [c for c, view in zip(candidates, presentations, strict=True) if not view.key_only and c is not None]
        whole = [c for c in whole if task.vote_key(c) == task.vote_key(label)]
        if whole:  # the kept label is one a presentation gave whole: the most common of its key
            labels[i] = Counter(whole).most_common(1)[0][0]
            finished[i], min_prob[i], agreeing[i] = True, confidence, votes
    return VoterLabels(labels, finished, min_prob), agreeing
