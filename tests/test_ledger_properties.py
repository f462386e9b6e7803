"""Property tests of the ledger as a whole: random sequences of registrations, deposits,
vouchers and redemptions, refunds, reversals, resubmissions, reused ids and bad amounts, over
two centres, two partners and four members, executed into blocks.

A naive reference model written here from the domain rules predicts every result code and
every bucket; after each block the ledger must agree with it, no balance may be negative, and
points must be conserved per centre. At the end, the chain must verify from its genesis
block, two independent replays must give the very same headers, and resubmitting every
recorded transaction must return EXISTS and change nothing.

Two drivers run the same operations: a hypothesis state machine (which shrinks a failure to
a short story) and a seeded simulation with fixed operation weights (which reaches deep
histories every time; a failure names its seed)."""

import random
from collections import Counter, defaultdict

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ledger.block import decode_block, replay_block
from ledger.codes import Code
from ledger.limits import MAX_BUCKET_POINTS, MAX_POINTS_PER_TX
from ledger.state import Overlay
from ledger.tx import Deposit, Redeem, Refund, RegisterMember, Reversal, Tx, check_tx
from ledger.verify import verify_chain
from tests.consortium import DAY_MS
from tests.consortium import TestConsortium as Consortium

MEMBERS = 4
UNKNOWN_ID = b"\x42" * 16
STEPS_MS = [-120_000, 0, 1, 30_000, 300_000]      # how far each block's time moves on
FLAWS = ["other partner", "expires now", "expired", "low maximum"]


def amount(n: int) -> int:
    """Mostly ordinary amounts; 0 and one past the per-transaction maximum now and then."""
    return MAX_POINTS_PER_TX + 1 if n == 151 else n


points = st.integers(0, 151).map(amount)
pick = st.integers(0, 2**16)


class Model:
    """The domain rules, written out naively: dicts of members, buckets, deposits and
    redemptions, and the totals every centre must balance."""

    def __init__(self, consortium: Consortium) -> None:
        self.centres = {k.party_id for k in consortium.centres}
        self.partners = {k.party_id for k in consortium.partners}
        self.members: set[bytes] = set()
        self.buckets: dict[tuple[bytes, bytes], int] = defaultdict(int)
        self.deposits: dict[bytes, dict] = {}
        self.redemptions: dict[bytes, dict] = {}
        self.used: set[tuple[bytes, bytes]] = set()
        self.records: dict[bytes, tuple[bytes, Code]] = {}
        self.totals: dict[bytes, Counter] = defaultdict(Counter)

    def apply(self, tx: Tx, time_ms: int) -> Code:
        if tx.tx_id in self.records:
            same = self.records[tx.tx_id][0] == tx.signing_bytes()
            return Code.EXISTS if same else Code.EXISTS_WITH_DIFFERENT_FIELDS
        handler = {RegisterMember: self._register, Deposit: self._deposit, Redeem: self._redeem,
                   Refund: self._refund, Reversal: self._reverse}[type(tx.payload)]
        code = handler(tx, tx.payload, time_ms)
        self.records[tx.tx_id] = (tx.signing_bytes(), code)
        return code

    def balance(self, member_id: bytes) -> int:
        return sum(p for (m, _), p in self.buckets.items() if m == member_id)

    def _register(self, tx, payload, _time):
        if tx.author_id not in self.centres:
            return Code.NOT_AUTHORISED
        if payload.member_id in self.members:
            return Code.MEMBER_EXISTS
        self.members.add(payload.member_id)
        return Code.OK

    def _deposit(self, tx, payload, _time):
        centre, member = tx.author_id, payload.member_id
        if centre not in self.centres:
            return Code.NOT_AUTHORISED
        if member not in self.members:
            return Code.UNKNOWN_MEMBER
        if not 1 <= payload.points <= MAX_POINTS_PER_TX:
            return Code.AMOUNT_OUT_OF_RANGE
        if self.buckets[member, centre] + payload.points > MAX_BUCKET_POINTS:
            return Code.AMOUNT_OUT_OF_RANGE
        self.buckets[member, centre] += payload.points
        self.deposits[tx.tx_id] = {"member": member, "centre": centre, "points": payload.points,
                                   "reversed": False}
        self.totals[centre]["deposited"] += payload.points
        return Code.OK

    def _redeem(self, tx, payload, time_ms):
        voucher, partner = payload.voucher, tx.author_id
        member = voucher.member_id
        if partner not in self.partners:
            return Code.NOT_AUTHORISED
        if voucher.partner_id != partner:
            return Code.VOUCHER_OTHER_PARTNER
        if member not in self.members:
            return Code.UNKNOWN_MEMBER
        if time_ms > voucher.expiry_ms:
            return Code.VOUCHER_EXPIRED
        if (member, voucher.nonce) in self.used:
            return Code.VOUCHER_USED
        if not 1 <= payload.points <= MAX_POINTS_PER_TX:
            return Code.AMOUNT_OUT_OF_RANGE
        if payload.points > voucher.max_points:
            return Code.VOUCHER_OVER_MAXIMUM
        if self.balance(member) < payload.points:
            return Code.INSUFFICIENT_POINTS
        drawn, wanted = [], payload.points
        for centre in sorted(self.centres):          # ascending centre id
            take = min(self.buckets[member, centre], wanted)
            if take:
                self.buckets[member, centre] -= take
                self.totals[centre]["redeemed"] += take
                drawn.append([centre, take])
                wanted -= take
        self.used.add((member, voucher.nonce))
        self.redemptions[tx.tx_id] = {"partner": partner, "member": member,
                                      "left": payload.points, "undrawn": drawn}
        return Code.OK

    def _refund(self, tx, payload, _time):
        if tx.author_id not in self.partners:
            return Code.NOT_AUTHORISED
        redemption = self.redemptions.get(payload.redemption_id)
        if redemption is None:
            return Code.UNKNOWN_REDEMPTION
        if redemption["partner"] != tx.author_id:
            return Code.NOT_AUTHORISED
        if redemption["left"] == 0:
            return Code.REDEMPTION_FULLY_REFUNDED
        if not 1 <= payload.points <= MAX_POINTS_PER_TX:
            return Code.AMOUNT_OUT_OF_RANGE
        if payload.points > redemption["left"]:
            return Code.REFUND_EXCEEDS_REDEMPTION
        redemption["left"] -= payload.points
        wanted, stack = payload.points, redemption["undrawn"]
        while wanted:                                  # last drawn, first returned
            centre, taken = stack[-1]
            back = min(taken, wanted)
            self.buckets[redemption["member"], centre] += back
            self.totals[centre]["refunded"] += back
            wanted -= back
            stack[-1][1] -= back
            if stack[-1][1] == 0:
                stack.pop()
        return Code.OK

    def _reverse(self, tx, payload, _time):
        if tx.author_id not in self.centres:
            return Code.NOT_AUTHORISED
        deposit = self.deposits.get(payload.deposit_id)
        if deposit is None:
            return Code.UNKNOWN_DEPOSIT
        if deposit["centre"] != tx.author_id:
            return Code.NOT_AUTHORISED
        if deposit["reversed"]:
            return Code.DEPOSIT_ALREADY_REVERSED
        key = deposit["member"], deposit["centre"]
        if self.buckets[key] < deposit["points"]:
            return Code.INSUFFICIENT_POINTS
        self.buckets[key] -= deposit["points"]
        deposit["reversed"] = True
        self.totals[deposit["centre"]]["reversed"] += deposit["points"]
        return Code.OK


class LedgerRun:
    """A chain in memory and the model beside it. Each operation makes one transaction and
    adds it to the pending block; ``seal`` executes the pending block and checks the ledger
    against the model. ``pick`` arguments choose among earlier things, modulo their number."""

    def __init__(self) -> None:
        self.c = Consortium()
        self.members = [self.c.member(f"member{i}") for i in range(MEMBERS)]
        self.state, self.head = self.c.open_chain()
        self.model = Model(self.c)
        self.blocks: list[bytes] = []
        self.headers = []
        self.pending: list[Tx] = []
        self.issued: list[Tx] = []          # every transaction made, in order
        self.recorded: list[Tx] = []        # those already executed in a block
        self.vouchers = []
        # Three of the four members start registered, with points from both centres; the
        # fourth is left for UNKNOWN_MEMBER until an operation registers it.
        for i, member in enumerate(self.members[:-1]):
            self._submit(self.c.register(member, centre=i % 2))
            self._submit(self.c.deposit(member, 100, centre=0))
            self._submit(self.c.deposit(member, 60, centre=1))
        self.seal(60_000)

    def _submit(self, tx: Tx) -> None:
        assert check_tx(tx.raw, self.c.chain_id) == tx
        self.pending.append(tx)
        self.issued.append(tx)

    @staticmethod
    def _pick(items: list, n: int):
        return items[n % len(items)]

    def _ids(self, kind: type, accepted: dict) -> list[bytes]:
        """The accepted transactions of one kind, any other of that kind, and an unknown id."""
        made = [tx.tx_id for tx in self.issued if isinstance(tx.payload, kind)]
        return list(accepted) + [i for i in made if i not in accepted] + [UNKNOWN_ID]

    # --- operations -------------------------------------------------------------------------

    def register(self, member: int, centre: int) -> None:
        self._submit(self.c.register(self.members[member], centre=centre))

    def deposit(self, member: int, centre: int, points: int) -> None:
        self._submit(self.c.deposit(self.members[member], points, centre=centre))

    def redeem(self, member: int, partner: int, points: int, flaw: str | None = None) -> None:
        now = self.head.header.time_ms
        voucher = self.c.voucher(
            self.members[member], 10 if flaw == "low maximum" else 200,
            partner=1 - partner if flaw == "other partner" else partner,
            expiry_ms={"expires now": now, "expired": now - 1}.get(flaw, now + DAY_MS))
        self.vouchers.append(voucher)
        self._submit(self.c.redeem(voucher, points, partner=partner))

    def redeem_with_an_old_voucher(self, n: int, partner: int, points: int) -> None:
        self._submit(self.c.redeem(self._pick(self.vouchers, n), points, partner=partner))

    def refund(self, n: int, partner: int, points: int) -> None:
        redemption_id = self._pick(self._ids(Redeem, self.model.redemptions), n)
        self._submit(self.c.refund(redemption_id, points, partner=partner))

    def refund_what_is_left(self, n: int) -> None:
        redemption_id = self._pick(sorted(self.model.redemptions), n)
        redemption = self.model.redemptions[redemption_id]
        partner = [k.party_id for k in self.c.partners].index(redemption["partner"])
        self._submit(self.c.refund(redemption_id, redemption["left"], partner=partner))

    def reverse(self, n: int, centre: int) -> None:
        deposit_id = self._pick(self._ids(Deposit, self.model.deposits), n)
        self._submit(self.c.reverse(deposit_id, centre=centre))

    def resubmit(self, n: int) -> None:
        self._submit(self._pick(self.issued, n))

    def reuse_a_tx_id(self, n: int, member: int, points: int) -> None:
        taken = self._pick(self.issued, n).tx_id
        self._submit(self.c.deposit(self.members[member], points, tx_id=taken))

    # --- blocks -----------------------------------------------------------------------------

    def seal(self, step_ms: int):
        """Executes the pending block; every code and bucket must be what the model says."""
        previous = self.head.header
        time_ms = previous.time_ms + step_ms
        executed = self.c.run_block(self.state, self.head, self.pending, time_ms)
        header = executed.block.header
        assert header.time_ms == max(previous.time_ms, time_ms)
        predicted = [self.model.apply(tx, header.time_ms) for tx in self.pending]
        assert executed.codes == predicted
        self.head = executed.head
        self.blocks.append(executed.block.encode())
        self.headers.append(header)
        self.recorded.extend(self.pending)
        self.pending = []
        self.check_buckets()
        self.check_conservation()
        return executed

    def originals(self) -> list[Tx]:
        """The recorded transactions that hold their tx id (not later reuses of the id)."""
        firsts: dict[bytes, Tx] = {}
        for tx in self.recorded:
            if self.model.records[tx.tx_id][0] == tx.signing_bytes():
                firsts.setdefault(tx.tx_id, tx)
        return list(firsts.values())

    def resubmit_block(self, picks: list[int]) -> None:
        """A block of recorded transactions sent again: all EXISTS, and nothing changes."""
        if self.pending:
            self.seal(60_000)
        originals = self.originals()
        txs = [self._pick(originals, n) for n in picks]
        entries, root = dict(self.state.entries), self.head.header.state_root
        records = {tx.tx_id: self.state.tx_record(tx.tx_id) for tx in txs}
        self.pending = list(txs)
        executed = self.seal(1_000)
        assert executed.codes == [Code.EXISTS] * len(txs)
        assert executed.state.changes() == []
        assert (dict(self.state.entries), executed.block.header.state_root) == (entries, root)
        assert {tx.tx_id: self.state.tx_record(tx.tx_id) for tx in txs} == records

    # --- what must hold -----------------------------------------------------------------------

    def check_buckets(self) -> None:
        view = Overlay(self.state)
        for member in self.members:
            stored = dict(view.buckets(member.party_id))
            assert all(p > 0 for p in stored.values())
            expected = {c: p for (m, c), p in self.model.buckets.items() if m == member.party_id and p}
            assert stored == expected
        assert all(p >= 0 for p in self.model.buckets.values())

    def check_conservation(self) -> None:
        for centre in self.model.centres:
            t = self.model.totals[centre]
            outstanding = sum(p for (_, c), p in self.model.buckets.items() if c == centre)
            assert t["deposited"] - t["redeemed"] + t["refunded"] - t["reversed"] == outstanding

    def finish(self) -> None:
        """Seals what is pending, resubmits every recorded transaction, then verifies the
        chain from its genesis and replays it twice."""
        if self.pending:
            self.seal(60_000)
        self.resubmit_block(list(range(len(self.originals()))))
        self.check_the_chain_verifies()
        first, second = self.replay_headers(), self.replay_headers()
        assert first == second == self.headers

    def check_the_chain_verifies(self) -> None:
        report = verify_chain(self.c.genesis_raw, self.blocks)
        assert report.ok, report.problem
        assert report.head_hash == self.head.hash
        assert report.blocks == len(self.blocks) + 1
        assert set(report.centres) <= self.model.centres
        for centre in self.model.centres:
            mine = self.model.totals[centre]
            totals = report.centres[centre]
            assert totals.balanced
            assert (totals.deposited, totals.redeemed, totals.refunded, totals.reversed) == (
                mine["deposited"], mine["redeemed"], mine["refunded"], mine["reversed"])
            assert totals.outstanding == sum(p for (_, c), p in self.model.buckets.items() if c == centre)

    def replay_headers(self) -> list:
        state, head = self.c.open_chain()
        headers = []
        for raw in self.blocks:
            executed = replay_block(head, decode_block(raw), state)
            state.absorb(executed.state)
            head = executed.head
            headers.append(executed.block.header)
        assert state.entries == self.state.entries
        return headers


# --- driver 1: hypothesis, which shrinks a failing sequence ---------------------------------


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def open(self):
        self.run = LedgerRun()

    @rule(member=st.integers(0, MEMBERS - 1), centre=st.integers(0, 1))
    def register(self, member, centre):
        self.run.register(member, centre)

    @rule(member=st.integers(0, MEMBERS - 1), centre=st.integers(0, 1), points=points)
    def deposit(self, member, centre, points):
        self.run.deposit(member, centre, points)

    @rule(member=st.integers(0, MEMBERS - 1), partner=st.integers(0, 1), points=points)
    def redeem(self, member, partner, points):
        self.run.redeem(member, partner, points)

    @rule(member=st.integers(0, MEMBERS - 1), partner=st.integers(0, 1), points=points,
          flaw=st.sampled_from(FLAWS))
    def redeem_with_a_doubtful_voucher(self, member, partner, points, flaw):
        self.run.redeem(member, partner, points, flaw)

    @precondition(lambda self: self.run.vouchers)
    @rule(n=pick, partner=st.integers(0, 1), points=points)
    def redeem_with_an_old_voucher(self, n, partner, points):
        self.run.redeem_with_an_old_voucher(n, partner, points)

    @rule(n=pick, partner=st.integers(0, 1), points=st.integers(0, 120))
    def refund(self, n, partner, points):
        self.run.refund(n, partner, points)

    @precondition(lambda self: self.run.model.redemptions)
    @rule(n=pick)
    def refund_what_is_left(self, n):
        self.run.refund_what_is_left(n)

    @rule(n=pick, centre=st.integers(0, 1))
    def reverse(self, n, centre):
        self.run.reverse(n, centre)

    @rule(n=pick)
    def resubmit(self, n):
        self.run.resubmit(n)

    @rule(n=pick, member=st.integers(0, MEMBERS - 1), points=st.integers(1, 50))
    def reuse_a_tx_id(self, n, member, points):
        self.run.reuse_a_tx_id(n, member, points)

    @precondition(lambda self: self.run.pending)
    @rule(step_ms=st.sampled_from(STEPS_MS))
    def seal_block(self, step_ms):
        self.run.seal(step_ms)

    @rule(picks=st.lists(pick, min_size=1, max_size=4))
    def resubmit_a_block(self, picks):
        self.run.resubmit_block(picks)

    @invariant()
    def points_are_conserved_per_centre(self):
        self.run.check_conservation()

    def teardown(self):
        if hasattr(self, "run"):
            self.run.finish()


LedgerMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, derandomize=True)
TestLedgerSequences = LedgerMachine.TestCase


# --- driver 2: a seeded simulation with fixed weights ---------------------------------------


def simulate(seed: int, operations: int) -> LedgerRun:
    rng = random.Random(seed)
    run = LedgerRun()
    member, side = (lambda: rng.randrange(MEMBERS)), (lambda: rng.randrange(2))
    n, points = (lambda: rng.randrange(2**16)), (lambda: amount(rng.randrange(152)))
    choices = [
        (2, lambda: run.register(member(), side())),
        (6, lambda: run.deposit(member(), side(), points())),
        (6, lambda: run.redeem(member(), side(), points())),
        (2, lambda: run.redeem(member(), side(), points(), rng.choice(FLAWS))),
        (1, lambda: run.vouchers and run.redeem_with_an_old_voucher(n(), side(), points())),
        (3, lambda: run.refund(n(), side(), rng.randrange(80))),
        (2, lambda: run.model.redemptions and run.refund_what_is_left(n())),
        (3, lambda: run.reverse(n(), side())),
        (1, lambda: run.resubmit(n())),
        (1, lambda: run.reuse_a_tx_id(n(), member(), 1 + rng.randrange(50))),
        (4, lambda: run.pending and run.seal(rng.choice(STEPS_MS))),
        (1, lambda: run.resubmit_block([n() for _ in range(3)])),
    ]
    weights, actions = zip(*choices)
    for _ in range(operations):
        rng.choices(actions, weights)[0]()
    run.finish()
    return run


@pytest.mark.parametrize("seed", range(4))
def test_seeded_simulation_agrees_with_the_model_and_verifies(seed):
    run = simulate(seed, operations=150)
    outcomes = Counter(code for _, code in run.model.records.values())
    kinds_accepted = Counter(type(tx.payload).__name__ for tx in run.originals()
                             if run.model.records[tx.tx_id][1] == Code.OK)
    # The simulation must reach the interesting places, or it proves little.
    assert {"Deposit", "Redeem", "Refund", "Reversal"} <= set(kinds_accepted), (seed, kinds_accepted)
    assert len(outcomes) >= 8, (seed, outcomes)
