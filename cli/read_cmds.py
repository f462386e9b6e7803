"""``nanum balance``, ``nanum history`` and ``nanum tx show``: reading the ledger.

Centres, partners and auditors read as their client.toml's certificate; a member passes
``--key`` and the read is signed with their own key (a member reads only their own account).

``tx show`` verifies what the node sends: the entry holds exactly the transaction asked for,
its signatures verify under this chain id, and the Merkle inclusion proof leads from the
entry's leaf hash to the tree root the node reports. Any failure exits with 5.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.receipt_cmds import write_receipt
from cli.common import (
    EXIT_VERIFY_FAILED,
    UserError,
    json_option,
)
from ledger.block import decode_entry
from ledger.codes import Code
from ledger.encoding import DecodeError
from ledger.ledger import MAX_HISTORY_PAGE
from ledger.merkle import ProofError, leaf_hash, verify_inclusion
from ledger.tx import (
    Rejected,
    Tx,
    check_signatures,
    decode_tx,
)

from cli.session import (
    DEFAULT_HISTORY_LIMIT,
    MAX_HISTORY_ITEMS_ALL,
    client_option,
    load_member_key,
    member_key_options,
    party_id_callback,
    tx_id_callback,
    Session,
    talking,
    emit_json,
    payload_fields,
    kind_name,
    summary,
)


# --- balance ---------------------------------------------------------------------------------


@click.command("balance")
@click.argument("member_id", callback=party_id_callback("a member id"))
@client_option
@click.option("--stale-ok", is_flag=True, help="Accept an answer from any node, possibly a little behind.")
@click.option("--min-height", metavar="H", type=click.IntRange(min=0), default=0,
              help="Wait (bounded) until the answering node has applied this height (read your writes).")
@member_key_options
@json_option
def balance(member_id: bytes, client_file: Path, stale_ok: bool, min_height: int, as_json: bool,
            member_key_file: Path | None = None, passphrase_env: str | None = None) -> None:
    """A member's points: the total and how many came from each centre."""
    session = Session(client_file)
    member = load_member_key(member_key_file, passphrase_env)
    with talking(), session.client(member) as client:
        view = client.balance(member_id, min_height=min_height, stale_ok=stale_ok)
    parties = session.genesis.parties()
    by_centre = [{"centre_id": c.centre_id.hex(), "name": parties.get(c.centre_id, (None, None))[1],
                  "points": c.points} for c in view.by_centre]
    if as_json:
        emit_json({"member_id": member_id.hex(), "registered": view.registered, "points": view.points,
                   "by_centre": by_centre, "height": view.height})
        return
    if not view.registered:
        click.echo(f"member {member_id.hex()} is not registered (at height {view.height})")
        return
    click.echo(f"member {member_id.hex()}: {view.points} points (at height {view.height})")
    for row in by_centre:
        name = f"  {row['name']}" if row["name"] else ""
        click.echo(f"  {row['points']:>12}  from centre {row['centre_id']}{name}")


# --- history ---------------------------------------------------------------------------------


@click.command("history")
@click.argument("party_id", callback=party_id_callback("a party id"))
@client_option
@click.option("--after", "after_leaf", metavar="LEAF", type=click.IntRange(min=-1), default=-1,
              help="Start after this leaf index (the 'next' value a previous page printed).")
@click.option("--limit", metavar="N", type=click.IntRange(1, MAX_HISTORY_PAGE), default=None,
              help=f"Transactions per page, 1..{MAX_HISTORY_PAGE} [default {DEFAULT_HISTORY_LIMIT}; "
                   f"{MAX_HISTORY_PAGE} with --all].")
@click.option("--all", "follow", is_flag=True,
              help=f"Follow pages to the end (at most {MAX_HISTORY_ITEMS_ALL} transactions).")
@click.option("--min-height", metavar="H", type=click.IntRange(min=0), default=0,
              help="Wait (bounded) until the answering node has applied this height (read your writes).")
@member_key_options
@json_option
def history(party_id: bytes, client_file: Path, after_leaf: int, limit: int | None, follow: bool,
            min_height: int, as_json: bool, member_key_file: Path | None = None,
            passphrase_env: str | None = None) -> None:
    """The transactions touching a member, centre or partner, oldest first, one per line."""
    session = Session(client_file)
    member = load_member_key(member_key_file, passphrase_env)
    limit = limit or (MAX_HISTORY_PAGE if follow else DEFAULT_HISTORY_LIMIT)
    rows: list[dict[str, Any]] = []
    more, after = False, after_leaf
    with talking(), session.client(member) as client:
        while True:
            page = client.history(party_id, after, min(limit, MAX_HISTORY_ITEMS_ALL - len(rows)), min_height)
            for item in page.items:
                rows.append(_history_row(item))
            more = page.more
            if page.items:
                after = page.items[-1].leaf_index
            if not (follow and more and page.items and len(rows) < MAX_HISTORY_ITEMS_ALL):
                break
    next_after = after if more else None
    if as_json:
        emit_json({"party_id": party_id.hex(), "items": rows, "more": more, "next_after": next_after})
        return
    if not rows:
        click.echo(f"no transactions for {party_id.hex()} after leaf {after_leaf}")
    else:
        click.echo(f"{'leaf':>7} {'height':>7}  {'kind':<15} {'result':<26} {'tx id':<32}  details")
    for r in rows:
        click.echo(f"{r['leaf_index']:>7} {r['height']:>7}  {r['kind']:<15} {r['code_name']:<26} "
                   f"{r['tx_id']:<32}  {r['summary']}")
    if more:
        bound = f" (stopped at {MAX_HISTORY_ITEMS_ALL})" if follow else ""
        click.echo(f"more{bound}: continue with --after {next_after}")


def _history_row(item) -> dict[str, Any]:
    try:
        tx = decode_tx(item.tx)
    except DecodeError as exc:
        raise UserError(f"a node sent an undecodable transaction at leaf {item.leaf_index}: {exc}",
                        EXIT_VERIFY_FAILED) from None
    code = Code(item.code)
    return {"leaf_index": item.leaf_index, "height": item.height, "tx_id": tx.tx_id.hex(), "kind": kind_name(tx),
            "code": int(code), "code_name": code.name, "author_id": tx.author_id.hex(),
            "payload": payload_fields(tx), "summary": summary(tx)}


# --- tx show ---------------------------------------------------------------------------------


@click.group("tx")
def tx_group() -> None:
    """Look up transactions."""


class VerificationFailed(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(f"verification FAILED: {message}", EXIT_VERIFY_FAILED)


@tx_group.command("show")
@click.argument("tx_id", callback=tx_id_callback("a transaction id"))
@client_option
@click.option("--min-height", metavar="H", type=click.IntRange(min=0), default=0,
              help="Wait (bounded) until the answering node has applied this height.")
@click.option("--receipt", "receipt_file", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a receipt to FILE, checkable offline with `nanum receipt verify`.")
@member_key_options
@json_option
def tx_show(tx_id: bytes, client_file: Path, min_height: int, as_json: bool, receipt_file: Path | None = None,
            member_key_file: Path | None = None, passphrase_env: str | None = None) -> None:
    """A transaction decoded, its result and height, and its inclusion proof, verified here."""
    session = Session(client_file)
    chain_id = session.chain_id
    member = load_member_key(member_key_file, passphrase_env)
    with talking(), session.client(member) as client:
        view = client.transaction(tx_id, min_height=min_height)
    tx = verify_view(view, tx_id, chain_id)
    receipt = (write_receipt(session, tx_id, max(min_height, view.height), receipt_file, member)
               if receipt_file else None)
    code = Code(view.code)
    role_name = session.genesis.parties().get(tx.author_id)
    author = f"{role_name[0]} {role_name[1]}" if role_name else None
    if as_json:
        emit_json({"tx_id": tx.tx_id.hex(), "kind": kind_name(tx), "chain_id": tx.chain_id.hex(),
                   "author_key": tx.author.hex(), "author_id": tx.author_id.hex(),
                   "author_name": author, "payload": payload_fields(tx),
                   "code": int(code), "code_name": code.name, "message": code.message,
                   "height": view.height, "index": view.index, "leaf_index": view.leaf_index,
                   "tree_size": view.tree_size, "tree_root": view.tree_root.hex(),
                   "inclusion_proof": [h.hex() for h in view.inclusion_proof], "verified": True,
                   **({"receipt_file": str(receipt_file)} if receipt else {})})
        return
    click.echo(f"transaction {tx.tx_id.hex()}  ({kind_name(tx)})")
    click.echo(f"  author:  {tx.author_id.hex()}" + (f"  ({author})" if author else ""))
    for key, value in payload_fields(tx).items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        click.echo(f"  {key + ':':<18} {value}")
    click.echo(f"  result:  {code.name} ({int(code)}): {code.message}")
    click.echo(f"  recorded at height {view.height}, position {view.index}, leaf {view.leaf_index}")
    click.echo(f"inclusion proof verified against tree size {view.tree_size} root {view.tree_root.hex()} "
               f"({len(view.inclusion_proof)} hashes); signatures verified")
    if receipt:
        click.echo(f"receipt written to {receipt_file}: block {receipt.height}, certified by {receipt.signers} "
                   f"of the {receipt.nodes} genesis nodes, verified")


def verify_view(view, tx_id: bytes, chain_id: bytes) -> Tx:
    """Checks every link of what a node says about a transaction; VerificationFailed if any fails:
    the entry decodes to [tx, code] with the view's bytes and code, the tx is the one asked for on
    this chain with valid signatures, and the inclusion proof leads to the reported root."""
    try:
        entry_tx, entry_code = decode_entry(view.entry)
        tx = decode_tx(view.tx)
    except DecodeError as exc:
        raise VerificationFailed(f"the node's entry or transaction does not decode: {exc}") from None
    if entry_tx != view.tx or entry_code != view.code:
        raise VerificationFailed("the Merkle entry does not hold the transaction and result the node reports")
    if tx.tx_id != tx_id:
        raise VerificationFailed(f"the node answered with transaction {tx.tx_id.hex()}, not {tx_id.hex()}")
    try:
        check_signatures(tx, chain_id)
    except Rejected as exc:
        raise VerificationFailed(f"the transaction does not check out on this chain: {exc.rejection}") from None
    try:
        verify_inclusion(leaf_hash(view.entry), view.leaf_index, view.tree_size, list(view.inclusion_proof),
                         view.tree_root)
    except ProofError as exc:
        raise VerificationFailed(f"inclusion proof for leaf {view.leaf_index} against tree size "
                                 f"{view.tree_size} root {view.tree_root.hex()}: {exc}") from None
    return tx


__all__ = ["balance", "history", "tx_group"]
