"""One deterministic simulated run. A seed fixes everything: cluster size
(unless overridden), limits, network quality, and every fault, proposal and
timeout, because every choice is drawn from one `random.Random(seed)` (the
Raft cores draw their election timeouts from it too). One thread; time is
ticks.

A run has two phases:
- chaos (`chaos_ticks`): crashes (also in the middle of processing a Ready),
  restarts, disk loss, symmetric and asymmetric partitions, message drop,
  duplication and delay/reordering, leadership transfers, client proposals.
- heal: every node restarts, links heal, drops and duplicates stop (delays
  remain). The cluster must then apply a fresh proposal on EVERY node within
  LIVENESS_BOUND_TICKS (nodes that lost their disk must catch up to do so).
Safety invariants (tests.sim.checkers) are checked after every tick.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from node.raft import Entry, Message, ProposalDropped, RaftConfig, Role
from tests.sim.app import HashChainApp, ReplicatedApp
from tests.sim.checkers import Invariants
from tests.sim.driver import READY_STAGES, SimNode, Stage
from tests.sim.network import NetworkFaults, SimNetwork

DEFAULT_CHAOS_TICKS = 400
ELECTION_TICK = 10
# After healing: up to 2 election timeouts for a stale leader to notice it lost
# its quorum (CheckQuorum) or for leases to lapse, a randomised timeout of up to
# 2 more, possibly a few split votes, then replication and maybe a catch-up.
# The worst case seen over 8,600 runs (600 of them with 2,000 chaos ticks) was
# 165 ticks; `python -m tests.sim` prints the worst case of every batch.
LIVENESS_BOUND_TICKS = 25 * ELECTION_TICK

# Fault rates, per tick unless noted.
CRASH_RATE = 0.01
RESTART_RATE = 0.08  # per crashed node
DISK_LOSS_ON_RESTART_RATE = 0.25
CRASH_IN_READY_RATE = 0.002  # each time a node processes its pending Readys
PARTITION_RATE = 0.01
PARTITION_HEAL_RATE = 0.03
TRANSFER_RATE = 0.01
PROPOSAL_RATE = 0.5
INVALID_PROPOSAL_SHARE = 0.05
READ_RATE = 0.2        # per tick: a client asks a random node for a linearizable read
PAUSE_RATE = 0.01      # per tick: a node is frozen (SIGSTOP) for PAUSE_TICKS, its messages held
PAUSE_TICKS = (2 * ELECTION_TICK, 5 * ELECTION_TICK)


class SimulationFailure(AssertionError):
    """A run broke an invariant or crashed. The message names the seed and
    the command that replays the run exactly."""


@dataclass(frozen=True, slots=True)
class RunPlan:
    seed: int
    node_count: int
    chaos_ticks: int
    network: NetworkFaults
    max_inflight_appends: int
    max_append_entries: int
    max_uncommitted_entries: int
    log_tail_entries: int
    # Multiplies the crash, partition and transfer rates: calm runs and storms.
    turbulence: float
    # A node that lost its disk never votes again; keep a voting majority able
    # to form (3 nodes: 1 loss, 5 nodes: 2).
    max_disk_losses: int

    @classmethod
    def draw(cls, seed: int, rng: random.Random, node_count: int | None, chaos_ticks: int) -> "RunPlan":
        node_count = node_count or rng.choice((3, 5))
        return cls(
            seed=seed,
            node_count=node_count,
            chaos_ticks=chaos_ticks,
            network=NetworkFaults(
                drop_rate=rng.choice((0.0, 0.02, 0.1)),
                duplicate_rate=rng.choice((0.0, 0.02, 0.05)),
                max_delay_ticks=rng.randint(1, 4),
            ),
            max_inflight_appends=rng.randint(1, 4),
            max_append_entries=rng.randint(1, 8),
            max_uncommitted_entries=rng.randint(4, 64),
            log_tail_entries=rng.randint(1, 16),
            turbulence=rng.choice((0.5, 1.0, 2.0, 4.0)),
            max_disk_losses=(node_count - 1) // 2,
        )


@dataclass(slots=True)
class RunStats:
    ticks: int = 0
    crashes: int = 0
    disk_losses: int = 0
    catch_ups: int = 0
    partitions: int = 0
    proposals_accepted: int = 0
    entries_committed: int = 0
    leaders: int = 0
    heal_to_liveness_ticks: int = 0
    reads_confirmed: int = 0


class Simulation:
    def __init__(self, seed: int, *, node_count: int | None = None, chaos_ticks: int = DEFAULT_CHAOS_TICKS) -> None:
        self._rng = random.Random(seed)
        self._read_rng = random.Random(f"reads-{seed}")
        self._read_counter = 0
        self._reads: dict[int, int] = {}     # read context -> highest index committed when asked
        self._pause_rng = random.Random(f"pauses-{seed}")
        self._paused: dict[str, tuple[int, list[Message]]] = {}   # node -> (resume tick, held messages)
        self.plan = RunPlan.draw(seed, self._rng, node_count, chaos_ticks)
        self._replay = _replay_command(seed, node_count, chaos_ticks)
        self._now = 0
        self._network = SimNetwork(self._rng, self.plan.network)
        self._invariants = Invariants()
        self._stats = RunStats()
        self._proposal_counter = 0
        self._heal_probes: set[bytes] = set()
        self._heal_probe_index: int | None = None
        voters = tuple(f"n{i}" for i in range(1, self.plan.node_count + 1))
        self._nodes = {
            node_id: SimNode(self._raft_config(node_id, voters), HashChainApp, self.plan.log_tail_entries)
            for node_id in voters
        }
        for node in self._nodes.values():
            node.start(self._rng)

    def _raft_config(self, node_id: str, voters: tuple[str, ...]) -> RaftConfig:
        return RaftConfig(
            node_id=node_id,
            voters=voters,
            election_tick=ELECTION_TICK,
            max_inflight_appends=self.plan.max_inflight_appends,
            max_append_entries=self.plan.max_append_entries,
            max_uncommitted_entries=self.plan.max_uncommitted_entries,
        )

    # --- running -------------------------------------------------------------

    def run(self) -> RunStats:
        try:
            for _ in range(self.plan.chaos_ticks):
                self._step(chaos=True)
            self._heal()
            self._await_liveness()
        except Exception as error:
            raise SimulationFailure(
                f"seed={self.plan.seed} failed at tick {self._now} ({self.plan}): "
                f"{type(error).__name__}: {error}\nreplay: {self._replay}"
            ) from error
        self._stats.ticks = self._now
        self._stats.entries_committed = len(self._invariants.committed)
        self._stats.leaders = self._invariants.leaders_elected
        return self._stats

    def _step(self, chaos: bool) -> None:
        self._now += 1
        if chaos:
            self._inject_faults()
            self._maybe_pause()
        held = self._resume_due(everyone=not chaos)
        self._propose(chaos)
        self._read(resumed=[self._nodes[node_id] for node_id in held])
        for message in [m for messages in held.values() for m in messages] + self._network.arrivals(self._now):
            if message.recipient in self._paused:
                self._paused[message.recipient][1].append(message)
                continue
            node = self._nodes[message.recipient]
            if node.raft is not None:
                node.raft.step(message)
                self._drive(node, chaos)
        for node in self._shuffled_up_nodes():
            assert node.raft is not None
            node.raft.tick()
            self._drive(node, chaos)
        self._invariants.check_step(self._nodes.values())

    def _drive(self, node: SimNode, chaos: bool) -> None:
        crash_before: Stage | None = None
        if chaos and self._rng.random() < CRASH_IN_READY_RATE * self.plan.turbulence:
            crash_before = self._rng.choice(READY_STAGES)
        node.process(self, crash_before)
        if not node.is_up:
            self._stats.crashes += 1

    def _heal(self) -> None:
        self._network.heal()
        self._network.faults = NetworkFaults(max_delay_ticks=self.plan.network.max_delay_ticks)
        for node in self._nodes.values():
            if not node.is_up:
                node.start(self._rng)

    def _await_liveness(self) -> None:
        healed_at = self._now
        while not self._probe_applied_everywhere():
            if self._now - healed_at >= LIVENESS_BOUND_TICKS:
                state = {n.node_id: (n.raft.role.value, n.raft.term, n.raft.commit_index, n.app.applied_index)
                         for n in self._nodes.values() if n.raft is not None}
                raise AssertionError(
                    f"liveness: no fresh proposal applied on every node within "
                    f"{LIVENESS_BOUND_TICKS} ticks of healing; (role, term, commit, applied): {state}"
                )
            self._step(chaos=False)
        self._stats.heal_to_liveness_ticks = self._now - healed_at

    def _probe_applied_everywhere(self) -> bool:
        index = self._heal_probe_index
        return index is not None and all(n.app.applied_index >= index for n in self._nodes.values())

    # --- faults ----------------------------------------------------------------

    def _inject_faults(self) -> None:
        rng, turbulence = self._rng, self.plan.turbulence
        up_nodes = self._shuffled_up_nodes()
        if up_nodes and rng.random() < CRASH_RATE * turbulence:
            up_nodes[0].crash()
            self._stats.crashes += 1
        for node in self._nodes.values():
            if not node.is_up and rng.random() < RESTART_RATE:
                self._restart(node)
        if rng.random() < PARTITION_RATE * turbulence:
            self._partition()
        elif self._network.partitioned and rng.random() < PARTITION_HEAL_RATE:
            self._network.heal()
        if rng.random() < TRANSFER_RATE * turbulence:
            self._transfer_leadership()

    def _restart(self, node: SimNode) -> None:
        if self._stats.disk_losses < self.plan.max_disk_losses and self._rng.random() < DISK_LOSS_ON_RESTART_RATE:
            node.lose_disk()
            self._stats.disk_losses += 1
        node.start(self._rng)

    def _partition(self) -> None:
        """Cut links: a symmetric split, a node that cannot be heard, a node
        that cannot hear, or one directed link."""
        rng, ids = self._rng, list(self._nodes)
        kind = rng.choice(("split", "mute", "deaf", "link"))
        if kind == "split":
            side = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
            cuts = [(a, b) for a in ids for b in ids if (a in side) != (b in side)]
        elif kind == "link":
            cuts = [tuple(rng.sample(ids, 2))]
        else:
            victim = rng.choice(ids)
            others = [n for n in ids if n != victim]
            cuts = [(victim, o) for o in others] if kind == "mute" else [(o, victim) for o in others]
        for sender, recipient in cuts:
            self._network.cut(sender, recipient)
        self._stats.partitions += 1

    def _transfer_leadership(self) -> None:
        for node in self._shuffled_up_nodes():
            if node.raft is not None and node.raft.role is Role.LEADER:
                node.raft.transfer_leadership(self._rng.choice([n for n in self._nodes if n != node.node_id]))
                self._drive(node, chaos=True)
                return

    # --- clients ---------------------------------------------------------------

    def _propose(self, chaos: bool) -> None:
        """Chaos: a client picks a random node. Heal: every self-declared leader
        gets a fresh probe entry each tick until one is applied."""
        if chaos:
            if self._rng.random() < PROPOSAL_RATE:
                up_nodes = self._shuffled_up_nodes()
                if up_nodes:
                    self._propose_to(up_nodes[0], self._client_data())
            return
        if self._heal_probe_index is None:
            for node in self._shuffled_up_nodes():
                if node.raft is not None and node.raft.role is Role.LEADER:
                    probe = self._next_data(b"heal")
                    self._heal_probes.add(probe)
                    self._propose_to(node, probe)

    def _maybe_pause(self) -> None:
        """A node frozen like a SIGSTOPped process: no ticks, messages to it held until it
        resumes, when a read is waiting for it (the stale-leader window ReadIndex must close)."""
        if self._pause_rng.random() >= PAUSE_RATE:
            return
        candidates = [n for n in self._shuffled_up_nodes()]
        if candidates:
            victim = self._pause_rng.choice(candidates)
            self._paused[victim.node_id] = (self._now + self._pause_rng.randint(*PAUSE_TICKS), [])

    def _resume_due(self, everyone: bool) -> dict[str, list[Message]]:
        due = [n for n, (until, _) in self._paused.items() if everyone or until <= self._now]
        return {node_id: self._paused.pop(node_id)[1] for node_id in due}

    def _read(self, resumed: list[SimNode]) -> None:
        """Linearizable reads (ReadIndex): a client asks a random node — or a node that has just
        resumed from a pause, before it hears what happened meanwhile; the read it is confirmed
        with must cover every entry committed before it was asked for. Drawn from streams of
        their own, so the other choices of a seed stay as they were."""
        resumed = [n for n in resumed if n.raft is not None]
        if not resumed and self._read_rng.random() >= READ_RATE:
            return
        up_nodes = resumed or [n for n in self._nodes.values() if n.raft is not None]
        if not up_nodes:
            return
        node = self._read_rng.choice(up_nodes)
        self._read_counter += 1
        committed = max([max(self._invariants.committed, default=0)] + [n.raft.commit_index for n in up_nodes])
        try:
            node.raft.read_index(self._read_counter)
        except ProposalDropped:          # includes NotLeader
            return
        self._reads[self._read_counter] = committed
        self._drive(node, chaos=False)

    def read_confirmed(self, node: SimNode, context: int, index: int) -> None:
        committed_before = self._reads.pop(context)
        if index < committed_before:
            raise AssertionError(f"stale read: {node.node_id} confirmed read {context} at index {index}, but "
                                 f"index {committed_before} was committed before the read was asked for")
        self._stats.reads_confirmed += 1

    def _client_data(self) -> bytes:
        if self._rng.random() < INVALID_PROPOSAL_SHARE:
            return self._next_data(b"!invalid")
        return self._next_data(b"client")

    def _next_data(self, prefix: bytes) -> bytes:
        self._proposal_counter += 1
        return b"%s-%d" % (prefix, self._proposal_counter)

    def _propose_to(self, node: SimNode, data: bytes) -> None:
        assert node.raft is not None
        try:
            node.raft.propose(data)
        except ProposalDropped:  # includes NotLeader; the client would retry elsewhere
            return
        if not node.app.validate(data):
            raise AssertionError(f"leader {node.node_id} accepted invalid proposal {data!r}")
        self._stats.proposals_accepted += 1
        self._drive(node, chaos=False)

    # --- NodeEnvironment ---------------------------------------------------

    def send(self, message: Message) -> None:
        self._network.send(message, self._now)

    def applied(self, node: SimNode, entry: Entry) -> None:
        self._invariants.on_applied(node, entry)
        if self._heal_probe_index is None and entry.data in self._heal_probes:
            self._heal_probe_index = entry.index

    def caught_up(self, node: SimNode, index: int) -> None:
        self._invariants.on_caught_up(node, index)
        self._stats.catch_ups += 1

    def catch_up_donor(self, node_id: str) -> ReplicatedApp | None:
        donor = self._nodes[node_id]
        return donor.app if donor.is_up else None

    # --- helpers ----------------------------------------------------------------

    def _shuffled_up_nodes(self) -> list[SimNode]:
        """Nodes that run: up and not paused."""
        nodes = [n for n in self._nodes.values() if n.is_up and n.node_id not in self._paused]
        self._rng.shuffle(nodes)
        return nodes


def _replay_command(seed: int, node_count: int | None, chaos_ticks: int) -> str:
    command = f"python -m tests.sim --seed {seed}"
    if node_count is not None:
        command += f" --nodes {node_count}"
    if chaos_ticks != DEFAULT_CHAOS_TICKS:
        command += f" --steps {chaos_ticks}"
    return command
