"""Verifying a catch-up response before it is installed (node.batch.precheck_blocks and
VerifiedTxs.remember), and the runtime's tick loop dropping ticks missed while it was busy."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

from ledger.block import Block, decode_block
from ledger.encoding import encode
from ledger.ledger import Ledger
from node.batch import VerifiedTxs, precheck_blocks
from node.durability import StorageGuard
from node.runtime import NodeRuntime
from tests.consortium import GENESIS_TIME_MS, TestConsortium


def _blocks(tmp_path: Path) -> tuple[TestConsortium, list[bytes], list]:
    consortium = TestConsortium()
    ledger = Ledger.create(tmp_path / "store", consortium.genesis_raw)
    alice, bob = consortium.member("alice"), consortium.member("bob")
    batches = [[consortium.register(alice), consortium.register(bob)],
               [consortium.deposit(alice, 10), consortium.deposit(bob, 20, centre=1)]]
    for height, txs in enumerate(batches, start=1):
        ledger.commit(ledger.build(txs, GENESIS_TIME_MS + height))
    blocks = [ledger.block(height) for height in (1, 2)]
    ledger.close()
    return consortium, blocks, [tx for txs in batches for tx in txs]


def test_prechecked_transactions_are_not_verified_again(tmp_path):
    consortium, blocks, txs = _blocks(tmp_path)
    verified = VerifiedTxs(consortium.chain_id)
    verified.remember(precheck_blocks(blocks, consortium.chain_id))
    assert [verified.check(tx.raw) for tx in txs] == txs
    assert verified.verifications == 0


def test_a_bad_signature_or_block_is_left_for_the_replica_to_reject(tmp_path):
    consortium, blocks, txs = _blocks(tmp_path)
    block = decode_block(blocks[1])
    entries = list(block.entries)
    raw = txs[2].raw
    forged = raw.replace(txs[2].signature, bytes(64))
    entries[0] = entries[0].replace(raw, forged)
    damaged = Block(block.header, tuple(entries)).encode()
    checked = precheck_blocks([blocks[0], damaged, b"\x93not a block", encode([1, 2])], consortium.chain_id)
    verified = VerifiedTxs(consortium.chain_id)
    verified.remember(checked)
    assert len(checked) == 3                      # block 1's two, and the untouched deposit
    assert verified.check(txs[3].raw) == txs[3] and verified.verifications == 0
    try:
        verified.check(forged)
    except Exception as exc:                       # the replica's own check rejects it
        assert "BAD_SIGNATURE" in str(exc)
    else:
        raise AssertionError("a forged signature was remembered as checked")


def test_remembered_transactions_stay_within_the_cache_bound(tmp_path):
    consortium, blocks, txs = _blocks(tmp_path)
    verified = VerifiedTxs(consortium.chain_id, capacity=3)
    verified.remember(precheck_blocks(blocks, consortium.chain_id))
    assert len(verified._checked) == 3
    verified.check(txs[0].raw)                     # the oldest was dropped: checked again
    assert verified.verifications == 1


def test_ticks_missed_while_the_loop_was_busy_are_dropped_not_fired_back_to_back():
    """A loop blocked for 20 tick intervals fires one late tick, then keeps its pace."""
    ticks: list[float] = []
    runtime = NodeRuntime.__new__(NodeRuntime)
    runtime.config = SimpleNamespace(tick_ms=20)
    runtime.replica = SimpleNamespace(tick=lambda: ticks.append(time.monotonic()))
    runtime.after_replica = lambda: None
    runtime._report_untimely = lambda: None
    runtime.storage = StorageGuard(lambda cause: None)

    async def scenario() -> None:
        task = asyncio.get_running_loop().create_task(runtime._tick_loop())
        await asyncio.sleep(0.05)
        time.sleep(0.4)                            # the loop is busy for 20 intervals
        resumed = time.monotonic()
        await asyncio.sleep(0.1)
        task.cancel()
        after = [t for t in ticks if t >= resumed]
        assert 1 <= len(after) <= 7, f"{len(after)} ticks in the 100 ms after a 400 ms stall"

    asyncio.run(scenario())
