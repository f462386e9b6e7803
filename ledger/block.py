"""Blocks: header, wire form, hash, and executing a batch of transactions into a block.

Owns the block format (docs/FORMAT.md "Blocks") and the one function that turns
(chain head, transactions, time) into the next block with all its effects
(``execute_block``), plus its mirror for a block received from elsewhere
(``replay_block``), which re-executes it and names the first thing that differs.

    header = ["nanum/v1/block-header", chain_id, height, prev_hash, time_ms, tx_count,
              tree_size, tree_root, state_root]
    block_hash = SHA-256(encode(header))
    entry = encode([tx_bytes:bin, code:uint])      -- one Merkle leaf per entry
    block = encode([header, [entry:bin, ...]])

Certificates (node signatures over the block hash) travel beside the block, never inside
the hashed header.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Sequence

import msgpack

from ledger.codes import Code
from ledger.commitment import StateCommitment
from ledger.encoding import (
    DecodeError,
    decode,
    decode_prechecked,
    encode,
    expect_array,
    expect_bytes,
    expect_list,
    expect_text,
    expect_uint,
)
from ledger.limits import (
    CHAIN_ID_BYTES,
    HASH_BYTES,
    MAX_BLOCK_BYTES,
    MAX_TIME_MS,
    MAX_TX_BYTES,
    MAX_TXS_PER_BLOCK,
)
from ledger.merkle import Frontier, leaf_hash
from ledger.rules import apply_genesis, apply_tx
from ledger.state import Overlay, StateReader, TxRecord
from ledger.tx import (
    Deposit,
    Genesis,
    Redeem,
    Refund,
    RegisterMember,
    Rejected,
    Rejection,
    Reversal,
    Tx,
    TxKind,
    check_signatures,
    check_tx,
    decode_tx,
)

HEADER_TAG = "nanum/v1/block-header"
HEADER_TX_COUNT, HEADER_TREE_SIZE = 5, 6     # positions in the header's wire array (Header.to_wire)
MAX_CODE = max(Code)
GENESIS_PREV_HASH = bytes(HASH_BYTES)


@dataclass(frozen=True, slots=True)
class Header:
    chain_id: bytes
    height: int
    prev_hash: bytes
    time_ms: int
    tx_count: int
    tree_size: int
    tree_root: bytes
    state_root: bytes

    def to_wire(self) -> list:
        return [HEADER_TAG, self.chain_id, self.height, self.prev_hash, self.time_ms,
                self.tx_count, self.tree_size, self.tree_root, self.state_root]

    def hash(self) -> bytes:
        return hashlib.sha256(encode(self.to_wire())).digest()

    @classmethod
    def from_wire(cls, value: object) -> "Header":
        f = expect_array(value, 9, "header")
        if expect_text(f[0], "header.tag", 64) != HEADER_TAG:
            raise DecodeError(f"header tag must be {HEADER_TAG!r}", "header.tag")
        return cls(
            chain_id=expect_bytes(f[1], "header.chain_id", size=CHAIN_ID_BYTES),
            height=expect_uint(f[2], "header.height"),
            prev_hash=expect_bytes(f[3], "header.prev_hash", size=HASH_BYTES),
            time_ms=expect_uint(f[4], "header.time_ms", 0, MAX_TIME_MS),
            tx_count=expect_uint(f[5], "header.tx_count", 0, MAX_TXS_PER_BLOCK),
            tree_size=expect_uint(f[6], "header.tree_size"),
            tree_root=expect_bytes(f[7], "header.tree_root", size=HASH_BYTES),
            state_root=expect_bytes(f[8], "header.state_root", size=HASH_BYTES),
        )


# An entry is the canonical encoding of [tx bytes, code]. Every transaction of every block is
# wrapped and unwrapped once per node and twice per auditor, so the common shape — a bin8 or
# bin16 of at most MAX_TX_BYTES and a code below 128 (one byte) — is built and read by hand.
assert MAX_TX_BYTES < 0x10000 and MAX_CODE < 0x80, "entries must keep the bin8/bin16, fixint-code shape"
_ENTRY_ARRAY = 0x92          # fixarray of 2
_BIN8, _BIN16 = 0xC4, 0xC5


def encode_entry(tx_raw: bytes, code: Code) -> bytes:
    """``encode([tx_raw, int(code)])`` (tests compare the two)."""
    size = len(tx_raw)
    if size > MAX_TX_BYTES or not 0 <= code <= MAX_CODE:
        return encode([tx_raw, int(code)])
    if size < 0x100:
        header = bytes((_ENTRY_ARRAY, _BIN8, size))
    else:
        header = bytes((_ENTRY_ARRAY, _BIN16, size >> 8, size & 0xFF))
    return header + tx_raw + bytes((code,))


def _split_entry(raw: bytes) -> tuple[bytes, int] | None:
    """(tx bytes, code) if ``raw`` has the common shape exactly and canonically (then the
    general decoder gives the same answer); None for anything else, which that decoder judges."""
    size = len(raw)
    if size < 4 or raw[0] != _ENTRY_ARRAY or raw[-1] > MAX_CODE:
        return None
    if raw[1] == _BIN8:
        start, length = 3, raw[2]
    elif raw[1] == _BIN16 and size >= 5:
        start, length = 4, (raw[2] << 8) | raw[3]
        if length < 0x100:
            return None                          # not the shortest form
    else:
        return None
    if length > MAX_TX_BYTES or start + length + 1 != size:
        return None
    return raw[start:start + length], raw[-1]


def decode_entry(raw: bytes, prechecked: bool = False) -> tuple[bytes, int]:
    """``prechecked``: these bytes were decoded canonically elsewhere (an auditor's worker)."""
    if type(raw) is bytes and (split := _split_entry(raw)) is not None:
        return split
    value = decode_prechecked(raw) if prechecked else decode(raw, MAX_TX_BYTES + 16)
    fields = expect_array(value, 2, "entry")
    return (expect_bytes(fields[0], "entry.tx", max_size=MAX_TX_BYTES),
            expect_uint(fields[1], "entry.code", 0, MAX_CODE))


@dataclass(frozen=True, slots=True)
class Block:
    header: Header
    entries: tuple[bytes, ...]     # encoded entries, each one Merkle leaf

    def encode(self) -> bytes:
        return encode([self.header.to_wire(), list(self.entries)])

    @property
    def hash(self) -> bytes:
        return self.header.hash()


HEADER_PREFIX_BYTES = 512     # holds a header's tag, chain id and height (both bounded far below)


def claimed_height(raw: bytes) -> int | None:
    """The height an encoded block's header claims, read from its first bytes without checking
    anything else (None if they do not hold one): for deciding what to ask a peer for next,
    never for accepting the block."""
    unpacker = msgpack.Unpacker(raw=False)
    unpacker.feed(raw[:HEADER_PREFIX_BYTES])
    try:
        if unpacker.read_array_header() != 2 or unpacker.read_array_header() != 9:
            return None
        unpacker.skip()                       # tag
        unpacker.skip()                       # chain id
        height = unpacker.unpack()
    except (ValueError, TypeError, msgpack.OutOfData, msgpack.FormatError, msgpack.StackError):
        return None
    return height if type(height) is int and 0 <= height < 2 ** 64 else None


def decode_block(raw: bytes, prechecked: bool = False) -> Block:
    """``prechecked``: these bytes were decoded canonically elsewhere (an auditor's worker);
    the schema is checked either way."""
    if prechecked and len(raw) <= MAX_BLOCK_BYTES:
        value = decode_prechecked(raw)
    else:
        value = decode(raw, MAX_BLOCK_BYTES)
    fields = expect_array(value, 2, "block")
    header = Header.from_wire(fields[0])
    entries = expect_list(fields[1], MAX_TXS_PER_BLOCK, "entries")
    for i, entry in enumerate(entries):
        expect_bytes(entry, f"entries[{i}]", max_size=MAX_TX_BYTES + 16)
    return Block(header, tuple(entries))


@dataclass(slots=True)
class ChainHead:
    """What extending the chain needs: the last header, the Merkle frontier, the state vector."""

    header: Header
    frontier: Frontier
    commitment: StateCommitment

    @property
    def hash(self) -> bytes:
        return self.header.hash()

    @property
    def chain_id(self) -> bytes:
        return self.header.chain_id


@dataclass(slots=True)
class ExecutedBlock:
    """A block with everything its application changes; the store persists all of it at once."""

    block: Block
    head: ChainHead                                  # the head after this block
    state: Overlay                                   # state changes and transaction records
    merkle_nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    codes: list[Code] = field(default_factory=list)
    accounts: list[tuple[bytes, int, int]] = field(default_factory=list)   # (id, leaf, index)
    txs: list[Tx] = field(default_factory=list)                             # in entry order


def execute_block(head: ChainHead, txs: Sequence[Tx], time_ms: int, base: StateReader,
                  index_history: bool = True) -> ExecutedBlock:
    """Builds the next block from statically checked transactions. Every transaction gets an
    entry with its result code. The block time never goes backwards: it is clamped to the
    previous block's time. ``index_history=False`` leaves ``accounts`` empty: a verifier that
    stores nothing does not need the history index."""
    assert 0 < len(txs) <= MAX_TXS_PER_BLOCK, "a block holds 1..MAX_TXS_PER_BLOCK transactions"
    time_ms = min(max(time_ms, head.header.time_ms), MAX_TIME_MS)
    height = head.header.height + 1
    overlay = Overlay(base)
    frontier = head.frontier.copy()
    nodes: list[tuple[int, int, bytes]] = []
    entries, codes = [], []
    accounts: list[tuple[bytes, int, int]] = []
    for index, tx in enumerate(txs):
        code = apply_tx(tx, overlay, time_ms)
        entry = encode_entry(tx.raw, code)
        if code not in (Code.EXISTS, Code.EXISTS_WITH_DIFFERENT_FIELDS):
            overlay.put_tx_record(tx.tx_id, TxRecord(height, index, frontier.size, tx.body_hash(), code))
            if index_history:
                accounts.extend((party, frontier.size, index)
                                for party in parties_of(tx, overlay, took_effect=code == Code.OK))
        nodes.extend(frontier.append(leaf_hash(entry)))
        entries.append(entry)
        codes.append(code)
    commitment = head.commitment.copy()
    overlay.apply_to(commitment)
    header = Header(head.chain_id, height, head.hash, time_ms, len(txs), frontier.size,
                    frontier.root(), commitment.root())
    return ExecutedBlock(Block(header, tuple(entries)), ChainHead(header, frontier, commitment),
                         overlay, nodes, codes, accounts, list(txs))


def parties_of(tx: Tx, state: Overlay, took_effect: bool = True) -> set[bytes]:
    """Every id whose history shows this transaction: its author, and the member it touches.
    A refused transaction (``took_effect`` false: any code but OK) is its author's alone: it
    changed nothing of the member it names, and anyone may name any member, so a member's
    history, and every statement replayed from it, holds only what took effect (FORMAT.md §12)."""
    parties = {tx.author_id}
    if not took_effect:
        return parties
    payload = tx.payload
    if isinstance(payload, (RegisterMember, Deposit)):
        parties.add(payload.member_id)
    elif isinstance(payload, Redeem):
        parties.add(payload.voucher.member_id)
    elif isinstance(payload, Refund):
        redemption = state.redemption(payload.redemption_id)
        if redemption is not None:
            parties.add(redemption.member_id)
    elif isinstance(payload, Reversal):
        deposit = state.deposit(payload.deposit_id)
        if deposit is not None:
            parties.add(deposit.member_id)
    return parties


class BlockError(Exception):
    """A block that does not verify. ``height``, ``index`` (transaction position, or None for
    the header) and ``field`` name the first bad place; the message says why."""

    def __init__(self, height: int, index: int | None, field: str, reason: str) -> None:
        where = f"block {height}" + (f", transaction {index}" if index is not None else "")
        super().__init__(f"{where}, {field}: {reason}")
        self.height, self.index, self.field, self.reason = height, index, field, reason


CheckFn = Callable[[bytes, bytes], Tx]


def replay_block(head: ChainHead, block: Block, base: StateReader, check: CheckFn = check_tx,
                 index_history: bool = True, entries_prechecked: bool = False) -> ExecutedBlock:
    """Re-executes a received block on top of ``head`` and compares every recorded result and
    header field. ``check`` is the static check (it may consult a cache of signatures already
    verified on this node). ``entries_prechecked``: the entries were decoded canonically
    elsewhere (an auditor's workers). Raises BlockError at the first difference."""
    header = block.header
    height = head.header.height + 1   # problems are located where the block stands in the chain
    _check_header_link(head, header)
    txs = [_checked_entry_tx(head, height, index, entry, check, entries_prechecked)
           for index, entry in enumerate(block.entries)]
    if not txs:
        raise BlockError(height, None, "entries", "a block holds at least one transaction")
    executed = execute_block(head, txs, header.time_ms, base, index_history)
    for index, (mine, theirs) in enumerate(zip(executed.block.entries, block.entries)):
        if mine != theirs:
            recorded = decode_entry(theirs)[1]
            raise BlockError(height, index, "code",
                             f"recorded result {recorded}, the rules give {int(executed.codes[index])}")
    _compare_header(executed.block.header, header, height)
    return executed


def _check_header_link(head: ChainHead, header: Header) -> None:
    h = head.header.height + 1
    if header.chain_id != head.chain_id:
        raise BlockError(h, None, "header.chain_id", "not this chain's id")
    if header.height != h:
        raise BlockError(h, None, "header.height", f"says {header.height}; the block at this place is {h}")
    if header.prev_hash != head.hash:
        raise BlockError(h, None, "header.prev_hash", "does not match the hash of the previous block")
    if header.time_ms < head.header.time_ms:
        raise BlockError(h, None, "header.time_ms", "earlier than the previous block's time")


def _checked_entry_tx(head: ChainHead, height: int, index: int, entry: bytes, check: CheckFn,
                      prechecked: bool) -> Tx:
    try:
        tx_raw, _ = decode_entry(entry, prechecked)
    except DecodeError as exc:
        raise BlockError(height, index, exc.field or "entry", str(exc)) from None
    try:
        return check(tx_raw, head.chain_id)
    except Rejected as exc:
        rejection = exc.rejection
        raise BlockError(height, index, rejection.field or "tx",
                         f"{rejection.code.name}: {rejection.detail}") from None


def _compare_header(mine: Header, theirs: Header, height: int) -> None:
    for name in ("tx_count", "tree_size", "tree_root", "state_root"):
        if getattr(mine, name) != getattr(theirs, name):
            raise BlockError(height, None, f"header.{name}",
                             "does not match the value recomputed from the transactions")


# --- genesis --------------------------------------------------------------------------------


def genesis_block(genesis_tx: Tx, base: StateReader) -> ExecutedBlock:
    """Checks the genesis transaction and builds block 0 from it."""
    check_genesis_tx(genesis_tx)
    genesis: Genesis = genesis_tx.payload
    overlay = Overlay(base)
    apply_genesis(genesis, overlay)
    overlay.put_tx_record(genesis_tx.tx_id, TxRecord(0, 0, 0, genesis_tx.body_hash(), Code.OK))
    frontier = Frontier.empty()
    entry = encode_entry(genesis_tx.raw, Code.OK)
    nodes = frontier.append(leaf_hash(entry))
    commitment = StateCommitment()
    overlay.apply_to(commitment)
    header = Header(genesis.chain_id(), 0, GENESIS_PREV_HASH, genesis.created_ms, 1, 1,
                    frontier.root(), commitment.root())
    return ExecutedBlock(Block(header, (entry,)), ChainHead(header, frontier, commitment),
                         overlay, nodes, [Code.OK], [(genesis_tx.author_id, 0, 0)], [genesis_tx])


def check_genesis_tx(tx: Tx) -> None:
    """Raises Rejected unless ``tx`` is a genesis transaction for its own chain id, signed by
    at least ``threshold`` of the admins it names."""
    if tx.kind != TxKind.GENESIS:
        raise Rejected(Rejection(Code.MALFORMED, "kind", "block 0 holds the genesis transaction"))
    genesis: Genesis = tx.payload
    chain_id = genesis.chain_id()
    if tx.tx_id != chain_id:
        raise Rejected(Rejection(Code.MALFORMED, "tx_id", "the genesis transaction id is the chain id"))
    check_signatures(tx, chain_id)
    admins = {a.public_key for a in genesis.admins}
    if any(signer not in admins for signer in tx.signers()):
        raise Rejected(Rejection(Code.NOT_AUTHORISED, "approvals", "a genesis signer is not a named admin"))
    if len(tx.signers()) < genesis.threshold:
        raise Rejected(Rejection(Code.INSUFFICIENT_APPROVALS, "approvals",
                                 f"genesis needs {genesis.threshold} admin signatures"))


def decode_genesis_block(raw: bytes, base: StateReader) -> ExecutedBlock:
    """Verifies an encoded block 0 completely and returns it executed; BlockError if not."""
    try:
        block = decode_block(raw)
    except DecodeError as exc:
        raise BlockError(0, None, exc.field or "block", str(exc)) from None
    if len(block.entries) != 1:
        raise BlockError(0, None, "entries", "block 0 holds exactly the genesis transaction")
    try:
        tx_raw, code = decode_entry(block.entries[0])
        tx = decode_tx(tx_raw)
        executed = genesis_block(tx, base)
    except DecodeError as exc:
        raise BlockError(0, 0, exc.field or "entry", str(exc)) from None
    except Rejected as exc:
        raise BlockError(0, 0, exc.rejection.field, str(exc.rejection)) from None
    if executed.block.encode() != raw:
        mine, theirs = executed.block.header, block.header
        for name in ("chain_id", "height", "prev_hash", "time_ms", "tx_count", "tree_size",
                     "tree_root", "state_root"):
            if getattr(mine, name) != getattr(theirs, name):
                raise BlockError(0, None, f"header.{name}", "does not match the genesis transaction")
        raise BlockError(0, 0, "code", "the genesis entry must record code 0")
    return executed
