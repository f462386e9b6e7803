"""What every ``nanum`` command shares: exit codes, user errors, JSON output, client setup."""

from __future__ import annotations

import os
from pathlib import Path

from typing import TYPE_CHECKING, Any

import click

from cli.text import echo

if TYPE_CHECKING:
    from node.client import LedgerClient

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_UNAVAILABLE = 4
EXIT_VERIFY_FAILED = 5
EXIT_STORAGE_FAILED = 6      # `node run`: a durable write failed (node.durability); restart it


class UserError(click.ClickException):
    """A mistake a person can fix; shown as one line, never as a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        # The message may quote what a node or a file said: printed like every human line.
        echo(f"Error: {self.format_message()}", err=True)


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def passphrase(env_name: str | None) -> bytes | None:
    if env_name is None:
        return None
    value = os.environ.get(env_name)
    if value is None:
        raise UserError(f"environment variable {env_name} is not set")
    return value.encode()


def client_from(client_file: Path) -> LedgerClient:
    """A LedgerClient from a client.toml (as written by ``nanum init``)."""
    from node.client import LedgerClient, TlsFiles      # gRPC: only for commands that talk to nodes
    from node.config import ConfigError, load_client_config
    try:
        config = load_client_config(client_file)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    tls = TlsFiles.load(config.ca_cert_file, config.tls_cert_file, config.tls_key_file)
    return LedgerClient(list(config.nodes), tls, config.timeout_ms, config.max_message_bytes)
