"""Tests of the hand-built block entry (ledger/block.py): ``encode_entry`` and ``decode_entry``
must give exactly what the general canonical encoder and decoder give, for every input — the
fast path may only ever accept what the decoder accepts, with the same answer."""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.block import MAX_CODE, _split_entry, decode_entry, encode_entry
from ledger.codes import Code
from ledger.encoding import DecodeError, decode, encode, expect_array, expect_bytes, expect_uint
from ledger.limits import MAX_TX_BYTES

PROPERTY = settings(max_examples=400, deadline=None, derandomize=True)
SIZES = st.one_of(st.sampled_from([0, 1, 255, 256, 257, 65535 & MAX_TX_BYTES, MAX_TX_BYTES - 1, MAX_TX_BYTES]),
                  st.integers(0, MAX_TX_BYTES))


def general(raw: bytes) -> tuple[bytes, int]:
    """The entry as the general decoder reads it (what decode_entry did before its fast path)."""
    fields = expect_array(decode(raw, MAX_TX_BYTES + 16), 2, "entry")
    return (expect_bytes(fields[0], "entry.tx", max_size=MAX_TX_BYTES),
            expect_uint(fields[1], "entry.code", 0, MAX_CODE))


@PROPERTY
@given(SIZES, st.sampled_from(list(Code)), st.randoms(use_true_random=False))
def test_encode_entry_is_the_canonical_encoding(size, code, rng):
    tx = rng.randbytes(size)
    entry = encode_entry(tx, code)
    assert entry == encode([tx, int(code)])
    assert decode_entry(entry) == decode_entry(entry, prechecked=True) == (tx, int(code)) == general(entry)


def test_encode_entry_outside_the_common_shape_is_still_canonical():
    too_big = bytes(MAX_TX_BYTES + 1)
    assert encode_entry(too_big, Code.OK) == encode([too_big, 0])
    with pytest.raises(DecodeError):
        decode_entry(encode_entry(too_big, Code.OK))      # over the limit, as before


def _entries() -> st.SearchStrategy[bytes]:
    valid = st.builds(lambda size, code: encode_entry(bytes(size), code), SIZES, st.sampled_from(list(Code)))
    return st.one_of(valid, st.binary(max_size=300))


@PROPERTY
@given(_entries(), st.integers(0, 10_000), st.integers(0, 255), st.sampled_from(["flip", "cut", "grow", "none"]))
# Hand-picked shapes the fast path must leave to the decoder (or read the same):
@example(b"\x92\xc5\x00\x05hello\x00", 0, 0, "none")           # bin16 for a short string: not canonical
@example(b"\x92\xc4\x05hello\xcc\x05", 0, 0, "none")            # a code in a longer form than needed
@example(b"\x92\xc4\x05hello\x7f", 0, 0, "none")                # code above MAX_CODE
@example(b"\x92\xc4\x06hello\x00", 0, 0, "none")                # length says more than there is
@example(b"\x92\xc4\x04hello\x00", 0, 0, "none")                # trailing bytes
@example(b"\x93\xc4\x05hello\x00\x00", 0, 0, "none")            # three fields
@example(b"\x92\xa5hello\x00", 0, 0, "none")                    # text, not bytes
@example(b"\x92\xc6\x00\x00\x00\x05hello\x00", 0, 0, "none")    # bin32
def test_decode_entry_agrees_with_the_general_decoder(entry, position, byte, change):
    if change == "flip" and entry:
        i = position % len(entry)
        entry = entry[:i] + bytes([byte]) + entry[i + 1:]
    elif change == "cut" and entry:
        entry = entry[:position % len(entry)]
    elif change == "grow":
        entry = entry + bytes([byte])
    split = _split_entry(entry)
    if split is not None:
        assert split == general(entry)
    try:
        expected = general(entry)
    except DecodeError as exc:
        with pytest.raises(DecodeError) as raised:
            decode_entry(entry)
        assert (raised.value.field, str(raised.value)) == (exc.field, str(exc))
    else:
        assert decode_entry(entry) == expected
