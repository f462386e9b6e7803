"""Canonical msgpack: the one byte form every signed or hashed nanum structure has.

Owns the encoder, the strict decoder and the small schema checks used by every
structure built on top (transactions, vouchers, blocks, certificates, state values).

The canonical form (docs/FORMAT.md section "Canonical encoding"):

* Values are unsigned integers (0 .. 2**64-1), byte strings (msgpack bin), UTF-8 text
  (msgpack str), booleans, nil, and arrays of those. No maps, no floats, no ext types,
  no negative integers.
* Every value uses its shortest msgpack form (positive fixint before uint8 before uint16,
  fixstr before str8, bin8 before bin16, fixarray before array16, ...), which is exactly
  what ``msgpack.packb(value, use_bin_type=True)`` produces.
* Structures are arrays with fields in a fixed, documented order; there are no optional
  trailing fields (absent values are written as a documented neutral value).

``decode`` accepts bytes only if they are valid msgpack, contain only the types above,
and re-encode to the very same bytes. So a structure has exactly one encoding, and one hash.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import msgpack

from ledger.limits import MAX_ENCODED_BYTES, MAX_NESTING

UINT64_MAX = 2**64 - 1
# The control characters refused in every text field (docs/FORMAT.md §1): Unicode general
# category Cc, that is C0 (U+0000-U+001F), DEL (U+007F) and C1 (U+0080-U+009F). C1 holds
# terminal controls too (U+009B is CSI), and names and memos are printed to people.
_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


class DecodeError(ValueError):
    """Bytes that are not a canonical encoding, or do not fit the expected schema.

    ``field`` names where the problem is (a dotted path such as ``payload.points``)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field

    def at(self, prefix: str) -> "DecodeError":
        """The same error, with ``prefix`` put in front of its field path."""
        field = f"{prefix}.{self.field}" if self.field else prefix
        return DecodeError(str(self), field)


class _Packer(threading.local):
    # ``msgpack.packb`` builds a Packer per call, which costs more than packing a small value;
    # one Packer per thread (a Packer is not thread-safe) does the same for a quarter of that.
    def __init__(self) -> None:
        self.pack = msgpack.Packer(use_bin_type=True).pack


_packer = _Packer()


def encode(value: Any) -> bytes:
    """Encodes ``value`` canonically. Raises ValueError on a type the form does not allow."""
    _check_tree(value, depth=0, field="")
    return _packer.pack(value)


def decode(data: bytes, max_bytes: int = MAX_ENCODED_BYTES) -> Any:
    """Decodes canonical bytes into Python values (int, bytes, str, bool, None, list).

    Raises DecodeError for anything that is not canonical: oversized input, invalid
    msgpack, trailing bytes, forbidden types, or a non-shortest form."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("expected bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise DecodeError(f"encoding is {len(data)} bytes, over the limit of {max_bytes}")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            max_map_len=0,
            max_ext_len=0,
            max_str_len=max_bytes,
            max_bin_len=max_bytes,
            max_array_len=max_bytes,
        )
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise DecodeError(f"not valid msgpack: {type(exc).__name__}") from None
    except Exception as exc:  # msgpack may raise other errors on hostile input
        raise DecodeError(f"not valid msgpack: {type(exc).__name__}") from None
    try:
        _check_tree(value, depth=0, field="")
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
    if _packer.pack(value) != data:
        raise DecodeError("not in canonical form (a value is not in its shortest encoding)")
    return value


_UINT_FORMS = {0xCC: (1, 0x80), 0xCD: (2, 0x100), 0xCE: (4, 0x10000), 0xCF: (8, 0x1_0000_0000)}


def decode_uint(data: bytes) -> int:
    """Decodes a canonical unsigned integer: the verdicts of ``decode`` plus "is an unsigned
    int", without the general decoder (state values such as a bucket's points are read on
    every transaction). DecodeError for anything else."""
    if len(data) == 1 and data[0] < 0x80:
        return data[0]
    form = _UINT_FORMS.get(data[0]) if data else None
    if form is None or len(data) != 1 + form[0]:
        raise DecodeError("expected an unsigned integer")
    value = int.from_bytes(data[1:], "big")
    if value < form[1]:
        raise DecodeError("not in canonical form (a value is not in its shortest encoding)")
    return value


def decode_prechecked(data: bytes) -> Any:
    """Decodes bytes that ``decode`` has already accepted — these very bytes, checked in this
    process or in a worker process — without repeating the canonical-form check. The auditor's
    in-order replay uses it for transactions its workers checked; never use it on bytes that
    were not so checked."""
    return msgpack.unpackb(data, raw=False, use_list=True)


def _check_tree(value: Any, depth: int, field: str) -> None:
    """``depth`` is the depth an array here would have: the top-level array is at 0.

    The common leaves of an array (exact bytes, str, int, bool, None) are checked inline:
    this runs on every encode and decode, and a call per leaf doubled their cost. Anything
    else (a nested array, an int subclass, a forbidden type) goes through ``_check_value``."""
    if type(value) is not list:
        _check_value(value, depth, field)
        return
    if depth > MAX_NESTING:
        raise ValueError(f"arrays nested deeper than {MAX_NESTING}")
    for item in value:
        kind = type(item)
        if kind is bytes or kind is str or kind is bool or item is None:
            continue
        if kind is int and 0 <= item <= UINT64_MAX:
            continue
        _check_tree(item, depth + 1, field)


def _check_value(value: Any, depth: int, field: str) -> None:
    if value is None or isinstance(value, (bool, bytes, str)):
        return
    if isinstance(value, int):
        if not 0 <= value <= UINT64_MAX:
            raise ValueError(f"integer {value} outside 0..2**64-1")
        return
    if isinstance(value, list):
        _check_tree(list(value), depth, field)
        return
    raise ValueError(f"type {type(value).__name__} is not allowed in the canonical form")


# --- schema helpers: each returns the checked value or raises DecodeError(field=...) ---


def expect_array(value: Any, length: int, field: str) -> list:
    if not isinstance(value, list):
        raise DecodeError(f"expected an array of {length} fields", field)
    if len(value) != length:
        raise DecodeError(f"expected {length} fields, found {len(value)}", field)
    return value


def expect_list(value: Any, max_items: int, field: str) -> list:
    if not isinstance(value, list):
        raise DecodeError("expected an array", field)
    if len(value) > max_items:
        raise DecodeError(f"{len(value)} items, over the limit of {max_items}", field)
    return value


def expect_uint(value: Any, field: str, low: int = 0, high: int = UINT64_MAX) -> int:
    # bool is a subclass of int in Python; it is a different msgpack type, so refuse it here.
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError("expected an unsigned integer", field)
    if not low <= value <= high:
        raise DecodeError(f"value {value} outside {low}..{high}", field)
    return value


def expect_bytes(value: Any, field: str, size: int | None = None, max_size: int | None = None) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError("expected bytes (msgpack bin)", field)
    if size is not None and len(value) != size:
        raise DecodeError(f"expected exactly {size} bytes, found {len(value)}", field)
    if max_size is not None and len(value) > max_size:
        raise DecodeError(f"{len(value)} bytes, over the limit of {max_size}", field)
    return value


def expect_text(value: Any, field: str, max_bytes: int, min_bytes: int = 0) -> str:
    if not isinstance(value, str):
        raise DecodeError("expected text (msgpack str)", field)
    size = len(value.encode("utf-8"))
    if size > max_bytes:
        raise DecodeError(f"text of {size} bytes, over the limit of {max_bytes}", field)
    if size < min_bytes:
        raise DecodeError(f"text must have at least {min_bytes} byte(s)", field)
    if has_control_character(value):
        raise DecodeError("text contains control characters (U+0000-U+001F, U+007F-U+009F)", field)
    return value


def has_control_character(text: str) -> bool:
    """True if ``text`` holds a character that no text field may hold (see _CONTROL_CHARACTER)."""
    return _CONTROL_CHARACTER.search(text) is not None


def expect_bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise DecodeError("expected a boolean", field)
    return value
