"""The consortium's TLS PKI: its certificate authority, the certificates it issues, and the
identity a peer's certificate proves.

Owns: creating the consortium CA, issuing node and client TLS certificates, reading the
nanum identity (role, name, party id) out of a peer certificate, checking that a certificate
was issued by the CA and is valid at a given time, and reading/writing PEM files.

TLS keys are ECDSA P-256 (what gRPC's BoringSSL supports everywhere). They are separate from
the Ed25519 ledger signing keys of ``ledger.keys``: a TLS key authenticates a connection, a
ledger key signs transactions.

A leaf certificate carries its identity twice:

* subject CN ``"<role>:<name>"`` — a display name for people and logs;
* a SAN URI ``nanum://<role>/<party_id_hex>`` — the identity the node acts on. For parties of
  the ledger (nodes, centres, partners, admins) the party id is that of their Ed25519 key; for
  client-only identities (auditors, the shared member certificate) it is a random 20-byte id.

Clock reads: ``create_ca`` and ``issue_certificate`` take ``now`` (default: the current time)
for the validity period; ``verify_issued_by`` never reads the clock — the caller passes ``now``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ledger import files
from ledger.limits import PARTY_ID_BYTES

# --- named limits and constants ------------------------------------------------------------

ROLES = ("node", "centre", "partner", "admin", "member", "auditor")
CLIENT_ONLY_ROLES = ("member", "auditor")    # not ledger parties: random party ids
URI_SCHEME = "nanum"
MAX_CERT_PEM_BYTES = 64 * 1024               # one certificate in PEM
MAX_KEY_PEM_BYTES = 16 * 1024                # one private key in PEM
MAX_COMMON_NAME_CHARS = 64                   # X.509 upper bound (RFC 5280 ub-common-name)
MAX_HOSTS = 16                               # DNS/IP SANs of one certificate
MAX_HOST_CHARS = 253                         # a DNS name
MAX_VALID_DAYS = 100 * 365
# What ``nanum init`` issues (docs/ARCHITECTURE.md, "Who may call what": how to rotate).
# Leaf certificates are short-lived so that a lost or stolen TLS key stops working within a
# year even if nobody revokes it; the CA signs the renewals and lives longer.
LEAF_VALID_DAYS = 365
CA_VALID_DAYS = 10 * 365
# The DNS name that tells one node's certificate from another's: every node certificate also
# carries "<node party id hex>.node.nanum", and a node dials a peer expecting exactly that name
# (gRPC's ``grpc.ssl_target_name_override``), so a TLS handshake with any other node fails.
NODE_NAME_SUFFIX = "node.nanum"
NOT_BEFORE_BACKDATE = timedelta(hours=1)     # tolerates clock skew between machines
KEY_FILE_MODE = 0o600
CERT_FILE_MODE = 0o644
TLS_CURVE = ec.SECP256R1
SIGNATURE_HASH = hashes.SHA256

_URI_PATTERN = re.compile(r"nanum://([a-z]+)/([0-9a-f]{40})")
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


class PkiError(Exception):
    """A certificate or key that cannot be used: unreadable, malformed, not issued by the
    consortium CA, outside its validity period, or without a nanum identity."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a certificate speaks for. ``party_id`` is authoritative; ``name`` is for display."""

    role: str
    name: str
    party_id: bytes

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise PkiError(f"unknown role {self.role!r}; roles are {', '.join(ROLES)}")
        if len(self.party_id) != PARTY_ID_BYTES:
            raise PkiError(f"a party id has {PARTY_ID_BYTES} bytes, got {len(self.party_id)}")
        if not self.name or len(self.common_name) > MAX_COMMON_NAME_CHARS:
            limit = MAX_COMMON_NAME_CHARS - len(self.role) - 1
            raise PkiError(f"a {self.role} name for a certificate has 1 to {limit} characters")

    @property
    def common_name(self) -> str:
        return f"{self.role}:{self.name}"

    @property
    def uri(self) -> str:
        return f"{URI_SCHEME}://{self.role}/{self.party_id.hex()}"


def node_host_name(party_id: bytes) -> str:
    """The DNS name only node ``party_id``'s certificate carries (a node's peers check it)."""
    if len(party_id) != PARTY_ID_BYTES:
        raise PkiError(f"a party id has {PARTY_ID_BYTES} bytes, got {len(party_id)}")
    return f"{party_id.hex()}.{NODE_NAME_SUFFIX}"


def client_identity(role: str, name: str) -> Identity:
    """An identity for a client that is not a ledger party (auditor, shared member cert):
    its party id is 20 fresh random bytes."""
    if role not in CLIENT_ONLY_ROLES:
        raise PkiError(f"only {', '.join(CLIENT_ONLY_ROLES)} identities get a random party id")
    return Identity(role, name, os.urandom(PARTY_ID_BYTES))


# --- keys, the CA and leaf certificates -----------------------------------------------------


def generate_tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(TLS_CURVE())


def create_ca(name: str, valid_days: int, now: datetime | None = None
              ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    start, end = _validity(valid_days, now)
    key = generate_tls_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _ca_common_name(name))])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, SIGNATURE_HASH())
    )
    return key, cert


def issue_certificate(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                      identity: Identity, public_key: ec.EllipticCurvePublicKey,
                      hosts: list[str], valid_days: int, now: datetime | None = None
                      ) -> x509.Certificate:
    """A leaf certificate for ``identity``'s TLS key. Nodes get serverAuth and clientAuth,
    every other role clientAuth only; a node's certificate also names ``node_host_name`` of its
    party id. The end of validity never passes the CA's own."""
    _check_ca_pair(ca_key, ca_cert)
    _check_tls_public_key(public_key)
    start, end = _validity(valid_days, now)
    end = min(end, ca_cert.not_valid_after_utc)
    if end <= start:
        raise PkiError("the CA certificate expires before the new certificate would start")
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if identity.role == "node":
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        hosts = [node_host_name(identity.party_id), *hosts]
    san = [x509.UniformResourceIdentifier(identity.uri)] + [_host_name(h) for h in _hosts(hosts)]
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, SIGNATURE_HASH())
    )


def _validity(valid_days: int, now: datetime | None) -> tuple[datetime, datetime]:
    if isinstance(valid_days, bool) or not isinstance(valid_days, int) \
            or not 1 <= valid_days <= MAX_VALID_DAYS:
        raise PkiError(f"valid_days must be an integer from 1 to {MAX_VALID_DAYS}")
    now = datetime.now(timezone.utc) if now is None else _aware(now)
    return now - NOT_BEFORE_BACKDATE, now + timedelta(days=valid_days)


def _ca_common_name(name: str) -> str:
    common_name = f"{name} CA"
    if not name or len(common_name) > MAX_COMMON_NAME_CHARS:
        raise PkiError(f"a CA name has 1 to {MAX_COMMON_NAME_CHARS - 3} characters")
    return common_name


def _key_usage(cert_sign: bool) -> x509.KeyUsage:
    # A CA signs certificates and CRLs; a TLS leaf (ECDHE-ECDSA) signs handshakes.
    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign,
        crl_sign=cert_sign, encipher_only=False, decipher_only=False)


def _check_ca_pair(ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate) -> None:
    if ca_key.public_key() != ca_cert.public_key():
        raise PkiError("the CA key does not belong to the CA certificate")
    if not _is_ca(ca_cert):
        raise PkiError("the issuing certificate is not a CA certificate")


def _check_tls_public_key(public_key: object) -> None:
    if not (isinstance(public_key, ec.EllipticCurvePublicKey)
            and isinstance(public_key.curve, TLS_CURVE)):
        raise PkiError("TLS keys are ECDSA P-256 keys")


def _hosts(hosts: list[str]) -> list[str]:
    if len(hosts) > MAX_HOSTS:
        raise PkiError(f"a certificate names at most {MAX_HOSTS} hosts")
    return list(dict.fromkeys(hosts))     # drop repeats, keep order


def _host_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.split(".")
    if len(host) > MAX_HOST_CHARS or not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise PkiError(f"{host!r} is neither an IP address nor a DNS name")
    return x509.DNSName(host.lower())


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):   # absent, or unparseable extensions
        return False


def _aware(now: datetime) -> datetime:
    # Naive datetimes are a programmer error: their zone is a guess.
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware, e.g. datetime.now(timezone.utc)")
    return now.astimezone(timezone.utc)


# --- reading and checking peer certificates -------------------------------------------------


def load_certificate(cert_pem: bytes) -> x509.Certificate:
    """Parses one PEM certificate; PkiError if it is too large or not a certificate."""
    if len(cert_pem) > MAX_CERT_PEM_BYTES:
        raise PkiError(f"a certificate is larger than {MAX_CERT_PEM_BYTES} bytes")
    try:
        return x509.load_pem_x509_certificate(bytes(cert_pem))
    except ValueError:
        raise PkiError("not a PEM X.509 certificate") from None


def identity_from_certificate(cert: x509.Certificate) -> Identity:
    """The identity in the certificate's single nanum SAN URI, named by its CN."""
    uris = [u for u in _san_uris(cert) if u.lower().startswith(f"{URI_SCHEME}:")]
    if len(uris) != 1:
        raise PkiError(f"the certificate must carry exactly one {URI_SCHEME}:// URI, "
                       f"found {len(uris)}")
    match = _URI_PATTERN.fullmatch(uris[0])
    if match is None:
        raise PkiError(f"malformed identity URI {uris[0]!r}; "
                       f"expected {URI_SCHEME}://<role>/<40 hex digits>")
    role, party_hex = match.groups()
    if role not in ROLES:
        raise PkiError(f"unknown role {role!r} in the certificate's identity URI")
    return Identity(role, _name_for_role(cert, role), bytes.fromhex(party_hex))


def identity_from_pem(cert_pem: bytes) -> Identity:
    """The identity of a peer certificate as gRPC gives it (auth context ``x509_pem_cert``)."""
    return identity_from_certificate(load_certificate(cert_pem))


def _san_uris(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError:
        raise PkiError("the certificate's extensions cannot be parsed") from None
    return san.get_values_for_type(x509.UniformResourceIdentifier)


def _name_for_role(cert: x509.Certificate, role: str) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    prefix = f"{role}:"
    if len(names) != 1 or not str(names[0].value).startswith(prefix):
        raise PkiError(f"the certificate's CN must be {prefix}<name>, matching its identity URI")
    return str(names[0].value)[len(prefix):]


def verify_issued_by(cert_pem: bytes, ca_cert_pem: bytes, now: datetime) -> None:
    """Raises PkiError unless ``ca_cert_pem`` is a CA certificate that signed ``cert_pem``
    and both are valid at ``now`` (timezone-aware; this function reads no clock)."""
    now = _aware(now)
    cert, ca_cert = load_certificate(cert_pem), load_certificate(ca_cert_pem)
    if not _is_ca(ca_cert):
        raise PkiError("the issuer certificate is not a CA certificate")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise PkiError("the certificate was not issued by the consortium CA") from None
    _check_period(ca_cert, now, "the CA certificate")
    _check_period(cert, now, "the certificate")


def _check_period(cert: x509.Certificate, now: datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise PkiError(f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now > cert.not_valid_after_utc:
        raise PkiError(f"{what} expired at {cert.not_valid_after_utc.isoformat()}")


# --- PEM forms and files --------------------------------------------------------------------


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_private_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    if len(key_pem) > MAX_KEY_PEM_BYTES:
        raise PkiError(f"a private key is larger than {MAX_KEY_PEM_BYTES} bytes")
    try:
        key = serialization.load_pem_private_key(bytes(key_pem), password=None)
    except (ValueError, TypeError):
        raise PkiError("not an unencrypted PKCS#8 PEM private key") from None
    if not (isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, TLS_CURVE)):
        raise PkiError("the TLS key is not an ECDSA P-256 key")
    return key


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """PKCS#8 PEM, created with mode 0600 and fsynced; refuses to overwrite."""
    write_new_file(path, private_key_pem(key), KEY_FILE_MODE)


def write_certificate(path: Path, cert: x509.Certificate) -> None:
    """PEM, created with mode 0644 and fsynced; refuses to overwrite."""
    write_new_file(path, certificate_pem(cert), CERT_FILE_MODE)


def read_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    return load_private_key(read_limited(path, MAX_KEY_PEM_BYTES, "TLS key"))


def read_certificate(path: Path) -> x509.Certificate:
    return load_certificate(read_limited(path, MAX_CERT_PEM_BYTES, "certificate"))


def write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Creates ``path`` exclusively with exactly ``mode``, writes ``data`` and fsyncs it.
    PkiError if it exists; a failed write removes the partial file."""
    try:
        files.write_new_file(Path(path), data, mode)
    except FileExistsError:
        raise PkiError(f"refusing to overwrite existing file {path}") from None
    except OSError as exc:
        raise PkiError(f"cannot create {path}: {exc.strerror}") from None


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """At most ``limit`` bytes of ``path``; PkiError if unreadable or larger."""
    try:
        return files.read_limited(Path(path), limit)
    except files.FileTooLarge:
        raise PkiError(f"{what} file {path} is larger than {limit} bytes") from None
    except OSError as exc:
        raise PkiError(f"cannot read {what} file {path}: {exc.strerror}") from None
