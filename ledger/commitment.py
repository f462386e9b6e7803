"""The state commitment: one hash that changes whenever any state entry changes.

Owns the homomorphic set hash over the ledger state (docs/FORMAT.md "State commitment").
Each state entry (key, value) maps to a vector of 1024 lanes of 16 bits:

    lanes(key, value) = SHAKE-128(encode(["nanum/v1/state-entry", key, value]), 2048 bytes)
                        read as 1024 little-endian uint16

The state vector is the lane-wise sum, modulo 2**16, of lanes(key, value) over every entry
(LtHash16, Bellare-Micciancio; as used by Lewi et al. 2019). Adding and removing an entry
is O(1), so each block updates the vector with its writes only, yet the result depends on
the state alone, not on the history that produced it; a node can recompute it from its
store to detect a changed value. The header carries

    state_root = SHA-256(encode(["nanum/v1/state-root", vector_bytes]))
"""

from __future__ import annotations

import hashlib

from ledger.encoding import encode

LANES = 1024
LANE_BITS = 16
VECTOR_BYTES = LANES * LANE_BITS // 8
_ALL = (1 << (LANES * LANE_BITS)) - 1
_HIGH = int.from_bytes(b"\x00\x80" * LANES, "little")   # top bit of every lane
_LOW = _ALL ^ _HIGH
_ONES = int.from_bytes(b"\x01\x00" * LANES, "little")   # 1 in every lane


def _lanes(key: bytes, value: bytes) -> int:
    digest = hashlib.shake_128(encode(["nanum/v1/state-entry", key, value])).digest(VECTOR_BYTES)
    return int.from_bytes(digest, "little")


def _add(a: int, b: int) -> int:
    # Lane-wise addition without carries crossing lanes (SWAR): add the low 15 bits of each
    # lane, then fix the top bit with XOR.
    return ((a & _LOW) + (b & _LOW)) ^ ((a ^ b) & _HIGH)


def _negate(a: int) -> int:
    return _add(a ^ _ALL, _ONES)


class StateCommitment:
    __slots__ = ("_vector",)

    def __init__(self, vector: int = 0) -> None:
        self._vector = vector

    @classmethod
    def from_bytes(cls, data: bytes) -> "StateCommitment":
        if len(data) != VECTOR_BYTES:
            raise ValueError(f"a state vector has {VECTOR_BYTES} bytes")
        return cls(int.from_bytes(data, "little"))

    def to_bytes(self) -> bytes:
        return self._vector.to_bytes(VECTOR_BYTES, "little")

    def copy(self) -> "StateCommitment":
        return StateCommitment(self._vector)

    def add(self, key: bytes, value: bytes) -> None:
        self._vector = _add(self._vector, _lanes(key, value))

    def remove(self, key: bytes, value: bytes) -> None:
        self._vector = _add(self._vector, _negate(_lanes(key, value)))

    def replace(self, key: bytes, old: bytes | None, new: bytes | None) -> None:
        """Accounts for one write: ``old`` is the value before (None if absent), ``new`` after."""
        if old is not None:
            self.remove(key, old)
        if new is not None:
            self.add(key, new)

    def root(self) -> bytes:
        return hashlib.sha256(encode(["nanum/v1/state-root", self.to_bytes()])).digest()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StateCommitment) and other._vector == self._vector

    def __hash__(self) -> int:
        return hash(self._vector)
