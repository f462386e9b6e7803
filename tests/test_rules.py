"""Tests of ledger/rules.py (through ledger/block.py's execute_block): every result code the
rules can give, named after the code, and the rules users rely on: balances never go below
zero, a rejection changes nothing, a resubmission returns the first result, redemptions draw
from centres in a documented order, and block time never runs backwards."""

import sys

import pytest

from ledger.block import decode_entry
from ledger.codes import MESSAGES, Code
from ledger.encoding import decode
from ledger.limits import (
    MAX_BUCKET_POINTS,
    MAX_DONATION_AMOUNT,
    MAX_POINTS_PER_TX,
    MAX_TIME_MS,
    MAX_VOLUNTEER_MINUTES,
)
from ledger.rules import apply_tx
from ledger.state import MEMBER, Overlay
from ledger.tx import (
    Deposit,
    DepositKind,
    Governance,
    GovernanceAction,
    Redeem,
    Refund,
    RegisterMember,
    Reversal,
    Role,
    Tx,
)
from ledger.voucher import sign_voucher
from tests.consortium import DAY_MS, GENESIS_TIME_MS, key
from tests.consortium import TestConsortium as Consortium

ADMIT, RETIRE = GovernanceAction.ADMIT, GovernanceAction.RETIRE
EXPIRY_MS = GENESIS_TIME_MS + DAY_MS          # the default voucher expiry of the test consortium


class Chain:
    """One consortium's chain in memory: block 0 replayed, then blocks executed one by one."""

    def __init__(self, consortium: Consortium) -> None:
        self.c = consortium
        self.state, self.head = consortium.open_chain()
        self.executed = []

    def run(self, *txs: Tx, time_ms: int | None = None) -> list[Code]:
        executed = self.c.run_block(self.state, self.head, list(txs), time_ms)
        self.head = executed.head
        self.executed.append(executed)
        return executed.codes

    def apply(self, tx: Tx, time_ms: int | None = None) -> Code:
        return self.run(tx, time_ms=time_ms)[0]

    @property
    def view(self) -> Overlay:
        return Overlay(self.state)

    def balance(self, member) -> int:
        return sum(points for _, points in self.view.buckets(member.party_id))

    def bucket(self, member, centre) -> int:
        return self.view.bucket(member.party_id, centre.party_id)

    def snapshot(self) -> tuple[dict, bytes]:
        return dict(self.state.entries), self.head.header.state_root


@pytest.fixture
def c() -> Consortium:
    return Consortium()


@pytest.fixture
def chain(c) -> Chain:
    return Chain(c)


@pytest.fixture
def jiwoo(c, chain):
    """A member registered at centre 0 with 100 points from it."""
    member = c.member("jiwoo")
    assert chain.run(c.register(member), c.deposit(member, 100)) == [Code.OK, Code.OK]
    return member


def centres_by_id(c) -> tuple:
    """The two centres' keys, lower party id first (the order redemptions draw in)."""
    low, high = sorted(c.centres, key=lambda k: k.party_id)
    return low, high


# --- the code table is a public contract ---------------------------------------------------


def test_code_numbers_are_a_stable_contract():
    assert {code.name: int(code) for code in Code} == {
        "OK": 0, "MALFORMED": 1, "WRONG_CHAIN": 2, "BAD_SIGNATURE": 3, "NOT_AUTHORISED": 4,
        "UNKNOWN_MEMBER": 5, "MEMBER_EXISTS": 6, "INSUFFICIENT_POINTS": 7, "VOUCHER_EXPIRED": 8,
        "VOUCHER_USED": 9, "VOUCHER_OTHER_PARTNER": 10, "VOUCHER_OVER_MAXIMUM": 11,
        "AMOUNT_OUT_OF_RANGE": 12, "UNKNOWN_REDEMPTION": 13, "REDEMPTION_FULLY_REFUNDED": 14,
        "REFUND_EXCEEDS_REDEMPTION": 15, "UNKNOWN_DEPOSIT": 16, "DEPOSIT_ALREADY_REVERSED": 17,
        "EXISTS": 18, "EXISTS_WITH_DIFFERENT_FIELDS": 19, "INSUFFICIENT_APPROVALS": 20,
        "PARTY_EXISTS": 21, "UNKNOWN_PARTY": 22, "LAST_OF_ROLE": 23, "INVALID_KEY": 24, "KEY_IN_USE": 25,
    }


def test_every_code_has_a_message_a_person_can_act_on():
    assert set(MESSAGES) == set(Code)
    for code in Code:
        assert code.message == MESSAGES[code]
        assert len(code.message) >= 8, code


def test_only_malformed_wrong_chain_bad_signature_and_invalid_key_are_static():
    # INVALID_KEY's cases are in tests/test_signature_rule.py (the key rule, where keys enter).
    assert {code for code in Code if code.static} == {
        Code.MALFORMED, Code.WRONG_CHAIN, Code.BAD_SIGNATURE, Code.INVALID_KEY}


def test_every_code_the_rules_give_has_a_test_named_after_it():
    names = [name for name in vars(sys.modules[__name__]) if name.startswith("test_")]
    for code in Code:
        if code != Code.OK and not code.static:
            assert any(name.startswith(f"test_{code.name.lower()}_") for name in names), code.name


# --- NOT_AUTHORISED ----------------------------------------------------------------------


def test_not_authorised_bookstore_cannot_deposit(c, chain, jiwoo):
    assert chain.apply(c.deposit(jiwoo, 10, author=c.partners[0])) == Code.NOT_AUTHORISED
    assert chain.balance(jiwoo) == 100


def test_not_authorised_bookstore_cannot_register_a_member(c, chain):
    minho = c.member("minho")
    assert chain.apply(c.make(c.partners[0], RegisterMember(minho.public_key))) == Code.NOT_AUTHORISED
    assert chain.view.member(minho.party_id) is None


def test_not_authorised_centre_cannot_redeem_a_members_points(c, chain, jiwoo):
    voucher = c.voucher(jiwoo, 50)
    assert chain.apply(c.make(c.centres[0], Redeem(voucher, 50, "spent"))) == Code.NOT_AUTHORISED
    assert chain.balance(jiwoo) == 100


def test_not_authorised_member_cannot_author_a_redemption(c, chain, jiwoo):
    voucher = c.voucher(jiwoo, 50)
    assert chain.apply(c.make(jiwoo, Redeem(voucher, 50, "spent"))) == Code.NOT_AUTHORISED


def test_not_authorised_centre_cannot_reverse_another_centres_deposit(c, chain, jiwoo):
    deposit = c.deposit(jiwoo, 10, centre=0)
    assert chain.apply(deposit) == Code.OK
    assert chain.apply(c.reverse(deposit.tx_id, centre=1)) == Code.NOT_AUTHORISED
    assert chain.balance(jiwoo) == 110
    assert not chain.view.deposit(deposit.tx_id).reversed


def test_not_authorised_partner_cannot_refund_another_partners_redemption(c, chain, jiwoo):
    redeem = c.redeem(c.voucher(jiwoo, 50), 50)
    assert chain.apply(redeem) == Code.OK
    assert chain.apply(c.refund(redeem.tx_id, 50, partner=1)) == Code.NOT_AUTHORISED
    assert chain.balance(jiwoo) == 50


def test_not_authorised_centre_cannot_refund(c, chain, jiwoo):
    redeem = c.redeem(c.voucher(jiwoo, 50), 50)
    assert chain.apply(redeem) == Code.OK
    refund = c.make(c.centres[0], Refund(redeem.tx_id, 50, "refund"))
    assert chain.apply(refund) == Code.NOT_AUTHORISED


def test_not_authorised_bookstore_cannot_reverse_a_deposit(c, chain, jiwoo):
    deposit = c.deposit(jiwoo, 10)
    assert chain.apply(deposit) == Code.OK
    assert chain.apply(c.make(c.partners[0], Reversal(deposit.tx_id, "no"))) == Code.NOT_AUTHORISED
    assert chain.balance(jiwoo) == 110


def test_not_authorised_non_admin_cannot_govern(c, chain):
    payload = c.governance(ADMIT, Role.CENTRE, key("centre-c")).payload
    by_centre = c.make(c.centres[0], payload, approvers=(c.admins[1],))
    approved_by_centre = c.make(c.admins[0], payload, approvers=(c.centres[0],))
    assert chain.run(by_centre, approved_by_centre) == [Code.NOT_AUTHORISED, Code.NOT_AUTHORISED]
    assert chain.view.party(key("centre-c").party_id) is None


def test_not_authorised_retired_centre_cannot_deposit_or_register(c, chain, jiwoo):
    assert chain.apply(c.governance(RETIRE, Role.CENTRE, c.centres[1])) == Code.OK
    assert chain.apply(c.deposit(jiwoo, 10, centre=1)) == Code.NOT_AUTHORISED
    assert chain.apply(c.register(c.member("minho"), centre=1)) == Code.NOT_AUTHORISED
    assert chain.balance(jiwoo) == 100


def test_points_from_a_retired_centre_stay_spendable(c, chain, jiwoo):
    assert chain.apply(c.deposit(jiwoo, 30, centre=1)) == Code.OK
    assert chain.apply(c.governance(RETIRE, Role.CENTRE, c.centres[1])) == Code.OK
    assert chain.apply(c.redeem(c.voucher(jiwoo, 130), 130)) == Code.OK
    assert chain.balance(jiwoo) == 0


def test_not_authorised_retired_partner_cannot_redeem(c, chain, jiwoo):
    assert chain.apply(c.governance(RETIRE, Role.PARTNER, c.partners[1])) == Code.OK
    assert chain.apply(c.redeem(c.voucher(jiwoo, 10, partner=1), 10, partner=1)) == Code.NOT_AUTHORISED


# --- members ------------------------------------------------------------------------------


def test_unknown_member_cannot_receive_a_deposit(c, chain):
    assert chain.apply(c.deposit(c.member("stranger"), 10)) == Code.UNKNOWN_MEMBER
    assert chain.balance(c.member("stranger")) == 0


def test_unknown_member_voucher_cannot_be_redeemed(c, chain):
    stranger = c.member("stranger")
    assert chain.apply(c.redeem(c.voucher(stranger, 10), 10)) == Code.UNKNOWN_MEMBER


def test_member_exists_when_registered_twice_even_at_another_centre(c, chain, jiwoo):
    assert chain.run(c.register(jiwoo), c.register(jiwoo, centre=1)) == [Code.MEMBER_EXISTS] * 2
    assert chain.view.member(jiwoo.party_id).centre_id == c.centres[0].party_id


def test_a_member_record_holds_only_the_key_and_the_registering_centre(c, chain, jiwoo):
    stored = chain.state.entries[MEMBER + jiwoo.party_id]
    assert decode(stored) == [jiwoo.public_key, c.centres[0].party_id]


# --- points -------------------------------------------------------------------------------


def test_insufficient_points_for_a_redemption_beyond_the_balance(c, chain, jiwoo):
    assert chain.apply(c.deposit(jiwoo, 40, centre=1)) == Code.OK
    voucher = c.voucher(jiwoo, 500)
    assert chain.apply(c.redeem(voucher, 141)) == Code.INSUFFICIENT_POINTS
    assert (chain.bucket(jiwoo, c.centres[0]), chain.bucket(jiwoo, c.centres[1])) == (100, 40)
    assert chain.apply(c.redeem(voucher, 140)) == Code.OK, "a refused voucher stays usable"
    assert chain.balance(jiwoo) == 0


def test_insufficient_points_to_reverse_a_deposit_already_spent(c, chain, jiwoo):
    deposit = c.deposit(jiwoo, 30)
    assert chain.run(deposit, c.redeem(c.voucher(jiwoo, 110), 110)) == [Code.OK, Code.OK]
    assert chain.apply(c.reverse(deposit.tx_id)) == Code.INSUFFICIENT_POINTS
    assert chain.balance(jiwoo) == 20
    assert not chain.view.deposit(deposit.tx_id).reversed


def test_insufficient_points_to_reverse_when_only_another_centres_bucket_holds_them(c, chain):
    low, high = centres_by_id(c)
    minho = c.member("minho")
    deposit = c.make(low, c.deposit(minho, 50).payload)
    assert chain.run(c.register(minho), deposit, c.make(high, c.deposit(minho, 100).payload)) == [Code.OK] * 3
    assert chain.apply(c.redeem(c.voucher(minho, 30), 30)) == Code.OK   # drawn from the low bucket
    assert chain.apply(c.make(low, Reversal(deposit.tx_id, "typo"))) == Code.INSUFFICIENT_POINTS
    assert (chain.bucket(minho, low), chain.bucket(minho, high)) == (20, 100)


def test_a_deposit_credits_the_depositing_centres_bucket(c, chain, jiwoo):
    assert chain.apply(c.deposit(jiwoo, 25, centre=1)) == Code.OK
    assert chain.view.buckets(jiwoo.party_id) == sorted(
        [(c.centres[0].party_id, 100), (c.centres[1].party_id, 25)])


def test_a_reversal_takes_the_deposit_back_out(c, chain, jiwoo):
    deposit = c.deposit(jiwoo, 30, centre=1)
    assert chain.run(deposit, c.reverse(deposit.tx_id, centre=1)) == [Code.OK, Code.OK]
    assert chain.bucket(jiwoo, c.centres[1]) == 0
    assert chain.view.deposit(deposit.tx_id).reversed


# --- vouchers -----------------------------------------------------------------------------


def test_voucher_expired_one_millisecond_after_its_expiry(c, chain, jiwoo):
    assert chain.apply(c.redeem(c.voucher(jiwoo, 50), 50), time_ms=EXPIRY_MS + 1) == Code.VOUCHER_EXPIRED
    assert chain.balance(jiwoo) == 100


def test_voucher_expired_is_not_yet_true_exactly_at_expiry(c, chain, jiwoo):
    assert chain.apply(c.redeem(c.voucher(jiwoo, 50), 50), time_ms=EXPIRY_MS) == Code.OK
    assert chain.balance(jiwoo) == 50


def test_voucher_expired_stays_expired_when_a_later_block_asks_for_an_earlier_time(c, chain, jiwoo):
    assert chain.apply(c.deposit(jiwoo, 1), time_ms=EXPIRY_MS + 1) == Code.OK
    assert chain.apply(c.redeem(c.voucher(jiwoo, 50), 50), time_ms=EXPIRY_MS - 1) == Code.VOUCHER_EXPIRED
    assert chain.head.header.time_ms == EXPIRY_MS + 1


def test_voucher_used_cannot_be_redeemed_again(c, chain, jiwoo):
    voucher = c.voucher(jiwoo, 50)
    assert chain.run(c.redeem(voucher, 20), c.redeem(voucher, 20)) == [Code.OK, Code.VOUCHER_USED]
    assert chain.balance(jiwoo) == 80


def test_voucher_used_stays_used_after_a_full_refund(c, chain, jiwoo):
    voucher = c.voucher(jiwoo, 50)
    redeem = c.redeem(voucher, 20)
    assert chain.run(redeem, c.refund(redeem.tx_id, 20)) == [Code.OK, Code.OK]
    assert chain.apply(c.redeem(voucher, 20)) == Code.VOUCHER_USED
    assert chain.balance(jiwoo) == 100


def test_voucher_other_partner_cannot_redeem_it(c, chain, jiwoo):
    voucher = c.voucher(jiwoo, 50, partner=1)
    assert chain.apply(c.redeem(voucher, 50, partner=0)) == Code.VOUCHER_OTHER_PARTNER
    assert chain.apply(c.redeem(voucher, 50, partner=1)) == Code.OK


def test_voucher_over_maximum_by_one_point(c, chain, jiwoo):
    voucher = c.voucher(jiwoo, 50)
    assert chain.apply(c.redeem(voucher, 51)) == Code.VOUCHER_OVER_MAXIMUM
    assert chain.apply(c.redeem(voucher, 50)) == Code.OK


# --- amounts ------------------------------------------------------------------------------


def _deposit(c, member, points=10, kind=DepositKind.VOLUNTEERING, quantity=60) -> Tx:
    return c.make(c.centres[0], Deposit(member.party_id, points, kind, quantity, "REF", 0))


@pytest.mark.parametrize("points, kind, quantity", [
    (0, DepositKind.VOLUNTEERING, 60),
    (MAX_POINTS_PER_TX + 1, DepositKind.VOLUNTEERING, 60),
    (2**64 - 1, DepositKind.VOLUNTEERING, 60),
    (10, DepositKind.VOLUNTEERING, 0),
    (10, DepositKind.VOLUNTEERING, MAX_VOLUNTEER_MINUTES + 1),
    (10, DepositKind.DONATION, 0),
    (10, DepositKind.DONATION, MAX_DONATION_AMOUNT + 1),
], ids=["zero-points", "over-max-points", "uint64-max-points", "zero-minutes", "over-max-minutes",
        "zero-donation", "over-max-donation"])
def test_amount_out_of_range_deposit(c, chain, jiwoo, points, kind, quantity):
    assert chain.apply(_deposit(c, jiwoo, points, kind, quantity)) == Code.AMOUNT_OUT_OF_RANGE
    assert chain.balance(jiwoo) == 100


@pytest.mark.parametrize("points, kind, quantity", [
    (MAX_POINTS_PER_TX, DepositKind.VOLUNTEERING, MAX_VOLUNTEER_MINUTES),
    (1, DepositKind.DONATION, MAX_DONATION_AMOUNT),
    (1, DepositKind.OTHER, 0),
])
def test_amounts_at_their_bounds_are_accepted(c, chain, jiwoo, points, kind, quantity):
    assert chain.apply(_deposit(c, jiwoo, points, kind, quantity)) == Code.OK
    assert chain.balance(jiwoo) == 100 + points


def test_amount_out_of_range_redemption_of_zero_points(c, chain, jiwoo):
    assert chain.apply(c.redeem(c.voucher(jiwoo, 50), 0)) == Code.AMOUNT_OUT_OF_RANGE


def test_amount_out_of_range_refund_of_zero_points(c, chain, jiwoo):
    redeem = c.redeem(c.voucher(jiwoo, 50), 50)
    assert chain.run(redeem, c.refund(redeem.tx_id, 0)) == [Code.OK, Code.AMOUNT_OUT_OF_RANGE]


def test_amount_out_of_range_when_a_deposit_would_overflow_the_bucket(c, chain, jiwoo):
    # Filling a bucket by deposits would take a million blocks: seed the state directly, and
    # apply the rules to it without a block.
    seeded = Overlay(chain.state)
    seeded.set_bucket(jiwoo.party_id, c.centres[0].party_id, MAX_BUCKET_POINTS - 5)
    chain.state.absorb(seeded)
    time_ms = chain.head.header.time_ms
    assert apply_tx(c.deposit(jiwoo, 6), Overlay(chain.state), time_ms) == Code.AMOUNT_OUT_OF_RANGE
    filled = Overlay(chain.state)
    assert apply_tx(c.deposit(jiwoo, 5), filled, time_ms) == Code.OK
    assert filled.bucket(jiwoo.party_id, c.centres[0].party_id) == MAX_BUCKET_POINTS


# --- refunds ------------------------------------------------------------------------------


def test_unknown_redemption_cannot_be_refunded(c, chain, jiwoo):
    assert chain.apply(c.refund(b"\x42" * 16, 10)) == Code.UNKNOWN_REDEMPTION


def test_unknown_redemption_when_the_id_names_a_deposit(c, chain, jiwoo):
    deposit = c.deposit(jiwoo, 10)
    assert chain.run(deposit, c.refund(deposit.tx_id, 10)) == [Code.OK, Code.UNKNOWN_REDEMPTION]


def test_redemption_fully_refunded_refuses_another_refund(c, chain, jiwoo):
    redeem = c.redeem(c.voucher(jiwoo, 50), 50)
    assert chain.run(redeem, c.refund(redeem.tx_id, 50)) == [Code.OK, Code.OK]
    assert chain.apply(c.refund(redeem.tx_id, 1)) == Code.REDEMPTION_FULLY_REFUNDED
    assert chain.balance(jiwoo) == 100


def test_refund_exceeds_redemption_counts_earlier_refunds(c, chain, jiwoo):
    redeem = c.redeem(c.voucher(jiwoo, 40), 40)
    assert chain.run(redeem, c.refund(redeem.tx_id, 30)) == [Code.OK, Code.OK]
    assert chain.apply(c.refund(redeem.tx_id, 11)) == Code.REFUND_EXCEEDS_REDEMPTION
    assert chain.apply(c.refund(redeem.tx_id, 10)) == Code.OK
    assert chain.view.redemption(redeem.tx_id).refunded == 40
    assert chain.balance(jiwoo) == 100


# --- reversals ----------------------------------------------------------------------------


def test_unknown_deposit_cannot_be_reversed(c, chain, jiwoo):
    assert chain.apply(c.reverse(b"\x42" * 16)) == Code.UNKNOWN_DEPOSIT


def test_unknown_deposit_when_the_id_names_a_redemption(c, chain, jiwoo):
    redeem = c.redeem(c.voucher(jiwoo, 10), 10)
    assert chain.run(redeem, c.reverse(redeem.tx_id)) == [Code.OK, Code.UNKNOWN_DEPOSIT]


def test_deposit_already_reversed_cannot_be_reversed_again(c, chain, jiwoo):
    deposit = c.deposit(jiwoo, 10)
    assert chain.run(deposit, c.reverse(deposit.tx_id), c.reverse(deposit.tx_id)) == [
        Code.OK, Code.OK, Code.DEPOSIT_ALREADY_REVERSED]
    assert chain.balance(jiwoo) == 100


# --- idempotency --------------------------------------------------------------------------


def test_exists_for_an_identical_resubmission_in_a_later_block(c, chain, jiwoo):
    deposit = c.deposit(jiwoo, 10)
    assert chain.apply(deposit) == Code.OK
    entries, state_root = chain.snapshot()
    record = chain.state.tx_record(deposit.tx_id)
    assert chain.apply(deposit) == Code.EXISTS
    assert chain.executed[-1].state.changes() == []
    assert chain.snapshot() == (entries, state_root)
    assert chain.state.tx_record(deposit.tx_id) == record
    assert chain.balance(jiwoo) == 110


def test_exists_for_an_identical_resubmission_in_the_same_block(c):
    minho = c.member("minho")
    register, deposit = c.register(minho), c.deposit(minho, 10)
    once, twice = Chain(c), Chain(c)
    assert once.run(register, deposit) == [Code.OK, Code.OK]
    assert twice.run(register, deposit, deposit, register) == [Code.OK, Code.OK, Code.EXISTS, Code.EXISTS]
    assert twice.state.entries == once.state.entries
    assert twice.state.records == once.state.records
    assert twice.head.header.state_root == once.head.header.state_root
    assert twice.balance(minho) == 10


def test_exists_keeps_the_first_result_of_a_rejected_transaction(c, chain, jiwoo):
    redeem = c.redeem(c.voucher(jiwoo, 500), 200)
    assert chain.apply(redeem) == Code.INSUFFICIENT_POINTS
    assert chain.apply(c.deposit(jiwoo, 100)) == Code.OK
    assert chain.apply(redeem) == Code.EXISTS, "the first result stands; it is not retried"
    assert chain.state.tx_record(redeem.tx_id).code == Code.INSUFFICIENT_POINTS
    assert chain.balance(jiwoo) == 200


def test_exists_for_a_governance_resubmission_with_other_approvals(c, chain):
    admit = c.governance(ADMIT, Role.CENTRE, key("centre-c"), signers=3)
    fewer = c.make(c.admins[0], admit.payload, tx_id=admit.tx_id, approvers=(c.admins[2],))
    assert chain.run(admit, fewer) == [Code.OK, Code.EXISTS]


def test_exists_with_different_fields_for_a_reused_tx_id(c, chain, jiwoo):
    deposit = c.deposit(jiwoo, 10)
    assert chain.apply(deposit) == Code.OK
    entries, state_root = chain.snapshot()
    changed = c.deposit(jiwoo, 11, tx_id=deposit.tx_id)
    by_other_centre = c.deposit(jiwoo, 10, centre=1, tx_id=deposit.tx_id)
    assert chain.run(changed, by_other_centre) == [Code.EXISTS_WITH_DIFFERENT_FIELDS] * 2
    assert chain.snapshot() == (entries, state_root)
    assert chain.state.tx_record(deposit.tx_id).body_hash == deposit.body_hash()


def test_exists_with_different_fields_for_the_chain_id_as_a_tx_id(c, chain, jiwoo):
    assert chain.apply(c.deposit(jiwoo, 10, tx_id=c.chain_id)) == Code.EXISTS_WITH_DIFFERENT_FIELDS


# --- governance ---------------------------------------------------------------------------


def test_insufficient_approvals_below_the_threshold(c, chain):
    assert chain.apply(c.governance(ADMIT, Role.CENTRE, key("centre-c"), signers=1)) == (
        Code.INSUFFICIENT_APPROVALS)
    assert chain.view.party(key("centre-c").party_id) is None


def test_an_admitted_centre_and_partner_can_work(c, chain):
    centre_c, cafe, minho = key("centre-c"), key("cafe"), c.member("minho")
    assert chain.run(c.governance(ADMIT, Role.CENTRE, centre_c, name="Centre C"),
                     c.governance(ADMIT, Role.PARTNER, cafe, name="Cafe")) == [Code.OK, Code.OK]
    voucher = sign_voucher(minho, c.chain_id, cafe.party_id, 10, bytes(16), EXPIRY_MS)
    assert chain.run(c.make(centre_c, RegisterMember(minho.public_key)),
                     c.make(centre_c, c.deposit(minho, 10).payload),
                     c.make(cafe, Redeem(voucher, 10, "coffee"))) == [Code.OK] * 3


def test_party_exists_for_an_admitted_key(c, chain):
    assert chain.apply(c.governance(ADMIT, Role.CENTRE, c.partners[0])) == Code.PARTY_EXISTS
    assert chain.view.party(c.partners[0].party_id).role == Role.PARTNER


def test_party_exists_for_a_retired_key(c, chain):
    assert chain.apply(c.governance(RETIRE, Role.PARTNER, c.partners[1])) == Code.OK
    assert chain.apply(c.governance(ADMIT, Role.PARTNER, c.partners[1])) == Code.PARTY_EXISTS
    assert not chain.view.party(c.partners[1].party_id).active


def test_unknown_party_for_a_key_never_admitted(c, chain):
    assert chain.apply(c.governance(RETIRE, Role.CENTRE, key("centre-c"))) == Code.UNKNOWN_PARTY


def test_unknown_party_for_the_wrong_role(c, chain):
    assert chain.apply(c.governance(RETIRE, Role.PARTNER, c.centres[0])) == Code.UNKNOWN_PARTY
    assert chain.view.party(c.centres[0].party_id).active


def test_unknown_party_when_retired_twice(c, chain):
    retire = lambda: c.governance(RETIRE, Role.CENTRE, c.centres[1])  # noqa: E731
    assert chain.run(retire(), retire()) == [Code.OK, Code.UNKNOWN_PARTY]


def test_last_of_role_refuses_to_retire_the_last_node(c, chain):
    assert len(c.nodes) == 3
    retire = [c.governance(RETIRE, Role.NODE, node) for node in c.nodes]
    assert chain.run(*retire) == [Code.OK, Code.OK, Code.LAST_OF_ROLE]
    assert [p.public_key for _, p in chain.view.active_parties(Role.NODE)] == [c.nodes[2].public_key]


# --- KEY_IN_USE: one key, one identity ---------------------------------------------------


@pytest.mark.parametrize("role, node_address", [
    (Role.CENTRE, ""), (Role.PARTNER, ""), (Role.NODE, "10.0.0.9:7000")])
def test_key_in_use_a_members_key_cannot_be_admitted_as_a_party(c, chain, jiwoo, role, node_address):
    admit = c.governance(ADMIT, role, jiwoo, name="jiwoo's shop", address=node_address)
    assert chain.apply(admit) == Code.KEY_IN_USE
    assert chain.view.party(jiwoo.party_id) is None
    assert chain.view.member(jiwoo.party_id).member_key == jiwoo.public_key


@pytest.mark.parametrize("who", ["admin", "centre", "partner", "node"])
def test_key_in_use_a_partys_key_cannot_be_registered_as_a_member(c, chain, who):
    party = {"admin": c.admins[0], "centre": c.centres[1], "partner": c.partners[0], "node": c.nodes[0]}[who]
    assert chain.apply(c.register(party)) == Code.KEY_IN_USE
    assert chain.view.member(party.party_id) is None


def test_key_in_use_for_a_retired_partys_key_too(c, chain):
    assert chain.apply(c.governance(RETIRE, Role.PARTNER, c.partners[1])) == Code.OK
    assert chain.apply(c.register(c.partners[1])) == Code.KEY_IN_USE


def test_key_in_use_comes_after_the_existing_checks(c, chain, jiwoo):
    # FORMAT.md §6: the authority check first, then MEMBER_EXISTS / PARTY_EXISTS, then this one.
    assert chain.apply(c.make(c.partners[0], RegisterMember(c.centres[0].public_key))) == Code.NOT_AUTHORISED
    assert chain.apply(c.governance(ADMIT, Role.CENTRE, jiwoo, signers=1)) == Code.INSUFFICIENT_APPROVALS
    assert chain.apply(c.governance(ADMIT, Role.CENTRE, c.partners[0])) == Code.PARTY_EXISTS


# --- a rejection changes nothing, but is recorded --------------------------------------------


def test_a_rejected_transaction_changes_no_state_but_is_recorded_with_its_code(c, chain, jiwoo):
    rejected = [
        c.redeem(c.voucher(jiwoo, 500), 500),
        c.deposit(jiwoo, 10, author=c.partners[0]),
        c.reverse(b"\x42" * 16),
        c.governance(ADMIT, Role.CENTRE, key("centre-c"), signers=1),
    ]
    entries, state_root = chain.snapshot()
    size = chain.head.header.tree_size
    codes = chain.run(*rejected)
    block = chain.executed[-1]
    assert Code.OK not in codes
    assert block.state.changes() == []
    assert chain.snapshot() == (entries, state_root)
    assert block.block.header.tree_size == size + len(rejected)
    for index, tx in enumerate(rejected):
        assert decode_entry(block.block.entries[index]) == (tx.raw, codes[index])
        assert chain.state.tx_record(tx.tx_id).code == codes[index]
    assert chain.run(*rejected) == [Code.EXISTS] * len(rejected)


# --- the order of redemption and refund ---------------------------------------------------


def test_redemption_draws_from_buckets_in_ascending_centre_id_order(c, chain):
    low, high = centres_by_id(c)
    minho = c.member("minho")
    redeem = c.redeem(c.voucher(minho, 100), 40)
    assert chain.run(c.register(minho), c.make(high, c.deposit(minho, 50).payload),
                     c.make(low, c.deposit(minho, 30).payload), redeem) == [Code.OK] * 4
    assert (chain.bucket(minho, low), chain.bucket(minho, high)) == (0, 40)
    assert chain.view.redemption(redeem.tx_id).drawn == ((low.party_id, 30), (high.party_id, 10))


def test_refunds_return_the_last_drawn_points_first(c, chain):
    low, high = centres_by_id(c)
    minho = c.member("minho")
    redeem = c.redeem(c.voucher(minho, 100), 40)
    chain.run(c.register(minho), c.make(low, c.deposit(minho, 30).payload),
              c.make(high, c.deposit(minho, 50).payload), redeem)
    assert chain.apply(c.refund(redeem.tx_id, 15)) == Code.OK
    assert (chain.bucket(minho, low), chain.bucket(minho, high)) == (5, 50)
    assert chain.apply(c.refund(redeem.tx_id, 25)) == Code.OK
    assert (chain.bucket(minho, low), chain.bucket(minho, high)) == (30, 50)


# --- block time ---------------------------------------------------------------------------


def test_block_time_earlier_than_the_previous_block_is_clamped(c, chain, jiwoo):
    later = GENESIS_TIME_MS + 10 * 60_000
    chain.apply(c.deposit(jiwoo, 1), time_ms=later)
    chain.apply(c.deposit(jiwoo, 1), time_ms=later - 5_000)
    assert chain.head.header.time_ms == later


def test_block_time_never_exceeds_the_documented_maximum(c, chain, jiwoo):
    chain.apply(c.deposit(jiwoo, 1), time_ms=MAX_TIME_MS + 10)
    assert chain.head.header.time_ms == MAX_TIME_MS


# --- the checks a node makes at admission, before any signature -----------------------------


def test_the_admission_checks_give_the_code_the_rules_give(c, chain, jiwoo):
    """``refusal_before_signatures`` refuses exactly with the code apply_tx would record, and
    never refuses what the rules accept: every kind, by every kind of author (a stranger's key,
    an admin, a centre, a partner, a retired centre), and governance with every signer set."""
    from ledger.rules import refusal_before_signatures
    stranger, retired, newcomer = key("stranger"), key("retired centre"), key("newcomer")
    assert chain.run(c.governance(ADMIT, Role.CENTRE, retired, name="soon retired")) == [Code.OK]
    assert chain.run(c.governance(RETIRE, Role.CENTRE, retired)) == [Code.OK]
    voucher = c.voucher(jiwoo, 10)
    payloads = [c.deposit(jiwoo, 5).payload, c.deposit(key("nobody"), 5).payload,
                c.register(key("someone")).payload, c.redeem(voucher, 5).payload,
                c.reverse(bytes(16)).payload, c.refund(bytes(16), 1).payload,
                c.deposit(jiwoo, 0).payload]
    authors = [stranger, c.admins[0], c.centres[0], c.partners[0], retired]
    txs = [c.make(author, payload) for author in authors for payload in payloads]
    admit = Governance(ADMIT, Role.PARTNER, newcomer.public_key, "new partner", "")
    signer_sets = [(c.admins[0], ()), (c.admins[0], (c.admins[1],)), (c.admins[0], tuple(c.admins[1:])),
                   (c.admins[0], (c.admins[1], stranger)), (stranger, (c.admins[0], c.admins[1])),
                   (c.admins[0], tuple(c.admins[1:]) + (stranger,)), (c.centres[0], (c.admins[0],))]
    txs += [c.make(author, admit, approvers=approvers) for author, approvers in signer_sets]
    seen = set()
    for tx in txs:
        refusal = refusal_before_signatures(tx, chain.view)
        code = apply_tx(tx, Overlay(chain.state), GENESIS_TIME_MS + 1)
        if refusal is not None:
            assert refusal[0] == code, (tx.kind.name, refusal, code)
            assert refusal[1], "a refusal says why"
        assert code != Code.OK or refusal is None, (tx.kind.name, code)
        seen.add((refusal is not None, code))
    assert {(True, Code.NOT_AUTHORISED), (True, Code.UNKNOWN_MEMBER), (True, Code.INSUFFICIENT_APPROVALS),
            (False, Code.OK), (False, Code.AMOUNT_OUT_OF_RANGE)} <= seen, seen
