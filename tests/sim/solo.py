"""`Solo`: one RaftNode driven by hand, for focused unit tests. The test plays
every other node by feeding messages; `Solo` processes Readys in contract
order (persist, collect messages, apply, advance) and returns what was sent."""

from __future__ import annotations

import random
from typing import Any, Iterable

from node.raft import (
    Entry,
    EntryKind,
    HardState,
    MemoryRaftStorage,
    Message,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
    VoteRequest,
    VoteResponse,
)


class Solo:
    def __init__(
        self,
        node_id: str = "n1",
        voters: tuple[str, ...] = ("n1", "n2", "n3"),
        *,
        log_terms: Iterable[int] = (),
        term: int = 0,
        vote: str | None = None,
        seed: int = 0,
        **options: Any,
    ) -> None:
        """`log_terms[i]` is the term of the pre-existing entry at index i + 1."""
        self.storage = MemoryRaftStorage()
        self.storage.append([Entry(i + 1, t, EntryKind.NORMAL, b"e%d" % (i + 1)) for i, t in enumerate(log_terms)])
        self.storage.set_hard_state(HardState(term, vote, 0))
        self.config = RaftConfig(node_id, voters, **options)
        self.raft = RaftNode(self.config, self.storage, random.Random(seed))
        self.applied: list[Entry] = []
        self.readys: list[Ready] = []

    @property
    def node_id(self) -> str:
        return self.config.node_id

    def flush(self) -> list[Message]:
        sent: list[Message] = []
        while (ready := self.raft.ready()) is not None:
            self.readys.append(ready)
            self.storage.append(ready.entries)
            if ready.hard_state is not None:
                self.storage.set_hard_state(ready.hard_state)
            sent.extend(ready.messages)
            self.applied.extend(ready.committed)
            self.raft.advance(ready)
        return sent

    def step(self, message: Message) -> list[Message]:
        self.raft.step(message)
        return self.flush()

    def tick(self, times: int = 1) -> list[Message]:
        sent: list[Message] = []
        for _ in range(times):
            self.raft.tick()
            sent.extend(self.flush())
        return sent

    def tick_until(self, role: Role, max_ticks: int = 100) -> list[Message]:
        """Tick until the node reaches `role`; returns everything sent meanwhile."""
        sent: list[Message] = []
        for _ in range(max_ticks):
            if self.raft.role is role:
                return sent
            sent.extend(self.tick())
        raise AssertionError(f"{self.node_id} did not become {role} within {max_ticks} ticks")

    def grant_votes(self, requests: Iterable[Message]) -> list[Message]:
        """Every peer grants every (pre-)vote request in `requests`."""
        sent: list[Message] = []
        for request in requests:
            if isinstance(request, VoteRequest) and request.sender == self.node_id:
                sent.extend(self.step(VoteResponse(request.recipient, self.node_id, request.term, True, request.pre_vote)))
        return sent

    def become_leader(self) -> list[Message]:
        """Campaign (through PreVote if enabled) with every peer granting;
        returns the messages the new leader sent."""
        sent = self.tick_until(Role.PRE_CANDIDATE if self.config.pre_vote else Role.CANDIDATE)
        while self.raft.role is not Role.LEADER:
            sent = self.grant_votes(sent)
        return sent


def of_type(messages: Iterable[Message], kind: type, recipient: str | None = None) -> list[Any]:
    return [m for m in messages if isinstance(m, kind) and (recipient is None or m.recipient == recipient)]


def route(solos: dict[str, Solo], messages: Iterable[Message], drop: Iterable[str] = ()) -> int:
    """Deliver `messages` and everything they cause among `solos` until the
    network is quiet; messages to ids in `drop` (or unknown ids) are lost.
    Returns how many messages were delivered."""
    pending, delivered, lost = list(messages), 0, set(drop)
    while pending:
        message = pending.pop(0)
        if message.recipient in lost or message.recipient not in solos:
            continue
        delivered += 1
        pending.extend(solos[message.recipient].step(message))
    return delivered
