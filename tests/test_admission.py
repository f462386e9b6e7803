"""Admission at a node (node/admission.py, docs/ARCHITECTURE.md "Admission"): the findings of
issue 15 that a submitter could abuse, reproduced against a real one-node runtime in-process.

1. CPU amplification: a governance transaction with 31 valid approvals by keys that are no
   admins' and a broken last one cost 33 signature checks on the event loop's thread, on every
   resend. Now: refused from the state before any signature; failures remembered; the
   signatures that are checked are checked in worker threads.
2. Free writes: a transaction signed by a key that is no party was recorded for ever as
   NOT_AUTHORISED. Now: refused at admission, not recorded.
Plus the caller's budget: signatures per call and per TLS identity, RESOURCE_EXHAUSTED past it.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from cli.main import main

from ledger import keys
from ledger.codes import Code
from ledger.keys import SigningKey, read_key_file
from ledger.encoding import encode
from ledger.tx import Deposit, DepositKind, Governance, GovernanceAction, RegisterMember, Role, make_tx
from ledger.voucher import VOUCHER_TAG
from node.client import TlsFiles, LedgerClient
from node.cluster import free_base_port
from node.config import load_config
from node.consortium import ConsortiumSpec, create_consortium
from node.runtime import NodeRuntime
from node.wire import ledger_pb2

LEADER_WAIT_S = 10


class OneNode:
    """A one-node consortium whose runtime runs on this test's event loop."""

    def __init__(self, folder: Path, verifications: list[str] | None = None, **settings) -> None:
        spec = ConsortiumSpec(name="admission test", created_ms=int(time.time() * 1000), nodes=1,
                              base_port=free_base_port(1))
        self.layout = create_consortium(folder, spec)
        self.config = load_config(self.layout.nodes[0].config_file, env={}, overrides=settings)
        self.centre = read_key_file(self.layout.centres[0].key_file)
        self.admins = [read_key_file(a.key_file) for a in self.layout.admins]
        self.chain_id = bytes.fromhex(self.layout.chain_id)
        self.runtime: NodeRuntime | None = None
        self.verifications = verifications

    def run(self, scenario) -> None:
        async def main() -> None:
            self.runtime = NodeRuntime(self.config)
            await self.runtime.start()
            try:
                deadline = time.monotonic() + LEADER_WAIT_S
                while not self.runtime.replica.is_leader:
                    assert time.monotonic() < deadline, "the one node did not become leader"
                    await asyncio.sleep(0.02)
                if self.verifications is not None:
                    self.verifications.clear()
                await scenario(self.runtime)
            finally:
                await self.runtime.stop()
        asyncio.run(main())

    def tx(self, author: SigningKey, payload, approvers=()):
        return make_tx(author, self.chain_id, os.urandom(16), payload, approvers=tuple(approvers))

    def client(self, party) -> LedgerClient:
        return LedgerClient([self.config.listen], TlsFiles.load(self.layout.ca_cert_file, party.tls_cert_file,
                                                               party.tls_key_file), 5_000)


TX_SIGNING_MARK, TX_MARK_WITHIN = b"nanum/v1/tx/", 16     # a transaction's signing bytes start so
VOUCHER_MARK = encode([VOUCHER_TAG])[:1] + encode(VOUCHER_TAG)


@pytest.fixture
def verifications(monkeypatch):
    """Every call of ledger.keys.verify on a transaction's or a voucher's signing bytes (not
    the nodes' block endorsements), as the name of the thread it ran on; those made before the
    node leads (the genesis block's) are left out (OneNode.run clears the list)."""
    calls: list[str] = []
    lock = threading.Lock()
    real = keys.verify

    def counting(public_key, signature, message):
        if TX_SIGNING_MARK in bytes(message[:TX_MARK_WITHIN]) or bytes(message).startswith(VOUCHER_MARK):
            with lock:
                calls.append(threading.current_thread().name)
        return real(public_key, signature, message)

    monkeypatch.setattr(keys, "verify", counting)
    return calls



def _code(exc: BaseException) -> Code | None:
    """The result code a refused submission carries (a static rejection or an admission refusal)."""
    rejection = getattr(exc, "rejection", None)
    return rejection.code if rejection is not None else getattr(exc, "code", None)


async def _refused(runtime: NodeRuntime, raw: bytes) -> BaseException:
    try:
        outcome = await runtime.submit(raw)
    except Exception as exc:        # noqa: BLE001 - the test inspects what was raised
        return exc
    raise AssertionError(f"the submission was recorded with {outcome.code.name} at height {outcome.height}")


def _strangers_governance(node: OneNode, break_last: bool = True, author: SigningKey | None = None):
    """A governance admission signed by a stranger (or ``author``) with 31 strangers' approvals,
    the last approval's signature broken: the shape of finding 1."""
    author, approvers = author or SigningKey.generate(), [SigningKey.generate() for _ in range(31)]
    tx = node.tx(author, Governance(GovernanceAction.ADMIT, Role.CENTRE, SigningKey.generate().public_key,
                                    "rogue centre", ""), approvers)
    if not break_last:
        return tx.raw
    last = tx.approvals[-1].signature
    return tx.raw.replace(last, last[:-1] + bytes([last[-1] ^ 1]))


def _register(node: OneNode, member: SigningKey):
    return node.tx(node.centre, RegisterMember(member.public_key))


def _deposit(node: OneNode, member_id: bytes, author: SigningKey | None = None, points: int = 5):
    return node.tx(author or node.centre, Deposit(member_id, points, DepositKind.OTHER, 0, "ADM-1", 0))


# --- finding 1: CPU amplification --------------------------------------------------------------


def test_governance_from_strangers_is_refused_before_any_signature_is_checked(tmp_path, verifications):
    node = OneNode(tmp_path / "c", verifications)
    raw = _strangers_governance(node)

    async def scenario(runtime):
        height = runtime.ledger.height
        for _ in range(3):                       # resent: each copy is as cheap
            exc = await _refused(runtime, raw)
            assert _code(exc) == Code.NOT_AUTHORISED, exc
        assert verifications == []
        assert runtime.ledger.height == height
    node.run(scenario)


def test_more_approvals_than_active_admins_is_refused_before_any_signature_is_checked(tmp_path, verifications):
    """The consortium has 3 admins: 3 admins' signatures plus a stranger's cannot be a quorum."""
    node = OneNode(tmp_path / "c", verifications)
    tx = node.tx(node.admins[0], Governance(GovernanceAction.ADMIT, Role.CENTRE, SigningKey.generate().public_key,
                                            "new centre", ""), node.admins[1:] + [SigningKey.generate()])

    async def scenario(runtime):
        exc = await _refused(runtime, tx.raw)
        assert _code(exc) == Code.NOT_AUTHORISED and "admin" in str(exc), exc
        assert verifications == []
    node.run(scenario)


def test_a_resent_transaction_that_failed_its_signatures_costs_no_signature_check(tmp_path, verifications):
    """Admins' keys with a broken approval pass the cheap checks, so the signatures are checked,
    once: the failure is remembered by the exact bytes' hash."""
    node = OneNode(tmp_path / "c", verifications)
    tx = node.tx(node.admins[0], Governance(GovernanceAction.ADMIT, Role.CENTRE, SigningKey.generate().public_key,
                                            "new centre", ""), node.admins[1:2])
    last = tx.approvals[-1].signature
    raw = tx.raw.replace(last, last[:-1] + bytes([last[-1] ^ 1]))

    async def scenario(runtime):
        exc = await _refused(runtime, raw)
        assert _code(exc) == Code.BAD_SIGNATURE, exc
        first = len(verifications)
        assert first >= 1
        for _ in range(5):
            exc = await _refused(runtime, raw)
            assert _code(exc) == Code.BAD_SIGNATURE, exc
        assert len(verifications) == first
    node.run(scenario)


def test_signatures_are_checked_in_worker_threads_not_on_the_event_loop(tmp_path, verifications):
    node = OneNode(tmp_path / "c", verifications)
    member = SigningKey.generate()

    async def scenario(runtime):
        loop_thread = threading.current_thread().name
        assert (await runtime.submit(_register(node, member).raw)).code == Code.OK
        assert (await runtime.submit(_deposit(node, member.party_id).raw)).code == Code.OK
        assert verifications, "no signature was checked"
        assert loop_thread not in verifications, verifications
    node.run(scenario)


# --- finding 2: free writes ---------------------------------------------------------------------


def test_a_transaction_signed_by_no_party_is_refused_and_not_recorded(tmp_path, verifications):
    node = OneNode(tmp_path / "c", verifications)
    member = SigningKey.generate()

    async def scenario(runtime):
        assert (await runtime.submit(_register(node, member).raw)).code == Code.OK
        height, before = runtime.ledger.height, len(verifications)
        junk = _deposit(node, member.party_id, author=SigningKey.generate())
        exc = await _refused(runtime, junk.raw)
        assert _code(exc) == Code.NOT_AUTHORISED, exc
        assert "no active centre" in str(exc) and "not recorded" in str(exc), exc
        assert runtime.ledger.height == height
        assert runtime.ledger.store.tx_record(junk.tx_id) is None
        assert len(verifications) == before           # refused before its signature
    node.run(scenario)


def test_a_deposit_for_a_member_who_does_not_exist_is_refused_and_not_recorded(tmp_path):
    node = OneNode(tmp_path / "c")

    async def scenario(runtime):
        height = runtime.ledger.height
        junk = _deposit(node, SigningKey.generate().party_id)
        exc = await _refused(runtime, junk.raw)
        assert _code(exc) == Code.UNKNOWN_MEMBER, exc
        assert runtime.ledger.height == height and runtime.ledger.store.tx_record(junk.tx_id) is None
    node.run(scenario)


def test_an_already_recorded_transaction_is_answered_from_its_record_without_a_signature(tmp_path, verifications):
    node = OneNode(tmp_path / "c", verifications)
    register = _register(node, SigningKey.generate())

    async def scenario(runtime):
        first = await runtime.submit(register.raw)
        before = len(verifications)
        again = await runtime.submit(register.raw)
        assert again.duplicate and (again.code, again.height) == (first.code, first.height)
        assert len(verifications) == before
    node.run(scenario)


# --- the caller's budget, over gRPC with the caller's TLS identity ------------------------------


def _status_details(call) -> tuple[grpc.StatusCode, str]:
    try:
        call()
    except grpc.RpcError as error:
        return error.code(), error.details()
    raise AssertionError("the call was answered")


def test_a_caller_past_its_signature_rate_is_answered_resource_exhausted(tmp_path):
    node = OneNode(tmp_path / "c", max_signatures_per_second_per_caller=1,
                   max_signature_burst_per_caller=16, max_batch_signatures=8)
    members = [SigningKey.generate() for _ in range(8)]

    async def scenario(runtime):
        loop = asyncio.get_running_loop()
        with node.client(node.layout.centres[0]) as client:
            stub = client.stub(node.config.listen)
            first = await loop.run_in_executor(None, lambda: stub.SubmitBatch(
                ledger_pb2.SubmitBatchRequest(txs=[_register(node, m).raw for m in members]), timeout=5))
            assert [r.code for r in first.results] == [Code.OK] * 8      # 8 units + 8 signatures
            height = runtime.ledger.height
            more = [_deposit(node, m.party_id).raw for m in members[:4]]
            status, details = await loop.run_in_executor(None, _status_details, lambda: stub.SubmitBatch(
                ledger_pb2.SubmitBatchRequest(txs=more), timeout=5))
            assert status == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_signatures_per_second_per_caller" in details and "centre/" in details, details
            assert runtime.ledger.height == height
            answer = await loop.run_in_executor(None, lambda: client.status_of(node.config.listen))
            assert answer.nodes[0].throttled_calls == 1
            shown = await loop.run_in_executor(None, lambda: CliRunner().invoke(
                main, ["status", "--client", str(node.layout.centres[0].config_file), "--json"]))
            assert json.loads(shown.output)["nodes"][0]["throttled_calls"] == 1, shown.output
    node.run(scenario)


def test_a_batch_needing_more_signatures_than_a_call_may_have_is_refused_whole(tmp_path, verifications):
    node = OneNode(tmp_path / "c", verifications, max_batch_signatures=4)
    members = [SigningKey.generate() for _ in range(5)]

    async def scenario(runtime):
        loop = asyncio.get_running_loop()
        with node.client(node.layout.centres[0]) as client:
            stub = client.stub(node.config.listen)
            raws = [_register(node, m).raw for m in members]
            status, details = await loop.run_in_executor(None, _status_details, lambda: stub.SubmitBatch(
                ledger_pb2.SubmitBatchRequest(txs=raws), timeout=5))
            assert status == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "5 signature checks" in details and "max_batch_signatures" in details, details
            assert verifications == []
            copies = [raws[0]] * 256                 # one transaction's copies cost it once
            answer = await loop.run_in_executor(None, lambda: stub.SubmitBatch(
                ledger_pb2.SubmitBatchRequest(txs=copies), timeout=5))
            assert {r.code for r in answer.results} == {Code.OK}
            assert len(verifications) == 1
    node.run(scenario)


def test_a_batch_of_strangers_governance_copies_costs_no_signature(tmp_path, verifications):
    """Finding 1's call: 256 copies of the 32-approval transaction in one SubmitBatch. Since the
    call policy, a certificate submits only what its party wrote, so the rogue is a centre's
    terminal sending governance it authored itself: not an admin, refused before any signature."""
    node = OneNode(tmp_path / "c", verifications)
    raw = _strangers_governance(node, author=read_key_file(node.layout.centres[0].key_file))

    async def scenario(runtime):
        loop = asyncio.get_running_loop()
        with node.client(node.layout.centres[0]) as client:
            stub = client.stub(node.config.listen)
            answer = await loop.run_in_executor(None, lambda: stub.SubmitBatch(
                ledger_pb2.SubmitBatchRequest(txs=[raw] * 256), timeout=5))
            assert {r.code for r in answer.results} == {Code.NOT_AUTHORISED}
            assert all(r.height == 0 and "not recorded" in r.message for r in answer.results)
            assert verifications == []
    node.run(scenario)


# --- the pieces, without a node ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_token_bucket_refills_at_its_rate_up_to_its_burst():
    from node.admission import CallerBudget
    clock = FakeClock()
    budget = CallerBudget(rate=10, burst=20, clock=clock)
    assert budget.take("centre/a", 20) == 0
    assert budget.take("centre/a", 1) == pytest.approx(0.1)       # empty: 1 token in 0.1 s
    assert budget.take("partner/b", 20) == 0                      # another caller has its own
    clock.now += 1.0
    assert budget.take("centre/a", 11) == pytest.approx(0.1)      # 10 back, not 11; nothing taken
    assert budget.take("centre/a", 10) == 0
    clock.now += 1_000
    assert budget.take("centre/a", 21) > 0 and budget.take("centre/a", 20) == 0   # never more than the burst


def test_throttles_are_counted_and_warned_about_at_most_once_per_interval(caplog):
    from node.admission import THROTTLE_WARNING_INTERVAL_S, ThrottleLog
    clock = FakeClock()
    throttles = ThrottleLog(clock)
    with caplog.at_level("WARNING", logger="nanum.admission"):
        for _ in range(5):
            throttles.note("centre/a", "over budget")
        clock.now += THROTTLE_WARNING_INTERVAL_S
        throttles.note("centre/a", "over budget")
        throttles.note("partner/b", "over budget")
    assert throttles.total == 7 and throttles.by_caller == {"centre/a": 6, "partner/b": 1}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3, warnings
    assert warnings[1].startswith("throttled 5 call(s) of centre/a"), warnings


def test_remembered_verdicts_stay_within_their_bound():
    from ledger.tx import Rejection
    from node.admission import Verdicts
    verdicts = Verdicts(capacity=2)
    for i in range(3):
        verdicts.put(bytes([i]) * 32, Rejection(Code.BAD_SIGNATURE, "signature", "no"))
    assert len(verdicts) == 2 and verdicts.get(bytes(32)) is None and verdicts.get(b"\x02" * 32) is not None


def test_a_burst_smaller_than_a_calls_budget_is_a_config_error(tmp_path):
    from node.config import ConfigError
    with pytest.raises(ConfigError, match="max_signature_burst_per_caller.*at least max_batch_signatures"):
        OneNode(tmp_path / "c", max_batch_signatures=100, max_signature_burst_per_caller=99)


def test_one_transaction_sent_by_several_calls_at_once_is_verified_once(tmp_path, verifications):
    node = OneNode(tmp_path / "c", verifications)
    register = _register(node, SigningKey.generate())

    async def scenario(runtime):
        outcomes = await asyncio.gather(*(runtime.submit(register.raw, caller=f"centre/{i}") for i in range(4)))
        assert {o.code for o in outcomes} == {Code.OK} and len({o.height for o in outcomes}) == 1
        assert len(verifications) == 1
    node.run(scenario)


def test_the_cli_says_an_admission_refusal_was_not_recorded():
    from cli.session import refusal_line
    line = refusal_line(Code.NOT_AUTHORISED, bytes(16), None)
    assert "NOT_AUTHORISED (4)" in line and "not recorded" in line, line
    assert "recorded at height 7" in refusal_line(Code.NOT_AUTHORISED, bytes(16), 7)
    assert "not recorded" not in refusal_line(Code.BAD_SIGNATURE, bytes(16), None)
