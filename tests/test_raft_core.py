"""Focused tests of the Raft core, driving one node by hand (tests.sim.solo):
elections, the Figure-8 commit rule, PreVote + CheckQuorum combinations,
flow control, proposal limits, validation, catch-up and the Ready contract."""

from __future__ import annotations

import pytest

from node.raft import (
    AppendEntries,
    AppendResponse,
    CatchUp,
    CatchUpNotice,
    HardState,
    NotLeader,
    ProposalDropped,
    RaftConfig,
    Role,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from tests.sim.solo import Solo, of_type, route

ELECTION_TICK = 10


def heartbeat(leader: str, follower: str, term: int, commit: int = 0, prev: tuple[int, int] = (0, 0)) -> AppendEntries:
    return AppendEntries(leader, follower, term, prev[0], prev[1], (), commit)


def ack(follower: str, leader: str, term: int, match_index: int) -> AppendResponse:
    return AppendResponse(follower, leader, term, success=True, match_index=match_index)


# --- elections -------------------------------------------------------------------


def ticks_to_campaign(seed: int) -> int:
    solo = Solo(seed=seed)
    for elapsed in range(1, 100):
        solo.tick()
        if solo.raft.role is not Role.FOLLOWER:
            return elapsed
    raise AssertionError("never campaigned")


def test_election_timeout_is_random_in_one_to_two_election_ticks_and_reproducible() -> None:
    timeouts = [ticks_to_campaign(seed) for seed in range(60)]
    assert all(ELECTION_TICK <= t < 2 * ELECTION_TICK for t in timeouts)
    assert len(set(timeouts)) > 3, "timeouts must vary, or split votes repeat forever"
    assert timeouts == [ticks_to_campaign(seed) for seed in range(60)], "same rng seed, same timeouts"


def test_pre_vote_asks_for_the_next_term_without_taking_it() -> None:
    solo = Solo(term=5)
    sent = solo.tick_until(Role.PRE_CANDIDATE)
    requests = of_type(sent, VoteRequest)
    assert {r.recipient for r in requests} == {"n2", "n3"}
    assert all(r.pre_vote and r.term == 6 for r in requests)
    assert solo.raft.term == 5 and solo.storage.hard_state().term == 5


def test_winning_pre_vote_then_vote_makes_a_leader_that_appends_a_noop() -> None:
    solo = Solo(term=5)
    sent = solo.become_leader()
    assert solo.raft.role is Role.LEADER and solo.raft.term == 6
    assert solo.storage.hard_state().vote == "n1"
    noops = [a.entries for a in of_type(sent, AppendEntries)]
    assert noops and all(e[0].kind.value == "noop" and e[0].term == 6 for e in noops)


def test_a_rejected_pre_vote_leaves_term_and_vote_untouched() -> None:
    solo = Solo(term=2)
    sent = solo.tick_until(Role.PRE_CANDIDATE)
    for request in of_type(sent, VoteRequest):
        solo.step(VoteResponse(request.recipient, "n1", 2, granted=False, pre_vote=True))
    assert solo.raft.role is Role.FOLLOWER
    assert solo.storage.hard_state() == HardState(2, None, 0)


def test_a_vote_grant_leaves_in_the_same_ready_as_the_vote_it_persists() -> None:
    solo = Solo()
    solo.raft.step(VoteRequest("n2", "n1", 1, 0, 0, pre_vote=False))
    ready = solo.raft.ready()
    assert ready is not None
    assert ready.hard_state == HardState(term=1, vote="n2", commit=0)
    assert ready.messages == (VoteResponse("n1", "n2", 1, granted=True, pre_vote=False),)


def test_one_vote_per_term() -> None:
    solo = Solo()
    solo.step(VoteRequest("n2", "n1", 1, 0, 0, pre_vote=False))
    [answer] = solo.step(VoteRequest("n3", "n1", 1, 0, 0, pre_vote=False))
    assert not answer.granted


@pytest.mark.parametrize(
    ("last_index", "last_term", "granted"),
    [(5, 1, False), (2, 2, False), (3, 2, True), (1, 3, True)],
)
def test_votes_go_only_to_logs_at_least_as_up_to_date(last_index: int, last_term: int, granted: bool) -> None:
    solo = Solo(log_terms=[1, 1, 2], term=2)
    [answer] = solo.step(VoteRequest("n2", "n1", 3, last_index, last_term, pre_vote=False))
    assert answer.granted is granted


def test_a_node_that_lost_its_disk_never_campaigns_nor_votes() -> None:
    solo = Solo(can_vote=False)
    assert solo.tick(5 * ELECTION_TICK) == []
    [answer] = solo.step(VoteRequest("n2", "n1", 1, 0, 0, pre_vote=False))
    assert not answer.granted


# --- commit rules ----------------------------------------------------------------


def test_figure_8_entries_of_older_terms_commit_only_with_one_of_the_current_term() -> None:
    solo = Solo(log_terms=[1, 2], term=2)
    solo.become_leader()  # term 3, NOOP at index 3
    solo.step(ack("n2", "n1", 3, match_index=2))
    assert solo.raft.commit_index == 0, "index 2 is on a majority but from term 2: not committed by counting"
    solo.step(ack("n2", "n1", 3, match_index=3))
    assert solo.raft.commit_index == 3
    assert [e.index for e in solo.applied] == [1, 2, 3]


def test_a_follower_commits_only_what_the_leader_verified() -> None:
    # The follower holds a stale suffix (indices 2-3 of term 1); the leader's
    # heartbeat proves agreement only through index 1.
    solo = Solo("n2", log_terms=[1, 1, 1], term=1)
    solo.step(heartbeat("n1", "n2", 2, commit=3, prev=(1, 1)))
    assert solo.raft.commit_index == 1


def test_a_stale_shorter_append_does_not_truncate_acknowledged_entries() -> None:
    solo = Solo("n2", log_terms=[1, 1, 1], term=1)
    [answer] = solo.step(AppendEntries("n1", "n2", 1, 0, 0, tuple(solo.storage.entries(1, 2)), 0))
    assert answer.success and answer.match_index == 1
    assert solo.raft.last_index == 3


def test_a_rejection_hint_skips_a_whole_conflicting_term() -> None:
    solo = Solo("n2", log_terms=[1, 1, 3, 3, 3, 3], term=3)
    [answer] = solo.step(AppendEntries("n1", "n2", 4, 6, 2, (), 0))
    assert not answer.success and answer.rejected_index == 6 and answer.reject_hint == 2


def test_the_leader_probes_again_from_the_hint() -> None:
    solo = Solo(log_terms=[1, 1, 1, 1, 1])
    solo.become_leader()
    sent = solo.step(AppendResponse("n2", "n1", 1, success=False, rejected_index=5, reject_hint=2))
    [probe] = of_type(sent, AppendEntries, "n2")
    assert probe.prev_index == 2 and [e.index for e in probe.entries][0] == 3


# --- PreVote and CheckQuorum together -------------------------------------------


def test_a_follower_in_its_leader_lease_ignores_higher_term_votes_and_pre_votes() -> None:
    solo = Solo("n2", term=1)
    solo.step(heartbeat("n1", "n2", 1))
    assert solo.step(VoteRequest("n3", "n2", 2, 5, 1, pre_vote=True)) == []
    assert solo.step(VoteRequest("n3", "n2", 2, 5, 1, pre_vote=False)) == []
    assert solo.raft.term == 1 and solo.raft.leader == "n1"


def test_without_check_quorum_there_is_no_lease() -> None:
    solo = Solo("n2", term=1, check_quorum=False)
    solo.step(heartbeat("n1", "n2", 1))
    [answer] = solo.step(VoteRequest("n3", "n2", 2, 5, 1, pre_vote=True))
    assert answer.granted


def test_a_leadership_transfer_vote_bypasses_the_lease() -> None:
    solo = Solo("n2", term=1)
    solo.step(heartbeat("n1", "n2", 1))
    [answer] = solo.step(VoteRequest("n3", "n2", 2, 0, 0, pre_vote=False, leader_transfer=True))
    assert answer.granted and solo.raft.term == 2


def test_a_pre_candidate_drops_its_lease_so_a_better_log_can_still_win() -> None:
    # n3 lost its leader and campaigns first, with a shorter log. Its own
    # campaign must end its lease, or n2 (longer log) could never win its vote
    # until n3's lease expired, however often n2 asked.
    n3 = Solo("n3", log_terms=[1], term=1)
    n3.step(heartbeat("n1", "n3", 1, prev=(1, 1)))
    n3.tick_until(Role.PRE_CANDIDATE)
    [answer] = n3.step(VoteRequest("n2", "n3", 2, 2, 1, pre_vote=True))
    assert answer.granted and answer.term == 2 and answer.pre_vote


def test_a_pre_candidate_follows_a_leader_of_its_own_term() -> None:
    solo = Solo("n3", term=1)
    solo.tick_until(Role.PRE_CANDIDATE)
    solo.step(heartbeat("n1", "n3", 1))
    assert solo.raft.role is Role.FOLLOWER and solo.raft.leader == "n1"


def test_the_best_log_wins_even_when_it_sits_at_a_lower_term() -> None:
    # n2 and n3 reached term 5 in failed elections; n1 holds the longest log at
    # term 1. Dropping n1's lower-term pre-votes would deadlock whenever n2 and
    # n3 cannot win either; answering them with term 5 lets n1 catch up on terms.
    nodes = {
        "n1": Solo("n1", log_terms=[1, 1, 1], term=1),
        "n2": Solo("n2", log_terms=[1], term=5, seed=1),
        "n3": Solo("n3", log_terms=[1], term=5, seed=2),
    }
    route(nodes, nodes["n1"].tick_until(Role.PRE_CANDIDATE))
    assert nodes["n1"].raft.term == 5 and nodes["n1"].raft.role is Role.FOLLOWER
    route(nodes, nodes["n1"].tick_until(Role.PRE_CANDIDATE))
    assert nodes["n1"].raft.role is Role.LEADER and nodes["n1"].raft.term == 6


def test_a_node_at_a_higher_term_deposes_the_stale_leader_it_would_otherwise_ignore() -> None:
    # n3 moved to term 5 while partitioned. Its (pre-)votes are ignored by
    # followers in their lease, and it ignores the term-3 leader: a stalemate
    # unless n3 answers the leader with its term.
    n3 = Solo("n3", term=5)
    [answer] = n3.step(heartbeat("n1", "n3", 3))
    assert answer == AppendResponse("n3", "n1", 5, success=False)
    leader = Solo(term=2)
    leader.become_leader()
    leader.step(answer)
    assert leader.raft.role is Role.FOLLOWER and leader.raft.term == 5


def test_check_quorum_deposes_a_leader_that_hears_from_no_quorum() -> None:
    solo = Solo()
    solo.become_leader()
    solo.tick(ELECTION_TICK)
    assert solo.raft.role is Role.FOLLOWER and solo.raft.leader is None


def test_check_quorum_keeps_a_leader_that_hears_from_a_quorum() -> None:
    solo = Solo()
    solo.become_leader()
    for _ in range(3 * ELECTION_TICK):
        solo.tick()
        solo.step(ack("n2", "n1", 1, match_index=1))
    assert solo.raft.role is Role.LEADER


def test_pre_vote_keeps_an_isolated_node_at_its_term() -> None:
    solo = Solo(term=4)
    solo.tick(20 * ELECTION_TICK)
    assert solo.raft.term == 4


# --- flow control and limits ----------------------------------------------------


def replicating_leader(**options: object) -> Solo:
    """A leader whose followers both acknowledged its NOOP (index 1)."""
    solo = Solo(**options)
    solo.become_leader()
    for follower in ("n2", "n3"):
        solo.step(ack(follower, "n1", 1, match_index=1))
    return solo


def test_a_new_commit_index_is_announced_to_followers_with_nothing_more_to_receive() -> None:
    """Followers learn the commit at once (and apply the block off the path of the next
    entry's acknowledgement), each at its own match index, so none commits past its log."""
    solo = replicating_leader()
    solo.raft.propose(b"x")
    solo.flush()
    sent = solo.step(ack("n2", "n1", 1, match_index=2))
    assert solo.raft.commit_index == 2
    assert of_type(sent, AppendEntries, "n2") == [AppendEntries("n1", "n2", 1, 2, 1, (), 2)]
    assert of_type(sent, AppendEntries, "n3") == [AppendEntries("n1", "n3", 1, 1, 1, (), 2)]
    assert solo.step(ack("n3", "n1", 1, match_index=2)) == []      # nothing new to commit: silence


def test_no_announcement_when_the_commit_index_does_not_move() -> None:
    solo = replicating_leader()
    solo.raft.propose(b"x")
    solo.raft.propose(b"y")
    solo.flush()
    solo.step(ack("n2", "n1", 1, match_index=3))
    assert of_type(solo.step(ack("n3", "n1", 1, match_index=2)), AppendEntries) == []


def test_a_commit_index_change_alone_is_not_a_synced_write_but_term_and_vote_are() -> None:
    solo = replicating_leader()
    solo.raft.propose(b"x")
    solo.flush()
    solo.raft.step(ack("n2", "n1", 1, match_index=2))
    ready = solo.raft.ready()
    assert ready is not None and ready.hard_state is None and [e.index for e in ready.committed] == [2]
    solo.raft.advance(ready)
    solo.raft.propose(b"y")                       # entries to persist: the commit rides along
    ready = solo.raft.ready()
    assert ready is not None and ready.entries and ready.hard_state is not None
    assert ready.hard_state.commit == 2
    solo.raft.advance(ready)
    follower = Solo("n2", term=1)
    follower.raft.step(VoteRequest("n3", "n2", 2, 0, 0, pre_vote=False))
    ready = follower.raft.ready()
    assert ready is not None and ready.hard_state is not None and ready.hard_state.term == 2


def test_in_flight_appends_per_follower_are_bounded() -> None:
    solo = replicating_leader(max_inflight_appends=2, max_append_entries=1)
    for n in range(5):
        solo.raft.propose(b"%d" % n)
    appends = of_type(solo.flush(), AppendEntries, "n2")
    assert [a.entries[0].index for a in appends] == [2, 3]
    appends = of_type(solo.step(ack("n2", "n1", 1, match_index=2)), AppendEntries, "n2")
    assert [a.entries[0].index for a in appends] == [4]


def test_a_probing_follower_gets_one_append_at_a_time() -> None:
    solo = Solo()
    solo.become_leader()  # n3 never answers the NOOP probe
    for n in range(3):
        solo.raft.propose(b"%d" % n)
    assert of_type(solo.flush(), AppendEntries, "n3") == []
    assert len(of_type(solo.tick(), AppendEntries, "n3")) == 1, "a heartbeat re-sends the probe"


def test_an_append_presumed_lost_is_sent_again_after_an_election_timeout() -> None:
    solo = replicating_leader()
    solo.raft.propose(b"lost")
    assert len(of_type(solo.flush(), AppendEntries, "n2")) == 1  # ...and the network drops it
    resent = []
    for _ in range(ELECTION_TICK):
        sent = solo.tick()
        resent += [a for a in of_type(sent, AppendEntries, "n2") if a.entries]
        solo.step(ack("n3", "n1", 1, match_index=2))
    assert [a.entries[0].data for a in resent] == [b"lost"]


def test_appends_are_batched_by_count_and_bytes() -> None:
    solo = replicating_leader(max_append_entries=3, max_append_bytes=25)
    for n in range(4):
        solo.raft.propose(b"0123456789")
    appends = of_type(solo.flush(), AppendEntries, "n2")
    assert [len(a.entries) for a in appends] == [2, 2]


def test_an_oversized_entry_still_travels_alone() -> None:
    solo = replicating_leader(max_append_bytes=4)
    solo.raft.propose(b"0123456789")
    [append] = of_type(solo.flush(), AppendEntries, "n2")
    assert len(append.entries) == 1


def test_uncommitted_proposals_are_bounded() -> None:
    solo = Solo(max_uncommitted_entries=3)
    solo.become_leader()  # the NOOP is the first uncommitted entry
    solo.raft.propose(b"a")
    solo.raft.propose(b"b")
    with pytest.raises(ProposalDropped, match="uncommitted"):
        solo.raft.propose(b"c")
    solo.step(ack("n2", "n1", 1, match_index=3))
    assert solo.raft.propose(b"c") == 4


def test_a_follower_refuses_proposals_and_names_the_leader() -> None:
    solo = Solo("n2")
    solo.step(heartbeat("n1", "n2", 1))
    with pytest.raises(NotLeader) as raised:
        solo.raft.propose(b"x")
    assert raised.value.leader_hint == "n1"


def test_ready_messages_are_bounded_and_the_rest_follow() -> None:
    solo = Solo(voters=("n1", "n2", "n3", "n4", "n5"), max_ready_messages=3)
    solo.raft.tick()
    while solo.raft.role is Role.FOLLOWER:
        solo.raft.tick()
    first = solo.raft.ready()
    assert first is not None and len(first.messages) == 3
    solo.raft.advance(first)
    second = solo.raft.ready()
    assert second is not None and len(second.messages) == 1


# --- entry validation -------------------------------------------------------------


def rejects_bang(data: bytes) -> bool:
    return not data.startswith(b"!")


def test_a_follower_refuses_an_append_carrying_an_invalid_entry() -> None:
    from node.raft import Entry, EntryKind

    solo = Solo("n2", entry_validator=rejects_bang)
    bad = (Entry(1, 1, EntryKind.NORMAL, b"ok"), Entry(2, 1, EntryKind.NORMAL, b"!evil"))
    assert solo.step(AppendEntries("n1", "n2", 1, 0, 0, bad, 2)) == []
    assert solo.raft.last_index == 0 and solo.raft.commit_index == 0
    [answer] = solo.step(AppendEntries("n1", "n2", 1, 0, 0, bad[:1], 1))
    assert answer.success and solo.raft.commit_index == 1


def test_a_leader_refuses_an_invalid_proposal() -> None:
    solo = Solo(entry_validator=rejects_bang)
    solo.become_leader()
    with pytest.raises(ProposalDropped, match="validator"):
        solo.raft.propose(b"!evil")


# --- leadership transfer -----------------------------------------------------------


def test_transfer_to_an_up_to_date_follower_sends_timeout_now_and_blocks_proposals() -> None:
    solo = replicating_leader()
    solo.raft.transfer_leadership("n2")
    assert of_type(solo.flush(), TimeoutNow) == [TimeoutNow("n1", "n2", 1)]
    with pytest.raises(ProposalDropped, match="transfer"):
        solo.raft.propose(b"x")


def test_transfer_to_a_lagging_follower_first_brings_it_up_to_date() -> None:
    solo = replicating_leader()
    solo.raft.propose(b"x")
    solo.flush()
    solo.raft.transfer_leadership("n3")
    assert of_type(solo.flush(), TimeoutNow) == []
    assert of_type(solo.step(ack("n3", "n1", 1, match_index=2)), TimeoutNow) == [TimeoutNow("n1", "n3", 1)]


def test_a_transfer_that_does_not_finish_is_abandoned_after_an_election_timeout() -> None:
    solo = replicating_leader()
    solo.raft.transfer_leadership("n2")
    for _ in range(ELECTION_TICK):
        solo.tick()
        solo.step(ack("n3", "n1", 1, match_index=1))
    assert solo.raft.role is Role.LEADER
    assert solo.raft.propose(b"x") == 2


def test_timeout_now_makes_a_follower_campaign_at_once_without_pre_vote() -> None:
    solo = Solo("n2", term=1)
    solo.step(heartbeat("n1", "n2", 1))
    requests = of_type(solo.step(TimeoutNow("n1", "n2", 1)), VoteRequest)
    assert solo.raft.role is Role.CANDIDATE and solo.raft.term == 2
    assert requests and all(r.leader_transfer and not r.pre_vote for r in requests)


# --- catch-up instead of snapshots ---------------------------------------------------


def test_a_leader_sends_a_catch_up_notice_when_the_follower_needs_compacted_entries() -> None:
    solo = replicating_leader()
    for n in range(3):
        solo.raft.propose(b"%d" % n)
    solo.flush()
    solo.step(ack("n2", "n1", 1, match_index=4))
    solo.storage.compact(3)
    sent = solo.step(AppendResponse("n3", "n1", 1, success=False, rejected_index=1, reject_hint=0))
    assert of_type(sent, CatchUpNotice) == [CatchUpNotice("n1", "n3", 1, 3, 1)]


def test_a_follower_fetches_history_out_of_band_then_resumes_after_it() -> None:
    solo = Solo("n3", log_terms=[1])
    solo.raft.step(CatchUpNotice("n1", "n3", 2, 7, 2))
    ready = solo.raft.ready()
    assert ready is not None and ready.catch_up == CatchUp("n1", 7, 2)
    solo.storage.set_hard_state(ready.hard_state)  # type: ignore[arg-type]
    solo.raft.advance(ready)
    solo.storage.restore(7, 2)
    solo.raft.restore(7, 2)
    sent = solo.flush()
    assert sent == [AppendResponse("n3", "n1", 2, success=True, match_index=7)]
    # The commit index alone is not persisted (a synced write for nothing): a restart takes it
    # from the restored marker, which the store installed durably.
    assert solo.raft.commit_index == 7 and solo.storage.first_index() - 1 == 7
    [answer] = solo.step(AppendEntries("n1", "n3", 2, 7, 2, (), 7))
    assert answer.success


def test_a_catch_up_notice_the_follower_already_satisfies_is_just_acknowledged() -> None:
    solo = Solo("n3", log_terms=[1, 1, 1])
    [answer] = solo.step(CatchUpNotice("n1", "n3", 1, 2, 1))
    assert answer == AppendResponse("n3", "n1", 1, success=True, match_index=2)
    assert all(r.catch_up is None for r in solo.readys)


# --- the Ready contract --------------------------------------------------------------


def test_ready_must_be_advanced_before_the_next_one() -> None:
    solo = Solo()
    solo.raft.step(VoteRequest("n2", "n1", 1, 0, 0, pre_vote=False))
    assert solo.raft.ready() is not None
    with pytest.raises(RuntimeError):
        solo.raft.ready()


def test_restore_refuses_to_run_before_advance() -> None:
    solo = Solo("n3")
    solo.raft.step(CatchUpNotice("n1", "n3", 1, 4, 1))
    solo.raft.ready()
    with pytest.raises(RuntimeError):
        solo.raft.restore(4, 1)


@pytest.mark.parametrize(
    "changes",
    [
        {"voters": ()},
        {"voters": ("n1", "n1")},
        {"voters": ("n2", "n3")},
        {"heartbeat_tick": 0},
        {"election_tick": 1},
        {"max_inflight_appends": 0},
        {"max_uncommitted_entries": 0},
        {"max_ready_messages": 0},
    ],
)
def test_config_rejects_nonsense(changes: dict[str, object]) -> None:
    arguments: dict[str, object] = {"node_id": "n1", "voters": ("n1", "n2", "n3")} | changes
    with pytest.raises(ValueError):
        RaftConfig(**arguments)  # type: ignore[arg-type]
