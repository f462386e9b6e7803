"""The ledger-level simulation: the real Replica (consensus core + ledger + finality + catch-up)
on every node, under the same faults as the Raft-level simulation.

Where tests.sim.simulation checks Raft with a toy app, this runs what a node runs: signed
transactions are admitted, batched, replicated, executed into blocks, stored with their
consensus index and the node's endorsement, certified, and fetched by nodes that fell behind
the compacted log. Messages go through the wire codec. Crashes can hit any step of the Ready
contract (``Replica.crash_point``); a crashed node keeps only its stores. One seed decides
everything; a failure names the seed and the replay command.

Checked after every tick:
  * at most one leader per term;
  * a height holds the same block (hash) on every node that has it, forever — so no committed
    block is lost or changed across crashes, disk loss and catch-up, and state roots agree;
  * every certificate a node stores verifies against the node set and that block's checkpoint;
  * each node's stored state vector matches its head's state root.
After healing: a fresh transaction is applied AND certified on every node within a bound, and
the whole chain of every node verifies from genesis with certificates (ledger.verify).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from ledger.block import decode_block
from ledger.certificate import Certificate
from ledger.encoding import decode
from ledger.keys import SigningKey
from ledger.ledger import Ledger
from ledger.limits import MAX_BLOCK_TIME_SKEW_MS
from ledger.tx import Deposit, DepositKind, Redeem, Refund, RegisterMember, Rejected, Reversal, make_tx
from ledger.verify import verify_chain
from ledger.voucher import sign_voucher
from node.codec import decode_message, encode_message
from node.raft import MemoryRaftStorage, NotLeader, ProposalDropped, Role
from node.replica import META_CERTIFIED, Replica, ReplicaOptions
from tests.consortium import GENESIS_TIME_MS, TestConsortium, key
from tests.sim.network import NetworkFaults, SimNetwork
from tests.sim.simulation import (
    CRASH_RATE,
    DISK_LOSS_ON_RESTART_RATE,
    PARTITION_HEAL_RATE,
    PARTITION_RATE,
    RESTART_RATE,
    TRANSFER_RATE,
    SimulationFailure,
)

DEFAULT_LEDGER_CHAOS_TICKS = 150
ELECTION_TICK = 10
TICK_MS = 50
PROPOSAL_RATE = 0.3
CRASH_IN_STEP_RATE = 0.002        # per step of the Ready contract, during chaos
# Healing needs an election, replication, a catch-up of certified blocks for a node that lost
# its disk, and the endorsement round (re-requested every RETRY_TICKS).
LIVENESS_BOUND_TICKS = 40 * ELECTION_TICK
PROBE_RETRY_TICKS = 3 * ELECTION_TICK
CRASH_STEPS = ("persist", "send", "apply", "endorse", "advance")
# Clocks: in this share of runs a minority of nodes has a wrong clock, by one of these amounts;
# every node's clock is off by up to CLOCK_JITTER_MS either way in every run.
WRONG_CLOCK_RATE = 0.3
WRONG_CLOCK_SKEWS_MS = (3_600_000, -3_600_000, 366 * 86_400_000, 3 * MAX_BLOCK_TIME_SKEW_MS,
                        -3 * MAX_BLOCK_TIME_SKEW_MS)
CLOCK_JITTER_MS = 250


class SimulatedCrash(Exception):
    pass


@dataclass
class LedgerSimNode:
    key: SigningKey
    genesis: bytes
    ledger: Ledger = None
    storage: MemoryRaftStorage = field(default_factory=MemoryRaftStorage)
    replica: Replica | None = None
    lost_disk: bool = False
    clock_skew_ms: int = 0          # this node's wall clock minus the simulation's true time

    def __post_init__(self) -> None:
        self.ledger = Ledger.in_memory(self.genesis, self.key.party_id.hex()[:8])

    @property
    def node_id(self) -> str:
        return self.key.party_id.hex()

    def lose_disk(self) -> None:
        assert self.replica is None
        self.ledger = Ledger.in_memory(self.genesis, self.node_id[:8])
        self.storage = MemoryRaftStorage()
        self.lost_disk = True


class Workload:
    """Signed transactions drawn from the run's rng: registrations, deposits, vouchers and
    redemptions, refunds, reversals, resubmissions, and some with broken signatures."""

    def __init__(self, consortium: TestConsortium, rng: random.Random) -> None:
        self._c, self._rng = consortium, rng
        self._members: list[SigningKey] = []
        self._sent: list = []
        self._deposits: list[bytes] = []
        self._redemptions: list[bytes] = []

    def next(self, now_ms: int) -> bytes:
        rng, c = self._rng, self._c
        roll = rng.random()
        if not self._members or roll < 0.15:
            member = SigningKey.from_seed(rng.randbytes(32))
            self._members.append(member)
            tx = make_tx(c.centres[rng.randrange(2)], c.chain_id, rng.randbytes(16), RegisterMember(member.public_key))
        elif roll < 0.5:
            member = rng.choice(self._members)
            tx = make_tx(c.centres[rng.randrange(2)], c.chain_id, rng.randbytes(16),
                         Deposit(member.party_id, rng.randint(1, 50), DepositKind.OTHER, 0, "sim", 0))
            self._deposits.append(tx.tx_id)
        elif roll < 0.7:
            member = rng.choice(self._members)
            voucher = sign_voucher(member, c.chain_id, c.partners[0].party_id, 40, rng.randbytes(16),
                                   now_ms + rng.choice((-1000, 60_000)))
            tx = make_tx(c.partners[0], c.chain_id, rng.randbytes(16), Redeem(voucher, rng.randint(1, 40), ""))
            self._redemptions.append(tx.tx_id)
        elif roll < 0.78 and self._redemptions:
            tx = make_tx(c.partners[0], c.chain_id, rng.randbytes(16),
                         Refund(rng.choice(self._redemptions), rng.randint(1, 20), ""))
        elif roll < 0.85 and self._deposits:
            tx = make_tx(c.centres[rng.randrange(2)], c.chain_id, rng.randbytes(16),
                         Reversal(rng.choice(self._deposits), "sim"))
        elif roll < 0.93 and self._sent:
            return rng.choice(self._sent)                       # a resubmission
        else:
            member_key = SigningKey.from_seed(rng.randbytes(32)).public_key   # passes the key rule
            good = make_tx(c.centres[0], c.chain_id, rng.randbytes(16), RegisterMember(member_key))
            return good.raw[:-70] + bytes(64) + good.raw[-6:]   # a broken signature
        self._sent.append(tx.raw)
        return tx.raw


class LedgerInvariants:
    def __init__(self, node_set: frozenset[bytes]) -> None:
        self._node_set = node_set
        self._leader_by_term: dict[int, str] = {}
        self.hash_at: dict[int, bytes] = {}
        self._checked_height: dict[str, int] = {}
        self._checked_certificate: dict[str, int] = {}

    def forget(self, node: LedgerSimNode) -> None:
        self._checked_height[node.node_id] = 0
        self._checked_certificate[node.node_id] = 0

    def check(self, nodes: list[LedgerSimNode], latest_time_ms: int) -> None:
        """``latest_time_ms``: no block may be stamped later than this (block time is bounded by
        the consortium's clocks, a majority of which are right)."""
        for node in nodes:
            self._check_leader(node)
            self._check_blocks(node, latest_time_ms)
            self._check_certificates(node)

    def _check_leader(self, node: LedgerSimNode) -> None:
        replica = node.replica
        if replica is None or replica.raft.role is not Role.LEADER:
            return
        known = self._leader_by_term.setdefault(replica.raft.term, node.node_id)
        if known != node.node_id:
            raise AssertionError(f"two leaders in term {replica.raft.term}: {known[:8]} and {node.node_id[:8]}")

    def _check_blocks(self, node: LedgerSimNode, latest_time_ms: int) -> None:
        store = node.ledger.store
        height = store.height()
        for h in range(self._checked_height.get(node.node_id, 0) + 1, height + 1):
            block = decode_block(store.block(h))
            block_hash = block.hash
            if h not in self.hash_at and block.header.time_ms > latest_time_ms:
                raise AssertionError(f"block {h} is stamped {block.header.time_ms - latest_time_ms} ms "
                                     f"past the latest time a majority's clocks allow")
            known = self.hash_at.setdefault(h, block_hash)
            if known != block_hash:
                raise AssertionError(f"node {node.node_id[:8]} holds another block at height {h}")
        self._checked_height[node.node_id] = height
        head = store.head()
        if head.commitment.root() != head.header.state_root:
            raise AssertionError(f"node {node.node_id[:8]}: stored state vector differs from its head's root")

    def _check_certificates(self, node: LedgerSimNode) -> None:
        store = node.ledger.store
        for h in range(self._checked_certificate.get(node.node_id, 0) + 1, store.height() + 1):
            raw = store.certificate(h)
            if raw is None:
                continue
            header = decode_block(store.block(h)).header
            Certificate.decode(raw).verify(header, self._node_set)
            self._checked_certificate[node.node_id] = h


class LedgerSimulation:
    def __init__(self, seed: int, *, node_count: int | None = None,
                 chaos_ticks: int = DEFAULT_LEDGER_CHAOS_TICKS) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        rng = self._rng
        self.node_count = node_count or rng.choice((3, 5))
        self.chaos_ticks = chaos_ticks
        self._replay = f"python -m tests.sim --ledger --seed {seed}" + (f" --nodes {node_count}" if node_count else "")
        self.consortium = TestConsortium(nodes=[key(f"node{i}") for i in range(self.node_count)])
        self._network = SimNetwork(rng, NetworkFaults(drop_rate=rng.choice((0.0, 0.02, 0.1)),
                                                      duplicate_rate=rng.choice((0.0, 0.02)),
                                                      max_delay_ticks=rng.randint(1, 3)))
        self._options = ReplicaOptions(election_tick=ELECTION_TICK, max_append_entries=rng.randint(1, 8),
                                       max_inflight_appends=rng.randint(1, 4))
        self._turbulence = rng.choice((0.5, 1.0, 2.0))
        self._max_disk_losses = (self.node_count - 1) // 2
        self._disk_losses = 0
        self._now = 0
        self._chaos = True
        self.nodes = {n.node_id: n for n in (LedgerSimNode(k, self.consortium.genesis_raw)
                                             for k in self.consortium.nodes)}
        self._set_clocks(random.Random(f"clocks-{seed}"))
        # Liveness needs a majority of nodes that can vote and share the right time: a node with
        # a wrong clock counts against the same minority as one that lost its disk.
        self._max_disk_losses -= self.wrong_clocks
        self._invariants = LedgerInvariants(frozenset(k.public_key for k in self.consortium.nodes))
        self._workload = Workload(self.consortium, rng)
        self.stats = {"crashes": 0, "disk_losses": 0, "blocks": 0, "heal_ticks": 0}
        for node in self.nodes.values():
            self._start(node)

    def _set_clocks(self, rng: random.Random) -> None:
        """Clocks come from their own stream of the seed, so that adding them left every other
        choice of a seed as it was. At most a minority of nodes has a wrong clock."""
        nodes = list(self.nodes.values())
        for node in nodes:
            node.clock_skew_ms = rng.randint(-CLOCK_JITTER_MS, CLOCK_JITTER_MS)
        if rng.random() < WRONG_CLOCK_RATE:
            for node in rng.sample(nodes, rng.randint(1, (len(nodes) - 1) // 2)):
                node.clock_skew_ms = rng.choice(WRONG_CLOCK_SKEWS_MS)
        self.wrong_clocks = sum(abs(n.clock_skew_ms) > CLOCK_JITTER_MS for n in nodes)

    # --- running -----------------------------------------------------------------------------

    def run(self) -> dict:
        try:
            for _ in range(self.chaos_ticks):
                self._step()
            self._heal()
            self._await_liveness()
            self._verify_chains()
        except Exception as error:
            raise SimulationFailure(f"seed={self.seed} (ledger simulation, {self.node_count} nodes) failed at "
                                    f"tick {self._now}: {type(error).__name__}: {error}\n"
                                    f"replay: {self._replay}") from error
        self.stats["blocks"] = len(self._invariants.hash_at)
        self.stats["wrong_clocks"] = self.wrong_clocks
        return self.stats

    def _step(self) -> None:
        self._now += 1
        if self._chaos:
            self._inject_faults()
            if self._rng.random() < PROPOSAL_RATE:
                self._propose(self._workload.next(self._time_ms()))
        for message in self._network.arrivals(self._now):
            node = self.nodes[message.recipient]
            self._call(node, lambda r, m=message: r.receive(decode_message(encode_message(m))))
        for node in self._shuffled_up():
            self._call(node, lambda r: r.tick())
        self._invariants.check(list(self.nodes.values()), self._time_ms() + MAX_BLOCK_TIME_SKEW_MS + CLOCK_JITTER_MS)

    def _call(self, node: LedgerSimNode, action) -> None:
        """Runs one input on a node's replica and routes its output; a crash drops the replica
        and everything it had not handed over."""
        if node.replica is None:
            return
        try:
            action(node.replica)
        except SimulatedCrash:
            node.replica = None
            self.stats["crashes"] += 1
            return
        for message in node.replica.take().messages:
            self._network.send(message, self._now)

    def _time_ms(self) -> int:
        """The true time; each node's clock is this plus its skew (``_clock_ms``)."""
        return GENESIS_TIME_MS + self._now * TICK_MS

    def _clock_ms(self, node: LedgerSimNode) -> int:
        return self._time_ms() + node.clock_skew_ms

    # --- faults --------------------------------------------------------------------------------

    def _start(self, node: LedgerSimNode) -> None:
        node.replica = Replica(node.key, node.ledger, node.storage, self._rng, self._replica_options(node),
                               clock_ms=lambda: self._clock_ms(node))
        node.replica.crash_point = self._crash_point

    def _replica_options(self, node: LedgerSimNode) -> ReplicaOptions:
        """A node that lost its disk may have forgotten a vote: it never votes again."""
        o = self._options
        return ReplicaOptions(election_tick=o.election_tick, heartbeat_tick=o.heartbeat_tick,
                              max_append_entries=o.max_append_entries, max_inflight_appends=o.max_inflight_appends,
                              max_uncommitted_entries=o.max_uncommitted_entries, can_vote=not node.lost_disk)

    def _crash_point(self, step: str) -> None:
        if self._chaos and self._rng.random() < CRASH_IN_STEP_RATE * self._turbulence:
            raise SimulatedCrash(step)

    def _inject_faults(self) -> None:
        rng = self._rng
        up = self._shuffled_up()
        if up and rng.random() < CRASH_RATE * self._turbulence:
            up[0].replica = None
            self.stats["crashes"] += 1
        for node in self.nodes.values():
            if node.replica is None and rng.random() < RESTART_RATE:
                self._restart(node)
        if rng.random() < PARTITION_RATE * self._turbulence:
            ids = list(self.nodes)
            side = set(rng.sample(ids, rng.randint(1, len(ids) - 1)))
            directed = rng.random() < 0.5
            for a in ids:
                for b in ids:
                    if (a in side) != (b in side) and (not directed or a in side):
                        self._network.cut(a, b)
        elif self._network.partitioned and rng.random() < PARTITION_HEAL_RATE:
            self._network.heal()
        if rng.random() < TRANSFER_RATE * self._turbulence:
            leader = next((n for n in self._shuffled_up() if n.replica.is_leader), None)
            if leader is not None:
                target = rng.choice([i for i in self.nodes if i != leader.node_id])
                self._call(leader, lambda r: r.transfer_leadership(target))

    def _restart(self, node: LedgerSimNode) -> None:
        if self._disk_losses < self._max_disk_losses and self._rng.random() < DISK_LOSS_ON_RESTART_RATE:
            node.lose_disk()
            self._invariants.forget(node)
            self._disk_losses += 1
            self.stats["disk_losses"] += 1
        self._start(node)

    # --- clients -------------------------------------------------------------------------------

    def _propose(self, raw: bytes) -> bytes | None:
        """A client submits to a random up node and, like node.client, follows one leader hint.
        Returns the tx id if a leader accepted it."""
        up = self._shuffled_up()
        if not up:
            return None
        node = up[0]
        for _ in range(2):
            try:
                tx = node.replica.admit(raw)
                self._call(node, lambda r, n=node: r.propose([tx], self._clock_ms(n)))
                return tx.tx_id
            except Rejected:
                return None
            except NotLeader as refusal:
                hinted = self.nodes.get(refusal.leader_hint or "")
                if hinted is None or hinted.replica is None:
                    return None
                node = hinted
            except ProposalDropped:
                return None
        return None

    # --- healing and the end checks --------------------------------------------------------------

    def _heal(self) -> None:
        self._chaos = False
        self._network.heal()
        self._network.faults = NetworkFaults(max_delay_ticks=self._network.faults.max_delay_ticks)
        for node in self.nodes.values():
            if node.replica is None:
                self._start(node)

    def _await_liveness(self) -> None:
        """A client submits a fresh transaction and, like node.client, resubmits the same bytes
        (idempotent) every PROBE_RETRY_TICKS until it is applied and certified everywhere: an
        entry proposed to a leader that is then deposed may rightly be discarded."""
        healed_at = self._now
        probe = make_tx(self.consortium.centres[0], self.consortium.chain_id,
                        hashlib.sha256(b"probe%d" % self.seed).digest()[:16],
                        RegisterMember(SigningKey.from_seed(
                            hashlib.sha256(b"member%d" % self.seed).digest()).public_key)).raw
        while not self._certified_everywhere(probe):
            if (self._now - healed_at) % PROBE_RETRY_TICKS == 0:
                self._submit_to_leader(probe)
            if self._now - healed_at >= LIVENESS_BOUND_TICKS:
                state = {n.node_id[:8]: (n.replica.raft.role.value, n.replica.height, n.replica.certified_height,
                                         n.replica.catching_up) for n in self.nodes.values()}
                raise AssertionError(f"liveness: a fresh transaction was not applied and certified on every "
                                     f"node within {LIVENESS_BOUND_TICKS} ticks of healing; "
                                     f"(role, height, certified, catching up): {state}")
            self._step()
        self.stats["heal_ticks"] = self._now - healed_at
        self._check_probe_time(probe, healed_at)

    def _check_probe_time(self, probe: bytes, healed_at: int) -> None:
        """The probe was proposed after healing, and a majority's clocks are right: its block is
        stamped no earlier than the bound before the healing (the later bound is checked on every
        block, every tick)."""
        store = next(iter(self.nodes.values())).ledger.store
        time_ms = decode_block(store.block(store.tx_record(decode(probe)[3]).height)).header.time_ms
        earliest = GENESIS_TIME_MS + healed_at * TICK_MS - MAX_BLOCK_TIME_SKEW_MS - CLOCK_JITTER_MS
        if time_ms < earliest:
            raise AssertionError(f"the probe's block is stamped {earliest - time_ms} ms before the earliest "
                                 f"time a majority's clocks allowed when it was proposed")

    def _submit_to_leader(self, raw: bytes) -> None:
        for node in self._shuffled_up():
            if node.replica.is_leader:
                tx = node.replica.admit(raw)
                try:
                    self._call(node, lambda r, n=node: r.propose([tx], self._clock_ms(n)))
                except ProposalDropped:
                    pass

    def _certified_everywhere(self, raw: bytes) -> bool:
        tx_id = decode(raw)[3]
        for node in self.nodes.values():
            record = node.ledger.store.tx_record(tx_id)
            if record is None or node.replica.certified_height < record.height:
                return False
        return True

    def _verify_chains(self) -> None:
        for node in self.nodes.values():
            store = node.ledger.store
            certified = node.replica.certified_height      # certificates may still be staged
            blocks = [(store.block(h), node.replica.certificate(h)) for h in range(1, certified + 1)]
            report = verify_chain(self.consortium.genesis_raw, blocks, require_certificates=True)
            if not report.ok:
                raise AssertionError(f"node {node.node_id[:8]}'s chain does not verify: {report.problem}")
            stored = store.meta(META_CERTIFIED)              # what a crash now would leave
            for h in range(1, (decode(stored) if stored else 0) + 1):
                if store.certificate(h) is None:
                    raise AssertionError(f"node {node.node_id[:8]} stored certified height {decode(stored)} "
                                         f"without the certificate of block {h}")

    def _shuffled_up(self) -> list[LedgerSimNode]:
        up = [n for n in self.nodes.values() if n.replica is not None]
        self._rng.shuffle(up)
        return up
