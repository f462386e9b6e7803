"""Linearizable reads on real processes: a leader paused (SIGSTOP) for longer than an election
timeout, while the others elect a new leader and acknowledge writes, is resumed with a read
already waiting for it. It must never answer from its stale state (docs/ARCHITECTURE.md, "The
node process": ReadIndex). The finding: 2 of 11 such pauses answered an old balance.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import pytest

from ledger.codes import Code
from ledger.keys import SigningKey
from ledger.tx import Deposit, DepositKind, RegisterMember, make_tx
from node.cluster import LocalCluster
from node.wire import ledger_pb2

PAUSES = 4
PAUSE_S = 2.0            # the election timeout is 10-20 ticks of 50 ms
WRITES_PER_PAUSE = 3


def _deposit(cluster, client, member) -> None:
    _submit(client, make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16),
                            Deposit(member.party_id, 1, DepositKind.OTHER, 0, "lin", 0)))


def _submit(client, tx) -> None:
    """The same bytes until decided (resubmitting is safe), for at most 20 s."""
    deadline = time.monotonic() + 20
    while True:
        try:
            assert client.submit(tx.raw).code == Code.OK
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.slow
def test_a_resumed_leader_never_answers_a_linearizable_read_from_stale_state(tmp_path):
    cluster = LocalCluster(tmp_path / "consortium")
    cluster.create()
    cluster.start()
    try:
        member = SigningKey.from_seed(os.urandom(32))
        acknowledged = 0
        with cluster.client("centre", timeout_ms=10_000) as client:
            register = make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16),
                               RegisterMember(member.public_key))
            _submit(client, register)
            for _ in range(PAUSES):
                leader = cluster.leader()
                process = cluster.processes[leader]
                process.send_signal(signal.SIGSTOP)
                try:
                    cluster.leader(exclude=leader, timeout_ms=10_000)
                    for _ in range(WRITES_PER_PAUSE):
                        _deposit(cluster, client, member)
                        acknowledged += 1
                    answers: list = []
                    stub = client.stub(cluster.layout.nodes[leader].address)
                    reader = threading.Thread(target=_read, args=(stub, member.party_id, answers))
                    reader.start()                 # sent while the old leader is still paused
                    time.sleep(0.2)
                finally:
                    process.send_signal(signal.SIGCONT)
                reader.join(timeout=15)
                [answer] = answers
                if isinstance(answer, grpc.RpcError):
                    assert answer.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), answer
                else:
                    assert answer.points == acknowledged, (
                        f"stale read: {answer.points} points, {acknowledged} acknowledged before the read")
    finally:
        cluster.stop()


def _read(stub, member_id: bytes, answers: list) -> None:
    try:
        answers.append(stub.GetBalance(ledger_pb2.GetBalanceRequest(member_id=member_id,
                                                                    read=ledger_pb2.ReadOptions()), timeout=10))
    except grpc.RpcError as error:
        answers.append(error)
