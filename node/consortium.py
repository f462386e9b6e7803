"""Founding a consortium on disk: everything ``nanum init`` writes.

Owns: turning a ``ConsortiumSpec`` into a folder with the genesis block (and a readable
summary of it), the consortium CA, every node's ledger key, TLS certificate and ``node.toml``,
the admins' keys, and the keys, certificates and ``client.toml`` of centres, partners, the
auditor and member self-service; and the ``ConsortiumLayout`` that says where each thing is.

The folder is built in a hidden sibling and renamed into place at the end, so a failure leaves
no half-made consortium. Every file is deterministic given the spec, except key material
(keys, certificate serials and signatures, and the random ids of the client-only auditor and
member certificates). No clock is read: certificates start at ``spec.created_ms``.
Paths inside the written configs are relative, so the folder can be moved or copied.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Sequence

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ledger.block import decode_block
from ledger.encoding import text_problem
from ledger.genesis import build_genesis
from ledger.keys import SigningKey, write_key_file
from ledger.limits import MAX_GENESIS_PARTIES, MAX_NAME_BYTES, MAX_TIME_MS
from node import pki
from node.config import ClientConfig, NodeConfig, Peer, format_address, parse_address
from node.config import write_client_config, write_config

# --- named limits and file names ------------------------------------------------------------

DEFAULT_CENTRES = ("Gwangju Talent Donation Center",)
DEFAULT_PARTNERS = ("Dongmyeong Bookstore",)
MAX_SLUG_CHARS = 48
MAX_VALID_DAYS = pki.MAX_VALID_DAYS
NODE_TLS_HOSTS = ("localhost", "127.0.0.1")     # plus the spec's host
PUBLIC_FILE_MODE = 0o644
FOLDER_MODE = 0o755
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ConsortiumError(Exception):
    """The spec cannot make a consortium, or the target folder is not empty."""


@dataclass(frozen=True, kw_only=True)
class ConsortiumSpec:
    """What ``nanum init`` is asked for. ``created_ms`` is the genesis time (ms since the
    epoch) and the start of every certificate; the caller reads the clock, not this module."""

    name: str
    created_ms: int
    nodes: int = 3
    centres: tuple[str, ...] = DEFAULT_CENTRES
    partners: tuple[str, ...] = DEFAULT_PARTNERS
    admins: int = 3
    threshold: int = 2
    host: str = "127.0.0.1"
    base_port: int = 7400
    ca_valid_days: int = pki.CA_VALID_DAYS
    cert_valid_days: int = pki.LEAF_VALID_DAYS

    def __post_init__(self) -> None:
        # Lists are accepted and frozen into tuples.
        object.__setattr__(self, "centres", tuple(self.centres))
        object.__setattr__(self, "partners", tuple(self.partners))


# --- the layout -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeLayout:
    index: int
    name: str                 # "node-<index>"
    node_id: str              # party id hex of the node's Ed25519 key
    address: str              # host:port, as in the genesis block
    folder: Path
    key_file: Path            # node.key (Ed25519)
    tls_cert_file: Path
    tls_key_file: Path
    config_file: Path         # node.toml


@dataclass(frozen=True, slots=True)
class AdminLayout:
    index: int
    name: str                 # "admin-<index>"
    party_id: str
    folder: Path
    key_file: Path


@dataclass(frozen=True, slots=True)
class ClientLayout:
    """A TLS client: a centre, a partner, the auditor, or member self-service."""

    role: str                 # a pki role: "centre", "partner", "auditor", "member"
    name: str
    slug: str                 # the folder's name
    party_id: str             # the ledger party id, or the random id of a client-only cert
    folder: Path
    tls_cert_file: Path
    tls_key_file: Path
    config_file: Path         # client.toml
    key_file: Path | None     # Ed25519 key.pem for centres and partners; None otherwise


@dataclass(frozen=True, slots=True)
class ConsortiumLayout:
    folder: Path
    name: str
    chain_id: str
    threshold: int
    genesis_file: Path
    genesis_json: Path
    ca_cert_file: Path
    ca_key_file: Path
    nodes: tuple[NodeLayout, ...]
    admins: tuple[AdminLayout, ...]
    centres: tuple[ClientLayout, ...]
    partners: tuple[ClientLayout, ...]
    auditor: ClientLayout
    members: ClientLayout

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(node.address for node in self.nodes)


# --- keys made before anything is written ---------------------------------------------------


@dataclass(slots=True)
class _Keys:
    admins: list[SigningKey]
    centres: list[SigningKey]
    partners: list[SigningKey]
    nodes: list[SigningKey]


def create_consortium(folder: Path, spec: ConsortiumSpec) -> ConsortiumLayout:
    """Writes a new consortium into ``folder`` (absent or empty) and returns its layout."""
    check_spec(spec)
    folder = Path(folder).absolute()
    _check_empty(folder)
    keys = _Keys(admins=[SigningKey.generate() for _ in range(spec.admins)],
                 centres=[SigningKey.generate() for _ in spec.centres],
                 partners=[SigningKey.generate() for _ in spec.partners],
                 nodes=[SigningKey.generate() for _ in range(spec.nodes)])
    genesis_raw = _genesis(spec, keys)
    layout = _layout(folder, spec, keys, decode_block(genesis_raw).header.chain_id.hex())
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.init-", dir=folder.parent))
    try:
        os.chmod(staging, FOLDER_MODE)
        _write_all(_Writer(folder, staging), layout, spec, keys, genesis_raw)
        os.rename(staging, folder)      # atomic; replaces an empty folder, fails on a full one
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_dir(folder.parent)
    return layout


def check_spec(spec: ConsortiumSpec) -> None:
    """ConsortiumError naming the first field of ``spec`` that cannot make a consortium."""
    _check_int("nodes", spec.nodes, 1, MAX_GENESIS_PARTIES)
    _check_int("admins", spec.admins, 1, MAX_GENESIS_PARTIES)
    _check_int("threshold", spec.threshold, 1, spec.admins)
    _check_int("created_ms", spec.created_ms, 0, MAX_TIME_MS)
    _check_int("base_port", spec.base_port, 1, 65536 - spec.nodes)
    _check_int("ca_valid_days", spec.ca_valid_days, 1, MAX_VALID_DAYS)
    _check_int("cert_valid_days", spec.cert_valid_days, 1, MAX_VALID_DAYS)
    _check_name("name", spec.name, pki.MAX_COMMON_NAME_CHARS - len(" CA"))
    for role, names in (("centre", spec.centres), ("partner", spec.partners)):
        if len(names) > MAX_GENESIS_PARTIES:
            raise ConsortiumError(f"{role}s: at most {MAX_GENESIS_PARTIES}")
        for i, name in enumerate(names):
            _check_name(f"{role}s[{i}]", name, pki.MAX_COMMON_NAME_CHARS - len(role) - 1)
        if len(set(names)) != len(names):
            raise ConsortiumError(f"{role}s: a name is repeated")
    try:
        parse_address(format_address(spec.host, spec.base_port))
    except ValueError as exc:
        raise ConsortiumError(f"host: {exc}") from None


def _check_int(label: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConsortiumError(f"{label}: must be an integer from {low} to {high}, got {value!r}")


def _check_name(label: str, name: object, max_chars: int) -> None:
    # Names go into the genesis block (bytes) and into certificate CNs (characters).
    if not isinstance(name, str) or not name or len(name.encode("utf-8")) > MAX_NAME_BYTES \
            or len(name) > max_chars:
        raise ConsortiumError(f"{label}: must be 1 to {MAX_NAME_BYTES} bytes of UTF-8 text, "
                              f"at most {max_chars} characters, no control characters")
    problem = text_problem(name)      # the ledger's own text rule (FORMAT.md §1)
    if problem is not None:
        raise ConsortiumError(f"{label}: {problem}")


def _check_empty(folder: Path) -> None:
    if folder.is_dir():
        if any(folder.iterdir()):
            raise ConsortiumError(f"{folder} is not empty; init writes only into a new folder")
    elif folder.exists():
        raise ConsortiumError(f"{folder} exists and is not a folder")


def slugify(name: str, fallback: str) -> str:
    """Lowercase ASCII letters, digits and single hyphens from ``name``; ``fallback`` if none."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:MAX_SLUG_CHARS].rstrip("-") or fallback


def _slugs(names: Sequence[str], role: str) -> list[str]:
    """One distinct slug per name; repeats get -2, -3, … in order."""
    used: set[str] = set()
    slugs = []
    for i, name in enumerate(names):
        base = slug = slugify(name, f"{role}-{i}")
        suffix = 2
        while slug in used:
            slug, suffix = f"{base}-{suffix}", suffix + 1
        used.add(slug)
        slugs.append(slug)
    return slugs


def _genesis(spec: ConsortiumSpec, keys: _Keys) -> bytes:
    return build_genesis(
        spec.name, spec.created_ms, spec.threshold,
        [(k, f"admin-{i}") for i, k in enumerate(keys.admins)],
        [(k.public_key, n) for k, n in zip(keys.centres, spec.centres)],
        [(k.public_key, n) for k, n in zip(keys.partners, spec.partners)],
        [(k.public_key, f"node-{i}", _node_address(spec, i)) for i, k in enumerate(keys.nodes)],
    )


def _node_address(spec: ConsortiumSpec, index: int) -> str:
    return format_address(spec.host, spec.base_port + index)


def _layout(folder: Path, spec: ConsortiumSpec, keys: _Keys, chain_id: str) -> ConsortiumLayout:
    nodes = tuple(
        NodeLayout(i, f"node-{i}", k.party_id.hex(), _node_address(spec, i), f,
                   f / "node.key", f / "tls.crt", f / "tls.key", f / "node.toml")
        for i, k in enumerate(keys.nodes) for f in [folder / "nodes" / f"node-{i}"])
    admins = tuple(
        AdminLayout(i, f"admin-{i}", k.party_id.hex(), f, f / "key.pem")
        for i, k in enumerate(keys.admins) for f in [folder / "admins" / f"admin-{i}"])
    return ConsortiumLayout(
        folder=folder, name=spec.name, chain_id=chain_id, threshold=spec.threshold,
        genesis_file=folder / "genesis.block", genesis_json=folder / "genesis.json",
        ca_cert_file=folder / "ca" / "ca.crt", ca_key_file=folder / "ca" / "ca.key",
        nodes=nodes, admins=admins,
        centres=_parties(folder / "centres", "centre", spec.centres, keys.centres),
        partners=_parties(folder / "partners", "partner", spec.partners, keys.partners),
        auditor=_client(folder / "auditor", pki.client_identity("auditor", "auditor"), None),
        members=_client(folder / "members", pki.client_identity("member", "members"), None),
    )


def _parties(parent: Path, role: str, names: Sequence[str],
             keys: Sequence[SigningKey]) -> tuple[ClientLayout, ...]:
    return tuple(
        _client(parent / slug, pki.Identity(role, name, key.party_id), parent / slug / "key.pem")
        for slug, name, key in zip(_slugs(names, role), names, keys))


def _client(folder: Path, identity: pki.Identity, key_file: Path | None) -> ClientLayout:
    return ClientLayout(identity.role, identity.name, folder.name, identity.party_id.hex(),
                        folder, folder / "tls.crt", folder / "tls.key", folder / "client.toml",
                        key_file)


# --- writing --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Writer:
    """Writes files meant for ``final`` into ``staging``, creating folders on the way."""

    final: Path
    staging: Path

    def at(self, path: Path) -> Path:
        target = self.staging / path.relative_to(self.final)
        target.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        return target


def _write_all(out: _Writer, layout: ConsortiumLayout, spec: ConsortiumSpec, keys: _Keys,
               genesis_raw: bytes) -> None:
    now = _EPOCH + timedelta(milliseconds=spec.created_ms)
    pki.write_new_file(out.at(layout.genesis_file), genesis_raw, PUBLIC_FILE_MODE)
    summary = json.dumps(_summary(layout, spec, keys), indent=2, ensure_ascii=False) + "\n"
    pki.write_new_file(out.at(layout.genesis_json), summary.encode("utf-8"), PUBLIC_FILE_MODE)
    ca_key, ca_cert = pki.create_ca(spec.name, spec.ca_valid_days, now)
    pki.write_private_key(out.at(layout.ca_key_file), ca_key)
    pki.write_certificate(out.at(layout.ca_cert_file), ca_cert)
    issue = _Issuer(out, ca_key, ca_cert, spec.cert_valid_days, now)
    for node, key in zip(layout.nodes, keys.nodes):
        write_key_file(out.at(node.key_file), key)
        hosts = list(dict.fromkeys([*NODE_TLS_HOSTS, spec.host]))
        issue(pki.Identity("node", node.name, key.party_id), node.tls_cert_file,
              node.tls_key_file, hosts)
        write_config(out.at(node.config_file), _node_config(layout, node))
    for admin, key in zip(layout.admins, keys.admins):
        write_key_file(out.at(admin.key_file), key)
    parties = [*zip(layout.centres, keys.centres), *zip(layout.partners, keys.partners),
               (layout.auditor, None), (layout.members, None)]
    for client, key in parties:
        if key is not None:
            write_key_file(out.at(client.key_file), key)
        identity = pki.Identity(client.role, client.name, bytes.fromhex(client.party_id))
        issue(identity, client.tls_cert_file, client.tls_key_file, [])
        write_client_config(out.at(client.config_file), _client_config(layout, client))


@dataclass(frozen=True, slots=True)
class _Issuer:
    out: _Writer
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    valid_days: int
    now: datetime

    def __call__(self, identity: pki.Identity, cert_file: Path, key_file: Path,
                 hosts: list[str]) -> None:
        tls_key = pki.generate_tls_key()
        cert = pki.issue_certificate(self.ca_key, self.ca_cert, identity, tls_key.public_key(),
                                     hosts, self.valid_days, self.now)
        pki.write_private_key(self.out.at(key_file), tls_key)
        pki.write_certificate(self.out.at(cert_file), cert)


def _relative(target: Path, folder: Path) -> Path:
    return Path(os.path.relpath(target, folder))


def _node_config(layout: ConsortiumLayout, node: NodeLayout) -> NodeConfig:
    return NodeConfig(
        name=node.name, node_id=node.node_id, listen=node.address, data_dir=Path("data"),
        genesis_file=_relative(layout.genesis_file, node.folder),
        node_key_file=_relative(node.key_file, node.folder),
        tls_cert_file=_relative(node.tls_cert_file, node.folder),
        tls_key_file=_relative(node.tls_key_file, node.folder),
        ca_cert_file=_relative(layout.ca_cert_file, node.folder),
        peers=tuple(Peer(other.node_id, other.name, other.address)
                    for other in layout.nodes if other.index != node.index),
        auditor_ids=(layout.auditor.party_id,),
        member_cert_ids=(layout.members.party_id,),
    )


def _client_config(layout: ConsortiumLayout, client: ClientLayout) -> ClientConfig:
    key_file = client.key_file and _relative(client.key_file, client.folder)
    return ClientConfig(
        ca_cert_file=_relative(layout.ca_cert_file, client.folder),
        tls_cert_file=_relative(client.tls_cert_file, client.folder),
        tls_key_file=_relative(client.tls_key_file, client.folder),
        nodes=layout.addresses,
        genesis_file=_relative(layout.genesis_file, client.folder),
        key_file=key_file,
    )


def _summary(layout: ConsortiumLayout, spec: ConsortiumSpec, keys: _Keys) -> dict:
    """genesis.json: what block 0 says, for people. The block itself is the authority."""
    groups = (("admin", [f"admin-{i}" for i in range(spec.admins)], keys.admins, None),
              ("centre", spec.centres, keys.centres, None),
              ("partner", spec.partners, keys.partners, None),
              ("node", [n.name for n in layout.nodes], keys.nodes, layout.addresses))
    parties = []
    for role, names, group_keys, addresses in groups:
        for i, (name, key) in enumerate(zip(names, group_keys)):
            parties.append({"role": role, "name": name, "party_id": key.party_id.hex(),
                            "public_key": key.public_key.hex(),
                            "address": addresses[i] if addresses else ""})
    return {"chain_id": layout.chain_id, "name": spec.name, "created_ms": spec.created_ms,
            "threshold": spec.threshold, "parties": parties}


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
