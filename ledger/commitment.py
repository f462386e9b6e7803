"""The state commitment: one hash that changes whenever any state entry changes.

Owns the homomorphic set hash over the ledger state (docs/FORMAT.md "State commitment").
Each state entry (key, value) maps to a vector of 1024 lanes of 16 bits:

    lanes(key, value) = BLAKE3-XOF(encode(["nanum/v1/state-entry", key, value]), 2048 bytes)
                        read as 1024 little-endian uint16

The state vector is the lane-wise sum, modulo 2**16, of lanes(key, value) over every entry
(LtHash16, Bellare-Micciancio; as used by Lewi et al. 2019). Adding and removing an entry
is O(1), so each block updates the vector with its writes only, yet the result depends on
the state alone, not on the history that produced it; a node can recompute it from its
store to detect a changed value. The header carries

    state_root = SHA-256(encode(["nanum/v1/state-root", vector_bytes]))

Cost matters here: every changed entry of every block is hashed on every node and by every
auditor. BLAKE3's XOF makes the 2 KiB in about a quarter of SHAKE-128's time, and the lane
sums of a whole batch are one numpy reduction (uint16 arithmetic wraps modulo 2**16, which
is exactly the lane arithmetic) instead of a big-integer operation per entry.
"""

from __future__ import annotations

import hashlib
import threading
from typing import Iterable

import numpy as np
from blake3 import blake3

from ledger.encoding import encode

LANES = 1024
LANE_BITS = 16
VECTOR_BYTES = LANES * LANE_BITS // 8
BATCH_ENTRIES = 1024          # entries hashed into one buffer before summing (2 MiB of lanes)
_LANE = np.dtype("<u2")
_ENTRY_PREFIX = encode(["nanum/v1/state-entry", b"", b""])[:-4]   # fixarray-3 and the tag string

Entry = tuple[bytes, bytes]


def lanes_bytes(key: bytes, value: bytes) -> bytes:
    """The 2048 bytes of ``lanes(key, value)``."""
    return _lanes_of(_hasher(), key, value)


def _lanes_of(hasher: blake3, key: bytes, value: bytes) -> bytes:
    hasher.reset()
    hasher.update(_ENTRY_PREFIX + _bin(key) + _bin(value))
    return hasher.digest(VECTOR_BYTES)


_local = threading.local()


def _hasher() -> blake3:
    """This thread's reusable hasher: making a new one costs as much as hashing an entry,
    and a hasher must not be shared between threads (reset, update, digest are three calls)."""
    hasher = getattr(_local, "hasher", None)
    if hasher is None:
        hasher = _local.hasher = blake3()
    return hasher


def _bin(data: bytes) -> bytes:
    """msgpack's bin encoding of ``data``, as ``encode`` gives it (tests compare the two)."""
    size = len(data)
    if size < 0x100:
        return b"\xc4" + size.to_bytes(1, "big") + data
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big") + data
    return b"\xc6" + size.to_bytes(4, "big") + data


def _lane_sum(entries: Iterable[Entry]) -> np.ndarray:
    """The lane-wise sum modulo 2**16 of the entries' lanes, in batches of BATCH_ENTRIES."""
    total = np.zeros(LANES, dtype=_LANE)
    batch: list[bytes] = []
    hasher = _hasher()
    for key, value in entries:
        batch.append(_lanes_of(hasher, key, value))
        if len(batch) == BATCH_ENTRIES:
            total += _sum_of(batch)
            batch.clear()
    if batch:
        total += _sum_of(batch)
    return total


def _sum_of(digests: list[bytes]) -> np.ndarray:
    rows = np.frombuffer(b"".join(digests), dtype=_LANE).reshape(len(digests), LANES)
    return rows.sum(axis=0, dtype=_LANE)


class StateCommitment:
    __slots__ = ("_vector",)

    def __init__(self, vector: np.ndarray | None = None) -> None:
        self._vector = np.zeros(LANES, dtype=_LANE) if vector is None else vector

    @classmethod
    def from_bytes(cls, data: bytes) -> "StateCommitment":
        if len(data) != VECTOR_BYTES:
            raise ValueError(f"a state vector has {VECTOR_BYTES} bytes")
        return cls(np.frombuffer(data, dtype=_LANE).copy())

    def to_bytes(self) -> bytes:
        return self._vector.tobytes()

    def copy(self) -> "StateCommitment":
        return StateCommitment(self._vector.copy())

    def update(self, added: Iterable[Entry] = (), removed: Iterable[Entry] = ()) -> None:
        """Adds the ``added`` entries to the state vector and removes the ``removed`` ones."""
        self._vector += _lane_sum(added)
        self._vector -= _lane_sum(removed)

    def add(self, key: bytes, value: bytes) -> None:
        self.update(added=((key, value),))

    def remove(self, key: bytes, value: bytes) -> None:
        self.update(removed=((key, value),))

    def apply_changes(self, changes: Iterable[tuple[bytes, bytes | None, bytes | None]]) -> None:
        """Accounts for a block's writes: each is (key, value before or None, value after or None)."""
        changes = list(changes)
        self.update(added=[(key, new) for key, _, new in changes if new is not None],
                    removed=[(key, old) for key, old, _ in changes if old is not None])

    def root(self) -> bytes:
        return hashlib.sha256(encode(["nanum/v1/state-root", self.to_bytes()])).digest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StateCommitment) and bool(np.array_equal(other._vector, self._vector))

    def __hash__(self) -> int:
        return hash(self.to_bytes())
