"""Tests of ledger/keys.py: party ids, key files, and signatures that never raise on bad input."""

import base64
import hashlib
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from ledger.keys import (
    MAX_KEY_FILE_BYTES,
    KeyFileError,
    SigningKey,
    party_id,
    parse_hex_id,
    read_key_file,
    verify,
    write_key_file,
)
from ledger.limits import PARTY_ID_BYTES
from tests.consortium import key

MESSAGE = b"deposit 120 points for member 7"


@pytest.fixture
def centre() -> SigningKey:
    return key("centre-a")


def _pem(der: bytes) -> bytes:
    return b"-----BEGIN PRIVATE KEY-----\n" + base64.encodebytes(der) + b"-----END PRIVATE KEY-----\n"


# --- party ids ----------------------------------------------------------------------------


def test_party_id_is_20_bytes_and_deterministic(centre):
    assert len(centre.party_id) == PARTY_ID_BYTES
    assert party_id(centre.public_key) == centre.party_id
    assert key("centre-a").party_id == centre.party_id


def test_party_id_follows_the_documented_derivation(centre):
    # SHA-256(encode(["nanum/v1/party-id", public_key]))[:20], written out in raw msgpack.
    tag = b"nanum/v1/party-id"
    encoded = b"\x92" + bytes([0xA0 | len(tag)]) + tag + b"\xc4\x20" + centre.public_key
    assert centre.party_id == hashlib.sha256(encoded).digest()[:20]


def test_different_keys_have_different_party_ids():
    ids = {key(f"member:{i}").party_id for i in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize("size", [0, 31, 33])
def test_party_id_refuses_a_public_key_of_the_wrong_length(size):
    with pytest.raises(ValueError):
        party_id(bytes(size))


# --- signatures -----------------------------------------------------------------------------


def test_a_signature_verifies_under_its_key_only(centre):
    signature = centre.sign(MESSAGE)
    assert verify(centre.public_key, signature, MESSAGE)
    assert not verify(key("centre-b").public_key, signature, MESSAGE)
    assert not verify(centre.public_key, signature, MESSAGE + b"0")


def test_a_flipped_bit_in_the_signature_fails(centre):
    signature = bytearray(centre.sign(MESSAGE))
    signature[10] ^= 0x01
    assert verify(centre.public_key, bytes(signature), MESSAGE) is False


@pytest.mark.parametrize("public_key, signature", [
    (bytes(31), bytes(64)),
    (bytes(33), bytes(64)),
    (b"", b""),
    (bytes(32), bytes(63)),
    (bytes(32), bytes(65)),
    (bytes(32), bytes(64)),             # the all-zero (small order) point
    (b"\xff" * 32, bytes(64)),          # not a point on the curve
    (b"\xff" * 32, b"\xff" * 64),
], ids=["key31", "key33", "empty", "sig63", "sig65", "zero-key", "off-curve", "off-curve-ff"])
def test_verify_returns_false_and_never_raises_for_bad_input(public_key, signature):
    assert verify(public_key, signature, MESSAGE) is False


def test_signing_is_deterministic(centre):
    assert centre.sign(MESSAGE) == key("centre-a").sign(MESSAGE)


# --- key files ------------------------------------------------------------------------------


def test_key_file_is_created_with_mode_0600_even_under_a_permissive_umask(tmp_path, centre):
    path = tmp_path / "centre.pem"
    old = os.umask(0)
    try:
        write_key_file(path, centre)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_key_file_is_never_overwritten(tmp_path, centre):
    path = tmp_path / "centre.pem"
    write_key_file(path, centre)
    before = path.read_bytes()
    with pytest.raises(FileExistsError):
        write_key_file(path, key("centre-b"))
    assert path.read_bytes() == before
    assert read_key_file(path).public_key == centre.public_key


def test_key_file_round_trip_without_passphrase(tmp_path, centre):
    path = tmp_path / "centre.pem"
    write_key_file(path, centre)
    loaded = read_key_file(path)
    assert loaded.public_key == centre.public_key
    assert loaded.party_id == centre.party_id
    assert loaded.sign(MESSAGE) == centre.sign(MESSAGE)


def test_key_file_round_trip_with_passphrase(tmp_path, centre):
    path = tmp_path / "centre.pem"
    write_key_file(path, centre, passphrase=b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    loaded = read_key_file(path, passphrase=b"correct horse")
    assert loaded.public_key == centre.public_key
    assert loaded.sign(MESSAGE) == centre.sign(MESSAGE)


def test_wrong_passphrase_is_a_key_file_error_that_says_so(tmp_path, centre):
    path = tmp_path / "centre.pem"
    write_key_file(path, centre, passphrase=b"correct horse")
    with pytest.raises(KeyFileError, match="passphrase"):
        read_key_file(path, passphrase=b"battery staple")


def test_missing_passphrase_tells_the_user_to_give_one(tmp_path, centre):
    path = tmp_path / "centre.pem"
    write_key_file(path, centre, passphrase=b"correct horse")
    with pytest.raises(KeyFileError) as caught:
        read_key_file(path)
    message = str(caught.value)
    assert "give its passphrase" in message
    assert "not encrypted" not in message


def test_passphrase_on_an_unencrypted_key_tells_the_user_to_drop_it(tmp_path, centre):
    path = tmp_path / "centre.pem"
    write_key_file(path, centre)
    with pytest.raises(KeyFileError, match="not encrypted; do not give a passphrase"):
        read_key_file(path, passphrase=b"correct horse")


def test_an_ec_key_is_refused_as_not_ed25519(tmp_path):
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    path = tmp_path / "ec.pem"
    path.write_bytes(pem)
    with pytest.raises(KeyFileError, match="Ed25519"):
        read_key_file(path)


def test_an_x25519_key_is_refused_as_not_ed25519():
    pem = x25519.X25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(KeyFileError, match="Ed25519"):
        SigningKey.from_pem(pem)


def test_a_pkcs8_key_of_an_unknown_algorithm_is_a_key_file_error(centre):
    der = centre.private_key().private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    ed25519_oid, unknown_oid = bytes.fromhex("06032b6570"), bytes.fromhex("06032b657f")
    assert ed25519_oid in der
    with pytest.raises(KeyFileError):
        SigningKey.from_pem(_pem(der.replace(ed25519_oid, unknown_oid)))


def test_a_public_key_pem_is_refused(centre):
    pem = centre.private_key().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(KeyFileError):
        SigningKey.from_pem(pem)


@pytest.mark.parametrize("content", [
    b"",
    b"\xff" * 100,
    b"not a key at all\n",
    _pem(b"\x00" * 48),
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
], ids=["empty", "binary", "text", "pem-of-zeros", "encrypted-garbage"])
def test_a_garbage_key_file_is_a_key_file_error(tmp_path, content):
    path = tmp_path / "garbage.pem"
    path.write_bytes(content)
    with pytest.raises(KeyFileError):
        read_key_file(path)
    with pytest.raises(KeyFileError):
        read_key_file(path, passphrase=b"pw")


def test_an_oversized_key_file_is_refused_before_parsing(tmp_path, centre):
    path = tmp_path / "big.pem"
    path.write_bytes(centre.to_pem() + b"\n" * MAX_KEY_FILE_BYTES)
    with pytest.raises(KeyFileError, match="larger than"):
        read_key_file(path)


def test_a_missing_key_file_is_a_key_file_error_naming_the_path(tmp_path):
    path = tmp_path / "absent.pem"
    with pytest.raises(KeyFileError, match="absent.pem"):
        read_key_file(path)


def test_a_directory_is_not_a_key_file(tmp_path):
    with pytest.raises(KeyFileError):
        read_key_file(tmp_path)


# --- ids typed by people ---------------------------------------------------------------------


def test_a_hex_party_id_parses_back(centre):
    text = centre.party_id.hex()
    assert parse_hex_id(text, PARTY_ID_BYTES, "member id") == centre.party_id
    assert parse_hex_id(f"  {text.upper()}\n", PARTY_ID_BYTES, "member id") == centre.party_id


@pytest.mark.parametrize("text", ["", "abc", "zz" * 20, "00" * 19, "00" * 21])
def test_a_bad_hex_id_is_a_readable_value_error(text):
    with pytest.raises(ValueError, match="member id must be 40 hex digits"):
        parse_hex_id(text, PARTY_ID_BYTES, "member id")
