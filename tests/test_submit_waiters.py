"""The leader's submission waiters, driven deterministically (no network, no clock races).

What users rely on: an answer is about exactly the bytes submitted. Two different transactions
with the same id, in flight at once, must not both be told OK: the one the chain records as
``EXISTS_WITH_DIFFERENT_FIELDS`` is answered with that code, the same answer a resubmission of
its bytes gets later (issue 16, defect 1).

A NodeRuntime is built without its server: the real admission (node.admission) over a stand-in
replica that records what is proposed; blocks are built and committed by a real Ledger.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

from ledger.codes import Code
from ledger.ledger import Ledger
from node.admission import Admission
from node.batch import VerifiedTxs
from node.durability import StorageGuard
from node.runtime import NodeRuntime
from tests.consortium import GENESIS_TIME_MS, TestConsortium


class _Replica:
    def __init__(self, chain_id: bytes) -> None:
        self.verified = VerifiedTxs(chain_id)
        self.proposed: list[list] = []
        self.is_leader = True
        self.raft = SimpleNamespace(commit_index=0)

    def admit(self, raw):
        return self.verified.check(raw)

    def propose(self, txs, time_ms):
        self.proposed.append(list(txs))
        return len(self.proposed)


def _runtime(tmp_path) -> tuple[NodeRuntime, TestConsortium]:
    consortium = TestConsortium()
    runtime = NodeRuntime.__new__(NodeRuntime)
    runtime.config = SimpleNamespace(max_pending_submissions=100, max_batch_txs=100, max_batch_wait_ms=5,
                                     submit_timeout_ms=5_000, clock_offset_ms=0)
    runtime.ledger = Ledger.create(tmp_path / "store", consortium.genesis_raw)
    runtime.replica = _Replica(consortium.chain_id)
    runtime.admission = Admission(runtime.ledger, runtime.replica.verified, ThreadPoolExecutor(1),
                                  max_batch_signatures=100, max_signatures_per_second_per_caller=10_000,
                                  max_signature_burst_per_caller=10_000)
    runtime._pending, runtime._waiters, runtime._proposed = [], {}, []
    runtime._flush_handle = None
    runtime.storage = StorageGuard(lambda cause: None)
    runtime.after_replica = lambda: None
    return runtime, consortium


def _commit_proposals(runtime: NodeRuntime, height_time_ms: int) -> None:
    """Turns every proposed batch into the next block, as applying it would, and resolves."""
    for batch in runtime.replica.proposed:
        executed = runtime.ledger.build(batch, height_time_ms)
        runtime.ledger.commit(executed)
        runtime._resolve(executed)
    runtime.replica.proposed.clear()


def test_two_transactions_with_one_id_in_one_batch_get_each_their_own_answer(tmp_path):
    runtime, c = _runtime(tmp_path)
    shared_id = c.tx_id()
    first = c.register(c.member("alice"), tx_id=shared_id)
    second = c.register(c.member("bob"), tx_id=shared_id)
    assert first.raw != second.raw and first.tx_id == second.tx_id

    async def scenario():
        tasks = [asyncio.ensure_future(runtime.submit(tx.raw)) for tx in (first, second)]
        await asyncio.sleep(0.05)                         # the batcher proposed both in one batch
        assert [len(b) for b in runtime.replica.proposed] == [2]
        _commit_proposals(runtime, GENESIS_TIME_MS + 60_000)
        return await asyncio.gather(*tasks)

    try:
        won, lost = asyncio.run(scenario())
        assert won.code == Code.OK and not won.duplicate
        assert lost.code == Code.EXISTS_WITH_DIFFERENT_FIELDS
        # The same bytes, resubmitted, get the same answer.
        again = asyncio.run(runtime.submit(second.raw))
        assert again.code == lost.code
        assert asyncio.run(runtime.submit(first.raw)).code == Code.OK
    finally:
        runtime.ledger.close()


def test_the_loser_proposed_in_a_later_batch_gets_the_code_its_block_records(tmp_path):
    runtime, c = _runtime(tmp_path)
    shared_id = c.tx_id()
    first = c.register(c.member("alice"), tx_id=shared_id)
    second = c.register(c.member("bob"), tx_id=shared_id)

    async def scenario():
        won = asyncio.ensure_future(runtime.submit(first.raw))
        await asyncio.sleep(0.05)                         # first proposed, not yet committed
        lost = asyncio.ensure_future(runtime.submit(second.raw))
        await asyncio.sleep(0.2)                          # proposed after GROUP_COMMIT_MAX_WAIT_MS
        assert [len(b) for b in runtime.replica.proposed] == [1, 1]
        _commit_proposals(runtime, GENESIS_TIME_MS + 60_000)
        return await won, await lost

    try:
        won, lost = asyncio.run(scenario())
        assert won.code == Code.OK
        assert lost.code == Code.EXISTS_WITH_DIFFERENT_FIELDS
    finally:
        runtime.ledger.close()


def test_the_same_bytes_submitted_twice_at_once_are_one_entry_and_one_answer(tmp_path):
    runtime, c = _runtime(tmp_path)
    tx = c.register(c.member("alice"))

    async def scenario():
        tasks = [asyncio.ensure_future(runtime.submit(tx.raw)) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert [len(b) for b in runtime.replica.proposed] == [1]     # _unique: one copy
        _commit_proposals(runtime, GENESIS_TIME_MS + 60_000)
        return await asyncio.gather(*tasks)

    try:
        one, two = asyncio.run(scenario())
        assert one.code == two.code == Code.OK and (one.height, one.leaf_index) == (two.height, two.leaf_index)
    finally:
        runtime.ledger.close()
