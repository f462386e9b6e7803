"""A click group whose subcommands are imported when they are used, not when ``nanum`` starts.

Importing every command module (gRPC, the node runtime, the consortium builder) cost ~0.25 s
of each invocation's ~0.45 s start-up; an offline check (``audit verify``, ``receipt verify``)
needs none of it. Commands are named here as "module:attribute".
"""

from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_commands and name not in self.commands:
            module, attribute = self.lazy_commands[name].split(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command) or command.name != name:
                raise RuntimeError(f"{self.lazy_commands[name]} is not the command {name!r}")
            self.add_command(command)
        return super().get_command(ctx, name)
