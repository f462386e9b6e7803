"""Abuse benchmark (issue 15): honest W1 beside one rogue identity submitting at full speed.

A 3-node consortium on loopback (node.cluster.LocalCluster: real processes, mutual TLS, fsync on,
default settings). Honest W1 is one client submitting signed deposits one after another, each
waiting for its commit, for ``--phase-s`` seconds per phase. The phases:

  baseline    W1 alone
  approvals   W1 while ``--rogues`` processes, all with the members' shared TLS certificate (a rogue
              terminal), send SubmitBatch calls of 256 copies of a governance transaction by a
              stranger with 31 strangers' valid approvals and a broken 32nd (finding 1), a fresh
              one per call, to the leader first
  junk        W1 while the rogues send SubmitBatch calls of 256 distinct deposits signed by a key
              that is no party's, naming the honest member (findings 2 and 3)

Printed per phase: honest commits, p50 / p99 latency, the rogue's calls and how they were
answered, leader changes (terms), and the entries the rogue added to the chain (leaves added
minus honest commits). Bounded: about 3 x phase-s plus start-up; a missed target is printed,
never a failure.

Usage: python benchmarks/abuse_bench.py [--phase-s 15] [--rogues 3]
"""

from __future__ import annotations

import argparse
import collections
import os
import pickle
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from benchmarks.bench_common import git_state, load_average, machine, percentile  # noqa: E402
from ledger.keys import SigningKey  # noqa: E402
from ledger.tx import Deposit, DepositKind, Governance, GovernanceAction, RegisterMember, Role, make_tx  # noqa: E402
from node.client import LedgerClient, TlsFiles  # noqa: E402
from node.cluster import LocalCluster  # noqa: E402
from node.wire import ledger_pb2, ledger_pb2_grpc  # noqa: E402

BATCH = 256                     # SubmitBatch's maximum
ROGUE_CALL_TIMEOUT_S = 10.0
ROGUE_POOL_CALLS = 16           # distinct batches each rogue signs beforehand and cycles through
ROGUE_READY_TIMEOUT_S = 60.0
TARGET_P50_RATIO = 2.0


def say(text: str = "") -> None:
    print(text, flush=True)


# --- the rogue: a process of its own, so that its client work does not slow the honest one -------


def _strangers_governance(chain_id: bytes) -> bytes:
    author, approvers = SigningKey.generate(), [SigningKey.generate() for _ in range(31)]
    tx = make_tx(author, chain_id, os.urandom(16), Governance(
        GovernanceAction.ADMIT, Role.CENTRE, SigningKey.generate().public_key, "rogue centre", ""),
        approvers=tuple(approvers))
    last = tx.approvals[-1].signature
    return tx.raw.replace(last, last[:-1] + bytes([last[-1] ^ 1]))


def rogue_main(spec_file: str, out_file: str) -> None:
    spec = pickle.loads(Path(spec_file).read_bytes())
    ca, cert, key = spec["tls"]
    credentials = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    options = [("grpc.max_send_message_length", 8 << 20), ("grpc.max_receive_message_length", 8 << 20)]
    stub = ledger_pb2_grpc.LedgerStub(grpc.secure_channel(spec["address"], credentials, options=options))
    # Signed before the clock starts (the rogue's own CPU must not slow the nodes on a small
    # machine); each call sends the next batch of the pool, round and round.
    stranger = SigningKey.generate()
    if spec["attack"] == "approvals":
        pool = [[_strangers_governance(spec["chain_id"])] * BATCH for _ in range(ROGUE_POOL_CALLS)]
    else:
        pool = [[make_tx(stranger, spec["chain_id"], os.urandom(16), Deposit(
            spec["member_id"], 1, DepositKind.OTHER, 0, "junk", 0)).raw for _ in range(BATCH)]
            for _ in range(ROGUE_POOL_CALLS)]
    requests = [ledger_pb2.SubmitBatchRequest(txs=txs) for txs in pool]
    Path(out_file + ".ready").write_bytes(b"")
    answers: collections.Counter = collections.Counter()
    deadline = time.monotonic() + spec["seconds"]
    calls = 0
    while time.monotonic() < deadline:
        request = requests[calls % len(requests)]
        calls += 1
        try:
            reply = stub.SubmitBatch(request, timeout=ROGUE_CALL_TIMEOUT_S)
            answers.update(r.code_name + (" (recorded)" if r.height else "") for r in reply.results)
            answers["calls answered"] += 1
        except grpc.RpcError as error:
            answers[f"call {error.code().name}"] += 1
            if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                time.sleep(0.05)
    Path(out_file).write_bytes(pickle.dumps(dict(answers)))


# --- the honest side and the phases ------------------------------------------------------------


class Bench:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cluster = LocalCluster(folder / "consortium", nodes=3)
        self.cluster.create()
        self.cluster.start()
        self.cluster.leader()
        self.chain_id = self.cluster.chain_id
        self.centre = self.cluster.key("centre")
        self.member = SigningKey.generate()
        self.client = self.cluster.client("centre", timeout_ms=30_000)
        self.client.submit(make_tx(self.centre, self.chain_id, os.urandom(16),
                                   RegisterMember(self.member.public_key)).raw)

    def status(self) -> tuple[int, int]:
        """(highest term, tree size at the leader)."""
        statuses = self.cluster.statuses()
        term = max(s.term for s in statuses.values())
        return term, self.client.checkpoint().tree_size

    def w1(self, seconds: float) -> list[float]:
        deposits = (make_tx(self.centre, self.chain_id, os.urandom(16), Deposit(
            self.member.party_id, 1, DepositKind.OTHER, 0, "W1", 0)).raw for _ in iter(int, 1))
        latencies, deadline = [], time.monotonic() + seconds
        while time.monotonic() < deadline:
            raw = next(deposits)
            began = time.monotonic()
            self.client.submit(raw)
            latencies.append(time.monotonic() - began)
        return latencies

    def phase(self, name: str, seconds: float, rogues: int) -> dict:
        term0, size0 = self.status()
        processes = []
        if name != "baseline":
            layout = self.cluster.layout
            members = layout.members
            tls = (layout.ca_cert_file.read_bytes(), members.tls_cert_file.read_bytes(),
                   members.tls_key_file.read_bytes())
            address = layout.nodes[self.cluster.leader()].address
            for i in range(rogues):
                spec_file, out_file = self.folder / f"rogue-{name}-{i}.spec", self.folder / f"rogue-{name}-{i}.out"
                spec_file.write_bytes(pickle.dumps(dict(tls=tls, address=address, seconds=seconds + 1.0, attack=name,
                                                        chain_id=self.chain_id, member_id=self.member.party_id)))
                processes.append((subprocess.Popen([sys.executable, __file__, "--rogue", str(spec_file), str(out_file)],
                                                   cwd=REPO), out_file))
            ready_by = time.monotonic() + ROGUE_READY_TIMEOUT_S
            while not all(Path(str(out) + ".ready").exists() for _, out in processes):
                if time.monotonic() > ready_by:
                    raise RuntimeError("the rogue processes did not get ready in time")
                time.sleep(0.05)
            time.sleep(0.5)             # the rogues are sending before the honest clock starts
        latencies = self.w1(seconds)
        answers: collections.Counter = collections.Counter()
        for process, out_file in processes:
            try:
                process.wait(timeout=seconds + 2 * ROGUE_CALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if out_file.exists():
                answers.update(pickle.loads(out_file.read_bytes()))
        term1, size1 = self.status()
        return dict(name=name, commits=len(latencies), p50_ms=percentile(latencies, 50) * 1000,
                    p99_ms=percentile(latencies, 99) * 1000, terms=term1 - term0,
                    rogue_entries=size1 - size0 - len(latencies), answers=dict(answers))

    def stop(self) -> None:
        self.client.close()
        self.cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase-s", type=float, default=15.0)
    parser.add_argument("--rogues", type=int, default=3)
    parser.add_argument("--rogue", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rogue:
        rogue_main(*args.rogue)
        return
    say(f"machine:    {machine()}; load {load_average()}")
    say(f"code:       {git_state()}")
    say(f"parameters: 3 nodes on 127.0.0.1, mutual TLS, fsync on, default node settings; phase {args.phase_s:.0f} s; "
        f"{args.rogues} rogue processes with the members' shared certificate, SubmitBatch of {BATCH}")
    with tempfile.TemporaryDirectory(prefix="nanum-abuse-") as folder:
        bench = Bench(Path(folder))
        try:
            results = [bench.phase(name, args.phase_s, args.rogues) for name in ("baseline", "approvals", "junk")]
        finally:
            bench.stop()
    base = results[0]
    for r in results:
        say(f"[{r['name']}] honest W1: {r['commits']} committed, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; "
            f"leader changes (terms) {r['terms']}; rogue entries added to the chain {r['rogue_entries']}")
        if r["answers"]:
            say(f"[{r['name']}] rogue answers: " + ", ".join(f"{k} {v}" for k, v in sorted(r["answers"].items())))
    for r in results[1:]:
        ratio = r["p50_ms"] / base["p50_ms"] if base["p50_ms"] else float("inf")
        met = ratio <= TARGET_P50_RATIO and r["terms"] == 0 and r["rogue_entries"] <= 0
        say(f"  {r['name']:<10} honest p50 {ratio:.2f}x baseline (target <= {TARGET_P50_RATIO}x), "
            f"{r['terms']} leader changes (target 0), {r['rogue_entries']} rogue entries (target 0): "
            f"{'met' if met else 'MISSED'}")


if __name__ == "__main__":
    main()
