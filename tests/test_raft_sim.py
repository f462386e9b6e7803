"""Seeded simulation runs (tests.sim). NANUM_SIM_SEEDS sets how many seeds run
(default 500; cluster size, 3 or 5, is drawn from each seed). A failure names
its seed and the command that replays it: python -m tests.sim --seed N."""

from __future__ import annotations

import os

import pytest

from tests.sim import Simulation, SimulationFailure

SEED_COUNT = int(os.environ.get("NANUM_SIM_SEEDS", "500"))


@pytest.mark.parametrize("seed", range(SEED_COUNT))
def test_simulated_cluster_stays_safe_and_recovers(seed: int) -> None:
    Simulation(seed).run()  # raises SimulationFailure on any safety or liveness violation


@pytest.mark.skipif(SEED_COUNT < 20, reason="too few seeds to expect both cluster sizes")
def test_the_seed_range_mixes_cluster_sizes() -> None:
    sizes = [Simulation(seed).plan.node_count for seed in range(SEED_COUNT)]
    assert sizes.count(3) > SEED_COUNT // 4 and sizes.count(5) > SEED_COUNT // 4


def test_a_seed_replays_exactly() -> None:
    assert Simulation(7).run() == Simulation(7).run()


def test_a_failure_names_its_seed_and_replay_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.sim.checkers import Invariants

    def broken_check(self: Invariants, nodes: object) -> None:
        raise AssertionError("planted")

    monkeypatch.setattr(Invariants, "check_step", broken_check)
    with pytest.raises(SimulationFailure, match=r"seed=11 .*planted[\s\S]*replay: python -m tests.sim --seed 11$"):
        Simulation(11).run()
