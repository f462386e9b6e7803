"""Finality: collecting node endorsements into commit certificates. Pure; no I/O.

Owns the bookkeeping between "this node applied block h" and "block h carries a certificate":
which heights wait for endorsements, which endorsements arrived (possibly before the block was
applied here), and when a majority of the node set in force at h is reached.

Rules:
* An endorsement counts only if its signer is in the node set in force at that height and its
  signature verifies over this node's own hash of the block; one per signer.
* Endorsements for heights not yet applied here are kept, bounded: at most
  ``MAX_EARLY_HEIGHTS`` heights ahead of the applied height, one per signer and height.
* ``certified_through`` is the highest height h such that every height up to h is certified.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger import keys
from ledger.certificate import Certificate, endorsement_bytes, quorum

MAX_EARLY_HEIGHTS = 256


@dataclass(slots=True)
class _Pending:
    header: object                                           # ledger.block.Header
    block_hash: bytes
    node_set: frozenset[bytes]                               # public keys
    signatures: dict[bytes, bytes] = field(default_factory=dict)


class Finality:
    def __init__(self, chain_id: bytes, applied_height: int, certified_through: int) -> None:
        self._chain_id = chain_id
        self._applied = applied_height
        self._pending: dict[int, _Pending] = {}
        self._early: dict[int, dict[bytes, tuple[bytes, bytes]]] = {}
        self._certified: set[int] = set()
        self.certified_through = certified_through

    def uncertified(self) -> list[int]:
        """Applied heights still waiting for a certificate, lowest first."""
        return sorted(self._pending)

    def applied(self, header, node_set: frozenset[bytes], own: tuple[bytes, bytes] | None) -> Certificate | None:
        """Registers a block applied here (its header), with this node's own (public key, signature)."""
        height, block_hash = header.height, header.hash()
        self._applied = max(self._applied, height)
        if height <= self.certified_through or height in self._certified:
            return None
        self._pending[height] = _Pending(header, block_hash, node_set)
        certificate = None
        if own is not None:
            certificate = self.add(own[0], height, block_hash, own[1])
        for signer, (early_hash, signature) in self._early.pop(height, {}).items():
            certificate = self.add(signer, height, early_hash, signature) or certificate
        return certificate

    def add(self, signer: bytes, height: int, block_hash: bytes, signature: bytes) -> Certificate | None:
        """Counts one endorsement; returns the certificate when this one completes it."""
        pending = self._pending.get(height)
        if pending is None:
            self._keep_early(signer, height, block_hash, signature)
            return None
        if signer not in pending.node_set or signer in pending.signatures:
            return None
        if block_hash != pending.block_hash:
            return None    # the signer holds another block at this height: never counted
        if not keys.verify(signer, signature, endorsement_bytes(pending.header)):
            return None
        pending.signatures[signer] = signature
        if len(pending.signatures) < quorum(len(pending.node_set)):
            return None
        del self._pending[height]
        self._mark_certified(height)
        return Certificate.build(height, block_hash, pending.signatures.items())

    def _keep_early(self, signer: bytes, height: int, block_hash: bytes, signature: bytes) -> None:
        if height <= self._applied or height > self._applied + MAX_EARLY_HEIGHTS:
            return
        self._early.setdefault(height, {}).setdefault(signer, (block_hash, signature))

    def _mark_certified(self, height: int) -> None:
        self._certified.add(height)
        while self.certified_through + 1 in self._certified:
            self.certified_through += 1
            self._certified.discard(self.certified_through)

    def mark_certified(self, height: int) -> None:
        """A certificate for ``height`` arrived by other means (catch-up)."""
        self._pending.pop(height, None)
        self._early.pop(height, None)
        if height > self.certified_through:
            self._mark_certified(height)
