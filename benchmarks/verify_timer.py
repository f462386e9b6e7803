"""Runs a `nanum` command with every Ed25519 verification timed: the in-run bound.

    python -m benchmarks.verify_timer TIMINGS.json audit verify --export FILE --genesis FILE ...

The auditor benchmark compares the signatures verified per second against cores x the rate one
core verifies at. Measured before and after a run, that rate misses what happens during it: on
this shared host one core's rate drifts by 10-20% within minutes. So this wrapper also measures
it inside the run, from the very verifications the command makes: ``ledger.keys.verify`` is
wrapped to add its wall time to a per-process slot in shared memory, which the command's pool
workers inherit (they are forked; a spawned worker would not be timed, and the count then falls
short of the signatures, which the benchmark reports as an error). On exit, the totals are
written to TIMINGS.json as {"verifications": n, "seconds": s}; the command's exit code is kept.

Cost: two clock reads and two stores per verification (well under 1% of one). Verifications
interleaved with other work may run a little slower than in a tight loop (caches); that makes
this rate a little lower, so the benchmark prints both bounds, never this one alone.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from pathlib import Path

from ledger import keys

MAX_PROCESSES = 64          # timed processes: the command and its pool workers


class _Slots:
    """One (count, seconds) pair per process, each written only by its own process."""

    def __init__(self) -> None:
        self.counts = multiprocessing.Array("q", MAX_PROCESSES, lock=False)
        self.seconds = multiprocessing.Array("d", MAX_PROCESSES, lock=False)
        self._next = multiprocessing.Value("i", 0)
        self._mine: tuple[int, int] | None = None      # (pid, slot) of the process that claimed it

    def slot(self) -> int:
        pid = os.getpid()
        if self._mine is None or self._mine[0] != pid:      # first call in this (forked) process
            with self._next.get_lock():
                index = self._next.value
                if index >= MAX_PROCESSES:
                    raise RuntimeError(f"more than {MAX_PROCESSES} processes verify signatures")
                self._next.value += 1
            self._mine = (pid, index)
        return self._mine[1]

    def totals(self) -> tuple[int, float]:
        used = self._next.value
        return sum(self.counts[:used]), sum(self.seconds[:used])


def _timed(verify, slots: _Slots):
    clock = time.perf_counter

    def timed_verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
        slot = slots.slot()
        started = clock()
        try:
            return verify(public_key, signature, message)
        finally:
            slots.seconds[slot] += clock() - started
            slots.counts[slot] += 1
    return timed_verify


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    timings, command = Path(argv[0]), argv[1:]
    slots = _Slots()
    keys.verify = _timed(keys.verify, slots)
    from cli.main import main as nanum     # after the wrap: nothing holds the untimed function

    code = 0
    try:
        nanum(args=command, prog_name="nanum")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        verifications, seconds = slots.totals()
        timings.write_text(json.dumps({"verifications": verifications, "seconds": seconds}))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
