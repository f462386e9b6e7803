"""Run simulations from the command line.

    python -m tests.sim --seed 42                  # replay one Raft-level run exactly
    python -m tests.sim --ledger --seed 42         # replay one ledger-level run exactly
    python -m tests.sim --seeds 1000 --start 0 --nodes 5 --steps 300
    python -m tests.sim --both --seeds 20000 --jobs 2    # what `make sim` runs

Raft-level runs (tests.sim.simulation) check the consensus core with a toy app; ledger-level
runs (tests.sim.ledger_sim) run the real replica with blocks, state roots and certificates.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time

from tests.sim.ledger_sim import DEFAULT_LEDGER_CHAOS_TICKS, LedgerSimulation
from tests.sim.simulation import DEFAULT_CHAOS_TICKS, LIVENESS_BOUND_TICKS, Simulation, SimulationFailure


def run_one(job: tuple[str, int, int | None, int | None]) -> tuple[int, str | None]:
    """(kind, seed, nodes, steps) -> (heal ticks, failure message or None)."""
    kind, seed, nodes, steps = job
    try:
        if kind == "ledger":
            stats = LedgerSimulation(seed, node_count=nodes, chaos_ticks=steps or DEFAULT_LEDGER_CHAOS_TICKS).run()
            return stats["heal_ticks"], None
        stats = Simulation(seed, node_count=nodes, chaos_ticks=steps or DEFAULT_CHAOS_TICKS).run()
        return stats.heal_to_liveness_ticks, None
    except SimulationFailure as failure:
        return 0, str(failure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="run exactly this seed")
    parser.add_argument("--seeds", type=int, default=100, help="number of seeds to run (default 100)")
    parser.add_argument("--start", type=int, default=0, help="first seed of the range (default 0)")
    parser.add_argument("--nodes", type=int, choices=(3, 5), help="cluster size (default: drawn from the seed)")
    parser.add_argument("--steps", type=int, help="chaos ticks before healing (default: per kind)")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--ledger", action="store_true", help="ledger-level runs (the real replica)")
    kind.add_argument("--both", action="store_true", help="Raft-level and ledger-level runs for each seed")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    kinds = ["raft", "ledger"] if args.both else ["ledger"] if args.ledger else ["raft"]
    jobs = [(k, seed, args.nodes, args.steps) for k in kinds for seed in seeds]

    started = time.perf_counter()
    worst: dict[str, int] = {k: 0 for k in kinds}
    with multiprocessing.Pool(args.jobs) if args.jobs > 1 else _Inline() as pool:
        for job, (heal_ticks, failure) in zip(jobs, pool.imap(run_one, jobs, chunksize=8)):
            if failure is not None:
                print(failure, file=sys.stderr)
                return 1
            worst[job[0]] = max(worst[job[0]], heal_ticks)
    elapsed = time.perf_counter() - started
    for k in kinds:
        print(f"{k}: {len(seeds)} seeds passed; slowest recovery after healing: {worst[k]} ticks "
              f"(bound {LIVENESS_BOUND_TICKS if k == 'raft' else _ledger_bound()})")
    print(f"{len(jobs)} runs in {elapsed:.1f}s ({len(jobs) / elapsed:.1f} runs/s, {args.jobs} job(s))")
    return 0


def _ledger_bound() -> int:
    from tests.sim.ledger_sim import LIVENESS_BOUND_TICKS as bound

    return bound


class _Inline:
    """The Pool interface, run in this process (keeps single-seed replays simple to debug)."""

    def __enter__(self) -> "_Inline":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def imap(self, function, items, chunksize: int = 1):
        return map(function, items)


if __name__ == "__main__":
    sys.exit(main())
