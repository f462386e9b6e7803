"""Posting lists of the history index: the Merkle leaves of the transactions touching one party.

The store keeps, per party (a centre, partner, admin or member id), the leaf indexes of its
transactions in ascending order, cut into chunks. One chunk is one LMDB entry:

    key   = party_id:20 || first_leaf:u64 (big-endian)
    value = last_leaf:u64 (big-endian) || delta_1 || delta_2 || ...

where each delta is an unsigned LEB128 varint >= 1, the gap from the previous leaf of the chunk
(the first of them from ``first_leaf``), and ``last_leaf`` is where they end. A chunk holds at
most MAX_CHUNK_BYTES of deltas (a value of at most 1,032 bytes), so that LMDB keeps it inside a
page instead of on overflow pages of its own. Appending rewrites only a party's last chunk; ``last_leaf`` lets that happen without
decoding the deltas.

This replaced one entry per (party, transaction) (layout 4, 128 bytes per transaction at
100,000 transactions): consecutive leaves of a member cost two bytes here, a centre's one.

Reading treats a stored chunk as untrusted: a chunk whose deltas are not well-formed, are zero,
or do not end at ``last_leaf`` is a ``PostingError``.
"""

from __future__ import annotations

import struct

MAX_CHUNK_BYTES = 1024        # of a chunk's value: LMDB's in-page limit for 4 KiB pages is ~2 KiB
_LAST = struct.Struct(">Q")
LAST_LEAF_BYTES = _LAST.size
MAX_VARINT_BYTES = 10         # a u64 in LEB128


class PostingError(ValueError):
    """A stored chunk is damaged."""


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**64) as unsigned LEB128."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def last_leaf(value: bytes) -> int:
    """The last leaf of a stored chunk, without decoding its deltas."""
    if len(value) < LAST_LEAF_BYTES:
        raise PostingError(f"a chunk of {len(value)} bytes is shorter than its last-leaf field")
    return _LAST.unpack_from(value)[0]


def chunk_leaves(first_leaf: int, value: bytes) -> list[int]:
    """Every leaf of a stored chunk, ascending; PostingError if the chunk is damaged."""
    end = last_leaf(value)
    if len(value) > LAST_LEAF_BYTES + MAX_CHUNK_BYTES:
        raise PostingError(f"a chunk of {len(value)} bytes exceeds {LAST_LEAF_BYTES + MAX_CHUNK_BYTES}")
    leaves = [first_leaf]
    delta = shift = 0
    for byte in value[LAST_LEAF_BYTES:]:
        delta |= (byte & 0x7F) << shift
        shift += 7
        if byte & 0x80:
            if shift >= 7 * MAX_VARINT_BYTES:
                raise PostingError("a delta of the chunk is longer than 10 bytes")
            continue
        if delta == 0:
            raise PostingError("a delta of the chunk is zero (leaves must ascend)")
        leaves.append(leaves[-1] + delta)
        delta = shift = 0
    if shift:
        raise PostingError("the chunk ends inside a delta")
    if leaves[-1] != end:
        raise PostingError(f"the chunk's deltas end at leaf {leaves[-1]}, its header says {end}")
    return leaves


def append_leaves(chunk: tuple[int, bytes] | None, leaves: list[int]) -> list[tuple[int, bytes]]:
    """The chunks to write after appending ascending ``leaves`` to a party whose last stored chunk
    is ``chunk`` ((first_leaf, value), or None for a party without one): that chunk rewritten
    first if anything was added to it, then new chunks. A leaf below the party's last one is a
    ValueError; one equal to it (a transaction touching the party twice) is skipped."""
    if chunk is None:
        first, end, deltas = None, -1, b""
    else:
        first, end, deltas = chunk[0], last_leaf(chunk[1]), chunk[1][LAST_LEAF_BYTES:]
    changed = False
    written: list[tuple[int, bytes]] = []
    for leaf in leaves:
        if leaf == end:
            continue
        if leaf < end:
            raise ValueError(f"leaf {leaf} does not follow the party's last leaf {end}")
        step = varint(leaf - end)
        if first is not None and len(deltas) + len(step) <= MAX_CHUNK_BYTES:
            deltas += step
        else:
            if changed:
                written.append((first, _LAST.pack(end) + deltas))
            first, deltas = leaf, b""
        changed = True
        end = leaf
    if changed:
        written.append((first, _LAST.pack(end) + deltas))
    return written
