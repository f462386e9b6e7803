"""Bad input at a node's boundary: each gets a clear status, and the node keeps serving with its
state unchanged. Real node processes, real mutual TLS, real certificates of a foreign
consortium."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from ledger.encoding import decode, encode
from ledger.keys import SigningKey
from ledger.tx import Deposit, DepositKind, RegisterMember, make_tx
from node.client import LedgerClient, TlsFiles
from node.cluster import LocalCluster
from node.codec import Endorsement, encode_message
from node.wire import consensus_pb2, consensus_pb2_grpc, ledger_pb2, ledger_pb2_grpc

QUEUE_LIMIT = 8
FLOOD = 64


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LocalCluster(tmp_path_factory.mktemp("boundary") / "consortium",
                           extra_env={"NANUM_MAX_PENDING_SUBMISSIONS": str(QUEUE_LIMIT),
                                      "NANUM_MAX_BATCH_WAIT_MS": "300"})
    cluster.create()
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """Another consortium's certificates: same shape, different CA."""
    other = LocalCluster(tmp_path_factory.mktemp("foreign") / "consortium")
    other.create("Another consortium")
    return other


@pytest.fixture(scope="module")
def leader_stub(cluster):
    return ledger_pb2_grpc.LedgerStub(_channel(cluster, cluster.layout.nodes[cluster.leader()].address))


def _channel(cluster, address, who="centre", max_send=16 * 1024 * 1024, layout=None):
    """A channel that trusts the cluster's CA and presents ``who``'s certificate from ``layout``
    (the cluster's own, or a foreign consortium's); sends up to ``max_send`` bytes."""
    party = {"centre": (layout or cluster.layout).centres[0], "auditor": (layout or cluster.layout).auditor,
             "member": (layout or cluster.layout).members}[who]
    credentials = grpc.ssl_channel_credentials(cluster.layout.ca_cert_file.read_bytes(),
                                               party.tls_key_file.read_bytes(), party.tls_cert_file.read_bytes())
    return grpc.secure_channel(address, credentials, options=[("grpc.max_send_message_length", max_send)])


QUIET_TIMEOUT_S = 20.0


def _heights(cluster) -> set[tuple[int, int]]:
    """The nodes' (applied, certified) heights once the cluster is quiet: every node agrees and
    two reads 0.2 s apart are the same (work of earlier tests may still be committing on a busy
    machine). Bounded by QUIET_TIMEOUT_S."""
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    last = None
    while True:
        heights = {(s.applied_height, s.certified_height) for s in cluster.statuses().values()}
        if heights == last and len(heights) == 1 or time.monotonic() > deadline:
            return heights
        last = heights
        time.sleep(0.2)


def _refusal(call) -> tuple[grpc.StatusCode, dict]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), dict(raised.value.trailing_metadata() or ())


def test_an_oversized_message_is_resource_exhausted(cluster, leader_stub):
    before = _heights(cluster)
    status, _ = _refusal(lambda: leader_stub.Submit(ledger_pb2.SubmitRequest(tx=b"\x00" * (9 * 1024 * 1024)),
                                                    timeout=10))
    assert status == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert _heights(cluster) == before


@pytest.mark.parametrize("case", ["too_long", "garbage", "truncated", "unknown_enum", "wrong_chain", "bad_signature"])
def test_garbage_in_a_transaction_is_invalid_argument_with_its_code(cluster, leader_stub, case):
    good = make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16),
                   Deposit(os.urandom(20), 5, DepositKind.OTHER, 0, "x", 0))
    wire = decode(good.raw)
    if case == "too_long":
        raw, code = good.raw + b"\x00" * 5000, 1
    elif case == "garbage":
        raw, code = os.urandom(300), 1
    elif case == "truncated":
        raw, code = good.raw[:-10], 1
    elif case == "unknown_enum":
        wire[5][2] = 9
        raw, code = encode(wire), 1
    elif case == "wrong_chain":
        raw, code = make_tx(cluster.key("centre"), os.urandom(16), os.urandom(16), good.payload).raw, 2
    else:       # a registration by the centre passes admission's state checks; its signature does not
        wire = decode(make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16),
                              RegisterMember(SigningKey.generate().public_key)).raw)
        wire[6] = bytes(64)
        raw, code = encode(wire), 3
    before = _heights(cluster)
    status, metadata = _refusal(lambda: leader_stub.Submit(ledger_pb2.SubmitRequest(tx=raw), timeout=10))
    assert status == grpc.StatusCode.INVALID_ARGUMENT
    assert metadata["nanum-code"] == str(code)
    assert _heights(cluster) == before


def test_a_rule_rejection_is_failed_precondition_and_recorded(cluster, leader_stub):
    member = SigningKey.generate()
    first = make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16), RegisterMember(member.public_key))
    assert leader_stub.Submit(ledger_pb2.SubmitRequest(tx=first.raw), timeout=10).code == 0
    tx = make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16), RegisterMember(member.public_key))
    status, metadata = _refusal(lambda: leader_stub.Submit(ledger_pb2.SubmitRequest(tx=tx.raw), timeout=10))
    assert status == grpc.StatusCode.FAILED_PRECONDITION
    assert metadata["nanum-code-name"] == "MEMBER_EXISTS"
    # Recorded with its code: asking again returns the same answer, from the same height.
    again_status, again = _refusal(lambda: leader_stub.Submit(ledger_pb2.SubmitRequest(tx=tx.raw), timeout=10))
    assert again_status == status and again["nanum-height"] == metadata["nanum-height"]


def test_what_the_state_refuses_at_admission_is_failed_precondition_and_not_recorded(cluster, leader_stub):
    """A deposit for no member is refused before it reaches a block (docs/ARCHITECTURE.md,
    "Admission"): the code, no height, nothing written, the same answer again."""
    tx = make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16),
                 Deposit(os.urandom(20), 5, DepositKind.OTHER, 0, "nobody", 0))
    before = _heights(cluster)
    for _ in range(2):
        status, metadata = _refusal(lambda: leader_stub.Submit(ledger_pb2.SubmitRequest(tx=tx.raw), timeout=10))
        assert status == grpc.StatusCode.FAILED_PRECONDITION
        assert metadata["nanum-code-name"] == "UNKNOWN_MEMBER" and "nanum-height" not in metadata
    assert _heights(cluster) == before


@pytest.mark.parametrize("request_", [
    ledger_pb2.GetBalanceRequest(member_id=b"abc"),
    ledger_pb2.GetHistoryRequest(party_id=bytes(20), limit=100_000),
    ledger_pb2.GetTransactionRequest(tx_id=b"\x01"),
])
def test_bad_ids_and_limits_in_reads_are_invalid_argument(cluster, leader_stub, request_):
    method = {ledger_pb2.GetBalanceRequest: leader_stub.GetBalance, ledger_pb2.GetHistoryRequest: leader_stub.GetHistory,
              ledger_pb2.GetTransactionRequest: leader_stub.GetTransaction}[type(request_)]
    status, _ = _refusal(lambda: method(request_, timeout=10))
    assert status == grpc.StatusCode.INVALID_ARGUMENT


def test_a_follower_answers_a_submission_with_the_leaders_address(cluster):
    leader = cluster.leader()
    follower = next(i for i in range(cluster.nodes) if i != leader)
    stub = ledger_pb2_grpc.LedgerStub(_channel(cluster, cluster.layout.nodes[follower].address))
    tx = make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16), RegisterMember(SigningKey.generate().public_key))
    status, metadata = _refusal(lambda: stub.Submit(ledger_pb2.SubmitRequest(tx=tx.raw), timeout=10))
    assert status == grpc.StatusCode.UNAVAILABLE
    assert metadata["nanum-leader"] == cluster.layout.nodes[leader].address


@pytest.mark.parametrize("who", ["auditor", "node"])
def test_a_certificate_from_outside_the_consortium_gets_nothing(cluster, foreign, who):
    before = _heights(cluster)
    address = cluster.layout.nodes[0].address
    if who == "node":
        party = foreign.layout.nodes[0]
        credentials = grpc.ssl_channel_credentials(cluster.layout.ca_cert_file.read_bytes(),
                                                   party.tls_key_file.read_bytes(), party.tls_cert_file.read_bytes())
        channel = grpc.secure_channel(address, credentials)
    else:
        channel = _channel(cluster, address, who="auditor", layout=foreign.layout)
    stub = ledger_pb2_grpc.LedgerStub(channel)
    status, _ = _refusal(lambda: stub.GetStatus(ledger_pb2.GetStatusRequest(), timeout=5))
    # The TLS handshake fails, so no request reaches the service at all.
    assert status == grpc.StatusCode.UNAVAILABLE
    assert _heights(cluster) == before


def test_a_client_without_a_certificate_gets_nothing(cluster):
    credentials = grpc.ssl_channel_credentials(cluster.layout.ca_cert_file.read_bytes())
    stub = ledger_pb2_grpc.LedgerStub(grpc.secure_channel(cluster.layout.nodes[0].address, credentials))
    status, _ = _refusal(lambda: stub.GetStatus(ledger_pb2.GetStatusRequest(), timeout=5))
    assert status == grpc.StatusCode.UNAVAILABLE


def test_consensus_traffic_from_a_non_node_certificate_is_permission_denied(cluster):
    channel = _channel(cluster, cluster.layout.nodes[0].address, who="auditor")
    stub = consensus_pb2_grpc.ConsensusStub(channel)
    status, _ = _refusal(lambda: stub.Exchange(iter([consensus_pb2.Envelope(message=b"\x90")]), timeout=5))
    assert status == grpc.StatusCode.PERMISSION_DENIED


def test_a_node_cannot_speak_for_another_node_or_send_garbage(cluster):
    """A consortium node's stream carrying forged senders and garbage: every message refused."""
    sender, target = cluster.layout.nodes[1], cluster.layout.nodes[0]
    credentials = grpc.ssl_channel_credentials(cluster.layout.ca_cert_file.read_bytes(),
                                               sender.tls_key_file.read_bytes(), sender.tls_cert_file.read_bytes())
    stub = consensus_pb2_grpc.ConsensusStub(grpc.secure_channel(target.address, credentials))
    forged = Endorsement(cluster.layout.nodes[2].node_id, target.node_id, 1, bytes(32), bytes(64))
    before = _heights(cluster)
    summary = stub.Exchange(iter([consensus_pb2.Envelope(message=encode_message(forged)),
                                  consensus_pb2.Envelope(message=os.urandom(100))]), timeout=5)
    assert (summary.received, summary.refused) == (0, 2)
    assert _heights(cluster) == before


def test_a_flood_beyond_the_queue_limit_is_resource_exhausted_and_the_node_keeps_serving(cluster):
    leader_address = cluster.layout.nodes[cluster.leader()].address
    centre = cluster.key("centre")
    register = make_tx(centre, cluster.chain_id, os.urandom(16), RegisterMember(SigningKey.generate().public_key))
    txs = [make_tx(centre, cluster.chain_id, os.urandom(16),
                   Deposit(register.payload.member_id, 1, DepositKind.OTHER, 0, "flood", 0)) for _ in range(FLOOD)]
    stub = ledger_pb2_grpc.LedgerStub(_channel(cluster, leader_address))
    stub.Submit(ledger_pb2.SubmitRequest(tx=register.raw), timeout=10)

    def submit(tx):
        try:
            stub.Submit(ledger_pb2.SubmitRequest(tx=tx.raw), timeout=20)
            return "ok"
        except grpc.RpcError as error:
            return error.code()

    with ThreadPoolExecutor(FLOOD) as pool:
        outcomes = list(pool.map(submit, txs))
    assert outcomes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) > 0
    assert set(outcomes) <= {"ok", grpc.StatusCode.RESOURCE_EXHAUSTED}
    accepted = outcomes.count("ok")
    with LedgerClient([leader_address], TlsFiles.load(cluster.layout.ca_cert_file, cluster.layout.centres[0].tls_cert_file,
                                                      cluster.layout.centres[0].tls_key_file)) as client:
        assert client.balance(register.payload.member_id).points == accepted
        client.submit(txs[-1].raw)      # still serving: a refused one goes through now


LEDGER_METHODS = [method.name for method in ledger_pb2.DESCRIPTOR.services_by_name["Ledger"].methods]


@pytest.mark.parametrize("method", LEDGER_METHODS)
@pytest.mark.parametrize("garbage", [b"\x0f", b"\x0a\x05ab", b"\xff\xff\xff\xff"], ids=["wire_type", "short", "ff"])
def test_request_bytes_that_are_no_protobuf_message_are_invalid_argument_malformed(cluster, method, garbage):
    """Issue 16, defect 5: grpc.aio answered these UNKNOWN ("Unexpected DecodeError")."""
    channel = _channel(cluster, cluster.layout.nodes[cluster.leader()].address)
    raw_call = channel.unary_unary(f"/nanum.v1.Ledger/{method}", request_serializer=None,
                                   response_deserializer=None)
    if method == "StreamBlocks":
        raw_call = channel.unary_stream(f"/nanum.v1.Ledger/{method}", request_serializer=None,
                                        response_deserializer=None)
    before = _heights(cluster)
    status, metadata = _refusal(lambda: list(raw_call(garbage, timeout=10)) if method == "StreamBlocks"
                                else raw_call(garbage, timeout=10))
    assert status == grpc.StatusCode.INVALID_ARGUMENT
    assert (metadata.get("nanum-code"), metadata.get("nanum-code-name")) == ("1", "MALFORMED")
    assert _heights(cluster) == before
    channel.close()


SAME_ID_ROUNDS = 10


def test_two_transactions_with_one_id_at_once_get_one_ok_and_one_exists_with_different_fields(cluster):
    """Issue 16, defect 1: both were answered OK (same height and leaf); the chain recorded the
    second as EXISTS_WITH_DIFFERENT_FIELDS, and resubmitting it then said so. Every round: one
    OK, one refusal with code 19, and each resubmission gets the answer its bytes got first."""
    stub = ledger_pb2_grpc.LedgerStub(_channel(cluster, cluster.layout.nodes[cluster.leader()].address))
    centre = cluster.key("centre")

    def submit(tx):
        try:
            response = stub.Submit(ledger_pb2.SubmitRequest(tx=tx.raw), timeout=20)
            return ("ok", response.height, response.leaf_index)
        except grpc.RpcError as error:
            return (error.code(), dict(error.trailing_metadata() or ()).get("nanum-code"))

    with ThreadPoolExecutor(2) as pool:
        for _ in range(SAME_ID_ROUNDS):
            tx_id = os.urandom(16)
            pair = [make_tx(centre, cluster.chain_id, tx_id, RegisterMember(SigningKey.generate().public_key))
                    for _ in range(2)]
            answers = list(pool.map(submit, pair))
            assert sorted(a[0] == "ok" for a in answers) == [False, True], answers
            refused = next(a for a in answers if a[0] != "ok")
            assert refused == (grpc.StatusCode.FAILED_PRECONDITION, "19"), answers
            again = [submit(tx) for tx in pair]
            assert [a[0] for a in again] == [a[0] for a in answers]
            assert [a[1] if a[0] == "ok" else a for a in again] == \
                   [a[1] if a[0] == "ok" else a for a in answers]
