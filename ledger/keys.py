"""Ed25519 keys, key files and party ids.

Owns: generating signing keys, reading and writing them as PKCS#8 PEM (optionally
passphrase-encrypted, mode 0600), deriving a party id from a public key, and the two
primitive operations ``sign`` and ``verify`` used by every signed structure.

A party id is ``SHA-256(encode(["nanum/v1/party-id", public_key]))[:20]``; it is the same
for every role, carries no personal data, and is shown as 40 lowercase hex digits.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import files
from ledger.encoding import encode
from ledger.limits import PARTY_ID_BYTES, PUBLIC_KEY_BYTES, SIGNATURE_BYTES

PARTY_ID_TAG = "nanum/v1/party-id"
KEY_FILE_MODE = 0o600
MAX_KEY_FILE_BYTES = 16 * 1024
PARTY_ID_CACHE_ENTRIES = 65_536   # recent public keys whose party id is kept (replay hot path)
PUBLIC_KEY_CACHE_ENTRIES = 16_384 # recent public keys kept parsed for verification (~0.5 KiB each)


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


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True only for a valid Ed25519 signature; never raises for bad input."""
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        _public_key(bytes(public_key)).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


@functools.lru_cache(maxsize=PUBLIC_KEY_CACHE_ENTRIES)
def _public_key(public_key: bytes) -> Ed25519PublicKey:
    # Members and centres sign again and again; parsing the key each time cost about 1.5% of a
    # verification. A key that does not parse raises ValueError, which is not cached.
    return Ed25519PublicKey.from_public_bytes(public_key)


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
