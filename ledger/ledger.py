"""A node's ledger: the LMDB store with its chain head, and the operations a node needs.

Owns the sequence "execute against a consistent snapshot, then commit in one durable write"
and the queries answered from the store (balances, transactions with inclusion proofs,
history, checkpoints). It is single-writer: one Ledger object per store, driven by one
thread (the node runtime serialises writes).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ledger import merkle
from ledger.block import (
    BlockError,
    parties_of,
    ChainHead,
    ExecutedBlock,
    decode_block,
    decode_entry,
    decode_genesis_block,
    execute_block,
    replay_block,
)
from ledger.codes import Code
from ledger.encoding import DecodeError, decode
from ledger.limits import MAX_BLOCK_BYTES, PARTY_ID_BYTES, TX_ID_BYTES
from ledger.state import MemoryState, Member, Overlay, Party, RedemptionRecord, TxRecord
from ledger.memory_store import MemoryStore
from ledger.store import DEFAULT_MAP_SIZE_BYTES, Store, StoreError
from ledger.tx import Genesis, Tx, check_tx, decode_tx


@dataclass(frozen=True, slots=True)
class TxView:
    """A recorded transaction, its result, and its inclusion proof at the current tree size."""

    tx: Tx
    record: TxRecord
    entry: bytes
    proof: list[bytes]
    tree_size: int
    tree_root: bytes

    @property
    def code(self) -> Code:
        return Code(self.record.code)


MAX_HISTORY_PAGE = 500
# The bytes of stored blocks (decoded size) one history page may decode. Each block touched is
# decoded once per page, and a page stops early, shorter and with ``more`` set, before a block
# that would take it past this; the first block is always read, so every page makes progress.
# A reader asking for 500 items spread over 500 large blocks thus costs at most this much work.
MAX_HISTORY_READ_BYTES = 16 * 1024 * 1024
assert MAX_HISTORY_READ_BYTES >= MAX_BLOCK_BYTES, "a page must be able to read any one block"


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of a party's history: (leaf index, height, transaction, result) oldest first,
    and whether more follow (``more`` is known without reading any block beyond the page)."""

    items: list[tuple[int, int, Tx, Code]]
    more: bool
    read_bytes: int          # bytes of blocks decoded to answer it


def _check_size(value: bytes, size: int, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        raise ValueError(f"{what} has {size} bytes")


class Ledger:
    def __init__(self, store: "Store | MemoryStore") -> None:
        head = store.head()
        if head is None:
            raise StoreError(f"the store at {store.path} has no genesis block; create it first")
        self.store = store
        self.head: ChainHead = head
        with store.reader() as r:
            genesis_tx = decode_tx(decode(decode_block(r.block(0)).entries[0])[0])
        self.genesis: Genesis = genesis_tx.payload

    @classmethod
    def create(cls, path: Path, genesis_block: bytes, map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES) -> "Ledger":
        """Creates a store from an encoded, fully verified block 0. Refuses a non-empty store."""
        executed = decode_genesis_block(genesis_block, MemoryState())
        store = Store(path, map_size_bytes)
        try:
            if store.head() is not None:
                raise StoreError(f"the store at {path} already holds a chain")
            store.commit_block(executed)
        except BaseException:
            store.close()
            raise
        return cls(store)

    @classmethod
    def in_memory(cls, genesis_block: bytes, name: str = "memory") -> "Ledger":
        """A ledger on a MemoryStore, for the simulator: same rules, no disk."""
        store = MemoryStore(name)
        store.commit_block(decode_genesis_block(genesis_block, MemoryState()))
        return cls(store)

    @classmethod
    def open(cls, path: Path, map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES) -> "Ledger":
        return cls(Store(path, map_size_bytes))

    def close(self) -> None:
        self.store.close()

    @property
    def chain_id(self) -> bytes:
        return self.head.chain_id

    @property
    def height(self) -> int:
        return self.head.header.height

    # --- writing -----------------------------------------------------------------------------

    def check(self, raw: bytes) -> Tx:
        """The static check against this chain; raises ledger.tx.Rejected."""
        return check_tx(raw, self.chain_id)

    def build(self, txs: Sequence[Tx], time_ms: int) -> ExecutedBlock:
        """Executes statically checked transactions into the next block, without storing it."""
        with self.store.reader() as base:
            return execute_block(self.head, txs, time_ms, base)

    def replay(self, block_raw: bytes, check=check_tx) -> ExecutedBlock:
        """Verifies a block received from elsewhere against the head; raises BlockError."""
        try:
            block = decode_block(block_raw)
        except DecodeError as exc:
            raise BlockError(self.height + 1, None, exc.field or "block", str(exc)) from None
        with self.store.reader() as base:
            return replay_block(self.head, block, base, check)

    def commit(self, executed: ExecutedBlock, certificate: bytes | None = None,
               meta: dict[bytes, bytes] | None = None, certificates: dict[int, bytes] | None = None) -> None:
        """Stores the block durably (fsync) and advances the head. Only then may anyone be told.
        ``meta`` and ``certificates`` of earlier heights are written in the same store
        transaction (see Store.commit_block)."""
        if executed.block.header.prev_hash != self.head.hash:
            raise StoreError("the block was built on a head that is no longer current")
        self.store.commit_block(executed, certificate, meta, certificates)
        self.head = executed.head

    # --- reading -----------------------------------------------------------------------------

    def balance(self, member_id: bytes) -> tuple[int, list[tuple[bytes, int]]]:
        """(total points, [(centre id, points), ...]) of a member at the head."""
        _check_size(member_id, PARTY_ID_BYTES, "a member id")
        with self.store.reader() as r:
            buckets = Overlay(r).buckets(member_id)
        return sum(p for _, p in buckets), buckets

    def member_exists(self, member_id: bytes) -> bool:
        _check_size(member_id, PARTY_ID_BYTES, "a member id")
        with self.store.reader() as r:
            return Overlay(r).member(member_id) is not None

    def member(self, member_id: bytes) -> Member | None:
        """The member's record (key and registering centre) at the head, or None."""
        _check_size(member_id, PARTY_ID_BYTES, "a member id")
        with self.store.reader() as r:
            return Overlay(r).member(member_id)

    def party(self, party_id: bytes) -> Party | None:
        """The consortium party (admin, centre, partner or node) with this id at the head, active
        or retired, or None."""
        _check_size(party_id, PARTY_ID_BYTES, "a party id")
        with self.store.reader() as r:
            return Overlay(r).party(party_id)

    def parties(self, tx: Tx) -> set[bytes]:
        """Every id ``tx`` concerns (its author and the member it names or touches), whatever its
        result: who may read it (node.read_access). Its history index lists a refused ``tx``
        under its author only (block.parties_of). Asked at the head: the redemption and deposit
        records a refund or reversal names never go away."""
        with self.store.reader() as r:
            return parties_of(tx, Overlay(r))

    def redemption(self, tx_id: bytes) -> RedemptionRecord | None:
        """An accepted redemption's record: who, how much, refunded so far, the centres drawn."""
        _check_size(tx_id, TX_ID_BYTES, "a transaction id")
        with self.store.reader() as r:
            return Overlay(r).redemption(tx_id)

    def recorded(self, tx_id: bytes) -> tuple[TxRecord, bytes] | None:
        """The record of ``tx_id`` and the exact bytes recorded under it, or None: enough to
        answer a resubmission without checking its signatures (no inclusion proof)."""
        _check_size(tx_id, TX_ID_BYTES, "a transaction id")
        with self.store.reader() as r:
            found = _recorded_entry(r, tx_id)
        return None if found is None else (found[0], decode_entry(found[1])[0])

    def tx(self, tx_id: bytes) -> TxView | None:
        _check_size(tx_id, TX_ID_BYTES, "a transaction id")
        with self.store.reader() as r:
            found = _recorded_entry(r, tx_id)
            if found is None:
                return None
            record, entry = found
            size = self.head.header.tree_size
            proof = merkle.inclusion_proof(record.leaf_index, size, r.merkle_node)
        return TxView(decode_tx(decode(entry)[0]), record, entry, proof, size, self.head.header.tree_root)

    def history(self, party_id: bytes, after_leaf: int = -1, limit: int = 100) -> list[tuple[int, int, Tx, Code]]:
        """(leaf index, height, transaction, result) touching a party or member, oldest first:
        exactly ``limit`` items if so many follow ``after_leaf``, whatever the blocks weigh.
        A server answering clients uses ``history_page``, which bounds the work."""
        return self.history_page(party_id, after_leaf, limit, max_read_bytes=None).items

    def history_page(self, party_id: bytes, after_leaf: int = -1, limit: int = 100,
                     max_read_bytes: int | None = MAX_HISTORY_READ_BYTES) -> HistoryPage:
        """Up to ``limit`` items of a party's or member's history after ``after_leaf``, oldest
        first, decoding each block they are in once, and no more than ``max_read_bytes`` of
        blocks (see MAX_HISTORY_READ_BYTES; None: no bound). StoreError if the store is damaged."""
        _check_size(party_id, PARTY_ID_BYTES, "a party id")
        if not 0 < limit <= MAX_HISTORY_PAGE:
            raise ValueError(f"a history page holds 1..{MAX_HISTORY_PAGE} items")
        with self.store.reader() as r:
            located = r.account_entries(party_id, after_leaf, limit + 1)   # one more: is there more?
            more = len(located) > limit
            items: list[tuple[int, int, Tx, Code]] = []
            read_bytes, height_read, entries = 0, -1, []
            for leaf, height, index in located[:limit]:
                if height != height_read:      # leaves ascend, so a block's items are consecutive
                    raw = r.block(height)
                    if raw is None:
                        raise StoreError(f"the history of {party_id.hex()} names block {height}, which is not "
                                         "stored; run `nanum node check --full`")
                    if items and max_read_bytes is not None and read_bytes + len(raw) > max_read_bytes:
                        more = True
                        break
                    read_bytes += len(raw)
                    entries, height_read = decode_block(raw).entries, height
                if not 0 <= index < len(entries):
                    raise StoreError(f"the history of {party_id.hex()} names entry {index} of block {height}, "
                                     "which has no such entry; run `nanum node check --full`")
                tx_raw, code = decode(entries[index])
                items.append((leaf, height, decode_tx(tx_raw), Code(code)))
        return HistoryPage(items, more, read_bytes)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof between two tree sizes, both at most the current size."""
        if not 0 < size1 <= size2 <= self.head.header.tree_size:
            raise ValueError(f"sizes must satisfy 0 < size1 <= size2 <= {self.head.header.tree_size}")
        with self.store.reader() as r:
            return merkle.consistency_proof(size1, size2, r.merkle_node)

    def block(self, height: int) -> bytes | None:
        return self.store.block(height)


def _recorded_entry(reader, tx_id: bytes) -> tuple[TxRecord, bytes] | None:
    """The record of ``tx_id`` and its block entry's bytes, read in ``reader``'s transaction."""
    record = reader.tx_record(tx_id)
    if record is None:
        return None
    return record, reader.decoded_block(record.height).entries[record.index]
