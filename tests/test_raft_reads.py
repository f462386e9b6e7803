"""The consensus core's linearizable reads (ReadIndex, Raft thesis 6.4) and its handling of a
leader whose time a follower refuses (RaftConfig.entry_timely, RaftNode.distrust_leader),
driven by hand (tests.sim.solo)."""

from __future__ import annotations

import pytest

from node.raft import AppendEntries, AppendResponse, NotLeader, ProposalDropped, Role, VoteRequest
from node.raft.entry import Entry, EntryKind
from tests.sim.solo import Solo, of_type


def answer(append: AppendEntries, term: int | None = None) -> AppendResponse:
    """A follower's acknowledgement of `append`, echoing its read round."""
    return AppendResponse(append.recipient, append.sender, term or append.term, success=True,
                          match_index=append.prev_index + len(append.entries), read_round=append.read_round)


def confirmed(solo: Solo) -> list:
    return [state for ready in solo.readys for state in ready.read_states]


def leader_with_a_commit() -> Solo:
    solo = Solo()
    sent = solo.become_leader()
    for append in of_type(sent, AppendEntries):
        solo.step(answer(append))          # the no-op commits: the term has its first commit
    assert solo.raft.commit_index == 1
    return solo


def test_a_read_is_confirmed_only_by_a_quorum_answering_a_round_started_after_it() -> None:
    solo = leader_with_a_commit()
    old = of_type(solo.tick(), AppendEntries)          # a heartbeat from before the read
    solo.raft.read_index(7)
    round_ = of_type(solo.flush(), AppendEntries)
    assert {a.recipient for a in round_} == {"n2", "n3"} and all(a.read_round == 1 for a in round_)
    for append in old:
        solo.step(answer(append))
    assert confirmed(solo) == [], "answers to an older round prove nothing about now"
    solo.step(answer(round_[0]))
    [state] = confirmed(solo)
    assert (state.context, state.index) == (7, 1)


def test_a_leader_deposed_while_paused_never_confirms_a_read() -> None:
    """The stale-read finding: a leader paused past an election resumes and is asked to read."""
    solo = leader_with_a_commit()
    solo.raft.read_index(1)
    for append in of_type(solo.flush(), AppendEntries):
        # The others elected a new leader meanwhile: they answer with the higher term.
        solo.step(AppendResponse(append.recipient, "n1", append.term + 1, success=False,
                                 read_round=append.read_round))
    assert solo.raft.role is Role.FOLLOWER
    assert confirmed(solo) == []
    with pytest.raises(NotLeader):
        solo.raft.read_index(2)


def test_reads_before_the_terms_first_commit_wait_for_it() -> None:
    solo = Solo()
    sent = solo.become_leader()
    solo.raft.read_index(3)
    solo.flush()
    assert confirmed(solo) == []
    for append in of_type(sent, AppendEntries):
        solo.step(answer(append))                   # commits the no-op, which starts the round
    appends = [a for a in of_type(solo.flush() + solo.tick(), AppendEntries) if a.read_round == 1]
    assert appends and confirmed(solo) == []
    solo.step(answer(appends[0]))
    assert [s.context for s in confirmed(solo)] == [3]


def test_a_single_node_confirms_at_once_and_reads_are_bounded() -> None:
    solo = Solo(voters=("n1",), max_pending_reads=2)
    solo.tick_until(Role.LEADER)
    solo.raft.read_index(1)
    solo.flush()
    assert [s.context for s in confirmed(solo)] == [1]
    bounded = leader_with_a_commit()
    bounded_limit = Solo(max_pending_reads=2)
    sent = bounded_limit.become_leader()
    for append in of_type(sent, AppendEntries):
        bounded_limit.step(answer(append))
    bounded_limit.raft.read_index(1)
    bounded_limit.raft.read_index(2)
    with pytest.raises(ProposalDropped):
        bounded_limit.raft.read_index(3)
    assert bounded.raft.role is Role.LEADER


def test_followers_echo_the_read_round() -> None:
    solo = Solo(node_id="n2")
    [reply] = solo.step(AppendEntries("n1", "n2", 1, 0, 0, (), 0, read_round=9))
    assert reply.success and reply.read_round == 9


# --- a leader whose time a follower refuses ------------------------------------------------


def entry(index: int, term: int, data: bytes) -> Entry:
    return Entry(index, term, EntryKind.NORMAL, data)


def test_an_untimely_batch_is_refused_and_the_leader_loses_its_lease() -> None:
    solo = Solo(node_id="n2", entry_timely=lambda data: data != b"late")
    [reply] = solo.step(AppendEntries("n1", "n2", 1, 0, 0, (entry(1, 1, b"ok"), entry(2, 1, b"late")), 0))
    assert reply.success and reply.match_index == 1, "takes only what comes before the refused batch"
    assert solo.raft.last_index == 1
    elapsed = solo.raft._election_elapsed_ticks
    solo.tick(3)
    solo.step(AppendEntries("n1", "n2", 1, 1, 1, (), 1))   # a heartbeat no longer renews the lease
    assert solo.raft._election_elapsed_ticks == elapsed + 3
    # ...so a pre-vote from another node is considered, not ignored as disruptive:
    [vote] = solo.step(VoteRequest("n3", "n2", 2, 1, 1, pre_vote=True))
    assert vote.granted


def test_committed_entries_are_taken_even_from_a_distrusted_leader() -> None:
    solo = Solo(node_id="n2", entry_timely=lambda data: False)
    solo.raft.distrust_leader(1)
    [reply] = solo.step(AppendEntries("n1", "n2", 1, 0, 0, (entry(1, 1, b"a"), entry(2, 1, b"b")), 1))
    assert reply.match_index == 1 and solo.raft.commit_index == 1, "entry 1 is committed: a majority decided"
    assert solo.raft.last_index == 1, "entry 2 is not: refused"


def test_distrust_ends_with_the_term() -> None:
    solo = Solo(node_id="n2")
    solo.raft.distrust_leader(1)
    solo.step(AppendEntries("n1", "n2", 1, 0, 0, (entry(1, 1, b"a"),), 0))
    assert solo.raft.last_index == 0
    solo.step(AppendEntries("n3", "n2", 2, 0, 0, (entry(1, 2, b"b"),), 0))
    assert solo.raft.last_index == 1 and solo.raft.leader == "n3"
