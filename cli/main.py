"""The ``nanum`` command: one tool for centres, members, partners, auditors and admins.

Owns argument parsing, output (human by default, ``--json`` for scripts) and exit codes.
Exit codes (stable, documented in README.md):
    0 success, 1 the ledger refused (rejection code shown), 2 usage error,
    3 input file or key problem, 4 node unreachable or unavailable (retry), 5 verification failed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ledger.keys import KeyFileError, SigningKey, read_key_file, write_key_file

from cli.common import UserError, passphrase
from cli.lazy import LazyGroup
from cli.text import echo


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version     # 40 ms: only for --version
    try:
        return version("nanum-ledger")
    except PackageNotFoundError:
        return "unknown"


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        echo(f"nanum, version {_version()}")
        ctx.exit()


COMMANDS = {   # name -> "module:attribute", imported when the command is used (cli.lazy)
    "init": "cli.node_cmds:init", "node": "cli.node_cmds:node_group", "status": "cli.node_cmds:status",
    "member": "cli.tx_cmds:member_group", "deposit": "cli.tx_cmds:deposit", "voucher": "cli.tx_cmds:voucher_group",
    "redeem": "cli.tx_cmds:redeem", "refund": "cli.tx_cmds:refund", "reverse": "cli.tx_cmds:reverse",
    "balance": "cli.read_cmds:balance", "history": "cli.read_cmds:history", "tx": "cli.read_cmds:tx_group",
    "audit": "cli.audit_cmds:audit_group", "receipt": "cli.receipt_cmds:receipt_group",
    "settlement": "cli.receipt_cmds:settlement_group",
}


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
def main() -> None:
    """nanum: the Nanum Bank's permissioned ledger of volunteer and donation points."""


@main.group()
def keys() -> None:
    """Create and inspect Ed25519 keys (PKCS#8 PEM files, mode 0600)."""


@keys.command("generate")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--passphrase-env", metavar="VAR", help="Encrypt the key with the passphrase in this environment variable.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_generate(path: Path, passphrase_env: str | None, as_json: bool) -> None:
    """Generate a new key at PATH (refuses to overwrite) and print its party id."""
    key = SigningKey.generate()
    try:
        write_key_file(path, key, passphrase(passphrase_env))
    except FileExistsError:
        raise UserError(f"{path} already exists; keys are never overwritten") from None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None
    _print_key(path, key, as_json)


@keys.command("show")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--passphrase-env", metavar="VAR", help="The key's passphrase is in this environment variable.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def keys_show(path: Path, passphrase_env: str | None, as_json: bool) -> None:
    """Print the public key and party id of the key at PATH."""
    try:
        key = read_key_file(path, passphrase(passphrase_env))
    except KeyFileError as exc:
        raise UserError(str(exc)) from None
    _print_key(path, key, as_json)


def _print_key(path: Path, key: SigningKey, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"path": str(path), "public_key": key.public_key.hex(),
                               "party_id": key.party_id.hex()}))
    else:
        echo(f"key file:   {path}\npublic key: {key.public_key.hex()}\nparty id:   {key.party_id.hex()}")


@main.command()
def demo() -> None:
    """Run a local consortium end to end (arrives with the nodes issue; for now, the ledger core)."""
    from cli.demo import run_demo

    sys.exit(run_demo())


if __name__ == "__main__":
    main()
