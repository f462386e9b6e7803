"""Who may call what: every cell of the call table (docs/ARCHITECTURE.md, "Who may call what")
against a real 3-node cluster on loopback, revocation by governance, and peer links that check
which node answered.

The cluster (module-scoped, always stopped) has two centres and two partners. Each caller is a
client with its own TLS certificate: the auditor, node 0, each centre and partner, two admins
(certificates the test issues from the consortium CA, as ``nanum init`` issues none), and the
shared member certificate. Writes are signed by the ledger keys of ``nanum init``'s folder.
"""

from __future__ import annotations

import asyncio
import os
import time

import grpc
import pytest

from ledger.keys import SigningKey, read_key_file
from ledger.encoding import encode
from ledger.limits import MAX_APPROVALS, MAX_TX_BYTES
from ledger.tx import Deposit, DepositKind, Governance, GovernanceAction, Redeem, RegisterMember, Role, make_tx
from ledger.voucher import sign_voucher
from node import pki
from node.call_policy import CallDenied, allowed_roles, check_authored, read_envelope
from node.client import ClientError, LedgerClient, TlsFiles
from node.peers import PeerLink
from tests.test_receipt import start_cluster

OK = "ok"
DENIED = grpc.StatusCode.PERMISSION_DENIED
CALLERS = ("auditor", "node", "centre A", "centre B", "bookstore", "venue", "admin 0", "admin 1", "member cert")


def _tls(cluster, party) -> TlsFiles:
    layout = cluster.layout
    return TlsFiles.load(layout.ca_cert_file, party.tls_cert_file, party.tls_key_file)


def issued_tls(cluster, role: str, name: str, party_id: bytes) -> TlsFiles:
    return cluster.issued_tls(role, name, party_id)


def _client(cluster, tls: TlsFiles) -> LedgerClient:
    return LedgerClient(list(cluster.layout.addresses), tls, 10_000)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("calls") / "consortium")
    clients: dict[str, LedgerClient] = {}
    try:
        cluster.start()
        cluster.leader()
        layout = cluster.layout
        admins = [read_key_file(a.key_file) for a in layout.admins]
        tls = {
            "auditor": _tls(cluster, layout.auditor),
            "node": _tls(cluster, layout.nodes[0]),
            "centre A": _tls(cluster, layout.centres[0]),
            "centre B": _tls(cluster, layout.centres[1]),
            "bookstore": _tls(cluster, layout.partners[0]),
            "venue": _tls(cluster, layout.partners[1]),
            "admin 0": issued_tls(cluster, "admin", "admin-0", admins[0].party_id),
            "admin 1": issued_tls(cluster, "admin", "admin-1", admins[1].party_id),
            "admin 2": issued_tls(cluster, "admin", "admin-2", admins[2].party_id),
            "member cert": _tls(cluster, layout.members),
        }
        clients = {name: _client(cluster, files) for name, files in tls.items()}
        keys = {"centre A": read_key_file(layout.centres[0].key_file),
                "centre B": read_key_file(layout.centres[1].key_file),
                "bookstore": read_key_file(layout.partners[0].key_file),
                "venue": read_key_file(layout.partners[1].key_file),
                "admin 0": admins[0], "admin 1": admins[1], "admin 2": admins[2]}
        member = SigningKey.generate()
        make = Maker(cluster.chain_id, keys, admins)
        response = clients["centre A"].submit(make.tx("centre A", RegisterMember(member.public_key)).raw)
        clients["centre A"].submit(make.deposit("centre A", member, 1_000).raw)
        def cluster_height() -> int:            # the leader's, so a read there sees every write
            return clients["auditor"].status_of(cluster.layout.addresses[cluster.leader()]).nodes[0].applied_height
        yield {"cluster": cluster, "clients": clients, "tls": tls, "make": make, "member": member,
               "height": response.height, "cluster_height": cluster_height}
    finally:
        for client in clients.values():
            client.close()
        cluster.stop()


class Maker:
    """Signed transactions by any party of the consortium."""

    def __init__(self, chain_id: bytes, keys: dict[str, SigningKey], admins: list[SigningKey]) -> None:
        self.chain_id, self.keys, self.admins = chain_id, keys, admins

    def tx(self, author: str, payload, approvers=()):
        return make_tx(self.keys[author], self.chain_id, os.urandom(16), payload, approvers=tuple(approvers))

    def deposit(self, centre: str, member: SigningKey, points: int):
        return self.tx(centre, Deposit(member.party_id, points, DepositKind.OTHER, 0, "CALLS", 0))

    def redemption(self, partner: str, member: SigningKey, points: int):
        voucher = sign_voucher(member, self.chain_id, self.keys[partner].party_id, points, os.urandom(16),
                               int(time.time() * 1000) + 3_600_000)
        return self.tx(partner, Redeem(voucher, points, "books"))

    def admit(self, role: Role, subject: SigningKey, author: int = 0, approver: int = 1, name: str = "new party"):
        return self.tx(f"admin {author}", Governance(GovernanceAction.ADMIT, role, subject.public_key, name, ""),
                       approvers=[self.admins[approver]])

    def retire(self, role: Role, subject: SigningKey):
        return self.tx("admin 0", Governance(GovernanceAction.RETIRE, role, subject.public_key, "", ""),
                       approvers=[self.admins[1]])


def outcome(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except ClientError as error:
        return error.status
    except grpc.RpcError as error:        # status_of and blocks answer without the retry layer
        return error.code()
    return OK


def _row(allowed: set[str]) -> dict[str, object]:
    return {caller: OK if caller in allowed else DENIED for caller in CALLERS}


# --- writes: who may submit whose transaction ------------------------------------------------

# transaction (by its author) -> the callers whose certificate may submit it
WRITES = {
    "centre A's registration": ("centre A", _row({"centre A"})),
    "centre B's deposit": ("centre B", _row({"centre B"})),
    "the bookstore's redemption": ("bookstore", _row({"bookstore"})),
    "governance by admin 0, approved by admin 1": ("admin 0", _row({"admin 0", "admin 1"})),
}


def _write(world, what: str):
    make, member = world["make"], world["member"]
    if what == "centre A's registration":
        return make.tx("centre A", RegisterMember(SigningKey.generate().public_key))
    if what == "centre B's deposit":
        return make.deposit("centre B", member, 1)
    if what == "the bookstore's redemption":
        return make.redemption("bookstore", member, 1)
    return make.admit(Role.CENTRE, SigningKey.generate())


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("what", list(WRITES))
def test_submit_carries_only_the_callers_own_transactions(world, caller, what):
    client = world["clients"][caller]
    expected = WRITES[what][1][caller]
    tx = _write(world, what)
    got = outcome(client.submit, tx.raw)
    assert got == expected, f"{caller} submitting {what}"
    recorded = outcome(world["clients"]["auditor"].transaction, tx.tx_id, min_height=world["cluster_height"]())
    assert recorded == (OK if expected == OK else grpc.StatusCode.NOT_FOUND)
    assert outcome(client.submit_batch, [_write(world, what).raw]) == expected, f"{caller} batching {what}"


def test_a_centres_certificate_cannot_carry_a_bookstore_signed_redemption(world):
    """The finding: a centre's certificate worked with a bookstore's signing key."""
    tx = world["make"].redemption("bookstore", world["member"], 2)
    with pytest.raises(ClientError) as refused:
        world["clients"]["centre A"].submit(tx.raw)
    assert refused.value.status == DENIED
    assert "submits only transactions that centre wrote" in str(refused.value)
    assert outcome(world["clients"]["auditor"].transaction, tx.tx_id) == grpc.StatusCode.NOT_FOUND


def test_a_batch_with_one_foreign_transaction_is_refused_whole(world):
    make, member = world["make"], world["member"]
    own = make.deposit("centre A", member, 1)
    foreign = make.redemption("bookstore", member, 1)
    assert outcome(world["clients"]["centre A"].submit_batch, [own.raw, foreign.raw]) == DENIED
    assert outcome(world["clients"]["auditor"].transaction, own.tx_id) == grpc.StatusCode.NOT_FOUND


def test_an_admin_that_did_not_sign_cannot_carry_governance(world):
    tx = world["make"].admit(Role.PARTNER, SigningKey.generate())          # admin 0 with admin 1
    assert outcome(world["clients"]["admin 2"].submit, tx.raw) == DENIED


def test_refusals_say_which_roles_may_submit(world):
    with pytest.raises(ClientError) as refused:
        world["clients"]["member cert"].submit(_write(world, "centre A's registration").raw)
    assert refused.value.status == DENIED
    assert "Submit is called by admins, centres, partners" in str(refused.value)
    assert "this certificate is a member's" in str(refused.value)


def test_bytes_that_are_no_transaction_are_still_malformed_for_a_writer(world):
    with pytest.raises(ClientError) as refused:
        world["clients"]["centre A"].submit(b"\x93\x01\x02")
    assert refused.value.status == grpc.StatusCode.INVALID_ARGUMENT


# --- reads and status: every certificate of the consortium -----------------------------------

EVERYONE = _row(set(CALLERS))


@pytest.mark.parametrize("caller", CALLERS)
def test_status_checkpoint_and_headers_are_open_to_every_consortium_certificate(world, caller):
    client = world["clients"][caller]
    address = world["cluster"].layout.addresses[0]
    assert outcome(client.status_of, address) == EVERYONE[caller]
    assert outcome(client.checkpoint) == EVERYONE[caller]
    assert outcome(lambda: list(client.blocks(0, max_blocks=2, headers_only=True))) == EVERYONE[caller]


WHOLE_BLOCKS = _row({"auditor", "node"})


@pytest.mark.parametrize("caller", CALLERS)
def test_whole_blocks_keep_the_read_table(world, caller):
    client = world["clients"][caller]
    assert outcome(lambda: list(client.blocks(0, max_blocks=2))) == WHOLE_BLOCKS[caller]


@pytest.mark.parametrize("caller", [c for c in CALLERS if c != "node"])
def test_consensus_is_for_nodes_only(world, caller):
    tls = world["tls"][caller]
    credentials = grpc.ssl_channel_credentials(tls.ca_cert, tls.key, tls.cert)
    address = world["cluster"].layout.addresses[1]

    async def exchange():
        from node.wire import consensus_pb2_grpc
        async with grpc.aio.secure_channel(address, credentials) as channel:
            stub = consensus_pb2_grpc.ConsensusStub(channel)
            async def nothing():
                return
                yield
            try:
                await stub.Exchange(nothing(), timeout=5)
            except grpc.aio.AioRpcError as error:
                return error.code()
            return OK
    assert asyncio.run(exchange()) == DENIED


# --- revocation ------------------------------------------------------------------------------


def test_retiring_a_partner_revokes_its_certificate_at_once(world):
    cluster, clients, make = world["cluster"], world["clients"], world["make"]
    partner = SigningKey.generate()
    response = clients["admin 0"].submit(make.admit(Role.PARTNER, partner, name="Pop-up Bookstore").raw)
    make.keys["pop-up"] = partner
    with _client(cluster, issued_tls(cluster, "partner", "Pop-up Bookstore", partner.party_id)) as pop_up:
        for address in cluster.layout.addresses:
            wait_height(clients["auditor"], address, response.height)
            assert outcome(pop_up.status_of, address) == OK
        retired = clients["admin 0"].submit(make.retire(Role.PARTNER, partner).raw)
        for address in cluster.layout.addresses:
            wait_height(clients["auditor"], address, retired.height)
            with pytest.raises(grpc.RpcError) as refused:
                pop_up.status_of(address)
            assert refused.value.code() == DENIED
            assert "was retired by governance: its certificates are revoked" in refused.value.details()
        assert outcome(pop_up.submit, make.redemption("pop-up", world["member"], 1).raw) == DENIED


def wait_height(client: LedgerClient, address: str, height: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while client.status_of(address).nodes[0].applied_height < height:
        assert time.monotonic() < deadline, f"{address} did not reach height {height}"
        time.sleep(0.05)


@pytest.mark.parametrize("role", ["centre", "partner", "admin", "node", "auditor", "member"])
def test_a_ca_issued_certificate_of_no_current_party_is_refused(world, role):
    """The CA's signature alone is not enough: the party must be in the ledger (or, for the
    auditor and members, the certificate listed in the node's config)."""
    cluster = world["cluster"]
    leader = cluster.leader()
    with _client(cluster, issued_tls(cluster, role, "stranger", os.urandom(20))) as stranger:
        for i, address in enumerate(cluster.layout.addresses):
            got = outcome(stranger.status_of, address)
            if role in ("auditor", "member"):          # the node's config decides, on every node
                assert got == DENIED, f"node {i}"
            else:       # a follower may not have applied an admission yet: it sends the caller on
                assert got == (DENIED if i == leader else grpc.StatusCode.UNAVAILABLE) or \
                    cluster.leader() != leader, f"node {i}: {got}"
        assert outcome(stranger.checkpoint) == DENIED       # the client follows to the leader


# --- peer links check which node answered -----------------------------------------------------


def _link_error(world, peer_index: int, address_index: int, seconds: float = 2.0) -> str | None:
    """Runs node 0's link to node ``peer_index`` dialling node ``address_index``'s address."""
    layout = world["cluster"].layout
    tls = world["tls"]["node"]
    credentials = grpc.ssl_channel_credentials(tls.ca_cert, tls.key, tls.cert)
    peer = layout.nodes[peer_index]

    async def run() -> str | None:
        link = PeerLink(peer.node_id, layout.nodes[address_index].address, credentials, [])
        link.start()                # opens the stream; no message is needed for the handshake
        try:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and link.last_error is None:
                await asyncio.sleep(0.05)
        finally:
            await link.close()
        return link.last_error
    return asyncio.run(run())


def test_a_link_to_an_address_where_another_node_answers_is_refused(world):
    error = _link_error(world, peer_index=1, address_index=2)
    assert error is not None and error.startswith("UNAVAILABLE"), error


def test_a_link_to_the_right_node_opens(world):
    assert _link_error(world, peer_index=1, address_index=1, seconds=1.0) is None


# --- the policy's pure parts: envelopes of untrusted bytes, the table -------------------------

_KEY = SigningKey.from_seed(b"k" * 32)
_OTHER = SigningKey.from_seed(b"o" * 32)


def _wire(kind=2, author=None, approvals=()):
    return encode([1, b"c" * 16, kind, b"t" * 16, author or _KEY.public_key, [], b"s" * 64,
                   [[k, b"s" * 64] for k in approvals]])


@pytest.mark.parametrize("raw", [
    b"", b"\xc1", b"\x93\x01\x02\x03", encode([1, 2, 3]), _wire()[:-1],
    encode([1, b"c" * 16, 2, b"t" * 16, b"short", [], b"s" * 64, []]),          # author not 32 bytes
    encode([1, b"c" * 16, "two", b"t" * 16, b"a" * 32, [], b"s" * 64, []]),     # kind not a number
    _wire(approvals=[b"a" * 32] * (MAX_APPROVALS + 1)),                          # past the limit
    encode([1, b"c" * 16, 7, b"t" * 16, b"a" * 32, [], b"s" * 64, [[b"short", b"s"]]]),
    b"\xc6" + (MAX_TX_BYTES + 1).to_bytes(4, "big") + b"x" * (MAX_TX_BYTES + 1),   # past MAX_TX_BYTES
])
def test_bytes_that_are_no_envelope_read_as_none(raw):
    assert read_envelope(raw) is None


def test_an_envelope_names_its_author_and_approvers():
    envelope = read_envelope(_wire(kind=7, approvals=[_OTHER.public_key]))
    assert (envelope.kind, envelope.author_id, envelope.approver_ids) == (7, _KEY.party_id, (_OTHER.party_id,))
    assert read_envelope(_wire(approvals=[b"a" * 32] * MAX_APPROVALS)) is not None   # at the limit


def test_an_admin_carries_only_governance_it_approved():
    admin = pki.Identity("admin", "admin-1", _OTHER.party_id)
    check_authored(admin, _wire(kind=7, approvals=[_OTHER.public_key]))          # governance: allowed
    with pytest.raises(CallDenied):
        check_authored(admin, _wire(kind=3, approvals=[_OTHER.public_key]))      # a "deposit" with approvals
    centre = pki.Identity("centre", "c", _OTHER.party_id)
    with pytest.raises(CallDenied):
        check_authored(centre, _wire(kind=7, approvals=[_OTHER.public_key]))     # approvals make no centre an author


def test_a_method_in_no_row_is_closed_to_everyone():
    assert allowed_roles("/nanum.v1.Ledger/Unknown") == frozenset()
    assert allowed_roles("/nanum.v1.Consensus/Exchange") == frozenset({"node"})
    assert "member" in allowed_roles("/grpc.health.v1.Health/Check")


def test_every_ledger_and_consensus_method_has_a_row():
    from node.wire import consensus_pb2, ledger_pb2
    for module, service in ((ledger_pb2, "Ledger"), (consensus_pb2, "Consensus")):
        descriptor = module.DESCRIPTOR.services_by_name[service]
        for method in descriptor.methods:
            assert allowed_roles(f"/{descriptor.full_name}/{method.name}"), method.name


def test_health_and_reflection_pass_the_interceptor_for_every_certificate(world):
    """The unary-stream and stream-stream paths of the interceptor, with the member certificate."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    tls = world["tls"]["member cert"]
    credentials = grpc.ssl_channel_credentials(tls.ca_cert, tls.key, tls.cert)
    with grpc.secure_channel(world["cluster"].layout.addresses[0], credentials) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        watch = health.Watch(health_pb2.HealthCheckRequest(), timeout=5)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                  timeout=5)
        names = [s.name for s in next(answers).list_services_response.service]
        assert "nanum.v1.Ledger" in names
