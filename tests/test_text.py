"""The ledger's one text rule (ledger/text.py, docs/FORMAT.md §1) and its pinned table."""

from __future__ import annotations

import random
import unicodedata

import pytest

from ledger import text
from ledger.encoding import DecodeError, expect_text
from ledger.text_table import REFUSED_CATEGORIES, REFUSED_RANGES, UNICODE_VERSION
from tests import text_table_gen


def test_the_table_is_pinned_to_unicode_14_and_the_format_says_so():
    assert UNICODE_VERSION == "14.0.0"
    assert REFUSED_CATEGORIES == ("Cc", "Cf", "Zl", "Zp", "Cs", "Cn")
    from pathlib import Path
    format_md = (Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md").read_text()
    assert "Character Database version 14.0.0" in " ".join(format_md.split())


def test_the_table_is_ascending_and_disjoint():
    assert REFUSED_RANGES[0][0] == 0 and REFUSED_RANGES[-1][1] == 0x10FFFF
    for (a, b), (c, d) in zip(REFUSED_RANGES, REFUSED_RANGES[1:]):
        assert a <= b < c - 1 < d      # a gap of at least one allowed code point between runs


def test_the_committed_table_is_what_unicode_14_says():
    if unicodedata.unidata_version != UNICODE_VERSION:
        pytest.skip(f"this Python's unicodedata is Unicode {unicodedata.unidata_version}, not {UNICODE_VERSION}: "
                    "the table cannot be regenerated here (it is the rule on every Python)")
    assert list(REFUSED_RANGES) == text_table_gen.refused_ranges()
    assert (text_table_gen.TARGET.read_text() == text_table_gen.render(text_table_gen.refused_ranges()))


def _in_table(code_point: int) -> bool:
    return any(a <= code_point <= b for a, b in REFUSED_RANGES)


def test_the_check_follows_the_table_at_every_run_boundary():
    for a, b in REFUSED_RANGES:
        for cp in {a - 1, a, b, b + 1} - {-1, 0x110000}:
            assert text.is_refused(chr(cp)) == _in_table(cp), hex(cp)


def test_the_first_refused_character_is_found_wherever_it_is():
    rng = random.Random(15)
    allowed = ["a", "광", "\u3000", "\U0001faf6", "\ue000"]
    refused = ["\x9b", "\u202e", "\u2028", "\u2029", "\ufeff", "\U000e0041", "\U0001fafa", "\ud800"]
    for _ in range(2000):
        chars = [rng.choice(allowed) for _ in range(rng.randrange(0, 12))]
        bad = [rng.choice(refused) for _ in range(rng.randrange(0, 3))]
        for ch in bad:
            chars.insert(rng.randrange(0, len(chars) + 1), ch)
        sample = "".join(chars)
        expected = next((c for c in sample if _in_table(ord(c))), None)
        assert text.first_refused(sample) == expected, repr(sample)


def test_expect_text_names_the_code_point_and_not_the_character():
    with pytest.raises(DecodeError, match=r"U\+202E") as caught:
        expect_text("abc\u202edef", "payload.memo", 140)
    assert "\u202e" not in str(caught.value) and caught.value.field == "payload.memo"
    assert expect_text("두 권 \U0001faf6", "payload.memo", 140) == "두 권 \U0001faf6"
