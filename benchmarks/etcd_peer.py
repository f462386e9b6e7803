"""The peer system of the cluster benchmark: a 3-member etcd cluster on loopback.

Owns installing etcd when it is missing (Debian's ``etcd-server``, with ``apt-get`` when run as
root), starting three members in a temporary folder with their data on disk and etcd's default
durability (every commit fsynced; ``--unsafe-no-fsync`` is not used), mutual TLS on both the
client and the peer ports (the same kind of certificates as nanum: ECDSA P-256 from one CA, made
with ``node.pki``), finding the leader, and stopping and deleting everything.

Clients talk to etcd's v3 JSON gateway (``POST /v3/kv/put``) over HTTPS with ``http.client``, so
the benchmark needs no dependency beyond the project's; a put returns once the leader applied
the committed entry, the same point at which a nanum submission returns.

Run alone: ``python benchmarks/etcd_peer.py`` starts a cluster, puts one key and stops.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_common import free_ports  # noqa: E402
from node import pki  # noqa: E402

MEMBERS = 3
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
INSTALL_TIMEOUT_S = 600.0
VALUE_BYTES = 150


class EtcdUnavailable(Exception):
    """etcd is not installed and cannot be installed here; the message says what to do."""


def ensure_etcd() -> str:
    """The path of the ``etcd`` binary, installing Debian's ``etcd-server`` if it is missing
    and this process is root."""
    found = shutil.which("etcd")
    if found:
        return found
    if os.geteuid() != 0:
        raise EtcdUnavailable("etcd is not on PATH and this is not root: install it with "
                              "`sudo apt-get install -y etcd-server` (Debian/Ubuntu), then rerun")
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "etcd-server"]):
        done = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S,
                              env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        if done.returncode != 0:
            raise EtcdUnavailable(f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}")
    found = shutil.which("etcd")
    if not found:
        raise EtcdUnavailable("etcd-server was installed but no `etcd` is on PATH")
    return found


def etcd_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.splitlines()[0].strip() if out else "unknown"


class EtcdCluster:
    """Three etcd members on loopback, mutual TLS, data in ``folder`` (deleted by ``stop``)."""

    def __init__(self, folder: Path | None = None, members: int = MEMBERS) -> None:
        self.binary = ensure_etcd()
        self.version = etcd_version(self.binary)
        self._own_folder = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="nanum-bench-etcd-"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.members = members
        ports = free_ports(2 * members)
        self.client_urls = [f"https://127.0.0.1:{ports[i]}" for i in range(members)]
        self.peer_urls = [f"https://127.0.0.1:{ports[members + i]}" for i in range(members)]
        self.processes: list[subprocess.Popen] = []
        self._tls()

    @property
    def addresses(self) -> list[str]:
        return [url.removeprefix("https://") for url in self.client_urls]

    def _tls(self) -> None:
        now = datetime.now(timezone.utc)
        ca_key, ca_cert = pki.create_ca("etcd benchmark", 30, now)
        self.ca_file = self.folder / "ca.crt"
        pki.write_certificate(self.ca_file, ca_cert)
        self.ca_pem = self.ca_file.read_bytes()
        for i in range(self.members + 1):      # the members (server and peer-client), then the client
            key = pki.generate_tls_key()
            identity = pki.Identity("node", f"etcd-{i}", os.urandom(20))
            cert = pki.issue_certificate(ca_key, ca_cert, identity, key.public_key(),
                                         ["127.0.0.1", "localhost"], 30, now)
            pki.write_private_key(self.folder / f"m{i}.key", key)
            pki.write_certificate(self.folder / f"m{i}.crt", cert)
        self.client_cert = (self.folder / f"m{self.members}.crt").read_bytes()
        self.client_key = (self.folder / f"m{self.members}.key").read_bytes()

    def start(self) -> None:
        cluster = ",".join(f"m{i}={url}" for i, url in enumerate(self.peer_urls))
        for i in range(self.members):
            tls = [f"--cert-file={self.folder}/m{i}.crt", f"--key-file={self.folder}/m{i}.key",
                   f"--trusted-ca-file={self.ca_file}", "--client-cert-auth",
                   f"--peer-cert-file={self.folder}/m{i}.crt", f"--peer-key-file={self.folder}/m{i}.key",
                   f"--peer-trusted-ca-file={self.ca_file}", "--peer-client-cert-auth"]
            log = open(self.folder / f"m{i}.log", "ab")
            self.processes.append(subprocess.Popen(
                [self.binary, f"--name=m{i}", f"--data-dir={self.folder}/m{i}.etcd",
                 f"--listen-client-urls={self.client_urls[i]}", f"--advertise-client-urls={self.client_urls[i]}",
                 f"--listen-peer-urls={self.peer_urls[i]}", f"--initial-advertise-peer-urls={self.peer_urls[i]}",
                 f"--initial-cluster={cluster}", "--initial-cluster-state=new",
                 "--initial-cluster-token=nanum-bench", "--logger=zap", "--log-level=warn", *tls],
                stdout=log, stderr=subprocess.STDOUT))
            log.close()
        self.leader(START_TIMEOUT_S)

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.load_cert_chain(self.folder / f"m{self.members}.crt", self.folder / f"m{self.members}.key")
        return context

    def call(self, index: int, path: str, body: dict, timeout_s: float = 2.0) -> dict:
        host, port = self.addresses[index].rsplit(":", 1)
        connection = http.client.HTTPSConnection(host, int(port), timeout=timeout_s, context=self._context())
        try:
            connection.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        if response.status != 200:
            raise RuntimeError(f"etcd {path}: HTTP {response.status} {answer[:200]!r}")
        return json.loads(answer)

    def leader(self, timeout_s: float = START_TIMEOUT_S) -> int:
        """Index of the member that is the leader (as that member itself reports)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for i, process in enumerate(self.processes):
                if process.poll() is not None:
                    raise RuntimeError(f"etcd member {i} exited: see {self.folder}/m{i}.log")
                try:
                    status = self.call(i, "/v3/maintenance/status", {}, timeout_s=1.0)
                except (OSError, RuntimeError, http.client.HTTPException, ValueError):
                    continue
                if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                    return i
            time.sleep(0.1)
        raise RuntimeError(f"etcd elected no leader in {timeout_s:.0f} s: see {self.folder}/m*.log")

    def metrics(self, index: int) -> dict[str, float]:
        """Prometheus counters of one member whose names start with ``etcd_disk_`` (the WAL fsync
        and backend commit histograms' _count and _sum), to show that every commit was fsynced."""
        host, port = self.addresses[index].rsplit(":", 1)
        connection = http.client.HTTPSConnection(host, int(port), timeout=5, context=self._context())
        try:
            connection.request("GET", "/metrics")
            text = connection.getresponse().read().decode()
        finally:
            connection.close()
        found = {}
        for line in text.splitlines():
            if line.startswith("etcd_disk_") and ("_count" in line or "_sum" in line):
                name, _, value = line.rpartition(" ")
                found[name] = float(value)
        return found

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        if self._own_folder:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "EtcdCluster":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def put_request(key: str, value: bytes) -> tuple[str, bytes]:
    """A (path, body) pair for the load generator: a put of ``value`` under ``key``."""
    body = {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value).decode()}
    return "/v3/kv/put", json.dumps(body).encode()


def put_work(workers: int, total: int, prefix: str) -> list[list[tuple[str, bytes]]]:
    """``total`` puts of VALUE_BYTES random bytes under unique keys, dealt to ``workers``."""
    work: list[list[tuple[str, bytes]]] = [[] for _ in range(workers)]
    for i in range(total):
        work[i % workers].append(put_request(f"{prefix}/{i % workers:03d}/{i:08d}", os.urandom(VALUE_BYTES)))
    return work


if __name__ == "__main__":
    with EtcdCluster() as etcd:
        print(f"{etcd.version}: leader is member {etcd.leader()} of {etcd.addresses}")
        path, body = put_request("hello", b"x" * VALUE_BYTES)
        print(etcd.call(etcd.leader(), path, json.loads(body)))
