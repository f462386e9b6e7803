"""``python -m tests.chaos``: one bounded chaos run; exit 1 (with the replay command) on a violation."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.chaos.faults import ALL_KINDS
from tests.chaos.runner import Options, run

MAX_SECONDS = 24 * 3600


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=180, help="how long faults are injected")
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--readers", type=int, default=2)
    parser.add_argument("--faults", default=",".join(ALL_KINDS),
                        help=f"comma-separated fault kinds (default all: {','.join(ALL_KINDS)})")
    parser.add_argument("--no-races", action="store_true", help="no same-id races (issue 16, defect 1)")
    parser.add_argument("--folder", type=Path, help="where the consortium goes (default: a new temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the run's folder even when it passes")
    args = parser.parse_args(argv)
    faults = tuple(k for k in args.faults.split(",") if k)
    unknown = [k for k in faults if k not in ALL_KINDS]
    if unknown or not faults:
        parser.error(f"unknown fault kinds {unknown}; known: {', '.join(ALL_KINDS)}")
    if not 0 < args.seconds <= MAX_SECONDS or not 1 <= args.writers <= 64 or not 0 <= args.readers <= 64:
        parser.error(f"--seconds 1..{MAX_SECONDS}, --writers 1..64, --readers 0..64")
    result = run(Options(seed=args.seed, seconds=args.seconds, writers=args.writers, readers=args.readers,
                         faults=faults, races=not args.no_races, folder=args.folder, keep=args.keep))
    print(result.summary(), flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
