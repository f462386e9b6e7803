"""Deterministic simulator for nanum's Raft core (see tests.sim.simulation).

Modules: app (the application seam and the default hash-chain app), network
(faulty simulated links), driver (one node: disk, core and the Ready
contract), checkers (safety invariants), simulation (one seeded run),
__main__ (command line: `python -m tests.sim --seed N`).
"""

from tests.sim.simulation import LIVENESS_BOUND_TICKS, RunStats, Simulation, SimulationFailure

__all__ = ["LIVENESS_BOUND_TICKS", "RunStats", "Simulation", "SimulationFailure"]
