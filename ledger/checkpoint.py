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

A node's endorsement is its Ed25519 signature over these bytes. In the signed note (``ledger.note``),
a node's key name is ``nanum-node-<party id hex>`` (always a valid signed-note name: ASCII
letters, digits and hyphens only) and its key id is the signed-note Ed25519 key id of that name and its public key.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from ledger import keys, note
from ledger.limits import CHAIN_ID_BYTES, HASH_BYTES

ORIGIN_PREFIX = "nanum/"


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
    """A node's signed-note key name."""
    return f"nanum-node-{keys.party_id(public_key).hex()}"


def key_id(public_key: bytes) -> bytes:
    return note.ed25519_key_id(key_name(public_key), public_key)


def vkey(public_key: bytes) -> str:
    """A node's signed-note verifier key, for any signed-note implementation."""
    return note.ed25519_vkey(key_name(public_key), public_key)


def signed_note(body: CheckpointBody, signatures: list[tuple[bytes, bytes]]) -> str:
    """The signed note: the body, a blank line, one signature line per (public key, signature)."""
    return note.render(body.text(), [(key_name(pk), key_id(pk), sig) for pk, sig in signatures])


def parse_note(text: str) -> tuple[CheckpointBody, list[note.SignatureLine]]:
    """Parses a signed checkpoint note into its body and its signature lines. Checks the form
    only (ledger.note, then the checkpoint text); signatures are checked by the caller."""
    try:
        body_text, lines = note.split(text)
    except note.NoteFormatError as exc:
        raise CheckpointError(str(exc)) from None
    body = _parse_body(body_text.decode().split("\n")[:-1])
    if body.text() != body_text:
        raise CheckpointError("the checkpoint text is not in its canonical form")
    return body, lines


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
