"""Tests of node/pki.py: the consortium CA, issued certificates, identities and PEM files."""

import os
import stat
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger.keys import SigningKey
from node.pki import (
    MAX_CERT_PEM_BYTES,
    ROLES,
    Identity,
    PkiError,
    certificate_pem,
    client_identity,
    create_ca,
    generate_tls_key,
    identity_from_pem,
    issue_certificate,
    load_certificate,
    node_host_name,
    private_key_pem,
    read_certificate,
    read_private_key,
    verify_issued_by,
    write_certificate,
    write_private_key,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
PARTY = SigningKey.from_seed(bytes(32)).party_id


@pytest.fixture(scope="module")
def ca():
    return create_ca("Gwangju Nanum Bank", 3650, NOW)


def _issue(ca, identity, hosts=(), valid_days=365, now=NOW):
    key = generate_tls_key()
    cert = issue_certificate(ca[0], ca[1], identity, key.public_key(), list(hosts), valid_days, now)
    return key, cert


def _ext(cert, kind):
    return cert.extensions.get_extension_for_class(kind).value


# --- the CA and issued certificates ---------------------------------------------------------


def test_the_ca_is_a_self_signed_ca_for_leaf_certificates_only(ca):
    key, cert = ca
    constraints = _ext(cert, x509.BasicConstraints)
    assert constraints.ca and constraints.path_length == 0
    usage = _ext(cert, x509.KeyUsage)
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    assert _ext(cert, x509.SubjectKeyIdentifier).digest
    assert cert.subject == cert.issuer
    assert isinstance(key.curve, ec.SECP256R1)
    verify_issued_by(certificate_pem(cert), certificate_pem(cert), NOW)


@pytest.mark.parametrize("role", ROLES)
def test_issued_certificates_verify_and_carry_their_identity(ca, role):
    identity = Identity(role, f"{role} one", PARTY)
    _, cert = _issue(ca, identity)
    pem = certificate_pem(cert)
    verify_issued_by(pem, certificate_pem(ca[1]), NOW)
    assert identity_from_pem(pem) == identity
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"{role}:{role} one"
    san = _ext(cert, x509.SubjectAlternativeName)
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"nanum://{role}/{PARTY.hex()}"]


def test_node_certificates_serve_and_connect_other_roles_only_connect(ca):
    _, node = _issue(ca, Identity("node", "node-0", PARTY), ["localhost", "127.0.0.1"])
    _, centre = _issue(ca, Identity("centre", "centre", PARTY))
    assert list(_ext(node, x509.ExtendedKeyUsage)) == [
        ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert list(_ext(centre, x509.ExtendedKeyUsage)) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = _ext(node, x509.SubjectAlternativeName)
    # Besides the shared host names, a node's own name: its peers dial expecting exactly it.
    assert san.get_values_for_type(x509.DNSName) == [f"{PARTY.hex()}.node.nanum", "localhost"]
    assert node_host_name(PARTY) == f"{PARTY.hex()}.node.nanum"
    assert _ext(centre, x509.SubjectAlternativeName).get_values_for_type(x509.DNSName) == []
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert _ext(node, x509.BasicConstraints).ca is False
    aki = _ext(node, x509.AuthorityKeyIdentifier).key_identifier
    assert aki == _ext(ca[1], x509.SubjectKeyIdentifier).digest


def test_a_leaf_never_outlives_its_ca():
    short_ca = create_ca("Short", 10, NOW)
    _, cert = _issue(short_ca, Identity("node", "n", PARTY), valid_days=365)
    assert cert.not_valid_after_utc == short_ca[1].not_valid_after_utc


def test_client_only_identities_get_fresh_random_party_ids():
    first, second = client_identity("auditor", "auditor"), client_identity("auditor", "auditor")
    assert len(first.party_id) == 20 and first.party_id != second.party_id
    with pytest.raises(PkiError):
        client_identity("centre", "a centre is a ledger party")


@pytest.mark.parametrize("role, name, party", [
    ("wizard", "x", PARTY), ("node", "x", PARTY[:19]), ("node", "", PARTY),
    ("partner", "p" * 57, PARTY),
])
def test_identities_are_checked(role, name, party):
    with pytest.raises(PkiError):
        Identity(role, name, party)


def test_issuing_refuses_a_mismatched_ca_key_and_non_p256_keys(ca):
    other_key, _ = create_ca("Other", 30, NOW)
    identity = Identity("node", "n", PARTY)
    with pytest.raises(PkiError, match="does not belong"):
        issue_certificate(other_key, ca[1], identity, generate_tls_key().public_key(), [], 1, NOW)
    for public in (ec.generate_private_key(ec.SECP384R1()).public_key(),
                   ed25519.Ed25519PrivateKey.generate().public_key()):
        with pytest.raises(PkiError, match="P-256"):
            issue_certificate(ca[0], ca[1], identity, public, [], 1, NOW)


@pytest.mark.parametrize("hosts", [["bad host"], ["-x.example"], ["h"] * 17])
def test_issuing_refuses_bad_hosts(ca, hosts):
    with pytest.raises(PkiError):
        _issue(ca, Identity("node", "n", PARTY), hosts)


@pytest.mark.parametrize("days", [0, -1, True, 100 * 365 + 1])
def test_issuing_refuses_bad_validity(ca, days):
    with pytest.raises(PkiError, match="valid_days"):
        _issue(ca, Identity("node", "n", PARTY), valid_days=days)


# --- verify_issued_by -----------------------------------------------------------------------


def test_a_certificate_from_another_ca_fails(ca):
    other = create_ca("Gwangju Nanum Bank", 3650, NOW)      # same name, different key
    _, cert = _issue(other, Identity("centre", "c", PARTY))
    with pytest.raises(PkiError, match="not issued by"):
        verify_issued_by(certificate_pem(cert), certificate_pem(ca[1]), NOW)


def test_a_leaf_is_not_an_issuer(ca):
    _, leaf = _issue(ca, Identity("node", "n", PARTY))
    with pytest.raises(PkiError, match="not a CA"):
        verify_issued_by(certificate_pem(leaf), certificate_pem(leaf), NOW)


@pytest.mark.parametrize("when, message", [
    (NOW + timedelta(days=366), "expired"),
    (NOW - timedelta(days=1), "not valid before"),
])
def test_validity_is_checked_at_the_given_time(ca, when, message):
    _, cert = _issue(ca, Identity("member", "members", PARTY), valid_days=365)
    with pytest.raises(PkiError, match=message):
        verify_issued_by(certificate_pem(cert), certificate_pem(ca[1]), when)
    verify_issued_by(certificate_pem(cert), certificate_pem(ca[1]), NOW + timedelta(days=364))


def test_an_expired_ca_fails_even_for_a_valid_leaf():
    old_ca = create_ca("Old", 30, NOW - timedelta(days=40))
    _, cert = _issue(old_ca, Identity("node", "n", PARTY), valid_days=30,
                     now=NOW - timedelta(days=40))
    with pytest.raises(PkiError, match="CA certificate expired"):
        verify_issued_by(certificate_pem(cert), certificate_pem(old_ca[1]), NOW)


def test_verify_needs_an_aware_time(ca):
    with pytest.raises(ValueError, match="timezone"):
        verify_issued_by(certificate_pem(ca[1]), certificate_pem(ca[1]), datetime(2026, 11, 1))


# --- identity_from_pem on bad certificates --------------------------------------------------


def _hand_made(ca, cn, uris):
    key = generate_tls_key()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(ca[1].subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(NOW).not_valid_after(NOW + timedelta(days=1)))
    if uris is not None:
        names = [x509.DNSName("localhost")] + [x509.UniformResourceIdentifier(u) for u in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return certificate_pem(builder.sign(ca[0], hashes.SHA256()))


@pytest.mark.parametrize("cn, uris, message", [
    ("node:n", None, "exactly one nanum"),
    ("node:n", [], "exactly one nanum"),
    ("node:n", ["https://example.org/"], "exactly one nanum"),
    ("node:n", [f"nanum://node/{PARTY.hex()}"] * 2, "found 2"),
    ("node:n", ["nanum://node/1234"], "malformed"),
    ("node:n", [f"nanum://node/{PARTY.hex().upper()}"], "malformed"),
    ("node:n", [f"nanum://node/{PARTY.hex()}/extra"], "malformed"),
    ("wizard:n", [f"nanum://wizard/{PARTY.hex()}"], "unknown role"),
    ("centre:n", [f"nanum://node/{PARTY.hex()}"], "CN must be node:"),
    ("node:", [f"nanum://node/{PARTY.hex()}"], "name"),
])
def test_a_certificate_without_a_proper_nanum_identity_is_refused(ca, cn, uris, message):
    with pytest.raises(PkiError, match=message):
        identity_from_pem(_hand_made(ca, cn, uris))


@pytest.mark.parametrize("pem", [
    b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    b"x" * (MAX_CERT_PEM_BYTES + 1),
])
def test_garbage_is_not_a_certificate(ca, pem):
    with pytest.raises(PkiError):
        identity_from_pem(pem)
    with pytest.raises(PkiError):
        verify_issued_by(pem, certificate_pem(ca[1]), NOW)
    with pytest.raises(PkiError):
        verify_issued_by(certificate_pem(ca[1]), pem, NOW)


# --- PEM files ------------------------------------------------------------------------------


def test_key_and_certificate_files_round_trip_with_their_modes(ca, tmp_path):
    key, cert = _issue(ca, Identity("partner", "Dongmyeong Bookstore", PARTY))
    write_private_key(tmp_path / "tls.key", key)
    write_certificate(tmp_path / "tls.crt", cert)
    assert stat.S_IMODE(os.stat(tmp_path / "tls.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "tls.crt").st_mode) == 0o644
    assert (tmp_path / "tls.key").read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert private_key_pem(read_private_key(tmp_path / "tls.key")) == private_key_pem(key)
    assert read_certificate(tmp_path / "tls.crt") == cert


def test_files_are_never_overwritten(ca, tmp_path):
    key, cert = _issue(ca, Identity("node", "n", PARTY))
    write_private_key(tmp_path / "tls.key", key)
    write_certificate(tmp_path / "tls.crt", cert)
    before = (tmp_path / "tls.key").read_bytes(), (tmp_path / "tls.crt").read_bytes()
    with pytest.raises(PkiError, match="overwrite"):
        write_private_key(tmp_path / "tls.key", generate_tls_key())
    with pytest.raises(PkiError, match="overwrite"):
        write_certificate(tmp_path / "tls.crt", ca[1])
    assert ((tmp_path / "tls.key").read_bytes(), (tmp_path / "tls.crt").read_bytes()) == before


def test_reading_bad_key_files_fails_clearly(tmp_path):
    with pytest.raises(PkiError, match="cannot read"):
        read_private_key(tmp_path / "missing.key")
    (tmp_path / "big.key").write_bytes(b"x" * 20_000)
    with pytest.raises(PkiError, match="larger than"):
        read_private_key(tmp_path / "big.key")
    (tmp_path / "ed.key").write_bytes(SigningKey.generate().to_pem())
    with pytest.raises(PkiError, match="P-256"):
        read_private_key(tmp_path / "ed.key")
    with pytest.raises(PkiError):
        load_certificate(b"not pem")
