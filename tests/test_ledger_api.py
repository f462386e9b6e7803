"""Tests of the Ledger's read API on a real LMDB store: balances, transaction lookup with
inclusion proofs, history with pagination, and consistency proofs between checkpoints.

One chain is built once (module fixture) and only read by the tests. Its story, with the
leaf index of every entry (leaf 0 is the genesis transaction):

    block 1  register alice at A [1], register bob at B [2]
    block 2  deposit alice 100 at A [3], alice 40 at B [4], bob 10 at B [5]
    block 3  bookstore redeems 60 of alice's [6]; venue redeems all 10 of bob's [7]
    block 4  bookstore refunds 25 of alice's redemption [8]
    block 5  deposit alice 30 at B [9]
    block 6  B reverses that deposit [10]; B reverses the 40 deposit -> INSUFFICIENT_POINTS [11]
    block 7  the 100 deposit again -> EXISTS [12]; venue refunds the bookstore's redemption
             -> NOT_AUTHORISED [13]

Redemptions draw buckets in ascending centre-id order, and B's id sorts before A's (checked),
so alice's 60 are 40 from B then 20 from A, and the 25 refunded go back 20 to A then 5 to B.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from ledger.block import decode_block, decode_entry
from ledger.codes import Code
from ledger.ledger import Ledger
from ledger.merkle import ProofError, leaf_hash, verify_consistency, verify_inclusion
from ledger.tx import Deposit, Redeem, Refund, RegisterMember, Reversal, Tx, TxKind
from tests.consortium import GENESIS_TIME_MS, TestConsortium


@dataclass
class Story:
    ledger: Ledger
    consortium: TestConsortium
    txs: dict[str, Tx]
    blocks: list[list[str]]          # names per block, from block 1
    codes: dict[str, Code]


def time_of(height: int) -> int:
    return GENESIS_TIME_MS + height * 60_000


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> Story:
    c = TestConsortium()
    centre_a, centre_b = c.centres
    assert centre_b.party_id < centre_a.party_id, "the story assumes B's id sorts before A's"
    alice, bob = c.member("alice"), c.member("bob")
    txs: dict[str, Tx] = {}
    txs["reg_alice"] = c.register(alice, centre=0)
    txs["reg_bob"] = c.register(bob, centre=1)
    txs["dep_a100"] = c.deposit(alice, 100, centre=0)
    txs["dep_b40"] = c.deposit(alice, 40, centre=1)
    txs["dep_bob10"] = c.deposit(bob, 10, centre=1)
    txs["redeem_alice"] = c.redeem(c.voucher(alice, 80, partner=0), 60, partner=0)
    txs["redeem_bob"] = c.redeem(c.voucher(bob, 10, partner=1), 10, partner=1)
    txs["refund_alice"] = c.refund(txs["redeem_alice"].tx_id, 25, partner=0)
    txs["dep_b30"] = c.deposit(alice, 30, centre=1)
    txs["reverse_b30"] = c.reverse(txs["dep_b30"].tx_id, centre=1)
    txs["reverse_b40"] = c.reverse(txs["dep_b40"].tx_id, centre=1)
    txs["refund_by_venue"] = c.refund(txs["redeem_alice"].tx_id, 5, partner=1)
    blocks = [["reg_alice", "reg_bob"], ["dep_a100", "dep_b40", "dep_bob10"],
              ["redeem_alice", "redeem_bob"], ["refund_alice"], ["dep_b30"],
              ["reverse_b30", "reverse_b40"], ["dep_a100", "refund_by_venue"]]
    ledger = Ledger.create(tmp_path_factory.mktemp("api") / "store", c.genesis_raw)
    recorded: dict[tuple[int, int], Code] = {}
    for height, names in enumerate(blocks, start=1):
        executed = ledger.build([txs[n] for n in names], time_of(height))
        ledger.commit(executed)
        recorded.update(((height, i), code) for i, code in enumerate(executed.codes))
    codes = {name: Code.OK for name in txs}
    codes["reverse_b40"] = Code.INSUFFICIENT_POINTS
    codes["refund_by_venue"] = Code.NOT_AUTHORISED
    # the codes the blocks recorded are the ones the story says
    assert recorded[(6, 1)] == Code.INSUFFICIENT_POINTS
    assert recorded[(7, 0)] == Code.EXISTS
    assert recorded[(7, 1)] == Code.NOT_AUTHORISED
    yield Story(ledger, c, txs, blocks, codes)
    ledger.close()


def header(ledger: Ledger, height: int):
    return decode_block(ledger.block(height)).header


# --- balances -------------------------------------------------------------------------------


def test_balance_totals_and_per_centre_buckets(story):
    c = story.consortium
    centre_a, centre_b = (k.party_id for k in c.centres)
    alice, bob = c.member("alice").party_id, c.member("bob").party_id
    assert story.ledger.balance(alice) == (105, [(centre_b, 5), (centre_a, 100)])
    # bob spent everything: an empty bucket is absent, not zero
    assert story.ledger.balance(bob) == (0, [])
    assert story.ledger.member_exists(bob)


def test_balance_of_an_unknown_member_is_zero(story):
    stranger = story.consortium.member("stranger").party_id
    assert story.ledger.balance(stranger) == (0, [])
    assert not story.ledger.member_exists(stranger)


# --- transaction lookup ---------------------------------------------------------------------


def test_every_transaction_is_found_with_its_code_place_and_a_verifying_proof(story):
    ledger = story.ledger
    head = ledger.head.header
    leaf = 1
    for height, names in enumerate(story.blocks, start=1):
        for index, name in enumerate(names):
            tx = story.txs[name]
            if (height, index) == (7, 0):       # the resubmission: the first result stands
                view = ledger.tx(tx.tx_id)
                assert (view.record.height, view.record.index, view.record.leaf_index) == (2, 0, 3)
                assert view.code == Code.OK
                leaf += 1
                continue
            view = ledger.tx(tx.tx_id)
            assert view is not None, name
            assert view.tx == tx
            assert view.code == story.codes[name], name
            assert (view.record.height, view.record.index, view.record.leaf_index) == (height, index, leaf)
            assert view.record.body_hash == tx.body_hash()
            assert view.entry == decode_block(ledger.block(height)).entries[index]
            assert decode_entry(view.entry) == (tx.raw, int(story.codes[name]))
            assert (view.tree_size, view.tree_root) == (head.tree_size, head.tree_root)
            verify_inclusion(leaf_hash(view.entry), view.record.leaf_index, view.tree_size,
                             view.proof, view.tree_root)
            leaf += 1
    assert leaf == head.tree_size == 14


def test_an_inclusion_proof_does_not_verify_for_another_entry_or_place(story):
    view = story.ledger.tx(story.txs["refund_alice"].tx_id)
    other = story.ledger.tx(story.txs["dep_b30"].tx_id)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(other.entry), view.record.leaf_index, view.tree_size,
                         view.proof, view.tree_root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf_hash(view.entry), view.record.leaf_index + 1, view.tree_size,
                         view.proof, view.tree_root)


def test_the_genesis_transaction_is_leaf_zero(story):
    view = story.ledger.tx(story.consortium.chain_id)
    assert view.tx.kind == TxKind.GENESIS and view.code == Code.OK
    assert (view.record.height, view.record.index, view.record.leaf_index) == (0, 0, 0)
    verify_inclusion(leaf_hash(view.entry), 0, view.tree_size, view.proof, view.tree_root)


def test_an_unknown_tx_id_is_none(story):
    assert story.ledger.tx(bytes(16)) is None
    assert story.ledger.tx(b"\xff" * 16) is None


# --- history --------------------------------------------------------------------------------


def _kinds(entries):
    return [(leaf, type(tx.payload), code) for leaf, _height, tx, code in entries]


def test_a_members_history_shows_every_kind_oldest_first(story):
    alice = story.consortium.member("alice").party_id
    history = story.ledger.history(alice)
    assert _kinds(history) == [
        (1, RegisterMember, Code.OK),
        (3, Deposit, Code.OK),
        (4, Deposit, Code.OK),
        (6, Redeem, Code.OK),
        (8, Refund, Code.OK),
        (9, Deposit, Code.OK),
        (10, Reversal, Code.OK),
    ]
    # refused transactions that name her (a reversal of spent points, another partner's refund)
    # are their authors' history only: hers holds what took effect (FORMAT.md §12)
    centre_b = story.consortium.centres[1].party_id
    assert (11, Reversal, Code.INSUFFICIENT_POINTS) in _kinds(story.ledger.history(centre_b))
    # the resubmitted deposit (EXISTS) is not a second event in the history
    assert [tx.tx_id for _, _, tx, _ in history].count(story.txs["dep_a100"].tx_id) == 1
    assert [tx for _, _, tx, _ in history][:3] == [story.txs[n] for n in ("reg_alice", "dep_a100", "dep_b40")]


def test_history_pages_with_after_leaf_and_limit(story):
    alice = story.consortium.member("alice").party_id
    ledger = story.ledger
    full = ledger.history(alice)
    pages, after = [], -1
    while True:
        page = ledger.history(alice, after_leaf=after, limit=4)
        if not page:
            break
        assert len(page) <= 4
        pages.append([leaf for leaf, _, _, _ in page])
        after = page[-1][0]
    assert pages == [[1, 3, 4, 6], [8, 9, 10]]
    assert [leaf for page in pages for leaf in page] == [leaf for leaf, _, _, _ in full]
    # after_leaf need not be one of the member's own leaves
    assert [leaf for leaf, _, _, _ in ledger.history(alice, after_leaf=4, limit=2)] == [6, 8]
    assert [leaf for leaf, _, _, _ in ledger.history(alice, after_leaf=5, limit=2)] == [6, 8]
    assert ledger.history(alice, after_leaf=13) == []


def test_a_partners_history_shows_what_it_wrote(story):
    bookstore, venue = (k.party_id for k in story.consortium.partners)
    assert _kinds(story.ledger.history(bookstore)) == [(6, Redeem, Code.OK), (8, Refund, Code.OK)]
    assert _kinds(story.ledger.history(venue)) == [(7, Redeem, Code.OK), (13, Refund, Code.NOT_AUTHORISED)]


def test_histories_do_not_leak_between_members(story):
    bob = story.consortium.member("bob").party_id
    assert [leaf for leaf, _, _, _ in story.ledger.history(bob)] == [2, 5, 7]
    assert story.ledger.history(story.consortium.member("stranger").party_id) == []


# --- consistency proofs ---------------------------------------------------------------------


def test_consistency_proofs_between_every_pair_of_block_headers(story):
    ledger = story.ledger
    headers = [header(ledger, h) for h in range(ledger.height + 1)]
    assert [h.tree_size for h in headers] == [1, 3, 6, 8, 9, 10, 12, 14]
    for old in headers:
        for new in headers[old.height:]:
            proof = ledger.consistency_proof(old.tree_size, new.tree_size)
            verify_consistency(old.tree_size, new.tree_size, proof, old.tree_root, new.tree_root)


def test_a_consistency_proof_does_not_verify_against_other_roots(story):
    ledger = story.ledger
    h2, h5, h6 = (header(ledger, h) for h in (2, 5, 6))
    proof = ledger.consistency_proof(h2.tree_size, h5.tree_size)
    with pytest.raises(ProofError):
        verify_consistency(h2.tree_size, h5.tree_size, proof, h2.tree_root, h6.tree_root)
    with pytest.raises(ProofError):
        verify_consistency(h2.tree_size, h5.tree_size, proof, h5.tree_root, h5.tree_root)


# --- malformed ids --------------------------------------------------------------------------
# Ids come from outside (a gRPC request, a pasted hex string). One of the wrong length is
# either refused with ValueError or answered as unknown; it is never answered with another
# member's data, nor with an exception from the storage layer.


def _refused_or(call):
    try:
        return call()
    except ValueError:
        return "refused"


def malformed_ids(story) -> list[bytes]:
    alice = story.consortium.member("alice").party_id
    return [b"", alice[:10], alice[:19], alice + b"\x00"]


def test_a_malformed_member_id_gets_no_ones_balance(story):
    for bad in malformed_ids(story):
        assert _refused_or(lambda: story.ledger.balance(bad)) in ("refused", (0, [])), bad.hex()


def test_a_malformed_party_id_gets_no_ones_history(story):
    for bad in malformed_ids(story):
        assert _refused_or(lambda: story.ledger.history(bad)) in ("refused", []), bad.hex()


def test_a_malformed_tx_id_is_unknown_or_refused(story):
    for bad in (b"", b"\x00" * 15, b"\x00" * 17):
        assert _refused_or(lambda: story.ledger.tx(bad)) in ("refused", None), bad.hex()
