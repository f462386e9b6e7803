"""The RaftStorage contract, written against a factory so every
implementation (MemoryRaftStorage now, the LMDB one later) runs the same tests."""

from __future__ import annotations

from typing import Callable

import pytest

from node.raft import CompactedError, Entry, EntryKind, HardState, MemoryRaftStorage, RaftStorage

STORAGE_FACTORIES: list[Callable[[], RaftStorage]] = [MemoryRaftStorage]


def entries(first_index: int, *terms: int) -> list[Entry]:
    return [Entry(first_index + i, term, EntryKind.NORMAL, b"%d" % (first_index + i)) for i, term in enumerate(terms)]


@pytest.fixture(params=STORAGE_FACTORIES, ids=lambda factory: factory.__name__)
def storage(request: pytest.FixtureRequest) -> RaftStorage:
    return request.param()


def test_a_new_storage_is_empty_at_index_zero(storage: RaftStorage) -> None:
    assert storage.hard_state() == HardState()
    assert (storage.first_index(), storage.last_index(), storage.term(0)) == (1, 0, 0)


def test_append_overwrites_the_conflicting_suffix(storage: RaftStorage) -> None:
    storage.append(entries(1, 1, 1, 1, 1))
    storage.append(entries(3, 2))
    assert storage.last_index() == 3
    assert [e.term for e in storage.entries(1, 4)] == [1, 1, 2]


def test_append_rejects_a_gap(storage: RaftStorage) -> None:
    storage.append(entries(1, 1))
    with pytest.raises(IndexError):
        storage.append(entries(3, 1))


def test_hard_state_is_replaced_whole(storage: RaftStorage) -> None:
    storage.set_hard_state(HardState(term=3, vote="n2", commit=7))
    assert storage.hard_state() == HardState(term=3, vote="n2", commit=7)


def test_compact_keeps_the_marker_term_and_refuses_older_reads(storage: RaftStorage) -> None:
    storage.append(entries(1, 1, 2, 3, 3))
    storage.compact(2)
    assert (storage.first_index(), storage.last_index(), storage.term(2)) == (3, 4, 2)
    with pytest.raises(CompactedError):
        storage.term(1)
    with pytest.raises(CompactedError):
        storage.entries(2, 4)
    storage.compact(1)  # at or below the marker: no-op
    assert storage.first_index() == 3


def test_restore_over_a_matching_entry_keeps_the_acknowledged_suffix(storage: RaftStorage) -> None:
    storage.append(entries(1, 1, 1, 2, 2))
    storage.restore(2, 1)
    assert (storage.first_index(), storage.last_index()) == (3, 4)
    assert [e.term for e in storage.entries(3, 5)] == [2, 2]


def test_restore_over_a_conflicting_or_short_log_leaves_only_the_marker(storage: RaftStorage) -> None:
    storage.append(entries(1, 1, 1, 1))
    storage.restore(2, 5)
    assert (storage.first_index(), storage.last_index(), storage.term(2)) == (3, 2, 5)
    storage.restore(9, 6)
    assert (storage.first_index(), storage.last_index(), storage.term(9)) == (10, 9, 6)
    storage.append(entries(10, 6))
    assert storage.last_index() == 10


def test_restore_at_or_below_the_marker_is_a_no_op(storage: RaftStorage) -> None:
    storage.append(entries(1, 1, 1, 1))
    storage.compact(2)
    storage.restore(1, 9)
    assert (storage.first_index(), storage.last_index(), storage.term(2)) == (3, 3, 1)
