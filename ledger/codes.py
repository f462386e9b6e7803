"""The stable, numbered result codes of the ledger rules.

A code's number never changes meaning once released; new codes get new numbers.
Every code has a one-line message a person can act on. docs/FORMAT.md ("Result codes")
lists the same table.

Codes 1-3 and 24 are *static*: they depend only on the transaction bytes and the chain id,
and a transaction failing them never enters a block. All others are decided by the rules against
the state; a transaction refused with one of them is recorded in its block with that code
(its id is then taken, and resubmitting it returns the same result). A node may answer
NOT_AUTHORISED, UNKNOWN_MEMBER or INSUFFICIENT_APPROVALS before a block, from its current state,
without recording anything (ledger.rules.refusal_before_signatures; FORMAT.md §6).
"""

from __future__ import annotations

from enum import IntEnum


class Code(IntEnum):
    OK = 0
    MALFORMED = 1
    WRONG_CHAIN = 2
    BAD_SIGNATURE = 3
    NOT_AUTHORISED = 4
    UNKNOWN_MEMBER = 5
    MEMBER_EXISTS = 6
    INSUFFICIENT_POINTS = 7
    VOUCHER_EXPIRED = 8
    VOUCHER_USED = 9
    VOUCHER_OTHER_PARTNER = 10
    VOUCHER_OVER_MAXIMUM = 11
    AMOUNT_OUT_OF_RANGE = 12
    UNKNOWN_REDEMPTION = 13
    REDEMPTION_FULLY_REFUNDED = 14
    REFUND_EXCEEDS_REDEMPTION = 15
    UNKNOWN_DEPOSIT = 16
    DEPOSIT_ALREADY_REVERSED = 17
    EXISTS = 18
    EXISTS_WITH_DIFFERENT_FIELDS = 19
    INSUFFICIENT_APPROVALS = 20
    PARTY_EXISTS = 21
    UNKNOWN_PARTY = 22
    LAST_OF_ROLE = 23
    INVALID_KEY = 24        # static: a key in the transaction fails the key rule (FORMAT.md §2)
    KEY_IN_USE = 25

    @property
    def message(self) -> str:
        return MESSAGES[self]

    @property
    def static(self) -> bool:
        """True for codes decided from the bytes alone; such transactions never enter a block."""
        return self in (Code.MALFORMED, Code.WRONG_CHAIN, Code.BAD_SIGNATURE, Code.INVALID_KEY)


MESSAGES: dict[Code, str] = {
    Code.OK: "accepted",
    Code.MALFORMED: "the transaction is not a valid canonical encoding; rebuild it with a current client",
    Code.WRONG_CHAIN: "the transaction names another consortium's chain id; check the genesis file you signed against",
    Code.BAD_SIGNATURE: "a signature does not verify; sign again with the right key",
    Code.NOT_AUTHORISED: "the signer's role may not write this transaction (or the signer is retired)",
    Code.UNKNOWN_MEMBER: "no member with that id is registered; register the member at a centre first",
    Code.MEMBER_EXISTS: "that member is already registered",
    Code.INSUFFICIENT_POINTS: "the member does not have enough points for this",
    Code.VOUCHER_EXPIRED: "the voucher has expired; ask the member for a new one",
    Code.VOUCHER_USED: "the voucher has already been used; ask the member for a new one",
    Code.VOUCHER_OTHER_PARTNER: "the voucher was made out to another partner",
    Code.VOUCHER_OVER_MAXIMUM: "the points asked exceed the voucher's maximum",
    Code.AMOUNT_OUT_OF_RANGE: "an amount is zero or beyond the documented bounds",
    Code.UNKNOWN_REDEMPTION: "no redemption with that transaction id",
    Code.REDEMPTION_FULLY_REFUNDED: "that redemption has already been refunded in full",
    Code.REFUND_EXCEEDS_REDEMPTION: "the refund is larger than what remains of the redemption",
    Code.UNKNOWN_DEPOSIT: "no deposit with that transaction id",
    Code.DEPOSIT_ALREADY_REVERSED: "that deposit has already been reversed",
    Code.EXISTS: "this transaction was already recorded; the original result stands",
    Code.EXISTS_WITH_DIFFERENT_FIELDS: "this transaction id is taken by a different transaction; pick a new id",
    Code.INSUFFICIENT_APPROVALS: "fewer distinct admins signed than the consortium's threshold",
    Code.PARTY_EXISTS: "a party with that key is already known",
    Code.UNKNOWN_PARTY: "no active party with that key and role",
    Code.LAST_OF_ROLE: "retiring it would leave the consortium with no active node",
    Code.INVALID_KEY: ("a public key is not a valid Ed25519 key (not canonical, of small order, or outside "
                       "the prime-order subgroup); generate a new key with `nanum keys generate`"),
    Code.KEY_IN_USE: "that key already belongs to another identity (a member, or a centre, partner, node or admin); "
                     "one key is one identity: make a new key for this one",
}
