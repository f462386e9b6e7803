"""`RaftLog`: the core's view of the log — stable entries (read from
RaftStorage) overlaid by unstable entries (accepted in memory, not yet
persisted) — plus the commit and applied indices.

Invariants: marker index <= applied <= committed <= last_index; unstable
entries are contiguous and start at `_unstable_offset`, which is at most
storage.last_index() + 1 (lower when a conflicting suffix of the stable log is
about to be overwritten). The core never writes storage; the driver persists
`unstable_entries()` and reports it through `stable_to`.
"""

from __future__ import annotations

from typing import Sequence

from node.raft.entry import Entry, EntryKind
from node.raft.errors import CompactedError
from node.raft.storage import RaftStorage


class RaftLog:
    def __init__(self, storage: RaftStorage, applied_index: int) -> None:
        self._storage = storage
        self._unstable: list[Entry] = []
        self._unstable_offset = storage.last_index() + 1
        marker = storage.first_index() - 1
        last = storage.last_index()
        # Applied entries are committed by definition; the persisted commit may
        # lag them if the process stopped between applying and the next write.
        self.applied = max(applied_index, marker)
        self.committed = max(storage.hard_state().commit, self.applied)
        if self.committed > last:
            raise ValueError(
                f"commit/applied index {self.committed} beyond the persisted log (last index {last}); "
                "the app or hard state was persisted without the entries it depends on"
            )

    # --- reads -----------------------------------------------------------

    def first_index(self) -> int:
        return self._storage.first_index()

    def last_index(self) -> int:
        if self._unstable:
            return self._unstable[-1].index
        return self._storage.last_index()

    def term(self, index: int) -> int | None:
        """Term at `index`, or None if it is compacted away or beyond the log."""
        if self._unstable and index >= self._unstable_offset:
            position = index - self._unstable_offset
            return self._unstable[position].term if position < len(self._unstable) else None
        try:
            return self._storage.term(index)
        except (CompactedError, IndexError):
            return None

    def last_term(self) -> int:
        term = self.term(self.last_index())
        assert term is not None, "the last index always has a known term"
        return term

    def matches(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction (paper 5.4.1): is a log ending at
        (last_index, last_term) at least as up to date as ours?"""
        ours = self.last_term()
        return last_term > ours or (last_term == ours and last_index >= self.last_index())

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo <= index < hi; lo must not be compacted."""
        stable_hi = min(hi, self._unstable_offset)
        result = list(self._storage.entries(lo, stable_hi)) if lo < stable_hi else []
        if hi > self._unstable_offset:
            start = max(lo, self._unstable_offset) - self._unstable_offset
            result.extend(self._unstable[start : hi - self._unstable_offset])
        return result

    def entries_for_append(self, lo: int, max_count: int, max_bytes: int) -> list[Entry]:
        """Up to max_count entries from `lo`, cut once they exceed max_bytes of
        payload (the first entry always goes, so a big entry cannot stall)."""
        batch = self.slice(lo, min(self.last_index() + 1, lo + max_count))
        total_bytes = 0
        for count, entry in enumerate(batch):
            total_bytes += entry.size_bytes
            if count > 0 and total_bytes > max_bytes:
                return batch[:count]
        return batch

    def new_suffix(self, entries: Sequence[Entry]) -> Sequence[Entry]:
        """The part of `entries` (contiguous, already known to follow a matching
        prefix) that is not yet in the log: from the first missing or
        conflicting entry on. Entries we already hold are never rewritten, so a
        stale, shorter append cannot truncate acknowledged entries."""
        for position, entry in enumerate(entries):
            if self.term(entry.index) != entry.term:
                return entries[position:]
        return ()

    def next_committed(self, max_count: int) -> tuple[Entry, ...]:
        hi = min(self.committed, self.applied + max_count) + 1
        return tuple(self.slice(self.applied + 1, hi)) if hi > self.applied + 1 else ()

    def unstable_entries(self) -> tuple[Entry, ...]:
        return tuple(self._unstable)

    # --- in-memory writes --------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Accept `entries` into the unstable log, discarding any entry at or
        after entries[0].index (the caller established that they conflict)."""
        if not entries:
            return
        start = entries[0].index
        if start > self.last_index() + 1 or start <= self.committed:
            raise ValueError(f"append at {start}: log ends at {self.last_index()}, committed {self.committed}")
        if start >= self._unstable_offset:
            del self._unstable[start - self._unstable_offset :]
        else:
            self._unstable = []
            self._unstable_offset = start
        self._unstable.extend(entries)

    def append_noop(self, term: int) -> None:
        self.append([Entry(self.last_index() + 1, term, EntryKind.NOOP)])

    def commit_to(self, index: int) -> None:
        if index > self.last_index():
            raise ValueError(f"commit {index} beyond last index {self.last_index()}")
        self.committed = max(self.committed, index)

    def stable_to(self, entry: Entry) -> None:
        """The driver persisted unstable entries through `entry`. Ignored if that
        entry was replaced meanwhile (it will be persisted again)."""
        if entry.index < self._unstable_offset or self.term(entry.index) != entry.term:
            return
        del self._unstable[: entry.index - self._unstable_offset + 1]
        self._unstable_offset = entry.index + 1

    def applied_to(self, index: int) -> None:
        self.applied = max(self.applied, index)

    def restored(self, index: int) -> None:
        """Storage was restored to marker `index` (see RaftStorage.restore) and
        committed history through `index` is installed in the app."""
        if self._unstable:
            raise RuntimeError("restore requires every entry to be persisted")
        self._unstable_offset = self._storage.last_index() + 1
        self.applied = max(self.applied, index)
        self.committed = max(self.committed, index)
