"""Tests of ledger/commitment.py: the LtHash16 state commitment.

What nodes and auditors rely on: the vector depends on the set of entries only (not on the
order or batching of updates), removing undoes adding, and the bytes are exactly the ones
docs/FORMAT.md section 9.2 defines (the known-answer vector below is printed there too)."""

import hashlib

import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.commitment import BATCH_ENTRIES, LANES, VECTOR_BYTES, StateCommitment, lanes_bytes
from ledger.encoding import encode

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True)
entries = st.lists(st.tuples(st.binary(min_size=1, max_size=41), st.binary(max_size=60)), max_size=12)

# The known-answer vector of docs/FORMAT.md 9.2: a bucket key 0x03 || bytes 0..39, value encode(7).
KAT_KEY = b"\x03" + bytes(range(40))
KAT_VALUE = encode(7)
KAT_ENTRY_ENCODING = ("93b46e616e756d2f76312f73746174652d656e747279c42903000102030405060708090a0b0c0d0e0f"
                      "101112131415161718191a1b1c1d1e1f2021222324252627c40107")
KAT_LANES_PREFIX = "3e3c93b328de4c4debaef588bfe27910"
KAT_ROOT = "7515ed318b8b11cc04d911398cbf6ee8db7db0aba1cad31fe207cf9fb89bfb7c"
EMPTY_ROOT = "368e43fdeb2340b701f3246b7022025386d92c7be3a1aa6e5e8cea51cd099ec8"


def reference_vector(items) -> bytes:
    """The definition, lane by lane with plain integers."""
    lanes = [0] * LANES
    for key, value in items:
        digest = blake3(encode(["nanum/v1/state-entry", key, value])).digest(VECTOR_BYTES)
        for i in range(LANES):
            lanes[i] = (lanes[i] + int.from_bytes(digest[2 * i:2 * i + 2], "little")) % 2**16
    return b"".join(lane.to_bytes(2, "little") for lane in lanes)


def test_the_known_answer_vector_of_the_format_document():
    assert encode(["nanum/v1/state-entry", KAT_KEY, KAT_VALUE]).hex() == KAT_ENTRY_ENCODING
    assert lanes_bytes(KAT_KEY, KAT_VALUE)[:16].hex() == KAT_LANES_PREFIX
    commitment = StateCommitment()
    commitment.add(KAT_KEY, KAT_VALUE)
    assert commitment.to_bytes() == lanes_bytes(KAT_KEY, KAT_VALUE)
    assert commitment.root().hex() == KAT_ROOT


def test_the_empty_state_is_the_zero_vector_and_its_root():
    empty = StateCommitment()
    assert empty.to_bytes() == bytes(VECTOR_BYTES)
    assert empty.root() == hashlib.sha256(encode(["nanum/v1/state-root", bytes(VECTOR_BYTES)])).digest()
    assert empty.root().hex() == EMPTY_ROOT


@PROPERTY
@given(entries)
def test_the_vector_is_the_lane_sum_of_its_entries_in_any_order(items):
    forward, backward = StateCommitment(), StateCommitment()
    forward.update(added=items)
    for key, value in reversed(items):
        backward.add(key, value)
    assert forward == backward
    assert forward.to_bytes() == reference_vector(items)


@PROPERTY
@given(entries, entries)
def test_removing_entries_undoes_adding_them(kept, dropped):
    commitment = StateCommitment()
    commitment.update(added=kept + dropped)
    commitment.update(removed=dropped)
    assert commitment.to_bytes() == reference_vector(kept)


def test_sums_wrap_modulo_2_16_across_batches():
    # More than a batch of the same entry: every lane wraps many times.
    count = BATCH_ENTRIES * 2 + 3
    commitment = StateCommitment()
    commitment.update(added=[(b"k", b"v")] * count)
    single = lanes_bytes(b"k", b"v")
    expected = b"".join(((int.from_bytes(single[i:i + 2], "little") * count) % 2**16).to_bytes(2, "little")
                        for i in range(0, VECTOR_BYTES, 2))
    assert commitment.to_bytes() == expected


def test_a_block_of_changes_replaces_old_values_with_new_ones():
    commitment = StateCommitment()
    commitment.update(added=[(b"a", b"1"), (b"b", b"2")])
    commitment.apply_changes([(b"a", b"1", b"3"), (b"b", b"2", None), (b"c", None, b"4")])
    assert commitment.to_bytes() == reference_vector([(b"a", b"3"), (b"c", b"4")])


def test_bytes_round_trip_and_copies_are_independent():
    commitment = StateCommitment()
    commitment.add(b"a", b"1")
    again = StateCommitment.from_bytes(commitment.to_bytes())
    assert again == commitment and hash(again) == hash(commitment)
    copy = again.copy()
    copy.add(b"b", b"2")
    assert again == commitment and copy != commitment


@pytest.mark.parametrize("size", [0, VECTOR_BYTES - 1, VECTOR_BYTES + 1])
def test_a_state_vector_of_the_wrong_size_is_refused(size):
    with pytest.raises(ValueError):
        StateCommitment.from_bytes(bytes(size))
