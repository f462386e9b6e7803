"""The consortium under test: real node processes whose peer links go through the proxies.

Owns founding the consortium (``create_consortium``, what ``nanum init`` runs), rewriting each
node's ``node.toml`` so that its peer table points at the proxy of each directed link, and
every process operation the nemesis uses: start (optionally ``--rejoin`` or with a skewed
clock), SIGKILL, SIGSTOP/SIGCONT, wiping a data folder, and putting one on a small tmpfs.
Every process it starts is remembered by pid and stopped by ``stop_all`` (SIGCONT, SIGTERM,
then SIGKILL), which the runner calls in a ``finally``. Every wait is bounded.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc

from ledger.keys import read_key_file
from node.client import LedgerClient, TlsFiles
from node.cluster import free_base_port
from node.config import Peer, load_config, write_config
from node.consortium import ConsortiumLayout, ConsortiumSpec, create_consortium
from tests.chaos.proxies import LinkProxies

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 5
STATUS_TIMEOUT_MS = 1_000
TMPFS_MIN_BYTES = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]


class ChaosClusterError(Exception):
    pass


class ProxyAwareClient(LedgerClient):
    """A LedgerClient whose leader hints are mapped back to real node addresses: a node names
    the leader by the address in its own peer table, which is a proxy of one of its links."""

    def __init__(self, *args, real_address: dict[str, str], **kwargs) -> None:
        self._real = real_address
        super().__init__(*args, **kwargs)

    @property
    def _preferred(self) -> str:
        return self.__preferred

    @_preferred.setter
    def _preferred(self, address: str) -> None:
        self.__preferred = self._real.get(address, address)


class ChaosCluster:
    def __init__(self, folder: Path, nodes: int = 3) -> None:
        self.folder = Path(folder)
        self.nodes = nodes
        self.layout: ConsortiumLayout | None = None
        self.proxies: LinkProxies | None = None
        self.processes: dict[int, subprocess.Popen] = {}
        self.paused: set[int] = set()
        self.clock_offset_ms: dict[int, int] = {}
        self.rejoining: set[int] = set()
        self.tmpfs: dict[int, Path] = {}          # node -> mount point
        self.started_pids: list[int] = []

    # --- founding ----------------------------------------------------------------------------

    def create(self) -> None:
        links = [(a, b) for a in range(self.nodes) for b in range(self.nodes) if a != b]
        base = free_base_port(self.nodes + len(links))
        spec = ConsortiumSpec(name="Gwangju Nanum Bank (chaos)", created_ms=int(time.time() * 1000),
                              nodes=self.nodes, base_port=base)
        self.layout = create_consortium(self.folder / "consortium", spec)
        node_ports = [base + i for i in range(self.nodes)]
        proxy_ports = {link: base + self.nodes + k for k, link in enumerate(links)}
        self.proxies = LinkProxies(node_ports, proxy_ports)
        for node in self.layout.nodes:
            config = load_config(node.config_file, env={})
            peers = tuple(Peer(p.node_id, p.name, self.proxies.address(node.index, self._index_of(p.node_id)))
                          for p in config.peers)
            write_config(node.config_file, dataclasses.replace(config, peers=peers), overwrite=True)
        self.proxies.start()

    def _index_of(self, node_id: str) -> int:
        return next(n.index for n in self.layout.nodes if n.node_id == node_id)

    def data_dir(self, index: int) -> Path:
        return self.layout.nodes[index].folder / "data"

    def log_file(self, index: int) -> Path:
        return self.layout.nodes[index].folder / "node.log"

    # --- processes ---------------------------------------------------------------------------

    def alive(self, index: int) -> bool:
        process = self.processes.get(index)
        return process is not None and process.poll() is None

    def start(self, index: int, rejoin: bool = False, wait: bool = True) -> None:
        if self.alive(index):
            raise ChaosClusterError(f"node {index} is already running")
        node = self.layout.nodes[index]
        env = dict(os.environ, NANUM_CLOCK_OFFSET_MS=str(self.clock_offset_ms.get(index, 0)))
        env.pop("NANUM_CONFIG", None)
        args = [sys.executable, "-m", "cli.main", "node", "run", "--config", str(node.config_file),
                "--log-level", "info"] + (["--rejoin"] if rejoin else [])
        self.mark(index, f"start{' --rejoin' if rejoin else ''} clock_offset_ms={self.clock_offset_ms.get(index, 0)}")
        with open(self.log_file(index), "ab") as log:
            process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
        self.processes[index] = process
        self.started_pids.append(process.pid)
        (self.rejoining.add if rejoin else self.rejoining.discard)(index)
        if wait:
            self.wait_serving(index)

    def start_all(self) -> None:
        for i in range(self.nodes):
            self.start(i, wait=False)
        for i in range(self.nodes):
            self.wait_serving(i)

    def wait_serving(self, index: int, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        with self.client("auditor") as client:
            while True:
                try:
                    client.status_of(self.layout.nodes[index].address, timeout_ms=500)
                    return
                except grpc.RpcError:
                    if not self.alive(index):
                        raise ChaosClusterError(f"node {index} exited: see {self.log_file(index)}")
                    if time.monotonic() > deadline:
                        raise ChaosClusterError(f"node {index} did not serve within {timeout_s} s")
                    time.sleep(0.1)

    def kill(self, index: int) -> None:
        """SIGKILL: no flush, no goodbye (a paused node is killed too)."""
        process = self.processes.pop(index, None)
        self.paused.discard(index)
        if process is None:
            return
        self.mark(index, "SIGKILL")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=STOP_TIMEOUT_S)

    def pause(self, index: int) -> None:
        if self.alive(index):
            self.mark(index, "SIGSTOP")
            os.kill(self.processes[index].pid, signal.SIGSTOP)
            self.paused.add(index)

    def resume(self, index: int) -> None:
        if index in self.paused and self.alive(index):
            os.kill(self.processes[index].pid, signal.SIGCONT)
            self.mark(index, "SIGCONT")
        self.paused.discard(index)

    def stop_all(self) -> None:
        """Stops every process this cluster started, by pid, whatever state it is in."""
        for index, process in list(self.processes.items()):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for index, process in list(self.processes.items()):
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        self.processes.clear()
        self.paused.clear()
        for index in list(self.tmpfs):
            self.leave_tmpfs(index)
        if self.proxies is not None:
            self.proxies.stop()

    def mark(self, index: int, what: str) -> None:
        """A line in the node's log saying what the nemesis did, for reading a failure."""
        with open(self.log_file(index), "a") as log:
            log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} === chaos: {what} ===\n")

    # --- disks -------------------------------------------------------------------------------

    def wipe(self, index: int, label: str) -> Path:
        """Moves a (stopped) node's data folder aside, leaving it empty; returns where it went."""
        aside = self.data_dir(index).with_name(f"data.wiped-{label}")
        if self.data_dir(index).exists():
            os.rename(self.data_dir(index), aside)
        self.data_dir(index).mkdir()
        self.mark(index, f"data folder wiped (kept at {aside.name})")
        return aside

    def enter_tmpfs(self, index: int, headroom_bytes: int) -> str | None:
        """Moves a stopped node's data onto a tmpfs a little larger than it. Returns None, or
        the reason it cannot (then nothing changed)."""
        data = self.data_dir(index)
        used = _disk_usage(data)
        size = max(TMPFS_MIN_BYTES, used + headroom_bytes)
        size = (size + (1 << 20) - 1) // (1 << 20) << 20
        aside = data.with_name("data.before-tmpfs")
        os.rename(data, aside)
        data.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(data)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            data.rmdir()
            os.rename(aside, data)
            return f"mount -t tmpfs failed: {result.stderr.strip() or result.returncode}"
        self.tmpfs[index] = data
        copied = subprocess.run(["cp", "-a", "--sparse=always", f"{aside}/.", str(data)], capture_output=True, text=True)
        if copied.returncode != 0:
            self.tmpfs.pop(index)
            subprocess.run(["umount", str(data)], check=True)
            data.rmdir()
            os.rename(aside, data)
            return f"copying the store onto the tmpfs failed: {copied.stderr.strip()}"
        shutil.rmtree(aside)
        self.mark(index, f"data folder on a {size >> 20} MiB tmpfs (store {used} bytes)")
        return None

    def leave_tmpfs(self, index: int) -> None:
        """Stops the node, copies its store off the tmpfs (as an operator moving it to a bigger
        disk would) and unmounts the tmpfs."""
        data = self.tmpfs.pop(index)
        self.kill(index)
        staged = data.with_name("data.from-tmpfs")
        shutil.rmtree(staged, ignore_errors=True)
        subprocess.run(["cp", "-a", "--sparse=always", str(data), str(staged)], check=True)
        subprocess.run(["umount", str(data)], check=True)
        data.rmdir()
        os.rename(staged, data)
        self.mark(index, "data folder back from the tmpfs")

    # --- parties -----------------------------------------------------------------------------

    def client(self, who: str = "centre", timeout_ms: int = 10_000) -> ProxyAwareClient:
        party = {"centre": self.layout.centres[0], "auditor": self.layout.auditor}[who]
        real = {self.proxies.address(a, b): self.layout.nodes[b].address for a, b in self.proxies.links}
        return ProxyAwareClient(list(self.layout.addresses),
                                TlsFiles.load(self.layout.ca_cert_file, party.tls_cert_file, party.tls_key_file),
                                timeout_ms, real_address=real)

    def centre_key(self):
        return read_key_file(self.layout.centres[0].key_file)

    @property
    def chain_id(self) -> bytes:
        return bytes.fromhex(self.layout.chain_id)

    def status(self, index: int):
        with self.client("auditor") as client:
            try:
                return client.status_of(self.layout.nodes[index].address, timeout_ms=STATUS_TIMEOUT_MS).nodes[0]
            except grpc.RpcError:
                return None

    def health(self, index: int) -> str:
        """The node's gRPC health status name ("SERVING", "NOT_SERVING", ...), or "UNREACHABLE"."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with self.client("auditor") as client:
            client.stub(self.layout.nodes[index].address)        # opens the channel
            channel = client._channels[self.layout.nodes[index].address]
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                                   timeout=STATUS_TIMEOUT_MS / 1000)
                return health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
            except grpc.RpcError:
                return "UNREACHABLE"

    def leader(self) -> int | None:
        """A live, unpaused node that says it leads, or None."""
        for i in range(self.nodes):
            if self.alive(i) and i not in self.paused:
                status = self.status(i)
                if status is not None and status.role == "leader":
                    return i
        return None


def _disk_usage(folder: Path) -> int:
    """Bytes the files in ``folder`` really occupy (LMDB files are sparse)."""
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())
