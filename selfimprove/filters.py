"""Which self-generated labels to keep: validity (EOS, length, confidence), then a majority vote.

Every voter's label first passes the per-label checks; a label that fails them is an abstention.
The vote keeps the most common label when its share of *all* voters is at least `vote_threshold`
and no other label has as many votes (a tie keeps nothing).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from selfimprove.config import FilterConfig


@dataclass
class VoterLabels:
    labels: Sequence[str]
    finished: np.ndarray  # bool per prompt: EOS ended the label
    min_prob: np.ndarray  # probability of the label's least likely token


@dataclass
class Verdict:
    label: str | None  # the kept label, None when the prompt is dropped
    votes: int  # voters that gave the kept label (or the top label when dropped)
    confidence: float  # least min_prob among the voters that gave it


def valid_labels(voter: VoterLabels, expected_length: Sequence[int], cfg: FilterConfig) -> list[str | None]:
    """The voter's labels, None where a per-label filter rejects it."""
    out: list[str | None] = []
    for i, label in enumerate(voter.labels):
        ok = bool(voter.finished[i])
        ok = ok and (not cfg.length or len(label) == expected_length[i])
        ok = ok and float(voter.min_prob[i]) >= cfg.min_confidence
        out.append(label if ok else None)
    return out


def majority_vote(candidates: Sequence[str | None], threshold: float) -> tuple[str | None, int]:
    """The kept label and its votes; candidates are one label (or None, an abstention) per voter."""
    counts = Counter(c for c in candidates if c is not None).most_common(2)
    if not counts:
        return None, 0
    label, votes = counts[0]
    tied = len(counts) > 1 and counts[1][1] == votes
    if tied or votes / len(candidates) < threshold:
        return None, votes
    return label, votes


def filter_labels(voters: Sequence[VoterLabels], expected_length: Sequence[int], cfg: FilterConfig) -> list[Verdict]:
    per_voter = [valid_labels(v, expected_length, cfg) for v in voters]
    verdicts = []
    for i, candidates in enumerate(zip(*per_voter, strict=True)):
        label, votes = majority_vote(candidates, cfg.vote_threshold)
        agreeing = [float(v.min_prob[i]) for v, c in zip(voters, candidates, strict=True) if c == label]
        verdicts.append(Verdict(label, votes, min(agreeing) if label is not None else 0.0))
    return verdicts
