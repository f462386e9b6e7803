"""Vouchers: a member's signed, single-use authorisation for one partner to redeem points.

A voucher is not a transaction. The member signs it offline and hands it to a partner
(bookstore, venue) as a compact string; the partner carries it inside a redeem transaction.

Wire form (canonical array):
    [1, chain_id:bin16, member_key:bin32, partner_id:bin20, max_points:uint 1..1 000 000,
     nonce:bin16, expiry_ms:uint, signature:bin64]
The member signs ``encode(["nanum/v1/voucher", chain_id, member_key, partner_id,
max_points, nonce, expiry_ms])``.
Compact string: ``"nv1." + base64url(encode(wire))`` without padding.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ledger import keys
from ledger.encoding import (
    DecodeError,
    decode,
    encode,
    expect_array,
    expect_bytes,
    expect_uint,
)
from ledger.limits import (
    CHAIN_ID_BYTES,
    MAX_TIME_MS,
    MAX_VOUCHER_POINTS,
    MIN_VOUCHER_POINTS,
    PARTY_ID_BYTES,
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    VOUCHER_NONCE_BYTES,
)

VOUCHER_TAG = "nanum/v1/voucher"
VOUCHER_VERSION = 1
COMPACT_PREFIX = "nv1."
MAX_COMPACT_CHARS = 512


@dataclass(frozen=True, slots=True)
class Voucher:
    chain_id: bytes
    member_key: bytes
    partner_id: bytes
    max_points: int
    nonce: bytes
    expiry_ms: int
    signature: bytes

    @property
    def member_id(self) -> bytes:
        return keys.party_id(self.member_key)

    def signing_bytes(self) -> bytes:
        return encode([VOUCHER_TAG, self.chain_id, self.member_key, self.partner_id,
                       self.max_points, self.nonce, self.expiry_ms])

    def signature_valid(self) -> bool:
        return keys.verify(self.member_key, self.signature, self.signing_bytes())

    def to_wire(self) -> list:
        return [VOUCHER_VERSION, self.chain_id, self.member_key, self.partner_id,
                self.max_points, self.nonce, self.expiry_ms, self.signature]

    @classmethod
    def from_wire(cls, value: object) -> "Voucher":
        fields = expect_array(value, 8, "voucher")
        expect_uint(fields[0], "voucher.version", VOUCHER_VERSION, VOUCHER_VERSION)
        return cls(
            chain_id=expect_bytes(fields[1], "voucher.chain_id", size=CHAIN_ID_BYTES),
            member_key=expect_bytes(fields[2], "voucher.member_key", size=PUBLIC_KEY_BYTES),
            partner_id=expect_bytes(fields[3], "voucher.partner_id", size=PARTY_ID_BYTES),
            max_points=expect_uint(fields[4], "voucher.max_points", MIN_VOUCHER_POINTS, MAX_VOUCHER_POINTS),
            nonce=expect_bytes(fields[5], "voucher.nonce", size=VOUCHER_NONCE_BYTES),
            expiry_ms=expect_uint(fields[6], "voucher.expiry_ms", 0, MAX_TIME_MS),
            signature=expect_bytes(fields[7], "voucher.signature", size=SIGNATURE_BYTES),
        )

    def to_compact(self) -> str:
        raw = base64.urlsafe_b64encode(encode(self.to_wire())).rstrip(b"=")
        return COMPACT_PREFIX + raw.decode("ascii")

    @classmethod
    def from_compact(cls, text: str) -> "Voucher":
        """Parses a pasted or scanned voucher string; DecodeError with a readable reason."""
        text = text.strip()
        if len(text) > MAX_COMPACT_CHARS:
            raise DecodeError(f"voucher string longer than {MAX_COMPACT_CHARS} characters", "voucher")
        if not text.startswith(COMPACT_PREFIX):
            raise DecodeError(f"a voucher string starts with {COMPACT_PREFIX!r}", "voucher")
        body = text[len(COMPACT_PREFIX):]
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise DecodeError("the voucher string has characters outside base64url, or is cut short",
                              "voucher") from None
        return cls.from_wire(decode(raw))


def sign_voucher(member: keys.SigningKey, chain_id: bytes, partner_id: bytes,
                 max_points: int, nonce: bytes, expiry_ms: int) -> Voucher:
    """Signs a voucher; DecodeError (a ValueError) for a ``max_points`` outside
    MIN_VOUCHER_POINTS..MAX_VOUCHER_POINTS, which no ledger would accept."""
    expect_uint(max_points, "voucher.max_points", MIN_VOUCHER_POINTS, MAX_VOUCHER_POINTS)
    unsigned = Voucher(chain_id, member.public_key, partner_id, max_points, nonce, expiry_ms,
                       b"\x00" * SIGNATURE_BYTES)
    return Voucher(chain_id, member.public_key, partner_id, max_points, nonce, expiry_ms,
                   member.sign(unsigned.signing_bytes()))
