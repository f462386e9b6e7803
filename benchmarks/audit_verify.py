"""Auditor benchmark: `nanum audit verify` of an export, on every core, against the Ed25519 bound.

Builds (once; cached under --cache-dir, keyed by the parameters) an export of --txs
transactions: members registered, a first deposit each, then three deposits to one redemption
(a partner's signature plus the member's voucher signature), in blocks of --block-size, each
certified by 3 node keys. Transactions are signed in a process pool; blocks are executed with
``ledger.block.execute_block`` on an in-memory state, and written with ``ledger.export``.

Then, in one run, with the machine and the parameters, prints:
  1. the bound: Ed25519 verifications/s on one core (measured before and after the timed run;
     their mean), times the cores; and the rate measured with one process per core at once (on
     a shared machine, what it really gives);
  2. `nanum audit verify --export … --json` (a subprocess; by default a pool of cores - 1
     processes plus the command's own process):
     tx/s and signatures verified/s, and signatures/s as a share of the bound (target >= 70%);
     and the in-run bound: the rate the cores verified at during the command itself, timed on
     its own verifications (benchmarks/verify_timer.py), with signatures/s as a share of it;
  3. optionally (--sequential) the same with --workers 0, for the speed-up;
  4. optionally (--ceiling) the main process's share alone: the rules replayed in order with
     every static check already done (what no number of workers can speed up).

Usage: python benchmarks/audit_verify.py [--txs 100000] [--block-size 1000] [--members 1000]
                                         [--cache-dir /tmp/nanum-bench-cache] [--sequential]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ledger_core import machine, verify_rate  # noqa: E402
from ledger.block import BlockError, ChainHead, decode_genesis_block, execute_block  # noqa: E402
from ledger.certificate import Certificate, endorse  # noqa: E402
from ledger.export import create_export  # noqa: E402
from ledger.genesis import build_genesis  # noqa: E402
from ledger.keys import SigningKey  # noqa: E402
from ledger.parallel import default_workers  # noqa: E402
from ledger.state import MemoryState  # noqa: E402
from ledger.tx import Deposit, DepositKind, Redeem, RegisterMember, decode_tx, make_tx  # noqa: E402
from ledger.verify import Prechecked, verify_chain  # noqa: E402
from ledger.voucher import sign_voucher  # noqa: E402
from ledger.export import ExportReader  # noqa: E402

FORMAT_VERSION = 1                  # bump when the workload changes, so caches are rebuilt
GENESIS_MS = 1_790_000_000_000
CENTRES, PARTNERS, NODES = 3, 2, 3
SIGN_CHUNK = 2_000                  # transactions signed per pool task
REDEEM_POINTS, DEPOSIT_POINTS, FIRST_DEPOSIT_POINTS = 5, 10, 100


def key(name: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(b"nanum-bench:" + name.encode()).digest())


def genesis_block() -> bytes:
    admins = [key(f"admin{i}") for i in range(2)]
    return build_genesis(
        "benchmark", GENESIS_MS, 2, [(k, f"admin{i}") for i, k in enumerate(admins)],
        [(key(f"centre{i}").public_key, f"centre{i}") for i in range(CENTRES)],
        [(key(f"partner{i}").public_key, f"partner{i}") for i in range(PARTNERS)],
        [(key(f"node{i}").public_key, f"node{i}", f"127.0.0.1:{7000 + i}") for i in range(NODES)])


# --- the workload: transaction i, signed in a worker ---------------------------------------

_chain_id = b""
_members = 0


def _init(chain_id: bytes, members: int) -> None:
    global _chain_id, _members
    _chain_id, _members = chain_id, members


def _member(m: int) -> SigningKey:
    return key(f"member{m}")


def make(i: int) -> bytes:
    """Transaction i: registrations, one first deposit per member, then 3 deposits : 1 redeem."""
    tx_id = i.to_bytes(16, "big")
    m = _members
    centre = key(f"centre{i % CENTRES}")
    if i < m:
        return make_tx(centre, _chain_id, tx_id, RegisterMember(_member(i).public_key)).raw
    if i < 2 * m:
        payload = Deposit(_member(i - m).party_id, FIRST_DEPOSIT_POINTS, DepositKind.VOLUNTEERING, 60, f"V{i}", 3)
        return make_tx(centre, _chain_id, tx_id, payload).raw
    if i % 4 == 3:
        member, partner = _member((i // 4) % m), key(f"partner{i % PARTNERS}")
        voucher = sign_voucher(member, _chain_id, partner.party_id, REDEEM_POINTS, tx_id, GENESIS_MS + 10**12)
        return make_tx(partner, _chain_id, tx_id, Redeem(voucher, REDEEM_POINTS, "book")).raw
    payload = Deposit(_member(i % m).party_id, DEPOSIT_POINTS, DepositKind.VOLUNTEERING, 30, f"V{i}", 0)
    return make_tx(centre, _chain_id, tx_id, payload).raw


def _make_range(bounds: tuple[int, int]) -> list[bytes]:
    return [make(i) for i in range(*bounds)]


# --- building the export ---------------------------------------------------------------------


def build_export(path: Path, txs: int, block_size: int, members: int) -> dict:
    genesis = genesis_block()
    state = MemoryState()
    executed = decode_genesis_block(genesis, state)
    state.absorb(executed.state)
    head: ChainHead = executed.head
    nodes = [key(f"node{i}") for i in range(NODES)]
    tmp = path.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    writer = create_export(tmp, head.chain_id, genesis)
    signatures, pending, started = 0, [], time.perf_counter()
    ranges = [(s, min(s + SIGN_CHUNK, txs)) for s in range(0, txs, SIGN_CHUNK)]
    context = multiprocessing.get_context("spawn")
    with context.Pool(os.cpu_count(), initializer=_init, initargs=(head.chain_id, members)) as pool:
        for chunk in pool.imap(_make_range, ranges):
            pending.extend(decode_tx(raw) for raw in chunk)
            while len(pending) >= block_size:
                head, added = _add_block(writer, state, head, pending[:block_size], nodes)
                signatures += added
                del pending[:block_size]
        while pending:
            head, added = _add_block(writer, state, head, pending[:block_size], nodes)
            signatures += added
            del pending[:block_size]
    writer.close()
    tmp.rename(path)
    meta = {"txs": txs, "block_size": block_size, "members": members, "height": head.header.height,
            "signatures": signatures, "build_seconds": round(time.perf_counter() - started, 1)}
    path.with_suffix(".json").write_text(json.dumps(meta))
    path.with_suffix(".genesis").write_bytes(genesis)
    return meta


def _add_block(writer, state: MemoryState, head: ChainHead, txs: list, nodes: list) -> tuple[ChainHead, int]:
    executed = execute_block(head, txs, head.header.time_ms + 1000, state)
    state.absorb(executed.state)
    header = executed.block.header
    certificate = Certificate.build(header.height, header.hash(),
                                    [(n.public_key, endorse(n, header)) for n in nodes]).encode()
    writer.append_page([(header.height, executed.block.encode(), certificate)])
    signatures = sum(1 + len(tx.approvals) + (1 if isinstance(tx.payload, Redeem) else 0) for tx in txs)
    return executed.head, signatures + len(nodes)


def cached_export(cache: Path, txs: int, block_size: int, members: int) -> tuple[Path, dict]:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"audit-v{FORMAT_VERSION}-{txs}-{block_size}-{members}.nanum"
    if path.exists() and path.with_suffix(".json").exists() and _genesis_verifies(path):
        return path, json.loads(path.with_suffix(".json").read_text())
    print(f"[build]  building {path} (cached for later runs) ...", flush=True)
    meta = build_export(path, txs, block_size, members)
    print(f"[build]  {txs:,} tx in {meta['build_seconds']} s", flush=True)
    return path, meta


def _genesis_verifies(path: Path) -> bool:
    """False for an export cached by a build whose ledger format has since changed."""
    try:
        decode_genesis_block(path.with_suffix(".genesis").read_bytes(), MemoryState())
    except (BlockError, OSError):
        return False
    return True


def cpu_verify_rate(seconds: float = 2.0) -> float:
    """Ed25519 verifications per CPU-second (process time): unaffected by other load."""
    return verify_rate(seconds, clock=time.process_time)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _rate(_: int) -> float:
    return verify_rate()


def all_core_rate(cores: int) -> float:
    """Ed25519 verifications/s of ``cores`` processes at once: what the machine gives now."""
    with multiprocessing.get_context("spawn").Pool(cores) as pool:
        return sum(pool.map(_rate, range(cores)))


def in_run_bound(timings: dict, signatures: int, cores: int) -> float:
    """cores x the verifications per second the command's own verifications ran at."""
    # The genesis block's admin signatures are checked too (more than once), not counted in the export's.
    if timings["verifications"] < signatures:
        raise SystemExit(f"the timed command verified {timings['verifications']:,} signatures, the export "
                         f"holds {signatures:,}: some process was not timed (were its workers spawned?)")
    return cores * timings["verifications"] / timings["seconds"]


# --- timing the command ------------------------------------------------------------------------


def time_verify(path: Path, workers: int | None) -> tuple[float, dict, float, dict]:
    """(wall seconds, the command's JSON, CPU seconds of the command and its workers, the
    in-run timings of its signature verifications: see benchmarks/verify_timer.py)."""
    timings = path.with_suffix(".timings.json")
    timings.unlink(missing_ok=True)
    command = [sys.executable, "-m", "benchmarks.verify_timer", str(timings), "audit", "verify",
               "--export", str(path), "--genesis", str(path.with_suffix(".genesis")), "--json"]
    if workers is not None:
        command += ["--workers", str(workers)]
    started, cpu = time.perf_counter(), _children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    seconds, cpu = time.perf_counter() - started, _children_cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"audit verify failed ({done.returncode}): {done.stdout} {done.stderr}")
    return seconds, json.loads(done.stdout), cpu, json.loads(timings.read_text())


def replay_ceiling(path: Path) -> tuple[float, int]:
    """Seconds to replay the rules in order with every static check taken as done."""
    with open(path, "rb") as handle:
        reader = ExportReader(handle)
        items = [Prechecked(record.block, None, True) for record in reader.records()]
        genesis = reader.genesis
    started = time.perf_counter()
    report = verify_chain(genesis, items)
    assert report.ok, report.problem
    return time.perf_counter() - started, report.transactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=100_000)
    parser.add_argument("--block-size", type=int, default=1000)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=None,
                        help="pool processes besides the main one (default: the command's, cores - 1)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/nanum-bench-cache"))
    parser.add_argument("--sequential", action="store_true", help="also time --workers 0")
    parser.add_argument("--ceiling", action="store_true", help="also time the in-order replay alone")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"machine:    {machine()}")
    print(f"parameters: txs={args.txs} block_size={args.block_size} members={args.members} "
          f"workers={default_workers() if args.workers is None else args.workers} in a pool + the main "
          f"process (3 node signatures per certificate)")
    path, meta = cached_export(args.cache_dir, args.txs, args.block_size, args.members)
    signatures = meta["signatures"]
    print(f"[export] {path.stat().st_size / 2**20:,.1f} MiB, {meta['height']} blocks, "
          f"{signatures:,} signatures ({signatures / args.txs:.2f} per transaction, certificates included)")
    rate_before = verify_rate()
    measured = all_core_rate(cores)
    cpu_rate = cpu_verify_rate()
    seconds, summary, cpu, timings = time_verify(path, args.workers)
    rate_after = verify_rate()
    # This shared host's speed drifts by several percent within minutes: the bound is taken
    # on both sides of the timed run, and the ratio uses their mean.
    rate = (rate_before + rate_after) / 2
    bound = rate * cores
    print(f"[bound]  Ed25519 verifications/s on one core: {rate_before:,.0f} before the run, {rate_after:,.0f} "
          f"after; mean {rate:,.0f} x {cores} cores = {bound:,.0f}")
    print(f"[bound]  measured with {cores} processes at once before the run (other load on the machine "
          f"shows here): {measured:,.0f}")
    tx_rate, sig_rate = summary["transactions"] / seconds, signatures / seconds
    print(f"[verify] audit verify (parallel): {seconds:.1f} s wall ({summary['seconds']:.1f} s inside), "
          f"{tx_rate:,.0f} tx/s, {sig_rate:,.0f} signatures/s = {sig_rate / bound:.1%} of the bound "
          f"(tx/s = {tx_rate / bound:.0%} of it; target: signatures/s >= 70%); "
          f"{sig_rate / measured:.1%} of the measured all-core rate")
    in_run = in_run_bound(timings, signatures, cores)
    print(f"[bound]  in the run: {timings['verifications']:,} verifications took {timings['seconds']:.1f} s in all, "
          f"{in_run / cores:,.0f}/s per core x {cores} cores = {in_run:,.0f} (the rate the cores gave while "
          f"the command ran; {in_run / bound:.0%} of the bound above)")
    print(f"[verify] signatures/s = {sig_rate / in_run:.1%} of the in-run bound (target >= 70%): the share of "
          f"{cores} cores x {seconds:.1f} s spent verifying signatures")
    needed = signatures / cpu_rate
    print(f"[cpu]    audit verify used {cpu:.1f} CPU-s in all its processes; the signature checks alone need "
          f"{needed:.1f} CPU-s at {cpu_rate:,.0f} verifications per CPU-s: {needed / cpu:.0%} of the CPU went to "
          f"signatures, the ratio an idle {cores}-core machine would show with every core busy")
    if args.sequential:
        seconds_1, _, _, _ = time_verify(path, 0)
        print(f"[verify] audit verify --workers 0: {seconds_1:.1f} s, {summary['transactions'] / seconds_1:,.0f} tx/s "
              f"(parallel is {seconds_1 / seconds:.2f}x faster)")
    if args.ceiling:
        replay_seconds, transactions = replay_ceiling(path)
        ceiling = signatures / replay_seconds
        print(f"[ceiling] rules replayed in order, static checks done: {replay_seconds:.1f} s, "
              f"{transactions / replay_seconds:,.0f} tx/s = {ceiling:,.0f} signatures/s: the most any number "
              f"of workers reaches ({ceiling / bound:.0%} of this machine's bound)")


if __name__ == "__main__":
    main()
