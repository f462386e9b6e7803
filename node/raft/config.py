"""`RaftConfig`: one node's identity, cluster membership and every limit the
core enforces. Validated on construction, so the core never runs with a
nonsensical limit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True, slots=True)
class RaftConfig:
    node_id: str
    voters: tuple[str, ...]
    # A follower campaigns after a random timeout in [election_tick, 2*election_tick)
    # ticks without hearing from a leader; the leader's CheckQuorum period and
    # the leader lease are election_tick long.
    election_tick: int = 10
    heartbeat_tick: int = 1
    # Flow control: one AppendEntries carries at most this many entries and,
    # beyond its first entry, at most this many payload bytes.
    max_append_entries: int = 64
    max_append_bytes: int = 1 << 20
    # Appends in flight (sent, not yet acknowledged) per follower while
    # replicating; a probing follower has at most one.
    max_inflight_appends: int = 8
    # The leader refuses proposals while this many entries are uncommitted.
    max_uncommitted_entries: int = 1024
    # Each Ready carries at most this many messages and committed entries;
    # the rest wait for the next Ready.
    max_ready_messages: int = 1024
    max_ready_committed: int = 256
    # Linearizable reads waiting for a quorum's confirmation (read_index); more are refused.
    max_pending_reads: int = 4096
    pre_vote: bool = True
    check_quorum: bool = True
    # Run on every NORMAL entry before a follower appends it and on every
    # proposal; must be pure and deterministic so all honest nodes agree.
    entry_validator: Callable[[bytes], bool] | None = None
    # Run on every NORMAL entry a follower is offered that is not yet known to be committed
    # (index above the append's leader_commit). Unlike entry_validator it may consult the
    # driver's clock, so honest nodes may disagree: a refusal makes the follower take only the
    # entries before it and withdraw the leader's lease for the rest of the term (it keeps
    # taking what the leader says is committed, but no longer renews the lease), so that a
    # leader whose time a majority does not share is voted out. Refusing is like losing the
    # message: safety never depends on it. node/replica.py checks the batch time against the
    # node's clock here (docs/ARCHITECTURE.md, "Block time").
    entry_timely: Callable[[bytes], bool] | None = None
    # False for a node that lost its disk: it may have forgotten a vote it
    # cast and entries it acknowledged, so it must never vote or campaign
    # again (re-admitting it as a voter is a membership change, which the
    # core does not implement). It still replicates and its acks still count:
    # a commit quorum always intersects a quorum of nodes that CAN vote in a
    # node that really holds the entry.
    can_vote: bool = True

    def __post_init__(self) -> None:
        if not self.voters:
            raise ValueError("voters must not be empty")
        if len(set(self.voters)) != len(self.voters):
            raise ValueError(f"duplicate voter in {self.voters}")
        if self.node_id not in self.voters:
            raise ValueError(f"node_id {self.node_id!r} is not among voters {self.voters}")
        if self.heartbeat_tick < 1:
            raise ValueError("heartbeat_tick must be >= 1")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election_tick must exceed heartbeat_tick")
        for name in (
            "max_append_entries",
            "max_append_bytes",
            "max_inflight_appends",
            "max_uncommitted_entries",
            "max_ready_messages",
            "max_ready_committed",
            "max_pending_reads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(v for v in self.voters if v != self.node_id)
