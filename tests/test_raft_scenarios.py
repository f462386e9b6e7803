"""Scenario tests, written as stories on a hand-controlled cluster
(tests.sim.story). Every tick also runs the simulator's safety checks."""

from __future__ import annotations

from node.raft import AppendEntries, ProposalDropped, Role
from tests.sim.story import StoryCluster

ELECTION_TICK = 10


def followers(cluster: StoryCluster, leader: str) -> list[str]:
    return [n for n in cluster.ids if n != leader]


def applied_everywhere(cluster: StoryCluster, data: bytes) -> bool:
    return all(data in cluster.applied_data(n) for n in cluster.ids if cluster.nodes[n].is_up)


def test_the_leader_crashes_mid_replication_and_the_entry_on_a_majority_survives() -> None:
    cluster = StoryCluster(3, seed=1)
    leader = cluster.elect()
    near, far = followers(cluster, leader)

    # "b" reaches the near follower only; the leader dies before hearing the ack.
    cluster.cut(leader, far)
    cluster.propose(leader, b"b")
    cluster.run(1)
    cluster.crash(leader)
    cluster.heal()

    # Only the near follower can win (the far one's log is behind), and it
    # commits "b" with the NOOP of its new term.
    assert cluster.elect() == near
    cluster.run_until(lambda: applied_everywhere(cluster, b"b"))
    cluster.restart(leader)
    cluster.run_until(lambda: cluster.applied_data(leader) == [b"b"])


def test_a_partitioned_old_leader_accepts_proposals_but_never_commits_them() -> None:
    cluster = StoryCluster(5, seed=2)
    old = cluster.elect()
    cluster.propose(old, b"before")
    cluster.run_until(lambda: applied_everywhere(cluster, b"before"))

    cluster.isolate(old)
    stranded = [cluster.propose(old, b"stranded-%d" % n) for n in range(3)]
    new = cluster.run_until(lambda: cluster.leader() not in (None, old)) and cluster.leader()
    assert new is not None
    cluster.propose(new, b"after")
    cluster.run_until(lambda: b"after" in cluster.applied_data(new))

    old_raft = cluster.raft(old)
    assert old_raft.commit_index < min(stranded)
    assert old_raft.role is Role.FOLLOWER, "CheckQuorum deposed it: it heard from no quorum"

    cluster.heal()
    cluster.run_until(lambda: applied_everywhere(cluster, b"after"))
    for node in cluster.ids:
        assert cluster.applied_data(node) == [b"before", b"after"]


def rejoin_after_isolation(pre_vote: bool) -> tuple[StoryCluster, str, int]:
    cluster = StoryCluster(3, seed=3, pre_vote=pre_vote)
    leader = cluster.elect()
    term = cluster.raft(leader).term
    loner = followers(cluster, leader)[0]
    cluster.isolate(loner)
    cluster.run(10 * ELECTION_TICK)
    cluster.heal()
    cluster.run(5 * ELECTION_TICK)
    return cluster, leader, term


def test_pre_vote_keeps_a_rejoining_node_from_disrupting_the_cluster() -> None:
    # Isolated, the loner kept timing out; its pre-votes reached nobody, so it
    # never raised its term and rejoins as a plain follower.
    cluster, leader, term = rejoin_after_isolation(pre_vote=True)
    assert cluster.leader() == leader
    assert {cluster.raft(n).term for n in cluster.ids} == {term}


def test_without_pre_vote_the_same_rejoin_deposes_the_leader() -> None:
    # The contrast: each timeout raised the loner's term, and on rejoining it
    # forces the leader out (it answers heartbeats with its higher term).
    cluster, leader, term = rejoin_after_isolation(pre_vote=False)
    assert cluster.raft(leader).term > term + 5


def test_a_follower_that_crashes_right_after_acknowledging_still_has_the_entry() -> None:
    cluster = StoryCluster(3, seed=4)
    leader = cluster.elect()
    acker, other = followers(cluster, leader)

    cluster.cut(leader, other)
    index = cluster.propose(leader, b"acked")
    cluster.run_until(lambda: cluster.raft(leader).commit_index >= index)
    # The ack was sent only after the entry was on the acker's disk, so losing
    # both the acker's process and the leader cannot lose the entry.
    cluster.crash(acker)
    cluster.crash(leader)
    cluster.restart(acker)
    cluster.heal()
    assert cluster.elect() == acker, "the other follower lacks a committed entry and cannot win"
    cluster.run_until(lambda: b"acked" in cluster.applied_data(other))


def test_leadership_transfer_under_load() -> None:
    cluster = StoryCluster(3, seed=5, max_inflight_appends=2, max_append_entries=4)
    leader = cluster.elect()
    target = followers(cluster, leader)[0]
    term = cluster.raft(leader).term
    accepted: list[bytes] = []
    refused_during_transfer = 0

    def load(ticks: int) -> None:
        """Three proposals per tick to whoever leads now."""
        nonlocal refused_during_transfer
        for _ in range(ticks):
            current = cluster.leader()
            if current is not None:
                for n in range(3):
                    data = b"load-%d-%d" % (cluster.ticks, n)
                    try:
                        cluster.propose(current, data)
                        accepted.append(data)
                    except ProposalDropped as dropped:
                        refused_during_transfer += "transfer" in dropped.reason
            cluster.run()

    load(20)
    assert cluster.raft(target).last_index < cluster.raft(leader).last_index, "the target lags under load"
    cluster.raft(leader).transfer_leadership(target)
    for _ in range(ELECTION_TICK):
        if cluster.leader() == target:
            break
        load(1)
    assert cluster.leader() == target, "transferred within an election timeout, under load"
    assert cluster.raft(target).term == term + 1, "one election, no PreVote round, no lease wait"
    assert refused_during_transfer > 0
    load(20)
    cluster.run(ELECTION_TICK)
    committed = {e.data for e in cluster.invariants.committed.values()}
    assert set(accepted) <= committed, "the hand-over lost no accepted proposal"
    assert cluster.applied_data(leader) == cluster.applied_data(target)


def test_a_node_that_lost_its_disk_rejoins_and_catches_up_out_of_band() -> None:
    cluster = StoryCluster(3, seed=6, log_tail_entries=2)
    leader = cluster.elect()
    victim, other = followers(cluster, leader)
    for n in range(20):
        cluster.propose(leader, b"early-%d" % n)
    cluster.run_until(lambda: applied_everywhere(cluster, b"early-19"))

    cluster.lose_disk(victim)
    for n in range(10):
        cluster.propose(leader, b"late-%d" % n)
    cluster.run_until(lambda: b"late-9" in cluster.applied_data(leader))
    assert cluster.nodes[leader].storage.first_index() > 20, "the leader compacted what the victim needs"

    cluster.restart(victim)
    cluster.run_until(lambda: cluster.nodes[victim].app.applied_index == cluster.nodes[leader].app.applied_index)
    assert cluster.nodes[victim].app.digest() == cluster.nodes[leader].app.digest()
    assert cluster.nodes[victim].storage.first_index() > 20, "history came out of band, not as entries"

    # It replicates again, but it may have forgotten a vote, so it never votes:
    # without the old leader, the remaining voter cannot form a majority.
    cluster.propose(leader, b"after")
    cluster.run_until(lambda: b"after" in cluster.applied_data(victim))
    cluster.crash(leader)
    cluster.run(6 * ELECTION_TICK)
    assert cluster.leader() is None
    cluster.restart(leader)
    assert cluster.elect() in (leader, other)


def test_an_append_dropped_on_the_way_is_resent() -> None:
    cluster = StoryCluster(3, seed=7)
    leader = cluster.elect()
    victim = followers(cluster, leader)[0]
    cluster.drop = lambda m: isinstance(m, AppendEntries) and m.recipient == victim and bool(m.entries)
    cluster.propose(leader, b"x")
    cluster.run(3)
    cluster.heal()
    cluster.run_until(lambda: b"x" in cluster.applied_data(victim), max_ticks=3 * ELECTION_TICK)
