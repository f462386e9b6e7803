"""Tests of node/consortium.py: what `nanum init` writes, and that its certificates really work
for mutual TLS with a gRPC server."""

import json
import os
import re
import stat
import time
from concurrent import futures
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest

from ledger.block import decode_block, decode_genesis_block
from ledger.encoding import decode
from ledger.keys import read_key_file
from ledger.state import MemoryState
from ledger.tx import decode_tx
from node.config import load_client_config, load_config
from node.consortium import (
    ConsortiumError,
    ConsortiumSpec,
    create_consortium,
    slugify,
)
from cryptography import x509

from node.pki import (
    CA_VALID_DAYS,
    LEAF_VALID_DAYS,
    Identity,
    certificate_pem,
    create_ca,
    generate_tls_key,
    identity_from_pem,
    issue_certificate,
    node_host_name,
    private_key_pem,
    read_certificate,
    verify_issued_by,
)

CREATED_MS = int(time.time() * 1000)     # certificates must be valid now for the TLS test
SPEC = ConsortiumSpec(name="Gwangju Nanum Bank", created_ms=CREATED_MS,
                      centres=["Gwangju Talent Donation Center", "Buk-gu Volunteer Centre"],
                      partners=["Dongmyeong Bookstore"])


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    return create_consortium(tmp_path_factory.mktemp("init") / "consortium", SPEC)


def _genesis_payload(raw: bytes):
    return decode_tx(decode(decode_block(raw).entries[0])[0]).payload


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- the layout -----------------------------------------------------------------------------


def test_the_layout_is_complete(layout):
    root = layout.folder
    expected = {"genesis.block", "genesis.json", "ca/ca.crt", "ca/ca.key"}
    for i in range(3):
        expected |= {f"nodes/node-{i}/{n}" for n in ("node.key", "tls.crt", "tls.key", "node.toml")}
        expected.add(f"admins/admin-{i}/key.pem")
    for slug in ("centres/gwangju-talent-donation-center", "centres/buk-gu-volunteer-centre",
                 "partners/dongmyeong-bookstore"):
        expected |= {f"{slug}/{n}" for n in ("key.pem", "tls.crt", "tls.key", "client.toml")}
    for client in ("auditor", "members"):
        expected |= {f"{client}/{n}" for n in ("tls.crt", "tls.key", "client.toml")}
    written = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert written == expected
    listed = [layout.genesis_file, layout.genesis_json, layout.ca_cert_file, layout.ca_key_file]
    for node in layout.nodes:
        listed += [node.key_file, node.tls_cert_file, node.tls_key_file, node.config_file]
    listed += [admin.key_file for admin in layout.admins]
    for client in (*layout.centres, *layout.partners, layout.auditor, layout.members):
        listed += [client.tls_cert_file, client.tls_key_file, client.config_file]
        listed += [client.key_file] if client.key_file else []
    assert {p.relative_to(root).as_posix() for p in listed} == expected
    secrets = [p for p in written if p.endswith((".key", "key.pem"))]
    assert secrets and all(_mode(root / p) == 0o600 for p in secrets)
    assert all(_mode(root / p) == 0o644 for p in written if p not in secrets)
    assert [p.name for p in root.parent.iterdir()] == [root.name]     # no staging left behind


def test_genesis_decodes_verifies_and_matches_the_summary(layout):
    raw = layout.genesis_file.read_bytes()
    executed = decode_genesis_block(raw, MemoryState())
    assert executed.block.header.chain_id.hex() == layout.chain_id
    assert executed.block.header.time_ms == CREATED_MS
    payload = _genesis_payload(raw)
    assert (payload.name, payload.threshold, payload.created_ms) == (SPEC.name, 2, CREATED_MS)
    summary = json.loads(layout.genesis_json.read_text(encoding="utf-8"))
    assert summary["chain_id"] == layout.chain_id and summary["threshold"] == 2
    parties = [(role, p) for role, group in (("admin", payload.admins),
               ("centre", payload.centres), ("partner", payload.partners),
               ("node", payload.nodes)) for p in group]
    assert [(s["role"], s["name"], s["public_key"], s["party_id"], s["address"])
            for s in summary["parties"]] == [
        (role, p.name, p.public_key.hex(), p.party_id.hex(), p.address) for role, p in parties]


def test_genesis_parties_hold_the_written_keys(layout):
    payload = _genesis_payload(layout.genesis_file.read_bytes())
    assert [read_key_file(a.key_file).public_key for a in layout.admins] == \
        [p.public_key for p in payload.admins]
    assert [read_key_file(n.key_file).public_key for n in layout.nodes] == \
        [p.public_key for p in payload.nodes]
    assert [read_key_file(c.key_file).public_key for c in layout.centres] == \
        [p.public_key for p in payload.centres]
    assert [read_key_file(c.key_file).public_key for c in layout.partners] == \
        [p.public_key for p in payload.partners]
    assert [p.name for p in payload.centres] == list(SPEC.centres)
    assert [p.address for p in payload.nodes] == ["127.0.0.1:7400", "127.0.0.1:7401",
                                                  "127.0.0.1:7402"]
    assert [n.node_id for n in layout.nodes] == [p.party_id.hex() for p in payload.nodes]


def test_node_configs_load_and_name_the_other_nodes_as_peers(layout):
    for node in layout.nodes:
        config = load_config(node.config_file, env={})
        assert config.node_id == node.node_id == read_key_file(config.node_key_file).party_id.hex()
        assert config.listen == node.address
        assert config.data_dir == node.folder / "data"
        assert config.genesis_file == layout.genesis_file
        assert config.ca_cert_file == layout.ca_cert_file
        others = [(n.node_id, n.name, n.address) for n in layout.nodes if n is not node]
        assert [(p.node_id, p.name, p.address) for p in config.peers] == others


def test_client_configs_load_and_point_at_their_files(layout):
    for client in (*layout.centres, *layout.partners, layout.auditor, layout.members):
        config = load_client_config(client.config_file, env={})
        assert config.nodes == layout.addresses
        assert config.ca_cert_file == layout.ca_cert_file
        assert config.genesis_file == layout.genesis_file
        assert config.tls_cert_file == client.tls_cert_file
        assert config.key_file == client.key_file


def test_certificates_carry_each_holders_identity(layout):
    ca_pem = layout.ca_cert_file.read_bytes()
    holders = [(n.tls_cert_file, Identity("node", n.name, bytes.fromhex(n.node_id)))
               for n in layout.nodes]
    holders += [(c.tls_cert_file, Identity(c.role, c.name, read_key_file(c.key_file).party_id))
                for c in (*layout.centres, *layout.partners)]
    holders += [(layout.auditor.tls_cert_file,
                 Identity("auditor", "auditor", bytes.fromhex(layout.auditor.party_id))),
                (layout.members.tls_cert_file,
                 Identity("member", "members", bytes.fromhex(layout.members.party_id)))]
    for cert_file, identity in holders:
        pem = cert_file.read_bytes()
        verify_issued_by(pem, ca_pem, _now())
        assert identity_from_pem(pem) == identity
    assert layout.centres[0].role == "centre" and layout.partners[0].role == "partner"
    assert layout.auditor.party_id != layout.members.party_id


def test_certificates_last_the_named_periods(layout):
    """Leaves for a year (finding: they lasted ten), the CA for ten; both from the genesis time."""
    start = datetime.fromtimestamp(CREATED_MS / 1000, timezone.utc)
    ca = read_certificate(layout.ca_cert_file)
    assert ca.not_valid_after_utc - start < timedelta(days=CA_VALID_DAYS, seconds=1)
    leaves = [n.tls_cert_file for n in layout.nodes]
    leaves += [c.tls_cert_file for c in (*layout.centres, *layout.partners, layout.auditor, layout.members)]
    for cert_file in leaves:
        cert = read_certificate(cert_file)
        assert timedelta(days=LEAF_VALID_DAYS - 1) < cert.not_valid_after_utc - start <= timedelta(days=LEAF_VALID_DAYS, seconds=1)
    assert LEAF_VALID_DAYS == 365


def test_node_configs_list_the_auditor_and_member_certificates(layout):
    for node in layout.nodes:
        config = load_config(node.config_file, env={})
        assert config.auditor_ids == (layout.auditor.party_id,)
        assert config.member_cert_ids == (layout.members.party_id,)


def test_each_node_certificate_names_its_own_node(layout):
    for node in layout.nodes:
        san = read_certificate(node.tls_cert_file).extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = san.value.get_values_for_type(x509.DNSName)
        assert node_host_name(bytes.fromhex(node.node_id)) in names
        assert [n for n in names if n.endswith(".node.nanum")] == [node_host_name(bytes.fromhex(node.node_id))]


# --- the spec and the folder ----------------------------------------------------------------


def test_init_refuses_a_non_empty_folder_or_a_file(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    with pytest.raises(ConsortiumError, match="not empty"):
        create_consortium(tmp_path / "full", SPEC)
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConsortiumError, match="not a folder"):
        create_consortium(tmp_path / "file", SPEC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]


def test_init_fills_an_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    layout = create_consortium(tmp_path / "empty", ConsortiumSpec(
        name="One", created_ms=CREATED_MS, nodes=1, admins=1, threshold=1, centres=[],
        partners=[], host="::1", base_port=9000))
    assert layout.addresses == ("[::1]:9000",)
    assert load_config(layout.nodes[0].config_file, env={}).peers == ()
    decode_genesis_block(layout.genesis_file.read_bytes(), MemoryState())


@pytest.mark.parametrize("change, field", [
    ({"threshold": 4}, "threshold"), ({"threshold": 0}, "threshold"),
    ({"nodes": 0}, "nodes"), ({"admins": 0}, "admins"),
    ({"base_port": 65534}, "base_port"), ({"base_port": 0}, "base_port"),
    ({"name": ""}, "name"), ({"name": "n" * 62}, "name"),
    ({"centres": ["A", "A"]}, "centres"), ({"partners": ["p" * 57]}, "partners[0]"),
    ({"partners": ["가" * 22]}, "partners[0]"),          # 66 bytes of UTF-8
    ({"host": "bad host"}, "host"), ({"created_ms": -1}, "created_ms"),
    ({"nodes": True}, "nodes"),
])
def test_invalid_specs_are_refused_before_writing(tmp_path, change, field):
    spec = ConsortiumSpec(**{"name": "N", "created_ms": CREATED_MS, **change})
    with pytest.raises(ConsortiumError, match="^" + re.escape(field + ":")):
        create_consortium(tmp_path / "c", spec)
    assert list(tmp_path.iterdir()) == []


def test_slugs_are_ascii_and_distinct(tmp_path):
    assert slugify("Gwangju Talent Donation Center", "x") == "gwangju-talent-donation-center"
    assert slugify("  Books & Café!! ", "x") == "books-caf"
    assert slugify("동명서점", "partner-0") == "partner-0"
    layout = create_consortium(tmp_path / "c", ConsortiumSpec(
        name="N", created_ms=CREATED_MS, nodes=1, admins=1, threshold=1,
        centres=["North Centre", "north centre!", "북구"], partners=["동명서점"]))
    assert [c.slug for c in layout.centres] == ["north-centre", "north-centre-2", "centre-2"]
    assert [p.slug for p in layout.partners] == ["partner-0"]
    assert layout.partners[0].name == "동명서점"


def test_everything_but_key_material_is_deterministic(tmp_path):
    spec = ConsortiumSpec(name="N", created_ms=CREATED_MS, nodes=2, admins=2, threshold=1)
    first, second = (create_consortium(tmp_path / n, spec) for n in ("a", "b"))

    def files(root):
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))

    def summary(layout):
        data = json.loads(layout.genesis_json.read_text())
        data.pop("chain_id")
        for party in data["parties"]:
            party.pop("party_id"), party.pop("public_key")
        return data

    assert files(first.folder) == files(second.folder)
    assert summary(first) == summary(second)
    assert first.centres[0].config_file.read_text() == second.centres[0].config_file.read_text()
    assert node_toml_without_ids(first) == node_toml_without_ids(second)


def node_toml_without_ids(layout):
    text = layout.nodes[0].config_file.read_text()
    for node in layout.nodes:
        text = text.replace(node.node_id, f"<id of {node.name}>")
    for client in (layout.auditor, layout.members):       # random ids of client-only certificates
        text = text.replace(client.party_id, f"<id of {client.name}>")
    return text


def test_a_failed_init_leaves_nothing_behind(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("node.consortium.write_client_config", fail)
    with pytest.raises(OSError, match="disk full"):
        create_consortium(tmp_path / "c", SPEC)
    assert list(tmp_path.iterdir()) == []


# --- mutual TLS with a real gRPC server -----------------------------------------------------

SERVICE, METHOD = "nanum.test.Echo", "Echo"


class _EchoServer:
    """A gRPC server on 127.0.0.1 with a node's certificate, requiring client certificates
    from the consortium CA; it records the identity of each caller."""

    def __init__(self, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> None:
        self.identities: list[Identity] = []
        credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem,
                                                  require_client_auth=True)
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {METHOD: grpc.unary_unary_rpc_method_handler(self._echo)})
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_secure_port("127.0.0.1:0", credentials)
        self.server.start()

    def _echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self.identities.append(identity_from_pem(context.auth_context()["x509_pem_cert"][0]))
        return request

    def call(self, key_pem: bytes, cert_pem: bytes, ca_pem: bytes, target: str) -> bytes:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca_pem,
                                                   private_key=key_pem, certificate_chain=cert_pem)
        with grpc.secure_channel(f"{target}:{self.port}", credentials) as channel:
            echo = channel.unary_unary(f"/{SERVICE}/{METHOD}")
            return echo(b"nanum", timeout=5)


@pytest.fixture(scope="module")
def echo_server(layout):
    node = layout.nodes[0]
    server = _EchoServer(node.tls_key_file.read_bytes(), node.tls_cert_file.read_bytes(),
                         layout.ca_cert_file.read_bytes())
    yield server
    server.server.stop(grace=None)


def test_consortium_clients_connect_with_mutual_tls(layout, echo_server):
    ca_pem = layout.ca_cert_file.read_bytes()
    peer, centre = layout.nodes[1], layout.centres[0]
    for holder, target in ((peer, "localhost"), (centre, "127.0.0.1")):
        reply = echo_server.call(holder.tls_key_file.read_bytes(),
                                 holder.tls_cert_file.read_bytes(), ca_pem, target)
        assert reply == b"nanum"
    assert echo_server.identities[-2:] == [
        Identity("node", peer.name, bytes.fromhex(peer.node_id)),
        Identity("centre", centre.name, bytes.fromhex(centre.party_id))]


def test_a_client_certificate_from_another_ca_is_refused(layout, echo_server):
    other_key, other_ca = create_ca("Gwangju Nanum Bank", 30)
    key = generate_tls_key()
    identity = Identity("centre", layout.centres[0].name, bytes.fromhex(layout.centres[0].party_id))
    cert = issue_certificate(other_key, other_ca, identity, key.public_key(), [], 30)
    before = len(echo_server.identities)
    with pytest.raises(grpc.RpcError) as caught:
        echo_server.call(private_key_pem(key), certificate_pem(cert),
                         layout.ca_cert_file.read_bytes(), "127.0.0.1")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(echo_server.identities) == before
