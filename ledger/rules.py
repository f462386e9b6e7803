"""The ledger rules: what one statically checked transaction does to the state.

``apply_tx`` is a pure function of (transaction, state, block time): no clock, no randomness,
no I/O. It either writes the transaction's effects into the overlay and returns Code.OK, or
writes nothing and returns the rejection code. Every handler finishes all its checks before
its first write, so a rejection can never leave half an effect behind.

The order of checks, and so which code wins when several apply, is part of the format
(docs/FORMAT.md "Rules"): replay must give the same code on every node.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ledger import keys
from ledger.codes import Code
from ledger.limits import (
    MAX_BUCKET_POINTS,
    MAX_DONATION_AMOUNT,
    MAX_POINTS_PER_TX,
    MAX_VOLUNTEER_MINUTES,
)
from ledger.state import Consortium, DepositRecord, Member, Overlay, Party, RedemptionRecord
from ledger.tx import (
    Deposit,
    DepositKind,
    Genesis,
    Governance,
    GovernanceAction,
    Redeem,
    Refund,
    RegisterMember,
    Reversal,
    Role,
    Tx,
    TxKind,
)


def apply_tx(tx: Tx, state: Overlay, block_time_ms: int) -> Code:
    """Applies ``tx`` (which passed ``check_tx``) at ``block_time_ms``. See the module doc."""
    record = state.tx_record(tx.tx_id)
    if record is not None:
        return Code.EXISTS if record.body_hash == tx.body_hash() else Code.EXISTS_WITH_DIFFERENT_FIELDS
    return _HANDLERS[tx.kind](tx, state, block_time_ms)


# The role each kind's author must hold, active, for the transaction to have any effect.
AUTHOR_ROLES: dict[TxKind, Role] = {
    TxKind.REGISTER_MEMBER: Role.CENTRE, TxKind.DEPOSIT: Role.CENTRE, TxKind.REVERSAL: Role.CENTRE,
    TxKind.REDEEM: Role.PARTNER, TxKind.REFUND: Role.PARTNER, TxKind.GOVERNANCE: Role.ADMIN,
}


def refusal_before_signatures(tx: Tx, state: Overlay) -> tuple[Code, str] | None:
    """The first checks of ``apply_tx`` that need no signature and only a few reads of the
    state: (code, why) if ``tx`` fails one, else None. They are the rules' own first checks in
    the rules' order, so for a ``tx_id`` not yet recorded, ``apply_tx(tx, state, t)`` returns
    the same code for every block time ``t`` (tests/test_rules.py checks it). A node refuses
    such a transaction at admission without checking a signature and without recording it
    (docs/ARCHITECTURE.md, "Admission"); the state may change before a block, so the block's
    rules still decide whatever passes here.

    Checked: the author is an active party of the role its kind needs (``AUTHOR_ROLES``); a
    deposit's member is registered; a governance transaction has no more signers than there
    are active admins, every signer is an active admin, and there are at least as many as the
    threshold."""
    role = AUTHOR_ROLES[tx.kind]
    if tx.kind == TxKind.GOVERNANCE:
        return _governance_refusal(tx, state)
    if not _active(state, tx.author_id, role):
        return Code.NOT_AUTHORISED, (f"the author {tx.author_id.hex()} is no active {role.name.lower()}; "
                                     f"a {tx.kind.name.lower().replace('_', '-')} is written by one")
    if tx.kind == TxKind.DEPOSIT and state.member(tx.payload.member_id) is None:
        return Code.UNKNOWN_MEMBER, f"no member {tx.payload.member_id.hex()} is registered"
    return None


def _governance_refusal(tx: Tx, state: Overlay) -> tuple[Code, str] | None:
    if not _active(state, tx.author_id, Role.ADMIN):      # the first signer: one read, no scan
        return Code.NOT_AUTHORISED, f"the author {tx.author_id.hex()} is no active admin"
    signers = tx.signers()            # distinct: the decoder refuses a repeated key
    admins = {party_id for party_id, _ in state.active_parties(Role.ADMIN)}
    if len(signers) > len(admins):
        # Signers are distinct, so one of them is no active admin: the rules give NOT_AUTHORISED.
        return Code.NOT_AUTHORISED, (f"{len(signers)} signers, but the consortium has {len(admins)} active "
                                     "admins: every signer must be one")
    for signer in signers:
        if keys.party_id(signer) not in admins:
            return Code.NOT_AUTHORISED, f"signer {keys.party_id(signer).hex()} is no active admin"
    threshold = state.consortium().threshold
    if len(signers) < threshold:
        return Code.INSUFFICIENT_APPROVALS, f"{len(signers)} admins signed; the threshold is {threshold}"
    return None


def apply_genesis(genesis: Genesis, state: Overlay) -> None:
    """Writes the founding state: the consortium and every party it names."""
    state.put_consortium(Consortium(genesis.name, genesis.threshold))
    for role, entries in ((Role.ADMIN, genesis.admins), (Role.CENTRE, genesis.centres),
                          (Role.PARTNER, genesis.partners), (Role.NODE, genesis.nodes)):
        for entry in entries:
            state.put_party(entry.party_id, Party(role, entry.public_key, True, entry.name, entry.address))


def _active(state: Overlay, party_id: bytes, role: Role) -> bool:
    party = state.party(party_id)
    return party is not None and party.active and party.role == role


def _points_in_range(points: int) -> bool:
    return 1 <= points <= MAX_POINTS_PER_TX


def _register_member(tx: Tx, state: Overlay, _time_ms: int) -> Code:
    payload: RegisterMember = tx.payload
    if not _active(state, tx.author_id, Role.CENTRE):
        return Code.NOT_AUTHORISED
    if state.member(payload.member_id) is not None:
        return Code.MEMBER_EXISTS
    if state.party(payload.member_id) is not None:      # one key, one identity: never also a party's
        return Code.KEY_IN_USE
    state.put_member(payload.member_id, Member(payload.member_key, tx.author_id))
    return Code.OK


def _quantity_in_range(payload: Deposit) -> bool:
    if payload.deposit_kind == DepositKind.VOLUNTEERING:
        return 1 <= payload.quantity <= MAX_VOLUNTEER_MINUTES
    if payload.deposit_kind == DepositKind.DONATION:
        return 1 <= payload.quantity <= MAX_DONATION_AMOUNT
    return payload.quantity == 0


def _deposit(tx: Tx, state: Overlay, _time_ms: int) -> Code:
    payload: Deposit = tx.payload
    centre_id = tx.author_id
    if not _active(state, centre_id, Role.CENTRE):
        return Code.NOT_AUTHORISED
    if state.member(payload.member_id) is None:
        return Code.UNKNOWN_MEMBER
    if not _points_in_range(payload.points) or not _quantity_in_range(payload):
        return Code.AMOUNT_OUT_OF_RANGE
    bucket = state.bucket(payload.member_id, centre_id)
    if bucket + payload.points > MAX_BUCKET_POINTS:
        return Code.AMOUNT_OUT_OF_RANGE
    state.set_bucket(payload.member_id, centre_id, bucket + payload.points)
    state.put_deposit(tx.tx_id, DepositRecord(payload.member_id, centre_id, payload.points, False))
    return Code.OK


def _redeem(tx: Tx, state: Overlay, time_ms: int) -> Code:
    payload: Redeem = tx.payload
    voucher = payload.voucher
    partner_id = tx.author_id
    if not _active(state, partner_id, Role.PARTNER):
        return Code.NOT_AUTHORISED
    if voucher.partner_id != partner_id:
        return Code.VOUCHER_OTHER_PARTNER
    member_id = voucher.member_id
    if state.member(member_id) is None:
        return Code.UNKNOWN_MEMBER
    if time_ms > voucher.expiry_ms:
        return Code.VOUCHER_EXPIRED
    if state.voucher_used(member_id, voucher.nonce):
        return Code.VOUCHER_USED
    if not _points_in_range(payload.points):
        return Code.AMOUNT_OUT_OF_RANGE
    if payload.points > voucher.max_points:
        return Code.VOUCHER_OVER_MAXIMUM
    buckets = state.buckets(member_id)
    if sum(points for _, points in buckets) < payload.points:
        return Code.INSUFFICIENT_POINTS
    drawn = _draw(buckets, payload.points)
    for centre_id, points in drawn:
        state.set_bucket(member_id, centre_id, state.bucket(member_id, centre_id) - points)
    state.mark_voucher_used(member_id, voucher.nonce, tx.tx_id)
    state.put_redemption(tx.tx_id, RedemptionRecord(partner_id, member_id, payload.points, 0, drawn))
    return Code.OK


def _draw(buckets: list[tuple[bytes, int]], points: int) -> tuple[tuple[bytes, int], ...]:
    """Takes ``points`` from the buckets in ascending centre-id order (a documented rule:
    each redeemed point is attributed to exactly one centre, which settles with the partner)."""
    drawn = []
    remaining = points
    for centre_id, available in buckets:
        if remaining == 0:
            break
        take = min(available, remaining)
        drawn.append((centre_id, take))
        remaining -= take
    return tuple(drawn)


def _refund(tx: Tx, state: Overlay, _time_ms: int) -> Code:
    payload: Refund = tx.payload
    if not _active(state, tx.author_id, Role.PARTNER):
        return Code.NOT_AUTHORISED
    redemption = state.redemption(payload.redemption_id)
    if redemption is None:
        return Code.UNKNOWN_REDEMPTION
    if redemption.partner_id != tx.author_id:
        return Code.NOT_AUTHORISED
    remaining = redemption.points - redemption.refunded
    if remaining == 0:
        return Code.REDEMPTION_FULLY_REFUNDED
    if not _points_in_range(payload.points):
        return Code.AMOUNT_OUT_OF_RANGE
    if payload.points > remaining:
        return Code.REFUND_EXCEEDS_REDEMPTION
    returned = _returned(redemption, payload.points)
    if any(state.bucket(redemption.member_id, c) + p > MAX_BUCKET_POINTS for c, p in returned):
        return Code.AMOUNT_OUT_OF_RANGE
    for centre_id, points in returned:
        state.set_bucket(redemption.member_id, centre_id,
                         state.bucket(redemption.member_id, centre_id) + points)
    state.put_redemption(payload.redemption_id, RedemptionRecord(
        redemption.partner_id, redemption.member_id, redemption.points,
        redemption.refunded + payload.points, redemption.drawn))
    return Code.OK


def _returned(redemption: RedemptionRecord, points: int) -> list[tuple[bytes, int]]:
    """(centre id, points) that a refund of ``points`` gives back, by the last-drawn-first rule."""
    before = dict(redemption.refunded_split())
    after = replace(redemption, refunded=redemption.refunded + points).refunded_split()
    return [(centre_id, back - before.get(centre_id, 0)) for centre_id, back in after
            if back > before.get(centre_id, 0)]


def _reversal(tx: Tx, state: Overlay, _time_ms: int) -> Code:
    payload: Reversal = tx.payload
    if not _active(state, tx.author_id, Role.CENTRE):
        return Code.NOT_AUTHORISED
    deposit = state.deposit(payload.deposit_id)
    if deposit is None:
        return Code.UNKNOWN_DEPOSIT
    if deposit.centre_id != tx.author_id:
        return Code.NOT_AUTHORISED
    if deposit.reversed:
        return Code.DEPOSIT_ALREADY_REVERSED
    bucket = state.bucket(deposit.member_id, deposit.centre_id)
    if bucket < deposit.points:
        return Code.INSUFFICIENT_POINTS
    state.set_bucket(deposit.member_id, deposit.centre_id, bucket - deposit.points)
    state.put_deposit(payload.deposit_id, DepositRecord(
        deposit.member_id, deposit.centre_id, deposit.points, True))
    return Code.OK


def _governance(tx: Tx, state: Overlay, _time_ms: int) -> Code:
    payload: Governance = tx.payload
    for signer in tx.signers():
        if not _active(state, keys.party_id(signer), Role.ADMIN):
            return Code.NOT_AUTHORISED
    if len(tx.signers()) < state.consortium().threshold:
        return Code.INSUFFICIENT_APPROVALS
    target_id = keys.party_id(payload.public_key)
    target = state.party(target_id)
    if payload.action == GovernanceAction.ADMIT:
        if target is not None:
            return Code.PARTY_EXISTS
        if state.member(target_id) is not None:          # one key, one identity: never also a member's
            return Code.KEY_IN_USE
        state.put_party(target_id, Party(payload.role, payload.public_key, True, payload.name,
                                         payload.address))
        return Code.OK
    if target is None or not target.active or target.role != payload.role:
        return Code.UNKNOWN_PARTY
    if payload.role == Role.NODE and len(state.active_parties(Role.NODE)) <= 1:
        return Code.LAST_OF_ROLE
    state.put_party(target_id, Party(target.role, target.public_key, False, target.name, target.address))
    return Code.OK


_HANDLERS: dict[TxKind, Callable[[Tx, Overlay, int], Code]] = {
    TxKind.REGISTER_MEMBER: _register_member,
    TxKind.DEPOSIT: _deposit,
    TxKind.REDEEM: _redeem,
    TxKind.REFUND: _refund,
    TxKind.REVERSAL: _reversal,
    TxKind.GOVERNANCE: _governance,
}
