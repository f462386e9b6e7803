"""The chaos checker catches what it claims to (tests/chaos/checker.py): planted histories.

Each case starts from a small consistent history (one deposit acknowledged, one refused, reads
before and after) that passes, then breaks one thing and expects exactly that check to fail.
"""

from __future__ import annotations

import dataclasses

import pytest

from ledger.codes import Code
from ledger.tx import decode_tx
from tests.chaos.checker import Chain, Entry, Finals, check
from tests.chaos.workload import Answer, History, Read, Submission
from tests.consortium import TestConsortium

BLOCK_TIME_MS = 1_800_000_000_000


def _entry(chain: Chain, tx, height: int, leaf: int, code: Code) -> None:
    entry = Entry(height, leaf, int(code), BLOCK_TIME_MS, tx.tx_id, tx.raw)
    chain.entries.append(entry)
    chain.by_raw.setdefault(tx.raw, []).append(entry)
    chain.by_id.setdefault(tx.tx_id, []).append(entry)
    chain.last_height = max(chain.last_height, height)


@pytest.fixture()
def world():
    tc = TestConsortium()
    member = tc.member("a")
    history = History(wall_offset_s=BLOCK_TIME_MS / 1000 - 10.0)   # t = 10 s is the block time
    history.members.append(member.party_id)
    chain = Chain()
    deposit = tc.deposit(member, 5)
    unknown = tc.deposit(tc.member("nobody"), 3)
    ok = history.new_submission(writer=0, kind="deposit", tx_id=deposit.tx_id, raw=deposit.raw,
                                member=member.party_id, points=5)
    ok.attempts.append(Answer(9.0, 10.0, "ok", 0, 1, 3))
    refused = history.new_submission(writer=0, kind="unknown_member", tx_id=unknown.tx_id, raw=unknown.raw,
                                     member=tc.member("nobody").party_id, points=3)
    refused.attempts.append(Answer(9.0, 10.0, "refused", int(Code.UNKNOWN_MEMBER), 1))
    _entry(chain, deposit, 1, 3, Code.OK)
    _entry(chain, unknown, 1, 4, Code.UNKNOWN_MEMBER)
    history.add_read(Read(0, member.party_id, 8.0, 8.5, True, 0, 0))
    history.add_read(Read(0, member.party_id, 11.0, 11.5, True, 5, 1))
    head = (1, "ab", "cd")
    finals = Finals({member.party_id: 5}, {0: {member.party_id: 5}, 1: {member.party_id: 5}},
                    {0: head, 1: head}, True, "", [], [])
    return tc, history, chain, finals


def test_a_consistent_history_passes(world):
    _, history, chain, finals = world
    report = check(history, chain, finals)
    assert report.ok, report.lines()


def test_a_stale_read_is_caught(world):
    _, history, chain, finals = world
    history.reads.append(Read(1, history.members[0], 10.5, 10.6, True, 0, 0))    # after the ack, height 0
    assert set(check(history, chain, finals).violations) == {"linearizable reads"}


def test_a_read_that_disagrees_with_the_chain_is_caught(world):
    _, history, chain, finals = world
    history.reads.append(Read(1, history.members[0], 12.0, 12.5, True, 4, 1))
    assert set(check(history, chain, finals).violations) == {"reads match the chain"}


def test_a_read_from_the_future_is_caught(world):
    _, history, chain, finals = world
    # It ended at 8.9 s, before the deposit was first sent (9.0 s), yet saw it.
    history.reads.append(Read(1, history.members[0], 8.0, 8.9, True, 5, 1))
    assert set(check(history, chain, finals).violations) == {"linearizable reads"}


def test_a_lost_acknowledgement_is_caught(world):
    _, history, chain, finals = world
    deposit_raw = history.submissions[0].raw
    chain.entries = [e for e in chain.entries if e.raw != deposit_raw]
    del chain.by_raw[deposit_raw]
    violations = set(check(history, chain, finals).violations)
    assert "acknowledged exactly once" in violations and "balances equal the acknowledged history" in violations


def test_an_applied_refusal_is_caught(world):
    _, history, chain, finals = world
    refused = history.submissions[1]
    chain.by_raw[refused.raw] = [dataclasses.replace(chain.by_raw[refused.raw][0], code=0)]
    assert "nothing refused is applied" in check(history, chain, finals).violations


def test_two_answers_for_the_same_bytes_are_caught(world):
    _, history, chain, finals = world
    history.submissions[0].attempts.append(Answer(12.0, 12.1, "refused", int(Code.EXISTS_WITH_DIFFERENT_FIELDS), 1))
    assert "one answer per bytes" in check(history, chain, finals).violations


def test_nodes_on_different_heads_are_caught(world):
    _, history, chain, finals = world
    finals.checkpoints[1] = (1, "ff", "cd")
    assert set(check(history, chain, finals).violations) == {"all nodes agree on the certified head"}


def test_a_block_time_far_from_the_clocks_is_caught(world):
    _, history, chain, finals = world
    raw = history.submissions[0].raw
    chain.by_raw[raw] = [dataclasses.replace(chain.by_raw[raw][0], time_ms=BLOCK_TIME_MS + 60_000)]
    assert set(check(history, chain, finals).violations) == {"block time within the bound"}


def test_a_later_exists_re_entry_is_allowed_but_not_an_earlier_one(world):
    tc, history, chain, finals = world
    deposit = decode_tx(history.submissions[0].raw)
    _entry(chain, deposit, 1, 5, Code.EXISTS)          # resubmitted into a second batch: no effect
    assert check(history, chain, finals).ok
    chain.by_raw[deposit.raw].insert(0, Entry(1, 2, int(Code.EXISTS), BLOCK_TIME_MS, deposit.tx_id, deposit.raw))
    assert "acknowledged exactly once" in check(history, chain, finals).violations
