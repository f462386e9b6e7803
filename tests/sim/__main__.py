"""Run simulations from the command line.

    python -m tests.sim --seed 42            # replay one run exactly
    python -m tests.sim --seeds 1000 --start 0 --nodes 5 --steps 300
"""

from __future__ import annotations

import argparse
import sys
import time

from tests.sim.simulation import DEFAULT_CHAOS_TICKS, LIVENESS_BOUND_TICKS, Simulation, SimulationFailure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, help="run exactly this seed")
    parser.add_argument("--seeds", type=int, default=100, help="number of seeds to run (default 100)")
    parser.add_argument("--start", type=int, default=0, help="first seed of the range (default 0)")
    parser.add_argument("--nodes", type=int, choices=(3, 5), help="cluster size (default: drawn from the seed)")
    parser.add_argument("--steps", type=int, default=DEFAULT_CHAOS_TICKS,
                        help=f"chaos ticks before healing (default {DEFAULT_CHAOS_TICKS})")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))

    started = time.perf_counter()
    worst_heal_ticks = 0
    for seed in seeds:
        try:
            stats = Simulation(seed, node_count=args.nodes, chaos_ticks=args.steps).run()
        except SimulationFailure as failure:
            print(failure, file=sys.stderr)
            return 1
        worst_heal_ticks = max(worst_heal_ticks, stats.heal_to_liveness_ticks)
        if args.seed is not None:
            print(stats)
    elapsed = time.perf_counter() - started
    print(
        f"{len(seeds)} seeds passed in {elapsed:.1f}s ({len(seeds) / elapsed:.1f} seeds/s); "
        f"slowest recovery after healing: {worst_heal_ticks} ticks (bound {LIVENESS_BOUND_TICKS})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
