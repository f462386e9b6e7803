"""``nanum audit …`` and ``nanum node check``: verifying the ledger without trusting any node.

Owns the auditor's commands: ``audit export`` (certified blocks from a node into an export file,
resumable), ``audit verify`` (a whole chain, from an export or streamed from a node, on every
core), ``audit checkpoint`` (the latest certified checkpoint as a signed note),
``audit consistency`` (a later checkpoint extends an earlier one) and ``audit keys`` (the
nodes' signed-note verifier keys, for other signed-note tools); and a node operator's
``node check`` (the store's quick integrity check, or ``--full`` re-verification).

The trust anchor is always the auditor's own genesis block (``--genesis``, or the one named in
the client config): an export or a node whose block 0 differs is refused. Exit codes: 0 all
checks passed, 2 usage, 3 unreadable input (a file that cannot be opened or read), 4 node
unreachable, 5 verification failed (including an export file that is damaged anywhere, from
its first byte on: with ``--json`` there is always one verdict with the problem located).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import click

from cli.common import EXIT_UNAVAILABLE, EXIT_USAGE, EXIT_VERIFY_FAILED, UserError, json_option
from cli.text import echo, printable
from ledger.block import BlockError, decode_genesis_block
from ledger.certificate import Certificate, quorum
from ledger.checkpoint import CheckpointBody, key_id, key_name, signed_note, vkey
from ledger.encoding import DecodeError
from ledger.export import (
    ExportError,
    ExportReader,
    create_export,
    resume_export,
    verify_input,
)
from ledger.keys import party_id
from ledger.limits import MAX_NOTE_BYTES
from ledger.merkle import ProofError, verify_consistency
from ledger.parallel import MAX_WORKERS, default_workers, verify_chain_parallel
from ledger.state import MemoryState
from ledger.store import Store, StoreError
from ledger.verify import (
    NoteError,
    Problem,
    Report,
    check_store,
    verify_chain_nodes,
    verify_note,
    verify_store,
)
from node.config import ConfigError, load_client_config, load_config

PAGE_BLOCKS = 64                      # blocks asked of a node per StreamBlocks call
MAX_GENESIS_BYTES = 8 * 1024 * 1024

client_option = click.option("--client", "client_file", type=click.Path(dir_okay=False, path_type=Path),
                             envvar="NANUM_CLIENT", help="A client.toml (env NANUM_CLIENT).")


class VerifyFailed(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_VERIFY_FAILED)


# --- the trust anchor and the node ----------------------------------------------------------


class Anchor:
    """The auditor's genesis block, verified: its bytes, chain id, and genesis node keys."""

    def __init__(self, path: Path) -> None:
        try:
            with open(path, "rb") as handle:
                self.raw = handle.read(MAX_GENESIS_BYTES + 1)
        except OSError as exc:
            raise UserError(f"cannot read genesis file {path}: {exc.strerror}") from None
        try:
            executed = decode_genesis_block(self.raw, MemoryState())
        except BlockError as exc:
            raise UserError(f"genesis file {path} is not a valid genesis block: {exc}") from None
        self.path = path
        self.chain_id = executed.block.header.chain_id
        self.genesis = executed.txs[0].payload
        self.node_keys = [party.public_key for party in self.genesis.nodes]
        self.nodes = [(party.public_key, party.name) for party in self.genesis.nodes]


if TYPE_CHECKING:
    from node.client import LedgerClient


def _talking():
    from cli.session import talking      # gRPC: imported only by commands that talk to nodes
    return talking()


def _client_and_anchor(client_file: Path, genesis_file: Path | None) -> tuple[LedgerClient, Anchor]:
    from node.client import LedgerClient, TlsFiles
    try:
        config = load_client_config(client_file)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    anchor = Anchor(genesis_file or config.genesis_file)
    try:
        tls = TlsFiles.load(config.ca_cert_file, config.tls_cert_file, config.tls_key_file)
    except OSError as exc:
        raise UserError(f"cannot read a TLS file named in {client_file}: {exc.filename}: {exc.strerror}") from None
    return LedgerClient(list(config.nodes), tls, config.timeout_ms, config.max_message_bytes), anchor


def _node_pages(client: LedgerClient, start: int, end: int) -> Iterator[list[tuple[int, bytes, bytes]]]:
    """Certified blocks start..end from the node, in pages of at most PAGE_BLOCKS."""
    height = start
    while height <= end:
        page = [(b.height, b.block, b.certificate)
                for b in client.blocks(height, min(PAGE_BLOCKS, end - height + 1))]
        if not page:
            raise UserError(f"the node sent no block at height {height}; retrying may help", EXIT_UNAVAILABLE)
        yield page
        height += len(page)


def _node_genesis(client: LedgerClient) -> bytes:
    page = list(client.blocks(0, 1))
    return page[0].block if page else b""


@contextmanager
def _progress(total: int, label: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, only for a person watching (a terminal, no --json)."""
    if not enabled or total <= 0 or not sys.stderr.isatty():
        yield lambda _n: None
        return
    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield bar.update


def _emit(value: dict) -> None:
    click.echo(json.dumps(value))


# --- nanum audit ---------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """Verify the ledger yourself: exports, full verification, checkpoints."""


@audit_group.command("export")
@client_option
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The export file; an existing one is checked and continued.")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Your genesis block (default: the client config's).")
@json_option
def audit_export(client_file: Path | None, out: Path, genesis_file: Path | None, as_json: bool) -> None:
    """Write the node's certified blocks to an export file (resumable after an interruption)."""
    client, anchor = _client_and_anchor(_required_client(client_file), genesis_file)
    with client, _talking():
        writer, resumed_at = _open_export(client, anchor, out)
        with writer:
            first = writer.next_height
            target = client.checkpoint().height
            with _progress(target - first + 1, "exporting", not as_json) as advance:
                for page in _node_pages(client, first, target):
                    try:
                        writer.append_page(page)
                    except ValueError as exc:
                        raise VerifyFailed(f"the node's blocks do not extend {out}: {exc}") from None
                    advance(len(page))
            last = writer.next_height - 1
    size = out.stat().st_size
    if as_json:
        _emit({"out": str(out), "chain_id": anchor.chain_id.hex(), "resumed_at": resumed_at,
               "first_height": first, "last_height": last, "bytes": size})
    else:
        how = f"continued at height {resumed_at}" if resumed_at is not None else "new export"
        echo(f"exported blocks {first}..{last} to {out} ({how}); it holds blocks 0..{last}, {size} bytes")


def _required_client(client_file: Path | None) -> Path:
    if client_file is None:
        raise UserError("give --client CLIENT.toml (or set NANUM_CLIENT)", EXIT_USAGE)
    return client_file


def _open_export(client: LedgerClient, anchor: Anchor, out: Path):
    """A writer for ``out``: a new export after checking the node's genesis, or the existing
    one checked and continued. Returns (writer, height resumed at or None)."""
    if out.exists():
        try:
            writer, scan = resume_export(out, anchor.chain_id, anchor.raw)
        except ExportError as exc:
            raise UserError(f"cannot continue {out}: {exc}; move it aside to start a new export") from None
        except OSError as exc:
            raise UserError(f"cannot continue {out}: {exc.strerror}") from None
        if scan.genesis != anchor.raw:
            writer.close()
            raise VerifyFailed(f"{out} starts with another genesis block than {anchor.path}")
        return writer, writer.next_height
    if _node_genesis(client) != anchor.raw:
        raise VerifyFailed(f"the node's block 0 is not the genesis block of {anchor.path}")
    try:
        return create_export(out, anchor.chain_id, anchor.raw), None
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror}") from None


@audit_group.command("verify")
@click.option("--export", "export_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify this export file.")
@client_option
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Your genesis block, the trust anchor (needed with --export; default with "
                   "--client: the client config's).")
@click.option("--workers", type=click.IntRange(0, MAX_WORKERS), default=None,
              help="Extra processes for the signature checks, besides this one, which checks too "
                   "while it waits (default: one per core but one; 0: this process only).")
@json_option
def audit_verify(export_file: Path | None, client_file: Path | None, genesis_file: Path | None,
                 workers: int | None, as_json: bool) -> None:
    """Verify every block, signature, certificate, rule, state root and Merkle root."""
    source = click.get_current_context().get_parameter_source("client_file")
    if export_file is not None and source == click.core.ParameterSource.ENVIRONMENT:
        client_file = None                   # NANUM_CLIENT set in the shell; --export was asked for
    if (export_file is None) == (client_file is None):
        raise UserError("give exactly one of --export FILE or --client CLIENT.toml", EXIT_USAGE)
    workers = default_workers() if workers is None else workers
    started = time.monotonic()
    if export_file is not None:
        if genesis_file is None:
            raise UserError("--export needs --genesis FILE: your own genesis block is the trust anchor",
                            EXIT_USAGE)
        report, source = _verify_export(export_file, Anchor(genesis_file), workers, as_json)
    else:
        report, source = _verify_node(client_file, genesis_file, workers, as_json)
    _show_report(report, source, workers, time.monotonic() - started, as_json)
    if not report.ok:
        raise SystemExit(EXIT_VERIFY_FAILED)


@contextmanager
def _export_file(path: Path) -> Iterator:
    """The export file at ``path`` open for reading; UserError (exit 3) if it cannot be read at all,
    which is not a verdict about a chain."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    with handle:
        yield handle


def _verify_export(path: Path, anchor: Anchor, workers: int, as_json: bool) -> tuple[Report, str]:
    with _export_file(path) as handle:
        try:
            reader = ExportReader(handle)
        except ExportError as exc:     # damaged from its first byte: a located problem like any other
            return Report().fail(Problem(0, None, "export", f"not a readable export: {exc}")), str(path)
        if reader.genesis != anchor.raw:
            problem = Problem(0, None, "genesis", f"the export's genesis block is not the one in {anchor.path}; "
                              "refusing to verify a chain you do not anchor")
            return Report().fail(problem), str(path)
        with _progress(path.stat().st_size, "verifying", not as_json) as advance:
            # Reading a file starts no threads, so the workers may be forked.
            report = verify_chain_parallel(anchor.raw, verify_input(reader), workers, require_certificates=True,
                                           on_block=lambda block: advance(len(block)), start_method="fork",
                                           freeze_survivors=True)     # this process verifies once
    return report, str(path)


def _verify_node(client_file: Path, genesis_file: Path | None, workers: int, as_json: bool) -> tuple[Report, str]:
    client, anchor = _client_and_anchor(client_file, genesis_file)
    with client, _talking():
        if _node_genesis(client) != anchor.raw:
            problem = Problem(0, None, "genesis", f"the node's block 0 is not the genesis block of {anchor.path}")
            return Report().fail(problem), client.addresses[0]
        target = client.checkpoint().height

        def blocks() -> Iterator[tuple[bytes, bytes | None]]:
            for page in _node_pages(client, 1, target):
                for _height, block, certificate in page:
                    yield block, certificate or None

        with _progress(target, "verifying", not as_json) as advance:
            report = verify_chain_parallel(anchor.raw, blocks(), workers, require_certificates=True,
                                           on_block=lambda _block: advance(1), freeze_survivors=True)
    return report, client.addresses[0]


def _report_dict(report: Report, source: str, workers: int, seconds: float) -> dict:
    names = report.names
    problem = report.problem
    return {
        "ok": report.ok, "source": source,
        "problem": None if problem is None else {"height": problem.height, "index": problem.index,
                                                 "field": problem.field, "reason": problem.reason},
        "blocks": report.blocks, "transactions": report.transactions, "members": report.members,
        "head_height": report.blocks - 1 if report.blocks else None, "head_hash": report.head_hash.hex(),
        "tree_size": report.tree_size, "tree_root": report.tree_root.hex(), "state_root": report.state_root.hex(),
        "centres": [{"id": c.hex(), "name": names.get(c, ""), "deposited": t.deposited, "reversed": t.reversed,
                     "redeemed": t.redeemed, "refunded": t.refunded, "outstanding": t.outstanding}
                    for c, t in report.centres.items()],
        "partners": [{"id": p.hex(), "name": names.get(p, ""), "redeemed": points}
                     for p, points in report.redeemed_by_partner.items()],
        "workers": workers, "seconds": round(seconds, 3),
    }


def _show_report(report: Report, source: str, workers: int, seconds: float, as_json: bool) -> None:
    summary = _report_dict(report, source, workers, seconds)
    if as_json:
        _emit(summary)
        return
    if not report.ok:
        echo(f"VERIFICATION FAILED: {printable(report.problem)}", err=True)
        if report.blocks:
            echo(f"blocks 0..{report.blocks - 1} verified before it ({report.transactions} transactions)", err=True)
        return
    echo(f"verified {source}: {report.blocks} blocks (0..{report.blocks - 1}), "
         f"{report.transactions} transactions, {report.members} members")
    echo(f"head:  height {report.blocks - 1}, block {summary['head_hash']}")
    echo(f"tree:  size {report.tree_size}, root {summary['tree_root']}")
    echo("points outstanding per centre (deposited - redeemed + refunded - reversed):")
    for c in summary["centres"]:
        echo(f"  {printable(c['name'] or '?'):<24} {c['id']}  {c['outstanding']:>12}  "
             f"(+{c['deposited']} -{c['redeemed']} +{c['refunded']} -{c['reversed']})")
    echo("points redeemed per partner (net of refunds):")
    for p in summary["partners"]:
        echo(f"  {printable(p['name'] or '?'):<24} {p['id']}  {p['redeemed']:>12}")
    echo(f"every hash link, signature, certificate, rule, Merkle root, state root and centre "
         f"balance checked ({workers} workers, {seconds:.1f} s)")


# --- checkpoints ---------------------------------------------------------------------------


def _latest_note(client: LedgerClient, anchor: Anchor) -> str:
    checkpoint = client.checkpoint()
    if checkpoint.chain_id != anchor.chain_id:
        raise VerifyFailed(f"the node serves chain {checkpoint.chain_id.hex()}, not {anchor.chain_id.hex()}")
    try:
        certificate = Certificate.decode(checkpoint.certificate)
    except DecodeError as exc:
        raise VerifyFailed(f"the node's checkpoint at height {checkpoint.height} has no valid certificate: {exc}") \
            from None
    if (certificate.height, certificate.block_hash) != (checkpoint.height, checkpoint.block_hash):
        raise VerifyFailed(f"the node's certificate does not certify its checkpoint at height {checkpoint.height}")
    body = CheckpointBody(checkpoint.chain_id, checkpoint.tree_size, checkpoint.tree_root, checkpoint.height,
                          checkpoint.block_hash)
    return signed_note(body, list(certificate.signatures))


def _checked(text: str, anchor: Anchor, what: str) -> CheckpointBody:
    try:
        return verify_note(text, anchor.chain_id, anchor.node_keys)
    except NoteError as exc:
        raise VerifyFailed(f"{what}: {exc}") from None


def _read_note(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_NOTE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_NOTE_BYTES:
        raise UserError(f"{path} is larger than {MAX_NOTE_BYTES} bytes; not a checkpoint note")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text; not a checkpoint note") from None


@audit_group.command("checkpoint")
@client_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the note to this new file (never overwritten) instead of printing it.")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Your genesis block (default: the client config's).")
@json_option
def audit_checkpoint(client_file: Path | None, out: Path | None, genesis_file: Path | None, as_json: bool) -> None:
    """Fetch the latest certified checkpoint as a signed note, checked against the genesis node keys."""
    client, anchor = _client_and_anchor(_required_client(client_file), genesis_file)
    with client, _talking():
        note = _latest_note(client, anchor)
    body = _checked(note, anchor, "the node's checkpoint")
    if out is not None:
        try:
            with open(out, "x", encoding="utf-8") as handle:
                handle.write(note)
        except FileExistsError:
            raise UserError(f"{out} already exists; checkpoints are never overwritten (keep each one)") from None
        except OSError as exc:
            raise UserError(f"cannot write {out}: {exc.strerror}") from None
    if as_json:
        _emit({"height": body.height, "tree_size": body.tree_size, "tree_root": body.tree_root.hex(),
               "block_hash": body.block_hash.hex(), "note": note, "out": None if out is None else str(out)})
    elif out is None:
        echo(note, nl=False)
    else:
        echo(f"checkpoint at height {body.height} (tree size {body.tree_size}) written to {out}")


@audit_group.command("consistency")
@client_option
@click.option("--old", "old_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The checkpoint note you kept.")
@click.option("--new", "new_file", type=click.Path(dir_okay=False, path_type=Path),
              help="A later note (default: the node's latest certified checkpoint).")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Your genesis block (default: the client config's).")
@json_option
def audit_consistency(client_file: Path | None, old_file: Path, new_file: Path | None, genesis_file: Path | None,
                      as_json: bool) -> None:
    """Prove that a later checkpoint extends the one you kept: nothing before it was rewritten."""
    client, anchor = _client_and_anchor(_required_client(client_file), genesis_file)
    old_text = _read_note(old_file)
    new_text = _read_note(new_file) if new_file is not None else None
    with client, _talking():
        old = _checked(old_text, anchor, f"old checkpoint {old_file}")
        if new_text is None:
            new_text = _latest_note(client, anchor)
        new = _checked(new_text, anchor, "new checkpoint")
        _check_extends(client, old, new)
    if as_json:
        _emit({"ok": True, "old": {"height": old.height, "tree_size": old.tree_size},
               "new": {"height": new.height, "tree_size": new.tree_size, "tree_root": new.tree_root.hex(),
                       "block_hash": new.block_hash.hex()}})
    else:
        echo(f"OK: the checkpoint at height {new.height} (tree size {new.tree_size}) extends the one at "
             f"height {old.height} (tree size {old.tree_size})")


def _check_extends(client: LedgerClient, old: CheckpointBody, new: CheckpointBody) -> None:
    if new.tree_size < old.tree_size or new.height < old.height:
        raise VerifyFailed(f"the new checkpoint (height {new.height}, tree size {new.tree_size}) is older than "
                           f"the old one (height {old.height}, tree size {old.tree_size})")
    if new.tree_size == old.tree_size:
        if (new.height, new.tree_root, new.block_hash) != (old.height, old.tree_root, old.block_hash):
            raise VerifyFailed(f"two different checkpoints for tree size {old.tree_size}: history was rewritten")
        return
    proof = client.consistency_proof(old.tree_size, new.tree_size)
    if (proof.size1, proof.size2) != (old.tree_size, new.tree_size):
        raise VerifyFailed(f"the node answered a proof for sizes {proof.size1}..{proof.size2}, "
                           f"not {old.tree_size}..{new.tree_size}")
    try:
        verify_consistency(old.tree_size, new.tree_size, list(proof.proof), old.tree_root, new.tree_root)
    except ProofError as exc:
        raise VerifyFailed(f"the new checkpoint does not extend the old one ({exc}): history was rewritten") \
            from None


@audit_group.command("keys")
@client_option
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Your genesis block (default: the client config's).")
@click.option("--export", "export_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Verify this export and list the node set in force after its last block "
                   "(default: the genesis node set).")
@json_option
def audit_keys(client_file: Path | None, genesis_file: Path | None, export_file: Path | None,
               as_json: bool) -> None:
    """Print each node's verifier key in the signed-note form <name>+<key id>+<key>.

    Any C2SP signed-note implementation (for example Go's golang.org/x/mod/sumdb/note) given
    these keys verifies a nanum checkpoint note; a checkpoint needs a majority of them."""
    if genesis_file is None:
        if client_file is None:
            raise UserError("give --genesis FILE or --client CLIENT.toml (whose genesis file is used)", EXIT_USAGE)
        try:
            genesis_file = load_client_config(client_file).genesis_file
        except ConfigError as exc:
            raise UserError(str(exc)) from None
    anchor = Anchor(Path(genesis_file))
    nodes, height, source = anchor.nodes, 0, str(anchor.path)
    if export_file is not None:
        nodes, height = _nodes_after_export(export_file, anchor)
        source = str(export_file)
    rows = [{"name": name, "party_id": party_id(pk).hex(), "public_key": pk.hex(), "key_name": key_name(pk),
             "key_id": key_id(pk).hex(), "vkey": vkey(pk)} for pk, name in sorted(nodes, key=lambda n: key_name(n[0]))]
    needed = quorum(len(rows))
    if as_json:
        _emit({"source": source, "height": height, "origin": f"nanum/{anchor.chain_id.hex()}",
               "quorum": needed, "nodes": rows})
        return
    echo(f"node set in force after block {height} of {source}: {len(rows)} nodes; a checkpoint note "
               f"needs valid signatures of {needed}")
    for row in rows:
        echo(f"{row['vkey']}  {printable(row['name'])}")


def _nodes_after_export(path: Path, anchor: Anchor) -> tuple[list[tuple[bytes, str]], int]:
    """The node set after the last block of a verified export; VerifyFailed if it does not verify."""
    with _export_file(path) as handle:
        try:
            reader = ExportReader(handle)
        except ExportError as exc:
            raise VerifyFailed(f"{path} is not a readable export: {exc}") from None
        if reader.genesis != anchor.raw:
            raise VerifyFailed(f"the genesis block of {path} is not the one in {anchor.path}")
        report, parties = verify_chain_nodes(anchor.raw, verify_input(reader))
    if not report.ok:
        raise VerifyFailed(f"{path} does not verify, so its node set is not trusted: {report.problem}")
    return [(party.public_key, party.name) for party in parties], report.blocks - 1


# --- nanum node check ----------------------------------------------------------------------


@click.command("check")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              envvar="NANUM_CONFIG", help="The node's TOML file (env NANUM_CONFIG).")
@click.option("--full", is_flag=True, help="Replay every block and compare the whole store (slower).")
@json_option
def node_check(config_file: Path, full: bool, as_json: bool) -> None:
    """Check a node's store: the quick start-up check, or with --full a complete re-verification."""
    try:
        config = load_config(config_file)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    path = Path(config.data_dir) / "ledger"
    if not (path / "data.mdb").exists():
        raise UserError(f"no store at {path}: the node has not run yet, or its data folder moved")
    try:
        with Store(path, config.map_size_bytes) as store:
            problem, height = _check_node_store(store, Path(config.genesis_file), full)
    except StoreError as exc:
        raise UserError(str(exc)) from None
    kind = "full" if full else "quick"
    if as_json:
        _emit({"ok": problem is None, "check": kind, "store": str(path), "height": height,
               "problem": None if problem is None else {"height": problem.height, "index": problem.index,
                                                        "field": problem.field, "reason": problem.reason}})
    elif problem is None:
        echo(f"store {path} passes the {kind} check (height {height})")
    else:
        echo(f"store {path} fails the {kind} check: {problem}", err=True)
    if problem is not None:
        raise SystemExit(EXIT_VERIFY_FAILED)


def _check_node_store(store: Store, genesis_file: Path, full: bool) -> tuple[Problem | None, int | None]:
    try:
        genesis = genesis_file.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read genesis file {genesis_file}: {exc.strerror}") from None
    if store.block(0) != genesis:
        return Problem(0, None, "genesis", f"block 0 of the store is not {genesis_file}"), None
    problem = check_store(store)
    if full and (problem is None or problem.field != "store"):      # "store": too broken to replay
        try:
            report = verify_store(store, certificates=True)
        except (DecodeError, KeyError, ValueError) as exc:
            report = Report().fail(Problem(0, None, "store", f"unreadable: {type(exc).__name__}: {exc}"))
        if not report.ok:
            return report.problem, None
    if problem is not None:
        return problem, None
    return None, store.height()


