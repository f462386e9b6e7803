"""One chaos run, start to finish: found, load, break, heal, settle, export, check, clean up.

Owns the run's phases and their bounds. Every process, proxy and mount the run made is undone
in a ``finally`` (by pid; see tests/chaos/cluster.py), whatever happened. A run returns a
``Result``; a failing one prints the seed and the command that replays it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from node.config import load_client_config, write_client_config
from node.wire import ledger_pb2
from tests.chaos.checker import Chain, Finals, Report, check
from tests.chaos.cluster import REPO_ROOT, ChaosCluster
from tests.chaos.faults import ALL_KINDS, LONGEST_FAULT_S, Nemesis
from tests.chaos.workload import (KINDS, READER_TIMEOUT_MS, RESUBMITS, WRITER_TIMEOUT_MS, History, Reader,
                                  Writer, register_members, resolve_unknown)

CONVERGE_TIMEOUT_S = 90
CONVERGED_POLLS = 3
EXPORT_TIMEOUT_S = 180
MAX_REQUESTS_PER_WRITER = 20_000
WARMUP_S = 5.0


@dataclass
class Options:
    seed: int
    seconds: float
    writers: int = 4
    readers: int = 2
    nodes: int = 3
    faults: tuple[str, ...] = ALL_KINDS
    races: bool = True                      # same-id races (issue 16, defect 1)
    warmup: float = WARMUP_S                # load without faults first, so logs get compacted
    max_requests: int = MAX_REQUESTS_PER_WRITER
    folder: Path | None = None
    keep: bool = False

    def replay_command(self) -> str:
        extra = ""
        if tuple(self.faults) != ALL_KINDS:
            extra += f" --faults {','.join(self.faults)}"
        if not self.races:
            extra += " --no-races"
        if (self.writers, self.readers) != (4, 2):
            extra += f" --writers {self.writers} --readers {self.readers}"
        if not extra:
            return f"make chaos SEED={self.seed} SECONDS={self.seconds:g}"
        return f"python -m tests.chaos --seed {self.seed} --seconds {self.seconds:g}{extra}"


@dataclass
class Result:
    options: Options
    report: Report
    faults: Counter = field(default_factory=Counter)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    folder: Path | None = None

    @property
    def ok(self) -> bool:
        return self.report.ok

    def summary(self) -> str:
        lines = [f"chaos seed {self.options.seed}: {self.seconds:.0f} s, faults "
                 f"{sum(self.faults.values())} ({', '.join(f'{k} {n}' for k, n in sorted(self.faults.items()))})",
                 "  " + ", ".join(f"{k} {v}" for k, v in self.report.counts.items())]
        lines += [f"  skipped {kind}: {why}" for kind, why in self.skipped.items()]
        lines += self.report.lines()
        if self.ok:
            lines.append("  no violations")
        else:
            lines.append(f"FAILED: seed {self.options.seed}; replay with `{self.options.replay_command()}`")
            if self.folder:
                lines.append(f"  the run's folder (node logs, history.jsonl, export) is kept at {self.folder}")
        return "\n".join(lines)


def run(options: Options) -> Result:
    started = time.monotonic()
    folder = Path(options.folder or tempfile.mkdtemp(prefix=f"nanum-chaos-{options.seed}-"))
    cluster = ChaosCluster(folder, options.nodes)
    history = History()
    nemesis = Nemesis(cluster, options.seed, options.seconds, tuple(options.faults))
    report = Report()
    try:
        report = _run(options, cluster, history, nemesis, folder)
    except Exception as exc:
        report.fail("the run completed", f"{type(exc).__name__}: {exc}")
    finally:
        cluster.stop_all()
        _write_history(folder / "history.jsonl", history, nemesis)
    result = Result(options, report, Counter(e.kind for e in nemesis.log), dict(nemesis.skipped),
                    time.monotonic() - started, folder)
    if result.ok and not options.keep and options.folder is None:
        shutil.rmtree(folder, ignore_errors=True)
        result.folder = None
    return result


def _run(options: Options, cluster: ChaosCluster, history: History, nemesis: Nemesis, folder: Path) -> Report:
    print(f"chaos seed {options.seed}: {options.seconds:g} s of faults in {folder}", flush=True)
    cluster.create()
    cluster.start_all()
    register_members(cluster, history)
    stop = threading.Event()
    kinds = {k: w for k, w in KINDS.items() if options.races or k != "race"}
    writers = [Writer(i, options.seed, cluster, history, stop, options.max_requests, kinds)
               for i in range(options.writers)]
    readers = [Reader(i, options.seed, cluster, history, stop) for i in range(options.readers)]
    fault_thread = threading.Thread(target=nemesis.run, args=(stop,), name="nemesis", daemon=True)
    for thread in [*writers, *readers]:
        thread.start()
    time.sleep(options.warmup)
    fault_thread.start()
    fault_thread.join(options.seconds + LONGEST_FAULT_S + 30)
    stop.set()
    fault_thread.join(LONGEST_FAULT_S)
    for thread in [*writers, *readers]:
        thread.join(WRITER_TIMEOUT_MS / 1000 * (RESUBMITS + 1) + READER_TIMEOUT_MS / 1000)
    errors = [f"{t.name}: {t.error!r}" for t in [*writers, *readers] if t.error]
    if nemesis.error is not None:
        errors.append(f"nemesis: {nemesis.error!r}")
    if fault_thread.is_alive() or any(t.is_alive() for t in [*writers, *readers]):
        errors.append("a client or the nemesis did not stop in time")
    _heal(cluster)
    print("  faults over; settling unknown outcomes", flush=True)
    unsettled = resolve_unknown(cluster, history)
    checkpoints = _converge(cluster, set(nemesis.behind))
    finals = Finals(leader_balances=_balances(cluster, history, None),
                    node_balances={i: _balances(cluster, history, i) for i in range(cluster.nodes)},
                    checkpoints=checkpoints, verify_ok=False, verify_output="", unsettled=unsettled,
                    findings=[f"node {f.node}: {f.what}: {f.detail}" for f in nemesis.findings] + errors)
    export = folder / "export.nanum"
    exported = _cli(cluster, "audit", "export", "--client", str(_auditor_config(cluster, checkpoints, folder)),
                    "--out", str(export), "--json")
    if exported.returncode != 0:
        finals.findings.append(f"nanum audit export failed: {exported.stdout}{exported.stderr}")
        chain = Chain()
    else:
        chain = Chain.from_export(export)
        verified = _cli(cluster, "audit", "verify", "--export", str(export), "--genesis",
                        str(cluster.layout.genesis_file), "--workers", "0", "--json")
        finals.verify_ok, finals.verify_output = verified.returncode == 0, verified.stdout + verified.stderr
    return check(history, chain, finals)


def _heal(cluster: ChaosCluster) -> None:
    """Whatever the nemesis left: links healed, nodes resumed, every node running."""
    cluster.proxies.heal_all()
    for i in list(cluster.paused):
        cluster.resume(i)
    for i in range(cluster.nodes):
        if i in cluster.tmpfs:
            cluster.leave_tmpfs(i)
        if not cluster.alive(i):
            cluster.clock_offset_ms.pop(i, None)
            cluster.start(i, rejoin=i in cluster.rejoining)


def _converge(cluster: ChaosCluster, behind: set[int]) -> dict[int, tuple | None]:
    """Waits (bounded) until every node reports the same certified head, applied to it, for a
    few polls in a row; returns each node's checkpoint (None for one that does not answer).
    Nodes the nemesis already found not catching up are not waited for (the head check still
    compares them)."""
    deadline, same = time.monotonic() + CONVERGE_TIMEOUT_S, 0
    heads: dict[int, tuple | None] = {}
    while time.monotonic() < deadline and same < CONVERGED_POLLS:
        heads = {i: _checkpoint(cluster, i) for i in range(cluster.nodes)}
        waited = [i for i in range(cluster.nodes) if i not in behind]
        statuses = [cluster.status(i) for i in waited]
        agreed = None not in [heads[i] for i in waited] and len({heads[i] for i in waited}) == 1 and all(
            s is not None and s.applied_height == s.certified_height for s in statuses)
        same = same + 1 if agreed else 0
        time.sleep(0.5)
    return heads


def _auditor_config(cluster: ChaosCluster, heads: dict[int, tuple | None], folder: Path) -> Path:
    """The auditor's client.toml with the highest node first: `audit export` reads from the first
    node, and one left behind is reported by the head check, not by a short export."""
    top = max(heads, key=lambda i: heads[i][0] if heads[i] else -1)
    config = load_client_config(cluster.layout.auditor.config_file, env={})
    nodes = (config.nodes[top], *(a for i, a in enumerate(config.nodes) if i != top))
    path = folder / "auditor-export.toml"
    write_client_config(path, dataclasses.replace(config, nodes=nodes), overwrite=True)
    return path


def _checkpoint(cluster: ChaosCluster, index: int) -> tuple | None:
    with cluster.client("auditor") as client:
        try:
            c = client.stub(cluster.layout.nodes[index].address).GetCheckpoint(
                ledger_pb2.GetCheckpointRequest(), timeout=2)
            return (c.height, c.block_hash.hex(), c.tree_root.hex())
        except grpc.RpcError:
            return None


def _balances(cluster: ChaosCluster, history: History, index: int | None) -> dict[bytes, int]:
    """The final balances: linearizable through the client (``index`` None) or one node's own."""
    found = {}
    with cluster.client("auditor") as client:
        for member in history.members:
            try:
                if index is None:
                    found[member] = client.balance(member).points
                else:
                    found[member] = client.stub(cluster.layout.nodes[index].address).GetBalance(
                        ledger_pb2.GetBalanceRequest(member_id=member, read=ledger_pb2.ReadOptions(stale_ok=True)),
                        timeout=5).points
            except grpc.RpcError as exc:
                print(f"  final balance read failed on node {index}: {exc}", flush=True)
    return found


def _cli(cluster: ChaosCluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=EXPORT_TIMEOUT_S)


def _write_history(path: Path, history: History, nemesis: Nemesis) -> None:
    """The client log and the fault log, one JSON object a line, for reading a failure."""
    try:
        with open(path, "w") as out:
            for entry in nemesis.log:
                out.write(json.dumps({"fault": entry.kind, "start": entry.start, "end": entry.end,
                                      "node": entry.target, "detail": entry.detail}) + "\n")
            for s in history.submissions:
                out.write(json.dumps({"submission": s.number, "writer": s.writer, "kind": s.kind,
                                      "tx_id": s.tx_id.hex(), "raw": s.raw.hex(), "member": s.member.hex(),
                                      "points": s.points, "attempts": [a.__dict__ for a in s.attempts]}) + "\n")
            for r in history.reads:
                out.write(json.dumps({"read": r.reader, "member": r.member.hex(), "start": r.start, "end": r.end,
                                      "ok": r.ok, "points": r.points, "height": r.height, "status": r.status}) + "\n")
    except OSError as exc:
        print(f"  could not write {path}: {exc}", flush=True)
