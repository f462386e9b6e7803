"""Exceptions the core raises at its input boundary (proposals, transfers)."""

from __future__ import annotations


class ProposalDropped(Exception):
    """The node cannot accept this proposal now; `reason` says why.

    Nothing was appended; the caller may retry later or elsewhere.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotLeader(ProposalDropped):
    """Only the leader accepts proposals. `leader_hint` is the leader this node
    last heard from in its current term, or None if it knows of none."""

    def __init__(self, leader_hint: str | None) -> None:
        super().__init__(f"not the leader (leader hint: {leader_hint})")
        self.leader_hint = leader_hint


class CompactedError(LookupError):
    """The requested index lies before the log's compaction marker."""
