"""The consensus wire codec (node.codec): catch-up responses carry each block's consensus
position, and a response whose positions do not add up is refused before the replica sees it."""

from __future__ import annotations

import pytest

from ledger.encoding import encode
from node.codec import BlocksResponse, CodecError, decode_message, encode_message

A, B = "a" * 40, "b" * 40


def _response(positions, last=None) -> bytes:
    items = [[b"block%d" % i, b"cert%d" % i, index, term] for i, (index, term) in enumerate(positions)]
    index, term = last if last is not None else positions[-1]
    return encode([13, A, B, 0, items, index, term])


def test_a_blocks_response_round_trips_with_each_blocks_position():
    message = BlocksResponse(A, B, ((b"b1", b"c1"), (b"b2", b"c2")), 9, 3, ((7, 2), (9, 3)))
    assert decode_message(encode_message(message)) == message


@pytest.mark.parametrize("positions, last", [
    ([(7, 2), (7, 2)], None),          # the same entry twice
    ([(9, 2), (7, 2)], None),          # going back
    ([(7, 3), (9, 2)], None),          # a term going back
    ([(7, 2), (9, 2)], (10, 2)),       # the last block is not at raft_index
], ids=["repeated", "backwards", "term backwards", "last differs"])
def test_positions_that_do_not_add_up_are_refused(positions, last):
    with pytest.raises(CodecError):
        decode_message(_response(positions, last))


def test_the_older_two_field_block_items_are_refused():
    with pytest.raises(CodecError):
        decode_message(encode([13, A, B, 0, [[b"block", b"cert"]], 9, 3]))
