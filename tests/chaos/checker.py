"""The checker: what the client log and the exported chain must say after a chaos run.

Owns reading the export (every entry's bytes, code, height, leaf and block time) and proving,
each as a list of human-readable violations:

1. every acknowledged transaction (answered OK) is in the chain exactly once, with the
   acknowledged code, height and leaf, and its id has no other OK entry (the same bytes entered
   again *later* with code EXISTS, which changes nothing, are allowed: FORMAT.md §6);
2. every answer about the same bytes is the same answer (code, height, leaf);
3. each kind of submission got the answer it must (workload.EXPECTED; a race: one OK, one 19);
4. nothing refused is applied: refused bytes are never in the chain with code OK; a recorded
   refusal is where its answer said; a static refusal is in no block;
5. nothing is left unsettled after the resolution phase, and the chain holds nothing the clients
   did not submit (besides the members' registrations);
6. every balance read is linearizable: its height is at least that of every answer received
   before the read started, it saw nothing submitted after it ended, and its points are exactly
   the chain's acknowledged deposits to that member up to its height;
7. the final balances (the leader's linearizable read and every node's own) equal the
   acknowledged history and the chain;
8. block time stays within ``MAX_BLOCK_TIME_SKEW_MS`` of the harness's clock around each
   acknowledged transaction (a node with a skewed clock must not move the ledger's time);
9. every node has the same certified head, and ``nanum audit verify`` passed on the export.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

from ledger.block import decode_block
from ledger.codes import Code
from ledger.encoding import decode
from ledger.export import ExportReader
from ledger.limits import MAX_BLOCK_TIME_SKEW_MS
from ledger.tx import Deposit, RegisterMember, decode_tx
from tests.chaos.workload import EXPECTED, History, Submission

MAX_REPORTED_PER_CHECK = 10


@dataclass(frozen=True, slots=True)
class Entry:
    height: int
    leaf: int
    code: int
    time_ms: int
    tx_id: bytes
    raw: bytes


@dataclass
class Chain:
    entries: list[Entry] = field(default_factory=list)
    by_raw: dict[bytes, list[Entry]] = field(default_factory=dict)
    by_id: dict[bytes, list[Entry]] = field(default_factory=dict)
    last_height: int = 0

    @classmethod
    def from_export(cls, path: Path) -> "Chain":
        chain = cls()
        with open(path, "rb") as handle:
            for record in ExportReader(handle).records():
                block = decode_block(record.block)
                first_leaf = block.header.tree_size - block.header.tx_count
                for i, raw_entry in enumerate(block.entries):
                    tx_raw, code = decode(raw_entry)
                    tx = decode_tx(tx_raw)
                    entry = Entry(record.height, first_leaf + i, code, block.header.time_ms, tx.tx_id, bytes(tx_raw))
                    chain.entries.append(entry)
                    chain.by_raw.setdefault(entry.raw, []).append(entry)
                    chain.by_id.setdefault(entry.tx_id, []).append(entry)
                chain.last_height = record.height
        return chain


@dataclass
class Finals:
    """What the runner gathered after the cluster converged."""

    leader_balances: dict[bytes, int]
    node_balances: dict[int, dict[bytes, int]]
    checkpoints: dict[int, tuple]             # node -> (height, block hash, tree root), None if unreachable
    verify_ok: bool
    verify_output: str
    unsettled: list[Submission]
    findings: list[str]


class Report:
    def __init__(self) -> None:
        self.violations: dict[str, list[str]] = {}
        self.counts: dict[str, int] = {}

    def fail(self, check: str, message: str) -> None:
        self.violations.setdefault(check, []).append(message)

    @property
    def ok(self) -> bool:
        return not self.violations

    def lines(self) -> list[str]:
        out = []
        for check, messages in self.violations.items():
            out.append(f"VIOLATION {check}: {len(messages)}")
            out += [f"    {m}" for m in messages[:MAX_REPORTED_PER_CHECK]]
        return out


def check(history: History, chain: Chain, finals: Finals) -> Report:
    report = Report()
    _acknowledged(history, chain, report)
    _answers(history, chain, report)
    _refused(history, chain, report)
    _settled(history, chain, finals, report)
    _reads(history, chain, report)
    _balances(history, chain, finals, report)
    _block_time(history, chain, report)
    _heads(chain, finals, report)
    for finding in finals.findings:
        report.fail("the nemesis saw a node fail", finding)
    report.counts.update(
        submissions=len(history.submissions),
        acknowledged=sum(1 for s in history.submissions if _final(s) and _final(s).kind == "ok"),
        refused=sum(1 for s in history.submissions if _final(s) and _final(s).kind == "refused"),
        resubmissions=sum(max(0, len(s.attempts) - 1) for s in history.submissions),
        duplicates=sum(1 for s in history.submissions for a in s.attempts if a.duplicate),
        reads=sum(1 for r in history.reads if r.ok), failed_reads=sum(1 for r in history.reads if not r.ok),
        blocks=chain.last_height, entries=len(chain.entries))
    return report


def _final(submission: Submission):
    definite = submission.definite()
    return definite[0] if definite else None


def _show(submission: Submission) -> str:
    return f"#{submission.number} {submission.kind} tx {submission.tx_id.hex()} (writer {submission.writer})"


def _acknowledged(history: History, chain: Chain, report: Report) -> None:
    for s in history.submissions:
        for answer in s.attempts:
            if answer.kind != "ok":
                continue
            found = _effective(chain, s.raw)
            if len(found) != 1:
                report.fail("acknowledged exactly once", f"{_show(s)} answered OK at height {answer.height} "
                            f"is in the chain {len(found)} times (besides EXISTS re-entries)")
                break
            entry = found[0]
            if (entry.code, entry.height, entry.leaf) != (answer.code, answer.height, answer.leaf):
                report.fail("acknowledged result", f"{_show(s)} answered code {answer.code} height "
                            f"{answer.height} leaf {answer.leaf}; the chain has code {entry.code} height "
                            f"{entry.height} leaf {entry.leaf}")
                break
    for tx_id, entries in chain.by_id.items():
        if sum(1 for e in entries if e.code == Code.OK) > 1:
            report.fail("one OK entry per id", f"tx {tx_id.hex()} has {len(entries)} OK entries")


def _effective(chain: Chain, raw: bytes) -> list[Entry]:
    """The entries of ``raw`` that had an effect or took its id. The same bytes may be entered
    again later, with code EXISTS and no effect (FORMAT.md §6: a resubmission that reached a
    second batch before the first was applied); such an entry before the first is wrong."""
    entries = chain.by_raw.get(raw, [])
    effective = [e for e in entries if e.code != Code.EXISTS]
    if effective and any(e.code == Code.EXISTS and e.leaf < effective[0].leaf for e in entries):
        return entries                  # counted as they are: the check then fails
    return effective


def _answers(history: History, chain: Chain, report: Report) -> None:
    def key(answer):
        return (answer.kind, answer.code, answer.height, answer.leaf if answer.kind == "ok" else None)

    races: dict[frozenset, list[Submission]] = {}
    for s in history.submissions:
        definite = s.definite()
        keys = {key(a) for a in definite}
        if len(keys) > 1:
            report.fail("one answer per bytes", f"{_show(s)} got different answers: {sorted(keys, key=str)}")
        if not definite:
            continue
        code = definite[0].code
        if s.kind == "race":
            races.setdefault(frozenset((s.number, s.partner)), []).append(s)
        elif code != EXPECTED[s.kind]:
            report.fail("expected answer", f"{_show(s)} answered {_name(code)}, expected {_name(EXPECTED[s.kind])}")
    for pair in races.values():
        if len(pair) == 2:
            codes = sorted(_final(s).code for s in pair)
            if codes != [Code.OK, Code.EXISTS_WITH_DIFFERENT_FIELDS]:
                report.fail("a race has one winner", f"{_show(pair[0])} and #{pair[1].number} (one id, different "
                            f"bytes) answered {[_name(c) for c in codes]}; expected one OK and one "
                            f"EXISTS_WITH_DIFFERENT_FIELDS")


def _name(code: int | None) -> str:
    if code is None:
        return "no ledger code (a transport or call-policy answer)"
    try:
        return Code(code).name
    except (ValueError, TypeError):
        return str(code)


def _refused(history: History, chain: Chain, report: Report) -> None:
    for s in history.submissions:
        final = _final(s)
        if final is None or final.kind != "refused":
            continue
        found = chain.by_raw.get(s.raw, [])
        if any(e.code == Code.OK for e in found):
            report.fail("nothing refused is applied", f"{_show(s)} answered {_name(final.code)} but the chain "
                        f"has it with code OK at height {found[0].height}")
        elif final.code is None and found:
            report.fail("nothing refused is applied", f"{_show(s)} refused by the call policy is in block "
                        f"{found[0].height}")
        elif final.code is None:
            continue
        elif Code(final.code).static and found:
            report.fail("nothing refused is applied", f"{_show(s)} statically refused ({_name(final.code)}) "
                        f"is in block {found[0].height}")
        elif final.code == Code.EXISTS_WITH_DIFFERENT_FIELDS:
            # Refused at admission or recorded with code 19; the answer's height is the original's.
            # The original's own later re-entries (code EXISTS, FORMAT.md §6) are not other originals.
            originals = [e for e in chain.by_id.get(s.tx_id, [])
                         if e.raw != s.raw and e.code not in (final.code, Code.EXISTS)]
            if [e.height for e in originals] != [final.height] or any(e.code != final.code for e in found):
                report.fail("recorded refusal", f"{_show(s)} answered {_name(final.code)} naming height "
                            f"{final.height}; the chain has the id at {[(e.height, _name(e.code)) for e in originals]}"
                            f" and these bytes at {[(e.height, _name(e.code)) for e in found]}")
        elif final.height and [(e.height, e.code) for e in _effective(chain, s.raw)] != [(final.height, final.code)]:
            report.fail("recorded refusal", f"{_show(s)} answered {_name(final.code)} at height {final.height}; "
                        f"the chain has {[(e.height, _name(e.code)) for e in found]}")


def _settled(history: History, chain: Chain, finals: Finals, report: Report) -> None:
    for s in finals.unsettled:
        last = s.attempts[-1].status if s.attempts else "never sent"
        report.fail("settled after the faults", f"{_show(s)}: no definite answer after the resolution phase "
                    f"(last: {last})")
    ours = {s.raw for s in history.submissions}
    for entry in chain.entries:
        if entry.raw not in ours and not isinstance(decode_tx(entry.raw).payload, RegisterMember):
            report.fail("nothing the clients did not submit", f"tx {entry.tx_id.hex()} at height {entry.height}")


def _deposit_sums(chain: Chain) -> dict[bytes, list[tuple[int, int]]]:
    """Per member: (height, running sum of OK deposits) at each change."""
    running: dict[bytes, list[tuple[int, int]]] = {}
    for entry in chain.entries:
        payload = decode_tx(entry.raw).payload
        if entry.code == Code.OK and isinstance(payload, Deposit):
            steps = running.setdefault(payload.member_id, [])
            steps.append((entry.height, (steps[-1][1] if steps else 0) + payload.points))
    return running


def _sum_at(steps: list[tuple[int, int]], height: int) -> int:
    i = bisect.bisect_right(steps, (height, float("inf")))
    return steps[i - 1][1] if i else 0


def _reads(history: History, chain: Chain, report: Report) -> None:
    sums = _deposit_sums(chain)
    # Answers with a height, by when they arrived: a read started later must be at least as high.
    answered = sorted((a.end, a.height) for s in history.submissions for a in s.attempts
                      if a.kind != "unknown" and a.height)
    ends = [end for end, _ in answered]
    highest, top = [], 0
    for _, height in answered:
        top = max(top, height)
        highest.append(top)
    # When each height's transactions were first submitted (latest of them), running max.
    first_start = {s.raw: s.first_start for s in history.submissions if s.attempts}
    newest_by_height: dict[int, float] = {}
    for entry in chain.entries:
        if entry.raw in first_start:
            newest_by_height[entry.height] = max(newest_by_height.get(entry.height, 0.0), first_start[entry.raw])
    newest_upto, newest = [0.0] * (chain.last_height + 1), 0.0
    for height in range(chain.last_height + 1):
        newest = max(newest, newest_by_height.get(height, 0.0))
        newest_upto[height] = newest
    for read in history.reads:
        if not read.ok:
            continue
        who = f"read by reader {read.reader} of member {read.member.hex()[:12]} at height {read.height}"
        i = bisect.bisect_left(ends, read.start)
        floor = highest[i - 1] if i else 0
        if read.height < floor:
            report.fail("linearizable reads", f"{who}: height {floor} had been answered before the read began "
                        f"(stale by {floor - read.height} blocks)")
        if read.height > chain.last_height:
            report.fail("linearizable reads", f"{who}: beyond the chain's certified head {chain.last_height}")
            continue
        if newest_upto[read.height] > read.end:
            report.fail("linearizable reads", f"{who}: it includes a transaction first submitted after it ended")
        expected = _sum_at(sums.get(read.member, []), read.height)
        if read.points != expected:
            report.fail("reads match the chain", f"{who}: {read.points} points; the chain's deposits up to that "
                        f"height give {expected}")


def _balances(history: History, chain: Chain, finals: Finals, report: Report) -> None:
    sums = _deposit_sums(chain)
    acknowledged: dict[bytes, int] = {}
    for s in history.submissions:
        final = _final(s)
        if final is not None and final.kind == "ok":
            acknowledged[s.member] = acknowledged.get(s.member, 0) + s.points
    for member in history.members:
        in_chain = sum(step for _, step in sums.get(member, [])[-1:])
        expected = acknowledged.get(member, 0)
        if in_chain != expected:
            report.fail("balances equal the acknowledged history", f"member {member.hex()[:12]}: acknowledged "
                        f"{expected} points, the chain holds {in_chain}")
        leader = finals.leader_balances.get(member)
        if leader != expected:
            report.fail("balances equal the acknowledged history", f"member {member.hex()[:12]}: the leader "
                        f"answers {leader}, acknowledged {expected}")
        for node, balances in finals.node_balances.items():
            if balances.get(member) != expected:
                report.fail("balances equal the acknowledged history", f"member {member.hex()[:12]}: node {node} "
                            f"answers {balances.get(member)}, acknowledged {expected}")


def _block_time(history: History, chain: Chain, report: Report) -> None:
    to_wall_ms = lambda t: (t + history.wall_offset_s) * 1000   # noqa: E731
    for s in history.submissions:
        final = _final(s)
        if final is None or final.kind != "ok" or not chain.by_raw.get(s.raw):
            continue
        time_ms = chain.by_raw[s.raw][0].time_ms
        earliest = to_wall_ms(s.first_start) - MAX_BLOCK_TIME_SKEW_MS
        latest = to_wall_ms(final.end) + MAX_BLOCK_TIME_SKEW_MS
        if not earliest <= time_ms <= latest:
            report.fail("block time within the bound", f"{_show(s)}: block {final.height} has time {time_ms}, "
                        f"outside {earliest:.0f}..{latest:.0f} (submitted..answered, +- {MAX_BLOCK_TIME_SKEW_MS} ms)")


def _heads(chain: Chain, finals: Finals, report: Report) -> None:
    heads = set(finals.checkpoints.values())
    if None in heads or len(heads) != 1:
        report.fail("all nodes agree on the certified head", f"checkpoints: {finals.checkpoints}")
    elif next(iter(heads))[0] != chain.last_height:
        report.fail("all nodes agree on the certified head", f"the nodes are at {next(iter(heads))[0]}, "
                    f"the export ends at {chain.last_height}")
    if not finals.verify_ok:
        report.fail("nanum audit verify passes", finals.verify_output.strip()[-2000:])
