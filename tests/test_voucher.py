"""Tests of ledger/voucher.py's bounds: ``max_points`` is 1 … 1 000 000 (FORMAT.md §5), the
same range as the points of one redemption, so no voucher allows what no redemption may take."""

import pytest

from ledger.codes import Code
from ledger.encoding import DecodeError, encode
from ledger.limits import MAX_POINTS_PER_TX, MAX_VOUCHER_POINTS, MIN_VOUCHER_POINTS
from ledger.tx import Rejected, TxKind, check_tx
from ledger.voucher import VOUCHER_TAG, Voucher
from tests.consortium import GENESIS_TIME_MS
from tests.consortium import TestConsortium as Consortium

c = Consortium()
member = c.member("jiwoo")


def test_the_range_is_the_range_of_one_redemption():
    assert (MIN_VOUCHER_POINTS, MAX_VOUCHER_POINTS) == (1, MAX_POINTS_PER_TX) == (1, 1_000_000)


def signed_by_member(max_points: int) -> Voucher:
    """A voucher with any max_points, signed as the member would (sign_voucher refuses to)."""
    fields = [c.chain_id, member.public_key, c.partners[0].party_id, max_points, b"\x07" * 16,
              GENESIS_TIME_MS + 1]
    return Voucher(*fields, member.sign(encode([VOUCHER_TAG, *fields])))


def signed_redeem(voucher: Voucher) -> bytes:
    """The bytes of a redemption of 1 point with ``voucher``, validly signed by the partner
    (make_tx refuses to build one with a voucher out of range)."""
    partner, tx_id, payload = c.partners[0], c.tx_id(), [voucher.to_wire(), 1, ""]
    message = encode([TxKind.REDEEM.tag, c.chain_id, int(TxKind.REDEEM), tx_id, partner.public_key, payload])
    return encode([1, c.chain_id, int(TxKind.REDEEM), tx_id, partner.public_key, payload,
                   partner.sign(message), []])


@pytest.mark.parametrize("max_points", [MIN_VOUCHER_POINTS, MAX_VOUCHER_POINTS])
def test_max_points_at_either_end_is_accepted(max_points):
    voucher = c.voucher(member, max_points)
    assert Voucher.from_compact(voucher.to_compact()) == voucher
    assert check_tx(signed_redeem(voucher), c.chain_id).payload.voucher.max_points == max_points


@pytest.mark.parametrize("max_points", [MIN_VOUCHER_POINTS - 1, MAX_VOUCHER_POINTS + 1, 2**64 - 1])
def test_max_points_past_either_end_is_malformed(max_points):
    voucher = signed_by_member(max_points)
    assert voucher.signature_valid()
    with pytest.raises(DecodeError) as caught:
        Voucher.from_compact(voucher.to_compact())
    assert caught.value.field == "voucher.max_points"
    with pytest.raises(Rejected) as rejected:
        check_tx(signed_redeem(voucher), c.chain_id)
    assert (rejected.value.rejection.code, rejected.value.rejection.field) == (
        Code.MALFORMED, "payload.voucher.max_points")


@pytest.mark.parametrize("max_points", [MIN_VOUCHER_POINTS - 1, MAX_VOUCHER_POINTS + 1])
def test_a_member_never_signs_a_voucher_past_either_end(max_points):
    with pytest.raises(DecodeError) as caught:
        c.voucher(member, max_points)
    assert caught.value.field == "voucher.max_points"
