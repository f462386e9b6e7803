"""`StoryCluster`: a cluster the test controls step by step, for scenario
tests that read as stories. Messages take exactly one tick; nothing fails
unless the story says so (cut links, crashes, disk loss, dropped messages).
It hosts the same SimNodes as the simulator and checks the same safety
invariants after every tick."""

from __future__ import annotations

import random
from typing import Any, Callable

from node.raft import Entry, EntryKind, Message, RaftConfig, RaftNode, Role
from tests.sim.app import HashChainApp, ReplicatedApp
from tests.sim.checkers import Invariants
from tests.sim.driver import SimNode


class StoryCluster:
    def __init__(self, node_count: int = 3, *, seed: int = 0, log_tail_entries: int = 1000, **options: Any) -> None:
        self._rng = random.Random(seed)
        self.ids = tuple(f"n{i}" for i in range(1, node_count + 1))
        self.nodes = {
            node_id: SimNode(RaftConfig(node_id, self.ids, **options), HashChainApp, log_tail_entries)
            for node_id in self.ids
        }
        self.invariants = Invariants()
        self._in_flight: list[Message] = []
        self._cut_links: set[tuple[str, str]] = set()
        # Return True to drop a message in flight (the story's selective faults).
        self.drop: Callable[[Message], bool] = lambda message: False
        self.ticks = 0
        for node in self.nodes.values():
            node.start(self._rng)

    # --- time ------------------------------------------------------------------

    def run(self, ticks: int = 1) -> None:
        """Deliver what is in flight, then tick every live node; `ticks` times."""
        for _ in range(ticks):
            self.ticks += 1
            in_flight, self._in_flight = self._in_flight, []
            for message in in_flight:
                node = self.nodes[message.recipient]
                if node.raft is not None and not self.drop(message):
                    node.raft.step(message)
                    node.process(self)
            for node in self.nodes.values():
                if node.raft is not None:
                    node.raft.tick()
                    node.process(self)
            self.invariants.check_step(self.nodes.values())

    def run_until(self, condition: Callable[[], bool], max_ticks: int = 500) -> int:
        """Run until `condition()` holds; returns the ticks it took."""
        for elapsed in range(max_ticks + 1):
            if condition():
                return elapsed
            self.run()
        raise AssertionError(f"condition not reached within {max_ticks} ticks")

    def elect(self, max_ticks: int = 500) -> str:
        self.run_until(lambda: self.leader() is not None, max_ticks)
        leader = self.leader()
        assert leader is not None
        return leader

    # --- faults ------------------------------------------------------------------

    def cut(self, sender: str, recipient: str) -> None:
        """`recipient` stops hearing `sender` (one direction only)."""
        self._cut_links.add((sender, recipient))

    def isolate(self, node_id: str) -> None:
        for other in self.ids:
            if other != node_id:
                self.cut(node_id, other)
                self.cut(other, node_id)

    def heal(self) -> None:
        self._cut_links.clear()
        self.drop = lambda message: False

    def crash(self, node_id: str) -> None:
        self.nodes[node_id].crash()

    def restart(self, node_id: str) -> None:
        self.nodes[node_id].start(self._rng)

    def lose_disk(self, node_id: str) -> None:
        self.nodes[node_id].crash()
        self.nodes[node_id].lose_disk()

    # --- clients and observation ---------------------------------------------

    def propose(self, node_id: str, data: bytes) -> int:
        node = self.nodes[node_id]
        assert node.raft is not None
        index = node.raft.propose(data)
        node.process(self)
        return index

    def leader(self) -> str | None:
        """The live leader with the highest term, if any."""
        leaders = [n.raft for n in self.nodes.values() if n.raft is not None and n.raft.role is Role.LEADER]
        return max(leaders, key=lambda raft: raft.term).node_id if leaders else None

    def raft(self, node_id: str) -> RaftNode:
        raft = self.nodes[node_id].raft
        assert raft is not None, f"{node_id} is down"
        return raft

    def applied_data(self, node_id: str) -> list[bytes]:
        """NORMAL entries committed cluster-wide up to this node's applied index."""
        applied = self.nodes[node_id].app.applied_index
        committed = self.invariants.committed
        return [committed[i].data for i in sorted(committed) if i <= applied and committed[i].kind is EntryKind.NORMAL]

    # --- NodeEnvironment -------------------------------------------------------

    def send(self, message: Message) -> None:
        if (message.sender, message.recipient) not in self._cut_links:
            self._in_flight.append(message)

    def applied(self, node: SimNode, entry: Entry) -> None:
        self.invariants.on_applied(node, entry)

    def caught_up(self, node: SimNode, index: int) -> None:
        self.invariants.on_caught_up(node, index)

    def catch_up_donor(self, node_id: str) -> ReplicatedApp | None:
        donor = self.nodes[node_id]
        return donor.app if donor.is_up else None
