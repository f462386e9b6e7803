"""The ``nanum`` command imports a subcommand's module only when it is used (cli.lazy): every
listed command resolves, and the offline checks start without gRPC or the node runtime."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from cli.main import COMMANDS, main

REPO = Path(__file__).resolve().parents[1]


def test_every_listed_command_resolves_to_a_command_of_its_name():
    ctx = click.Context(main)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert isinstance(command, click.Command) and command.name == name
    node = main.get_command(ctx, "node")
    assert set(node.list_commands(click.Context(node))) == {"run", "check"}
    assert node.get_command(click.Context(node), "check").name == "check"
    listed = CliRunner().invoke(main, ["--help"]).output
    assert all(f"  {name} " in listed for name in (*COMMANDS, "keys", "demo"))


def test_offline_checks_start_without_grpc_or_the_node_runtime():
    probe = ("import sys\nfrom cli.main import main\n"
             "try:\n    main(['audit', 'verify', '--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('grpc', 'node.client', 'node.runtime', 'node.consortium') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_version_is_shown_without_a_subcommand():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("nanum, version ")
