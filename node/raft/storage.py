"""Durable Raft state as the core sees it: the `RaftStorage` protocol and an
in-memory implementation.

The core only READS storage. The driver performs every write, in the order the
Ready contract prescribes (see node.raft.ready). Indices are 1-based; index 0
with term 0 is the implicit empty-log marker.

The log is a contiguous run of entries [first_index, last_index] preceded by a
compaction marker at first_index - 1 whose term is still known (so the leader
can send `prev_term` for the first retained entry). An empty log has
first_index == last_index + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from node.raft.entry import Entry
from node.raft.errors import CompactedError


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash besides the log: the current term, the vote
    cast in it (Raft's one-vote-per-term rule depends on this), and the
    commit index (an optimisation: committed entries can be re-applied sooner
    after restart)."""

    term: int = 0
    vote: str | None = None
    commit: int = 0


class RaftStorage(Protocol):
    def hard_state(self) -> HardState:
        """The last HardState written with set_hard_state (HardState() if none)."""
        ...

    def first_index(self) -> int:
        """Index of the first retained entry: compaction marker index + 1."""
        ...

    def last_index(self) -> int:
        """Index of the last entry, or the marker index if no entry is retained."""
        ...

    def term(self, index: int) -> int:
        """Term of the entry at `index`, for first_index() - 1 <= index <= last_index()
        (at first_index() - 1 it is the marker's term). Raises CompactedError
        below that range and IndexError above it."""
        ...

    def entries(self, lo: int, hi: int) -> Sequence[Entry]:
        """Entries with lo <= index < hi. Requires first_index() <= lo <= hi <= last_index() + 1;
        raises CompactedError if lo < first_index()."""
        ...

    def append(self, entries: Sequence[Entry]) -> None:
        """Durably store contiguous `entries`. The first must satisfy
        first_index() <= entries[0].index <= last_index() + 1; every stored
        entry at or after entries[0].index is discarded first (a conflicting
        suffix from an older leader). Empty `entries` is a no-op."""
        ...

    def set_hard_state(self, hard_state: HardState) -> None:
        """Durably replace the hard state."""
        ...

    def compact(self, index: int) -> None:
        """Discard entries up to and including `index`, which becomes the marker
        (its term is kept). The driver only compacts applied entries, so
        first_index() - 1 <= index <= last_index(). Compacting at or below the
        current marker is a no-op."""
        ...

    def restore(self, index: int, term: int) -> None:
        """Make (index, term) the marker after the driver installed committed
        history through `index` out of band (catch-up).

        If index is at or below the marker: no-op (already covered).
        If the log holds `index` with `term`: same as compact(index); the
        entries after it agree with the leader (log matching) and may already be
        acknowledged, so they must be kept.
        Otherwise: every entry is discarded (they end before `index` or conflict
        with committed history, so none of them is committed).
        """
        ...


class MemoryRaftStorage:
    """RaftStorage held in memory; what the simulator treats as the disk."""

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._marker_index = 0
        self._marker_term = 0
        self._entries: list[Entry] = []  # _entries[i].index == _marker_index + 1 + i

    def hard_state(self) -> HardState:
        return self._hard_state

    def first_index(self) -> int:
        return self._marker_index + 1

    def last_index(self) -> int:
        return self._marker_index + len(self._entries)

    def term(self, index: int) -> int:
        if index < self._marker_index:
            raise CompactedError(index)
        if index == self._marker_index:
            return self._marker_term
        if index > self.last_index():
            raise IndexError(index)
        return self._entries[index - self._marker_index - 1].term

    def entries(self, lo: int, hi: int) -> Sequence[Entry]:
        if lo < self.first_index():
            raise CompactedError(lo)
        if hi > self.last_index() + 1 or lo > hi:
            raise IndexError((lo, hi))
        offset = self._marker_index + 1
        return self._entries[lo - offset : hi - offset]

    def append(self, entries: Sequence[Entry]) -> None:
        if not entries:
            return
        start = entries[0].index
        if not self.first_index() <= start <= self.last_index() + 1:
            raise IndexError(f"append at {start} outside [{self.first_index()}, {self.last_index() + 1}]")
        del self._entries[start - self._marker_index - 1 :]
        self._entries.extend(entries)

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def compact(self, index: int) -> None:
        if index <= self._marker_index:
            return
        if index > self.last_index():
            raise IndexError(f"compact at {index} beyond last index {self.last_index()}")
        self._marker_term = self.term(index)
        del self._entries[: index - self._marker_index]
        self._marker_index = index

    def restore(self, index: int, term: int) -> None:
        if index <= self._marker_index:
            return
        if index <= self.last_index() and self.term(index) == term:
            self.compact(index)
            return
        self._entries.clear()
        self._marker_index, self._marker_term = index, term
