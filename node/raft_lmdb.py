"""The consensus log on disk: ``RaftStorage`` over the node's LMDB environment.

Owns the named databases ``raft_log`` (u64 index -> [term, kind, data]) and ``raft_meta``
(``hard`` -> [term, vote, commit], ``marker`` -> [index, term]). Every write is an LMDB write
transaction committed with fsync, so when a method returns, what it wrote is durable; the
driver's Ready order (persist, then send) therefore holds. ``persist`` writes a Ready's entries
and hard state in ONE transaction, as the Ready contract asks.
"""

from __future__ import annotations

from typing import Sequence

import lmdb

from ledger.encoding import decode, encode
from ledger.store import Store, u64
from node.raft.entry import Entry, EntryKind
from node.raft.errors import CompactedError
from node.raft.storage import HardState

_KINDS = {EntryKind.NOOP: 0, EntryKind.NORMAL: 1}
_KIND_OF = {v: k for k, v in _KINDS.items()}


class LmdbRaftStorage:
    def __init__(self, store: Store) -> None:
        self._env = store.env
        self._log = store.open_db("raft_log")
        self._meta = store.open_db("raft_meta")
        self._write = store._write   # the store's map-growth and StoreFull handling
        with self._env.begin() as txn:
            self._hard = self._read_hard(txn)
            self._marker_index, self._marker_term = self._read_marker(txn)
            self._last = self._read_last(txn)

    # --- reads (from the cached bounds and the log) -----------------------------------------

    def hard_state(self) -> HardState:
        return self._hard

    def first_index(self) -> int:
        return self._marker_index + 1

    def last_index(self) -> int:
        return self._last

    def term(self, index: int) -> int:
        if index < self._marker_index:
            raise CompactedError(index)
        if index == self._marker_index:
            return self._marker_term
        if index > self._last:
            raise IndexError(index)
        with self._env.begin() as txn:
            return decode(txn.get(u64(index), db=self._log))[0]

    def entries(self, lo: int, hi: int) -> Sequence[Entry]:
        if lo < self.first_index():
            raise CompactedError(lo)
        if hi > self._last + 1 or lo > hi:
            raise IndexError((lo, hi))
        found = []
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._log)
            if lo < hi and cursor.set_key(u64(lo)):
                for key, value in cursor:
                    index = int.from_bytes(key, "big")
                    if index >= hi:
                        break
                    term, kind, data = decode(value)
                    found.append(Entry(index, term, _KIND_OF[kind], data))
        return found

    # --- writes (each one durable on return) ------------------------------------------------

    def persist(self, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        """Appends ``entries`` and sets ``hard_state`` in one fsynced transaction."""
        if not entries and hard_state is None:
            return
        if entries:
            self._check_append(entries)
        self._write(lambda txn: self._put(txn, entries, hard_state))
        if entries:
            self._last = entries[-1].index
        if hard_state is not None:
            self._hard = hard_state

    def append(self, entries: Sequence[Entry]) -> None:
        self.persist(entries, None)

    def set_hard_state(self, hard_state: HardState) -> None:
        self.persist((), hard_state)

    def compact(self, index: int) -> None:
        if index <= self._marker_index:
            return
        if index > self._last:
            raise IndexError(f"compact at {index} beyond last index {self._last}")
        term = self.term(index)
        self._write(lambda txn: self._drop_through(txn, index, term))
        self._marker_index, self._marker_term = index, term

    def restore(self, index: int, term: int) -> None:
        if index <= self._marker_index:
            return
        if index <= self._last and self.term(index) == term:
            self.compact(index)
            return

        def work(txn: lmdb.Transaction) -> None:
            self._drop_through(txn, self._last, term)
            txn.put(b"marker", encode([index, term]), db=self._meta)
        self._write(work)
        self._marker_index, self._marker_term, self._last = index, term, index

    # --- helpers ----------------------------------------------------------------------------

    def _check_append(self, entries: Sequence[Entry]) -> None:
        start = entries[0].index
        if not self.first_index() <= start <= self._last + 1:
            raise IndexError(f"append at {start} outside [{self.first_index()}, {self._last + 1}]")

    def _put(self, txn: lmdb.Transaction, entries: Sequence[Entry], hard_state: HardState | None) -> None:
        if entries:
            for stale in range(entries[0].index, self._last + 1):   # a conflicting suffix goes first
                txn.delete(u64(stale), db=self._log)
            for entry in entries:
                txn.put(u64(entry.index), encode([entry.term, _KINDS[entry.kind], entry.data]), db=self._log)
        if hard_state is not None:
            txn.put(b"hard", encode([hard_state.term, hard_state.vote or "", hard_state.commit]), db=self._meta)

    def _drop_through(self, txn: lmdb.Transaction, index: int, term: int) -> None:
        cursor = txn.cursor(db=self._log)
        while cursor.first() and int.from_bytes(cursor.key(), "big") <= index:
            cursor.delete()
        txn.put(b"marker", encode([index, term]), db=self._meta)

    def _read_hard(self, txn: lmdb.Transaction) -> HardState:
        raw = txn.get(b"hard", db=self._meta)
        if raw is None:
            return HardState()
        term, vote, commit = decode(raw)
        return HardState(term, vote or None, commit)

    def _read_marker(self, txn: lmdb.Transaction) -> tuple[int, int]:
        raw = txn.get(b"marker", db=self._meta)
        return (0, 0) if raw is None else tuple(decode(raw))

    def _read_last(self, txn: lmdb.Transaction) -> int:
        cursor = txn.cursor(db=self._log)
        return int.from_bytes(cursor.key(), "big") if cursor.last() else self._marker_index
