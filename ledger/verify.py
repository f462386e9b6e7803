"""The verification engine: re-verify a whole chain from its genesis, trusting nothing.

Given the encoded genesis block and the encoded blocks after it, ``verify_chain`` checks
every hash link, every signature, replays every rule, recomputes the Merkle tree and the
state commitment, and checks conservation of points per centre. It stops at the first
problem and reports its exact place (height, transaction index, field) and why.

It holds the whole state in memory (``MemoryState``), so it needs no store and can run on an
export. The auditor CLI and a node's start-up check are built on it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional, Union

from ledger.block import BlockError, ChainHead, decode_block, decode_genesis_block, replay_block
from ledger.encoding import DecodeError, decode
from ledger.certificate import Certificate, CertificateError
from ledger.state import (
    BUCKET,
    DEPOSIT,
    MEMBER,
    REDEMPTION,
    MemoryState,
    Overlay,
    RedemptionRecord,
    StateReader,
)
from ledger.store import Store, StoreReader
from ledger.tx import Role, check_tx


@dataclass(frozen=True, slots=True)
class Problem:
    height: int
    index: int | None      # transaction position in the block; None for the block itself
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"block {self.height}" + (f", transaction {self.index}" if self.index is not None else "")
        return f"{where}, {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class CentreTotals:
    deposited: int = 0
    reversed: int = 0
    redeemed: int = 0
    refunded: int = 0
    outstanding: int = 0     # sum of members' buckets for this centre

    @property
    def balanced(self) -> bool:
        return self.deposited - self.redeemed + self.refunded - self.reversed == self.outstanding


@dataclass(slots=True)
class Report:
    ok: bool = True
    problem: Problem | None = None
    blocks: int = 0
    transactions: int = 0
    members: int = 0
    head_hash: bytes = b""
    tree_size: int = 0
    tree_root: bytes = b""
    centres: dict[bytes, CentreTotals] = field(default_factory=dict)
    redeemed_by_partner: dict[bytes, int] = field(default_factory=dict)
    state_vector: bytes = b""

    def fail(self, problem: Problem) -> "Report":
        self.ok = False
        self.problem = problem
        return self


BlockInput = Union[bytes, tuple[bytes, Optional[bytes]]]


def verify_chain(genesis_raw: bytes, blocks: Iterable[BlockInput], require_certificates: bool = False) -> Report:
    """Verifies block 0 and then each block in order; see the module docstring.

    Each item of ``blocks`` is an encoded block, or a pair (encoded block, encoded certificate
    or None). A certificate given is checked against the node set in force at its height; with
    ``require_certificates`` a missing one is a problem too."""
    return _replay(genesis_raw, blocks, require_certificates)[0]


def _replay(genesis_raw: bytes, blocks: Iterable[BlockInput],
            require_certificates: bool = False) -> tuple[Report, MemoryState]:
    report = Report()
    state = MemoryState()
    try:
        executed = decode_genesis_block(genesis_raw, state)
    except BlockError as exc:
        return report.fail(Problem(0, exc.index, exc.field, exc.reason)), state
    state.absorb(executed.state)
    head = executed.head
    _count(report, head, 1)
    expected = 1
    for item in blocks:
        raw, certificate = item if isinstance(item, tuple) else (item, None)
        try:
            node_set = node_set_in_force(state)
            head = _verify_next(head, raw, state, expected)
            if certificate is not None or require_certificates:
                _check_certificate(head, certificate, node_set)
        except BlockError as exc:
            return report.fail(Problem(exc.height, exc.index, exc.field, exc.reason)), state
        _count(report, head, head.header.tx_count)
        expected += 1
    report.state_vector = head.commitment.to_bytes()
    _summarise(report, state)
    _check_conservation(report, head)
    return report, state


def verify_store(store: Store) -> Report:
    """Verifies a node's store: replays its blocks from its own block 0 (as ``verify_chain``),
    then compares what the replay produced with what the store holds — every state entry,
    every transaction record, the state vector and the head. A store whose chain verifies
    but whose state was changed underneath is caught here."""
    with store.reader() as r:
        head = r.head()
        if head is None:
            return Report().fail(Problem(0, None, "store", "the store holds no chain"))
        genesis = r.block(0)
        blocks = (r.block(h) or b"" for h in range(1, head.header.height + 1))
        report, state = _replay(genesis, blocks)
        if report.ok:
            _compare_store(report, r, state, head)
    return report


def _compare_store(report: Report, r: StoreReader, state: MemoryState, head: ChainHead) -> None:
    height = head.header.height
    stored = dict(r.state_items())
    for key in sorted(set(stored) | set(state.entries)):
        if stored.get(key) != state.entries.get(key):
            report.fail(Problem(height, None, f"state[{_TABLES.get(key[:1], '?')}:{key[1:].hex()}]",
                                "the stored value differs from the value the blocks produce"))
            return
    records = dict(r.tx_records())
    for tx_id in sorted(set(records) | set(state.records)):
        if records.get(tx_id) != state.records.get(tx_id):
            report.fail(Problem(height, None, f"txs[{tx_id.hex()}]",
                                "the stored transaction record differs from the blocks"))
            return
    if head.hash != report.head_hash:
        report.fail(Problem(height, None, "meta.head", "the stored head is not the last block's header"))
    elif r.state_vector() != report.state_vector:
        report.fail(Problem(height, None, "meta.state_vector", "the stored state vector differs"))


_TABLES = {b"\x01": "party", b"\x02": "member", b"\x03": "bucket", b"\x04": "voucher",
           b"\x05": "deposit", b"\x06": "redemption", b"\x07": "consortium"}


def node_set_in_force(state: StateReader) -> frozenset[bytes]:
    """Public keys of the active nodes: the set whose majority certifies the next block."""
    return frozenset(party.public_key for _, party in Overlay(state).active_parties(Role.NODE))


def _check_certificate(head: ChainHead, raw: bytes | None, node_set: frozenset[bytes]) -> None:
    height = head.header.height
    if raw is None:
        raise BlockError(height, None, "certificate", "the block has no commit certificate")
    try:
        Certificate.decode(raw).verify(head.header, node_set)
    except DecodeError as exc:
        raise BlockError(height, None, exc.field or "certificate", str(exc)) from None
    except CertificateError as exc:
        raise BlockError(height, None, exc.field, exc.reason) from None


def _verify_next(head: ChainHead, raw: bytes, state: MemoryState, expected: int) -> ChainHead:
    try:
        block = decode_block(raw)
    except DecodeError as exc:
        raise BlockError(expected, None, exc.field or "block", str(exc)) from None
    executed = replay_block(head, block, state, check_tx)
    state.absorb(executed.state)
    return executed.head


def _count(report: Report, head: ChainHead, txs: int) -> None:
    report.blocks += 1
    report.transactions += txs
    report.head_hash = head.hash
    report.tree_size = head.header.tree_size
    report.tree_root = head.header.tree_root


def _summarise(report: Report, state: MemoryState) -> None:
    totals: dict[bytes, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_partner: dict[bytes, int] = defaultdict(int)
    for key, value in state.entries.items():
        table = key[:1]
        if table == MEMBER:
            report.members += 1
        elif table == BUCKET:
            totals[key[21:41]]["outstanding"] += decode(value)
        elif table == DEPOSIT:
            _member, centre, points, was_reversed = decode(value)
            totals[centre]["deposited"] += points
            if was_reversed:
                totals[centre]["reversed"] += points
        elif table == REDEMPTION:
            partner, member, points, refunded, drawn = decode(value)
            record = RedemptionRecord(partner, member, points, refunded, tuple((c, p) for c, p in drawn))
            by_partner[partner] += points - refunded
            for centre, taken in record.drawn:
                totals[centre]["redeemed"] += taken
            for centre, back in record.refunded_split():
                totals[centre]["refunded"] += back
    report.centres = {c: CentreTotals(**t) for c, t in sorted(totals.items())}
    report.redeemed_by_partner = dict(sorted(by_partner.items()))


def _check_conservation(report: Report, head: ChainHead) -> None:
    for centre, totals in report.centres.items():
        if not totals.balanced:
            report.fail(Problem(head.header.height, None, f"conservation[{centre.hex()}]",
                                f"deposited {totals.deposited} - redeemed {totals.redeemed} + refunded "
                                f"{totals.refunded} - reversed {totals.reversed} != outstanding "
                                f"{totals.outstanding}"))
            return
