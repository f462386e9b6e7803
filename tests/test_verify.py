"""Tests of the verifier: a whole chain with every kind of transaction verifies with exact
totals, and every tamper is found at the right place (height, transaction index, field).

The chain (built once, on a real LMDB store, with a commit certificate per block):

    block 1  register alice at A, bob at A, carol at B
    block 2  deposits: alice 100 at A (d1), alice 50 at B (d2), bob 30 at A (d3), carol 70 at B (d4)
    block 3  bookstore redeems 120 of alice's (r1): 50 from B, then 70 from A
    block 4  bookstore refunds 20 of r1: back to A (last drawn, first returned)
    block 5  A reverses d3
    block 6  venue redeems 40 of carol's (r2); rejected: a deposit written by the bookstore,
             a redemption beyond bob's points, d1 again (EXISTS), d1's id with other content
    block 7  admins admit centre C; a one-signature governance (INSUFFICIENT_APPROVALS)
    block 8  C deposits 25 for bob (d5); venue refunds all 40 of r2
    block 9  rejected: another refund of r2, reversing d3 again; venue redeems 10 of alice's (r3)
    block 10 the venue is retired; B deposits 5 for alice (d6)

B's party id sorts before A's (checked), and redemptions draw buckets in ascending id order.

Problem.height is the height of the block where the chain breaks, i.e. the position in the
sequence being verified, whatever a tampered header claims.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import random
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.block import Block, decode_block, decode_entry, encode_entry, genesis_block
from ledger.certificate import Certificate, endorse
from ledger.codes import Code
from ledger.encoding import decode, encode
from ledger.genesis import build_genesis
from ledger.ledger import Ledger
from ledger.merkle import leaf_hash
from ledger.state import BUCKET, MEMBER, MemoryState, TxRecord
from ledger.limits import MAX_BLOCK_BYTES
from ledger.store import Store, StoreError, compress_block, u64
from ledger.tx import Genesis, GovernanceAction, Role, Tx, decode_tx, make_tx
from ledger.verify import CentreTotals, Problem, check_store, verify_chain, verify_store
from tests.consortium import GENESIS_TIME_MS, TestConsortium, key

SEED = int(os.environ.get("NANUM_TEST_SEED", "424242"))


def time_of(height: int) -> int:
    return GENESIS_TIME_MS + height * 60_000


@dataclass
class Chain:
    consortium: TestConsortium
    genesis: bytes
    blocks: list[bytes]              # blocks[h - 1] is block h
    certificates: list[bytes]
    txs: dict[str, Tx]
    layout: list[list[str]]          # tx names per block, from block 1
    store_path: Path

    def block(self, height: int) -> bytes:
        return self.blocks[height - 1]

    def where(self, name: str) -> tuple[int, int]:
        for height, names in enumerate(self.layout, start=1):
            if name in names:
                return height, names.index(name)
        raise KeyError(name)

    def with_block(self, height: int, raw: bytes) -> list[bytes]:
        blocks = list(self.blocks)
        blocks[height - 1] = raw
        return blocks

    def certified(self, blocks: list[bytes] | None = None) -> list[tuple[bytes, bytes]]:
        return list(zip(blocks or self.blocks, self.certificates))


@pytest.fixture(scope="module")
def chain(tmp_path_factory) -> Chain:
    c = TestConsortium()
    centre_a, centre_b = c.centres
    bookstore, venue = c.partners
    assert centre_b.party_id < centre_a.party_id, "the story assumes B's id sorts before A's"
    centre_c = key("centre-c")
    alice, bob, carol = (c.member(n) for n in ("alice", "bob", "carol"))
    t: dict[str, Tx] = {}
    t["reg_alice"], t["reg_bob"] = c.register(alice), c.register(bob)
    t["reg_carol"] = c.register(carol, centre=1)
    t["d1"], t["d2"] = c.deposit(alice, 100), c.deposit(alice, 50, centre=1)
    t["d3"], t["d4"] = c.deposit(bob, 30), c.deposit(carol, 70, centre=1)
    t["r1"] = c.redeem(c.voucher(alice, 150), 120)
    t["refund_r1"] = c.refund(t["r1"].tx_id, 20)
    t["reverse_d3"] = c.reverse(t["d3"].tx_id)
    t["r2"] = c.redeem(c.voucher(carol, 40, partner=1), 40, partner=1)
    t["deposit_by_partner"] = c.deposit(bob, 5, author=bookstore)
    t["redeem_too_much"] = c.redeem(c.voucher(bob, 5), 5)
    t["d1_other"] = c.deposit(alice, 1, tx_id=t["d1"].tx_id)
    t["admit_c"] = c.governance(GovernanceAction.ADMIT, Role.CENTRE, centre_c, name="centre-c")
    t["one_signature"] = c.governance(GovernanceAction.ADMIT, Role.PARTNER, key("partner-x"),
                                      signers=1, name="partner-x")
    t["d5"] = c.deposit(bob, 25, author=centre_c)
    t["refund_r2"] = c.refund(t["r2"].tx_id, 40, partner=1)
    t["refund_r2_again"] = c.refund(t["r2"].tx_id, 1, partner=1)
    t["reverse_d3_again"] = c.reverse(t["d3"].tx_id)
    t["r3"] = c.redeem(c.voucher(alice, 10, partner=1), 10, partner=1)
    t["retire_venue"] = c.governance(GovernanceAction.RETIRE, Role.PARTNER, venue)
    t["d6"] = c.deposit(alice, 5, centre=1)
    layout = [["reg_alice", "reg_bob", "reg_carol"], ["d1", "d2", "d3", "d4"], ["r1"],
              ["refund_r1"], ["reverse_d3"],
              ["r2", "deposit_by_partner", "redeem_too_much", "d1", "d1_other"],
              ["admit_c", "one_signature"], ["d5", "refund_r2"],
              ["refund_r2_again", "reverse_d3_again", "r3"], ["retire_venue", "d6"]]
    expected_rejections = {
        (6, 1): Code.NOT_AUTHORISED, (6, 2): Code.INSUFFICIENT_POINTS, (6, 3): Code.EXISTS,
        (6, 4): Code.EXISTS_WITH_DIFFERENT_FIELDS, (7, 1): Code.INSUFFICIENT_APPROVALS,
        (9, 0): Code.REDEMPTION_FULLY_REFUNDED, (9, 1): Code.DEPOSIT_ALREADY_REVERSED,
    }
    store_path = tmp_path_factory.mktemp("verify") / "store"
    ledger = Ledger.create(store_path, c.genesis_raw)
    blocks, certificates = [], []
    for height, names in enumerate(layout, start=1):
        executed = ledger.build([t[n] for n in names], time_of(height))
        for index, code in enumerate(executed.codes):
            assert code == expected_rejections.get((height, index), Code.OK), (height, index, code)
        block_hash = executed.block.hash
        certificate = Certificate.build(height, block_hash, [
            (node.public_key, endorse(node, executed.block.header)) for node in c.nodes[:2]
        ]).encode()
        ledger.commit(executed, certificate)
        blocks.append(executed.block.encode())
        certificates.append(certificate)
    ledger.close()
    return Chain(c, c.genesis_raw, blocks, certificates, t, layout, store_path)


def assert_problem(report, height: int, index: int | None, field: str, reason: str = "") -> Problem:
    assert not report.ok, "the tamper was not found"
    problem = report.problem
    assert (problem.height, problem.index) == (height, index), f"found at the wrong place: {problem}"
    assert problem.field.startswith(field), f"wrong field: {problem}"
    assert reason in problem.reason, f"wrong reason: {problem}"
    return problem


def flip(raw: bytes, position: int, mask: int = 0x01) -> bytes:
    return raw[:position] + bytes([raw[position] ^ mask]) + raw[position + 1:]


def position_in_tx(block_raw: bytes, tx: Tx, needle: bytes) -> int:
    """Where ``needle`` (a field's bytes) lies inside ``tx`` inside the encoded block."""
    start = block_raw.find(tx.raw)
    offset = tx.raw.find(needle)
    assert start >= 0 and offset >= 0 and block_raw.count(tx.raw) == 1
    return start + offset


# --- an untampered chain --------------------------------------------------------------------


def test_the_chain_verifies_with_exact_counts_and_totals(chain):
    c = chain.consortium
    centre_a, centre_b = (k.party_id for k in c.centres)
    centre_c = key("centre-c").party_id
    bookstore, venue = (k.party_id for k in c.partners)
    report = verify_chain(chain.genesis, chain.blocks)
    assert report.ok and report.problem is None
    last = decode_block(chain.blocks[-1]).header
    assert report.blocks == 11                   # block 0 counts
    assert report.transactions == 25             # 24 in blocks 1..10, plus the genesis transaction
    assert report.members == 3
    assert (report.head_hash, report.tree_size, report.tree_root) == (last.hash(), 25, last.tree_root)
    assert report.centres == {
        centre_a: CentreTotals(deposited=130, reversed=30, redeemed=80, refunded=20, outstanding=40),
        centre_b: CentreTotals(deposited=125, reversed=0, redeemed=90, refunded=40, outstanding=75),
        centre_c: CentreTotals(deposited=25, reversed=0, redeemed=0, refunded=0, outstanding=25),
    }
    assert all(totals.balanced for totals in report.centres.values())
    assert report.redeemed_by_partner == {bookstore: 100, venue: 10}


def test_the_chain_verifies_with_its_certificates(chain):
    report = verify_chain(chain.genesis, chain.certified(), require_certificates=True)
    assert report.ok, report.problem
    assert report.blocks == 11


def test_a_prefix_of_the_chain_verifies(chain):
    report = verify_chain(chain.genesis, chain.blocks[:3])
    assert report.ok and report.blocks == 4 and report.transactions == 9
    report = verify_chain(chain.genesis, [])
    assert report.ok and report.blocks == 1 and report.members == 0


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_left_as_the_caller_had_it(chain, enabled):
    """The replay pauses the cyclic collector (a speed measure); a good or a failing replay
    must give it back in the state it found it."""
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        frozen = gc.get_freeze_count()
        assert verify_chain(chain.genesis, chain.blocks).ok
        assert gc.isenabled() is enabled
        assert gc.get_freeze_count() == frozen      # freezing is only for callers that ask
        assert not verify_chain(chain.genesis, [chain.blocks[1]]).ok
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


def test_centre_totals_balance_only_when_conserved():
    assert CentreTotals(10, 2, 5, 1, 4).balanced
    assert not CentreTotals(10, 2, 5, 1, 5).balanced


# --- tampered transactions ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["d3", "r1", "reverse_d3", "d1_other", "refund_r2"])
def test_a_flipped_signature_byte_is_found_at_its_transaction(chain, name):
    height, index = chain.where(name)
    tx = chain.txs[name]
    raw = chain.block(height)
    position = position_in_tx(raw, tx, tx.signature) + 17
    report = verify_chain(chain.genesis, chain.with_block(height, flip(raw, position)))
    assert_problem(report, height, index, "signature", "BAD_SIGNATURE")


def test_a_flipped_approval_signature_is_found(chain):
    height, index = chain.where("admit_c")
    tx = chain.txs["admit_c"]
    raw = chain.block(height)
    position = position_in_tx(raw, tx, tx.approvals[0].signature) + 40
    report = verify_chain(chain.genesis, chain.with_block(height, flip(raw, position)))
    assert_problem(report, height, index, "approvals[0].signature", "BAD_SIGNATURE")


def _payload_field(chain: Chain, name: str, field: str) -> bytes:
    c, t = chain.consortium, chain.txs
    return {
        ("d2", "member_id"): c.member("alice").party_id,
        ("d2", "activity_ref"): b"VOL-0001",
        ("r1", "voucher.nonce"): t["r1"].payload.voucher.nonce,
        ("r1", "voucher.signature"): t["r1"].payload.voucher.signature,
        ("refund_r1", "redemption_id"): t["r1"].tx_id,
        ("reverse_d3", "deposit_id"): t["d3"].tx_id,
        ("admit_c", "public_key"): key("centre-c").public_key,
        ("d5", "author"): key("centre-c").public_key,
    }[(name, field)]


@pytest.mark.parametrize("name,field", [
    ("d2", "member_id"), ("d2", "activity_ref"), ("r1", "voucher.nonce"),
    ("r1", "voucher.signature"), ("refund_r1", "redemption_id"), ("reverse_d3", "deposit_id"),
    ("admit_c", "public_key"), ("d5", "author"),
])
@pytest.mark.parametrize("mask", [0x01, 0x80])
def test_a_flipped_payload_byte_is_found_at_its_transaction(chain, name, field, mask):
    height, index = chain.where(name)
    raw = chain.block(height)
    position = position_in_tx(raw, chain.txs[name], _payload_field(chain, name, field)) + 3
    report = verify_chain(chain.genesis, chain.with_block(height, flip(raw, position, mask)))
    problem = assert_problem(report, height, index, "")
    # A flipped key byte mostly leaves the curve or the subgroup: the key rule finds it first.
    assert problem.reason.startswith(("BAD_SIGNATURE", "MALFORMED", "INVALID_KEY")), problem
    assert problem.field in ("signature", "tx", "author") or problem.field.startswith("payload"), problem


def recode(raw: bytes, index: int, code: Code) -> bytes:
    block = decode_block(raw)
    entries = list(block.entries)
    tx_raw, _ = decode_entry(entries[index])
    entries[index] = encode_entry(tx_raw, code)
    return Block(block.header, tuple(entries)).encode()


@pytest.mark.parametrize("name,code", [
    ("d1", Code.UNKNOWN_MEMBER),                     # an accepted deposit recorded as refused
    ("deposit_by_partner", Code.OK),                 # a refused one recorded as accepted
    ("one_signature", Code.NOT_AUTHORISED),          # one refusal swapped for another
    ("r3", Code.INSUFFICIENT_POINTS),
])
def test_a_changed_result_code_is_found_at_its_transaction(chain, name, code):
    height, index = chain.where(name)
    report = verify_chain(chain.genesis, chain.with_block(height, recode(chain.block(height), index, code)))
    assert_problem(report, height, index, "code")


# --- tampered headers and blocks ------------------------------------------------------------


def reheader(raw: bytes, **changes) -> bytes:
    block = decode_block(raw)
    return Block(dataclasses.replace(block.header, **changes), block.entries).encode()


def _bump(value: bytes) -> bytes:
    return flip(value, len(value) // 2)


@pytest.mark.parametrize("height", [1, 5, 10])
@pytest.mark.parametrize("field", ["prev_hash", "time_ms", "tx_count", "tree_size", "tree_root",
                                   "state_root", "chain_id", "height"])
def test_a_changed_header_field_is_found_at_its_block(chain, height, field):
    header = decode_block(chain.block(height)).header
    previous = decode_block(chain.block(height - 1)).header if height > 1 else \
        decode_block(chain.genesis).header
    value = {
        "prev_hash": _bump(header.prev_hash),
        "time_ms": previous.time_ms - 1,
        "tx_count": header.tx_count + 1,
        "tree_size": header.tree_size + 1,
        "tree_root": _bump(header.tree_root),
        "state_root": _bump(header.state_root),
        "chain_id": _bump(header.chain_id),
        "height": header.height + 2,
    }[field]
    report = verify_chain(chain.genesis, chain.with_block(height, reheader(chain.block(height), **{field: value})))
    assert_problem(report, height, None, f"header.{field}")


def test_a_later_time_in_a_middle_block_breaks_the_next_link(chain):
    # A later time changes no result here, so only the hash link to block 6 shows it.
    raw = reheader(chain.block(5), time_ms=time_of(5) + 1)
    report = verify_chain(chain.genesis, chain.with_block(5, raw))
    assert_problem(report, 6, None, "header.prev_hash")
    # with certificates, block 5 itself is no longer the block the nodes endorsed
    report = verify_chain(chain.genesis, chain.certified(chain.with_block(5, raw)), require_certificates=True)
    assert_problem(report, 5, None, "certificate.block_hash")


def test_a_dropped_block_is_found_where_the_chain_breaks(chain):
    blocks = chain.blocks[:3] + chain.blocks[4:]            # block 4 is missing
    report = verify_chain(chain.genesis, blocks)
    assert_problem(report, 4, None, "header.")


def test_two_swapped_blocks_are_found_where_the_chain_breaks(chain):
    blocks = list(chain.blocks)
    blocks[3], blocks[4] = blocks[4], blocks[3]             # block 5 then block 4
    report = verify_chain(chain.genesis, blocks)
    assert_problem(report, 4, None, "header.")


@pytest.mark.parametrize("cut", [1, 10, 100, "half"])
def test_a_truncated_block_is_found(chain, cut):
    raw = chain.block(6)
    keep = len(raw) // 2 if cut == "half" else len(raw) - cut
    report = verify_chain(chain.genesis, chain.with_block(6, raw[:keep]))
    assert_problem(report, 6, None, "")


@pytest.mark.parametrize("garbage", [b"", b"\xc1", b"\x92\x00\x00", "random"])
def test_garbage_as_a_block_is_found(chain, garbage):
    if garbage == "random":
        garbage = random.Random(SEED).randbytes(300)
    report = verify_chain(chain.genesis, chain.with_block(7, garbage))
    assert_problem(report, 7, None, "")


def test_a_block_from_another_chain_is_found(chain):
    other = TestConsortium(threshold=3)
    ledger = Ledger.in_memory(other.genesis_raw)
    executed = ledger.build([other.register(other.member("alice"))], time_of(1))
    report = verify_chain(chain.genesis, [executed.block.encode()] + chain.blocks[1:])
    assert_problem(report, 1, None, "header.chain_id")


# --- tampered genesis -----------------------------------------------------------------------


def genesis_tx_of(raw: bytes) -> Tx:
    return decode_tx(decode(decode_block(raw).entries[0])[0])


def genesis_block_with(tx: Tx) -> bytes:
    """Block 0 around ``tx`` with every header field as it should be, without checking ``tx``."""
    entry = encode_entry(tx.raw, Code.OK)
    honest = genesis_block(genesis_tx_of(TestConsortium().genesis_raw), MemoryState()).block
    return Block(dataclasses.replace(honest.header, tree_root=leaf_hash(entry)), (entry,)).encode()


def test_a_flipped_genesis_signature_is_found(chain):
    tx = genesis_tx_of(chain.genesis)
    position = chain.genesis.find(tx.signature) + 5
    report = verify_chain(flip(chain.genesis, position), chain.blocks)
    assert_problem(report, 0, 0, "signature", "BAD_SIGNATURE")
    position = chain.genesis.find(tx.approvals[0].signature) + 60
    report = verify_chain(flip(chain.genesis, position), chain.blocks)
    assert_problem(report, 0, 0, "approvals[0].signature", "BAD_SIGNATURE")


def test_a_genesis_below_its_threshold_is_found(chain):
    honest = genesis_tx_of(chain.genesis)
    admins = chain.consortium.admins
    payload: Genesis = honest.payload
    assert payload.threshold == 2
    alone = make_tx(admins[0], honest.tx_id, honest.tx_id, payload)
    report = verify_chain(genesis_block_with(alone), [])
    assert_problem(report, 0, 0, "approvals", "INSUFFICIENT_APPROVALS")
    # the honest genesis, rebuilt by the same helper, verifies: the helper adds no other fault
    assert verify_chain(genesis_block_with(honest), chain.blocks).ok


def test_a_genesis_signed_by_a_stranger_is_found(chain):
    honest = genesis_tx_of(chain.genesis)
    admins = chain.consortium.admins
    forged = make_tx(admins[0], honest.tx_id, honest.tx_id, honest.payload, approvers=(key("mallory"),))
    report = verify_chain(genesis_block_with(forged), chain.blocks)
    assert_problem(report, 0, 0, "approvals", "NOT_AUTHORISED")


def test_a_genesis_for_another_consortium_does_not_anchor_this_chain(chain):
    other = build_genesis("Another bank", GENESIS_TIME_MS, 1, [(key("admin-x"), "x")],
                          [(key("centre-x").public_key, "cx")], [],
                          [(key("node-x").public_key, "n", "127.0.0.1:1")])
    report = verify_chain(other, chain.blocks)
    assert_problem(report, 1, None, "header.chain_id")


@pytest.mark.parametrize("field", ["time_ms", "state_root", "tree_root", "height", "prev_hash"])
def test_a_changed_genesis_header_is_found(chain, field):
    header = decode_block(chain.genesis).header
    value = {"time_ms": header.time_ms + 1, "state_root": _bump(header.state_root),
             "tree_root": _bump(header.tree_root), "height": 1,
             "prev_hash": _bump(header.prev_hash)}[field]
    report = verify_chain(reheader(chain.genesis, **{field: value}), chain.blocks)
    assert_problem(report, 0, None, f"header.{field}")


def test_a_genesis_whose_id_is_not_its_chain_id_is_found(chain):
    honest = genesis_tx_of(chain.genesis)
    admins = chain.consortium.admins
    renamed = make_tx(admins[0], honest.tx_id, bytes(16), honest.payload, approvers=(admins[1],))
    report = verify_chain(genesis_block_with(renamed), chain.blocks)
    assert_problem(report, 0, 0, "tx_id", "MALFORMED")


# --- a flipped byte anywhere ----------------------------------------------------------------


def _entry_spans(raw: bytes) -> list[tuple[int, int]]:
    block = decode_block(raw)
    spans, start = [], len(encode(block.header.to_wire())) + 1
    for entry in block.entries:
        begin = raw.index(entry, start)
        spans.append((begin, begin + len(entry)))
        start = begin + len(entry)
    return spans


def test_a_flipped_byte_anywhere_is_found_and_located(chain):
    """Seeded flips over every block (certificates given, so a header change that alters no
    result is still caught at its own block). Every flip must be found at its block, and a
    flip inside transaction i's entry at transaction i."""
    rng = random.Random(SEED)
    failures = []
    flips = 300
    for _ in range(flips):
        height = rng.randint(1, len(chain.blocks))
        raw = chain.block(height)
        position, mask = rng.randrange(len(raw)), rng.randint(1, 255)
        report = verify_chain(chain.genesis, chain.certified(chain.with_block(height, flip(raw, position, mask))),
                              require_certificates=True)
        spans = _entry_spans(raw)
        inside = [i for i, (begin, end) in enumerate(spans) if begin <= position < end]
        what = f"block {height} byte {position} ^ {mask:#04x}"
        if report.ok:
            failures.append(f"{what}: not found")
        elif report.problem.height != height:
            failures.append(f"{what}: found at {report.problem}")
        elif inside and report.problem.index != inside[0]:
            failures.append(f"{what} (inside transaction {inside[0]}): found at {report.problem}")
        elif not inside and report.problem.index is not None and report.problem.field != "code":
            failures.append(f"{what} (outside the transactions): found at {report.problem}")
    assert not failures, (f"NANUM_TEST_SEED={SEED}: {len(failures)} of {flips} flips missed or "
                          "misplaced:\n" + "\n".join(failures))


def test_a_flipped_certificate_byte_is_found_at_its_block(chain):
    rng = random.Random(SEED + 1)
    for _ in range(20):
        height = rng.randint(1, len(chain.certificates))
        certificates = list(chain.certificates)
        position = rng.randrange(len(certificates[height - 1]))
        certificates[height - 1] = flip(certificates[height - 1], position, rng.randint(1, 255))
        report = verify_chain(chain.genesis, list(zip(chain.blocks, certificates)), require_certificates=True)
        assert_problem(report, height, None, "certificate")


# --- several faults in one block: the first in FORMAT.md §10's order is the one reported -------


def _spoil_signature(chain: Chain, raw: bytes, name: str) -> bytes:
    tx = chain.txs[name]
    return flip(raw, position_in_tx(raw, tx, tx.signature) + 17)


def test_the_header_link_is_reported_before_a_bad_transaction(chain):
    raw = reheader(chain.block(6), prev_hash=_bump(decode_block(chain.block(6)).header.prev_hash))
    report = verify_chain(chain.genesis, chain.with_block(6, _spoil_signature(chain, raw, "r2")))
    assert_problem(report, 6, None, "header.prev_hash")


def test_every_static_check_comes_before_the_replay_so_a_later_bad_signature_is_reported_first(chain):
    raw = _spoil_signature(chain, recode(chain.block(6), 1, Code.OK), "d1_other")
    assert chain.where("d1_other") == (6, 4)
    report = verify_chain(chain.genesis, chain.with_block(6, raw))
    assert_problem(report, 6, 4, "signature", "BAD_SIGNATURE")


def test_of_two_bad_transactions_the_first_is_reported(chain):
    raw = _spoil_signature(chain, _spoil_signature(chain, chain.block(6), "d1_other"), "deposit_by_partner")
    assert_problem(verify_chain(chain.genesis, chain.with_block(6, raw)), 6, 1, "signature")


def test_a_wrong_result_code_is_reported_before_the_header_fields_it_changes(chain):
    raw = recode(chain.block(6), 3, Code.OK)
    header = decode_block(raw).header
    raw = reheader(raw, tree_root=_bump(header.tree_root), state_root=_bump(header.state_root))
    report = verify_chain(chain.genesis, chain.with_block(6, raw))
    assert_problem(report, 6, 3, "code")
    earlier_too = recode(raw, 2, Code.OK)                       # then the first wrong code of the two
    assert_problem(verify_chain(chain.genesis, chain.with_block(6, earlier_too)), 6, 2, "code")


def test_header_fields_are_compared_in_their_documented_order(chain):
    header = decode_block(chain.block(6)).header
    both = reheader(chain.block(6), tx_count=header.tx_count + 1, state_root=_bump(header.state_root))
    assert_problem(verify_chain(chain.genesis, chain.with_block(6, both)), 6, None, "header.tx_count")
    roots = reheader(chain.block(6), tree_root=_bump(header.tree_root), state_root=_bump(header.state_root))
    assert_problem(verify_chain(chain.genesis, chain.with_block(6, roots)), 6, None, "header.tree_root")


def test_the_block_is_reported_before_its_certificate(chain):
    header = decode_block(chain.block(6)).header
    blocks = chain.with_block(6, reheader(chain.block(6), state_root=_bump(header.state_root)))
    certificates = list(chain.certificates)
    certificates[5] = flip(certificates[5], len(certificates[5]) - 1)
    report = verify_chain(chain.genesis, list(zip(blocks, certificates)), require_certificates=True)
    assert_problem(report, 6, None, "header.state_root")
    report = verify_chain(chain.genesis, list(zip(chain.blocks, certificates)), require_certificates=True)
    assert_problem(report, 6, None, "certificate.signatures[1].signature")


# --- node stores ----------------------------------------------------------------------------


@pytest.fixture
def store(chain, tmp_path):
    """A private copy of the chain's LMDB store, to tamper with."""
    path = tmp_path / "store"
    shutil.copytree(chain.store_path, path)
    with Store(path) as opened:
        yield opened


def write(store: Store, db: str, key_bytes: bytes, value: bytes | None) -> None:
    handle = store.env.open_db(db.encode())
    with store.env.begin(write=True) as txn:
        if value is None:
            assert txn.delete(key_bytes, db=handle)
        else:
            assert txn.get(key_bytes, db=handle) is not None
            txn.put(key_bytes, value, db=handle)


def test_an_untampered_store_verifies(store, chain):
    report = verify_store(store)
    assert report.ok, report.problem
    reference = verify_chain(chain.genesis, chain.blocks)
    assert (report.blocks, report.transactions, report.members, report.head_hash, report.centres,
            report.redeemed_by_partner) == (reference.blocks, reference.transactions, reference.members,
                                            reference.head_hash, reference.centres,
                                            reference.redeemed_by_partner)


def test_a_balance_changed_in_the_state_database_is_found(store, chain):
    alice = chain.consortium.member("alice").party_id
    centre_a = chain.consortium.centres[0].party_id
    with store.reader() as r:
        assert decode(r.get(BUCKET + alice + centre_a)) == 40
    write(store, "state", BUCKET + alice + centre_a, encode(41))
    report = verify_store(store)
    assert_problem(report, 10, None, f"state[bucket:{(alice + centre_a).hex()}]")


def test_a_deleted_state_entry_is_found(store, chain):
    carol = chain.consortium.member("carol").party_id
    write(store, "state", MEMBER + carol, None)
    report = verify_store(store)
    assert_problem(report, 10, None, f"state[member:{carol.hex()}]")


def test_a_changed_transaction_record_is_found(store, chain):
    d1 = chain.txs["d1"].tx_id
    record = store.tx_record(d1)
    assert record.code == Code.OK
    write(store, "txs", d1, dataclasses.replace(record, index=record.index + 1).stored_bytes())
    report = verify_store(store)
    assert_problem(report, 10, None, f"txs[{d1.hex()}]")


def test_a_changed_state_vector_is_found(store):
    with store.reader() as r:
        vector = r.state_vector()
    write(store, "meta", b"state_vector", flip(vector, 1000))
    report = verify_store(store)
    assert_problem(report, 10, None, "meta.state_vector")


def test_a_flipped_byte_in_a_stored_block_is_found_at_its_height(store, chain):
    height, index = chain.where("r1")
    raw = chain.block(height)
    write(store, "blocks", u64(height),
          compress_block(flip(raw, position_in_tx(raw, chain.txs["r1"], chain.txs["r1"].signature))))
    report = verify_store(store)
    assert_problem(report, height, index, "signature", "BAD_SIGNATURE")


@pytest.mark.parametrize("damage", ["a flipped byte", "cut short", "trailing bytes", "too big"])
def test_stored_block_bytes_that_do_not_decompress_are_found_at_their_height(store, chain, damage):
    raw = chain.block(4)
    stored = compress_block(raw)
    changed = {"a flipped byte": flip(stored, len(stored) // 2), "cut short": stored[:-5],
               "trailing bytes": stored + b"\x00", "too big": zlib.compress(bytes(MAX_BLOCK_BYTES + 1))}[damage]
    write(store, "blocks", u64(4), changed)
    assert_problem(verify_store(store), 4, None, "blocks")
    quick = check_store(store)
    assert quick is not None and (quick.height, quick.field) == (4, "blocks")
    with pytest.raises(StoreError, match="stored block 4 does not decompress"):
        store.block(4)


def _leaf_place(chain, name: str) -> tuple[int, int, int, int]:
    """(height, index, leaf, partner leaf) of a named transaction."""
    height, index = chain.where(name)
    header = decode_block(chain.block(height)).header
    leaf = header.tree_size - header.tx_count + index
    return height, index, leaf, leaf ^ 1


@pytest.mark.parametrize("name", ["d1", "d2", "r1", "refund_r1", "reverse_d3", "d5", "d6"])
def test_the_quick_check_finds_a_changed_entry_of_a_recent_block(store, chain, name):
    """The store keeps no leaves; the quick check hashes each entry of the newest blocks and
    compares it, with its pair's other leaf, to the stored level-1 node. A changed entry whose
    pair lies in its own block is named exactly; across a block boundary the message names both
    sides; the unpaired last leaf of the tree is checked against the head's tree root."""
    height, index, leaf, partner = _leaf_place(chain, name)
    raw = chain.block(height)
    tx = chain.txs[name]
    write(store, "blocks", u64(height), compress_block(flip(raw, position_in_tx(raw, tx, tx.signature))))
    problem = check_store(store)
    assert problem is not None, "the changed entry was not found"
    head = decode_block(chain.block(len(chain.blocks))).header
    first_leaf = leaf - index
    if partner >= head.tree_size:
        assert (problem.height, problem.index, problem.field) == (head.height, index, "entry"), problem
        assert "unpaired last leaf" in problem.reason
    elif first_leaf <= partner < first_leaf + decode_block(raw).header.tx_count:
        pair = {(height, index, f"(entry {partner - first_leaf})"), (height, partner - first_leaf, f"(entry {index})")}
        assert problem.field == "entry" and any((problem.height, problem.index) == (h, i) and text in problem.reason
                                                for h, i, text in pair), problem
    elif problem.height == height:
        assert (problem.index, problem.field) == (index, "entry") and f"leaf {partner}, in a neighbouring" \
            in problem.reason, problem
    else:       # the newer block of the two is checked first, and names this leaf as its pair
        assert problem.field == "entry" and f"leaf {leaf}, in a neighbouring" in problem.reason, problem
    assert verify_store(store).problem.height == height     # the full check names the block itself


def test_a_deleted_stored_block_is_found_at_its_height(store):
    write(store, "blocks", u64(4), None)
    report = verify_store(store)
    assert_problem(report, 4, None, "")


def test_a_stored_record_of_a_transaction_never_made_is_found(store, chain):
    ghost = b"\x42" * 16
    handle = store.env.open_db(b"txs")
    with store.env.begin(write=True) as txn:
        txn.put(ghost, TxRecord(3, 0, 6, bytes(32), 0).stored_bytes(), db=handle)
    report = verify_store(store)
    assert_problem(report, 10, None, f"txs[{ghost.hex()}]")


# --- the quick check on damaged stored Merkle nodes (level 1 in groups; no stored leaves) -----


def _pairs_key_of_head(store: Store) -> bytes:
    from ledger.store import NODES_PER_GROUP
    tree_size = store.head().header.tree_size
    return u64((tree_size // 2 - 1) // NODES_PER_GROUP)


@pytest.mark.parametrize("damage", ["deleted", "cut to a shorter multiple of 32", "not a multiple of 32"])
def test_a_damaged_group_of_stored_merkle_nodes_is_named_not_unreadable(store, damage):
    """A missing or damaged group of level-1 nodes is a problem at the head (field merkle or
    entry), never the bare 'unreadable' a stray KeyError or StoreError used to make, which
    also made `node check --full` skip its replay."""
    key, head_height = _pairs_key_of_head(store), store.height()
    with store.reader() as r:
        value = r._txn.get(key, db=store._db["pairs"])
    write(store, "pairs", key, {"deleted": None, "cut to a shorter multiple of 32": value[:32],
                                "not a multiple of 32": value[:-1]}[damage])
    problem = check_store(store)
    assert problem is not None and problem.field in ("merkle", "entry"), problem
    assert problem.height == head_height, problem


def test_a_block_start_index_naming_the_wrong_block_is_a_store_error(store):
    """Leaves are hashed from the block the `starts` table names; a wrong entry there must not
    silently give another entry's hash to proofs."""
    with store.reader() as r:
        cursor = r._txn.cursor(db=store._db["starts"])
        (first_key, _), (second_key, second_height) = list(cursor)[1:3]
    write(store, "starts", second_key, u64(int.from_bytes(second_height, "big") - 1))
    with store.reader() as r, pytest.raises(StoreError, match="block-start index puts leaf"):
        r.merkle_node(0, int.from_bytes(second_key, "big"))


def test_a_stored_block_that_does_not_decode_is_a_store_error_for_its_transactions(store, chain):
    height, index = chain.where("d1")
    write(store, "blocks", u64(height), compress_block(b"\x92\x01"))
    with pytest.raises(StoreError, match=f"stored block {height} does not decode"):
        store.tx_record(chain.txs["d1"].tx_id)
