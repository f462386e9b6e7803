"""What the CLI prints for people: text that cannot drive a terminal.

Ledger text (memos, references, reasons, party and node names, addresses) is refused by the
ledger's rule (docs/FORMAT.md §1) when it holds a control, format, separator or unassigned
character; but a chain written under an older rule, a hostile node's status or error message,
or a file made by hand can still carry one. Every human line the CLI prints goes through
``echo`` here, which renders each such character as a visible escape (``\\x1b``, ``\\u202e``,
``\\U000e0041``), so that nothing printed can move the cursor, set the window title, reorder a
line (bidi overrides) or hide text. The rendering is for reading, not for copying back: a
backslash is left as it is, so use ``--json`` (pure ASCII JSON, every non-ASCII character as a
``\\u`` escape) for the exact text.
"""

from __future__ import annotations

import unicodedata

import click

from ledger.text import REFUSED_CATEGORIES, first_refused, is_refused

__all__ = ["printable", "echo"]

_ESCAPED_CATEGORIES = frozenset(REFUSED_CATEGORIES)


def _unsafe(character: str) -> bool:
    # The ledger's pinned table (Unicode 14.0.0), and this Python's own database as well: a
    # character that a later Unicode made a format control is escaped on a Python that knows it.
    return is_refused(character) or unicodedata.category(character) in _ESCAPED_CATEGORIES


def _escape(character: str) -> str:
    code_point = ord(character)
    if code_point < 0x100:
        return f"\\x{code_point:02x}"
    if code_point < 0x10000:
        return f"\\u{code_point:04x}"
    return f"\\U{code_point:08x}"


def printable(text: object) -> str:
    """``text`` (made a str) with every control (Cc), format (Cf), line or paragraph separator
    (Zl, Zp), surrogate (Cs) and unassigned (Cn) character replaced by its escape. Newlines
    too: a value is always one line. Idempotent: ``printable(printable(s)) == printable(s)``."""
    text = str(text)
    if text.isascii():
        if first_refused(text) is None:
            return text
    elif first_refused(text) is None and not any(unicodedata.category(c) in _ESCAPED_CATEGORIES for c in text):
        return text
    return "".join(_escape(c) if _unsafe(c) else c for c in text)


def echo(message: object = "", err: bool = False, nl: bool = True) -> None:
    """``click.echo`` for a human message: each of its lines through ``printable`` (the line
    breaks the CLI itself put there are kept)."""
    lines = str(message).split("\n")
    click.echo("\n".join(printable(line) for line in lines), err=err, nl=nl)
