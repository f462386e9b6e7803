"""The verification engine: re-verify a whole chain from its genesis, trusting nothing.

Given the encoded genesis block and the encoded blocks after it, ``verify_chain`` checks
every hash link, every signature, replays every rule, recomputes the Merkle tree and the
state commitment, and checks conservation of points per centre. It stops at the first
problem and reports its exact place (height, transaction index, field) and why.

It holds the whole state in memory (``MemoryState``), so it needs no store and can run on an
export. The auditor CLI and a node's start-up check are built on it.

Also here: ``Prechecked``, a block whose static checks (decoding, chain id, every transaction
signature, every certificate signature) were already done elsewhere (``ledger.parallel`` does
them on all cores); ``verify_chain`` then replays the rules only, and reports any problem the
static checks found at exactly the place the sequential verifier would. And ``check_store``,
the quick O(state) integrity check a node runs before it starts; and ``verify_note``, which
checks a signed checkpoint note against the node keys an auditor trusts.
"""

from __future__ import annotations

import contextlib
import gc
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Union

from ledger import keys
from ledger.block import (
    BlockError,
    ChainHead,
    Header,
    decode_block,
    decode_genesis_block,
    replay_block,
)
from ledger.commitment import StateCommitment
from ledger.encoding import DecodeError, decode, decode_prechecked
from ledger.certificate import Certificate, CertificateError, quorum
from ledger.checkpoint import CheckpointBody, CheckpointError, key_id, key_name, parse_note
from ledger.merkle import leaf_hash, node_hash, root_at
from ledger.state import (
    BUCKET,
    DEPOSIT,
    MEMBER,
    PARTY,
    REDEMPTION,
    MemoryState,
    Party,
    Overlay,
    RedemptionRecord,
    StateReader,
)
from ledger.store import Store, StoreError, StoreReader
from ledger.tx import Rejected, Rejection, Role, Tx, check_tx, decode_or_reject


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
    names: dict[bytes, str] = field(default_factory=dict)     # party id -> name, from the party table
    state_root: bytes = b""

    def fail(self, problem: Problem) -> "Report":
        self.ok = False
        self.problem = problem
        return self


@dataclass(frozen=True, slots=True)
class Prechecked:
    """A block (and its certificate) whose static checks were done elsewhere, with their results.

    ``txs_ok``: the block decoded canonically, every entry decoded, and its transaction is canonical, for this chain, and every
    signature in it verifies (``tx.signatures_hold``): it passes ``check_tx`` exactly when its
    schema decodes, which the replay checks. ``decoded``: transactions that passed ``check_tx``
    in this process, by their bytes (the replay uses them instead of decoding again; None if
    the checks ran elsewhere). ``failure``: the raw
    bytes and rejection of the first entry that failed it (None if none failed, or if an entry
    could not even be decoded: the replay finds that itself). ``signed_hash`` and
    ``signatures_ok``: the block hash the certificate's signatures were checked against, and
    whether each one verifies (None if the certificate does not decode). Anything not positively
    checked is checked again in full by the replay."""

    block: bytes
    certificate: bytes | None = None
    txs_ok: bool = False
    failure: tuple[bytes, Rejection] | None = None
    signed_hash: bytes | None = None
    signatures_ok: tuple[bool, ...] | None = None
    decoded: dict[bytes, Tx] | None = None


BlockInput = Union[bytes, tuple[bytes, Optional[bytes]], Prechecked]


def verify_chain(genesis_raw: bytes, blocks: Iterable[BlockInput], require_certificates: bool = False,
                 freeze_survivors: bool = False) -> Report:
    """Verifies block 0 and then each block in order; see the module docstring.

    Each item of ``blocks`` is an encoded block, a pair (encoded block, encoded certificate
    or None), or a ``Prechecked``. A certificate given is checked against the node set in force
    at its height; with ``require_certificates`` a missing one is a problem too. The iterable
    may raise BlockError (an unreadable source): that is the problem at its place."""
    return _replay(genesis_raw, blocks, require_certificates, freeze_survivors)[0]


def verify_chain_nodes(genesis_raw: bytes, blocks: Iterable[BlockInput],
                       require_certificates: bool = True) -> tuple[Report, list[Party]]:
    """``verify_chain``, and the node set in force after the last block verified: the active
    parties of role node, in party id order (whose majority certifies the next block)."""
    report, state = _replay(genesis_raw, blocks, require_certificates)
    return report, [party for _, party in sorted(Overlay(state).active_parties(Role.NODE))]


def _replay(genesis_raw: bytes, blocks: Iterable[BlockInput], require_certificates: bool = False,
            freeze_survivors: bool = False) -> tuple[Report, MemoryState]:
    with _collector_paused(freeze_survivors):
        return _replay_all(genesis_raw, blocks, require_certificates)


@contextlib.contextmanager
def _collector_paused(freeze_survivors: bool) -> Iterator[None]:
    """Pauses Python's cyclic garbage collector for a replay, and restores it after.

    The replay keeps millions of long-lived objects (the state, every transaction record), and
    each full collection walks all of them: 15% of a 100,000-transaction replay, 20% of
    300,000, growing with the chain. The replay makes next to no reference cycles (445 objects
    found over 100,000 transactions); memory freed by reference counting is unaffected, and
    any cycle left is collected once the collector runs again.

    ``freeze_survivors`` is for a short-lived process that verifies once (the auditor's CLI):
    everything alive at the end goes to the permanent generation (``gc.freeze``, which is
    process-wide: nothing then alive is ever collected), so that neither the next collection
    nor the one at exit walks the whole verified state again (about 1 s at a million
    transactions). A library caller keeps the default."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze_survivors:
            gc.freeze()
        if was_enabled:
            gc.enable()


def _replay_all(genesis_raw: bytes, blocks: Iterable[BlockInput],
                require_certificates: bool) -> tuple[Report, MemoryState]:
    report = Report()
    state = MemoryState()
    try:
        executed = decode_genesis_block(genesis_raw, state)
    except BlockError as exc:
        return report.fail(Problem(0, exc.index, exc.field, exc.reason)), state
    state.absorb(executed.state)
    head = executed.head
    _count(report, head, 1)
    items = iter(blocks)
    try:
        for item in items:
            head = _verify_item(head, item, state, require_certificates)
            _count(report, head, head.header.tx_count)
    except BlockError as exc:
        return report.fail(Problem(exc.height, exc.index, exc.field, exc.reason)), state
    report.state_vector = head.commitment.to_bytes()
    report.state_root = head.header.state_root
    _summarise(report, state)
    _check_conservation(report, head)
    return report, state


def verify_store(store: Store, certificates: bool = False) -> Report:
    """Verifies a node's store: replays its blocks from its own block 0 (as ``verify_chain``),
    then compares what the replay produced with what the store holds — every state entry,
    every transaction record, the state vector and the head. A store whose chain verifies
    but whose state was changed underneath is caught here. With ``certificates``, every
    stored certificate is checked too (the newest blocks may not have one yet)."""
    with store.reader() as r:
        head = r.head()
        if head is None:
            return Report().fail(Problem(0, None, "store", "the store holds no chain"))
        try:
            genesis = r.block(0)
        except StoreError as exc:
            return Report().fail(Problem(0, None, "blocks", str(exc)))
        heights = range(1, head.header.height + 1)
        if certificates:
            blocks = ((_stored_block(r, h), store.certificate(h)) for h in heights)
        else:
            blocks = (_stored_block(r, h) for h in heights)
        report, state = _replay(genesis, blocks)
        if report.ok:
            _compare_store(report, r, state, head)
    return report


def _stored_block(r: StoreReader, height: int) -> bytes:
    """The stored block (b"" if missing: the replay reports it); one whose stored bytes are
    damaged is the problem at its height."""
    try:
        return r.block(height) or b""
    except StoreError as exc:
        raise BlockError(height, None, "blocks", str(exc)) from None


def _compare_store(report: Report, r: StoreReader, state: MemoryState, head: ChainHead) -> None:
    height = head.header.height
    stored = dict(r.state_items())
    for key in sorted(set(stored) | set(state.entries)):
        if stored.get(key) != state.entries.get(key):
            report.fail(Problem(height, None, f"state[{_TABLES.get(key[:1], '?')}:{key[1:].hex()}]",
                                "the stored value differs from the value the blocks produce"))
            return
    records = dict(r.tx_locations())
    replayed = {tx_id: record.location for tx_id, record in state.records.items()}
    for tx_id in sorted(set(records) | set(replayed)):
        if records.get(tx_id) != replayed.get(tx_id):
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


def _verify_item(head: ChainHead, item: BlockInput, state: MemoryState, require_certificates: bool) -> ChainHead:
    """Verifies one block after ``head`` (and its certificate) and absorbs it into ``state``."""
    node_set = node_set_in_force(state)
    expected = head.header.height + 1
    if isinstance(item, Prechecked):
        head = _verify_next(head, item.block, state, expected, _prechecked_check(item), item.txs_ok)
        if item.certificate is not None or require_certificates:
            _check_prechecked_certificate(head, item, node_set)
        return head
    raw, certificate = item if isinstance(item, tuple) else (item, None)
    head = _verify_next(head, raw, state, expected)
    if certificate is not None or require_certificates:
        _check_certificate(head, certificate, node_set)
    return head


def _prechecked_check(item: Prechecked):
    """The static check for a prechecked block's entries: a failure found elsewhere is raised
    for its transaction; a block checked in full is only decoded; anything else is checked."""
    def check(tx_raw: bytes, chain_id: bytes) -> Tx:
        if item.failure is not None and tx_raw == item.failure[0]:
            raise Rejected(item.failure[1])
        if item.txs_ok:
            tx = item.decoded.get(tx_raw) if item.decoded else None
            return tx if tx is not None else decode_or_reject(tx_raw, prechecked=True)
        return check_tx(tx_raw, chain_id)
    return check


def _check_prechecked_certificate(head: ChainHead, item: Prechecked, node_set: frozenset[bytes]) -> None:
    if item.signatures_ok is None or item.signed_hash != head.hash:
        _check_certificate(head, item.certificate, node_set)
        return
    height = head.header.height
    try:
        certificate = Certificate.decode(item.certificate)
        certificate.verify(head.header, node_set, lambda i, *_: item.signatures_ok[i])
    except DecodeError as exc:
        raise BlockError(height, None, exc.field or "certificate", str(exc)) from None
    except CertificateError as exc:
        raise BlockError(height, None, exc.field, exc.reason) from None


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


def _verify_next(head: ChainHead, raw: bytes, state: MemoryState, expected: int, check=check_tx,
                 entries_prechecked: bool = False) -> ChainHead:
    try:
        block = decode_block(raw, prechecked=entries_prechecked)
    except DecodeError as exc:
        raise BlockError(expected, None, exc.field or "block", str(exc)) from None
    executed = replay_block(head, block, state, check, index_history=False, entries_prechecked=entries_prechecked)
    state.absorb(executed.state)
    return executed.head


def _count(report: Report, head: ChainHead, txs: int) -> None:
    report.blocks += 1
    report.transactions += txs
    report.head_hash = head.hash
    report.tree_size = head.header.tree_size
    report.tree_root = head.header.tree_root


def _summarise(report: Report, state: MemoryState) -> None:
    # The values are the replay's own encodings, so the canonical re-check is skipped.
    totals: dict[bytes, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_partner: dict[bytes, int] = defaultdict(int)
    for key, value in state.entries.items():
        table = key[:1]
        if table == MEMBER:
            report.members += 1
        elif table == PARTY:
            report.names[key[1:]] = decode_prechecked(value)[3]
        elif table == BUCKET:
            totals[key[21:41]]["outstanding"] += decode_prechecked(value)
        elif table == DEPOSIT:
            _member, centre, points, was_reversed = decode_prechecked(value)
            totals[centre]["deposited"] += points
            if was_reversed:
                totals[centre]["reversed"] += points
        elif table == REDEMPTION:
            partner, member, points, refunded, drawn = decode_prechecked(value)
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


# --- the quick start-up check of a node's store ---------------------------------------------

RECENT_BLOCKS_CHECKED = 64         # newest blocks whose bytes check_store checks in full


def check_store(store: Store) -> Problem | None:
    """The quick integrity check of a node's store, O(state + RECENT_BLOCKS_CHECKED blocks):
    the head is the newest stored block's header; the state table reproduces the stored state
    vector and the head's ``state_root``; the stored Merkle nodes give the head's ``tree_root``;
    the newest blocks are hash-linked, and each entry's leaf hash matches the Merkle node
    stored for its pair; their certificates (where present) decode and name them. Older blocks are the full check's job
    (``verify_store``). None for a healthy (or empty) store, else the first problem found."""
    try:
        with store.reader() as r:
            return _check_store(store, r)
    except (DecodeError, KeyError, ValueError, StoreError) as exc:
        return Problem(0, None, "store", f"unreadable: {type(exc).__name__}: {exc}")


def _check_store(store: Store, r: StoreReader) -> Problem | None:
    raw_head = store.meta(b"head")
    if raw_head is None:
        return None if r.block(0) is None else Problem(0, None, "meta.head", "blocks are stored but no head")
    try:
        header = Header.from_wire(decode(raw_head))
    except DecodeError as exc:
        return Problem(0, None, "meta.head", f"does not decode: {exc}")
    height = header.height
    if store.meta(b"chain_id") != header.chain_id:
        return Problem(height, None, "meta.chain_id", "differs from the head's chain id")
    return (_check_state(r, header) or _check_recent_blocks(store, r, header)
            or _check_tree(r, header))


def _check_state(r: StoreReader, header: Header) -> Problem | None:
    height = header.height
    vector = r.state_vector()
    if vector is None or len(vector) != len(StateCommitment().to_bytes()):
        return Problem(height, None, "meta.state_vector", "missing or of the wrong size")
    recomputed = StateCommitment()
    recomputed.update(added=r.state_items())
    if recomputed.to_bytes() != vector:
        return Problem(height, None, "state", "the state table does not reproduce the stored state "
                       "vector (a state entry was changed on disk; `nanum node check --full` names it)")
    if recomputed.root() != header.state_root:
        return Problem(height, None, "meta.state_vector", "does not give the head's state_root")
    return None


def _check_tree(r: StoreReader, header: Header) -> Problem | None:
    try:
        root = root_at(header.tree_size, r.merkle_node)
    except KeyError:
        return Problem(header.height, None, "merkle", "a Merkle node of the head's tree is missing")
    if root != header.tree_root:
        return Problem(header.height, None, "merkle", "the stored Merkle nodes do not give the head's tree_root")
    return None


def _check_recent_blocks(store: Store, r: StoreReader, head: Header) -> Problem | None:
    expected_hash = head.hash()
    low = max(0, head.height - RECENT_BLOCKS_CHECKED + 1)
    if r.block(head.height + 1) is not None:
        return Problem(head.height + 1, None, "blocks", "a block is stored beyond the head")
    for height in range(head.height, low - 1, -1):
        try:
            raw = r.block(height)
        except StoreError as exc:
            return Problem(height, None, "blocks", str(exc))
        if raw is None:
            return Problem(height, None, "blocks", "the block is missing")
        try:
            block = decode_block(raw)
        except DecodeError as exc:
            return Problem(height, None, exc.field or "block", f"the stored block does not decode: {exc}")
        if block.header.hash() != expected_hash:
            what = "the stored head" if height == head.height else f"block {height + 1}'s prev_hash"
            return Problem(height, None, "header", f"the stored block's header is not the one {what} names")
        problem = _check_leaves(r, block, head) or _check_stored_certificate(store, block.header)
        if problem is not None:
            return problem
        expected_hash = block.header.prev_hash
    return None


def _check_leaves(r: StoreReader, block, head: Header) -> Problem | None:
    """Each entry's leaf hash against the stored level-1 node of its pair (the store keeps no
    leaves: they are the entries' hashes). A mismatch cannot tell which of the pair's leaves, or
    the stored node, changed: the problem names the first entry found and the message its pair
    (a changed entry the full check then names exactly; a damaged stored node only this check
    finds). The other leaf of a pair across a block boundary is read from its block; a
    neighbouring block that cannot be read is left to the check of that block. The unpaired last
    leaf of a tree of odd size is checked against the head's tree root (a missing node there is
    left to _check_tree)."""
    header = block.header
    first_leaf = header.tree_size - len(block.entries)
    hashes = [leaf_hash(entry) for entry in block.entries]
    for index, own in enumerate(hashes):
        leaf = first_leaf + index
        partner = leaf ^ 1
        if partner >= head.tree_size:
            try:
                root = root_at(head.tree_size, r.merkle_node)
            except (KeyError, StoreError):
                continue
            if root != head.tree_root:
                return Problem(header.height, index, "entry",
                               "this entry, the tree's unpaired last leaf, or a stored Merkle node does not "
                               "give the head's tree_root")
            continue
        inside = first_leaf <= partner < header.tree_size
        try:
            other = hashes[partner - first_leaf] if inside else r.merkle_node(0, partner)
        except StoreError:
            continue
        except KeyError:
            other = None
        try:
            stored = r.merkle_node(1, leaf >> 1)
        except KeyError:
            stored = None
        except StoreError as exc:
            return Problem(header.height, index, "merkle", str(exc))
        if other is None or stored != (node_hash(own, other) if leaf % 2 == 0 else node_hash(other, own)):
            other_place = (f"entry {partner - first_leaf}" if inside
                           else f"leaf {partner}, in a neighbouring block")
            return Problem(header.height, index, "entry",
                           f"this entry, its leaf pair ({other_place}) or the Merkle node stored for the "
                           "pair differs; `nanum node check --full` names a changed entry")
    return None


def _check_stored_certificate(store: Store, header: Header) -> Problem | None:
    raw = store.certificate(header.height)
    if raw is None:
        return None
    try:
        certificate = Certificate.decode(raw)
    except DecodeError as exc:
        return Problem(header.height, None, exc.field or "certificate", f"the stored certificate does not decode: {exc}")
    if (certificate.height, certificate.block_hash) != (header.height, header.hash()):
        return Problem(header.height, None, "certificate", "the stored certificate names another block")
    return None


# --- signed checkpoint notes ----------------------------------------------------------------


class NoteError(Exception):
    """A signed checkpoint note that does not prove what it claims; the message says why."""


def verify_note(text: str, chain_id: bytes, node_keys: Iterable[bytes]) -> CheckpointBody:
    """Parses a signed checkpoint note (docs/FORMAT.md §7.4) and checks it names this chain and
    carries valid signatures of a majority of ``node_keys``, as a C2SP signed-note verifier:
    a malformed note is refused; a line whose (key name, key id) pair is a known node key's
    must carry a signature that verifies under it (every such line is checked, a repeated one
    counts once); every other line is ignored, even if it shares the name or the key id (but
    not both) with a node key: a witness cosignature, or another key of the same name.
    Raises NoteError."""
    try:
        body, lines = parse_note(text)
    except CheckpointError as exc:
        raise NoteError(str(exc)) from None
    if body.chain_id != chain_id:
        raise NoteError(f"the checkpoint is of chain {body.chain_id.hex()}, not {chain_id.hex()}")
    known = {(key_name(k), key_id(k)): k for k in node_keys}
    message, signers = body.text(), set()
    for line in lines:
        public_key = known.get((line.name, line.key_id))
        if public_key is None:
            continue
        if not keys.verify(public_key, line.signature, message):
            raise NoteError(f"signature line {line.number} ({line.name}): the signature does not verify")
        signers.add(public_key)
    needed = quorum(len(known))
    if len(signers) < needed:
        raise NoteError(f"{len(signers)} valid signatures by known node keys; a majority is {needed} "
                        f"of {len(known)}")
    return body
