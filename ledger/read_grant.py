"""Signed reads: a member's Ed25519 signature that lets one read of their own account through.

Members have no TLS certificate of their own (they share one transport identity), so a read of
a member's balance, history or transaction carries a *read grant*: the member's public key, a
validity end, and the member's signature over

    encode(["nanum/v1/read", chain_id, method, subject, not_after_ms])

where ``method`` is the Ledger RPC's name (``READ_METHODS``) and ``subject`` the id the request
reads (the member id of GetBalance, the party id of GetHistory, the tx id of GetTransaction).
The grant is bound to the chain, the method, the subject and a short validity: a node refuses
one whose ``not_after_ms`` has passed or lies more than ``MAX_READ_VALIDITY_MS`` ahead of its
clock. Within that window the same grant may be replayed for the same read (any page, any
read options): that only repeats a read the member authorised.

Pure: no clock is read here; the node passes its time to ``check_validity``.
docs/FORMAT.md §16 is the authoritative description.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger import keys
from ledger.encoding import encode
from ledger.limits import (
    CHAIN_ID_BYTES,
    MAX_TIME_MS,
    PARTY_ID_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    TX_ID_BYTES,
)

READ_TAG = "nanum/v1/read"
MAX_READ_VALIDITY_MS = 5 * 60_000         # how far ahead of the node's clock a grant may end
DEFAULT_READ_VALIDITY_MS = 60_000         # what clients sign for

# method name -> the size of the subject id it reads
READ_METHODS: dict[str, int] = {
    "GetBalance": PARTY_ID_BYTES,
    "GetHistory": PARTY_ID_BYTES,
    "GetTransaction": TX_ID_BYTES,
}


class GrantError(ValueError):
    """A read grant that cannot authenticate this read. ``malformed`` separates a grant with
    wrong field sizes or ranges (the client broke it) from one that is well formed but
    expired, too long-lived, or not signed for this read."""

    def __init__(self, message: str, malformed: bool) -> None:
        super().__init__(message)
        self.malformed = malformed


@dataclass(frozen=True, slots=True)
class ReadGrant:
    member_key: bytes
    not_after_ms: int
    signature: bytes

    @property
    def member_id(self) -> bytes:
        return keys.party_id(self.member_key)


def read_signing_bytes(chain_id: bytes, method: str, subject: bytes, not_after_ms: int) -> bytes:
    """The exact bytes a member signs to read ``subject`` with ``method`` on ``chain_id``."""
    _check_request(chain_id, method, subject)
    if isinstance(not_after_ms, bool) or not isinstance(not_after_ms, int) or not 0 <= not_after_ms <= MAX_TIME_MS:
        raise GrantError(f"not_after_ms is 0..{MAX_TIME_MS}", malformed=True)
    return encode([READ_TAG, chain_id, method, subject, not_after_ms])


def sign_read(member: keys.SigningKey, chain_id: bytes, method: str, subject: bytes,
              not_after_ms: int) -> ReadGrant:
    message = read_signing_bytes(chain_id, method, subject, not_after_ms)
    return ReadGrant(member.public_key, not_after_ms, member.sign(message))


def check_grant(grant: ReadGrant, chain_id: bytes, method: str, subject: bytes, now_ms: int) -> bytes:
    """The member id the grant authenticates for this read; GrantError otherwise. Sizes are
    checked first, then the validity window, then the signature."""
    if len(grant.member_key) != PUBLIC_KEY_BYTES:
        raise GrantError(f"a read grant's member_key has {PUBLIC_KEY_BYTES} bytes, "
                         f"got {len(grant.member_key)}", malformed=True)
    if len(grant.signature) != SIGNATURE_BYTES:
        raise GrantError(f"a read grant's signature has {SIGNATURE_BYTES} bytes, "
                         f"got {len(grant.signature)}", malformed=True)
    message = read_signing_bytes(chain_id, method, subject, grant.not_after_ms)
    check_validity(grant.not_after_ms, now_ms)
    if not keys.verify(grant.member_key, grant.signature, message):
        raise GrantError(f"the read grant's signature does not verify for {method} of {subject.hex()} "
                         f"on this chain", malformed=False)
    return grant.member_id


def check_validity(not_after_ms: int, now_ms: int) -> None:
    if not_after_ms < now_ms:
        raise GrantError(f"the read grant expired {now_ms - not_after_ms} ms ago; sign a new one",
                         malformed=False)
    if not_after_ms - now_ms > MAX_READ_VALIDITY_MS:
        raise GrantError(f"a read grant ends at most {MAX_READ_VALIDITY_MS} ms after the node's clock; this one "
                         f"ends {not_after_ms - now_ms} ms after it", malformed=False)


def _check_request(chain_id: bytes, method: str, subject: bytes) -> None:
    if method not in READ_METHODS:
        raise GrantError(f"reads that take a grant are {', '.join(READ_METHODS)}, not {method!r}", malformed=True)
    if len(chain_id) != CHAIN_ID_BYTES:
        raise GrantError(f"a chain id has {CHAIN_ID_BYTES} bytes", malformed=True)
    if len(subject) != READ_METHODS[method]:
        raise GrantError(f"{method} reads an id of {READ_METHODS[method]} bytes, got {len(subject)}", malformed=True)


__all__ = ["DEFAULT_READ_VALIDITY_MS", "GrantError", "MAX_READ_VALIDITY_MS", "READ_METHODS", "READ_TAG",
           "ReadGrant", "check_grant", "check_validity", "read_signing_bytes", "sign_read"]
