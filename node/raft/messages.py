"""Messages nodes exchange. The core produces and consumes these; it never
sends or receives them itself (the driver owns the network).

Every message carries `sender`, `recipient` and `term` (the sender's view of
the term the message belongs to; see each class for the exceptions PreVote
needs). All are frozen, slotted dataclasses so they can be shared, hashed and
duplicated by a network without aliasing surprises.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.raft.entry import Entry


@dataclass(frozen=True, slots=True)
class VoteRequest:
    """RequestVote. For a pre-vote, `term` is the term the sender WOULD campaign
    in (its current term + 1); nobody changes term because of a pre-vote.

    `leader_transfer` is set when the sender campaigns because the leader told
    it to (TimeoutNow): voters then bypass their leader lease.
    """

    sender: str
    recipient: str
    term: int
    last_index: int
    last_term: int
    pre_vote: bool
    leader_transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    """A granted pre-vote echoes the request's (future) term so the
    pre-candidate does not discard it as stale; a rejection carries the
    voter's current term so a candidate behind on terms can catch up."""

    sender: str
    recipient: str
    term: int
    granted: bool
    pre_vote: bool


@dataclass(frozen=True, slots=True)
class AppendEntries:
    """Replicates `entries` following (prev_index, prev_term). With no entries
    it is a heartbeat that still proves log agreement up to prev_index, which
    is what lets the follower advance its commit index safely."""

    sender: str
    recipient: str
    term: int
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    leader_commit: int
    # The leader's wall clock when the message left, stamped by the driver (the core reads no
    # clock; 0 = not stamped). The receiving driver checks it: see RaftNode.distrust_leader.
    leader_time_ms: int = 0
    # The leader's current read round (ReadIndex, see RaftNode.read_index); echoed in the answer.
    read_round: int = 0


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """Answer to AppendEntries (and to a CatchUpNotice the follower already
    satisfies, or after it restored).

    success: the follower's log matches the leader's through `match_index`
    (and that prefix is persisted by the time this message is sent).
    not success: the log did not match at `rejected_index` (the request's
    prev_index); `reject_hint` is an index at or below which the leader should
    probe next (fast back-off: one round trip skips a whole conflicting term).
    A rejection with a term above the leader's tells a stale leader to step
    down.
    """

    sender: str
    recipient: str
    term: int
    success: bool
    match_index: int = 0
    rejected_index: int = 0
    reject_hint: int = 0
    # The read round of the AppendEntries answered: the follower still followed this leader's
    # term when that round began (0 for an answer to a CatchUpNotice).
    read_round: int = 0


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the leader tells an up-to-date follower to
    campaign at once, skipping PreVote and its lease checks."""

    sender: str
    recipient: str
    term: int


@dataclass(frozen=True, slots=True)
class CatchUpNotice:
    """The leader compacted the entries this follower needs. The follower must
    fetch committed history through `index` (whose entry has `index_term`)
    out of band, then call RaftNode.restore(index, index_term)."""

    sender: str
    recipient: str
    term: int
    index: int
    index_term: int


Message = VoteRequest | VoteResponse | AppendEntries | AppendResponse | TimeoutNow | CatchUpNotice
