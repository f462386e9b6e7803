"""Receipts: a self-contained, offline-checkable proof that one transaction was recorded.

Owns the receipt format (docs/FORMAT.md section 14), the checks every proof made of certified
blocks needs (shared with ledger/settlement.py), re-rooting an inclusion proof onto an earlier
tree, and ``verify_receipt``.

    receipt = ["nanum/v1/receipt", 1, entry:bin, leaf_index:uint, [hash:bin32, ...],
               header:bin, certificate:bin]

``entry`` is the Merkle leaf ``encode([tx, code])``; ``header`` is the encoded header of the
block that recorded it and ``certificate`` that block's commit certificate. A verifier needs
only these bytes and the genesis block: the genesis gives the chain id and the node set, the
certificate proves that a majority of that node set endorsed the header, and the inclusion
proof leads from the entry to the header's tree root. The leaf must lie in the block's own
range of leaves, so the height and block time are proven too.

Limitation: certificates are checked against the **genesis** node set. If governance has
changed the node set since, a receipt signed by the new set fails (clearly, naming the
signer outside the genesis set); it never passes on signatures the genesis set does not hold.
Auditors verify such chains with an export, which carries the governance history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ledger import keys
from ledger.block import BlockError, Header, decode_entry, decode_genesis_block
from ledger.certificate import Certificate, CertificateError
from ledger.codes import Code
from ledger.encoding import (
    DecodeError,
    decode,
    encode,
    expect_array,
    expect_bytes,
    expect_list,
    expect_text,
    expect_uint,
)
from ledger.limits import HASH_BYTES, MAX_TX_BYTES
from ledger.merkle import MAX_PROOF_HASHES, ProofError, leaf_hash, node_hash, verify_inclusion
from ledger.state import MemoryState
from ledger.tx import Deposit, Genesis, Redeem, Refund, RegisterMember, Rejected, Reversal, Tx, check_tx

RECEIPT_TAG = "nanum/v1/receipt"
RECEIPT_VERSION = 1
MAX_RECEIPT_BYTES = 64 * 1024          # entry <= 4 KiB, proof <= 2 KiB, certificate <= 25 KiB
MAX_ENTRY_BYTES = MAX_TX_BYTES + 16    # encode([tx, code]) around a transaction of at most 4096 bytes
MAX_HEADER_BYTES = 512                 # an encoded header is about 170 bytes
MAX_CERTIFICATE_BYTES = 32 * 1024      # 256 signatures of 100 bytes each, and the framing
NODE_SET_HINT = ("receipts are checked against the genesis node set; if governance changed the "
                 "node set since, verify with an export (nanum audit verify) instead")


class ReceiptError(Exception):
    """A receipt (or a part of a statement) that does not prove what it claims.
    ``field`` names the first thing that failed; the message says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


# --- the trust anchor ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Anchor:
    """What a verifier takes from the genesis block: the chain id and the genesis node set."""

    chain_id: bytes
    genesis: Genesis
    node_set: frozenset[bytes]

    @classmethod
    def from_genesis_block(cls, raw: bytes) -> "Anchor":
        """Verifies block 0 completely (it is the trust anchor); ReceiptError('genesis') if not."""
        try:
            executed = decode_genesis_block(raw, MemoryState())
        except BlockError as exc:
            raise ReceiptError("genesis", f"not a valid genesis block ({exc})") from None
        genesis: Genesis = executed.txs[0].payload
        return cls(executed.block.header.chain_id, genesis, frozenset(n.public_key for n in genesis.nodes))


# --- checks shared with settlement statements ------------------------------------------------


def decode_header(raw: object, field: str) -> Header:
    """A block header from its canonical encoding; ReceiptError naming ``field`` if malformed."""
    try:
        data = expect_bytes(raw, field, max_size=MAX_HEADER_BYTES)
        return Header.from_wire(decode(data))
    except DecodeError as exc:
        raise ReceiptError(field, f"not a canonical block header ({exc.field or 'header'}: {exc})") from None


def check_certified_header(anchor: Anchor, header_raw: object, certificate_raw: object,
                           field: str) -> tuple[Header, Certificate]:
    """Decodes a header and its certificate and checks every link: the header is on the anchor's
    chain, is not block 0, and a majority of the genesis node set signed its checkpoint."""
    header = decode_header(header_raw, f"{field}.header")
    if header.chain_id != anchor.chain_id:
        raise ReceiptError(f"{field}.header.chain_id",
                           f"block of chain {header.chain_id.hex()}, but the genesis is of chain "
                           f"{anchor.chain_id.hex()} (another consortium)")
    if header.height == 0:
        raise ReceiptError(f"{field}.header.height", "block 0 has no certificate; the genesis block is the anchor")
    try:
        certificate = Certificate.decode(expect_bytes(certificate_raw, f"{field}.certificate",
                                                      max_size=MAX_CERTIFICATE_BYTES))
    except DecodeError as exc:
        where = exc.field if exc.field.startswith(f"{field}.") else f"{field}.{exc.field or 'certificate'}"
        raise ReceiptError(where, f"malformed certificate: {exc}") from None
    try:
        certificate.verify(header, anchor.node_set)
    except CertificateError as exc:
        hint = f"; {NODE_SET_HINT}" if "public_key" in exc.field or exc.field == "certificate.signatures" else ""
        raise ReceiptError(f"{field}.{exc.field}", f"{exc.reason}{hint}") from None
    return header, certificate


def check_inclusion(entry: bytes, leaf_index: int, proof: Sequence[bytes], tree_size: int, tree_root: bytes,
                    field: str) -> None:
    """The inclusion proof leads from leaf_hash(entry) at leaf_index to the tree root; every link."""
    try:
        verify_inclusion(leaf_hash(entry), leaf_index, tree_size, list(proof), tree_root)
    except ProofError as exc:
        raise ReceiptError(field, f"the entry is not proven to be leaf {leaf_index} of the certified tree of "
                                  f"size {tree_size}: {exc}") from None


def check_entry(entry: object, chain_id: bytes, field: str) -> tuple[Tx, Code]:
    """An entry decodes to [tx, code] with a known code, and tx passes the static check on this
    chain (canonical form, chain id, every signature including a redeemed voucher's)."""
    try:
        tx_raw, code = decode_entry(expect_bytes(entry, field, max_size=MAX_ENTRY_BYTES))
    except DecodeError as exc:
        raise ReceiptError(field, f"not an entry [tx, code] ({exc.field}: {exc})") from None
    try:
        tx = check_tx(tx_raw, chain_id)
    except Rejected as exc:
        raise ReceiptError(f"{field}.tx", str(exc.rejection)) from None
    return tx, Code(code)


def check_leaf_in_block(header: Header, leaf_index: int, field: str) -> None:
    """The leaf is one of the block's own leaves, so the block's height and time are the entry's."""
    first = header.tree_size - header.tx_count
    if not first <= leaf_index < header.tree_size:
        raise ReceiptError(field, f"leaf {leaf_index} is not in block {header.height} "
                                  f"(its leaves are {first}..{header.tree_size - 1})")


def reroot_inclusion(leaf_index: int, size: int, proof: Sequence[bytes], old_size: int,
                     consistency: Sequence[bytes]) -> list[bytes]:
    """The audit path of ``leaf_index`` in the tree of ``old_size`` leaves, computed from its
    path in the larger tree of ``size`` leaves and the consistency proof old_size -> size.

    The old tree is the fold of its perfect pieces (one per set bit of old_size, widest first);
    the consistency proof carries each piece (a power-of-two old tree is one piece: its root),
    and the piece holding the leaf is a node of both trees, so the bottom of the new path is
    the bottom of the old one. The result is NOT verified here: the caller verifies it against
    the old (certified) root, so a wrong input can only give a path that fails. Raises
    ValueError if the shapes do not fit."""
    if not 0 <= leaf_index < old_size <= size:
        raise ValueError(f"need 0 <= leaf {leaf_index} < old size {old_size} <= size {size}")
    if old_size == size:
        return list(proof)
    pieces = _old_pieces(old_size, size, list(consistency))
    start, j = 0, 0
    while leaf_index >= start + pieces[j][0]:
        start, j = start + pieces[j][0], j + 1
    inner = pieces[j][0].bit_length() - 1
    if len(proof) < inner:
        raise ValueError("the inclusion proof is shorter than the leaf's piece of the old tree")
    path = list(proof[:inner])
    if j + 1 < len(pieces):
        path.append(_fold_right([h for _, h in pieces[j + 1:]]))
    path.extend(h for _, h in reversed(pieces[:j]))
    return path


def _old_pieces(old_size: int, size: int, consistency: list[bytes]) -> list[tuple[int, bytes]]:
    """(width, hash) of the perfect pieces of the old tree, left to right, read off the
    consistency proof by the RFC 9162 2.1.4.2 walk (the hashes it folds into the old root).
    A power-of-two old tree is one piece whose hash the proof does not carry (the verifier
    knows it as the old root); it is returned with an empty hash, never read."""
    widths = [1 << b for b in reversed(range(old_size.bit_length())) if old_size >> b & 1]
    if len(widths) == 1:
        return [(old_size, b"")]
    if not consistency:
        raise ValueError("the consistency proof is empty")
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    found = [consistency[0]]                 # the rightmost piece comes first
    for c in consistency[1:]:
        if sn == 0:
            raise ValueError("the consistency proof is too long")
        if fn & 1 or fn == sn:
            found.append(c)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        fn, sn = fn >> 1, sn >> 1
    if len(found) != len(widths):
        raise ValueError("the consistency proof does not hold the old tree's pieces")
    return list(zip(widths, reversed(found)))


def _fold_right(hashes: list[bytes]) -> bytes:
    result = hashes[-1]
    for h in reversed(hashes[:-1]):
        result = node_hash(h, result)
    return result


# --- the receipt ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Receipt:
    entry: bytes
    leaf_index: int
    proof: tuple[bytes, ...]
    header: bytes          # encoded header of the block that recorded the entry
    certificate: bytes     # that block's encoded certificate

    def encode(self) -> bytes:
        return encode([RECEIPT_TAG, RECEIPT_VERSION, self.entry, self.leaf_index, list(self.proof),
                       self.header, self.certificate])

    @classmethod
    def decode(cls, raw: bytes) -> "Receipt":
        """Strict: canonical msgpack, the tag and version, every field's type and size."""
        if not isinstance(raw, bytes) or len(raw) > MAX_RECEIPT_BYTES:
            raise ReceiptError("receipt", f"a receipt is at most {MAX_RECEIPT_BYTES} bytes")
        try:
            fields = expect_array(decode(raw, MAX_RECEIPT_BYTES), 7, "receipt")
            if expect_text(fields[0], "receipt.tag", 64) != RECEIPT_TAG:
                raise DecodeError(f"not a nanum receipt (the tag must be {RECEIPT_TAG!r})", "receipt.tag")
            expect_uint(fields[1], "receipt.version", RECEIPT_VERSION, RECEIPT_VERSION)
            proof = expect_list(fields[4], MAX_PROOF_HASHES, "receipt.proof")
            return cls(
                entry=expect_bytes(fields[2], "receipt.entry", max_size=MAX_ENTRY_BYTES),
                leaf_index=expect_uint(fields[3], "receipt.leaf_index"),
                proof=tuple(expect_bytes(h, f"receipt.proof[{i}]", size=HASH_BYTES) for i, h in enumerate(proof)),
                header=expect_bytes(fields[5], "receipt.header", max_size=MAX_HEADER_BYTES),
                certificate=expect_bytes(fields[6], "receipt.certificate", max_size=MAX_CERTIFICATE_BYTES),
            )
        except DecodeError as exc:
            raise ReceiptError(exc.field or "receipt", str(exc)) from None


@dataclass(frozen=True, slots=True)
class ReceiptReport:
    """What a verified receipt proves, in the terms a person uses."""

    chain_id: bytes
    tx_id: bytes
    kind: str
    author_id: bytes
    code: Code
    height: int
    block_time_ms: int
    leaf_index: int
    tree_size: int
    tree_root: bytes
    signers: int
    nodes: int
    details: dict[str, Any]    # kind-specific: member, points, centre or partner, referred tx

    def to_json(self) -> dict[str, Any]:
        return {"verified": True, "chain_id": self.chain_id.hex(), "tx_id": self.tx_id.hex(), "kind": self.kind,
                "author_id": self.author_id.hex(), "code": int(self.code), "code_name": self.code.name,
                "height": self.height, "block_time_ms": self.block_time_ms, "leaf_index": self.leaf_index,
                "tree_size": self.tree_size, "tree_root": self.tree_root.hex(),
                "certified_by": self.signers, "node_set": self.nodes, **self.details}

    def describe(self) -> list[str]:
        """Lines for people: what happened, where it is recorded, who certified it."""
        d = self.details
        what = {"deposit": lambda: f"centre {d['centre_id']} deposited {d['points']} points for member {d['member_id']}",
                "redeem": lambda: f"partner {d['partner_id']} redeemed {d['points']} points of member {d['member_id']}",
                "refund": lambda: f"partner {d['partner_id']} refunded {d['points']} points of redemption "
                                  f"{d['redemption_tx_id']}",
                "reversal": lambda: f"centre {d['centre_id']} reversed deposit {d['deposit_tx_id']}",
                "register-member": lambda: f"centre {d['centre_id']} registered member {d['member_id']}",
                }.get(self.kind, lambda: f"{self.kind} by {self.author_id.hex()}")()
        return [f"receipt VERIFIED: transaction {self.tx_id.hex()} ({self.kind})",
                f"  {what}",
                f"  result: {self.code.name} ({int(self.code)}): {self.code.message}",
                f"  recorded in block {self.height} at {self.block_time_ms} ms, leaf {self.leaf_index} of "
                f"tree size {self.tree_size}",
                f"  certified by {self.signers} of the {self.nodes} genesis nodes of chain {self.chain_id.hex()}"]


def verify_receipt(receipt_bytes: bytes, genesis_block_bytes: bytes) -> ReceiptReport:
    """Checks every link of a receipt against the genesis block alone; ReceiptError naming the
    first field that fails. Returns what the receipt proves."""
    anchor = Anchor.from_genesis_block(genesis_block_bytes)
    receipt = Receipt.decode(receipt_bytes)
    header, certificate = check_certified_header(anchor, receipt.header, receipt.certificate, "receipt")
    check_leaf_in_block(header, receipt.leaf_index, "receipt.leaf_index")
    tx, code = check_entry(receipt.entry, anchor.chain_id, "receipt.entry")
    check_inclusion(receipt.entry, receipt.leaf_index, receipt.proof, header.tree_size, header.tree_root,
                    "receipt.proof")
    return ReceiptReport(anchor.chain_id, tx.tx_id, kind_name(tx), tx.author_id, code, header.height,
                         header.time_ms, receipt.leaf_index, header.tree_size, header.tree_root,
                         len(certificate.signatures), len(anchor.node_set), tx_details(tx))


def kind_name(tx: Tx) -> str:
    return tx.kind.name.lower().replace("_", "-")


def tx_details(tx: Tx) -> dict[str, Any]:
    """The parties and amounts a transaction names, as hex ids and integers."""
    p, author = tx.payload, tx.author_id.hex()
    if isinstance(p, Deposit):
        return {"centre_id": author, "member_id": p.member_id.hex(), "points": p.points,
                "deposit_kind": p.deposit_kind.name.lower(), "quantity": p.quantity}
    if isinstance(p, Redeem):
        return {"partner_id": author, "member_id": p.voucher.member_id.hex(), "points": p.points}
    if isinstance(p, Refund):
        return {"partner_id": author, "redemption_tx_id": p.redemption_id.hex(), "points": p.points}
    if isinstance(p, Reversal):
        return {"centre_id": author, "deposit_tx_id": p.deposit_id.hex()}
    if isinstance(p, RegisterMember):
        return {"centre_id": author, "member_id": p.member_id.hex()}
    return {"party_id": keys.party_id(getattr(p, "public_key", tx.author)).hex()}
