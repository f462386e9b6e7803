"""Majority arithmetic: the commit index a set of replicas supports and the
outcome of an election. Pure functions of their inputs."""

from __future__ import annotations

import enum
from typing import Iterable, Mapping


class VoteResult(enum.Enum):
    PENDING = "pending"
    WON = "won"
    LOST = "lost"


def quorum_index(match_indices: Iterable[int], quorum: int) -> int:
    """Largest index replicated on at least `quorum` of the given replicas."""
    ordered = sorted(match_indices, reverse=True)
    return ordered[quorum - 1]


def tally(votes: Mapping[str, bool], voter_count: int, quorum: int) -> VoteResult:
    granted = sum(votes.values())
    if granted >= quorum:
        return VoteResult.WON
    if len(votes) - granted > voter_count - quorum:
        return VoteResult.LOST
    return VoteResult.PENDING
