"""Posting-list chunks of the history index (ledger.postings): appends in any batch split read
back as the same ascending leaves, chunks stay within their byte limit, damaged chunks are
refused; and the LMDB store's history answers across many chunks equal the in-memory store's."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.ledger import Ledger
from ledger.postings import (LAST_LEAF_BYTES, MAX_CHUNK_BYTES, PostingError, append_leaves, chunk_leaves,
                             last_leaf, varint)
from ledger.store import StoreError, u64
from tests.consortium import GENESIS_TIME_MS, TestConsortium


def store_chunks(chunks: dict[int, bytes], leaves: list[int]) -> None:
    """What the store does with one party's chunks (first leaf -> value) for one block."""
    last = max(chunks) if chunks else None
    for first, value in append_leaves(None if last is None else (last, chunks[last]), leaves):
        chunks[first] = value


def read_all(chunks: dict[int, bytes]) -> list[int]:
    return [leaf for first in sorted(chunks) for leaf in chunk_leaves(first, chunks[first])]


ascending = st.lists(st.integers(min_value=1, max_value=2 ** 40), min_size=1, max_size=400).map(
    lambda gaps: [sum(gaps[:i + 1]) - 1 for i in range(len(gaps))])


@settings(max_examples=200, deadline=None)
@given(leaves=ascending, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_appends_in_any_split_read_back_as_the_same_leaves(leaves, cuts):
    chunks: dict[int, bytes] = {}
    bounds = sorted({0, len(leaves), *(c for c in cuts if c < len(leaves))})
    for start, end in zip(bounds, bounds[1:]):
        store_chunks(chunks, leaves[start:end])
    assert read_all(chunks) == leaves
    assert all(len(value) <= LAST_LEAF_BYTES + MAX_CHUNK_BYTES for value in chunks.values())
    assert all(chunk_leaves(first, value)[0] == first for first, value in chunks.items())


def test_consecutive_leaves_cost_one_byte_and_a_full_chunk_starts_another():
    chunks: dict[int, bytes] = {}
    store_chunks(chunks, list(range(MAX_CHUNK_BYTES + 1)))      # the first leaf is in the key
    assert list(chunks) == [0] and len(chunks[0]) == LAST_LEAF_BYTES + MAX_CHUNK_BYTES
    store_chunks(chunks, [MAX_CHUNK_BYTES + 1])
    assert list(chunks) == [0, MAX_CHUNK_BYTES + 1]
    assert chunks[MAX_CHUNK_BYTES + 1] == u64(MAX_CHUNK_BYTES + 1)   # no deltas yet
    assert read_all(chunks) == list(range(MAX_CHUNK_BYTES + 2))


def test_only_changed_chunks_are_written():
    full = append_leaves(None, list(range(MAX_CHUNK_BYTES + 1)))
    assert len(full) == 1
    # nothing fits in the full chunk: only the new one is written
    assert [first for first, _ in append_leaves(full[0], [5000])] == [5000]
    # the leaf already stored last (one transaction touching a party twice) changes nothing
    assert append_leaves(full[0], [MAX_CHUNK_BYTES]) == []
    assert append_leaves(None, []) == []


def test_a_leaf_below_the_last_one_is_refused():
    (chunk,) = append_leaves(None, [3, 7])
    with pytest.raises(ValueError, match="does not follow"):
        append_leaves(chunk, [6])
    with pytest.raises(ValueError, match="does not follow"):
        append_leaves(None, [9, 8])


def test_varints_of_the_whole_u64_range_read_back():
    leaves = [0, 1, 128, 128 + 16384, 2 ** 63, 2 ** 64 - 1]
    (chunk,) = append_leaves(None, leaves)
    assert chunk_leaves(*chunk) == leaves
    assert len(varint(2 ** 64 - 1)) == 10 and varint(127) == b"\x7f" and varint(128) == b"\x80\x01"


@pytest.mark.parametrize("value, reason", [
    (b"\x00" * 7, "shorter than its last-leaf field"),
    (u64(5) + b"\x00", "zero"),
    (u64(5) + b"\x85", "ends inside a delta"),
    (u64(5) + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
    (u64(6) + b"\x05", "header says 6"),
    (u64(5) + b"\x02\x02", "end at leaf 4, its header says 5"),
    (u64(1024 + 1) + b"\x01" * (MAX_CHUNK_BYTES + 1), "exceeds"),
])
def test_a_damaged_chunk_is_refused(value, reason):
    with pytest.raises(PostingError, match=reason):
        chunk_leaves(0, value)


def test_the_last_leaf_is_read_without_the_deltas():
    (chunk,) = append_leaves(None, [2, 9, 400])
    assert last_leaf(chunk[1]) == 400
    with pytest.raises(PostingError):
        last_leaf(b"\x01")


# --- through the LMDB store ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def busy_centre(tmp_path_factory):
    """A chain where one centre deposits ~3 chunks' worth and two members share the deposits,
    the same blocks committed to an LMDB store and to the in-memory store."""
    consortium = TestConsortium()
    stored = Ledger.create(tmp_path_factory.mktemp("postings") / "store", consortium.genesis_raw)
    memory = Ledger.in_memory(consortium.genesis_raw)
    alice, bob = consortium.member("alice"), consortium.member("bob")
    batches = [[consortium.register(alice), consortium.register(bob)]]
    batches += [[consortium.deposit(alice if i % 3 else bob, 1) for i in range(start, start + 500)]
                for start in range(0, 3000, 500)]
    for height, batch in enumerate(batches, start=1):
        executed = stored.build(batch, GENESIS_TIME_MS + height * 60_000)
        stored.commit(executed)
        memory.commit(memory.build(batch, GENESIS_TIME_MS + height * 60_000))
    yield stored, memory, consortium
    stored.close()


def test_history_across_many_chunks_equals_the_memory_stores(busy_centre):
    stored, memory, consortium = busy_centre
    centre = consortium.centres[0].party_id
    with stored.store.reader() as r:
        chunks = sum(1 for key, _ in r._txn.cursor(db=stored.store._db["accounts"]) if key[:20] == centre)
    assert chunks >= 3
    for party in (centre, consortium.member("alice").party_id, consortium.member("bob").party_id):
        with stored.store.reader() as r, memory.store.reader() as m:
            everything = r.account_entries(party, limit=10_000)
            assert everything == m.account_entries(party, limit=10_000)
            leaves = [leaf for leaf, _, _ in everything]
            for after in (-1, 0, leaves[0], leaves[len(leaves) // 3], leaves[-2], leaves[-1], leaves[-1] + 5):
                for limit in (1, 7, 100):
                    assert r.account_entries(party, after, limit) == m.account_entries(party, after, limit)
        assert ([(leaf, h, tx.tx_id) for leaf, h, tx, _ in stored.history(party, limit=500)]
                == [(leaf, h, tx.tx_id) for leaf, h, tx, _ in memory.history(party, limit=500)])


def test_a_damaged_history_chunk_is_a_store_error(tmp_path):
    consortium = TestConsortium()
    ledger = Ledger.create(tmp_path / "store", consortium.genesis_raw)
    alice = consortium.member("alice")
    ledger.commit(ledger.build([consortium.register(alice), consortium.deposit(alice, 5)], GENESIS_TIME_MS + 1))
    db = ledger.store._db["accounts"]
    with ledger.store.env.begin(write=True) as txn:
        key = next(k for k, _ in txn.cursor(db=db) if k[:20] == alice.party_id)
        txn.put(key, txn.get(key, db=db)[:LAST_LEAF_BYTES] + b"\x00", db=db)
    with pytest.raises(StoreError, match="history index of party .* is damaged.*node check --full"):
        ledger.history(alice.party_id)
    # and the next block touching that party is refused whole, not written over the damage
    with ledger.store.env.begin(write=True) as txn:
        txn.put(key, u64(10 ** 9), db=db)
    height = ledger.height
    with pytest.raises(StoreError, match="history index of party"):
        ledger.commit(ledger.build([consortium.deposit(alice, 1)], GENESIS_TIME_MS + 2))
    assert ledger.store.height() == height
    ledger.close()


@pytest.mark.parametrize("damage", ["chunks out of order", "a leaf beyond the tree", "a malformed key"])
def test_a_well_formed_but_inconsistent_history_index_is_a_store_error(tmp_path, damage):
    """Chunks that decode but do not ascend across the party's chunks, or name leaves the tree
    does not have, or sit under a key of the wrong length: a StoreError, not a wrong or
    endless history page."""
    consortium = TestConsortium()
    ledger = Ledger.create(tmp_path / "store", consortium.genesis_raw)
    alice = consortium.member("alice")
    ledger.commit(ledger.build([consortium.register(alice), consortium.deposit(alice, 5)], GENESIS_TIME_MS + 1))
    db = ledger.store._db["accounts"]
    party = alice.party_id
    size = ledger.head.header.tree_size
    with ledger.store.env.begin(write=True) as txn:
        key = next(k for k, _ in txn.cursor(db=db) if k[:20] == party)
        if damage == "chunks out of order":       # a second chunk inside the first one's range
            first = int.from_bytes(key[20:], "big")
            assert last_leaf(txn.get(key, db=db)) == first + 1
            txn.put(party + u64(first + 1), u64(first + 1), db=db)
        elif damage == "a leaf beyond the tree":
            (first, value), = append_leaves((int.from_bytes(key[20:], "big"), txn.get(key, db=db)), [size + 3])
            txn.put(party + u64(first), value, db=db)
        else:
            txn.put(party + b"\x00" * 5, u64(0), db=db)
    with pytest.raises(StoreError, match="history index of party"):
        ledger.history(party, limit=500)
    ledger.close()
