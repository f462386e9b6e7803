"""What every ``nanum`` command that talks to nodes shares.

The ``--client`` option and the ``Session`` it opens (the client.toml, the chain id read from its
genesis file, the names of the genesis parties), the ``--key`` option of a member's signed reads,
parsing of hex ids, turning a ``ClientError``
into one line and a documented exit code, and describing a transaction for people (one line)
and for scripts (a JSON object).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import click
import grpc

from cli.common import (
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    UserError,
    passphrase,
)
from cli.text import echo
from ledger.block import BlockError, decode_entry, decode_genesis_block
from ledger.codes import Code
from ledger import keys
from ledger.keys import KeyFileError, SigningKey, parse_hex_id, read_key_file
from ledger.limits import PARTY_ID_BYTES, TX_ID_BYTES
from ledger.state import MemoryState
from ledger.tx import (
    Deposit,
    DepositKind,
    Genesis,
    Governance,
    Redeem,
    Refund,
    RegisterMember,
    Reversal,
    Tx,
    decode_tx,
)
from node.client import ClientError, LedgerClient, TlsFiles
from node.config import ClientConfig, ConfigError, load_client_config

DEFAULT_HISTORY_LIMIT = 50
MAX_HISTORY_ITEMS_ALL = 10_000        # --all follows pages up to this many items
MAX_GENESIS_FILE_BYTES = 8 * 1024 * 1024

# --- options and ids -----------------------------------------------------------------------

client_option = click.option(
    "--client", "client_file", type=click.Path(dir_okay=False, path_type=Path), envvar="NANUM_CLIENT",
    required=True, help="Your client.toml (env NANUM_CLIENT).")


def member_key_options(func):
    """``--key`` (and ``--passphrase-env``) of a read: a member signs their own reads with their
    key. Deliberately no environment variable and no client.toml default: a centre's or
    partner's key must never be sent as a member's read grant by accident."""
    func = click.option("--passphrase-env", metavar="VAR",
                        help="The member key's passphrase is in this environment variable.")(func)
    func = click.option("--key", "member_key_file", type=click.Path(dir_okay=False, path_type=Path),
                        help="A member's own key (PEM): sign this read as that member (a member reads "
                             "only their own balance, history and transactions).")(func)
    return func


def load_member_key(key_file: Path | None, passphrase_env: str | None) -> SigningKey | None:
    if key_file is None:
        return None
    try:
        return read_key_file(key_file, passphrase(passphrase_env))
    except KeyFileError as exc:
        message = str(exc)
        raise UserError(message if str(key_file) in message else f"key file {key_file}: {message}") from None


def parse_id(text: str, size: int, what: str) -> bytes:
    """A hex id typed by a person; UserError (exit 3) naming the value otherwise."""
    try:
        return parse_hex_id(text, size, what)
    except ValueError as exc:
        raise UserError(f"{exc}: {text!r}") from None


def id_callback(size: int, what: str):
    """A click callback turning an option or argument into id bytes (None stays None)."""
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes | None:
        return None if value is None else parse_id(value, size, what)
    return callback


def party_id_callback(what: str):
    return id_callback(PARTY_ID_BYTES, what)


def tx_id_callback(what: str):
    return id_callback(TX_ID_BYTES, what)


# --- a session: client.toml, chain id, party names -----------------------------------------


@dataclass
class GenesisInfo:
    chain_id: bytes
    genesis: Genesis

    def parties(self) -> dict[bytes, tuple[str, str]]:
        """Party id → (role, name) for every party named in the genesis block."""
        found = {}
        for role, parties in (("admin", self.genesis.admins), ("centre", self.genesis.centres),
                              ("partner", self.genesis.partners), ("node", self.genesis.nodes)):
            for party in parties:
                found[party.party_id] = (role, party.name)
        return found


def read_genesis(path: Path) -> GenesisInfo:
    """Block 0 from a genesis file, fully verified (it is the trust anchor); UserError if not."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_GENESIS_FILE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read genesis file {path}: {exc.strerror}") from None
    if len(raw) > MAX_GENESIS_FILE_BYTES:
        raise UserError(f"genesis file {path} is larger than {MAX_GENESIS_FILE_BYTES} bytes")
    try:
        executed = decode_genesis_block(raw, MemoryState())
    except BlockError as exc:
        raise UserError(f"genesis file {path} is not a valid genesis block: {exc}") from None
    genesis_tx = decode_tx(decode_entry(executed.block.entries[0])[0])
    return GenesisInfo(executed.block.header.chain_id, genesis_tx.payload)


class Session:
    """What a command that talks to nodes needs, from one client.toml."""

    def __init__(self, client_file: Path) -> None:
        try:
            self.config: ClientConfig = load_client_config(client_file)
        except ConfigError as exc:
            raise UserError(str(exc)) from None
        self._genesis: GenesisInfo | None = None

    @property
    def genesis(self) -> GenesisInfo:
        if self._genesis is None:
            self._genesis = read_genesis(self.config.genesis_file)
        return self._genesis

    @property
    def chain_id(self) -> bytes:
        return self.genesis.chain_id

    def client(self, member: SigningKey | None = None) -> LedgerClient:
        """A client over this config's TLS identity; with ``member``, its reads are signed by
        that member's key (docs/FORMAT.md §16)."""
        config = self.config
        try:
            tls = TlsFiles.load(config.ca_cert_file, config.tls_cert_file, config.tls_key_file)
        except OSError as exc:
            raise UserError(f"cannot read a TLS file named in the client config: {exc.filename}: "
                            f"{exc.strerror}") from None
        client = LedgerClient(list(config.nodes), tls, config.timeout_ms, config.max_message_bytes)
        return client.sign_reads_as(member, self.chain_id) if member is not None else client


# --- errors from the nodes ------------------------------------------------------------------


class Refused(UserError):
    """The ledger refused a transaction: one line ``refused: NAME (n): message``, exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message, EXIT_REFUSED)

    def show(self, file: Any = None) -> None:
        echo(self.format_message(), err=True)


def refusal_line(code: Code, tx_id: bytes | None = None, height: int | None = None) -> str:
    line = f"refused: {code.name} ({int(code)}): {code.message}"
    where = []
    if tx_id is not None:
        where.append(f"tx {tx_id.hex()}")
    if height is not None and code == Code.EXISTS_WITH_DIFFERENT_FIELDS:
        where.append(f"the id was taken at height {height}")
    elif height is not None and not code.static:
        where.append(f"recorded at height {height}")
    elif not code.static:         # refused at admission from the node's state (node/admission.py)
        where.append("not recorded: refused before it reached a block")
    return line + (f" [{', '.join(where)}]" if where else "")


def unavailable(error: ClientError, tx_id: bytes | None = None) -> UserError:
    retry = (f"it is safe to retry with the same --tx-id {tx_id.hex()}" if tx_id is not None
             else "retrying may help")
    return UserError(f"unavailable: {error} ({error.status.name}); {retry}", EXIT_UNAVAILABLE)


def client_failure(error: ClientError, tx_id: bytes | None = None) -> UserError:
    """The one-line error and exit code for a failed call (not for a refusal with a code)."""
    if error.retryable:
        return unavailable(error, tx_id)
    status = error.status
    if status == grpc.StatusCode.NOT_FOUND:
        return UserError(f"not found: {error}")
    if status == grpc.StatusCode.PERMISSION_DENIED:
        hint = "; a member signs their own reads with --key MEMBER.key" if "signed read" in str(error) else ""
        return UserError(f"not allowed: {error} ({status.name}){hint}")
    if status == grpc.StatusCode.UNAUTHENTICATED:
        return UserError(f"not authenticated: {error} ({status.name})")
    if status == grpc.StatusCode.INVALID_ARGUMENT:
        return UserError(f"the node refused the request: {error}")
    return UserError(f"the node failed: {error} ({status.name}); retrying may help", EXIT_UNAVAILABLE)


@contextmanager
def talking(tx_id: bytes | None = None) -> Iterator[None]:
    """Turns ClientError (and stray gRPC errors) into one line and an exit code."""
    try:
        yield
    except ClientError as error:
        if error.code is not None:
            raise Refused(refusal_line(error.code, tx_id, error.height)) from None
        raise client_failure(error, tx_id) from None
    except grpc.RpcError as error:       # a call made outside LedgerClient.call's handling
        raise client_failure(ClientError(error.code(), error.details() or error.code().name), tx_id) from None


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, sort_keys=False))


# --- describing transactions ----------------------------------------------------------------


def payload_fields(tx: Tx) -> dict[str, Any]:
    """The payload as JSON-ready fields (ids as lowercase hex)."""
    p = tx.payload
    if isinstance(p, RegisterMember):
        return {"member_key": p.member_key.hex(), "member_id": p.member_id.hex()}
    if isinstance(p, Deposit):
        return {"member_id": p.member_id.hex(), "points": p.points, "deposit_kind": p.deposit_kind.name.lower(),
                "quantity": p.quantity, "activity_ref": p.activity_ref, "category": p.category}
    if isinstance(p, Redeem):
        v = p.voucher
        return {"member_id": v.member_id.hex(), "partner_id": v.partner_id.hex(), "points": p.points,
                "memo": p.memo, "voucher": {"max_points": v.max_points, "nonce": v.nonce.hex(),
                                            "expiry_ms": v.expiry_ms, "member_key": v.member_key.hex()}}
    if isinstance(p, Refund):
        return {"redemption_tx_id": p.redemption_id.hex(), "points": p.points, "memo": p.memo}
    if isinstance(p, Reversal):
        return {"deposit_tx_id": p.deposit_id.hex(), "reason": p.reason}
    if isinstance(p, Governance):
        return {"action": p.action.name.lower(), "role": p.role.name.lower(), "public_key": p.public_key.hex(),
                "party_id": keys.party_id(p.public_key).hex(), "name": p.name, "address": p.address}
    if isinstance(p, Genesis):
        return {"name": p.name, "created_ms": p.created_ms, "threshold": p.threshold,
                "admins": len(p.admins), "centres": len(p.centres), "partners": len(p.partners),
                "nodes": len(p.nodes)}
    raise AssertionError(f"no description for {type(p).__name__}")


def kind_name(tx: Tx) -> str:
    return tx.kind.name.lower().replace("_", "-")


def summary(tx: Tx) -> str:
    """One short human line for the payload."""
    p = tx.payload
    if isinstance(p, RegisterMember):
        return f"member {p.member_id.hex()}"
    if isinstance(p, Deposit):
        what = {DepositKind.VOLUNTEERING: f"{p.quantity} min volunteering",
                DepositKind.DONATION: f"donation of {p.quantity}",
                DepositKind.OTHER: "other"}[p.deposit_kind]
        sdg = f", SDG {p.category}" if p.category else ""
        return f"{p.points} points to member {p.member_id.hex()} ({what}{sdg}, ref {p.activity_ref!r})"
    if isinstance(p, Redeem):
        memo = f", memo {p.memo!r}" if p.memo else ""
        return f"{p.points} points from member {p.voucher.member_id.hex()} at partner {tx.author_id.hex()}{memo}"
    if isinstance(p, Refund):
        memo = f", memo {p.memo!r}" if p.memo else ""
        return f"{p.points} points back from redemption {p.redemption_id.hex()}{memo}"
    if isinstance(p, Reversal):
        return f"deposit {p.deposit_id.hex()} reversed: {p.reason!r}"
    if isinstance(p, Governance):
        return f"{p.action.name.lower()} {p.role.name.lower()} {keys.party_id(p.public_key).hex()} {p.name!r}".rstrip()
    if isinstance(p, Genesis):
        return f"consortium {p.name!r} founded"
    raise AssertionError(f"no summary for {type(p).__name__}")
