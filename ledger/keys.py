"""Ed25519 keys, key files and party ids.

Owns: generating signing keys, reading and writing them as PKCS#8 PEM (optionally
passphrase-encrypted, mode 0600), deriving a party id from a public key, the key rule
(``public_key_valid``, ``key_problem``) and the two primitive operations ``sign`` and
``verify`` used by every signed structure. No other module verifies an Ed25519 signature.

The key rule and the signature rule are docs/FORMAT.md §2 and §3, stated there precisely
enough for an independent verifier. In short: a key is a canonical encoding of a point of the
prime-order subgroup other than the identity (libsodium's ``crypto_core_ed25519_is_valid_point``);
a signature verifies when its key passes the key rule, S < L, R is not of small order, and
encode([S]B - [k]A) == R byte for byte, k = SHA-512(R || A || M) mod L — the cofactorless
equation of libsodium's ``crypto_sign_verify_detached``, which is what ``verify`` calls.
OpenSSL (``cryptography``) is kept for signing and key files only: its verifier accepts
small-order keys and R values, so two auditors using the two libraries split on one chain.

A party id is ``SHA-256(encode(["nanum/v1/party-id", public_key]))[:20]``; it is the same
for every role, carries no personal data, and is shown as 40 lowercase hex digits.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nacl import bindings as sodium
from nacl.exceptions import BadSignatureError

from ledger import files
from ledger.encoding import encode
from ledger.limits import PARTY_ID_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES

PARTY_ID_TAG = "nanum/v1/party-id"
KEY_FILE_MODE = 0o600
MAX_KEY_FILE_BYTES = 16 * 1024
PARTY_ID_CACHE_ENTRIES = 65_536   # recent public keys whose party id is kept (replay hot path)
KEY_RULE_CACHE_ENTRIES = 16_384   # recent public keys whose key-rule verdict is kept (~0.2 KiB each)
KEY_GENERATE_HINT = "generate a new key with `nanum keys generate`"

if not sodium.has_crypto_core_ed25519:     # libsodium < 1.0.16 has no is_valid_point
    raise ImportError("nanum needs PyNaCl built with libsodium >= 1.0.16 (crypto_core_ed25519_*)")

FIELD_PRIME = 2**255 - 19
# libsodium's blacklist of small-order encodings, by y with the sign bit cleared: 0 (order 4),
# 1 (order 1), the two order-8 y values, p - 1 (order 2), and p, p + 1 (non-canonical 0 and 1).
_SMALL_ORDER_Y = frozenset({
    0, 1, FIELD_PRIME - 1, FIELD_PRIME, FIELD_PRIME + 1,
    int.from_bytes(bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"),
    int.from_bytes(bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"), "little"),
})
_IDENTITY = (1).to_bytes(PUBLIC_KEY_BYTES, "little")


class KeyFileError(Exception):
    """A key file that cannot be read: missing, unreadable, wrong passphrase, wrong key type."""


class SigningKey:
    """An Ed25519 private key with its public half and party id precomputed."""

    __slots__ = ("_private", "public_key", "party_id")

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.public_key: bytes = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.party_id: bytes = party_id(self.public_key)

    @classmethod
    def generate(cls) -> "SigningKey":
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> "SigningKey":
        """Deterministic key from a 32-byte seed; for tests and simulations only."""
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def private_key(self) -> Ed25519PrivateKey:
        return self._private

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        algorithm = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self._private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, algorithm
        )

    @classmethod
    def from_pem(cls, pem: bytes, passphrase: bytes | None = None) -> "SigningKey":
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase or None)
        except TypeError as exc:  # encrypted key without passphrase, or the reverse
            raise KeyFileError(_passphrase_hint(exc)) from None
        except ValueError:
            raise KeyFileError("not a PKCS#8 PEM private key, or the passphrase is wrong") from None
        except UnsupportedAlgorithm:
            raise KeyFileError("the key file holds a key of an unsupported algorithm") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError("the key is not an Ed25519 key")
        return cls(key)


def _passphrase_hint(exc: TypeError) -> str:
    # cryptography says "Password was not given but private key is encrypted", or
    # "Password was given but private key is not encrypted".
    if "not encrypted" in str(exc).lower():
        return "the key file is not encrypted; do not give a passphrase"
    return "the key file is encrypted; give its passphrase"


def party_id(public_key: bytes) -> bytes:
    if len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"a public key has {PUBLIC_KEY_BYTES} bytes")
    return _party_id(bytes(public_key))


@functools.lru_cache(maxsize=PARTY_ID_CACHE_ENTRIES)
def _party_id(public_key: bytes) -> bytes:
    # A pure function of the key, asked for several times per transaction (author, member,
    # voucher, history); the same few thousand keys recur, so a bounded cache pays.
    return hashlib.sha256(encode([PARTY_ID_TAG, public_key])).digest()[:PARTY_ID_BYTES]


def public_key_valid(public_key: object) -> bool:
    """The key rule (FORMAT.md §2): 32 bytes, canonical (y < p), a point on the curve, not of
    small order, in the prime-order subgroup. False for anything else; never raises."""
    if not isinstance(public_key, (bytes, bytearray, memoryview)) or len(public_key) != PUBLIC_KEY_BYTES:
        return False
    return _key_rule(bytes(public_key))


@functools.lru_cache(maxsize=KEY_RULE_CACHE_ENTRIES)
def _key_rule(public_key: bytes) -> bool:
    # The subgroup check is a scalar multiplication by L: ~51 us, about 0.8 of a verification
    # (benchmarks/signature_rate.py). Members, centres and nodes sign again and again with the
    # same keys, so a bounded cache of verdicts pays; a key that fails is cached too (False).
    return bool(sodium.crypto_core_ed25519_is_valid_point(public_key))


def key_problem(public_key: object) -> str | None:
    """None for a key that passes the key rule; else why not, in words a person can act on."""
    if public_key_valid(public_key):
        return None
    if not isinstance(public_key, (bytes, bytearray, memoryview)) or len(public_key) != PUBLIC_KEY_BYTES:
        return f"a public key has {PUBLIC_KEY_BYTES} bytes"
    raw = bytes(public_key)
    y = int.from_bytes(raw, "little") & ((1 << 255) - 1)
    if y in _SMALL_ORDER_Y:
        reason = "it is a point of small order, under which anyone can forge signatures"
    elif y >= FIELD_PRIME:
        reason = "its encoding is not canonical (y >= 2^255 - 19)"
    elif not _on_curve(raw):
        reason = "it is not a point on the Ed25519 curve"
    else:
        reason = "it is not in the prime-order subgroup (a small-order component was added)"
    return f"public key {raw.hex()} is not a valid Ed25519 key: {reason}; {KEY_GENERATE_HINT}"


def _on_curve(public_key: bytes) -> bool:
    # libsodium's point addition refuses an encoding that decodes to no point of the curve.
    try:
        sodium.crypto_core_ed25519_add(public_key, _IDENTITY)
    except Exception:   # nacl raises its RuntimeError or ValueError subclasses here
        return False
    return True


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True only if ``signature`` over ``message`` verifies under the signature rule
    (FORMAT.md §3) with a key that passes the key rule; never raises for bad input."""
    try:
        if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
            return False
        if not public_key_valid(public_key):
            return False
        # crypto_sign_open is libsodium's crypto_sign_verify_detached on R || S || M.
        sodium.crypto_sign_open(bytes(signature) + bytes(message), bytes(public_key))
    except (BadSignatureError, TypeError, ValueError):
        return False
    return True


def write_key_file(path: Path, key: SigningKey, passphrase: bytes | None = None) -> None:
    """Writes the key as PKCS#8 PEM, created with mode 0600 and fsynced; refuses to overwrite."""
    files.write_new_file(Path(path), key.to_pem(passphrase), KEY_FILE_MODE)


def read_key_file(path: Path, passphrase: bytes | None = None) -> SigningKey:
    path = Path(path)
    try:
        pem = files.read_limited(path, MAX_KEY_FILE_BYTES)
    except files.FileTooLarge:
        raise KeyFileError(f"key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    return SigningKey.from_pem(pem, passphrase)


def hex_id(raw: bytes) -> str:
    return raw.hex()


def parse_hex_id(text: str, size: int, what: str) -> bytes:
    """Parses an id typed by a person; ValueError with a readable message otherwise."""
    cleaned = text.strip().lower()
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"{what} must be {size * 2} hex digits") from None
    if len(raw) != size:
        raise ValueError(f"{what} must be {size * 2} hex digits, got {len(cleaned)}")
    return raw
