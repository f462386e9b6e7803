"""Shared helpers of the cluster benchmarks: machine facts, figures, and the load generator.

The load generator is the one client harness both systems are driven by (nanum in
cluster_bench.py, etcd in etcd_peer.py): it runs in its own process (``python -m
benchmarks.bench_common loadgen SPEC OUT``), takes requests that were built and signed before it
started, and runs ``concurrency`` workers, each sending its own list one request at a time and
waiting for each answer. Workers are threads with blocking clients (gRPC's sync stubs, which wait
in C with the GIL released; ``http.client`` for etcd). It reports every request's latency, the
wall time of the timed part, failures by kind, and the client process's own CPU time.

Every wait is bounded: a request has a deadline, and the whole run has one.
"""

from __future__ import annotations

import os
import pickle
import resource
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.ledger_core import machine, verify_rate  # noqa: E402,F401  (re-exported: one definition)

REQUEST_TIMEOUT_S = 10.0        # one request, including retries
RETRY_PAUSE_S = 0.005           # between retries of one request (leader moved, queue full)
LOADGEN_OVERHEAD_S = 60.0       # process start, connecting, building requests


# --- machine and figures ---------------------------------------------------------------------


def load_average() -> str:
    with open("/proc/loadavg") as handle:
        one, five, fifteen = handle.read().split()[:3]
    return f"load average {one}, {five}, {fifteen} (1, 5, 15 min)"


def busy_processes(seconds: float = 1.0, threshold: float = 0.10) -> str:
    """Other processes that used more than ``threshold`` of a core over ``seconds`` (the
    machine is shared: this says what else ran beside the benchmark)."""
    def sample() -> dict[int, tuple[int, str]]:
        found = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    command = handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except OSError:
                continue
            found[int(entry)] = (int(fields[11]) + int(fields[12]), command[:70])
        return found
    ticks = os.sysconf("SC_CLK_TCK")
    first = sample()
    time.sleep(seconds)
    second = sample()
    busy = []
    for pid, (used, command) in second.items():
        share = (used - first.get(pid, (used, ""))[0]) / ticks / seconds
        if share >= threshold and pid != os.getpid():
            busy.append((share, command or f"pid {pid}"))
    busy.sort(reverse=True)
    return "; ".join(f"{share:.0%} {command}" for share, command in busy[:6]) or "none"


def git_state() -> str:
    try:
        head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"{head}" + (f" + uncommitted changes in {', '.join(changed)}" if changed else "")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def du_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (like ``du -s --block-size=1``): sparse files count
    only their allocated blocks."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except FileNotFoundError:
                pass
    return total


def lmdb_breakdown(path: Path) -> list[tuple[str, int, int]]:
    """(database name, entries, bytes in its pages) of every named database of the LMDB
    environment at ``path``, largest first; opened read-only beside a live writer."""
    import lmdb

    env = lmdb.open(str(path), readonly=True, max_dbs=64, lock=True, subdir=True)
    try:
        with env.begin() as txn:
            names = [key for key, _ in txn.cursor()]
        found = []
        for name in names:
            try:
                db = env.open_db(name, create=False)
            except lmdb.Error:
                continue
            with env.begin() as txn:
                stat = txn.stat(db)
            pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
            found.append((name.decode(errors="replace"), stat["entries"], pages * stat["psize"]))
        info = env.info()
        used = (info["last_pgno"] + 1) * env.stat()["psize"]
        found.append(("(all pages in use, incl. free pages)", 0, used))
    finally:
        env.close()
    return sorted(found, key=lambda item: -item[2])


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports free right now (bound to port 0, then released)."""
    sockets, ports = [], []
    try:
        for _ in range(count):
            probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
            ports.append(probe.getsockname()[1])
    finally:
        for probe in sockets:
            probe.close()
    return ports


def ratio(measured: float, reference: float) -> str:
    return f"{measured / reference:.2f}x" if reference else "n/a"


def target_line(label: str, measured: str, target: str, met: bool) -> str:
    return f"  {label:<44} {measured:<34} target {target:<28} {'MET' if met else 'MISSED'}"


# --- the load generator ----------------------------------------------------------------------


@dataclass
class LoadSpec:
    """What one load-generator process does. ``kind`` is "nanum" or "etcd"; ``work`` holds one
    list of requests per worker (raw transactions for nanum, (path, body) pairs for etcd)."""

    kind: str
    addresses: list[str]                 # host:port; the first is tried first
    work: list[list]
    ca_cert: bytes = b""
    cert: bytes = b""
    key: bytes = b""
    channels: int = 4                    # gRPC connections shared by the workers (nanum)
    deadline_s: float = 600.0            # the whole timed part
    # (cert, key) per connection, connection j using identities[j % len] (nanum; default: the
    # one cert and key): a certificate carries only its own party's transactions, so worker i,
    # which uses connection i % channels, must submit only that identity's.
    identities: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)    # of the requests that succeeded
    done_at_s: list[float] = field(default_factory=list)      # completion times, from the start
    wall_s: float = 0.0
    succeeded: int = 0
    failures: dict[str, int] = field(default_factory=dict)    # kind of failure -> count
    retries: int = 0
    client_cpu_s: float = 0.0                                  # user+sys of the timed part
    timed_out: bool = False

    @property
    def rate(self) -> float:
        return self.succeeded / self.wall_s if self.wall_s else 0.0


def run_load(spec: LoadSpec, folder: Path) -> LoadResult:
    """Runs ``spec`` in a fresh process (the client must not share the benchmark's interpreter)
    and returns what it measured."""
    spec_file, out_file = folder / "loadgen-spec.pickle", folder / "loadgen-result.pickle"
    spec_file.write_bytes(pickle.dumps(spec))
    out_file.unlink(missing_ok=True)
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_common", "loadgen",
                                str(spec_file), str(out_file)], cwd=REPO)
    try:
        process.wait(timeout=spec.deadline_s + LOADGEN_OVERHEAD_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise RuntimeError("the load generator did not finish in time") from None
    if process.returncode != 0 or not out_file.exists():
        raise RuntimeError(f"the load generator failed (exit {process.returncode})")
    return pickle.loads(out_file.read_bytes())


class _Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.result = LoadResult()
        self.start = 0.0

    def ok(self, began: float, ended: float) -> None:
        with self.lock:
            self.result.latencies_s.append(ended - began)
            self.result.done_at_s.append(ended - self.start)
            self.result.succeeded += 1

    def fail(self, kind: str) -> None:
        with self.lock:
            self.result.failures[kind] = self.result.failures.get(kind, 0) + 1

    def retried(self) -> None:
        with self.lock:
            self.result.retries += 1


def _nanum_workers(spec: LoadSpec, recorder: _Recorder, stop_at: list[float]):
    import grpc

    from node.wire import ledger_pb2, ledger_pb2_grpc

    identities = spec.identities or [(spec.cert, spec.key)]
    credentials = [grpc.ssl_channel_credentials(spec.ca_cert, key, cert) for cert, key in identities]
    options = [("grpc.use_local_subchannel_pool", 1),              # a connection per channel
               ("grpc.max_receive_message_length", 8 << 20)]
    pools = [{address: grpc.secure_channel(address, credentials[j % len(credentials)], options=options)
              for address in spec.addresses} for j in range(max(1, spec.channels))]
    for pool in pools:                                              # connect before timing
        for channel in pool.values():
            try:
                grpc.channel_ready_future(channel).result(timeout=10)
            except grpc.FutureTimeoutError:
                pass
    stubs = [{address: ledger_pb2_grpc.LedgerStub(channel) for address, channel in pool.items()}
             for pool in pools]
    retryable = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
                 grpc.StatusCode.DEADLINE_EXCEEDED}
    requests = [[ledger_pb2.SubmitRequest(tx=raw) for raw in work] for work in spec.work]

    def worker(index: int) -> None:
        mine, address, order = stubs[index % len(stubs)], spec.addresses[0], spec.addresses
        for request in requests[index]:
            if time.perf_counter() > stop_at[0]:
                recorder.fail("run deadline")
                return
            began = time.perf_counter()
            deadline = began + REQUEST_TIMEOUT_S
            turn = 0
            while True:
                try:
                    mine[address].Submit(request, timeout=max(0.01, deadline - time.perf_counter()))
                    recorder.ok(began, time.perf_counter())
                    break
                except grpc.RpcError as error:
                    code = error.code()
                    if code == grpc.StatusCode.FAILED_PRECONDITION:     # recorded, refused by a rule
                        names = dict(error.trailing_metadata() or ()).get("nanum-code-name", "refused")
                        recorder.fail(f"refused {names}")
                        break
                    if code not in retryable or time.perf_counter() > deadline:
                        recorder.fail(f"{code.name}: {error.details()}"[:120])
                        break
                    recorder.retried()
                    hint = dict(error.trailing_metadata() or ()).get("nanum-leader")
                    if hint and hint in mine:
                        address = hint
                    else:
                        turn += 1
                        address = order[turn % len(order)]
                    time.sleep(RETRY_PAUSE_S)

    def close() -> None:
        for pool in pools:
            for channel in pool.values():
                channel.close()

    return worker, close


def _etcd_workers(spec: LoadSpec, recorder: _Recorder, stop_at: list[float]):
    import http.client
    import ssl

    context = None
    if spec.ca_cert:
        context = ssl.create_default_context(cadata=spec.ca_cert.decode())
        import tempfile
        with tempfile.TemporaryDirectory() as folder:   # load_cert_chain reads files only
            cert_file, key_file = Path(folder, "c.pem"), Path(folder, "k.pem")
            cert_file.write_bytes(spec.cert)
            key_file.write_bytes(spec.key)
            context.load_cert_chain(cert_file, key_file)

    def connect(address: str):
        host, port = address.rsplit(":", 1)
        if context is None:
            return http.client.HTTPConnection(host, int(port), timeout=REQUEST_TIMEOUT_S)
        return http.client.HTTPSConnection(host, int(port), timeout=REQUEST_TIMEOUT_S, context=context)

    headers = {"Content-Type": "application/json"}
    connections = [connect(spec.addresses[0]) for _ in spec.work]
    for connection in connections:                                   # connect before timing
        connection.connect()

    def worker(index: int) -> None:
        connection = connections[index]
        for path, body in spec.work[index]:
            if time.perf_counter() > stop_at[0]:
                recorder.fail("run deadline")
                return
            began = time.perf_counter()
            deadline = began + REQUEST_TIMEOUT_S
            while True:
                try:
                    connection.request("POST", path, body, headers)
                    response = connection.getresponse()
                    answer = response.read()
                    if response.status == 200 and b'"header"' in answer:
                        recorder.ok(began, time.perf_counter())
                        break
                    problem = f"HTTP {response.status}: {answer[:80]!r}"
                except (OSError, http.client.HTTPException) as exc:
                    problem = f"{type(exc).__name__}"
                    connection.close()
                if time.perf_counter() > deadline:
                    recorder.fail(problem)
                    break
                recorder.retried()
                time.sleep(RETRY_PAUSE_S)

    def close() -> None:
        for connection in connections:
            connection.close()

    return worker, close


def loadgen_main(spec_file: str, out_file: str) -> None:
    spec: LoadSpec = pickle.loads(Path(spec_file).read_bytes())
    recorder = _Recorder()
    stop_at = [float("inf")]
    make = {"nanum": _nanum_workers, "etcd": _etcd_workers}[spec.kind]
    worker, close = make(spec, recorder, stop_at)
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(spec.work))]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    recorder.start = time.perf_counter()
    stop_at[0] = recorder.start + spec.deadline_s
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, stop_at[0] + REQUEST_TIMEOUT_S - time.perf_counter()))
    result = recorder.result
    result.wall_s = time.perf_counter() - recorder.start
    result.timed_out = any(thread.is_alive() for thread in threads)
    after = resource.getrusage(resource.RUSAGE_SELF)
    result.client_cpu_s = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    with recorder.lock:
        Path(out_file).write_bytes(pickle.dumps(result))
    if not result.timed_out:
        close()
    os._exit(0)      # daemon threads stuck in a call must not keep the process alive


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds a live process has used so far (Linux /proc); NaN once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_line(nodes_cpu_s: dict[str, float], client_cpu_s: float, committed: int) -> str:
    """Each process's CPU per committed transaction, and the rate those costs allow on this
    machine's cores if nothing but them ran: the ceiling of this implementation here."""
    per_tx = {name: cpu / max(1, committed) * 1e6 for name, cpu in nodes_cpu_s.items()}
    client_us = client_cpu_s / max(1, committed) * 1e6
    total_us = sum(per_tx.values()) + client_us
    cores = os.cpu_count() or 1
    ceiling = f"{cores / total_us * 1e6:,.0f} tx/s" if total_us > 0 else "(too short to tell)"
    return ("CPU per committed transaction: " + ", ".join(f"{name} {us:,.0f} µs" for name, us in per_tx.items())
            + f", load client {client_us:,.0f} µs; {total_us:,.0f} µs in all = a ceiling of "
            f"{ceiling} on {cores} cores at these costs")


def describe(result: LoadResult) -> dict[str, float]:
    """The figures of a run: rate, p50 and p99 latency in ms, client CPU per request in µs."""
    lat = result.latencies_s or [float("nan")]
    return {"rate": result.rate, "p50_ms": percentile(lat, 50) * 1000, "p99_ms": percentile(lat, 99) * 1000,
            "mean_ms": sum(lat) / len(lat) * 1000,
            "client_us": result.client_cpu_s / max(1, result.succeeded) * 1e6}


def summary_line(name: str, result: LoadResult) -> str:
    figures = describe(result)
    failures = sum(result.failures.values())
    line = (f"{name}: {result.succeeded} committed in {result.wall_s:.2f} s = {figures['rate']:,.0f} tx/s; "
            f"latency p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms, "
            f"mean {figures['mean_ms']:.2f} ms; client CPU {figures['client_us']:.0f} µs/request")
    if failures or result.retries:
        line += f"; {failures} failed {dict(result.failures)}; {result.retries} retries"
    if result.timed_out:
        line += "; RUN DEADLINE HIT"
    return line


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "loadgen":
        # Through the module's own name, so what is pickled names benchmarks.bench_common.
        from benchmarks import bench_common
        bench_common.loadgen_main(sys.argv[2], sys.argv[3])
    else:
        sys.exit("usage: python -m benchmarks.bench_common loadgen SPEC_FILE OUT_FILE")
