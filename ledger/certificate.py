"""Commit certificates: a majority of the node set endorsing a block hash.

A node that has applied and stored block h signs the block's checkpoint text
(ledger.checkpoint: origin with the chain id, tree size, tree root, height and block hash) with
its node key: an *endorsement*. A certificate for h is a set of
endorsements by distinct nodes of the node set in force at h (the active nodes of the state
*before* block h), at least a majority of it: ``len(node_set) // 2 + 1``.

    certificate = [height:uint, block_hash:bin32, [[node_public_key:bin32, signature:bin64], ...]]

signatures sorted by public key, distinct. Certificates are stored and shipped beside blocks
(never inside the hashed header), so an auditor can check offline that a majority of the
consortium endorsed every block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from ledger import keys
from ledger.checkpoint import body_of
from ledger.encoding import (
    DecodeError,
    decode,
    encode,
    expect_array,
    expect_bytes,
    expect_list,
    expect_uint,
)
from ledger.limits import HASH_BYTES, MAX_GENESIS_PARTIES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES

MAX_CERT_SIGNATURES = MAX_GENESIS_PARTIES
SignatureCheck = Callable[[int, bytes, bytes, bytes], bool]


class CertificateError(Exception):
    """A certificate that does not prove a majority endorsed the block; ``field`` says where."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def endorsement_bytes(header) -> bytes:
    """What a node signs for a block: its checkpoint text (a ledger.block.Header is given)."""
    return body_of(header).text()


def endorse(node_key: keys.SigningKey, header) -> bytes:
    return node_key.sign(endorsement_bytes(header))


def quorum(node_count: int) -> int:
    return node_count // 2 + 1


@dataclass(frozen=True, slots=True)
class Certificate:
    height: int
    block_hash: bytes
    signatures: tuple[tuple[bytes, bytes], ...]    # (node public key, signature), sorted

    @classmethod
    def build(cls, height: int, block_hash: bytes, endorsements: Iterable[tuple[bytes, bytes]]) -> "Certificate":
        return cls(height, block_hash, tuple(sorted(dict(endorsements).items())))

    def encode(self) -> bytes:
        return encode([self.height, self.block_hash, [[k, s] for k, s in self.signatures]])

    @classmethod
    def decode(cls, raw: bytes) -> "Certificate":
        fields = expect_array(decode(raw), 3, "certificate")
        items = expect_list(fields[2], MAX_CERT_SIGNATURES, "certificate.signatures")
        pairs = []
        for i, item in enumerate(items):
            pair = expect_array(item, 2, f"certificate.signatures[{i}]")
            pairs.append((expect_bytes(pair[0], f"certificate.signatures[{i}].public_key", size=PUBLIC_KEY_BYTES),
                          expect_bytes(pair[1], f"certificate.signatures[{i}].signature", size=SIGNATURE_BYTES)))
        keys_in_order = [k for k, _ in pairs]
        if keys_in_order != sorted(set(keys_in_order)):
            raise DecodeError("signatures must be sorted by key and distinct", "certificate.signatures")
        return cls(expect_uint(fields[0], "certificate.height"),
                   expect_bytes(fields[1], "certificate.block_hash", size=HASH_BYTES), tuple(pairs))

    def verify(self, header, node_set: frozenset[bytes], signature_ok: SignatureCheck | None = None) -> None:
        """Raises CertificateError unless this certifies the block of ``header`` with valid
        signatures of a majority of ``node_set`` (public keys). Every signature is checked —
        by ``signature_ok(i, public_key, signature, message)`` when given (the parallel verifier
        passes the verdicts its workers already reached), else here."""
        height, block_hash = header.height, header.hash()
        if self.height != height:
            raise CertificateError("certificate.height", f"certifies height {self.height}, not {height}")
        if self.block_hash != block_hash:
            raise CertificateError("certificate.block_hash", "certifies another block")
        message = endorsement_bytes(header)
        for i, (public_key, signature) in enumerate(self.signatures):
            if public_key not in node_set:
                raise CertificateError(f"certificate.signatures[{i}].public_key",
                                       "signed by a key outside the node set in force")
            verified = (signature_ok(i, public_key, signature, message) if signature_ok is not None
                        else keys.verify(public_key, signature, message))
            if not verified:
                raise CertificateError(f"certificate.signatures[{i}].signature", "does not verify")
        if len(self.signatures) < quorum(len(node_set)):
            raise CertificateError("certificate.signatures",
                                   f"{len(self.signatures)} of {len(node_set)} nodes signed; "
                                   f"a majority is {quorum(len(node_set))}")
