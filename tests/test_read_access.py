"""Who may read what: every cell of the access table (docs/ARCHITECTURE.md, "Who may read
what") against a real 3-node cluster on loopback, and every way a member's signed read can be
wrong.

The cluster (module-scoped, always stopped) has two centres and two partners. Centre A
registers Ana and deposits a donation for her; centre B registers Bo. The bookstore redeems
from Ana and refunds part; the venue redeems from Bo. Each reader is a client with its own TLS
certificate (auditor, a node, each centre and partner, an admin whose certificate the test
issues, the shared member certificate) and, for Ana and Bo, the member certificate plus their
own key signing the read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import grpc
import pytest

from cli.receipt_cmds import fetch_statement
from cli.common import UserError
from cli.session import Session
from ledger.block import Header
from ledger.encoding import decode
from ledger.keys import SigningKey
from ledger.read_grant import MAX_READ_VALIDITY_MS, read_signing_bytes, sign_read
from node import pki
from node.client import ClientError, LedgerClient, TlsFiles
from node.wire import ledger_pb2
from tests.test_receipt import Writer, start_cluster

OK = "ok"
DENIED = grpc.StatusCode.PERMISSION_DENIED


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reads")
    cluster = start_cluster(folder / "consortium")
    writer = None
    clients: dict[str, LedgerClient] = {}
    try:
        cluster.start()
        cluster.leader()
        writer = Writer(cluster)
        ana, bo, stranger = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
        writer.register(ana, centre=0)
        donation, _ = writer.submit(writer.centres[0], _donation(ana))
        writer.register(bo, centre=1)
        bo_deposit, _ = writer.deposit(bo, 20, centre=1)
        ana_redemption, _ = writer.redeem(ana, 10, partner=0)
        ana_refund, _ = writer.refund(ana_redemption.tx_id, 2, partner=0)
        bo_redemption, _ = writer.redeem(bo, 5, partner=1)
        layout = cluster.layout
        clients = {
            "auditor": _client(cluster, layout.auditor),
            "node": _client(cluster, layout.nodes[0]),
            "centre A": _client(cluster, layout.centres[0]),
            "centre B": _client(cluster, layout.centres[1]),
            "bookstore": _client(cluster, layout.partners[0]),
            "venue": _client(cluster, layout.partners[1]),
            "admin": _admin_client(cluster, folder),
            "member cert": _client(cluster, layout.members),
            "Ana": _client(cluster, layout.members).sign_reads_as(ana, cluster.chain_id),
            "Bo": _client(cluster, layout.members).sign_reads_as(bo, cluster.chain_id),
            "unregistered": _client(cluster, layout.members).sign_reads_as(stranger, cluster.chain_id),
        }
        yield {"cluster": cluster, "writer": writer, "clients": clients, "ana": ana, "bo": bo,
               "height": writer.height, "donation": donation.tx_id, "bo_deposit": bo_deposit.tx_id,
               "ana_redemption": ana_redemption.tx_id, "ana_refund": ana_refund.tx_id,
               "bo_redemption": bo_redemption.tx_id,
               "bookstore": writer.partners[0].party_id, "venue": writer.partners[1].party_id,
               "centre A": writer.centres[0].party_id, "centre B": writer.centres[1].party_id,
               "admin": bytes.fromhex(layout.admins[0].party_id)}
    finally:
        for client in clients.values():
            client.close()
        if writer is not None:
            writer.close()
        cluster.stop()


def _donation(member: SigningKey):
    from ledger.tx import Deposit, DepositKind
    return Deposit(member.party_id, 30, DepositKind.DONATION, 50_000, "DON-1", 1)


def _client(cluster, party) -> LedgerClient:
    layout = cluster.layout
    return LedgerClient(list(layout.addresses),
                        TlsFiles.load(layout.ca_cert_file, party.tls_cert_file, party.tls_key_file), 10_000)


def _admin_client(cluster, folder: Path) -> LedgerClient:
    """`nanum init` issues no admin TLS certificate; the test issues one from the consortium CA."""
    layout = cluster.layout
    ca_key = pki.read_private_key(layout.ca_key_file)
    ca_cert = pki.read_certificate(layout.ca_cert_file)
    admin = layout.admins[0]
    tls_key = pki.generate_tls_key()
    cert = pki.issue_certificate(ca_key, ca_cert, pki.Identity("admin", admin.name, bytes.fromhex(admin.party_id)),
                                 tls_key.public_key(), [], 1)
    return LedgerClient(list(layout.addresses),
                        TlsFiles(layout.ca_cert_file.read_bytes(), pki.certificate_pem(cert),
                                 pki.private_key_pem(tls_key)), 10_000)


def outcome(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ClientError as error:
        return error.status
    return OK


READERS = ("auditor", "node", "centre A", "centre B", "bookstore", "venue", "admin", "member cert", "Ana", "Bo")


def _row(allowed: set[str]) -> dict[str, object]:
    return {reader: OK if reader in allowed else DENIED for reader in READERS}


# --- balances and histories --------------------------------------------------------------------

ANA_ACCOUNT = _row({"auditor", "node", "centre A", "Ana"})
BO_ACCOUNT = _row({"auditor", "node", "centre B", "Bo"})


@pytest.mark.parametrize("reader", READERS)
def test_a_members_balance(world, reader):
    client = world["clients"][reader]
    for member, table in (("ana", ANA_ACCOUNT), ("bo", BO_ACCOUNT)):
        got = outcome(client.balance, world[member].party_id, min_height=world["height"])
        assert got == table[reader], f"{reader} reading {member}'s balance"


@pytest.mark.parametrize("reader", READERS)
def test_a_members_history(world, reader):
    client = world["clients"][reader]
    for member, table in (("ana", ANA_ACCOUNT), ("bo", BO_ACCOUNT)):
        got = outcome(client.history, world[member].party_id, min_height=world["height"])
        assert got == table[reader], f"{reader} reading {member}'s history"


def test_a_member_reads_all_of_their_own_history_donations_included(world):
    items = world["clients"]["Ana"].history(world["ana"].party_id, min_height=world["height"]).items
    assert len(items) == 4                       # registration, donation, redemption, refund
    balance = world["clients"]["Ana"].balance(world["ana"].party_id, min_height=world["height"])
    assert balance.points == 30 - 10 + 2


@pytest.mark.parametrize("reader", READERS)
def test_a_partners_a_centres_and_an_admins_history(world, reader):
    client = world["clients"][reader]
    tables = {"bookstore": _row({"auditor", "node", "bookstore"}),
              "venue": _row({"auditor", "node", "venue"}),
              "centre A": _row({"auditor", "node", "centre A"}),
              "centre B": _row({"auditor", "node", "centre B"}),
              "admin": _row({"auditor", "node", "admin"})}
    for party, table in tables.items():
        got = outcome(client.history, world[party], min_height=world["height"])
        assert got == table[reader], f"{reader} reading {party}'s history"


# --- transactions ----------------------------------------------------------------------------------

TRANSACTIONS = {
    "donation": _row({"auditor", "node", "centre A", "Ana"}),
    "ana_redemption": _row({"auditor", "node", "centre A", "bookstore", "Ana"}),
    "ana_refund": _row({"auditor", "node", "centre A", "bookstore", "Ana"}),
    "bo_deposit": _row({"auditor", "node", "centre B", "Bo"}),
    "bo_redemption": _row({"auditor", "node", "centre B", "venue", "Bo"}),
}


@pytest.mark.parametrize("reader", READERS)
def test_a_transaction(world, reader):
    client = world["clients"][reader]
    for name, table in TRANSACTIONS.items():
        got = outcome(client.transaction, world[name], min_height=world["height"])
        assert got == table[reader], f"{reader} reading {name}"


def test_a_redemption_says_which_centres_it_drew_from(world):
    view = world["clients"]["bookstore"].transaction(world["ana_redemption"], min_height=world["height"])
    assert [(d.centre_id, d.points) for d in view.drawn] == [(world["centre A"], 10)]


def test_an_unknown_transaction_is_not_found_for_anyone(world):
    assert outcome(world["clients"]["venue"].transaction, os.urandom(16)) == grpc.StatusCode.NOT_FOUND


# --- settlement data -------------------------------------------------------------------------------


def test_a_bookstore_cannot_get_another_bookstores_settlement(world):
    venue = world["cluster"].layout.partners[1].config_file
    now = int(time.time() * 1000)
    with pytest.raises(UserError) as refused:
        fetch_statement(Session(venue), world["bookstore"], now - 86_400_000, now + 86_400_000)
    assert "PERMISSION_DENIED" in str(refused.value) and "read by that party itself or an auditor" in str(refused.value)


def test_a_bookstore_gets_its_own_settlement_without_reading_members(world):
    bookstore = world["cluster"].layout.partners[0].config_file
    now = int(time.time() * 1000)
    statement = fetch_statement(Session(bookstore), world["bookstore"], now - 86_400_000, now + 86_400_000)
    assert statement.totals()["redeemed"] == 10 and statement.totals()["refunded"] == 2
    assert statement.by_centre() == [{"centre_id": world["centre A"].hex(), "redeemed": 10, "refunded": 2,
                                      "net": 8}]


# --- blocks, checkpoints, proofs, status -----------------------------------------------------------

FULL_BLOCKS = _row({"auditor", "node"})


def _blocks(client: LedgerClient, headers_only: bool):
    return list(client.blocks(1, 3, headers_only=headers_only))


@pytest.mark.parametrize("reader", READERS)
def test_whole_blocks_are_for_auditors_and_nodes(world, reader):
    client = world["clients"][reader]
    try:
        got = OK if _blocks(client, headers_only=False) else "empty"
    except grpc.RpcError as error:
        got = error.code()
    assert got == FULL_BLOCKS[reader]


@pytest.mark.parametrize("reader", READERS)
def test_headers_checkpoints_proofs_and_status_are_for_everyone(world, reader):
    client = world["clients"][reader]
    headers = _blocks(client, headers_only=True)
    assert [b.height for b in headers] == [1, 2, 3]
    for answer in headers:
        assert answer.block == b"" and answer.certificate
        assert Header.from_wire(decode(answer.header)).height == answer.height
    checkpoint = client.checkpoint()
    assert checkpoint.height >= 1
    assert outcome(client.consistency_proof, 1, checkpoint.tree_size) == OK
    assert client.status_of(world["cluster"].layout.addresses[0]).chain_id == world["cluster"].chain_id


# --- signed reads that are wrong -------------------------------------------------------------------


def _grant_request(world, member: SigningKey, *, chain_id=None, method="GetBalance", subject=None,
                   not_after_ms=None, signature=None, member_key=None, sent_not_after_ms=None):
    """A ReadGrant signed by ``member`` with the given parts; ``signature``, ``member_key`` and
    ``sent_not_after_ms`` replace what is sent after signing."""
    subject = member.party_id if subject is None else subject
    not_after_ms = int(time.time() * 1000) + 60_000 if not_after_ms is None else not_after_ms
    grant = sign_read(member, chain_id or world["cluster"].chain_id, method, subject, not_after_ms)
    return ledger_pb2.ReadGrant(member_key=grant.member_key if member_key is None else member_key,
                                not_after_ms=not_after_ms if sent_not_after_ms is None else sent_not_after_ms,
                                signature=grant.signature if signature is None else signature)


def _balance_with(world, grant, member_id=None):
    client = world["clients"]["member cert"]
    request = ledger_pb2.GetBalanceRequest(member_id=member_id or world["ana"].party_id, grant=grant,
                                           read=ledger_pb2.ReadOptions(min_height=world["height"]))
    try:
        client.call("GetBalance", request)
    except ClientError as error:
        return error.status, str(error)
    return OK, ""


def test_a_good_grant_reads(world):
    assert _balance_with(world, _grant_request(world, world["ana"]))[0] == OK


def test_an_expired_grant_is_refused(world):
    status, message = _balance_with(world, _grant_request(world, world["ana"],
                                                          not_after_ms=int(time.time() * 1000) - 1_000))
    assert status == grpc.StatusCode.UNAUTHENTICATED and "expired" in message


def test_a_grant_ending_too_far_ahead_is_refused(world):
    far = int(time.time() * 1000) + MAX_READ_VALIDITY_MS + 60_000
    status, message = _balance_with(world, _grant_request(world, world["ana"], not_after_ms=far))
    assert status == grpc.StatusCode.UNAUTHENTICATED and f"at most {MAX_READ_VALIDITY_MS} ms" in message


def test_a_grant_for_another_chain_is_refused(world):
    status, message = _balance_with(world, _grant_request(world, world["ana"], chain_id=os.urandom(16)))
    assert status == grpc.StatusCode.UNAUTHENTICATED and "does not verify" in message


def test_a_grant_for_another_method_is_refused(world):
    status, message = _balance_with(world, _grant_request(world, world["ana"], method="GetHistory"))
    assert status == grpc.StatusCode.UNAUTHENTICATED and "does not verify" in message


def test_a_grant_for_another_subject_is_refused(world):
    grant = _grant_request(world, world["ana"])
    status, _ = _balance_with(world, grant, member_id=world["bo"].party_id)
    assert status == grpc.StatusCode.UNAUTHENTICATED


def test_a_bad_signature_is_refused(world):
    grant = _grant_request(world, world["ana"])
    flipped = bytes([grant.signature[0] ^ 1]) + grant.signature[1:]
    status, message = _balance_with(world, _grant_request(world, world["ana"], signature=flipped))
    assert status == grpc.StatusCode.UNAUTHENTICATED and "does not verify" in message


def test_another_members_key_is_refused(world):
    """Bo signs a correct grant for Ana's balance: authenticated as Bo, who may not read it."""
    status, message = _balance_with(world, _grant_request(world, world["bo"], subject=world["ana"].party_id))
    assert status == DENIED and "read by the member (signed read)" in message


@pytest.mark.parametrize("field, value, problem", [
    ("member_key", b"\x01" * 31, "member_key has 32 bytes"),
    ("member_key", b"", "member_key has 32 bytes"),
    ("signature", b"\x00" * 63, "signature has 64 bytes"),
    ("signature", b"\x00" * 65, "signature has 64 bytes"),
    ("sent_not_after_ms", 2**53 + 1, "not_after_ms is 0.."),
    ("sent_not_after_ms", 2**64 - 1, "not_after_ms is 0.."),
])
def test_a_malformed_grant_is_invalid(world, field, value, problem):
    status, message = _balance_with(world, _grant_request(world, world["ana"], **{field: value}))
    assert status == grpc.StatusCode.INVALID_ARGUMENT and problem in message


def test_an_unregistered_members_grant_is_refused(world):
    stranger = world["clients"]["unregistered"]
    status = outcome(stranger.balance, stranger._member[0].party_id, min_height=world["height"])
    assert status == DENIED


def test_a_member_reading_another_members_balance_history_or_transaction(world):
    ana = world["clients"]["Ana"]
    assert outcome(ana.balance, world["bo"].party_id) == DENIED
    assert outcome(ana.history, world["bo"].party_id) == DENIED
    assert outcome(ana.transaction, world["bo_deposit"]) == DENIED


def test_the_denial_names_who_may_read(world):
    with pytest.raises(ClientError) as refused:
        world["clients"]["bookstore"].history(world["ana"].party_id)
    assert str(refused.value) == ("a member's history is read by the member (signed read), the centre that "
                                  "registered them, or an auditor")


def test_signing_bytes_are_domain_separated_and_bound():
    chain = b"\x11" * 16
    member = b"\x22" * 20
    message = read_signing_bytes(chain, "GetBalance", member, 123)
    assert decode(message) == ["nanum/v1/read", chain, "GetBalance", member, 123]
    assert message != read_signing_bytes(chain, "GetHistory", member, 123)
    # the example of docs/FORMAT.md §16, byte for byte
    assert message.hex() == ("95" "ad" + b"nanum/v1/read".hex() + "c410" + "11" * 16 + "aa" + b"GetBalance".hex()
                             + "c414" + "22" * 20 + "7b")


def test_the_validity_window_is_inclusive_at_both_ends():
    from ledger.read_grant import GrantError, check_grant
    member, chain, now = SigningKey.generate(), b"\x33" * 16, 1_800_000_000_000
    for not_after_ms in (now, now + MAX_READ_VALIDITY_MS):
        grant = sign_read(member, chain, "GetHistory", member.party_id, not_after_ms)
        assert check_grant(grant, chain, "GetHistory", member.party_id, now) == member.party_id
    for not_after_ms, problem in ((now - 1, "expired"), (now + MAX_READ_VALIDITY_MS + 1, "at most")):
        grant = sign_read(member, chain, "GetHistory", member.party_id, not_after_ms)
        with pytest.raises(GrantError, match=problem) as refused:
            check_grant(grant, chain, "GetHistory", member.party_id, now)
        assert not refused.value.malformed
    grant = sign_read(member, chain, "GetHistory", member.party_id, now)
    with pytest.raises(GrantError) as refused:
        check_grant(grant, chain, "Submit", member.party_id, now)
    assert refused.value.malformed


def test_a_certificate_without_a_nanum_identity_is_unauthenticated(world):
    """Issued by the consortium CA (so the handshake succeeds) but with no nanum:// SAN URI."""
    from datetime import datetime, timedelta, timezone
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    layout = world["cluster"].layout
    ca_key, ca_cert = pki.read_private_key(layout.ca_key_file), pki.read_certificate(layout.ca_cert_file)
    tls_key = pki.generate_tls_key()
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nobody")]))
            .issuer_name(ca_cert.subject).public_key(tls_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    tls = TlsFiles(layout.ca_cert_file.read_bytes(), pki.certificate_pem(cert), pki.private_key_pem(tls_key))
    with LedgerClient(list(layout.addresses), tls, 5_000) as nobody:
        for call, args in ((nobody.balance, (world["ana"].party_id,)), (nobody.history, (world["bookstore"],)),
                           (nobody.transaction, (world["ana_redemption"],)), (nobody.checkpoint, ())):
            with pytest.raises(ClientError) as refused:
                call(*args)
            assert refused.value.status == grpc.StatusCode.UNAUTHENTICATED and "no nanum identity" in str(refused.value)
        with pytest.raises(grpc.RpcError) as refused:
            list(nobody.blocks(1, 1, headers_only=True))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
