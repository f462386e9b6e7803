"""Commands that write to the ledger, and the member's offline voucher.

``nanum member register`` and ``nanum deposit`` and ``nanum reverse`` (a centre's key),
``nanum voucher create`` (a member's key, offline), ``nanum redeem`` and ``nanum refund``
(a partner's key).

Every write is built and signed here, with a transaction id that is random unless
``--tx-id`` pins it, and submitted through ``LedgerClient`` (which retries the same bytes
when that is safe). Because the id makes a submission idempotent, a script that did not hear
back can run the same command with the same ``--tx-id``: it gets the first result, marked
``duplicate``. Every input is checked before anything is signed or sent.
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from cli.common import EXIT_USAGE, UserError, json_option, passphrase
from cli.session import (
    Refused,
    Session,
    client_failure,
    client_option,
    emit_json,
    party_id_callback,
    read_genesis,
    refusal_line,
    tx_id_callback,
)
from cli.text import echo
from ledger import files, keys
from ledger.codes import Code
from ledger.encoding import DecodeError, text_problem
from ledger.keys import KeyFileError, SigningKey, read_key_file
from ledger.limits import (
    MAX_ACTIVITY_REF_BYTES,
    MIN_ACTIVITY_REF_BYTES,
    MAX_DONATION_AMOUNT,
    MAX_MEMO_BYTES,
    MAX_POINTS_PER_TX,
    MAX_REASON_BYTES,
    MAX_VOLUNTEER_MINUTES,
    MAX_VOUCHER_POINTS,
    MIN_VOUCHER_POINTS,
    PUBLIC_KEY_BYTES,
    SDG_GOALS,
    TX_ID_BYTES,
    VOUCHER_NONCE_BYTES,
)
from ledger.tx import Deposit, DepositKind, Payload, Redeem, Refund, RegisterMember, Reversal, make_tx
from ledger.voucher import COMPACT_PREFIX, MAX_COMPACT_CHARS, Voucher, sign_voucher
from node.client import ClientError

MAX_VOUCHER_DAYS = 30
MAX_VOUCHER_MS = MAX_VOUCHER_DAYS * 86_400_000
MAX_SMALL_FILE_BYTES = 16 * 1024          # a voucher file or a member's key file
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_DURATION_PART = re.compile(r"(\d{1,9})([smhd])")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

VOUCHER_FILE_MODE = 0o600        # a voucher spends points: readable by its holder only


# --- options ---------------------------------------------------------------------------------

def _signing_options(func):
    func = click.option("--passphrase-env", metavar="VAR",
                        help="The key's passphrase is in this environment variable.")(func)
    func = click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), envvar="NANUM_KEY",
                        help="Your Ed25519 key (PEM); defaults to key_file in client.toml (env NANUM_KEY).")(func)
    return func


tx_id_option = click.option(
    "--tx-id", "tx_id", metavar="HEX32", callback=tx_id_callback("--tx-id"),
    help="Pin the transaction id (32 hex digits) so a retry is recognised; random by default.")


def _text_callback(what: str, max_bytes: int, min_bytes: int = 0):
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        size = len(value.encode("utf-8"))
        if not min_bytes <= size <= max_bytes:
            raise UserError(f"{what} must be {min_bytes} to {max_bytes} bytes of UTF-8 text, got {size}")
        problem = text_problem(value)      # the ledger's own text rule (FORMAT.md §1)
        if problem is not None:
            raise UserError(f"{what}: {problem}")
        return value
    return callback


points_option = click.option("--points", required=True, metavar="N", type=click.IntRange(1, MAX_POINTS_PER_TX),
                             help=f"Whole points, 1..{MAX_POINTS_PER_TX}.")
memo_option = click.option("--memo", default="", callback=_text_callback("--memo", MAX_MEMO_BYTES),
                           help=f"A short note (at most {MAX_MEMO_BYTES} bytes; never personal data).")


# --- keys, building, submitting ------------------------------------------------------------

def load_signing_key(key_file: Path | None, default: Path | None, passphrase_env: str | None) -> SigningKey:
    path = key_file or default
    if path is None:
        raise UserError("no signing key: pass --key FILE (or set NANUM_KEY), or set key_file in client.toml",
                        EXIT_USAGE)
    secret = passphrase(passphrase_env)
    try:
        return read_key_file(path, secret)
    except KeyFileError as exc:
        message = str(exc)
        raise UserError(message if str(path) in message else f"key file {path}: {message}") from None


def new_tx_id(pinned: bytes | None) -> bytes:
    return pinned if pinned is not None else os.urandom(TX_ID_BYTES)


def submit(session: Session, key: SigningKey, tx_id: bytes, payload: Payload, as_json: bool,
           extra: dict[str, Any] | None = None) -> None:
    """Signs, submits and reports one transaction; exits 1 if refused, 4 if unavailable."""
    try:
        tx = make_tx(key, session.chain_id, tx_id, payload)
    except (DecodeError, ValueError) as exc:
        where = f" ({exc.field})" if getattr(exc, "field", "") else ""
        raise UserError(f"cannot build the transaction{where}: {exc}") from None
    with session.client() as client:
        try:
            response = client.submit(tx.raw)
        except ClientError as error:
            if error.code is None:
                raise client_failure(error, tx_id) from None
            if as_json:
                emit_json({"tx_id": tx_id.hex(), "code": int(error.code), "code_name": error.code.name,
                           "message": error.code.message,
                           "height": None if error.code.static else error.height,
                           "leaf_index": None, "duplicate": None, **(extra or {})})
            raise Refused(refusal_line(error.code, tx_id, error.height)) from None
    code = Code(response.code)
    result = {"tx_id": response.tx_id.hex() or tx_id.hex(), "code": int(code), "code_name": code.name,
              "height": response.height, "leaf_index": response.leaf_index, "duplicate": response.duplicate,
              **(extra or {})}
    if as_json:
        emit_json(result)
        return
    echo(f"tx {result['tx_id']}: {code.name} at height {response.height} (leaf {response.leaf_index})")
    if response.duplicate:
        echo("duplicate: this transaction was already recorded; the original result stands")
    if code != Code.OK:       # the node reports refusals as errors; kept for safety
        raise Refused(refusal_line(code, tx_id, response.height))


# --- member register ---------------------------------------------------------------------------

@click.group("member")
def member_group() -> None:
    """Register members (a centre's key)."""


def _member_public_key(public_key_hex: str | None, member_key: Path | None) -> bytes:
    """The member's public key, refused here already if it fails the key rule (the node
    refuses it with INVALID_KEY too; this says so before anything is signed)."""
    public_key = _read_member_public_key(public_key_hex, member_key)
    problem = keys.key_problem(public_key)
    if problem is not None:
        raise UserError(f"the member's {problem}")
    return public_key


def _read_member_public_key(public_key_hex: str | None, member_key: Path | None) -> bytes:
    if (public_key_hex is None) == (member_key is None):
        raise click.UsageError("give exactly one of --public-key HEX64 or --member-key FILE")
    if public_key_hex is not None:
        text = public_key_hex.strip().lower()
        if not re.fullmatch(rf"[0-9a-f]{{{PUBLIC_KEY_BYTES * 2}}}", text):
            raise UserError(f"--public-key must be {PUBLIC_KEY_BYTES * 2} hex digits "
                            f"(see `nanum keys show`), got {public_key_hex!r}")
        return bytes.fromhex(text)
    try:
        with open(member_key, "rb") as handle:
            pem = handle.read(MAX_SMALL_FILE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"cannot read member key file {member_key}: {exc.strerror}") from None
    if b"PUBLIC KEY" in pem:
        try:
            public = serialization.load_pem_public_key(pem)
        except ValueError:
            raise UserError(f"{member_key} is not a PEM public key") from None
        if not isinstance(public, Ed25519PublicKey):
            raise UserError(f"{member_key} is not an Ed25519 key")
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    try:
        return SigningKey.from_pem(pem).public_key
    except KeyFileError as exc:
        raise UserError(f"member key file {member_key}: {exc}; or pass the member's public key with "
                        "--public-key (`nanum keys show` prints it)") from None


@member_group.command("register")
@click.option("--public-key", "public_key_hex", metavar="HEX64", help="The member's Ed25519 public key.")
@click.option("--member-key", type=click.Path(dir_okay=False, path_type=Path),
              help="The member's key file (PEM private or public key) instead of --public-key.")
@client_option
@_signing_options
@tx_id_option
@json_option
def member_register(public_key_hex: str | None, member_key: Path | None, client_file: Path, key_file: Path | None,
                    passphrase_env: str | None, tx_id: bytes | None, as_json: bool) -> None:
    """Register a member (a centre's key) and print the member id."""
    member_public = _member_public_key(public_key_hex, member_key)
    session = Session(client_file)
    key = load_signing_key(key_file, session.config.key_file, passphrase_env)
    payload = RegisterMember(member_public)
    member_id = payload.member_id.hex()
    if not as_json:
        echo(f"member id: {member_id}")
    submit(session, key, new_tx_id(tx_id), payload, as_json, {"member_id": member_id})


# --- deposit -------------------------------------------------------------------------------------

def _minutes_from_hours(text: str) -> int:
    try:
        hours = Decimal(text.strip())
    except InvalidOperation:
        raise click.BadParameter(f"must be a number of hours, got {text!r}", param_hint="--hours") from None
    if not hours.is_finite():
        raise click.BadParameter(f"must be a number of hours, got {text!r}", param_hint="--hours")
    minutes = int((hours * 60).to_integral_value(rounding=ROUND_HALF_UP))
    if not 1 <= minutes <= MAX_VOLUNTEER_MINUTES:
        raise click.BadParameter(f"must come to 1..{MAX_VOLUNTEER_MINUTES} whole minutes, got {minutes}",
                                 param_hint="--hours")
    return minutes


@click.command("deposit")
@click.option("--member", "member_id", required=True, metavar="ID40", callback=party_id_callback("--member"),
              help="The member's id (40 hex digits).")
@points_option
@click.option("--hours", metavar="H", help="Hours volunteered (may be fractional; rounded to whole minutes).")
@click.option("--minutes", metavar="M", type=click.IntRange(1, MAX_VOLUNTEER_MINUTES), help="Minutes volunteered.")
@click.option("--donation", metavar="AMOUNT", type=click.IntRange(1, MAX_DONATION_AMOUNT),
              help="Amount donated, in the smallest currency unit (KRW).")
@click.option("--other", is_flag=True, help="Points for something that is neither volunteering nor a donation.")
@click.option("--ref", "activity_ref", required=True, callback=_text_callback("--ref", MAX_ACTIVITY_REF_BYTES,
                                                                               MIN_ACTIVITY_REF_BYTES),
              help=f"A code pointing into your own records ({MIN_ACTIVITY_REF_BYTES} to {MAX_ACTIVITY_REF_BYTES} bytes; "
                   "never personal data).")
@click.option("--sdg", metavar="1..17", type=click.IntRange(1, SDG_GOALS), help="The UN Sustainable Development Goal, 1..17.")
@client_option
@_signing_options
@tx_id_option
@json_option
def deposit(member_id: bytes, points: int, hours: str | None, minutes: int | None, donation: int | None,
            other: bool, activity_ref: str, sdg: int | None, client_file: Path, key_file: Path | None,
            passphrase_env: str | None, tx_id: bytes | None, as_json: bool) -> None:
    """Deposit points for a member's volunteering or donation (a centre's key)."""
    given = [name for name, value in (("--hours", hours), ("--minutes", minutes), ("--donation", donation),
                                      ("--other", other or None)) if value is not None]
    if len(given) != 1:
        raise click.UsageError("give exactly one of --hours, --minutes, --donation or --other"
                               + (f" (got {', '.join(given)})" if given else ""))
    if hours is not None:
        kind, quantity = DepositKind.VOLUNTEERING, _minutes_from_hours(hours)
    elif minutes is not None:
        kind, quantity = DepositKind.VOLUNTEERING, minutes
    elif donation is not None:
        kind, quantity = DepositKind.DONATION, donation
    else:
        kind, quantity = DepositKind.OTHER, 0
    session = Session(client_file)
    key = load_signing_key(key_file, session.config.key_file, passphrase_env)
    payload = Deposit(member_id, points, kind, quantity, activity_ref, sdg or 0)
    submit(session, key, new_tx_id(tx_id), payload, as_json)


# --- voucher create (offline) -------------------------------------------------------------------

def parse_duration_ms(text: str) -> int:
    """'30m', '2h', '1d', '1h30m' → milliseconds, 1 s .. 30 days; UserError (exit 3) otherwise."""
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise UserError(f"--valid-for must be a duration such as 30m, 2h, 1d or 1h30m, got {text!r}")
    total = sum(int(n) * _UNIT_MS[u] for n, u in parts)
    if not 0 < total <= MAX_VOUCHER_MS:
        raise UserError(f"--valid-for must be more than 0 and at most {MAX_VOUCHER_DAYS} days, got {text!r}")
    return total


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@click.group("voucher")
def voucher_group() -> None:
    """A member's single-use spending authorisations."""


@voucher_group.command("create")
@click.option("--key", "key_file", type=click.Path(dir_okay=False, path_type=Path), envvar="NANUM_KEY",
              help="The member's Ed25519 key (PEM) (env NANUM_KEY; or key_file in --client's file).")
@click.option("--passphrase-env", metavar="VAR", help="The key's passphrase is in this environment variable.")
@click.option("--client", "client_file", type=click.Path(dir_okay=False, path_type=Path), envvar="NANUM_CLIENT",
              help="A client.toml: its genesis file names the chain (env NANUM_CLIENT).")
@click.option("--genesis", "genesis_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The consortium's genesis block file, instead of --client.")
@click.option("--partner", "partner_id", required=True, metavar="ID40", callback=party_id_callback("--partner"),
              help="The partner (bookstore, venue) allowed to redeem it.")
@click.option("--max-points", required=True, metavar="N", type=click.IntRange(MIN_VOUCHER_POINTS, MAX_VOUCHER_POINTS),
              help=f"The most points the partner may redeem with it, {MIN_VOUCHER_POINTS}..{MAX_VOUCHER_POINTS}.")
@click.option("--valid-for", "valid_for", required=True, metavar="DURATION",
              help=f"How long it stays valid: 30m, 2h, 1d ... (at most {MAX_VOUCHER_DAYS}d).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the voucher string to this new file (mode 0600; never overwritten).")
@json_option
def voucher_create(key_file: Path | None, passphrase_env: str | None, client_file: Path | None,
                   genesis_file: Path | None, partner_id: bytes, max_points: int, valid_for: str,
                   out_file: Path | None, as_json: bool) -> None:
    """Sign a voucher, offline: print its nv1. string for the partner to redeem."""
    duration_ms = parse_duration_ms(valid_for)
    default_key = None
    if genesis_file is None:
        if client_file is None:
            raise click.UsageError("give --genesis FILE or --client FILE: the voucher names the consortium's chain")
        session = Session(client_file)
        genesis_file, default_key = session.config.genesis_file, session.config.key_file
    chain_id = read_genesis(genesis_file).chain_id
    key = load_signing_key(key_file, default_key, passphrase_env)
    expiry_ms = int(time.time() * 1000) + duration_ms      # the CLI reads the clock; the ledger never does
    voucher = sign_voucher(key, chain_id, partner_id, max_points, os.urandom(VOUCHER_NONCE_BYTES), expiry_ms)
    compact = voucher.to_compact()
    if out_file is not None:
        _write_new_file(out_file, compact + "\n")
    if as_json:
        emit_json({"voucher": compact, "member_id": voucher.member_id.hex(), "partner_id": partner_id.hex(),
                   "max_points": max_points, "nonce": voucher.nonce.hex(), "expiry_ms": expiry_ms,
                   "expires_at": _iso(expiry_ms), "chain_id": chain_id.hex(),
                   "out": str(out_file) if out_file else None})
        return
    echo(f"voucher from member {voucher.member_id.hex()} for partner {partner_id.hex()}: up to "
         f"{max_points} points, valid until {_iso(expiry_ms)}" + (f", written to {out_file}" if out_file else ""),
               err=True)
    echo(compact)


def _write_new_file(path: Path, text: str) -> None:
    try:
        files.write_new_file(path, text.encode("ascii"), VOUCHER_FILE_MODE)
    except FileExistsError:
        raise UserError(f"{path} already exists; a voucher file is never overwritten") from None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


# --- redeem, refund, reverse ------------------------------------------------------------------

def read_voucher(value: str, chain_id: bytes) -> Voucher:
    """A voucher from its string or ``@FILE``; UserError (exit 3) naming what is wrong."""
    text, source = value, "the voucher string"
    if value.startswith("@"):
        path = Path(value[1:])
        source = f"voucher file {path}"
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_SMALL_FILE_BYTES + 1)
        except OSError as exc:
            raise UserError(f"cannot read {source}: {exc.strerror}") from None
        if len(data) > MAX_SMALL_FILE_BYTES:
            raise UserError(f"{source} is larger than a voucher ({MAX_COMPACT_CHARS} characters)")
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError:
            raise UserError(f"{source} is not a voucher string (not ASCII text)") from None
    text = text.strip()
    body = text[len(COMPACT_PREFIX):] if text.startswith(COMPACT_PREFIX) else ""
    if body and not _BASE64URL.fullmatch(body):
        bad = next(c for c in body if not _BASE64URL.fullmatch(c))
        raise UserError(f"malformed voucher: {bad!r} is not a base64url character (in {source})")
    try:
        voucher = Voucher.from_compact(text)
    except DecodeError as exc:
        if exc.field and exc.field != "voucher":
            problem = f"field {exc.field}: {exc}"
        elif str(exc).startswith(("voucher string", "a voucher string")):
            problem = str(exc)
        else:
            problem = f"the string does not decode to a voucher ({exc}); was it cut short?"
        raise UserError(f"malformed voucher: {problem} (in {source})") from None
    if voucher.chain_id != chain_id:
        raise UserError(f"the voucher is for another consortium (chain {voucher.chain_id.hex()}, "
                        f"this one is {chain_id.hex()})")
    if not voucher.signature_valid():
        raise UserError("the voucher's signature does not verify: it was altered or not signed by the member")
    return voucher


@click.command("redeem")
@click.option("--voucher", "voucher_text", required=True, metavar="STRING|@FILE",
              help="The member's nv1. voucher string, or @FILE holding it.")
@points_option
@memo_option
@client_option
@_signing_options
@tx_id_option
@json_option
def redeem(voucher_text: str, points: int, memo: str, client_file: Path, key_file: Path | None,
           passphrase_env: str | None, tx_id: bytes | None, as_json: bool) -> None:
    """Redeem points against a member's voucher (a partner's key)."""
    session = Session(client_file)
    voucher = read_voucher(voucher_text, session.chain_id)
    key = load_signing_key(key_file, session.config.key_file, passphrase_env)
    submit(session, key, new_tx_id(tx_id), Redeem(voucher, points, memo), as_json,
           {"member_id": voucher.member_id.hex(), "points": points})


@click.command("refund")
@click.option("--redemption", "redemption_id", required=True, metavar="TXID",
              callback=tx_id_callback("--redemption"), help="The redemption's transaction id.")
@points_option
@memo_option
@client_option
@_signing_options
@tx_id_option
@json_option
def refund(redemption_id: bytes, points: int, memo: str, client_file: Path, key_file: Path | None,
           passphrase_env: str | None, tx_id: bytes | None, as_json: bool) -> None:
    """Give back some or all points of one of your redemptions (a partner's key)."""
    session = Session(client_file)
    key = load_signing_key(key_file, session.config.key_file, passphrase_env)
    submit(session, key, new_tx_id(tx_id), Refund(redemption_id, points, memo), as_json)


@click.command("reverse")
@click.option("--deposit", "deposit_id", required=True, metavar="TXID", callback=tx_id_callback("--deposit"),
              help="The deposit's transaction id.")
@click.option("--reason", required=True, callback=_text_callback("--reason", MAX_REASON_BYTES, 1),
              help=f"Why (1..{MAX_REASON_BYTES} bytes; never personal data).")
@client_option
@_signing_options
@tx_id_option
@json_option
def reverse(deposit_id: bytes, reason: str, client_file: Path, key_file: Path | None, passphrase_env: str | None,
            tx_id: bytes | None, as_json: bool) -> None:
    """Reverse one of your centre's deposits, with a reason (a centre's key)."""
    session = Session(client_file)
    key = load_signing_key(key_file, session.config.key_file, passphrase_env)
    submit(session, key, new_tx_id(tx_id), Reversal(deposit_id, reason), as_json)


__all__ = ["member_group", "deposit", "voucher_group", "redeem", "refund", "reverse", "parse_duration_ms"]
