"""Ledger core benchmark: the signature bound, apply-and-store throughput, chain verification.

Prints, in one run, with the machine and the parameters:
  1. Ed25519 verifications per second on one core (the bound everything else is compared to);
  2. signed deposits statically checked, applied and stored (LMDB, fsync per block) per second,
     in one process;
  3. verification throughput of the resulting chain (verify_chain from the genesis block).

Usage: python benchmarks/ledger_core.py [--txs 100000] [--block-size 1000] [--members 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

from ledger import keys
from ledger.genesis import build_genesis
from ledger.keys import SigningKey
from ledger.ledger import Ledger
from ledger.tx import Deposit, DepositKind, RegisterMember, make_tx
from ledger.verify import verify_chain


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
            cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}; {os.cpu_count()} cores; Python {platform.python_version()}; {platform.system()} {platform.release()}"


def verify_rate(seconds: float = 2.0, clock=time.perf_counter) -> float:
    """Ed25519 verifications per second of ``clock`` (wall time by default) on one core, by the
    verifier every node and auditor uses (``ledger.keys.verify``: the key rule, cached, then
    libsodium): the bound every benchmark compares against. The others import it from here."""
    key = SigningKey.generate()
    message = b"nanum benchmark message of about a transaction's size" * 3
    signature = key.sign(message)
    public_key, verify = key.public_key, keys.verify
    count, start = 0, clock()
    while clock() - start < seconds:
        for _ in range(200):
            verify(public_key, signature, message)
        count += 200
    return count / (clock() - start)


def make_chain_inputs(txs: int, members: int):
    admins = [SigningKey.generate() for _ in range(2)]
    centre, node = SigningKey.generate(), SigningKey.generate()
    genesis = build_genesis("benchmark", 1_790_000_000_000, 2, [(k, f"a{i}") for i, k in enumerate(admins)],
                            [(centre.public_key, "centre")], [], [(node.public_key, "n", "127.0.0.1:1")])
    return genesis, centre


def signed_transactions(chain_id: bytes, centre: SigningKey, txs: int, members: int) -> list[bytes]:
    member_keys = [SigningKey.generate() for _ in range(members)]
    raw = [make_tx(centre, chain_id, os.urandom(16), RegisterMember(m.public_key)).raw for m in member_keys]
    for i in range(txs - members):
        payload = Deposit(member_keys[i % members].party_id, 10, DepositKind.VOLUNTEERING, 60, f"VOL-{i}", 0)
        raw.append(make_tx(centre, chain_id, os.urandom(16), payload).raw)
    return raw


def apply_and_store(ledger: Ledger, raw_txs: list[bytes], block_size: int) -> float:
    start = time.perf_counter()
    time_ms = ledger.head.header.time_ms
    for offset in range(0, len(raw_txs), block_size):
        checked = [ledger.check(raw) for raw in raw_txs[offset:offset + block_size]]
        time_ms += 1000
        ledger.commit(ledger.build(checked, time_ms))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=100_000)
    parser.add_argument("--block-size", type=int, default=1000)
    parser.add_argument("--members", type=int, default=1000)
    args = parser.parse_args()

    print(f"machine:    {machine()}")
    print(f"parameters: txs={args.txs} block_size={args.block_size} members={args.members} (fsync on)")
    rate = verify_rate()
    print(f"[bound] Ed25519 verifications/s on one core: {rate:,.0f}")

    genesis, centre = make_chain_inputs(args.txs, args.members)
    with tempfile.TemporaryDirectory(prefix="nanum-bench-") as folder:
        ledger = Ledger.create(os.path.join(folder, "store"), genesis, map_size_bytes=1 << 30)
        raw_txs = signed_transactions(ledger.chain_id, centre, args.txs, args.members)
        seconds = apply_and_store(ledger, raw_txs, args.block_size)
        applied = len(raw_txs) / seconds
        print(f"[apply]  checked+applied+stored: {applied:,.0f} tx/s ({len(raw_txs)} tx in {seconds:.1f} s)"
              f" = {applied / rate:.0%} of one core's verify bound")
        size = sum(os.path.getsize(os.path.join(folder, "store", f)) for f in os.listdir(os.path.join(folder, "store")))
        print(f"[store]  {size / len(raw_txs):,.0f} bytes on disk per transaction (LMDB data file, incl. free pages)")
        blocks = [ledger.block(h) for h in range(1, ledger.height + 1)]
        ledger.close()
    start = time.perf_counter()
    report = verify_chain(genesis, blocks)
    seconds = time.perf_counter() - start
    assert report.ok, report.problem
    verified = report.transactions / seconds
    print(f"[verify] verify_chain: {verified:,.0f} tx/s ({report.transactions} tx, {report.blocks} blocks, "
          f"{seconds:.1f} s, one process) = {verified / rate:.0%} of one core's verify bound")


if __name__ == "__main__":
    main()
