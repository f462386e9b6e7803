"""Settlement statements: what one partner redeemed and refunded in one period, with proofs.

Owns the statement format (docs/FORMAT.md section 15: JSON, the authoritative form, and its CSV
rendering), the statement's limits (period length, number of lines), attributing redeemed and
refunded points to centres (from the centres each redemption drew from, as the partner may read
them, or by replaying a member's history through the ledger's own rules), and
``verify_statement``.

A statement is made of proven parts only: the partner's entries, each with its inclusion proof
against one certified checkpoint, and the certified headers of the blocks that hold them. Every
other figure (member, points, height, block time, totals) is derived from those parts by
``build_statement``; the verifier rebuilds the statement from the parts of a file and requires
the file to be exactly what they give. The per-centre attribution is the one thing the parts do
not prove (it depends on the members' earlier deposits): the verifier checks its arithmetic, and
an audit of the whole chain confirms it (section 15, "What a statement proves").
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from ledger.block import Header
from ledger.codes import Code
from ledger.limits import CHAIN_ID_BYTES, HASH_BYTES, MAX_POINTS_PER_TX, PARTY_ID_BYTES
from ledger.merkle import MAX_PROOF_HASHES
from ledger.receipt import (
    MAX_CERTIFICATE_BYTES,
    MAX_ENTRY_BYTES,
    MAX_HEADER_BYTES,
    Anchor,
    ReceiptError,
    check_certified_header,
    check_entry,
    check_inclusion,
)
from ledger.rules import apply_tx
from ledger.state import MemoryState, Overlay, Party, RedemptionRecord
from ledger.tx import Redeem, Refund, Role, Tx, TxKind

STATEMENT_FORMAT = "nanum/v1/settlement"
STATEMENT_VERSION = 1
DAY_MS = 86_400_000
MAX_PERIOD_DAYS = 366
MAX_PERIOD_MS = MAX_PERIOD_DAYS * DAY_MS
MAX_STATEMENT_LINES = 2_000              # redemptions and refunds in one statement
MAX_STATEMENT_BLOCKS = MAX_STATEMENT_LINES
MAX_CENTRES_PER_LINE = 1_024             # centres one redemption can draw from
MAX_STATEMENT_FILE_BYTES = 64 * 1024 * 1024
MAX_PERIOD_END_MS = 253_402_300_800_000  # 10000-01-01T00:00:00Z: periods are written as ISO dates
ATTRIBUTION_NOTE = ("centres are attributed from the centres each redemption drew from, as the node recorded "
                    "them, refunds giving back the last-drawn points first; the proofs do not cover the "
                    "attribution, an audit of the chain confirms it")
SETTLED_KINDS = {TxKind.REDEEM: "redeem", TxKind.REFUND: "refund"}
CSV_COLUMNS = ("record", "kind", "tx_id", "height", "block_time", "leaf_index", "member_id",
               "redemption_tx_id", "centre_id", "redeemed", "refunded", "net", "centres")


class LimitError(ValueError):
    """A period or statement beyond the documented limits; the message says what to change."""


class StatementError(ReceiptError):
    """A statement that does not verify; ``field`` is the JSON path of the first failure."""


def check_period(from_ms: int, to_ms: int) -> None:
    """A period [from_ms, to_ms) of block times: non-empty, at most MAX_PERIOD_DAYS long."""
    if not 0 <= from_ms < to_ms <= MAX_PERIOD_END_MS:
        raise LimitError("the period must end after it starts (from < to), within years 1970..9999")
    if to_ms - from_ms > MAX_PERIOD_MS:
        raise LimitError(f"a statement covers at most {MAX_PERIOD_DAYS} days; "
                         f"this period has {(to_ms - from_ms) / DAY_MS:.1f}; choose a shorter one")


def check_line_count(count: int) -> None:
    if count > MAX_STATEMENT_LINES:
        raise LimitError(f"the period holds more than {MAX_STATEMENT_LINES} redemptions and refunds, the "
                         f"most one statement lists; choose a shorter period")


def iso_ms(ms: int) -> str:
    """UTC ISO 8601 with milliseconds, e.g. 2026-11-01T00:00:00.000Z."""
    if ms >= MAX_PERIOD_END_MS:
        return "after 9999-12-31"
    moment = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


# --- the proven parts --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProvenEntry:
    """A Merkle leaf and its inclusion proof against the statement's checkpoint."""

    leaf_index: int
    entry: bytes
    proof: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class CertifiedBlock:
    header: bytes          # canonical header encoding
    certificate: bytes     # canonical certificate encoding


@dataclass(frozen=True, slots=True)
class LineParts:
    entry: ProvenEntry
    redemption: ProvenEntry | None              # for a refund: the redemption it refunds
    centres: tuple[tuple[bytes, int], ...]      # attribution: (centre id, points), ascending ids


@dataclass(frozen=True, slots=True)
class StatementParts:
    partner_id: bytes
    from_ms: int
    to_ms: int
    checkpoint: CertifiedBlock
    blocks: tuple[CertifiedBlock, ...]          # the blocks holding the lines, ascending heights
    lines: tuple[LineParts, ...]                # ascending leaf index


# --- the statement, derived from its parts ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    kind: str
    tx: Tx
    member_id: bytes
    points: int
    header: Header
    parts: LineParts
    redemption_tx_id: bytes | None

    @property
    def redeemed(self) -> int:
        return self.points if self.kind == "redeem" else 0

    @property
    def refunded(self) -> int:
        return self.points if self.kind == "refund" else 0


@dataclass(frozen=True, slots=True)
class Statement:
    chain_id: bytes
    parts: StatementParts
    checkpoint: Header
    blocks: tuple[Header, ...]
    lines: tuple[Line, ...]

    @property
    def period_closed(self) -> bool:
        """Blocks never go back in time, so no later block can fall in the period."""
        return self.checkpoint.time_ms >= self.parts.to_ms

    def totals(self) -> dict[str, int]:
        redeemed = sum(line.redeemed for line in self.lines)
        refunded = sum(line.refunded for line in self.lines)
        return {"lines": len(self.lines), "redeemed": redeemed, "refunded": refunded, "net": redeemed - refunded}

    def by_centre(self) -> list[dict[str, Any]]:
        sums: dict[bytes, list[int]] = {}
        for line in self.lines:
            for centre_id, points in line.parts.centres:
                sums.setdefault(centre_id, [0, 0])[line.kind == "refund"] += points
        return [{"centre_id": c.hex(), "redeemed": r, "refunded": f, "net": r - f}
                for c, (r, f) in sorted(sums.items())]

    def to_json(self) -> dict[str, Any]:
        p, cp = self.parts, self.checkpoint
        return {
            "format": STATEMENT_FORMAT, "version": STATEMENT_VERSION,
            "chain_id": self.chain_id.hex(), "partner_id": p.partner_id.hex(),
            "period": {"from_ms": p.from_ms, "to_ms": p.to_ms, "from": iso_ms(p.from_ms), "to": iso_ms(p.to_ms)},
            "checkpoint": {"height": cp.height, "tree_size": cp.tree_size, "tree_root": cp.tree_root.hex(),
                           "block_hash": cp.hash().hex(), "block_time_ms": cp.time_ms,
                           "block_time": iso_ms(cp.time_ms), "header": _b64(p.checkpoint.header),
                           "certificate": _b64(p.checkpoint.certificate)},
            "period_closed": self.period_closed,
            "totals": self.totals(),
            "by_centre": self.by_centre(),
            "attribution": ATTRIBUTION_NOTE,
            "lines": [_line_json(line) for line in self.lines],
            "blocks": [{"height": h.height, "header": _b64(b.header), "certificate": _b64(b.certificate)}
                       for h, b in zip(self.blocks, p.blocks)],
        }

    def to_csv(self) -> str:
        """Lines, then one row per centre, then the total; amounts are points."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for line in self.lines:
            writer.writerow(["line", line.kind, line.tx.tx_id.hex(), line.header.height, iso_ms(line.header.time_ms),
                             line.parts.entry.leaf_index, line.member_id.hex(),
                             line.redemption_tx_id.hex() if line.redemption_tx_id else "", "",
                             line.redeemed, line.refunded, line.redeemed - line.refunded,
                             ";".join(f"{c.hex()}:{n}" for c, n in line.parts.centres)])
        for row in self.by_centre():
            writer.writerow(["centre", "", "", "", "", "", "", "", row["centre_id"], row["redeemed"],
                             row["refunded"], row["net"], ""])
        totals = self.totals()
        writer.writerow(["total", "", "", "", "", "", "", "", "", totals["redeemed"], totals["refunded"],
                         totals["net"], ""])
        return out.getvalue()


def _line_json(line: Line) -> dict[str, Any]:
    parts = line.parts
    redemption = None
    if parts.redemption is not None:
        redemption = {"tx_id": line.redemption_tx_id.hex(), **_proven_json(parts.redemption)}
    return {"kind": line.kind, "tx_id": line.tx.tx_id.hex(), "member_id": line.member_id.hex(),
            "points": line.points, "height": line.header.height, "block_time_ms": line.header.time_ms,
            "block_time": iso_ms(line.header.time_ms), **_proven_json(parts.entry),
            "redemption": redemption,
            "centres": [{"centre_id": c.hex(), "points": n} for c, n in parts.centres]}


def _proven_json(proven: ProvenEntry) -> dict[str, Any]:
    return {"leaf_index": proven.leaf_index, "entry": _b64(proven.entry), "proof": [h.hex() for h in proven.proof]}


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


# --- building (and so checking) a statement from its parts ------------------------------------


def build_statement(anchor: Anchor, parts: StatementParts) -> Statement:
    """Checks every part and derives the statement; StatementError (ReceiptError) naming the
    first part that fails, LimitError for a period or size beyond the limits."""
    check_period(parts.from_ms, parts.to_ms)
    check_line_count(len(parts.lines))
    checkpoint, _ = check_certified_header(anchor, parts.checkpoint.header, parts.checkpoint.certificate,
                                           "checkpoint")
    blocks = _check_blocks(anchor, parts.blocks, checkpoint)
    lines, last_leaf = [], -1
    for i, line_parts in enumerate(parts.lines):
        line = _check_line(anchor, parts, checkpoint, blocks, line_parts, f"lines[{i}]")
        if line_parts.entry.leaf_index <= last_leaf:
            raise StatementError(f"lines[{i}].leaf_index", "lines are listed once each, in ascending leaf order")
        last_leaf = line_parts.entry.leaf_index
        lines.append(line)
    used = {line.header.height for line in lines}
    for j, header in enumerate(blocks):
        if header.height not in used:
            raise StatementError(f"blocks[{j}]", f"block {header.height} holds none of the statement's lines")
    return Statement(anchor.chain_id, parts, checkpoint, tuple(blocks), tuple(lines))


def _check_blocks(anchor: Anchor, blocks: tuple[CertifiedBlock, ...], checkpoint: Header) -> list[Header]:
    if len(blocks) > MAX_STATEMENT_BLOCKS:
        raise StatementError("blocks", f"at most {MAX_STATEMENT_BLOCKS} blocks")
    headers: list[Header] = []
    for j, block in enumerate(blocks):
        header, _ = check_certified_header(anchor, block.header, block.certificate, f"blocks[{j}]")
        if headers and header.height <= headers[-1].height:
            raise StatementError(f"blocks[{j}].header.height", "blocks are listed once each, by ascending height")
        if header.height > checkpoint.height:
            raise StatementError(f"blocks[{j}].header.height", f"block {header.height} is after the checkpoint")
        headers.append(header)
    return headers


def _check_line(anchor: Anchor, parts: StatementParts, checkpoint: Header, blocks: list[Header],
                line: LineParts, field: str) -> Line:
    tx, code = check_entry(line.entry.entry, anchor.chain_id, f"{field}.entry")
    if code != Code.OK:
        raise StatementError(f"{field}.entry", f"recorded with {code.name}; a statement lists accepted transactions")
    if tx.kind not in SETTLED_KINDS:
        raise StatementError(f"{field}.entry", f"a {tx.kind.name.lower()} is not settled; lines are redemptions and refunds")
    if tx.author_id != parts.partner_id:
        raise StatementError(f"{field}.entry", f"written by {tx.author_id.hex()}, not by the statement's partner")
    header = _block_of(blocks, line.entry.leaf_index, f"{field}.leaf_index")
    if not parts.from_ms <= header.time_ms < parts.to_ms:
        raise StatementError(f"{field}.block_time_ms", f"block {header.height} at {iso_ms(header.time_ms)} is "
                                                       f"outside the period")
    check_inclusion(line.entry.entry, line.entry.leaf_index, line.entry.proof, checkpoint.tree_size,
                    checkpoint.tree_root, f"{field}.proof")
    member_id, redemption_id = _member_of(anchor, parts, checkpoint, tx, line, field)
    _check_centres(line.centres, tx.payload.points, f"{field}.centres")
    return Line(SETTLED_KINDS[tx.kind], tx, member_id, tx.payload.points, header, line, redemption_id)


def _block_of(blocks: list[Header], leaf_index: int, field: str) -> Header:
    for header in blocks:
        if header.tree_size - header.tx_count <= leaf_index < header.tree_size:
            return header
    raise StatementError(field, f"no block of the statement holds leaf {leaf_index}")


def _member_of(anchor: Anchor, parts: StatementParts, checkpoint: Header, tx: Tx, line: LineParts,
               field: str) -> tuple[bytes, bytes | None]:
    """The member of a redemption is in its voucher; a refund's is in the redemption it refunds,
    which the line carries with its own inclusion proof."""
    if isinstance(tx.payload, Redeem):
        if line.redemption is not None:
            raise StatementError(f"{field}.redemption", "only a refund line carries its redemption")
        return tx.payload.voucher.member_id, None
    refund: Refund = tx.payload
    proven = line.redemption
    if proven is None:
        raise StatementError(f"{field}.redemption", "a refund line carries the redemption it refunds")
    where = f"{field}.redemption"
    redeem, code = check_entry(proven.entry, anchor.chain_id, f"{where}.entry")
    if redeem.tx_id != refund.redemption_id or not isinstance(redeem.payload, Redeem) or code != Code.OK:
        raise StatementError(f"{where}.entry", "is not the accepted redemption this refund names")
    if redeem.author_id != parts.partner_id or proven.leaf_index >= line.entry.leaf_index:
        raise StatementError(f"{where}.entry", "a refund follows a redemption at the same partner")
    check_inclusion(proven.entry, proven.leaf_index, proven.proof, checkpoint.tree_size, checkpoint.tree_root,
                    f"{where}.proof")
    return redeem.payload.voucher.member_id, redeem.tx_id


def _check_centres(centres: tuple[tuple[bytes, int], ...], points: int, field: str) -> None:
    ids = [c for c, _ in centres]
    if ids != sorted(set(ids)):
        raise StatementError(field, "centres are listed once each, by ascending id")
    if any(n < 1 for _, n in centres) or sum(n for _, n in centres) != points:
        raise StatementError(field, f"the centres' points must be positive and add up to the line's {points}")


# --- attribution: which centres' points a redemption took, and a refund gave back -------------


_AUTHOR_ROLES = {TxKind.REGISTER_MEMBER: Role.CENTRE, TxKind.DEPOSIT: Role.CENTRE, TxKind.REVERSAL: Role.CENTRE,
                 TxKind.REDEEM: Role.PARTNER, TxKind.REFUND: Role.PARTNER}


class AttributionError(Exception):
    """A member's history that does not replay: it is incomplete or not this member's."""


def attribute(history: Iterable[tuple[Tx, Code]]) -> dict[bytes, tuple[tuple[bytes, int], ...]]:
    """For every accepted redemption and refund in one member's history (oldest first, as
    ``GetHistory`` gives it), the (centre id, points) it took from or gave back to the member's
    buckets, by ascending centre id. The history is replayed through ``ledger.rules.apply_tx``
    on a scratch state in which each author is an active party of its role (the recorded
    result says it was); rejected transactions changed nothing and are skipped."""
    state = Overlay(MemoryState())
    splits: dict[bytes, tuple[tuple[bytes, int], ...]] = {}
    for tx, code in history:
        if code != Code.OK or tx.kind not in _AUTHOR_ROLES:
            continue
        if state.party(tx.author_id) is None:
            state.put_party(tx.author_id, Party(_AUTHOR_ROLES[tx.kind], tx.author, True, "replay", ""))
        member_id = _member_touched(state, tx)
        before = dict(state.buckets(member_id)) if member_id else {}
        result = apply_tx(tx, state, 0)      # time 0: the recorded OK says the voucher had not expired
        if result != Code.OK:
            raise AttributionError(f"transaction {tx.tx_id.hex()} was accepted by the ledger but gives "
                                   f"{result.name} when the member's history is replayed; the history is incomplete")
        if tx.kind in SETTLED_KINDS:
            after = dict(state.buckets(member_id))
            splits[tx.tx_id] = tuple(sorted((c, abs(after.get(c, 0) - before.get(c, 0)))
                                            for c in set(before) | set(after)
                                            if after.get(c, 0) != before.get(c, 0)))
    return splits


Split = tuple[tuple[bytes, int], ...]


def attribute_drawn(drawn: dict[bytes, Split], history: Iterable[tuple[Tx, Code]]) -> dict[bytes, Split]:
    """For one partner's accepted redemptions and refunds (oldest first, as its ``GetHistory``
    gives them), the (centre id, points) each took or gave back, by ascending centre id, from
    ``drawn``: per redemption id, the (centre id, points) its points were drawn from in the
    order drawn (the node's redemption record, ``TransactionView.drawn``). A refund gives back
    the last-drawn points first (§6), so its split follows from the refunds of the same
    redemption before it, which must all be in ``history``. Needs no member's history."""
    refunded: dict[bytes, int] = {}
    splits: dict[bytes, Split] = {}
    for tx, code in history:
        payload = tx.payload
        if code != Code.OK:
            continue
        if isinstance(payload, Redeem) and tx.tx_id in drawn:
            splits[tx.tx_id] = _by_centre(drawn[tx.tx_id])
        elif isinstance(payload, Refund) and payload.redemption_id in drawn:
            taken = drawn[payload.redemption_id]
            before = refunded.get(payload.redemption_id, 0)
            after = before + payload.points
            if after > sum(points for _, points in taken):
                raise AttributionError(f"refund {tx.tx_id.hex()} gives back more than redemption "
                                       f"{payload.redemption_id.hex()} drew")
            old, new = dict(_refunded(taken, before)), dict(_refunded(taken, after))
            splits[tx.tx_id] = tuple(sorted((c, new[c] - old.get(c, 0)) for c in new if new[c] != old.get(c, 0)))
            refunded[payload.redemption_id] = after
    return splits


def _by_centre(taken: Split) -> Split:
    totals: dict[bytes, int] = {}
    for centre_id, points in taken:
        totals[centre_id] = totals.get(centre_id, 0) + points
    return tuple(sorted((c, p) for c, p in totals.items() if p))


def _refunded(taken: Split, refunded: int) -> list[tuple[bytes, int]]:
    totals: dict[bytes, int] = {}
    for centre_id, points in RedemptionRecord(b"", b"", 0, refunded, tuple(taken)).refunded_split():
        totals[centre_id] = totals.get(centre_id, 0) + points
    return list(totals.items())


def _member_touched(state: Overlay, tx: Tx) -> bytes | None:
    payload = tx.payload
    if isinstance(payload, Redeem):
        return payload.voucher.member_id
    if isinstance(payload, Refund):
        redemption = state.redemption(payload.redemption_id)
        return redemption.member_id if redemption else None
    return None


# --- reading a statement file strictly ---------------------------------------------------------


def verify_statement(data: bytes, genesis_block_bytes: bytes) -> Statement:
    """Checks a statement file (JSON) against the genesis block alone: the checkpoint's and every
    block's certificate, every line's entry, signatures and inclusion proof, and that every figure
    in the file is exactly what the proven parts give. StatementError naming the first failure."""
    try:
        anchor = Anchor.from_genesis_block(genesis_block_bytes)
    except ReceiptError as exc:
        raise StatementError(exc.field, exc.reason) from None
    claimed = _load_json(data)
    chain_id = _hex(_get(claimed, "chain_id"), CHAIN_ID_BYTES, "chain_id")
    if chain_id != anchor.chain_id:
        raise StatementError("chain_id", f"statement of chain {chain_id.hex()}, but the genesis is of chain "
                                         f"{anchor.chain_id.hex()} (another consortium)")
    try:
        statement = build_statement(anchor, parts_from_json(claimed))
    except LimitError as exc:
        raise StatementError("period", str(exc)) from None
    except StatementError:
        raise
    except ReceiptError as exc:          # a shared check (certificate, entry, proof) failed
        raise StatementError(exc.field, exc.reason) from None
    _compare(claimed, statement.to_json(), "")
    return statement


def _load_json(data: bytes) -> dict:
    if len(data) > MAX_STATEMENT_FILE_BYTES:
        raise StatementError("statement", f"a statement file is at most {MAX_STATEMENT_FILE_BYTES} bytes")
    try:
        value = json.loads(data.decode("utf-8"), parse_float=_no_float, parse_constant=_no_float)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StatementError("statement", f"not JSON: {exc}") from None
    if not isinstance(value, dict) or value.get("format") != STATEMENT_FORMAT:
        raise StatementError("format", f"not a nanum settlement statement (format must be {STATEMENT_FORMAT!r})")
    if value.get("version") != STATEMENT_VERSION:
        raise StatementError("version", f"unsupported version {value.get('version')!r}; this verifier reads "
                                        f"{STATEMENT_VERSION}")
    return value


def _no_float(text: str) -> Any:
    raise ValueError(f"numbers are whole, got {text}")


def parts_from_json(value: dict) -> StatementParts:
    """The proven parts of a statement, with every type and size checked (field paths named)."""
    period = _get(value, "period")
    checkpoint = _get(value, "checkpoint")
    blocks = _list(_get(value, "blocks"), MAX_STATEMENT_BLOCKS, "blocks")
    lines = _list(_get(value, "lines"), MAX_STATEMENT_LINES, "lines")
    return StatementParts(
        partner_id=_hex(_get(value, "partner_id"), PARTY_ID_BYTES, "partner_id"),
        from_ms=_int(_get(period, "from_ms", "period"), "period.from_ms"),
        to_ms=_int(_get(period, "to_ms", "period"), "period.to_ms"),
        checkpoint=_certified(checkpoint, "checkpoint"),
        blocks=tuple(_certified(b, f"blocks[{j}]") for j, b in enumerate(blocks)),
        lines=tuple(_line_parts(line, f"lines[{i}]") for i, line in enumerate(lines)),
    )


def _certified(value: Any, field: str) -> CertifiedBlock:
    return CertifiedBlock(_base64(_get(value, "header", field), MAX_HEADER_BYTES, f"{field}.header"),
                          _base64(_get(value, "certificate", field), MAX_CERTIFICATE_BYTES, f"{field}.certificate"))


def _line_parts(value: Any, field: str) -> LineParts:
    redemption = _get(value, "redemption", field)
    centres = _list(_get(value, "centres", field), MAX_CENTRES_PER_LINE, f"{field}.centres")
    return LineParts(
        entry=_proven(value, field),
        redemption=None if redemption is None else _proven(redemption, f"{field}.redemption"),
        centres=tuple((_hex(_get(c, "centre_id", f"{field}.centres[{k}]"), PARTY_ID_BYTES,
                            f"{field}.centres[{k}].centre_id"),
                       _int(_get(c, "points", f"{field}.centres[{k}]"), f"{field}.centres[{k}].points",
                            MAX_POINTS_PER_TX))
                      for k, c in enumerate(centres)),
    )


def _proven(value: Any, field: str) -> ProvenEntry:
    proof = _list(_get(value, "proof", field), MAX_PROOF_HASHES, f"{field}.proof")
    return ProvenEntry(_int(_get(value, "leaf_index", field), f"{field}.leaf_index"),
                       _base64(_get(value, "entry", field), MAX_ENTRY_BYTES, f"{field}.entry"),
                       tuple(_hex(h, HASH_BYTES, f"{field}.proof[{k}]") for k, h in enumerate(proof)))


def _get(value: Any, key: str, field: str = "") -> Any:
    if not isinstance(value, dict):
        raise StatementError(field or "statement", "expected a JSON object")
    if key not in value:
        raise StatementError(f"{field}.{key}" if field else key, "missing")
    return value[key]


def _list(value: Any, max_items: int, field: str) -> list:
    if not isinstance(value, list):
        raise StatementError(field, "expected a JSON array")
    if len(value) > max_items:
        raise StatementError(field, f"{len(value)} items, over the limit of {max_items}")
    return value


def _int(value: Any, field: str, high: int = 2**64 - 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise StatementError(field, f"expected a whole number 0..{high}")
    return value


def _hex(value: Any, size: int, field: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * size:
        raise StatementError(field, f"expected {2 * size} lowercase hex digits")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise StatementError(field, f"expected {2 * size} lowercase hex digits") from None
    if raw.hex() != value:
        raise StatementError(field, f"expected {2 * size} lowercase hex digits")
    return raw


def _base64(value: Any, max_bytes: int, field: str) -> bytes:
    if not isinstance(value, str) or len(value) > 4 * (max_bytes // 3 + 1):
        raise StatementError(field, f"expected standard base64 of at most {max_bytes} bytes")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise StatementError(field, "expected standard base64 with padding") from None
    if _b64(raw) != value:
        raise StatementError(field, "expected canonical base64 (standard alphabet, with padding)")
    return raw


def _compare(claimed: Any, derived: Any, path: str) -> None:
    """The first place where the file differs from what its proven parts give, named."""
    if isinstance(derived, dict) and isinstance(claimed, dict):
        for key in list(derived) + [k for k in claimed if k not in derived]:
            where = f"{path}.{key}" if path else key
            if key not in claimed or key not in derived:
                raise StatementError(where, "missing" if key not in claimed else "not part of the format")
            _compare(claimed[key], derived[key], where)
        return
    if isinstance(derived, list) and isinstance(claimed, list):
        if len(claimed) != len(derived):
            raise StatementError(path, f"the statement lists {len(claimed)} items; the proven lines give "
                                       f"{len(derived)}")
        for i, (c, d) in enumerate(zip(claimed, derived)):
            _compare(c, d, f"{path}[{i}]")
        return
    if type(claimed) is not type(derived) or claimed != derived:
        raise StatementError(path, f"the statement says {json.dumps(claimed)[:80]}; the proven lines give "
                                   f"{json.dumps(derived)[:80]}")
