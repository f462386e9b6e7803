"""A simulated network: per-message drop, duplication and delay (which
reorders), plus directed link cuts for partitions, including asymmetric ones
(A hears B while B does not hear A). All randomness comes from the run's rng."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from node.raft import Message


@dataclass(slots=True)
class NetworkFaults:
    drop_rate: float = 0.0
    duplicate_rate: float = 0.0
    max_delay_ticks: int = 1


class SimNetwork:
    def __init__(self, rng: random.Random, faults: NetworkFaults) -> None:
        self._rng = rng
        self.faults = faults
        self._arrivals: defaultdict[int, list[Message]] = defaultdict(list)
        self._cut_links: set[tuple[str, str]] = set()  # (sender, recipient) pairs that lose everything

    def send(self, message: Message, now_tick: int) -> None:
        if (message.sender, message.recipient) in self._cut_links:
            return
        if self._rng.random() < self.faults.drop_rate:
            return
        copies = 2 if self._rng.random() < self.faults.duplicate_rate else 1
        for _ in range(copies):
            self._arrivals[now_tick + self._rng.randint(1, self.faults.max_delay_ticks)].append(message)

    def arrivals(self, now_tick: int) -> list[Message]:
        """Messages delivered at this tick, in random order."""
        due = self._arrivals.pop(now_tick, [])
        self._rng.shuffle(due)
        return due

    def cut(self, sender: str, recipient: str) -> None:
        self._cut_links.add((sender, recipient))

    def heal(self) -> None:
        self._cut_links.clear()

    @property
    def partitioned(self) -> bool:
        return bool(self._cut_links)
