"""The nemesis: a schedule of faults drawn from one seed, and the code that injects each one.

Owns the fault kinds, their durations (all bounded), the order they come in (``random.Random``
of the run's seed: the same seed gives the same schedule; which node is leader at a given
moment still depends on timing), and undoing each fault before the next starts, so that when
the nemesis stops the cluster is whole again. One fault at a time; after each, a bounded wait
until every node has caught up (its time is reported; a node that does not is a finding), then
a quiet gap.

Kinds: ``kill_leader``, ``kill_follower`` (SIGKILL, restart); ``pause_leader``,
``pause_follower`` (SIGSTOP longer than the election timeout, then SIGCONT); ``crash_all``
(SIGKILL every node, restart all); ``partition_leader``, ``partition_follower`` (every link of
the node cut); ``one_way`` (links *into* the leader cut: it still sends, hears nothing);
``blackhole`` (a node's links hold every byte, silently); ``long_outage`` (a follower cut off
10-15 s, longer than the leader keeps its log for at this load); ``flap`` (random links cut and healed
every 0.1-0.5 s); ``delay`` (a node's links slowed by 50-400 ms); ``wipe`` (a follower's data
folder emptied, restarted with ``--rejoin``, restarted as a voter once it has caught up);
``skew`` (a node restarted with its clock 2-30 s off, then set right); ``disk_full`` (a
follower's store moved onto a tmpfs with about 1 MiB to spare, later moved back).

A fault that cannot be done here (no tmpfs) is skipped with a printed reason. A node that does
not come back (fails to start, does not catch up within the bound) is a finding, returned as
a ``Finding`` for the checker's report.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from tests.chaos.cluster import ChaosCluster, ChaosClusterError

ELECTION_TIMEOUT_S = 1.0            # 50 ms ticks x 10 to 20 election ticks (node.toml defaults)
GAP_S = (0.5, 2.0)
# A fault's own duration, its restarts (30 s each at most), catch-up and recovery waits, at most.
LONGEST_FAULT_S = 150
CATCH_UP_TIMEOUT_S = 25
DISK_HEADROOM_BYTES = 256 * 1024      # about 8 s of this workload's writes
FROZEN_PROBE_S = 3.0
SKEW_MS = (2_000, 30_000)

RECOVERY_TIMEOUT_S = 20
LEADER_TIMEOUT_S = 10
OUTAGE_S = (2.0, 4.0)               # a partition's length: shorter than the log's retention here
LONG_OUTAGE_S = (10.0, 15.0)        # longer: the node must catch up from certified blocks

ALL_KINDS = ("kill_leader", "kill_follower", "pause_leader", "pause_follower", "crash_all",
             "partition_leader", "partition_follower", "one_way", "blackhole", "flap", "delay",
             "skew", "long_outage", "wipe", "disk_full")
# Faults whose recovery main does not survive yet (issue 16, defects 3 and 4): a node further
# behind than the leader's log retention (LOG_RETENTION_ENTRIES) never catches up.
@dataclass
class Injected:
    kind: str
    start: float
    end: float = 0.0
    target: int | None = None
    detail: str = ""


@dataclass
class Finding:
    what: str
    node: int | None = None
    detail: str = ""


@dataclass
class Nemesis:
    cluster: ChaosCluster
    seed: int
    seconds: float
    kinds: tuple[str, ...] = ALL_KINDS
    log: list[Injected] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    error: BaseException | None = None
    behind: set[int] = field(default_factory=set)     # nodes found not catching up

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}-nemesis")

    def run(self, stop: threading.Event) -> None:
        """Injects faults until ``seconds`` have passed (the last one is always undone)."""
        deadline = time.monotonic() + self.seconds
        try:
            while time.monotonic() < deadline and not stop.is_set():
                kinds = [k for k in self.kinds if k not in self.skipped]
                kind = self.rng.choice(kinds)
                entry = Injected(kind, time.monotonic())
                self.log.append(entry)
                getattr(self, kind)(entry)
                entry.end = time.monotonic()
                entry.detail += self._recovery(kind)
                print(f"  fault {len(self.log):3d} {kind:<18} node {entry.target} {entry.detail}"
                      f" ({entry.end - entry.start:.1f} s)", flush=True)
                time.sleep(self.rng.uniform(*GAP_S))
        except BaseException as exc:       # a harness bug or a node that will not start
            self.error = exc

    # --- helpers -----------------------------------------------------------------------------

    def _recovery(self, kind: str) -> str:
        """Waits (bounded) until every live node has applied what the leader had when the fault
        was undone, so lag does not pile up from fault to fault; a node that does not is a
        finding, and is not waited for again."""
        start = time.monotonic()
        leader = self._leader()
        status = leader is not None and self.cluster.status(leader)
        if not status:
            self.findings.append(Finding(f"no leader within {LEADER_TIMEOUT_S} s after {kind} was undone"))
            return ", no leader to recover to"
        target = status.applied_height
        waiting = {i for i in range(self.cluster.nodes) if i not in self.behind}
        while waiting and time.monotonic() - start < RECOVERY_TIMEOUT_S:
            for i in list(waiting):
                mine = self.cluster.status(i)
                if mine is not None and mine.applied_height >= target:
                    waiting.discard(i)
            time.sleep(0.2)
        for i in waiting:
            mine = self.cluster.status(i)
            self.behind.add(i)
            self.findings.append(Finding(
                f"did not catch up within {RECOVERY_TIMEOUT_S} s after {kind}", i,
                f"leader at {target}, the node at {mine and mine.applied_height} (see its node.log)"))
        return f", recovered in {time.monotonic() - start:.1f} s" + (f", node(s) {sorted(waiting)} behind" if waiting else "")

    def _leader(self) -> int | None:
        """The leader, waiting for one (bounded); None if there is none."""
        deadline = time.monotonic() + LEADER_TIMEOUT_S
        while time.monotonic() < deadline:
            leader = self.cluster.leader()
            if leader is not None:
                return leader
            time.sleep(0.1)
        return None

    def _leader_or_any(self) -> int:
        """A fault aimed at the leader hits the lowest live node when there is none (without
        drawing from the seeded generator, so the schedule stays the seed's)."""
        leader = self._leader()
        return leader if leader is not None else min(
            (i for i in range(self.cluster.nodes) if self.cluster.alive(i)), default=0)

    def _follower(self) -> int:
        leader = self.cluster.leader()
        # Always n - 1 candidates, so the draw (and the rest of the schedule) is the seed's.
        return self.rng.choice([i for i in range(self.cluster.nodes) if i != leader][:self.cluster.nodes - 1])

    def _hold(self, low: float, high: float) -> float:
        duration = self.rng.uniform(low, high)
        time.sleep(duration)
        return duration

    def _restart(self, index: int) -> None:
        try:
            self.cluster.start(index, rejoin=index in self.cluster.rejoining)
        except ChaosClusterError as exc:
            self.findings.append(Finding("a node did not come back after a restart", index, str(exc)))
            raise

    # --- the faults --------------------------------------------------------------------------

    def kill_leader(self, entry: Injected) -> None:
        self._kill(entry, self._leader_or_any())

    def kill_follower(self, entry: Injected) -> None:
        self._kill(entry, self._follower())

    def _kill(self, entry: Injected, index: int) -> None:
        entry.target = index
        self.cluster.kill(index)
        entry.detail = f"down {self._hold(0.3, 3.0):.1f} s"
        self._restart(index)

    def pause_leader(self, entry: Injected) -> None:
        self._pause(entry, self._leader_or_any())

    def pause_follower(self, entry: Injected) -> None:
        self._pause(entry, self._follower())

    def _pause(self, entry: Injected, index: int) -> None:
        entry.target = index
        self.cluster.pause(index)
        entry.detail = f"stopped {self._hold(1.5 * ELECTION_TIMEOUT_S, 4.0 * ELECTION_TIMEOUT_S):.1f} s"
        self.cluster.resume(index)

    def crash_all(self, entry: Injected) -> None:
        for i in range(self.cluster.nodes):
            self.cluster.kill(i)
        entry.detail = f"all down {self._hold(0.3, 2.0):.1f} s"
        for i in range(self.cluster.nodes):
            self.cluster.start(i, rejoin=i in self.cluster.rejoining, wait=False)
        for i in range(self.cluster.nodes):
            try:
                self.cluster.wait_serving(i)
            except ChaosClusterError as exc:
                self.findings.append(Finding("a node did not come back after a whole-cluster crash", i, str(exc)))
                raise

    def partition_leader(self, entry: Injected) -> None:
        self._isolate(entry, self._leader_or_any(), "cut")

    def partition_follower(self, entry: Injected) -> None:
        self._isolate(entry, self._follower(), "cut")

    def blackhole(self, entry: Injected) -> None:
        self._isolate(entry, self.rng.randrange(self.cluster.nodes), "drop")

    def _isolate(self, entry: Injected, index: int, mode: str) -> None:
        entry.target = index
        self.cluster.proxies.isolate(index, mode)
        entry.detail = f"{mode} {self._hold(*OUTAGE_S):.1f} s"
        self.cluster.proxies.heal_all()

    def long_outage(self, entry: Injected) -> None:
        index = entry.target = self._follower()
        self.cluster.proxies.isolate(index, "cut")
        entry.detail = f"cut {self._hold(*LONG_OUTAGE_S):.1f} s"
        self.cluster.proxies.heal_all()

    def one_way(self, entry: Injected) -> None:
        leader = entry.target = self._leader_or_any()
        for other in range(self.cluster.nodes):
            if other != leader:
                self.cluster.proxies.set_mode(other, leader, "cut")
        entry.detail = f"inbound cut {self._hold(*OUTAGE_S):.1f} s"
        self.cluster.proxies.heal_all()

    def flap(self, entry: Injected) -> None:
        links = sorted(self.cluster.proxies.links)
        end = time.monotonic() + self.rng.uniform(3.0, 8.0)
        toggles = 0
        while time.monotonic() < end:
            source, target = self.rng.choice(links)
            mode = "cut" if self.cluster.proxies.links[(source, target)].mode == "pass" else "pass"
            self.cluster.proxies.set_mode(source, target, mode)
            toggles += 1
            time.sleep(self.rng.uniform(0.1, 0.5))
        self.cluster.proxies.heal_all()
        entry.detail = f"{toggles} toggles"

    def delay(self, entry: Injected) -> None:
        index = entry.target = self.rng.randrange(self.cluster.nodes)
        delay_ms = self.rng.randint(50, 400)
        for source, target in self.cluster.proxies.links:
            if index in (source, target):
                self.cluster.proxies.set_mode(source, target, "pass", delay_ms)
        entry.detail = f"{delay_ms} ms for {self._hold(*OUTAGE_S):.1f} s"
        self.cluster.proxies.heal_all()

    def wipe(self, entry: Injected) -> None:
        index = entry.target = self._follower()
        self.cluster.kill(index)
        self.cluster.wipe(index, f"{len(self.log)}")
        self.cluster.start(index, rejoin=True)
        caught_up = self._wait_caught_up(index, CATCH_UP_TIMEOUT_S)
        if caught_up is None:
            status = self.cluster.status(index)
            self.findings.append(Finding(
                f"a wiped node did not catch up within {CATCH_UP_TIMEOUT_S} s", index,
                f"its status: {status and (status.applied_height, status.certified_height)}"))
            self.behind.add(index)
            entry.detail = "did not catch up; left running with --rejoin"
            return
        self.cluster.kill(index)
        self.cluster.start(index, rejoin=False)
        entry.detail = f"caught up in {caught_up:.1f} s, restarted as a voter"

    def _wait_caught_up(self, index: int, timeout_s: float) -> float | None:
        start = time.monotonic()
        while time.monotonic() - start < timeout_s:
            leader = self.cluster.leader()
            mine, theirs = self.cluster.status(index), leader is not None and self.cluster.status(leader)
            if mine and theirs and mine.certified_height >= theirs.certified_height > 0:
                return time.monotonic() - start
            time.sleep(0.5)
        return None

    def skew(self, entry: Injected) -> None:
        index = entry.target = self.rng.randrange(self.cluster.nodes)
        offset_ms = self.rng.choice((-1, 1)) * self.rng.randint(*SKEW_MS)
        self.cluster.kill(index)
        self.cluster.clock_offset_ms[index] = offset_ms
        self._restart(index)
        held = self._hold(4.0, 10.0)
        self.cluster.kill(index)
        self.cluster.clock_offset_ms.pop(index)
        self._restart(index)
        entry.detail = f"clock {offset_ms:+d} ms for {held:.1f} s"

    def disk_full(self, entry: Injected) -> None:
        index = entry.target = self._follower()
        self.cluster.kill(index)
        reason = self.cluster.enter_tmpfs(index, DISK_HEADROOM_BYTES)
        if reason is not None:
            self.skipped["disk_full"] = reason
            print(f"  skipping disk_full from now on: {reason}", flush=True)
            entry.detail = f"skipped: {reason}"
            self._restart(index)
            return
        self._restart(index)
        held = self._hold(8.0, 15.0)
        frozen = self._silently_frozen(index)
        if frozen:
            self.findings.append(Finding("a node on a full disk froze silently", index, frozen))
        self.cluster.leave_tmpfs(index)
        self._restart(index)
        entry.detail = f"tmpfs for {held:.1f} s" + (" (froze silently)" if frozen else "")

    def _silently_frozen(self, index: int) -> str:
        """What is wrong if ``index`` still runs, says it is healthy, and applies nothing while
        the leader goes on (issue 16, defect 4: it must refuse writes with a reason, or exit)."""
        if not self.cluster.alive(index):
            return ""
        leader = self.cluster.leader()
        before, leader_before = self.cluster.status(index), leader is not None and self.cluster.status(leader)
        time.sleep(FROZEN_PROBE_S)
        after, leader_after = self.cluster.status(index), leader is not None and self.cluster.status(leader)
        if not (before and after and leader_before and leader_after):
            return ""
        stuck = after.applied_height == before.applied_height < leader_after.applied_height
        moving = leader_after.applied_height > leader_before.applied_height
        if stuck and moving and self.cluster.health(index) == "SERVING":
            return (f"alive, health SERVING, at height {after.applied_height} for {FROZEN_PROBE_S:.0f} s while "
                    f"the leader went from {leader_before.applied_height} to {leader_after.applied_height}")
        return ""
