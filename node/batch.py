"""Batches: what the consensus log replicates, and the once-per-node signature check.

A batch is one NORMAL consensus entry: ``encode([time_ms, [tx_bytes, ...]])``. When the
entry is committed, every node turns it into the next block deterministically
(``ledger.block.execute_block``), so blocks need no separate agreement.

``VerifiedTxs`` remembers transactions this node has already statically checked (at
admission on the leader, at append validation on followers), so a transaction's signatures
are verified once per node, never again at apply time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from ledger.block import decode_block, decode_entry
from ledger.encoding import DecodeError, decode, encode, expect_array, expect_bytes, expect_list, expect_uint
from ledger.limits import MAX_BLOCK_BYTES, MAX_TIME_MS, MAX_TX_BYTES, MAX_TXS_PER_BLOCK
from ledger.tx import Rejected, Tx, check_tx

MAX_VERIFIED_CACHE = 200_000


def encode_batch(time_ms: int, raws: list[bytes]) -> bytes:
    assert 0 < len(raws) <= MAX_TXS_PER_BLOCK
    return encode([time_ms, raws])


def decode_batch(data: bytes) -> tuple[int, list[bytes]]:
    """Raises DecodeError for anything that is not a well-formed batch."""
    fields = expect_array(decode(data, MAX_BLOCK_BYTES), 2, "batch")
    time_ms = expect_uint(fields[0], "batch.time_ms", 0, MAX_TIME_MS)
    raws = expect_list(fields[1], MAX_TXS_PER_BLOCK, "batch.txs")
    if not raws:
        raise DecodeError("a batch holds at least one transaction", "batch.txs")
    for i, raw in enumerate(raws):
        expect_bytes(raw, f"batch.txs[{i}]", max_size=MAX_TX_BYTES)
    return time_ms, raws


class VerifiedTxs:
    """A bounded memo of statically checked transactions, keyed by the hash of their bytes."""

    def __init__(self, chain_id: bytes, capacity: int = MAX_VERIFIED_CACHE) -> None:
        self._chain_id = chain_id
        self._capacity = capacity
        self._checked: OrderedDict[bytes, Tx] = OrderedDict()
        self.verifications = 0     # how many static checks actually ran (for tests and benchmarks)

    def check(self, raw: bytes, chain_id: bytes | None = None) -> Tx:
        """``check_tx`` once per distinct transaction; raises ledger.tx.Rejected."""
        assert chain_id is None or chain_id == self._chain_id
        key = hashlib.sha256(raw).digest()
        tx = self._checked.get(key)
        if tx is not None:
            self._checked.move_to_end(key)
            return tx
        self.verifications += 1
        tx = check_tx(raw, self._chain_id)
        self._checked[key] = tx
        if len(self._checked) > self._capacity:
            self._checked.popitem(last=False)
        return tx

    def get(self, key: bytes) -> Tx | None:
        """The transaction whose bytes hash to ``key`` (SHA-256) if it passed the static check
        here before, without checking anything (admission: node.admission)."""
        tx = self._checked.get(key)
        if tx is not None:
            self._checked.move_to_end(key)
        return tx

    def remember(self, checked: list[tuple[bytes, Tx]]) -> None:
        """Records transactions that passed ``check_tx`` elsewhere (``precheck`` in worker
        threads), given as (key, tx) with ``key`` from ``precheck``."""
        for key, tx in checked:
            self._checked[key] = tx
            self._checked.move_to_end(key)
        while len(self._checked) > self._capacity:
            self._checked.popitem(last=False)

    def batch_valid(self, data: bytes) -> bool:
        """The consensus entry validator: a batch every honest node accepts."""
        try:
            _, raws = decode_batch(data)
            for raw in raws:
                self.check(raw)
        except (DecodeError, Rejected):
            return False
        return True


def precheck_blocks(blocks: list[bytes], chain_id: bytes) -> list[tuple[bytes, Tx]]:
    """``check_tx`` of every transaction in ``blocks`` (encoded blocks, as a catch-up response
    carries them), for ``VerifiedTxs.remember``: (key, tx) of those that pass. Anything that
    does not decode or pass is skipped: the replica checks every block in full when it installs
    it, and rejects it then. Safe to run in threads (no shared mutable state), and Ed25519
    verification releases the GIL, so a thread per core verifies in parallel."""
    passed = []
    for raw_block in blocks:
        try:
            entries = decode_block(raw_block).entries
        except DecodeError:
            continue
        for entry in entries:
            try:
                raw = decode_entry(entry)[0]
                passed.append((hashlib.sha256(raw).digest(), check_tx(raw, chain_id)))
            except (DecodeError, Rejected):
                continue
    return passed
