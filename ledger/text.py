"""What a text field may hold (docs/FORMAT.md §1): the one text rule of the ledger.

A text field may not hold a code point whose general category in Unicode 14.0.0 is Cc
(C0, DEL, C1), Cf (format controls: bidi overrides and isolates, zero-width characters, the
soft hyphen, U+FEFF, tags …), Zl (U+2028), Zp (U+2029), Cs (surrogates, which valid UTF-8
cannot carry anyway) or Cn (unassigned in 14.0.0, noncharacters included). Such characters
can move a terminal's cursor, rewrite its title, reorder what a clerk reads or hide text.

The verdict must not depend on the Python running it: ``unicodedata`` follows the Unicode
version of each Python release, and a node on a newer Python would accept a character its
peers refuse. So the rule is the committed table ledger/text_table.py (generated from Python
3.11's database by tests/text_table_gen.py), not ``unicodedata`` at run time. Refusing Cn
means a character that a later Unicode assigns (possibly as a new format control) stays
refused until the format changes its pinned version.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from ledger.text_table import REFUSED_CATEGORIES, REFUSED_RANGES, UNICODE_VERSION

__all__ = ["UNICODE_VERSION", "REFUSED_CATEGORIES", "first_refused", "is_refused", "describe"]


def _character_class(ranges) -> str:
    parts = []
    for first, last in ranges:
        parts.append(re.escape(chr(first)) if first == last else f"{re.escape(chr(first))}-{re.escape(chr(last))}")
    return "[" + "".join(parts) + "]"


# One C-speed scan for the common case: re turns a class of code points below U+10000 into a
# bitmap, but scans a class with larger ones range by range (100 us for a memo). So the BMP
# part of the table is one pattern, and only the characters beyond U+FFFF (and surrogates,
# which only a str made with surrogateescape can hold) are looked up in the table one by one.
_REFUSED_BMP = re.compile(_character_class(
    [(a, min(b, 0xFFFF)) for a, b in REFUSED_RANGES if a <= 0xFFFF and not 0xD800 <= a <= b <= 0xDFFF]))
_OUTSIDE_BMP = re.compile(r"[\ud800-\udfff\U00010000-\U0010ffff]")
_STARTS = tuple(first for first, _ in REFUSED_RANGES)


def _refused_code_point(code_point: int) -> bool:
    i = bisect_right(_STARTS, code_point) - 1
    return i >= 0 and code_point <= REFUSED_RANGES[i][1]


def first_refused(text: str) -> str | None:
    """The first character of ``text`` that no text field may hold, or None."""
    in_bmp = _REFUSED_BMP.search(text)
    before = len(text) if in_bmp is None else in_bmp.start()
    for other in _OUTSIDE_BMP.finditer(text, 0, before):
        if _refused_code_point(ord(other.group())):
            return other.group()
    return None if in_bmp is None else in_bmp.group()


def is_refused(character: str) -> bool:
    """True if this one character may not appear in a text field."""
    return len(character) == 1 and first_refused(character) is not None


def describe(character: str) -> str:
    """``U+202E`` for a refused character in an error message (never the character itself)."""
    return f"U+{ord(character):04X}"
