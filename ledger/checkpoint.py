"""Checkpoints in the C2SP tlog-checkpoint form: what a node's endorsement signs.

Owns the checkpoint text of a block and its signed-note rendering
(https://c2sp.org/tlog-checkpoint, https://c2sp.org/signed-note), so that transparency-log
tooling can read nanum checkpoints, and a certificate is exactly a majority of node
signatures over one checkpoint.

The checkpoint body of block h (every line ends with a newline, 0x0A):

    nanum/<chain id, 32 lowercase hex digits>        origin: unique to this consortium
    <tree size after block h, decimal>
    <tree root after block h, standard base64>
    height <h> block <block hash, 64 lowercase hex digits>   (extension line)

A node's endorsement is its Ed25519 signature over these bytes. In the signed note, each
signature line is ``"\u2014 " + key name + " " + base64(key id || signature)`` with key name
``nanum-node-<party id hex>`` and key id = SHA-256(key name || 0x0A || 0x01 || public key)[:4]
(the signed-note Ed25519 convention).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from ledger import keys
from ledger.limits import CHAIN_ID_BYTES, HASH_BYTES, SIGNATURE_BYTES

ORIGIN_PREFIX = "nanum/"
SIGNATURE_PREFIX = "\u2014 "
ED25519_NOTE_TYPE = b"\x01"
MAX_NOTE_BYTES = 64 * 1024


class CheckpointError(ValueError):
    """A checkpoint note that cannot be parsed; the message says which line."""


@dataclass(frozen=True, slots=True)
class CheckpointBody:
    chain_id: bytes
    tree_size: int
    tree_root: bytes
    height: int
    block_hash: bytes

    def text(self) -> bytes:
        return (f"{ORIGIN_PREFIX}{self.chain_id.hex()}\n{self.tree_size}\n"
                f"{base64.b64encode(self.tree_root).decode()}\n"
                f"height {self.height} block {self.block_hash.hex()}\n").encode()


def body_of(header) -> CheckpointBody:
    """The checkpoint of a block header (ledger.block.Header)."""
    return CheckpointBody(header.chain_id, header.tree_size, header.tree_root, header.height, header.hash())


def key_name(public_key: bytes) -> str:
    return f"nanum-node-{keys.party_id(public_key).hex()}"


def key_id(public_key: bytes) -> bytes:
    return hashlib.sha256(key_name(public_key).encode() + b"\n" + ED25519_NOTE_TYPE + public_key).digest()[:4]


def signed_note(body: CheckpointBody, signatures: list[tuple[bytes, bytes]]) -> str:
    """The signed note: the body, a blank line, one signature line per (public key, signature)."""
    lines = [f"{SIGNATURE_PREFIX}{key_name(pk)} {base64.b64encode(key_id(pk) + sig).decode()}\n"
             for pk, sig in signatures]
    return body.text().decode() + "\n" + "".join(lines)


def parse_note(text: str) -> tuple[CheckpointBody, list[tuple[str, bytes, bytes]]]:
    """Parses a signed checkpoint note into its body and (key name, key id, signature) lines.
    Checks the form only; signatures are checked by the caller against keys it trusts."""
    if len(text.encode()) > MAX_NOTE_BYTES:
        raise CheckpointError(f"a checkpoint note has at most {MAX_NOTE_BYTES} bytes")
    body_text, separator, signature_text = text.partition("\n\n")
    if not separator:
        raise CheckpointError("no blank line between the checkpoint and its signatures")
    body = _parse_body(body_text.split("\n"))
    if body.text().decode() != body_text + "\n":
        raise CheckpointError("the checkpoint text is not in its canonical form")
    return body, [_parse_signature(line) for line in signature_text.split("\n") if line]


def _parse_body(lines: list[str]) -> CheckpointBody:
    if len(lines) != 4:
        raise CheckpointError("a nanum checkpoint has 4 lines: origin, size, root, height and block")
    origin, size, root, extension = lines
    if not origin.startswith(ORIGIN_PREFIX):
        raise CheckpointError(f"line 1: the origin starts with {ORIGIN_PREFIX!r}")
    words = extension.split(" ")
    try:
        chain_id = bytes.fromhex(origin[len(ORIGIN_PREFIX):])
        tree_root = base64.b64decode(root, validate=True)
        if len(words) != 4 or words[0] != "height" or words[2] != "block":
            raise ValueError("line 4")
        body = CheckpointBody(chain_id, int(size), tree_root, int(words[1]), bytes.fromhex(words[3]))
    except (ValueError, binascii.Error) as exc:
        raise CheckpointError(f"malformed checkpoint ({exc})") from None
    if len(body.chain_id) != CHAIN_ID_BYTES or len(body.tree_root) != HASH_BYTES or len(body.block_hash) != HASH_BYTES:
        raise CheckpointError("a chain id, root or block hash has the wrong length")
    return body


def _parse_signature(line: str) -> tuple[str, bytes, bytes]:
    if not line.startswith(SIGNATURE_PREFIX):
        raise CheckpointError(f"a signature line starts with {SIGNATURE_PREFIX!r}")
    parts = line[len(SIGNATURE_PREFIX):].split(" ")
    try:
        blob = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
    except binascii.Error:
        blob = b""
    if len(blob) != 4 + SIGNATURE_BYTES:
        raise CheckpointError("a signature line is '\u2014 <name> <base64 of key id and signature>'")
    return parts[0], blob[:4], blob[4:]
