"""Settlement statements: attribution and limits (pure), and statements from a real cluster.

The cluster (module-scoped, two centres, two partners, always stopped) is populated through
``node.client.LedgerClient``: members registered, deposits from both centres, redemptions at
the bookstore (one refused), one at the other partner, refunds. The statement's totals must be
what this test computes on its own; CSV and JSON must agree; ``settlement verify`` must pass,
and fail on a changed amount, a dropped line, a changed proof; periods beyond the limits are
refused with exit 3 (2 for a date that does not parse) and never a traceback.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

import ledger.settlement as settlement
from cli.receipt_cmds import fetch_statement
from cli.session import Session
from ledger.certificate import Certificate
from ledger.codes import Code
from ledger.keys import SigningKey
from ledger.settlement import (
    DAY_MS,
    MAX_PERIOD_DAYS,
    LimitError,
    StatementError,
    attribute,
    check_period,
    iso_ms,
    verify_statement,
)
from tests.consortium import GENESIS_TIME_MS, TestConsortium
from tests.test_receipt import Writer, nanum, start_cluster


# --- attribution and limits (pure) -------------------------------------------------------------


def test_attribution_replays_the_ledger_rules():
    c = TestConsortium()
    state, head = c.open_chain()
    member = c.member("ana")
    history = [c.register(member), c.deposit(member, 30, centre=0), c.deposit(member, 20, centre=1)]
    redeem = c.redeem(c.voucher(member, 40), 35)
    history += [redeem, c.refund(redeem.tx_id, 10)]
    spend_again = c.redeem(c.voucher(member, 100), 100)          # refused: not enough points
    history += [spend_again, c.reverse(history[2].tx_id, centre=1)]
    executed = c.run_block(state, head, history)
    pairs = list(zip(executed.txs, executed.codes))
    assert executed.codes[5] == Code.INSUFFICIENT_POINTS
    splits = attribute(pairs)
    assert splits[redeem.tx_id] == tuple(sorted(state_redemption_drawn(state, redeem.tx_id)))
    a, b = sorted([c.centres[0].party_id, c.centres[1].party_id])
    drawn = dict(splits[redeem.tx_id])
    assert drawn[a] == (30 if a == c.centres[0].party_id else 20) and drawn[b] == 35 - drawn[a]
    back_to_b = min(10, drawn[b])                                    # the last drawn comes back first
    assert dict(splits[history[4].tx_id]) == {k: v for k, v in ((a, 10 - back_to_b), (b, back_to_b)) if v}
    assert spend_again.tx_id not in splits


def test_attribution_from_drawn_agrees_with_the_replay():
    """A partner's statement attributes from each redemption's recorded draw and its own refunds
    (it may not read members' histories); that gives what replaying the member's history gives,
    for two refunds of one redemption that cross from one centre's points to another's."""
    c = TestConsortium()
    state, head = c.open_chain()
    member = c.member("cho")
    history = [c.register(member), c.deposit(member, 30, centre=0), c.deposit(member, 20, centre=1)]
    redeem = c.redeem(c.voucher(member, 50), 45)
    first, second = c.refund(redeem.tx_id, 12), c.refund(redeem.tx_id, 20)
    history += [redeem, first, second]
    executed = c.run_block(state, head, history)
    pairs = list(zip(executed.txs, executed.codes))
    drawn = {redeem.tx_id: state_redemption_drawn(state, redeem.tx_id)}
    partner_lines = [(tx, code) for tx, code in pairs if tx.author_id == c.partners[0].party_id]
    from_drawn = settlement.attribute_drawn(drawn, partner_lines)
    replayed = attribute(pairs)
    assert from_drawn == {tx_id: replayed[tx_id] for tx_id in (redeem.tx_id, first.tx_id, second.tx_id)}
    assert sum(p for _, p in from_drawn[first.tx_id]) == 12 and sum(p for _, p in from_drawn[second.tx_id]) == 20


def test_attribution_from_drawn_refuses_a_refund_beyond_the_draw():
    c = TestConsortium()
    member = c.member("dan")
    redeem = c.redeem(c.voucher(member, 5), 5)
    refund = c.refund(redeem.tx_id, 6)
    with pytest.raises(settlement.AttributionError, match="more than"):
        settlement.attribute_drawn({redeem.tx_id: ((b"\x01" * 20, 5),)}, [(redeem, Code.OK), (refund, Code.OK)])


def state_redemption_drawn(state, tx_id):
    from ledger.state import Overlay
    return Overlay(state).redemption(tx_id).drawn


def test_attribution_refuses_an_incomplete_history():
    c = TestConsortium()
    member = c.member("bo")
    redeem = c.redeem(c.voucher(member, 5), 5)
    with pytest.raises(settlement.AttributionError, match="incomplete"):
        attribute([(redeem, Code.OK)])


def test_periods_are_bounded():
    check_period(0, MAX_PERIOD_DAYS * DAY_MS)
    for start, end in ((10, 10), (10, 5), (0, MAX_PERIOD_DAYS * DAY_MS + 1), (0, settlement.MAX_PERIOD_END_MS + 1)):
        with pytest.raises(LimitError):
            check_period(start, end)
    assert iso_ms(GENESIS_TIME_MS) == "2026-09-21T14:13:20.000Z"


# --- a cluster ---------------------------------------------------------------------------------


def ms_of(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    folder = tmp_path_factory.mktemp("settlement")
    cluster = start_cluster(folder / "consortium")
    writer = None
    try:
        cluster.start()
        cluster.leader()
        writer = Writer(cluster)
        yield populate(cluster, writer, folder)
    finally:
        if writer is not None:
            writer.close()
        cluster.stop()


def populate(cluster, writer: Writer, folder: Path) -> dict:
    ana, bo = SigningKey.generate(), SigningKey.generate()
    start = int(time.time() * 1000) - 1
    writer.register(ana)
    writer.register(bo, centre=1)
    writer.deposit(ana, 30, centre=0)
    writer.deposit(ana, 20, centre=1)
    writer.deposit(bo, 15, centre=1)
    first, _ = writer.redeem(ana, 35)
    second, _ = writer.redeem(bo, 15)
    writer.redeem(ana, 8, partner=1)                      # another partner: not on the bookstore's statement
    refused = writer.refused(writer.redeem, bo, 50)       # recorded with a code: not a line
    refund, _ = writer.refund(first.tx_id, 10)
    end = int(time.time() * 1000) + 1
    time.sleep(0.01)
    writer.deposit(bo, 1, centre=0)                      # a later block closes the period
    deadline = time.monotonic() + 10
    while writer.client.checkpoint().height < writer.height and time.monotonic() < deadline:
        time.sleep(0.05)                                   # ... once it is certified
    centre_a, centre_b = (p.party_id for p in writer.centres)
    lines = [("redeem", first.tx_id, ana.party_id, 35), ("redeem", second.tx_id, bo.party_id, 15),
             ("refund", refund.tx_id, ana.party_id, 10)]
    # what each centre owes, by the documented rule: draw by ascending centre id, refund last drawn first
    low, high = sorted([centre_a, centre_b])
    ana_buckets = {centre_a: 30, centre_b: 20}
    drawn_first = [(low, min(35, ana_buckets[low]))]
    drawn_first.append((high, 35 - drawn_first[0][1]))
    back = min(10, drawn_first[-1][1])
    returned = [(high, back)] + ([(low, 10 - back)] if back < 10 else [])
    owed = {centre_a: [0, 0], centre_b: [0, 0]}
    for centre, points in drawn_first + [(centre_b, 15)]:
        owed[centre][0] += points
    for centre, points in returned:
        owed[centre][1] += points
    genesis = folder / "genesis.block"
    genesis.write_bytes(cluster.genesis())
    return {"cluster": cluster, "writer": writer, "refused": refused, "lines": lines, "start": start, "end": end,
            "owed": owed, "genesis": genesis, "partner_id": writer.partners[0].party_id,
            "client": str(cluster.layout.partners[0].config_file)}


def test_the_statement_totals_are_what_the_ledger_recorded(story):
    assert story["refused"] == Code.INSUFFICIENT_POINTS
    statement = fetch_statement(Session(Path(story["client"])), story["partner_id"], story["start"], story["end"])
    got = [(line.kind, line.tx.tx_id, line.member_id, line.points) for line in statement.lines]
    assert got == story["lines"]
    assert statement.totals() == {"lines": 3, "redeemed": 50, "refunded": 10, "net": 40}
    expected = [{"centre_id": c.hex(), "redeemed": r, "refunded": f, "net": r - f}
                for c, (r, f) in sorted(story["owed"].items())]
    assert statement.by_centre() == expected
    assert statement.period_closed
    assert all(story["start"] <= line.header.time_ms < story["end"] for line in statement.lines)


@pytest.fixture(scope="module")
def files(story, tmp_path_factory):
    folder = tmp_path_factory.mktemp("statement")
    start = iso_ms(story["start"]).replace("Z", "+00:00")
    end = iso_ms(story["end"]).replace("Z", "+00:00")
    out = nanum("settlement", "--client", story["client"], "--partner", story["partner_id"].hex(),
                "--from", start, "--to", end, "--csv", str(folder / "s.csv"), "--json", str(folder / "s.json"))
    assert "total: redeemed 50, refunded 10, net 40 points" in out.output
    return folder / "s.csv", folder / "s.json"


def test_csv_and_json_agree(story, files):
    rows = list(csv.DictReader(io.StringIO(files[0].read_text())))
    document = json.loads(files[1].read_text())
    lines = [r for r in rows if r["record"] == "line"]
    assert [(r["kind"], r["tx_id"], r["member_id"], int(r["redeemed"]) + int(r["refunded"]), int(r["height"]))
            for r in lines] == \
           [(d["kind"], d["tx_id"], d["member_id"], d["points"], d["height"]) for d in document["lines"]]
    assert [r["block_time"] for r in lines] == [d["block_time"] for d in document["lines"]]
    assert [r["centres"] for r in lines] == [";".join(f"{c['centre_id']}:{c['points']}" for c in d["centres"])
                                             for d in document["lines"]]
    centres = [{"centre_id": r["centre_id"], "redeemed": int(r["redeemed"]), "refunded": int(r["refunded"]),
                "net": int(r["net"])} for r in rows if r["record"] == "centre"]
    assert centres == document["by_centre"]
    total = next(r for r in rows if r["record"] == "total")
    assert {k: int(total[k]) for k in ("redeemed", "refunded", "net")} == \
           {k: document["totals"][k] for k in ("redeemed", "refunded", "net")}
    assert document["partner_id"] == story["partner_id"].hex() and document["period_closed"] is True


def test_settlement_verify_passes_with_only_the_genesis(story, files):
    out = nanum("settlement", "verify", str(files[1]), "--genesis", str(story["genesis"]))
    assert "statement VERIFIED" in out.output and "net 40 points" in out.output
    report = json.loads(nanum("settlement", "verify", str(files[1]), "--genesis", str(story["genesis"]),
                              "--json").stdout)
    assert report["verified"] is True and report["totals"]["net"] == 40 and report["attribution_proven"] is False


def _tampered(files, tmp_path, change) -> Path:
    document = json.loads(files[1].read_text())
    change(document)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(document))
    return path


def _verify_fails(story, files, tmp_path, change, *fields: str) -> str:
    path = _tampered(files, tmp_path, change)
    with pytest.raises(StatementError) as caught:
        verify_statement(path.read_bytes(), story["genesis"].read_bytes())
    assert any(caught.value.field.startswith(f) for f in fields), str(caught.value)
    out = nanum("settlement", "verify", str(path), "--genesis", str(story["genesis"]), code=5)
    assert "verification FAILED" in out.output
    return str(caught.value)


def test_a_changed_amount_fails(story, files, tmp_path):
    def more(d):
        d["lines"][0]["points"] += 1
    _verify_fails(story, files, tmp_path, more, "lines[0].points")

    def more_in_total(d):
        d["totals"]["redeemed"] += 1
        d["totals"]["net"] += 1
    _verify_fails(story, files, tmp_path, more_in_total, "totals.redeemed")

    def more_for_a_centre(d):
        d["lines"][1]["centres"][0]["points"] += 1
    _verify_fails(story, files, tmp_path, more_for_a_centre, "lines[1].centres")


def test_a_dropped_line_fails(story, files, tmp_path):
    def drop(d):
        del d["lines"][1]
    _verify_fails(story, files, tmp_path, drop, "totals", "blocks", "by_centre")

    def drop_and_fix_nothing_else(d):
        d["lines"] = d["lines"][:1]
    _verify_fails(story, files, tmp_path, drop_and_fix_nothing_else, "totals", "blocks", "by_centre")


def test_a_changed_proof_or_entry_fails(story, files, tmp_path):
    def flip_proof(d):
        proof = d["lines"][0]["proof"]
        proof[0] = ("0" if proof[0][0] != "0" else "1") + proof[0][1:]
    assert "not proven" in _verify_fails(story, files, tmp_path, flip_proof, "lines[0].proof")

    def shorten_redemption_proof(d):
        d["lines"][2]["redemption"]["proof"].pop()
    _verify_fails(story, files, tmp_path, shorten_redemption_proof, "lines[2].redemption.proof")

    def other_entry(d):
        d["lines"][0]["entry"], d["lines"][1]["entry"] = d["lines"][1]["entry"], d["lines"][0]["entry"]
    _verify_fails(story, files, tmp_path, other_entry, "lines[0]")


def test_a_weak_checkpoint_or_another_genesis_fails(story, files, tmp_path):
    def minority(d):
        certificate = Certificate.decode(base64.b64decode(d["checkpoint"]["certificate"]))
        weak = Certificate(certificate.height, certificate.block_hash, certificate.signatures[:1])
        d["checkpoint"]["certificate"] = base64.b64encode(weak.encode()).decode()
    assert "majority" in _verify_fails(story, files, tmp_path, minority, "checkpoint.certificate.signatures")
    with pytest.raises(StatementError, match="another consortium"):
        verify_statement(files[1].read_bytes(), TestConsortium().genesis_raw)


def test_periods_outside_the_limits_are_refused(story, tmp_path):
    base = ("settlement", "--client", story["client"], "--partner", story["partner_id"].hex())
    too_long = nanum(*base, "--from", "2026-01-01", "--to", "2027-01-03", code=3)
    assert f"at most {MAX_PERIOD_DAYS} days" in too_long.output
    backwards = nanum(*base, "--from", "2026-12-01", "--to", "2026-11-01", code=3)
    assert "from < to" in backwards.output
    assert "ISO date" in nanum(*base, "--from", "1st of November", "--to", "2026-12-01", code=2).output
    assert "missing --to" in nanum(*base, "--from", "2026-11-01", code=2).output


def test_a_statement_beyond_the_line_limit_is_refused(story, monkeypatch):
    monkeypatch.setattr(settlement, "MAX_STATEMENT_LINES", 2)
    start, end = iso_ms(story["start"]), iso_ms(story["end"])
    out = nanum("settlement", "--client", story["client"], "--partner", story["partner_id"].hex(),
                "--from", start, "--to", end, code=3)
    assert "more than 2 redemptions and refunds" in out.output and "shorter period" in out.output


def test_an_open_period_says_so(story):
    statement = fetch_statement(Session(Path(story["client"])), story["partner_id"], story["start"],
                                story["end"] + DAY_MS)
    assert not statement.period_closed and statement.totals()["lines"] == 3


def _leaves(value, path=()):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _leaves(item, path + (i,))
    else:
        yield path, value


def test_every_value_changed_fails_with_a_named_field(story, files):
    """No value of a statement is left unchecked, and no input raises anything but StatementError."""
    document = json.loads(files[1].read_text())
    genesis = story["genesis"].read_bytes()
    for path, value in _leaves(document):
        for other in (None, "x", -1, 2**70, [], {}, True, value + 1 if isinstance(value, int) else "0" + str(value)):
            if other == value and type(other) is type(value):
                continue
            changed = json.loads(files[1].read_text())
            target = changed
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = other
            with pytest.raises(StatementError):
                verify_statement(json.dumps(changed).encode(), genesis)
    for broken in (b"", b"[]", b"{", b"\xff", json.dumps({**document, "version": 2}).encode(),
                   files[1].read_bytes().replace(b'"points": 35', b'"points": 35.0')):
        with pytest.raises(StatementError):
            verify_statement(broken, genesis)


def test_without_files_the_statement_is_printed(story):
    out = nanum("settlement", "--client", story["client"], "--partner", story["partner_id"].hex(),
                "--from", iso_ms(story["start"]), "--to", iso_ms(story["end"])).output
    assert out.count(" redeem ") == 2 and out.count(" refund ") == 1 and "-       10" in out
    assert "net 40 points" in out and "note:" not in out
