"""Cluster benchmark: a 3-node nanum consortium on loopback, as it ships, against a 3-member etcd.

Every node is a real ``nanum node run`` process (node.cluster.LocalCluster): mutual TLS, fsync on,
default settings unless ``--env KEY=VALUE`` passes node settings a user could also set (they are
printed). Clients run in their own process (benchmarks.bench_common's load generator), with every
transaction signed before the timed part. Prints, with the machine, the load and the parameters:

  bound     Ed25519 verifications/s on one core (same run); bound = cores x rate / nodes
  W1        one client, 2,000 signed deposits one after another, each waiting for its commit:
            p50/p99 commit latency, tx/s
  W2        64 concurrent clients, one transaction at a time each, 20,000 signed deposits and
            redemptions (half each; members registered and funded, vouchers signed beforehand):
            committed tx/s, p50/p99 latency, and W2 / bound
  failover  SIGKILL of the leader while a client submits continuously -> the first commit under
            the new leader; median of 5
  catchup   a node whose data folder was deleted rejoins (``--rejoin``) a ledger of 100,000
            transactions: transactions per second until its certified height equals the others'
  storage   bytes on disk per transaction of a node's data folder after 100,000 transactions
  peer      W1 and W2 shapes against etcd (benchmarks/etcd_peer.py), same client harness, values
            of 150 bytes under unique keys; nanum / etcd for each figure

then every target with the measured ratio. A missed target is printed, never a failure.

Usage: python benchmarks/cluster_bench.py [--quick] [--only W1,W2,failover,catchup,storage,peer]
                                          [--env NANUM_MAX_BATCH_WAIT_MS=2 ...]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from benchmarks.bench_common import (  # noqa: E402
    LoadSpec,
    busy_processes,
    cpu_line,
    describe,
    du_bytes,
    git_state,
    lmdb_breakdown,
    load_average,
    machine,
    median,
    process_cpu_s,
    run_load,
    summary_line,
    target_line,
    verify_rate,
)
from ledger.keys import SigningKey  # noqa: E402
from ledger.tx import Deposit, DepositKind, Redeem, RegisterMember, make_tx  # noqa: E402
from ledger.voucher import sign_voucher  # noqa: E402
from node.client import LedgerClient, TlsFiles  # noqa: E402
from node.cluster import LocalCluster  # noqa: E402
from node.config import NodeConfig  # noqa: E402
from node.wire import ledger_pb2, ledger_pb2_grpc  # noqa: E402

NODES = 3
ALL = ("W1", "W2", "failover", "catchup", "storage", "peer")
FULL = dict(w1=2_000, w2=20_000, clients=64, members=1_000, failovers=5, ledger=100_000)
QUICK = dict(w1=200, w2=2_000, clients=64, members=200, failovers=2, ledger=5_000)
CHANNELS = 4                      # gRPC connections shared by the W2 client threads
BATCH_SUBMIT = 256                # SubmitBatch size when loading (the server's maximum)
LOADERS = 4                       # concurrent SubmitBatch callers when loading
FUND_POINTS = 1_000               # each member's first deposit, before the timed part
STEADY_S = 1.0                    # submitting before the leader is killed
FAILOVER_TIMEOUT_S = 20.0
CONVERGE_TIMEOUT_S = 60.0
CATCHUP_TIMEOUT_S = 600.0
LOAD_TIMEOUT_S = 900.0

TARGETS = dict(w2_vs_etcd=1.0, w2_vs_bound=0.60, w1_p50_vs_etcd=1.5, failover_s=1.5,
               catchup_vs_verify=0.50, bytes_per_tx=400)


def say(text: str = "") -> None:
    print(text, flush=True)


# --- a consortium and its parties --------------------------------------------------------------


class Consortium:
    """A started LocalCluster plus the keys the workloads sign with."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.cluster = LocalCluster(folder, nodes=NODES, extra_env=env)
        self.cluster.create()
        self.cluster.start()
        self.cluster.leader()
        self.chain_id = self.cluster.chain_id
        self.centre = self.cluster.key("centre")
        self.partner = self.cluster.key("partner")
        self.members: list[SigningKey] = []
        layout = self.cluster.layout
        party = layout.centres[0]
        self.tls = (layout.ca_cert_file.read_bytes(), party.tls_cert_file.read_bytes(),
                    party.tls_key_file.read_bytes())
        # The centre's and the bookstore's (cert, key): each submits only its own transactions.
        self.identities = [(p.tls_cert_file.read_bytes(), p.tls_key_file.read_bytes())
                           for p in (layout.centres[0], layout.partners[0])]

    def leader_address(self) -> str:
        return self.cluster.layout.nodes[self.cluster.leader()].address

    def addresses_leader_first(self) -> list[str]:
        leader = self.leader_address()
        return [leader] + [a for a in self.cluster.layout.addresses if a != leader]

    def stop(self) -> None:
        self.cluster.stop()

    # --- signed transactions (all before any timed part) ---------------------------------------

    def deposit(self, member: SigningKey, points: int, ref: str) -> bytes:
        payload = Deposit(member.party_id, points, DepositKind.VOLUNTEERING, 60, ref, 4)
        return make_tx(self.centre, self.chain_id, os.urandom(16), payload).raw

    def redemption(self, member: SigningKey, points: int, memo: str) -> bytes:
        voucher = sign_voucher(member, self.chain_id, self.partner.party_id, points, os.urandom(16),
                               int(time.time() * 1000) + 24 * 3600 * 1000)
        return make_tx(self.partner, self.chain_id, os.urandom(16), Redeem(voucher, points, memo)).raw

    def add_members(self, count: int, fund: bool = True) -> None:
        """Registers ``count`` members and (``fund``) deposits FUND_POINTS to each, in batches."""
        keys = [SigningKey.generate() for _ in range(count)]
        self.load([make_tx(self.centre, self.chain_id, os.urandom(16), RegisterMember(k.public_key)).raw
                   for k in keys])
        if fund:
            self.load([self.deposit(k, FUND_POINTS, "FUND") for k in keys])
        self.members += keys

    def load(self, raws: list[bytes], addresses: list[str] | None = None) -> float:
        """Submits ``raws`` with SubmitBatch from LOADERS threads; checks every result is OK.
        Returns the seconds it took (not a headline figure: the load is not a workload)."""
        addresses = addresses or self.addresses_leader_first()
        chunks = [raws[i:i + BATCH_SUBMIT] for i in range(0, len(raws), BATCH_SUBMIT)]
        clients = [self._client(addresses) for _ in range(LOADERS)]
        refused: list[str] = []

        def send(index: int) -> None:
            client = clients[index % LOADERS]
            for chunk in chunks[index::LOADERS]:
                for result in client.submit_batch(chunk).results:
                    if result.code != 0:
                        refused.append(result.code_name)

        start = time.perf_counter()
        try:
            with ThreadPoolExecutor(LOADERS) as pool:
                list(pool.map(send, range(LOADERS)))
        finally:
            for client in clients:
                client.close()
        if refused:
            raise RuntimeError(f"{len(refused)} loaded transactions were refused, e.g. {refused[:3]}")
        return time.perf_counter() - start

    def _client(self, addresses: list[str]) -> LedgerClient:
        layout, party = self.cluster.layout, self.cluster.layout.centres[0]
        tls = TlsFiles.load(layout.ca_cert_file, party.tls_cert_file, party.tls_key_file)
        return LedgerClient(addresses, tls, timeout_ms=120_000)

    def spec(self, work: list[list[bytes]], deadline_s: float, channels: int, mixed: bool = False) -> LoadSpec:
        """``mixed``: worker i's work is the centre's for even i, the bookstore's for odd i
        (``channels`` then even: worker i uses connection i % channels)."""
        ca, cert, key = self.tls
        assert not mixed or channels % 2 == 0
        return LoadSpec("nanum", self.addresses_leader_first(), work, ca, cert, key, channels, deadline_s,
                        identities=self.identities if mixed else [])

    def leader_height(self) -> int:
        return self.heights()[self.cluster.leader()][0]

    def nodes_cpu_s(self) -> dict[int, float]:
        return {i: process_cpu_s(process.pid) for i, process in self.cluster.processes.items()}

    def cpu_line(self, before: dict[int, float], result) -> str:
        """CPU per committed transaction of each node process and of the load client (the
        leader named is the one after the run)."""
        leader = self.cluster.leader()
        after = self.nodes_cpu_s()
        used = {("leader" if i == leader else f"follower {i}"): after[i] - before[i] for i in sorted(after)}
        return cpu_line(dict(sorted(used.items())), result.client_cpu_s, result.succeeded)

    def blocks_line(self, before: int, txs: int) -> str:
        blocks = self.leader_height() - before
        return f"{blocks} blocks for {txs} transactions = {txs / max(1, blocks):.1f} tx per block"

    def heights(self) -> dict[int, tuple[int, int]]:
        """(applied, certified) height of every node that answers."""
        return {i: (s.applied_height, s.certified_height) for i, s in self.cluster.statuses().items()}

    def converge(self, expected: int = NODES, timeout_s: float = CONVERGE_TIMEOUT_S) -> int:
        """Waits until ``expected`` nodes answer with one applied and certified height; returns it."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            heights = self.heights()
            values = {h for pair in heights.values() for h in pair}
            if len(heights) == expected and len(values) == 1:
                return values.pop()
            time.sleep(0.1)
        raise RuntimeError(f"nodes did not converge in {timeout_s:.0f} s: {self.heights()}")

    def tree_size(self) -> int:
        with self._client(self.addresses_leader_first()) as client:
            return client.checkpoint().tree_size


# --- workloads --------------------------------------------------------------------------------


def run_w1(con: Consortium, count: int, folder: Path, profile: str | None = None) -> dict:
    raws = [con.deposit(random.choice(con.members), 10, f"W1-{i}") for i in range(count)]
    before = con.leader_height()
    profilers = _start_profilers(con, f"{profile}-w1", folder) if profile else []
    cpu_before = con.nodes_cpu_s()
    result = run_load(con.spec([raws], deadline_s=600, channels=1), folder)
    for profiler in profilers:
        _stop_profiler(profiler)
    say("[W1] " + summary_line("nanum sequential, 1 client", result))
    say("[W1] " + con.blocks_line(before, result.succeeded))
    say("[W1] " + con.cpu_line(cpu_before, result))
    return describe(result) | {"result": result}


def w2_work(con: Consortium, total: int, clients: int) -> list[list[bytes]]:
    """Half deposits, half redemptions of 1 point (every member holds FUND_POINTS): the even
    clients deposit (the centre's certificate), the odd ones redeem (the bookstore's); vouchers
    are signed by the members here, before anything is timed."""
    work: list[list[bytes]] = [[] for _ in range(clients)]
    for i in range(total):
        member = con.members[i % len(con.members)]
        raw = con.deposit(member, 5, f"W2-{i}") if i % 2 == 0 else con.redemption(member, 1, f"W2-{i}")
        work[i % clients].append(raw)
    return work


def run_w2(con: Consortium, total: int, clients: int, folder: Path, profile: str | None = None) -> dict:
    work = w2_work(con, total, clients)
    before = con.leader_height()
    profilers = _start_profilers(con, profile, folder) if profile else []
    cpu_before = con.nodes_cpu_s()
    result = run_load(con.spec(work, deadline_s=600, channels=CHANNELS, mixed=True), folder)
    for profiler in profilers:
        _stop_profiler(profiler)
    say("[W2] " + summary_line(f"nanum {clients} concurrent clients, {CHANNELS} connections", result))
    say("[W2] " + con.blocks_line(before, result.succeeded))
    say("[W2] " + con.cpu_line(cpu_before, result))
    return describe(result) | {"result": result}


def _start_profilers(con: Consortium, prefix: str, folder: Path) -> list[subprocess.Popen]:
    """py-spy (on PATH) on the leader and on one follower for a W1 or W2 run, wall-clock (--idle),
    as collapsed stacks in PREFIX-leader.txt and PREFIX-follower.txt."""
    leader = con.cluster.leader()
    follower = next(i for i in range(NODES) if i != leader)
    profilers = []
    for role, index in (("leader", leader), ("follower", follower)):
        profilers.append(_py_spy(con.cluster.processes[index].pid, f"{prefix}-{role}.txt", folder))
    return profilers


def _stop_profiler(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def failover_trial(con: Consortium, trial: int) -> float:
    """Seconds from the leader's SIGKILL to the first submission acknowledged by another node,
    with one client submitting new deposits back to back (pause 5 ms between retries)."""
    cluster = con.cluster
    old = cluster.leader()
    old_address = cluster.layout.nodes[old].address
    ca, cert, key = con.tls
    credentials = grpc.ssl_channel_credentials(ca, key, cert)
    channels = {a: grpc.secure_channel(a, credentials) for a in cluster.layout.addresses}
    stubs = {a: ledger_pb2_grpc.LedgerStub(c) for a, c in channels.items()}
    acks: list[tuple[float, str]] = []
    stop = threading.Event()
    member = con.members[trial % len(con.members)]

    def submitter() -> None:
        address, order, turn = old_address, list(channels), 0
        while not stop.is_set():
            request = ledger_pb2.SubmitRequest(tx=con.deposit(member, 1, f"FAILOVER-{trial}"))
            while not stop.is_set():
                try:
                    stubs[address].Submit(request, timeout=2.0)
                    acks.append((time.perf_counter(), address))
                    break
                except grpc.RpcError as error:
                    hint = dict(error.trailing_metadata() or ()).get("nanum-leader")
                    if hint in stubs and hint != address:
                        address = hint
                    else:
                        turn += 1
                        address = order[turn % len(order)]
                    time.sleep(0.005)

    thread = threading.Thread(target=submitter, daemon=True)
    thread.start()
    time.sleep(STEADY_S)
    before = len(acks)
    killed_at = time.perf_counter()
    cluster.kill(old)
    deadline = time.monotonic() + FAILOVER_TIMEOUT_S
    first = None
    while first is None and time.monotonic() < deadline:
        first = next((t for t, a in acks[before:] if t > killed_at and a != old_address), None)
        time.sleep(0.005)
    stop.set()
    thread.join(timeout=5)
    for channel in channels.values():
        channel.close()
    cluster.start(old)                      # the same node back, then wait until all agree
    con.converge()
    if first is None:
        raise RuntimeError(f"no commit under a new leader within {FAILOVER_TIMEOUT_S:.0f} s")
    return first - killed_at


def run_failover(con: Consortium, trials: int) -> dict:
    times = []
    for trial in range(trials):
        seconds = failover_trial(con, trial)
        times.append(seconds)
        say(f"[failover] trial {trial + 1}: {seconds * 1000:.0f} ms from SIGKILL of the leader to the "
            f"first commit under the new leader")
    say(f"[failover] median of {trials}: {median(times) * 1000:.0f} ms "
        f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
    return {"median_s": median(times), "times": times}


def _py_spy(pid: int, out: str, folder: Path) -> subprocess.Popen:
    command = [shutil.which("py-spy") or "py-spy", "record", "--pid", str(pid), "--rate", "250",
               "--idle", "--format", "raw", "--output", out]
    log = open(folder / f"py-spy-{pid}.log", "wb")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def run_catchup(folder: Path, env: dict[str, str], ledger_txs: int, members: int,
                profile: str | None = None) -> dict:
    """A fresh consortium; one follower stopped; ``ledger_txs`` transactions loaded through the
    other two; the follower's data folder deleted; the follower started with ``--rejoin``."""
    con = Consortium(folder / "catchup", env)
    try:
        cluster = con.cluster
        leader = cluster.leader()
        victim = next(i for i in range(NODES) if i != leader)
        process = cluster.processes.pop(victim)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        others = [cluster.layout.nodes[i].address for i in range(NODES) if i != victim]
        signed_at = time.perf_counter()
        keys = [SigningKey.generate() for _ in range(members)]
        raws = [make_tx(con.centre, con.chain_id, os.urandom(16), RegisterMember(k.public_key)).raw for k in keys]
        deposits = [con.deposit(keys[i % members], 10, f"LOAD-{i}") for i in range(ledger_txs - members)]
        signing_s = time.perf_counter() - signed_at
        load_s = con.load(raws, others) + con.load(deposits, others)
        height = con.converge(expected=NODES - 1)
        tree_size = con.tree_size()
        say(f"[catchup] loaded {tree_size:,} transactions ({height} blocks) through 2 nodes in {load_s:.1f} s "
            f"= {(len(raws) + len(deposits)) / load_s:,.0f} tx/s with SubmitBatch "
            f"({LOADERS} callers x {BATCH_SUBMIT}; signing took {signing_s:.1f} s before)")
        storage = {i: du_bytes(cluster.layout.nodes[i].folder / "data") for i in range(NODES) if i != victim}
        node = cluster.layout.nodes[victim]
        shutil.rmtree(node.folder / "data")
        log = open(node.folder / "node-rejoin.log", "ab")
        started = time.perf_counter()
        cluster.processes[victim] = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "node", "run", "--config", str(node.config_file),
             "--log-level", "warning", "--rejoin"], stdout=log, stderr=subprocess.STDOUT,
            env=dict(os.environ, **env), cwd=Path(__file__).resolve().parent.parent)
        log.close()
        serving, current, profilers = None, None, []
        deadline = time.monotonic() + CATCHUP_TIMEOUT_S
        with con._client(others) as client:
            while current is None and time.monotonic() < deadline:
                if cluster.processes[victim].poll() is not None:
                    raise RuntimeError(f"the rejoining node exited: see {node.folder}/node-rejoin.log")
                try:
                    status = client.status_of(node.address, timeout_ms=1000).nodes[0]
                except grpc.RpcError:
                    time.sleep(0.05)
                    continue
                if serving is None:
                    serving = time.perf_counter()
                    if profile:     # the rejoining node and the leader that serves it blocks
                        profilers = [_py_spy(cluster.processes[victim].pid, f"{profile}-rejoin.txt", folder),
                                     _py_spy(cluster.processes[leader].pid, f"{profile}-serving.txt", folder)]
                if status.certified_height >= height:
                    current = time.perf_counter()
                else:
                    time.sleep(0.05)
        for profiler in profilers:
            _stop_profiler(profiler)
        if current is None:
            raise RuntimeError(f"the rejoining node was not current within {CATCHUP_TIMEOUT_S:.0f} s")
        total_s, from_serving_s = current - started, current - serving
        rate = tree_size / total_s
        after_serving = (f"{from_serving_s:.1f} s after it first answered = {tree_size / from_serving_s:,.0f} tx/s"
                         if from_serving_s > 0.2 else "current when it first answered")
        say(f"[catchup] rejoined from an empty data folder: certified height {height} "
            f"({tree_size:,} tx) in {total_s:.1f} s from process start = {rate:,.0f} tx/s ({after_serving})")
        storage_rejoined = du_bytes(node.folder / "data")
        for i, size in storage.items():
            say(f"[storage] node-{i} (loaded{', leader' if i == leader else ''}): {size:,} bytes on disk "
                f"= {size / tree_size:,.0f} bytes/tx")
        say(f"[storage] node-{victim} (rebuilt by catch-up): {storage_rejoined:,} bytes on disk "
            f"= {storage_rejoined / tree_size:,.0f} bytes/tx")
        parts = lmdb_breakdown(cluster.layout.nodes[leader].folder / "data" / "ledger")
        say(f"[storage] node-{leader}'s LMDB by database: " + "; ".join(
            f"{name} {size / tree_size:,.0f} B/tx" + (f" ({entries:,} entries)" if entries else "")
            for name, entries, size in parts))
        return {"rate": rate, "seconds": total_s, "txs": tree_size,
                "bytes_per_tx": storage[leader] / tree_size, "bytes_per_tx_rejoined": storage_rejoined / tree_size}
    finally:
        con.stop()


def run_peer(folder: Path, w1: int, w2: int, clients: int) -> dict:
    from benchmarks.etcd_peer import EtcdCluster, EtcdUnavailable, put_work
    try:
        etcd = EtcdCluster(folder / "etcd")
    except EtcdUnavailable as exc:
        say(f"[peer] skipped: {exc}")
        return {}
    try:
        etcd.start()
        say(f"[peer] {etcd.version}, 3 members, mutual TLS, fsync on (defaults), v3 JSON gateway over "
            f"HTTPS with http.client, clients at the leader")
        addresses = etcd.addresses
        leader = etcd.leader()
        order = [addresses[leader]] + [a for i, a in enumerate(addresses) if i != leader]

        def spec(work, channels):
            return LoadSpec("etcd", order, work, etcd.ca_pem, etcd.client_cert, etcd.client_key, channels, 600)

        disk = etcd.metrics(leader)
        one = run_load(spec(put_work(1, w1, "w1"), 1), folder)
        say("[peer W1] " + summary_line("etcd sequential, 1 client", one))
        say("[peer W1] " + _fsyncs(disk, disk := etcd.metrics(leader), one.succeeded))
        many = run_load(spec(put_work(clients, w2, "w2"), clients), folder)
        say("[peer W2] " + summary_line(f"etcd {clients} concurrent clients, {clients} connections", many))
        say("[peer W2] " + _fsyncs(disk, etcd.metrics(leader), many.succeeded))
        return {"W1": describe(one), "W2": describe(many)}
    finally:
        etcd.stop()


def _fsyncs(before: dict[str, float], after: dict[str, float], puts: int) -> str:
    """The etcd leader's WAL fsyncs and backend commits during a run, from its own metrics."""
    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)
    wal, wal_s = delta("etcd_disk_wal_fsync_duration_seconds_count"), delta("etcd_disk_wal_fsync_duration_seconds_sum")
    backend = delta("etcd_disk_backend_commit_duration_seconds_count")
    return (f"etcd leader: {wal:.0f} WAL fsyncs (mean {wal_s / max(1, wal) * 1000:.2f} ms) and {backend:.0f} "
            f"backend commits for {puts} puts = {puts / max(1, wal):.1f} puts per WAL fsync")


# --- main -------------------------------------------------------------------------------------


def settings_line(env: dict[str, str]) -> str:
    defaults = NodeConfig.__dataclass_fields__
    names = ("tick_ms", "election_ticks", "heartbeat_ticks", "max_batch_txs", "max_batch_wait_ms",
             "max_pending_submissions")
    shown = []
    for name in names:
        variable = f"NANUM_{name.upper()}"
        value = env.get(variable, defaults[name].default)
        shown.append(f"{name}={value}{' (set)' if variable in env else ''}")
    return ", ".join(shown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run under a minute")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--env", action="append", default=[], metavar="NANUM_KEY=VALUE",
                        help="a node setting passed to every node's environment (repeatable)")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="record with py-spy (on PATH; collapsed stacks, wall clock): the leader and a "
                             "follower during W1 (PREFIX-w1-leader.txt, PREFIX-w1-follower.txt) and W2 "
                             "(PREFIX-leader.txt, PREFIX-follower.txt), the rejoining node and the leader "
                             "during catch-up (PREFIX-rejoin.txt, PREFIX-serving.txt)")
    args = parser.parse_args()
    only = {name.strip().lower() for name in args.only.split(",") if name.strip()}
    unknown = only - {name.lower() for name in ALL}
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(ALL)}")
    env = dict(item.split("=", 1) for item in args.env)
    if any(not key.startswith("NANUM_") for key in env):
        parser.error("--env takes NANUM_<SETTING>=VALUE")
    size = QUICK if args.quick else FULL
    cores = os.cpu_count() or 1

    say(f"machine:    {machine()}")
    say(f"code:       {git_state()}")
    say(f"load:       {load_average()} at start; other busy processes: {busy_processes()}")
    say(f"parameters: {NODES} nodes on 127.0.0.1, mutual TLS, fsync on; {settings_line(env)}")
    say(f"            W1={size['w1']} deposits sequential; W2={size['w2']} tx (deposits and redemptions, "
        f"half each) by {size['clients']} clients ({CHANNELS} gRPC connections; threads with sync stubs "
        f"in one client process); {size['members']} members funded before; failover x{size['failovers']}; "
        f"catch-up/storage ledger={size['ledger']:,} tx{'; QUICK sizes' if args.quick else ''}")
    started = time.perf_counter()
    rate = verify_rate()
    bound = cores * rate / NODES
    say(f"[bound] Ed25519 verifications/s on one core: {rate:,.0f}; bound = {cores} cores x rate / {NODES} nodes "
        f"= {bound:,.0f} tx/s")
    figures: dict[str, dict] = {}

    with tempfile.TemporaryDirectory(prefix="nanum-cluster-bench-") as tmp:
        folder = Path(tmp)
        if only & {"w1", "w2", "failover"}:
            con = Consortium(folder / "main", env)
            try:
                con.add_members(size["members"])
                if "w1" in only:
                    figures["W1"] = run_w1(con, size["w1"], folder, args.profile)
                if "w2" in only:
                    figures["W2"] = run_w2(con, size["w2"], size["clients"], folder, args.profile)
                    sigs = 1.5      # a deposit carries one signature, a redemption two
                    say(f"[W2] = {figures['W2']['rate'] / bound:.0%} of the bound ({bound:,.0f} tx/s); "
                        f"with {sigs} signatures per transaction, {figures['W2']['rate'] * sigs * NODES:,.0f} "
                        f"verifications/s over the cluster = {figures['W2']['rate'] * sigs * NODES / (cores * rate):.0%} "
                        f"of {cores} cores' verify rate")
                if "failover" in only:
                    figures["failover"] = run_failover(con, size["failovers"])
            finally:
                con.stop()
        if only & {"catchup", "storage"}:
            figures["catchup"] = run_catchup(folder, env, size["ledger"], size["members"], args.profile)
        if "peer" in only:
            figures["peer"] = run_peer(folder, size["w1"], size["w2"], size["clients"])

    say(f"load:       {load_average()} at the end; other busy processes: {busy_processes()}; "
        f"the run took {time.perf_counter() - started:.0f} s")
    say("")
    say("summary (nanum / etcd for each figure; targets from the issue; a miss is reported, not fatal):")
    peer = figures.get("peer") or {}
    for shape in ("W1", "W2"):
        if shape in figures and shape in peer:
            ours, theirs = figures[shape], peer[shape]
            say(f"  {shape}: tx/s {ours['rate']:,.0f} / {theirs['rate']:,.0f} = {ours['rate'] / theirs['rate']:.2f}x; "
                f"p50 {ours['p50_ms']:.2f} / {theirs['p50_ms']:.2f} ms = {ours['p50_ms'] / theirs['p50_ms']:.2f}x; "
                f"p99 {ours['p99_ms']:.2f} / {theirs['p99_ms']:.2f} ms = {ours['p99_ms'] / theirs['p99_ms']:.2f}x; "
                f"client CPU {ours['client_us']:.0f} / {theirs['client_us']:.0f} µs per request")
    if "W2" in figures and "W2" in peer:
        r = figures["W2"]["rate"] / peer["W2"]["rate"]
        say(target_line("W2 tx/s vs etcd", f"{r:.2f}x", f">= {TARGETS['w2_vs_etcd']:.1f}x", r >= TARGETS["w2_vs_etcd"]))
    if "W2" in figures:
        r = figures["W2"]["rate"] / bound
        say(target_line("W2 tx/s vs bound (cores x verify / nodes)", f"{r:.0%} ({figures['W2']['rate']:,.0f} / {bound:,.0f})",
                        f">= {TARGETS['w2_vs_bound']:.0%}", r >= TARGETS["w2_vs_bound"]))
    if "W1" in figures and "W1" in peer:
        r = figures["W1"]["p50_ms"] / peer["W1"]["p50_ms"]
        say(target_line("W1 p50 latency vs etcd", f"{r:.2f}x", f"<= {TARGETS['w1_p50_vs_etcd']:.1f}x",
                        r <= TARGETS["w1_p50_vs_etcd"]))
    if "failover" in figures:
        s = figures["failover"]["median_s"]
        say(target_line("failover (median)", f"{s:.2f} s", f"<= {TARGETS['failover_s']:.1f} s", s <= TARGETS["failover_s"]))
    if "catchup" in figures:
        c = figures["catchup"]
        r = c["rate"] / (cores * rate)
        say(target_line("catch-up vs cores x verify rate", f"{r:.0%} ({c['rate']:,.0f} / {cores * rate:,.0f})",
                        f">= {TARGETS['catchup_vs_verify']:.0%}", r >= TARGETS["catchup_vs_verify"]))
        b = c["bytes_per_tx"]
        say(target_line("storage per transaction", f"{b:,.0f} bytes", f"<= {TARGETS['bytes_per_tx']} bytes",
                        b <= TARGETS["bytes_per_tx"]))


if __name__ == "__main__":
    main()
