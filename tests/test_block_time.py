"""Block time with a node whose clock is wrong, on real processes (docs/ARCHITECTURE.md,
"Block time"): one node of three runs with its clock an hour behind, an hour ahead, or a year
ahead (``clock_offset_ms``), and a short election timeout so that it is the first leader.

What users rely on: the consortium keeps committing; no block is stamped more than
MAX_BLOCK_TIME_SKEW_MS from the real time; a voucher valid for two hours is not expired by the
wrong clock; the nodes say in their logs whose clock they refused.
"""

from __future__ import annotations

import os
import time

import pytest

from ledger.block import decode_block
from ledger.codes import Code
from ledger.keys import SigningKey
from ledger.limits import MAX_BLOCK_TIME_SKEW_MS
from ledger.tx import Deposit, DepositKind, Redeem, RegisterMember, make_tx
from ledger.voucher import sign_voucher
from node.cluster import LocalCluster

HOUR_MS = 3_600_000
SKEWED = 0
COMMIT_TIMEOUT_S = 30


def _now_ms() -> int:
    return int(time.time() * 1000)


def _submit_until_ok(client, raw: bytes):
    """Submits the same bytes until they are decided (idempotent), for at most COMMIT_TIMEOUT_S."""
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    while True:
        try:
            return client.submit(raw)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _certified_blocks(cluster, count: int) -> list:
    """The certified blocks from height 1, once at least ``count`` are (certificates follow the
    block by a round of endorsements)."""
    deadline = time.monotonic() + COMMIT_TIMEOUT_S
    with cluster.client("auditor") as client:
        while True:
            blocks = [decode_block(b.block) for b in client.blocks(1)]
            if len(blocks) >= count or time.monotonic() > deadline:
                assert len(blocks) >= count, f"only {len(blocks)} blocks certified"
                return blocks
            time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("offset_ms", [-HOUR_MS, HOUR_MS, 366 * 24 * HOUR_MS], ids=["-1h", "+1h", "+1y"])
def test_a_node_with_a_wrong_clock_cannot_move_block_time(tmp_path, offset_ms):
    cluster = LocalCluster(tmp_path / "consortium")
    cluster.create()
    cluster.node_env = {i: {"NANUM_ELECTION_TICKS": "30"} for i in range(cluster.nodes)}
    cluster.node_env[SKEWED] = {"NANUM_CLOCK_OFFSET_MS": str(offset_ms), "NANUM_ELECTION_TICKS": "3"}
    started_ms = _now_ms()
    cluster.start()
    try:
        chain_id = cluster.chain_id
        centre, partner = cluster.key("centre"), cluster.key("partner")
        member = SigningKey.from_seed(os.urandom(32))
        with cluster.client("centre", timeout_ms=4_000) as client:
            register = make_tx(centre, chain_id, os.urandom(16), RegisterMember(member.public_key))
            assert _submit_until_ok(client, register.raw).code == Code.OK
            deposit = make_tx(centre, chain_id, os.urandom(16),
                              Deposit(member.party_id, 40, DepositKind.VOLUNTEERING, 120, "VOL-1", 4))
            assert _submit_until_ok(client, deposit.raw).code == Code.OK
        voucher = sign_voucher(member, chain_id, partner.party_id, 25, os.urandom(16), _now_ms() + 2 * HOUR_MS)
        with cluster.client("partner", timeout_ms=4_000) as client:
            redeem = make_tx(partner, chain_id, os.urandom(16), Redeem(voucher, 25, ""))
            assert _submit_until_ok(client, redeem.raw).code == Code.OK, "a two-hour voucher was expired"
        assert cluster.leader() != SKEWED, "the node with the wrong clock still leads"
        finished_ms = _now_ms()
        blocks = _certified_blocks(cluster, 3)
        for block in blocks:
            assert started_ms - MAX_BLOCK_TIME_SKEW_MS <= block.header.time_ms <= finished_ms + MAX_BLOCK_TIME_SKEW_MS, (
                f"block {block.header.height} stamped {block.header.time_ms - finished_ms:+d} ms from now")
        logs = "".join((n.folder / "node.log").read_text() for n in cluster.layout.nodes)
        assert "refused" in logs and "check the clocks" in logs
    finally:
        cluster.stop()
