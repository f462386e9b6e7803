"""Ledger-level simulation runs (tests.sim.ledger_sim): the real replica on every node under
crashes (also inside the Ready contract), disk loss, partitions and a faulty network.
NANUM_LEDGER_SIM_SEEDS sets how many seeds run (default 500). A failure names its seed and the
command that replays it: python -m tests.sim --ledger --seed N."""

from __future__ import annotations

import os
import random

import pytest

from ledger.encoding import decode
from ledger.tx import Deposit, DepositKind, RegisterMember
from node.raft import MemoryRaftStorage
from node.replica import COMPACTION_STEP_ENTRIES, LOG_RETENTION_ENTRIES, Replica, ReplicaOptions
from tests.consortium import GENESIS_TIME_MS
from tests.sim import SimulationFailure
from tests.sim.ledger_sim import LedgerInvariants, LedgerSimNode, LedgerSimulation

SEED_COUNT = int(os.environ.get("NANUM_LEDGER_SIM_SEEDS", "500"))


@pytest.mark.parametrize("seed", range(SEED_COUNT))
def test_simulated_consortium_agrees_certifies_and_recovers(seed: int) -> None:
    LedgerSimulation(seed).run()


def test_a_ledger_seed_replays_exactly() -> None:
    first, second = LedgerSimulation(5), LedgerSimulation(5)
    assert first.run() == second.run()
    assert first._invariants.hash_at == second._invariants.hash_at


def test_a_ledger_failure_names_its_seed_and_replay_command(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self, nodes, latest_time_ms) -> None:
        raise AssertionError("planted")

    monkeypatch.setattr(LedgerInvariants, "check", broken)
    with pytest.raises(SimulationFailure, match=r"seed=3 .*planted[\s\S]*replay: python -m tests.sim --ledger --seed 3$"):
        LedgerSimulation(3).run()


class _Cluster:
    """Three replicas wired directly (no faults): for the catch-up story below."""

    def __init__(self) -> None:
        sim = LedgerSimulation(0, node_count=3)     # borrows its consortium and node set-up
        self.consortium = sim.consortium
        self.nodes = [LedgerSimNode(k, self.consortium.genesis_raw) for k in self.consortium.nodes]
        self.rng = random.Random(1)
        for node in self.nodes:
            self.start(node)

    def start(self, node: LedgerSimNode) -> None:
        node.replica = Replica(node.key, node.ledger, node.storage, self.rng,
                               ReplicaOptions(can_vote=not node.lost_disk), clock_ms=lambda: GENESIS_TIME_MS)

    def pump(self, ticks: int) -> None:
        by_id = {n.node_id: n for n in self.nodes}
        for _ in range(ticks):
            for node in self.nodes:
                if node.replica is not None:
                    node.replica.tick()
            moved = True
            while moved:
                moved = False
                for node in self.nodes:
                    if node.replica is None:
                        continue
                    for message in node.replica.take().messages:
                        target = by_id[message.recipient]
                        if target.replica is not None:
                            target.replica.receive(message)
                            moved = True

    def leader(self) -> LedgerSimNode:
        return next(n for n in self.nodes if n.replica is not None and n.replica.is_leader)


def _deposits_while_a_node_is_down(cluster: _Cluster, name: str, deposits: int):
    """Registers a member, takes a follower down, and commits ``deposits`` deposits of one
    point; returns (leader, the node that is down, the member)."""
    cluster.pump(40)
    c = cluster.consortium
    member = c.member(name)
    leader = cluster.leader()
    leader.replica.propose([leader.replica.admit(c.register(member).raw)], GENESIS_TIME_MS + 1)
    victim = next(n for n in cluster.nodes if n is not leader)
    victim.replica = None                                   # down, then its disk is lost
    for i in range(deposits):
        leader = cluster.leader()
        leader.replica.propose([leader.replica.admit(c.deposit(member, 1).raw)], GENESIS_TIME_MS + 10 + i)
        cluster.pump(1)
    cluster.pump(20)
    return leader, victim, member


def _wipe_and_rejoin(cluster: _Cluster, victim, leader) -> None:
    victim.lose_disk()
    victim.storage = MemoryRaftStorage()
    cluster.start(victim)
    for _ in range(200):
        cluster.pump(1)
        if victim.replica.certified_height == leader.replica.certified_height:
            break


def test_a_node_that_lost_its_disk_catches_up_with_certified_blocks() -> None:
    cluster = _Cluster()
    deposits = LOG_RETENTION_ENTRIES + COMPACTION_STEP_ENTRIES + 40    # enough to compact the leader's log
    leader, victim, member = _deposits_while_a_node_is_down(cluster, "catch-up", deposits)
    assert leader.storage.first_index() > 1, "the leader's log was not compacted"
    _wipe_and_rejoin(cluster, victim, leader)
    # Its consensus log starts after the fetched blocks: it caught up by blocks, not by log replay.
    assert victim.storage.first_index() > 1, "the wiped node never needed catch-up: the test proves nothing"
    assert victim.replica.height == leader.replica.height
    assert victim.ledger.store.head().hash == leader.ledger.store.head().hash
    assert victim.ledger.balance(member.party_id)[0] == deposits


def test_the_consensus_log_is_bounded_in_bytes_as_well_as_entries(monkeypatch) -> None:
    """Fewer entries than LOG_RETENTION_ENTRIES, but more bytes than LOG_RETENTION_BYTES: the
    log is compacted on bytes, keeps at most the byte budget of applied entries (plus what is
    not yet certified), and a node that lost its disk still catches up."""
    from node import replica as replica_module
    budget = 4096
    monkeypatch.setattr(replica_module, "LOG_RETENTION_BYTES", budget)
    cluster = _Cluster()
    deposits = 60
    assert deposits < LOG_RETENTION_ENTRIES, "the entry bound alone would not compact"
    leader, victim, member = _deposits_while_a_node_is_down(cluster, "bytes", deposits)
    storage = leader.storage
    assert storage.first_index() > 1, "the log was not compacted on bytes"
    kept = storage.entries(storage.first_index(), storage.last_index() + 1)
    assert sum(len(e.data) for e in kept) <= 2 * budget + max(len(e.data) for e in kept)
    _wipe_and_rejoin(cluster, victim, leader)
    assert victim.ledger.balance(member.party_id)[0] == deposits


def test_a_certificate_rides_with_the_next_block_or_is_saved_within_a_few_ticks() -> None:
    """Completed certificates are staged: written in the next block's transaction when one
    follows, else by themselves after CERTIFICATE_SAVE_TICKS; readers see them meanwhile."""
    from node import replica as replica_module
    cluster = _Cluster()
    cluster.pump(40)
    c = cluster.consortium
    member = c.member("staged")
    leader = cluster.leader()
    store = leader.ledger.store
    saves = []
    original = store.put_certificates
    store.put_certificates = lambda certificates, meta=None: (saves.append(sorted(certificates)),
                                                               original(certificates, meta))
    leader.replica.propose([leader.replica.admit(c.register(member).raw)], GENESIS_TIME_MS + 1)
    height = leader.replica.height + 1
    for _ in range(20):                                       # until the followers' endorsements came
        cluster.pump(1)
        if leader.replica.certified_height == height:
            break
    assert leader.replica.certified_height == height
    assert leader.replica.certificate(height) is not None        # served while staged
    assert store.certificate(height) is None and saves == []
    # A block follows: the staged certificate is written in its transaction, not on its own.
    leader.replica.propose([leader.replica.admit(c.deposit(member, 1).raw)], GENESIS_TIME_MS + 2)
    cluster.pump(1)
    assert leader.replica.height == height + 1
    assert store.certificate(height) is not None and saves == []
    # No block follows: the next certificate is saved alone within CERTIFICATE_SAVE_TICKS ticks.
    for _ in range(20):
        if leader.replica.certified_height == height + 1:
            break
        cluster.pump(1)
    assert store.certificate(height + 1) is None
    cluster.pump(replica_module.CERTIFICATE_SAVE_TICKS)
    assert store.certificate(height + 1) is not None and saves == [[height + 1]]
    assert decode(store.meta(replica_module.META_CERTIFIED)) == height + 1


def test_a_failed_certificate_write_keeps_the_certificates_staged() -> None:
    """A write that fails (a full store) must not lose staged certificates from memory."""
    from ledger.store import StoreFull
    cluster = _Cluster()
    cluster.pump(40)
    c = cluster.consortium
    leader = cluster.leader()
    leader.replica.propose([leader.replica.admit(c.register(c.member("full")).raw)], GENESIS_TIME_MS + 1)
    height = leader.replica.height + 1
    for _ in range(20):
        cluster.pump(1)
        if leader.replica.certified_height == height:
            break
    store = leader.ledger.store
    assert store.certificate(height) is None and leader.replica.certificate(height) is not None
    original = store.put_certificates

    def full(certificates, meta=None):
        raise StoreFull("the store is full")
    store.put_certificates = full
    with pytest.raises(StoreFull):
        leader.replica.save_certificates()
    assert leader.replica.certificate(height) is not None      # still staged, still served
    store.put_certificates = original
    leader.replica.save_certificates()
    assert store.certificate(height) is not None


def test_a_catch_up_install_that_fails_to_store_leaves_nothing_counted_as_certified() -> None:
    """A node catching up whose block write fails (a full store) must not count that height as
    certified, nor store a certified height beyond its stored blocks and certificates."""
    from node import replica as replica_module
    from ledger.store import StoreFull
    cluster = _Cluster()
    deposits = LOG_RETENTION_ENTRIES + COMPACTION_STEP_ENTRIES + 40    # the leader compacts
    leader, victim, _member = _deposits_while_a_node_is_down(cluster, "install", deposits)
    victim.lose_disk()
    victim.storage = MemoryRaftStorage()
    cluster.start(victim)
    store = victim.ledger.store

    def full(*args, **kwargs):
        raise StoreFull("the store is full")
    real_commit, store.commit_block = store.commit_block, full
    failures = 0
    for _ in range(40):
        try:
            cluster.pump(1)
        except StoreFull:
            failures += 1
    assert failures > 0, "the catch-up never tried to store a block: the test proves nothing"
    assert victim.replica.certified_height <= victim.ledger.height
    stored = store.meta(replica_module.META_CERTIFIED)
    through = decode(stored) if stored else 0
    assert through <= victim.ledger.height
    assert all(store.certificate(h) is not None for h in range(1, through + 1))
    store.commit_block = real_commit                 # space again: it catches up after all
    for _ in range(200):
        cluster.pump(1)
        if victim.replica.certified_height == leader.replica.certified_height:
            break
    assert victim.replica.certified_height == leader.replica.certified_height


def _catching_up_with_its_requests_lost(name: str):
    """A wiped node that has been told to catch up, every block request it sent lost."""
    from node.codec import BlocksRequest
    cluster = _Cluster()
    deposits = LOG_RETENTION_ENTRIES + COMPACTION_STEP_ENTRIES + 40
    leader, victim, _ = _deposits_while_a_node_is_down(cluster, name, deposits)
    victim.lose_disk()
    victim.storage = MemoryRaftStorage()
    cluster.start(victim)
    by_id = {n.node_id: n for n in cluster.nodes}
    for _ in range(100):                                # as pump(), but the victim's block requests are lost
        for node in cluster.nodes:
            node.replica.tick()
        moved = True
        while moved:
            moved = False
            for node in cluster.nodes:
                for message in node.replica.take().messages:
                    if not isinstance(message, BlocksRequest):
                        by_id[message.recipient].replica.receive(message)
                        moved = True
        if victim.replica.catching_up:
            break
    assert victim.replica.catching_up
    victim.replica.take()
    return cluster, leader, victim


def test_a_node_catching_up_asks_again_only_after_the_catch_up_retry_interval() -> None:
    """An answer can take a while to verify and install; asking again every RETRY_TICKS made
    the serving node send the same megabyte several times over. A request that goes unanswered
    is repeated after CATCH_UP_RETRY_TICKS."""
    from node.codec import BlocksRequest
    from node.replica import CATCH_UP_RETRY_TICKS, RETRY_TICKS
    _, _, victim = _catching_up_with_its_requests_lost("retry")
    asked_at = []
    for tick in range(1, 3 * CATCH_UP_RETRY_TICKS + 1):
        victim.replica.tick()
        if any(isinstance(m, BlocksRequest) for m in victim.replica.take().messages):
            asked_at.append(tick)
    assert CATCH_UP_RETRY_TICKS > RETRY_TICKS and len(asked_at) >= 2, asked_at
    gaps = [b - a for a, b in zip(asked_at, asked_at[1:])]
    assert all(CATCH_UP_RETRY_TICKS <= gap <= CATCH_UP_RETRY_TICKS + RETRY_TICKS for gap in gaps), asked_at


def _answer(leader, victim, first: int, count: int = 1):
    from node.codec import BlocksResponse
    heights = range(first, first + count)
    return BlocksResponse(leader.node_id, victim.node_id,
                          tuple((leader.ledger.block(h), leader.replica.certificate(h)) for h in heights),
                          1, 1, tuple((1, 1) for _ in heights))


def _asked(replica) -> list[int]:
    from node.codec import BlocksRequest
    return [m.from_height for m in replica.take().messages if isinstance(m, BlocksRequest)]


def test_an_arriving_answer_asks_for_the_next_only_for_the_newest_request_and_within_the_bound() -> None:
    """Replica.request_ahead, called by the runtime when an answer arrives (before verifying
    and installing it): the answer to the newest request asks for the blocks after it, up to
    CATCH_UP_AHEAD_ANSWERS answers not yet installed; a retry starts over from the head."""
    from node.replica import CATCH_UP_AHEAD_ANSWERS, CATCH_UP_RETRY_TICKS
    _, leader, victim = _catching_up_with_its_requests_lost("ahead")
    replica = victim.replica
    assert replica.height == 0 and CATCH_UP_AHEAD_ANSWERS == 2
    replica.request_ahead(_answer(leader, victim, 1, 2), 1)
    assert _asked(replica) == [3]
    replica.request_ahead(_answer(leader, victim, 1, 2), 1)           # the same answer again
    replica.request_ahead(_answer(leader, victim, 5, 1), 5)           # not the newest request's
    replica.request_ahead(_answer(leader, victim, 3, 1), None)        # no readable first height
    assert _asked(replica) == []
    replica.request_ahead(_answer(leader, victim, 3, 2), 3)
    assert _asked(replica) == [5]
    replica.request_ahead(_answer(leader, victim, 5, 1), 5)           # two answers wait already
    assert _asked(replica) == []
    for _ in range(CATCH_UP_RETRY_TICKS + 10):                        # nothing came: ask again
        replica.tick()
    assert _asked(replica) == [1]
    replica.request_ahead(_answer(leader, victim, 1, 1), 1)
    assert _asked(replica) == [2]


def test_a_node_catching_up_asks_for_the_next_answer_before_installing_one(monkeypatch) -> None:
    """Over a whole catch-up (one block per answer here): each answer but the last is installed
    with the next one already asked for, and no range is asked for twice."""
    from node import replica as replica_module
    monkeypatch.setattr(replica_module, "MAX_CATCH_UP_BYTES", 16)      # one block per answer
    cluster = _Cluster()
    deposits = LOG_RETENTION_ENTRIES + COMPACTION_STEP_ENTRIES + 40
    leader, victim, member = _deposits_while_a_node_is_down(cluster, "pipelined", deposits)
    victim.lose_disk()
    victim.storage = MemoryRaftStorage()
    cluster.start(victim)
    replica, asked, ahead_at_install = victim.replica, [], []
    take, install = replica.take, replica._install

    def recording_take():
        out = take()
        asked.extend(m.from_height for m in out.messages if type(m).__name__ == "BlocksRequest")
        return out

    def recording_install(block, certificate, position):
        ahead_at_install.append(replica._blocks_requested_from - (replica.height + 1))
        return install(block, certificate, position)
    monkeypatch.setattr(replica, "take", recording_take)
    monkeypatch.setattr(replica, "_install", recording_install)
    for _ in range(300):
        cluster.pump(1)
        if replica.certified_height == leader.replica.certified_height:
            break
    assert len(ahead_at_install) > 10, "catch-up took too few answers to test anything"
    assert len(asked) == len(set(asked)) and asked == sorted(asked), asked
    assert ahead_at_install[:-1] == [1] * (len(ahead_at_install) - 1), ahead_at_install
    assert victim.ledger.store.head().hash == leader.ledger.store.head().hash
    assert victim.ledger.balance(member.party_id)[0] == deposits


def test_a_block_larger_than_a_catch_up_response_is_still_served_alone(monkeypatch) -> None:
    """A valid block may exceed MAX_CATCH_UP_BYTES (it may be up to MAX_BLOCK_BYTES); the
    response then carries it alone instead of nothing, which would stall catch-up for good."""
    from node import replica as replica_module
    monkeypatch.setattr(replica_module, "MAX_CATCH_UP_BYTES", 16)      # every block is larger
    cluster = _Cluster()
    deposits = LOG_RETENTION_ENTRIES + COMPACTION_STEP_ENTRIES + 40
    leader, victim, member = _deposits_while_a_node_is_down(cluster, "big blocks", deposits)
    _wipe_and_rejoin(cluster, victim, leader)
    assert victim.storage.first_index() > 1, "the wiped node never needed catch-up: the test proves nothing"
    assert victim.ledger.store.head().hash == leader.ledger.store.head().hash
    assert victim.ledger.balance(member.party_id)[0] == deposits


@pytest.mark.parametrize("crash_after", [1, 3, 7])
def test_a_node_that_crashes_while_catching_up_restarts_and_finishes(monkeypatch, crash_after) -> None:
    """Catch-up spans many responses (one block each here); the node crashes after storing
    ``crash_after`` blocks, before its consensus log was restored. It must start again (its log
    restarts right after the last block it holds), never re-apply an entry whose block it has,
    and end with the leader's chain."""
    from node import replica as replica_module
    monkeypatch.setattr(replica_module, "MAX_CATCH_UP_BYTES", 16)      # one block per response
    cluster = _Cluster()
    deposits = LOG_RETENTION_ENTRIES + COMPACTION_STEP_ENTRIES + 40
    leader, victim, member = _deposits_while_a_node_is_down(cluster, f"crash {crash_after}", deposits)
    victim.lose_disk()
    victim.storage = MemoryRaftStorage()
    cluster.start(victim)
    stored = []
    commit = victim.ledger.commit

    def crashing_commit(executed, *args, **kwargs):
        if len(stored) == crash_after:
            raise RuntimeError("simulated crash")
        commit(executed, *args, **kwargs)
        stored.append(executed.block.header.height)
    monkeypatch.setattr(victim.ledger, "commit", crashing_commit)
    with pytest.raises(RuntimeError, match="simulated crash"):
        cluster.pump(200)
    assert len(stored) == crash_after and victim.replica.catching_up, "the crash was not mid-catch-up"
    monkeypatch.setattr(victim.ledger, "commit", commit)
    victim.replica = None                                   # crashed; its disk (ledger, log) stays
    cluster.start(victim)                                   # used to fail: applied beyond the log
    for _ in range(300):
        cluster.pump(1)
        if victim.replica.certified_height == leader.replica.certified_height:
            break
    assert victim.ledger.store.head().hash == leader.ledger.store.head().hash
    assert victim.ledger.balance(member.party_id)[0] == deposits


def test_a_wiped_node_catches_up_under_load_while_the_leader_compacts_on(monkeypatch) -> None:
    """Issue 16, defect 3. A wiped node catching up over many answers (one block each, one
    answer installed per tick, as a slow install does) while the leader keeps committing and
    compacting: its heartbeats made the catching-up node process Readies, and its compaction,
    computed from the certified blocks it had installed beyond its short log, raised
    ``IndexError: compact at N beyond last index M``, every time. It must reach the leader."""
    from node import replica as replica_module
    from node.codec import BlocksResponse
    monkeypatch.setattr(replica_module, "MAX_CATCH_UP_BYTES", 16)      # one block per answer
    cluster = _Cluster()
    c = cluster.consortium
    # Far enough behind that what it installs before reaching the leader's log is more than
    # LOG_RETENTION_ENTRIES + COMPACTION_STEP_ENTRIES entries: its compaction point then lies
    # beyond its own (empty) log.
    deposits = 3 * (LOG_RETENTION_ENTRIES + COMPACTION_STEP_ENTRIES)
    leader, victim, member = _deposits_while_a_node_is_down(cluster, "under load", deposits)
    victim.lose_disk()
    victim.storage = MemoryRaftStorage()
    cluster.start(victim)
    by_id = {n.node_id: n for n in cluster.nodes}
    slow: list = []                                 # answers on their way to the victim
    caught_up_at = None
    for tick in range(3_000):
        leader = cluster.leader()
        if tick % 3 == 0:                           # the load: a block every third tick
            # (batch times stay within MAX_BLOCK_TIME_SKEW_MS of the nodes' clock, GENESIS_TIME_MS)
            deposit = leader.replica.admit(c.deposit(member, 1).raw)
            leader.replica.propose([deposit], GENESIS_TIME_MS + 1_000 + tick // 3)
            deposits += 1
        if slow:
            victim.replica.receive(slow.pop(0))     # one install per tick
        for node in cluster.nodes:
            node.replica.tick()
        moved = True
        while moved:
            moved = False
            for node in cluster.nodes:
                for message in node.replica.take().messages:
                    if isinstance(message, BlocksResponse) and message.recipient == victim.node_id:
                        slow.append(message)
                    else:
                        by_id[message.recipient].replica.receive(message)
                        moved = True
        if not victim.replica.catching_up and victim.replica.height >= leader.replica.height - 1:
            caught_up_at = tick
            break
    assert victim.storage.first_index() > 1, "the wiped node never needed catch-up: the test proves nothing"
    assert caught_up_at is not None, (victim.replica.height, leader.replica.height)
    for _ in range(20):
        cluster.pump(1)
    assert victim.ledger.store.head().hash == leader.ledger.store.head().hash
    assert victim.ledger.balance(member.party_id)[0] == deposits
