"""Safety invariants, checked after every simulation step.

- Election safety: at most one leader per term, ever.
- State machine safety: every node that applies index i applies the same
  entry, and a committed entry never changes or disappears, across crashes,
  disk loss and catch-up (a global committed history is the reference).
- Leader completeness: a newly elected leader holds every entry known to be
  committed (checked against its log, unless compacted: compacted entries
  were applied and checked when applied).
- App agreement: equal applied index means equal app digest.
"""

from __future__ import annotations

from typing import Iterable

from node.raft import Entry, Role
from tests.sim.driver import SimNode


class InvariantViolation(AssertionError):
    pass


class Invariants:
    def __init__(self) -> None:
        self._leader_by_term: dict[int, str] = {}
        self._committed: dict[int, Entry] = {}
        self._digest_by_index: dict[int, bytes] = {}

    @property
    def leaders_elected(self) -> int:
        return len(self._leader_by_term)

    @property
    def committed(self) -> dict[int, Entry]:
        return self._committed

    def on_applied(self, node: SimNode, entry: Entry) -> None:
        known = self._committed.setdefault(entry.index, entry)
        if known != entry:
            raise InvariantViolation(f"{node.node_id} applied {entry} but {known} was committed at that index")
        self._check_digest(node)

    def on_caught_up(self, node: SimNode, index: int) -> None:
        if node.app.applied_index != index:
            raise InvariantViolation(f"{node.node_id} caught up to {index} but app is at {node.app.applied_index}")
        self._check_digest(node)

    def _check_digest(self, node: SimNode) -> None:
        index, digest = node.app.applied_index, node.app.digest()
        known = self._digest_by_index.setdefault(index, digest)
        if known != digest:
            raise InvariantViolation(f"{node.node_id} app digest differs from another node's at applied index {index}")

    def check_step(self, nodes: Iterable[SimNode]) -> None:
        for node in nodes:
            raft = node.raft
            if raft is None or raft.role is not Role.LEADER:
                continue
            known_leader = self._leader_by_term.get(raft.term)
            if known_leader is None:
                self._leader_by_term[raft.term] = node.node_id
                self._check_leader_completeness(node)
            elif known_leader != node.node_id:
                raise InvariantViolation(f"two leaders in term {raft.term}: {known_leader} and {node.node_id}")

    def _check_leader_completeness(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None
        for index, entry in self._committed.items():
            if index < raft.first_index - 1:
                continue
            if entry.term > raft.term:
                # Committed by a later term's leader: a leader of an earlier term that is only
                # now seen (it resumed from a pause into its old election) cannot hold it, and
                # Raft does not ask it to; it is deposed as soon as it hears the later term.
                continue
            if raft.log_term(index) != entry.term:
                raise InvariantViolation(
                    f"leader {node.node_id} (term {raft.term}) lacks committed {entry}: has term {raft.log_term(index)}"
                )
