"""Tests of ledger/encoding.py: one canonical msgpack form, and a decoder that refuses any other.

Every signature and hash in the ledger is over these bytes, so a value must have exactly one
encoding, and anything else must come back as DecodeError (never another exception)."""

import struct

import msgpack
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from ledger.encoding import UINT64_MAX, DecodeError, decode, decode_uint, encode
from ledger.limits import MAX_NESTING

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True)

scalars = st.one_of(
    st.integers(0, UINT64_MAX),
    st.binary(max_size=300),
    st.text(max_size=300),
    st.booleans(),
    st.none(),
)


def values(depth: int = MAX_NESTING) -> st.SearchStrategy:
    """Allowed values whose scalars sit at most ``depth`` arrays deep."""
    if depth == 0:
        return scalars
    return st.one_of(scalars, st.lists(values(depth - 1), max_size=6))


def arrays_to_depth(depth: int, content: list) -> list:
    """Arrays nested so the deepest sits at ``depth`` (the top-level array is depth 0, as in
    docs/FORMAT.md section 1) and holds ``content``."""
    value = content
    for _ in range(depth):
        value = [value]
    return value


def assert_refused(data: bytes, **kwargs) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(data, **kwargs)
    assert type(caught.value) is DecodeError
    return caught.value


# --- the canonical form ------------------------------------------------------------------


@PROPERTY
@given(values())
def test_decode_inverts_encode_and_reencoding_gives_the_same_bytes(value):
    data = encode(value)
    decoded = decode(data)
    assert decoded == value
    assert encode(decoded) == data


@pytest.mark.parametrize("value, expected", [
    (0, b"\x00"),
    (127, b"\x7f"),
    (128, b"\xcc\x80"),
    (255, b"\xcc\xff"),
    (256, b"\xcd\x01\x00"),
    (65535, b"\xcd\xff\xff"),
    (65536, b"\xce\x00\x01\x00\x00"),
    (2**32 - 1, b"\xce\xff\xff\xff\xff"),
    (2**32, b"\xcf\x00\x00\x00\x01\x00\x00\x00\x00"),
    (UINT64_MAX, b"\xcf" + b"\xff" * 8),
    ("a" * 31, b"\xbf" + b"a" * 31),
    ("a" * 32, b"\xd9\x20" + b"a" * 32),
    ("a" * 256, b"\xda\x01\x00" + b"a" * 256),
    (b"", b"\xc4\x00"),
    (b"x" * 256, b"\xc5\x01\x00" + b"x" * 256),
    ([0] * 15, b"\x9f" + b"\x00" * 15),
    ([0] * 16, b"\xdc\x00\x10" + b"\x00" * 16),
    ([1, b"\x00", "a", True, False, None], b"\x96\x01\xc4\x01\x00\xa1a\xc3\xc2\xc0"),
])
def test_each_value_has_its_shortest_form(value, expected):
    assert encode(value) == expected
    assert decode(expected) == value


def test_text_is_utf8_and_bytes_stay_bytes():
    assert encode("나눔") == b"\xa6" + "나눔".encode("utf-8")
    assert decode(encode("나눔")) == "나눔"
    assert isinstance(decode(encode(b"ab")), bytes)
    assert isinstance(decode(encode("ab")), str)


@pytest.mark.parametrize("content", [[], [7], [b"x", "y", None]], ids=["empty", "int", "mixed"])
def test_arrays_nested_to_the_documented_depth_are_accepted(content):
    # FORMAT.md: "Array nesting depth is at most 8 (the top-level array is depth 0)".
    value = arrays_to_depth(MAX_NESTING, content)
    assert decode(encode(value)) == value


@PROPERTY
@given(st.binary(max_size=64))
@example(b"")
@example(b"\xc1")
@example(b"\x91" * 200_000)
def test_any_bytes_either_decode_canonically_or_raise_decode_error(data):
    try:
        value = decode(data)
    except DecodeError:
        return
    assert encode(value) == data


# --- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [
    b"\xa5ab",                 # fixstr of 5 with 2 bytes
    b"\x92\x01",               # array of 2 with 1 item
    b"\xcd\x00",               # uint16 cut short
    b"\xc4\x05abc",            # bin8 of 5 with 3 bytes
    b"\xcf\x00\x00",           # uint64 cut short
    b"",
], ids=["fixstr", "array", "uint16", "bin8", "uint64", "empty"])
def test_truncated_msgpack_is_refused(data):
    assert_refused(data)


@pytest.mark.parametrize("data", [encode(1) + b"\x00", encode([1, 2]) + b"\xc0", encode("ab") * 2])
def test_trailing_bytes_are_refused(data):
    assert_refused(data)


@pytest.mark.parametrize("data", [
    b"\xcc\x05",                                   # 5 as uint8
    b"\xcd\x00\x05",                               # 5 as uint16
    b"\xce\x00\x00\x00\x05",                       # 5 as uint32
    b"\xcf\x00\x00\x00\x00\x00\x00\x00\x05",       # 5 as uint64
    b"\xcd\x00\xff",                               # 255 as uint16
    b"\xd0\x05",                                   # 5 as int8 (a signed form)
    b"\xd3\x00\x00\x00\x00\x00\x00\x00\x05",       # 5 as int64
], ids=["uint8", "uint16", "uint32", "uint64", "255-uint16", "int8", "int64"])
def test_integers_in_a_longer_form_than_needed_are_refused(data):
    assert decode(encode(5)) == 5
    assert_refused(data)


@pytest.mark.parametrize("data", [
    b"\xd9\x03abc",            # str8 for a 3-byte string
    b"\xda\x00\x03abc",        # str16
    b"\xdb\x00\x00\x00\x03abc",  # str32
], ids=["str8", "str16", "str32"])
def test_short_text_in_a_long_header_is_refused(data):
    assert decode(b"\xa3abc") == "abc"
    assert_refused(data)


@pytest.mark.parametrize("data", [
    b"\xc5\x00\x03abc",        # bin16 for 3 bytes
    b"\xc6\x00\x00\x00\x03abc",  # bin32
], ids=["bin16", "bin32"])
def test_short_bytes_in_a_long_header_are_refused(data):
    assert decode(b"\xc4\x03abc") == b"abc"
    assert_refused(data)


@pytest.mark.parametrize("data", [
    b"\xdc\x00\x01\x01",              # array16 of one item
    b"\xdd\x00\x00\x00\x01\x01",      # array32 of one item
], ids=["array16", "array32"])
def test_short_arrays_in_a_long_header_are_refused(data):
    assert decode(b"\x91\x01") == [1]
    assert_refused(data)


@pytest.mark.parametrize("data", [
    b"\x80",                   # empty map
    b"\x81\x01\x02",           # {1: 2}
    b"\x81\xa1a\x01",          # {"a": 1}
    b"\xde\x00\x01\xa1a\x01",  # map16
    b"\x91\x80",               # a map inside an array
], ids=["empty", "int-key", "str-key", "map16", "nested"])
def test_maps_are_refused(data):
    assert_refused(data)


@pytest.mark.parametrize("data", [
    b"\xca" + struct.pack(">f", 1.5),
    b"\xcb" + struct.pack(">d", 1.5),
    b"\xcb" + struct.pack(">d", 5.0),
    b"\x91\xca" + struct.pack(">f", 0.0),
], ids=["float32", "float64", "float64-integral", "nested-float32"])
def test_floats_are_refused(data):
    assert_refused(data)


@pytest.mark.parametrize("data", [
    b"\xff",                                     # -1 as negative fixint
    b"\xe0",                                     # -32
    b"\xd0\x80",                                 # -128 as int8
    b"\xd1\x80\x00",                             # int16
    b"\xd2\x80\x00\x00\x00",                     # int32
    b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00",     # int64 minimum
    b"\x92\x01\xff",                             # inside an array
], ids=["fixint", "fixint-32", "int8", "int16", "int32", "int64", "nested"])
def test_negative_integers_are_refused(data):
    assert_refused(data)


@pytest.mark.parametrize("data", [
    b"\xd4\x01\x00",                         # fixext1
    b"\xd5\x01\x00\x00",                     # fixext2
    b"\xc7\x00\x05",                         # ext8, empty
    b"\xc7\x03\x05abc",                      # ext8
    b"\xd6\xff\x00\x00\x00\x01",             # timestamp32
    b"\x91\xd4\x01\x00",                     # inside an array
], ids=["fixext1", "fixext2", "ext8-empty", "ext8", "timestamp", "nested"])
def test_ext_types_are_refused(data):
    assert_refused(data)


@pytest.mark.parametrize("content", [[], [7]], ids=["empty", "int"])
def test_arrays_nested_deeper_than_the_documented_depth_are_refused(content):
    too_deep = arrays_to_depth(MAX_NESTING + 1, content)
    assert_refused(msgpack.packb(too_deep))
    with pytest.raises(ValueError):
        encode(too_deep)


def test_pathologically_deep_nesting_is_a_decode_error():
    assert_refused(b"\x91" * 100_000 + b"\x00")


def test_input_over_max_bytes_is_refused():
    data = encode(b"x" * 100)
    assert decode(data, max_bytes=len(data)) == b"x" * 100
    error = assert_refused(data, max_bytes=len(data) - 1)
    assert str(len(data)) in str(error)


def test_a_length_header_beyond_max_bytes_is_refused_without_reading_it():
    assert_refused(b"\xc6\xff\xff\xff\xff", max_bytes=1024)
    assert_refused(b"\xdd\xff\xff\xff\xff", max_bytes=1024)


@pytest.mark.parametrize("data", [
    b"\xa2\xff\xfe",               # not UTF-8 at all
    b"\xa2\xc3\x28",               # bad continuation byte
    b"\xa3\xed\xa0\x80",           # an encoded surrogate
    b"\xa2\xc0\x80",               # overlong NUL
], ids=["ff-fe", "continuation", "surrogate", "overlong"])
def test_invalid_utf8_in_text_is_refused(data):
    assert_refused(data)


@pytest.mark.parametrize("data", ["text", None, 5, [b"\x00"]], ids=["str", "none", "int", "list"])
def test_anything_but_bytes_is_refused(data):
    assert_refused(data)


def test_bytes_like_input_is_accepted():
    assert decode(bytearray(b"\x92\x01\x02")) == [1, 2]
    assert decode(memoryview(b"\xa1a")) == "a"


def test_decode_error_is_a_value_error_that_names_its_field():
    error = DecodeError("too long", "memo")
    assert isinstance(error, ValueError)
    assert error.at("payload").field == "payload.memo"
    assert DecodeError("bad").at("payload").field == "payload"
    assert str(error.at("payload")) == "too long"


# --- encode refuses what the form does not allow ----------------------------------------------


@pytest.mark.parametrize("value", [
    1.5, 0.0, {"a": 1}, {}, -1, -(2**63), 2**64, 2**70, (1, 2), bytearray(b"x"), {1, 2},
    [1, [2.0]], [{"nested": 1}], [-1], object(),
], ids=["float", "zero-float", "dict", "empty-dict", "minus-one", "int64-min", "2**64", "2**70",
        "tuple", "bytearray", "set", "nested-float", "nested-dict", "nested-negative", "object"])
def test_encode_refuses_values_outside_the_canonical_form(value):
    with pytest.raises(ValueError):
        encode(value)


def test_encode_matches_msgpack_shortest_form():
    value = [UINT64_MAX, "가" * 40, b"\x01" * 70000, [True, None, []]]
    assert encode(value) == msgpack.packb(value, use_bin_type=True)


def _uint_verdict(decoder, data: bytes):
    try:
        value = decoder(data)
    except DecodeError:
        return "refused"
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else "refused"


@PROPERTY
@given(st.one_of(st.integers(0, UINT64_MAX).map(encode),
                 st.binary(max_size=10),
                 st.sampled_from([b"", b"\xcc\x7f", b"\xcd\x00\xff", b"\xce\x00\x00\xff\xff",
                                  b"\xcf" + bytes(4) + b"\xff" * 4, b"\xcc\x80\x00", b"\xc0", b"\xc3",
                                  b"\xa1a", b"\x91\x01", b"\xd0\x01"])))
@example(b"\x7f")
@example(b"\xcf\xff\xff\xff\xff\xff\xff\xff\xff")
def test_decode_uint_gives_the_general_decoders_verdict_on_any_bytes(data):
    """The state's fast path for points must accept exactly the canonical unsigned integers."""
    assert _uint_verdict(decode_uint, data) == _uint_verdict(decode, data)
