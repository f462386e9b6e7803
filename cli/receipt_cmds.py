"""``nanum receipt verify``, ``nanum settlement`` and ``nanum settlement verify``, and the receipt
that ``nanum tx show --receipt`` writes.

Owns fetching certified pieces from the nodes and fitting them together: a transaction's entry
with an inclusion proof against the tree of a *certified* block (a node proves against its
current tree, which may be ahead of the certified head, so the proof is re-rooted with a
consistency proof and then verified against the certified root), the partner's lines of a
period, and the centres each of its redemptions drew from (a partner reads no member's history:
docs/ARCHITECTURE.md, "Who may read what"). Blocks are fetched as headers only, which every role
may read. A member reads with their own key (``--key``: a signed read). Every file is verified before it is
written; the verify commands need only the file and the genesis block. Formats: docs/FORMAT.md
sections 14 and 15 (ledger/receipt.py, ledger/settlement.py).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import click

from cli.common import EXIT_INPUT, EXIT_UNAVAILABLE, EXIT_VERIFY_FAILED, UserError, json_option
from cli.session import Session, emit_json, party_id_callback, talking
from ledger import files
from ledger.block import Header
from ledger.codes import Code
from ledger.encoding import DecodeError, decode, encode
from ledger.ledger import MAX_HISTORY_PAGE
from ledger.receipt import (
    MAX_HEADER_BYTES,
    MAX_RECEIPT_BYTES,
    Anchor,
    Receipt,
    ReceiptError,
    ReceiptReport,
    check_inclusion,
    reroot_inclusion,
    verify_receipt,
)
from ledger.settlement import (
    MAX_PERIOD_DAYS,
    MAX_STATEMENT_FILE_BYTES,
    MAX_STATEMENT_LINES,
    SETTLED_KINDS,
    AttributionError,
    CertifiedBlock,
    LimitError,
    LineParts,
    ProvenEntry,
    Statement,
    StatementParts,
    attribute_drawn,
    build_statement,
    check_line_count,
    check_period,
    iso_ms,
    verify_statement,
)
from ledger.keys import SigningKey
from ledger.tx import Redeem, Tx, decode_tx
from node.client import LedgerClient
from node.wire import ledger_pb2

CERTIFY_WAIT_MS = 15_000               # how long to wait for a block to be certified
CERTIFY_POLL_MS = 100
MAX_GENESIS_BYTES = 8 * 1024 * 1024
MAX_SCANNED_HISTORY = 10 * MAX_STATEMENT_LINES   # partner history items read for one statement
HISTORY_PAGE = MAX_HISTORY_PAGE


class VerificationFailed(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(f"verification FAILED: {message}", EXIT_VERIFY_FAILED)


# --- files -------------------------------------------------------------------------------------


def read_file(path: Path, max_bytes: int, what: str) -> bytes:
    try:
        return files.read_limited(path, max_bytes)
    except files.FileTooLarge:
        raise UserError(f"{what} {path} is larger than {max_bytes} bytes") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror}") from None


def write_file(path: Path, data: bytes, what: str) -> None:
    """Writes atomically: a temporary file beside the target, fsynced, then renamed over it."""
    path = Path(path)
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or Path("."))
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as exc:
        raise UserError(f"cannot write {what} {path}: {exc.strerror}") from None


def load_anchor(genesis_file: Path) -> tuple[bytes, Anchor]:
    raw = read_file(genesis_file, MAX_GENESIS_BYTES, "genesis file")
    try:
        return raw, Anchor.from_genesis_block(raw)
    except ReceiptError as exc:
        raise UserError(f"genesis file {genesis_file} is not a valid genesis block: {exc.reason}") from None


# --- certified pieces from the nodes ---------------------------------------------------------


class Fetcher:
    """Certified blocks, proofs and histories from the nodes, each checked as it arrives."""

    def __init__(self, client: LedgerClient) -> None:
        self.client = client
        self._headers: dict[int, tuple[Header, bytes]] = {}
        self._consistency: dict[tuple[int, int], list[bytes]] = {}

    def certified_head(self, at_least: int = 1) -> int:
        """The certified height, once it is at least ``at_least`` (bounded wait)."""
        deadline = time.monotonic() + CERTIFY_WAIT_MS / 1000
        while True:
            height = self.client.checkpoint().height
            if height >= at_least:
                return height
            if time.monotonic() > deadline:
                raise UserError(f"block {at_least} is not certified yet (the certified head is {height}); "
                                f"retry in a moment", EXIT_UNAVAILABLE)
            time.sleep(CERTIFY_POLL_MS / 1000)

    def block(self, height: int) -> tuple[Header, bytes]:
        """The header and certificate of a certified block."""
        if height not in self._headers:
            answers = list(self.client.blocks(height, 1, headers_only=True))
            if len(answers) != 1 or answers[0].height != height or not answers[0].certificate:
                raise UserError(f"the node did not send certified block {height}; retry in a moment",
                                EXIT_UNAVAILABLE)
            try:
                header = Header.from_wire(decode(answers[0].header, MAX_HEADER_BYTES))
            except DecodeError as exc:
                raise VerificationFailed(f"the node sent an undecodable block {height}: {exc}") from None
            if header.height != height:
                raise VerificationFailed(f"the node sent block {header.height} when asked for {height}")
            self._headers[height] = (header, answers[0].certificate)
        return self._headers[height]

    def proven(self, tx_id: bytes, at: Header) -> tuple[ledger_pb2.TransactionView, ProvenEntry]:
        """A transaction's entry with its inclusion proof against the tree of block ``at``."""
        view = self.client.transaction(tx_id, min_height=at.height)
        if view.leaf_index >= at.tree_size:
            raise UserError(f"transaction {tx_id.hex()} is not in the tree of block {at.height}")
        proof = self.proof_at(view, at)
        return view, ProvenEntry(view.leaf_index, view.entry, tuple(proof))

    def proof_at(self, view: ledger_pb2.TransactionView, at: Header) -> list[bytes]:
        """Re-roots the node's proof (against its current tree) onto the tree of block ``at``,
        and verifies the result against that block's root."""
        size = view.tree_size
        if size < at.tree_size:
            raise UserError(f"the node answered from a tree older than block {at.height}; retry", EXIT_UNAVAILABLE)
        consistency = [] if size == at.tree_size else self._consistency_proof(at.tree_size, size)
        try:
            proof = reroot_inclusion(view.leaf_index, size, list(view.inclusion_proof), at.tree_size, consistency)
            check_inclusion(view.entry, view.leaf_index, proof, at.tree_size, at.tree_root, "proof")
        except (ValueError, ReceiptError) as exc:
            raise VerificationFailed(f"the node's proofs for leaf {view.leaf_index} do not lead to the "
                                     f"certified root of block {at.height}: {exc}") from None
        return proof

    def _consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        if (size1, size2) not in self._consistency:
            answer = self.client.consistency_proof(size1, size2)
            self._consistency[(size1, size2)] = list(answer.proof)
        return self._consistency[(size1, size2)]

    def history(self, party_id: bytes, after_leaf: int, end_leaf: int, min_height: int, limit: int):
        """(leaf, tx, code) of a party's history with after_leaf < leaf < end_leaf, oldest first;
        LimitError beyond ``limit`` items."""
        items, after = [], after_leaf
        while True:
            page = self.client.history(party_id, after, HISTORY_PAGE, min_height)
            for item in page.items:
                if item.leaf_index >= end_leaf:
                    return items
                items.append((item.leaf_index, _decoded(item.tx, item.leaf_index), Code(item.code)))
                if len(items) > limit:
                    raise LimitError(f"more than {limit} transactions to read for {party_id.hex()}; "
                                     f"choose a shorter period")
            if not page.more or not page.items:
                return items
            after = page.items[-1].leaf_index

    def first_leaf_at(self, time_ms: int, head: Header) -> int:
        """The first leaf of the first block (1..head) whose time is at least ``time_ms``; block
        times never go back, so a binary search over heights finds it."""
        low, high = 1, head.height + 1
        while low < high:
            middle = (low + high) // 2
            if self.block(middle)[0].time_ms >= time_ms:
                high = middle
            else:
                low = middle + 1
        if low > head.height:
            return head.tree_size
        header = self.block(low)[0]
        return header.tree_size - header.tx_count


def _decoded(raw: bytes, leaf: int) -> Tx:
    try:
        return decode_tx(raw)
    except DecodeError as exc:
        raise VerificationFailed(f"a node sent an undecodable transaction at leaf {leaf}: {exc}") from None


def header_bytes(header: Header) -> bytes:
    return encode(header.to_wire())


# --- receipts ------------------------------------------------------------------------------------


def write_receipt(session: Session, tx_id: bytes, min_height: int, path: Path,
                  member: SigningKey | None = None) -> ReceiptReport:
    """Fetches a transaction's entry, the certificate of the block that recorded it and a proof
    against that block's tree; verifies the receipt with the session's genesis; writes it.
    With ``member``, the transaction is read as that member (a signed read)."""
    genesis_raw, _ = load_anchor(session.config.genesis_file)
    with talking(), session.client(member) as client:
        fetcher = Fetcher(client)
        view = client.transaction(tx_id, min_height=min_height)
        fetcher.certified_head(view.height)
        header, certificate = fetcher.block(view.height)
        proof = fetcher.proof_at(view, header)
    raw = Receipt(view.entry, view.leaf_index, tuple(proof), header_bytes(header), certificate).encode()
    try:
        report = verify_receipt(raw, genesis_raw)
    except ReceiptError as exc:
        raise VerificationFailed(f"the receipt built from the node's answers does not verify: {exc}") from None
    if report.tx_id != tx_id:
        raise VerificationFailed(f"the node answered with transaction {report.tx_id.hex()}, not {tx_id.hex()}")
    write_file(path, raw, "receipt file")
    return report


@click.group("receipt")
def receipt_group() -> None:
    """Verify receipts (written by `nanum tx show TXID --receipt FILE`) offline."""


@receipt_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--genesis", "genesis_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The consortium's genesis block file: the only thing trusted.")
@json_option
def receipt_verify(file: Path, genesis_file: Path, as_json: bool) -> None:
    """Check a receipt with only the genesis block: the block certificate, the inclusion proof
    and every signature. Exit 0 if it verifies, 5 if it does not."""
    genesis_raw, _ = load_anchor(genesis_file)
    raw = read_file(file, MAX_RECEIPT_BYTES, "receipt file")
    try:
        report = verify_receipt(raw, genesis_raw)
    except ReceiptError as exc:
        raise VerificationFailed(f"{file}: {exc}") from None
    if as_json:
        emit_json(report.to_json())
    else:
        click.echo("\n".join(report.describe()))


# --- settlement statements ---------------------------------------------------------------------


def parse_utc(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """An ISO date (midnight UTC) or date-time (UTC unless it names an offset), as ms."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO date such as 2026-11-01 or 2026-11-01T09:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    if moment < epoch:
        raise click.BadParameter(f"{value!r} is before 1970")
    return (moment - epoch) // timedelta(milliseconds=1)


@click.group("settlement", invoke_without_command=True)
@click.option("--client", "client_file", type=click.Path(dir_okay=False, path_type=Path), envvar="NANUM_CLIENT",
              help="Your client.toml (env NANUM_CLIENT).")
@click.option("--partner", "partner_id", metavar="ID40", callback=party_id_callback("a partner id"),
              help="The partner (bookstore) whose statement this is.")
@click.option("--from", "from_ms", metavar="DATE", callback=parse_utc,
              help="First day of the period (ISO date, UTC), included.")
@click.option("--to", "to_ms", metavar="DATE", callback=parse_utc,
              help=f"Day after the period (ISO date, UTC), excluded; at most {MAX_PERIOD_DAYS} days after --from.")
@click.option("--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), help="Write the CSV here.")
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the verifiable JSON statement here.")
@click.pass_context
def settlement_group(ctx: click.Context, client_file: Path | None, partner_id: bytes | None, from_ms: int | None,
                     to_ms: int | None, csv_file: Path | None, json_file: Path | None) -> None:
    """A partner's settlement statement for one period of block times [--from, --to): every
    redemption and refund with its proof, totals, and the points each centre owes.
    `nanum settlement verify FILE.json --genesis G` checks one offline."""
    if ctx.invoked_subcommand is not None:
        if any(v is not None for v in (partner_id, from_ms, to_ms, csv_file, json_file)):
            raise click.UsageError("statement options go with `nanum settlement`, not before a subcommand")
        return
    missing = [name for name, v in (("--client", client_file), ("--partner", partner_id), ("--from", from_ms),
                                     ("--to", to_ms)) if v is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)}")
    try:
        check_period(from_ms, to_ms)
    except LimitError as exc:
        raise UserError(str(exc), EXIT_INPUT) from None
    statement = fetch_statement(Session(client_file), partner_id, from_ms, to_ms)
    if json_file:
        write_file(json_file, statement_json_bytes(statement), "statement file")
    if csv_file:
        write_file(csv_file, statement.to_csv().encode(), "CSV file")
    _print_statement(statement, show_lines=not (json_file or csv_file))


def statement_json_bytes(statement: Statement) -> bytes:
    return (json.dumps(statement.to_json(), indent=1) + "\n").encode()


def fetch_statement(session: Session, partner_id: bytes, from_ms: int, to_ms: int) -> Statement:
    _, anchor = load_anchor(session.config.genesis_file)
    try:
        with talking(), session.client() as client:
            parts = _fetch_parts(Fetcher(client), partner_id, from_ms, to_ms)
    except LimitError as exc:
        raise UserError(str(exc), EXIT_INPUT) from None
    except AttributionError as exc:
        raise VerificationFailed(str(exc)) from None
    try:
        return build_statement(anchor, parts)
    except ReceiptError as exc:
        raise VerificationFailed(f"the statement built from the node's answers does not verify: {exc}") from None


def _fetch_parts(fetcher: Fetcher, partner_id: bytes, from_ms: int, to_ms: int) -> StatementParts:
    """The proven parts of a statement at the certified head: the period's leaves are found by
    block time, the partner's lines in them by its history, proofs re-rooted onto the head."""
    head, head_certificate = fetcher.block(fetcher.certified_head(1))
    first, end = fetcher.first_leaf_at(from_ms, head), fetcher.first_leaf_at(to_ms, head)
    found = fetcher.history(partner_id, first - 1, end, head.height, MAX_SCANNED_HISTORY) if first < end else []
    settled = [tx for _, tx, code in found
               if code == Code.OK and tx.kind in SETTLED_KINDS and tx.author_id == partner_id]
    check_line_count(len(settled))
    lines = [_fetch_line(fetcher, tx, head) for tx in settled]
    splits = _attribution(fetcher, partner_id, lines, found, first, head.height)
    heights = sorted({line.height for line in lines})
    blocks = tuple(CertifiedBlock(header_bytes(h), c) for h, c in map(fetcher.block, heights))
    return StatementParts(partner_id, from_ms, to_ms, CertifiedBlock(header_bytes(head), head_certificate), blocks,
                          tuple(LineParts(line.entry, line.redemption, splits.get(line.tx_id, ()))
                                for line in lines))


@dataclass(frozen=True, slots=True)
class _Fetched:
    tx_id: bytes
    height: int
    entry: ProvenEntry
    redemption: ProvenEntry | None
    redemption_id: bytes             # the line's redemption (itself, for a redemption line)
    drawn: tuple[tuple[bytes, int], ...]   # that redemption's centres, in the order drawn


def _fetch_line(fetcher: Fetcher, tx: Tx, head: Header) -> _Fetched:
    """One line: its proven entry, the redemption a refund names, and the redemption's draw."""
    view, proven = fetcher.proven(tx.tx_id, head)
    if isinstance(tx.payload, Redeem):
        return _Fetched(tx.tx_id, view.height, proven, None, tx.tx_id, _drawn(view))
    redemption_view, redemption = fetcher.proven(tx.payload.redemption_id, head)
    redeem = _decoded(redemption_view.tx, redemption_view.leaf_index)
    if not isinstance(redeem.payload, Redeem):
        raise VerificationFailed(f"refund {tx.tx_id.hex()} names {redeem.tx_id.hex()}, which is not a redemption")
    return _Fetched(tx.tx_id, view.height, proven, redemption, redeem.tx_id, _drawn(redemption_view))


def _drawn(view: ledger_pb2.TransactionView) -> tuple[tuple[bytes, int], ...]:
    return tuple((bytes(d.centre_id), d.points) for d in view.drawn)


def _attribution(fetcher: Fetcher, partner_id: bytes, lines: list[_Fetched], found: list, first: int,
                 min_height: int) -> dict[bytes, tuple]:
    """The centre split of each line, from its redemption's draw and the partner's own refunds
    of that redemption before it: the partner's history from its earliest redemption on."""
    if not lines:
        return {}
    start = min(line.redemption.leaf_index if line.redemption else line.entry.leaf_index for line in lines)
    earlier = fetcher.history(partner_id, start - 1, first, min_height, MAX_SCANNED_HISTORY) if start < first else []
    drawn = {line.redemption_id: line.drawn for line in lines}
    try:
        return attribute_drawn(drawn, ((tx, code) for _, tx, code in earlier + found))
    except AttributionError as exc:
        raise VerificationFailed(str(exc)) from None


def _print_statement(statement: Statement, show_lines: bool) -> None:
    parts, totals = statement.parts, statement.totals()
    click.echo(f"settlement statement of partner {parts.partner_id.hex()}, "
               f"{iso_ms(parts.from_ms)} to {iso_ms(parts.to_ms)} (excluded)")
    click.echo(f"  at certified block {statement.checkpoint.height} (tree size {statement.checkpoint.tree_size}), "
               f"{totals['lines']} lines, every proof verified")
    if show_lines:
        for line in statement.lines:
            sign = "-" if line.kind == "refund" else "+"
            click.echo(f"  {iso_ms(line.header.time_ms)}  {line.kind:<6} {sign}{line.points:>9}  "
                       f"member {line.member_id.hex()}  tx {line.tx.tx_id.hex()}")
    for row in statement.by_centre():
        click.echo(f"  centre {row['centre_id']}: redeemed {row['redeemed']}, refunded {row['refunded']}, "
                   f"net {row['net']}")
    click.echo(f"  total: redeemed {totals['redeemed']}, refunded {totals['refunded']}, net {totals['net']} points")
    if not statement.period_closed:
        click.echo("  note: the period is not over at the certified head; later blocks may add lines", err=True)


@settlement_group.command("verify")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--genesis", "genesis_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The consortium's genesis block file: the only thing trusted.")
@json_option
def settlement_verify(file: Path, genesis_file: Path, as_json: bool) -> None:
    """Check a JSON statement with only the genesis block: the checkpoint's and every block's
    certificate, every line's signatures and inclusion proof, and every total. Exit 0 or 5."""
    genesis_raw, _ = load_anchor(genesis_file)
    data = read_file(file, MAX_STATEMENT_FILE_BYTES, "statement file")
    try:
        statement = verify_statement(data, genesis_raw)
    except ReceiptError as exc:
        raise VerificationFailed(f"{file}: {exc}") from None
    if as_json:
        emit_json({"verified": True, "partner_id": statement.parts.partner_id.hex(),
                   "checkpoint_height": statement.checkpoint.height, "period_closed": statement.period_closed,
                   "totals": statement.totals(), "by_centre": statement.by_centre(),
                   "attribution_proven": False})
        return
    click.echo(f"statement VERIFIED: {file}")
    _print_statement(statement, show_lines=False)
    click.echo("  centre attribution: arithmetic checked; it is computed from members' histories, "
               "which the statement does not prove")


__all__ = ["receipt_group", "settlement_group", "write_receipt"]
