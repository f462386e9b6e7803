"""C2SP signed notes (https://c2sp.org/signed-note): the envelope, key names, key ids, vkeys.

Owns the generic form of a signed note, independent of what the note says: splitting a note
into its text and signature lines with every check the spec asks for, rendering one, the rule
for a valid key name, the Ed25519 key id, and the verifier-key ("vkey") string
``<name>+<key id hex>+<base64(0x01 || public key)>`` that other signed-note tools are
configured with. Which keys are trusted, and what the text must say, is the caller's business
(``ledger.checkpoint`` for the text, ``ledger.verify.verify_note`` for the trust rule).

A note is valid UTF-8 with no control character below U+0020 but newline; it is split at its
*last* blank line: the text (ending in a newline) before it, and after it one or more lines
``"\u2014 " name " " base64(key id (4 bytes) || signature (1 or more bytes))``, each ending in a
newline. Anything else is malformed (``NoteFormatError``). Signatures are not checked here.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from ledger.limits import MAX_NOTE_BYTES, MAX_NOTE_SIGNATURES, PUBLIC_KEY_BYTES

SIGNATURE_PREFIX = "\u2014 "          # em dash, space
ED25519_TYPE = b"\x01"                # signed-note signature type of plain Ed25519
KEY_ID_BYTES = 4

# Unicode's White_Space property (what Go's unicode.IsSpace tests), none allowed in a key name.
WHITE_SPACE = frozenset("\t\n\v\f\r \u0085\u00a0\u1680\u2028\u2029\u202f\u205f\u3000"
                        + "".join(chr(c) for c in range(0x2000, 0x200B)))
# Standard base64 with padding, nothing else (RFC 4648 §4; unused pad bits are not checked,
# as Go's encoding/base64 does not check them).
_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


class NoteFormatError(ValueError):
    """A note that is not a well-formed signed note; the message says where."""


@dataclass(frozen=True, slots=True)
class SignatureLine:
    number: int               # 1-based, in note order
    name: str
    key_id: bytes             # 4 bytes
    signature: bytes          # at least 1 byte; its form depends on the key's type


def valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode white space, no '+' (and, as part of a note, no control character)."""
    return (name != "" and "+" not in name and not any(c in WHITE_SPACE for c in name)
            and not any(ord(c) < 0x20 for c in name))


def ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || public key)[:4], the signed-note Ed25519 key id."""
    return hashlib.sha256(name.encode() + b"\n" + ED25519_TYPE + public_key).digest()[:KEY_ID_BYTES]


def ed25519_vkey(name: str, public_key: bytes) -> str:
    """The verifier key of an Ed25519 key: ``<name>+<key id, 8 lowercase hex>+<base64(0x01 || key)>``."""
    if not valid_key_name(name) or len(public_key) != PUBLIC_KEY_BYTES:
        raise ValueError(f"not a valid signed-note key name or Ed25519 key: {name!r}")
    return f"{name}+{ed25519_key_id(name, public_key).hex()}+{base64.b64encode(ED25519_TYPE + public_key).decode()}"


def parse_ed25519_vkey(vkey: str) -> tuple[str, bytes, bytes]:
    """(name, key id, public key) of an Ed25519 vkey; ValueError if malformed or its id is wrong."""
    name, _, rest = vkey.partition("+")
    key_id_hex, _, key_b64 = rest.partition("+")
    if not valid_key_name(name) or not re.fullmatch(r"[0-9a-fA-F]{8}", key_id_hex) or not _BASE64.fullmatch(key_b64):
        raise ValueError(f"malformed verifier key {vkey!r}")
    key = base64.b64decode(key_b64)
    if key[:1] != ED25519_TYPE or len(key) != 1 + PUBLIC_KEY_BYTES:
        raise ValueError(f"verifier key {vkey!r} is not an Ed25519 key")
    if ed25519_key_id(name, key[1:]).hex() != key_id_hex.lower():
        raise ValueError(f"verifier key {vkey!r}: the key id is not the hash of its name and key")
    return name, bytes.fromhex(key_id_hex), key[1:]


def render(text: bytes, lines: list[tuple[str, bytes, bytes]]) -> str:
    """The note of ``text`` (ending in a newline) with one line per (name, key id, signature)."""
    if not text.endswith(b"\n"):
        raise ValueError("a note's text ends with a newline")
    rendered = []
    for name, key_id, signature in lines:
        if not valid_key_name(name) or len(key_id) != KEY_ID_BYTES:
            raise ValueError(f"not a valid signed-note key name or key id: {name!r}")
        rendered.append(f"{SIGNATURE_PREFIX}{name} {base64.b64encode(key_id + signature).decode()}\n")
    return text.decode() + "\n" + "".join(rendered)


def split(note: str) -> tuple[bytes, list[SignatureLine]]:
    """The text (bytes, with its final newline) and the signature lines of a signed note."""
    try:
        raw = note.encode("utf-8")
    except UnicodeEncodeError:
        raise NoteFormatError("a note is valid UTF-8 text") from None
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteFormatError(f"a note has at most {MAX_NOTE_BYTES} bytes")
    if any(ord(c) < 0x20 and c != "\n" for c in note):
        raise NoteFormatError("a note holds no control character but newline (no tab, no carriage return)")
    cut = note.rfind("\n\n")
    if cut < 0:
        raise NoteFormatError("no blank line between the text and its signatures")
    text, block = note[:cut + 1], note[cut + 2:]
    if not block or not block.endswith("\n"):
        raise NoteFormatError("a note ends with one or more signature lines, each ending in a newline")
    rows = block[:-1].split("\n")
    if len(rows) > MAX_NOTE_SIGNATURES:
        raise NoteFormatError(f"a note has at most {MAX_NOTE_SIGNATURES} signature lines")
    return text.encode(), [_signature_line(number, row) for number, row in enumerate(rows, start=1)]


def _signature_line(number: int, row: str) -> SignatureLine:
    where = f"signature line {number}"
    if not row.startswith(SIGNATURE_PREFIX):
        raise NoteFormatError(f"{where}: a signature line starts with an em dash (U+2014) and a space")
    name, _, encoded = row[len(SIGNATURE_PREFIX):].partition(" ")
    if not valid_key_name(name):
        raise NoteFormatError(f"{where}: a key name is not empty and holds no white space and no '+'")
    if not _BASE64.fullmatch(encoded):
        raise NoteFormatError(f"{where}: after the key name and one space comes standard base64 with padding")
    blob = base64.b64decode(encoded)
    if len(blob) <= KEY_ID_BYTES:
        raise NoteFormatError(f"{where}: the base64 holds a {KEY_ID_BYTES}-byte key id and a signature")
    return SignatureLine(number, name, blob[:KEY_ID_BYTES], blob[KEY_ID_BYTES:])
