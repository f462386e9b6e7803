"""``nanum init``, ``nanum node run`` and ``nanum status``: founding and running a consortium."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from pathlib import Path

import click

from cli.common import EXIT_STORAGE_FAILED, EXIT_UNAVAILABLE, UserError, client_from, json_option
from cli.lazy import LazyGroup
from cli.text import echo, printable
from ledger.keys import KeyFileError
from ledger.store import StoreError
from node.config import ConfigError, load_config
from node.consortium import ConsortiumError, ConsortiumSpec, create_consortium


@click.command("init")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="Gwangju Nanum Bank", show_default=True, help="The consortium's name.")
@click.option("--nodes", default=3, show_default=True, help="Number of nodes.")
@click.option("--centre", "centres", multiple=True, help="A donation centre's name (repeatable).")
@click.option("--partner", "partners", multiple=True, help="A partner bookstore's or venue's name (repeatable).")
@click.option("--admins", default=3, show_default=True, help="Number of consortium admins.")
@click.option("--threshold", default=2, show_default=True, help="Admin signatures needed for governance.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Host the nodes listen on.")
@click.option("--base-port", default=7400, show_default=True, help="Node i listens on base-port + i.")
@json_option
def init(folder: Path, name: str, nodes: int, centres, partners, admins: int, threshold: int,
         host: str, base_port: int, as_json: bool) -> None:
    """Create a consortium in FOLDER: genesis, CA, keys, certificates and configs."""
    spec_args = dict(name=name, created_ms=int(time.time() * 1000), nodes=nodes, admins=admins,
                     threshold=threshold, host=host, base_port=base_port)
    if centres:
        spec_args["centres"] = centres
    if partners:
        spec_args["partners"] = partners
    try:
        layout = create_consortium(folder, ConsortiumSpec(**spec_args))
    except ConsortiumError as exc:
        raise UserError(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"folder": str(layout.folder), "chain_id": layout.chain_id,
                               "nodes": [{"name": n.name, "address": n.address, "config": str(n.config_file)}
                                         for n in layout.nodes]}))
        return
    echo(f"consortium {printable(name)!r} created in {layout.folder}")
    echo(f"chain id: {layout.chain_id}")
    for node in layout.nodes:
        echo(f"  {printable(node.name)}: {printable(node.address)}   nanum node run --config {node.config_file}")
    for client in layout.centres + layout.partners:
        echo(f"  {client.role} {printable(client.name)}: --client {client.config_file}")


@click.group("node", cls=LazyGroup, lazy_commands={"check": "cli.audit_cmds:node_check"})
def node_group() -> None:
    """Run a node."""


@node_group.command("run")
@click.option("--config", "config_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              envvar="NANUM_CONFIG", help="The node's TOML file (env NANUM_CONFIG).")
@click.option("--listen", help="Override the listen address (host:port).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Override the data folder.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@click.option("--rejoin", is_flag=True,
              help="This node lost its data and is rebuilt from its peers: it does not vote while so run.")
def node_run(config_file: Path, listen: str | None, data_dir: Path | None, log_level: str, rejoin: bool) -> None:
    """Run a node until SIGINT or SIGTERM."""
    from node.runtime import run_node

    overrides = {"listen": listen, "data_dir": data_dir}
    try:
        config = load_config(config_file, overrides=overrides)
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from node.durability import StorageFailed
    try:
        asyncio.run(_serve(config, run_node, rejoin))
    except StorageFailed as exc:
        raise UserError(f"the node stopped: {exc}", EXIT_STORAGE_FAILED) from None
    except (RuntimeError, StoreError, KeyFileError, OSError) as exc:
        raise UserError(f"the node cannot start: {exc}", EXIT_UNAVAILABLE) from None


async def _serve(config, run_node, rejoin: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await run_node(config, stop, rejoin)


@click.command("status")
@click.option("--client", "client_file", type=click.Path(dir_okay=False, path_type=Path), envvar="NANUM_CLIENT",
              required=True, help="Your client.toml (env NANUM_CLIENT).")
@json_option
def status(client_file: Path, as_json: bool) -> None:
    """Show every node's role, term and heights, its lag behind the highest, and the calls it
    refused for a caller's budget of signature checks (docs/ARCHITECTURE.md, "Admission")."""
    import grpc

    rows = []
    with client_from(client_file) as client:
        for address in client.addresses:
            try:
                view = client.status_of(address)
                node = view.nodes[0]
                rows.append({"address": address, "name": node.name, "node_id": node.node_id, "role": node.role,
                             "term": node.term, "applied_height": node.applied_height,
                             "certified_height": node.certified_height, "leader_id": view.leader_id,
                             "storage_failure": node.storage_failure, "throttled_calls": node.throttled_calls})
            except grpc.RpcError as error:
                rows.append({"address": address, "role": "unreachable", "error": error.code().name})
    top = max((r.get("applied_height", 0) for r in rows), default=0)
    for row in rows:
        if "applied_height" in row:
            row["lag_blocks"] = top - row["applied_height"]
    if as_json:
        click.echo(json.dumps({"nodes": rows}))
    else:
        for r in rows:
            if r["role"] == "unreachable":
                echo(f"{printable(r['address']):<21} unreachable ({r['error']})")
            else:
                echo(f"{printable(r['address']):<21} {printable(r['name']):<8} {printable(r['role']):<13} "
                     f"term {r['term']:<4} "
                     f"height {r['applied_height']:<6} certified {r['certified_height']:<6} lag {r['lag_blocks']}"
                     + (f"  throttled calls {r['throttled_calls']}" if r["throttled_calls"] else "")
                     + (f"  STORAGE FAILED: {printable(r['storage_failure'])}" if r["storage_failure"] else ""))
    if all(r["role"] == "unreachable" for r in rows):
        raise SystemExit(EXIT_UNAVAILABLE)
