"""A local consortium of real node processes on loopback: for the demo and integration tests.

Owns creating a consortium folder (``nanum init``'s layout), starting each node as its own
``python -m cli.main node run`` process, waiting until they serve, finding the leader,
SIGKILL-ing and restarting nodes, and stopping everything. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ledger.keys import SigningKey, read_key_file
from ledger.tx import TxKind
from node import pki
from node.call_policy import read_envelope
from node.client import LedgerClient, TlsFiles
from node.consortium import ConsortiumLayout, ConsortiumSpec, create_consortium

START_TIMEOUT_MS = 20_000
LEADER_TIMEOUT_MS = 15_000
STOP_TIMEOUT_MS = 5_000


class ClusterError(Exception):
    pass


PORT_RANGE = (20_000, 40_000)


def free_base_port(count: int, attempts: int = 200) -> int:
    """A base port such that ``count`` consecutive loopback ports are free right now. The search
    starts at a place drawn from the process id, so concurrent runs rarely probe the same ports;
    a node that still finds its port taken refuses to start (no SO_REUSEPORT)."""
    start = PORT_RANGE[0] + (os.getpid() * 97) % (PORT_RANGE[1] - PORT_RANGE[0] - attempts * 10)
    for base in range(start, start + attempts * 10, 10):
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise ClusterError("no free range of loopback ports")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class LocalCluster:
    folder: Path
    nodes: int = 3
    layout: ConsortiumLayout | None = None
    processes: dict[int, subprocess.Popen] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)
    node_env: dict[int, dict[str, str]] = field(default_factory=dict)   # per node, over extra_env

    def create(self, name: str = "Gwangju Nanum Bank (local)") -> ConsortiumLayout:
        spec = ConsortiumSpec(name=name, created_ms=int(time.time() * 1000), nodes=self.nodes,
                              base_port=free_base_port(self.nodes))
        self.layout = create_consortium(self.folder, spec)
        return self.layout

    @property
    def chain_id(self) -> bytes:
        return bytes.fromhex(self.layout.chain_id)

    def start(self, index: int | None = None, rejoin: bool = False) -> None:
        """Starts nodes (all, or ``index``); ``rejoin``: with ``node run --rejoin`` (a node that
        lost its data)."""
        for i in ([index] if index is not None else range(self.nodes)):
            node = self.layout.nodes[i]
            log = open(node.folder / "node.log", "ab")
            env = dict(os.environ, **self.extra_env, **self.node_env.get(i, {}))
            self.processes[i] = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "node", "run", "--config", str(node.config_file),
                 "--log-level", "info"] + (["--rejoin"] if rejoin else []),
                stdout=log, stderr=subprocess.STDOUT, env=env)
            log.close()
        self.wait_serving(index)

    def wait_serving(self, index: int | None = None) -> None:
        deadline = time.monotonic() + START_TIMEOUT_MS / 1000
        for i in ([index] if index is not None else range(self.nodes)):
            with self.client("auditor") as client:
                while True:
                    try:
                        client.status_of(self.layout.nodes[i].address, timeout_ms=500)
                        break
                    except grpc.RpcError:
                        if self.processes[i].poll() is not None:
                            raise ClusterError(f"node {i} exited: see {self.layout.nodes[i].folder}/node.log")
                        if time.monotonic() > deadline:
                            raise ClusterError(f"node {i} did not start serving in time")
                        time.sleep(0.1)

    def leader(self, timeout_ms: int = LEADER_TIMEOUT_MS, exclude: int | None = None) -> int:
        """Index of the node that a majority of live nodes agree is the leader."""
        deadline = time.monotonic() + timeout_ms / 1000
        with self.client("auditor") as client:
            while time.monotonic() < deadline:
                for i, node in enumerate(self.layout.nodes):
                    if i == exclude or i not in self.processes or self.processes[i].poll() is not None:
                        continue
                    try:
                        status = client.status_of(node.address, timeout_ms=500).nodes[0]
                    except grpc.RpcError:
                        continue
                    if status.role == "leader":
                        return i
                time.sleep(0.05)
        raise ClusterError("no leader elected in time")

    def statuses(self) -> dict[int, object]:
        found = {}
        with self.client("auditor") as client:
            for i, node in enumerate(self.layout.nodes):
                try:
                    found[i] = client.status_of(node.address, timeout_ms=1000).nodes[0]
                except grpc.RpcError:
                    pass
        return found

    def kill(self, index: int) -> None:
        """SIGKILL: the node gets no chance to flush or say goodbye."""
        process = self.processes.pop(index)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_MS / 1000)

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for index, process in list(self.processes.items()):
            try:
                process.wait(timeout=STOP_TIMEOUT_MS / 1000)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()

    # --- parties ---------------------------------------------------------------------------

    def client(self, who: str = "centre", timeout_ms: int = 10_000) -> LedgerClient:
        return self.client_of(self._party(who), timeout_ms)

    def client_of(self, party, timeout_ms: int = 10_000) -> LedgerClient:
        """A client with the TLS certificate of ``party`` (a layout's centre, partner, node, …)."""
        return LedgerClient(list(self.layout.addresses),
                            TlsFiles.load(self.layout.ca_cert_file, party.tls_cert_file, party.tls_key_file),
                            timeout_ms)

    def issued_tls(self, role: str, name: str, party_id: bytes, valid_days: int = 1) -> TlsFiles:
        """A fresh TLS certificate from the consortium CA for any identity (``nanum init``
        issues none for admins, nor for parties admitted later)."""
        ca_key, ca_cert = pki.read_private_key(self.layout.ca_key_file), pki.read_certificate(self.layout.ca_cert_file)
        tls_key = pki.generate_tls_key()
        cert = pki.issue_certificate(ca_key, ca_cert, pki.Identity(role, name, party_id), tls_key.public_key(),
                                     [], valid_days)
        return TlsFiles(self.layout.ca_cert_file.read_bytes(), pki.certificate_pem(cert), pki.private_key_pem(tls_key))

    def issued_client(self, role: str, name: str, party_id: bytes, timeout_ms: int = 10_000) -> LedgerClient:
        return LedgerClient(list(self.layout.addresses), self.issued_tls(role, name, party_id), timeout_ms)

    def key(self, who: str) -> SigningKey:
        """The Ed25519 signing key of 'centre' or 'partner' (the first of each)."""
        return read_key_file(self._party(who).key_file)

    def _party(self, who: str):
        return {"centre": self.layout.centres[0], "partner": self.layout.partners[0],
                "auditor": self.layout.auditor, "member": self.layout.members}[who]

    def author_clients(self, timeout_ms: int = 10_000) -> "AuthorClients":
        return AuthorClients(self, timeout_ms)

    def genesis(self) -> bytes:
        return self.layout.genesis_file.read_bytes()

    def summary(self) -> dict:
        return json.loads(self.layout.genesis_json.read_text())


# The role whose certificate carries a transaction of each kind (for parties without one in the
# layout: admins, and parties admitted after genesis).
_AUTHOR_ROLES = {TxKind.REGISTER_MEMBER: "centre", TxKind.DEPOSIT: "centre", TxKind.REVERSAL: "centre",
                 TxKind.REDEEM: "partner", TxKind.REFUND: "partner", TxKind.GOVERNANCE: "admin"}


class AuthorClients:
    """Submits each transaction over its author's own TLS certificate, as each party does (a
    certificate carries only its party's transactions: docs/ARCHITECTURE.md, "Who may call
    what"). Authors without a certificate in the layout get one issued from the CA."""

    def __init__(self, cluster: LocalCluster, timeout_ms: int) -> None:
        self._cluster, self._timeout_ms = cluster, timeout_ms
        layout = cluster.layout
        self._parties = {bytes.fromhex(p.party_id): p for p in (*layout.centres, *layout.partners)}
        self._admins = {bytes.fromhex(a.party_id): a.name for a in layout.admins}
        self._clients: dict[bytes, LedgerClient] = {}

    def client_for(self, raw: bytes) -> LedgerClient:
        envelope = read_envelope(raw)
        if envelope is None:
            raise ClusterError("not a transaction: no author to submit it as")
        author = envelope.author_id
        if author not in self._clients:
            if author in self._parties:
                self._clients[author] = self._cluster.client_of(self._parties[author], self._timeout_ms)
            else:
                role = "admin" if author in self._admins else _AUTHOR_ROLES.get(envelope.kind, "centre")
                name = self._admins.get(author, f"{role}-{author.hex()[:8]}")
                self._clients[author] = self._cluster.issued_client(role, name, author, self._timeout_ms)
        return self._clients[author]

    def submit(self, raw: bytes):
        return self.client_for(raw).submit(raw)

    def submit_batch(self, raws: list[bytes]):
        """One author per batch (a batch with another's transaction is refused whole)."""
        return self.client_for(raws[0]).submit_batch(raws)

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    def __enter__(self) -> "AuthorClients":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
