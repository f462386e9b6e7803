"""Ed25519 edge cases for the signature-rule tests, built from first principles.

Owns the curve constants, the eight small-order points and their non-canonical encodings, and
forgers that make signatures a verifier must refuse: ones that satisfy the cofactorless equation
only because a key or an R is a small-order (or mixed-order) point. Point arithmetic comes from
libsodium's ``crypto_core_ed25519_*`` and ``crypto_scalarmult_ed25519_*`` (PyNaCl); scalars and
the challenge hash are computed here with Python integers, so these helpers never depend on the
verifier under test.
"""

from __future__ import annotations

import hashlib

from nacl import bindings as sodium

P = 2**255 - 19                                                  # the field prime
L = 2**252 + 27742317777372353535851937790883648493              # the prime subgroup's order


def _le(value: int) -> bytes:
    return value.to_bytes(32, "little")


def with_sign_bit(encoding: bytes) -> bytes:
    return encoding[:31] + bytes([encoding[31] | 0x80])


IDENTITY = _le(1)                                                # order 1
ORDER_2 = _le(P - 1)                                             # (0, -1)
ORDER_4 = _le(0)                                                 # (sqrt(-1), 0)
ORDER_8_A = bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05")
ORDER_8_B = bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a")

# The 8 points of small order (the torsion subgroup), each by its canonical encoding.
SMALL_ORDER = {
    "identity": IDENTITY,
    "order 2": ORDER_2,
    "order 4": ORDER_4,
    "order 4, x negated": with_sign_bit(ORDER_4),
    "order 8 (26e8…)": ORDER_8_A,
    "order 8 (26e8…), x negated": with_sign_bit(ORDER_8_A),
    "order 8 (c717…)": ORDER_8_B,
    "order 8 (c717…), x negated": with_sign_bit(ORDER_8_B),
}

# Every other encoding that decodes (with a lax decoder) to a small-order point: "negative
# zero" (x = 0 with the sign bit set) and y + p for the y that still fit in 255 bits.
SMALL_ORDER_NON_CANONICAL = {
    "identity, negative zero": with_sign_bit(IDENTITY),
    "order 2, negative zero": with_sign_bit(ORDER_2),
    "order 4 as y = p": _le(P),
    "order 4 as y = p, sign bit": with_sign_bit(_le(P)),
    "identity as y = p + 1": _le(P + 1),
    "identity as y = p + 1, sign bit": with_sign_bit(_le(P + 1)),
}


def challenge(r: bytes, public_key: bytes, message: bytes) -> int:
    """k = SHA-512(R || A || M) mod L (RFC 8032 §5.1.7)."""
    return int.from_bytes(hashlib.sha512(r + public_key + message).digest(), "little") % L


def zero_signature(public_key: bytes) -> bytes:
    """The forged signature of finding 1: R = the key itself, S = 0."""
    return public_key + bytes(32)


def zero_signature_holds(public_key: bytes, message: bytes) -> bool:
    """Whether the cofactorless equation [S]B - [k]A == R holds for ``zero_signature`` of a
    small-order A: then -[k]A == A, that is (k + 1) is a multiple of A's order."""
    k = challenge(public_key, public_key, message)
    order = {IDENTITY: 1, ORDER_2: 2, ORDER_4: 4, with_sign_bit(ORDER_4): 4}.get(public_key, 8)
    return (k + 1) % order == 0


def secret_scalar(seed: bytes) -> int:
    """The clamped secret scalar a of an Ed25519 seed (RFC 8032 §5.1.5)."""
    digest = bytearray(hashlib.sha512(seed).digest()[:32])
    digest[0] &= 248
    digest[31] &= 127
    digest[31] |= 64
    return int.from_bytes(digest, "little")


def public_key(seed: bytes) -> bytes:
    return sodium.crypto_scalarmult_ed25519_base_noclamp(_le(secret_scalar(seed) % L))


def sign_with_r(seed: bytes, message: bytes, r: int) -> bytes:
    """A signature with a chosen nonce r, for the key of ``seed``: R = [r]B, S = r + k*a."""
    a = secret_scalar(seed)
    r_point = sodium.crypto_scalarmult_ed25519_base_noclamp(_le(r % L)) if r % L else IDENTITY
    k = challenge(r_point, public_key(seed), message)
    return r_point + _le((r + k * a) % L)


def identity_r_signature(seed: bytes, message: bytes) -> bytes:
    """R = the identity (small order), S = k*a: [S]B - [k]A == identity holds cofactorlessly."""
    return sign_with_r(seed, message, 0)


def mixed_order_key(seed: bytes, torsion: bytes = ORDER_8_A) -> bytes:
    """A' = A + T: a prime-order key plus a point of order 8."""
    return sodium.crypto_core_ed25519_add(public_key(seed), torsion)


def mixed_order_signature(seed: bytes, torsion: bytes = ORDER_8_A, tries: int = 256) -> tuple[bytes, bytes, bytes]:
    """(A', message, signature) where the signature made with A's secret satisfies the
    cofactorless equation under A' = A + T: [S]B - [k]A' = R - [k]T, which is R exactly when
    k is a multiple of 8. Searches the messages b"mixed-0", b"mixed-1", ... for one."""
    mixed = mixed_order_key(seed, torsion)
    a = secret_scalar(seed)
    for i in range(tries):
        message = b"mixed-%d" % i
        r = int.from_bytes(hashlib.sha512(b"nonce" + message).digest(), "little") % L
        r_point = sodium.crypto_scalarmult_ed25519_base_noclamp(_le(r))
        k = challenge(r_point, mixed, message)
        if k % 8 == 0:
            return mixed, message, r_point + _le((r + k * a) % L)
    raise AssertionError("no message with k = 0 mod 8 found")


def mixed_order_r_signature(seed: bytes, message: bytes, torsion: bytes = ORDER_8_A) -> bytes:
    """R' = [r]B + T, S = r + k*a with k over R's bytes: the cofactored equation holds, the
    cofactorless one does not ([S]B - [k]A = [r]B, not R'). Only the key's holder can make it."""
    a = secret_scalar(seed)
    r = int.from_bytes(hashlib.sha512(b"nonce" + message).digest(), "little") % L
    r_point = sodium.crypto_core_ed25519_add(sodium.crypto_scalarmult_ed25519_base_noclamp(_le(r)), torsion)
    k = challenge(r_point, public_key(seed), message)
    return r_point + _le((r + k * a) % L)
