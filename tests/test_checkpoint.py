"""Signed checkpoint notes as an auditor checks them (ledger.verify.verify_note): a majority of
valid signatures by the genesis node keys, each line's key id checked, other chains refused.
The commands built on it (`nanum audit checkpoint`, `nanum audit consistency`) are tested
against real nodes in tests/test_audit.py.
"""

from __future__ import annotations

import base64

import pytest

from ledger.checkpoint import CheckpointBody, key_id, key_name, parse_note, signed_note
from ledger.verify import NoteError, verify_note
from tests.consortium import key

CHAIN = bytes(range(16))
NODES = [key(f"note-node{i}") for i in range(3)]
NODE_KEYS = [k.public_key for k in NODES]
BODY = CheckpointBody(CHAIN, 42, b"\x07" * 32, 9, b"\x09" * 32)


def note(body: CheckpointBody = BODY, signers=NODES[:2], message: bytes | None = None) -> str:
    text = body.text() if message is None else message
    return signed_note(body, [(k.public_key, k.sign(text)) for k in signers])


def test_a_note_signed_by_a_majority_verifies_and_gives_its_body():
    assert verify_note(note(), CHAIN, NODE_KEYS) == BODY
    assert verify_note(note(signers=NODES), CHAIN, NODE_KEYS) == BODY


def test_a_note_signed_by_a_minority_is_refused():
    with pytest.raises(NoteError, match="1 valid signatures by known node keys; a majority is 2 of 3"):
        verify_note(note(signers=NODES[:1]), CHAIN, NODE_KEYS)


def test_signatures_by_unknown_keys_are_ignored_not_counted():
    stranger = key("stranger")
    text = note(signers=[NODES[0], stranger])
    with pytest.raises(NoteError, match="1 valid signatures"):
        verify_note(text, CHAIN, NODE_KEYS)
    assert verify_note(note(signers=[NODES[0], stranger, NODES[2]]), CHAIN, NODE_KEYS) == BODY


def test_a_repeated_signature_line_counts_once():
    text = note(signers=[NODES[0], NODES[0]])
    with pytest.raises(NoteError, match="1 valid signatures"):
        verify_note(text, CHAIN, NODE_KEYS)


def test_a_bad_signature_by_a_known_key_is_refused_with_its_line():
    text = note(signers=NODES[:2])
    body, lines = parse_note(text)
    name, kid, signature = lines[1]
    forged = bytes([signature[0] ^ 1]) + signature[1:]
    bad_line = f"\u2014 {name} {base64.b64encode(kid + forged).decode()}\n"
    text = text.replace(text.splitlines(keepends=True)[-1], bad_line)
    with pytest.raises(NoteError, match=f"signature line 2 \\({name}\\): the signature does not verify"):
        verify_note(text, CHAIN, NODE_KEYS)


def test_a_line_whose_key_id_does_not_match_its_name_is_refused():
    signature = NODES[1].sign(BODY.text())
    wrong = f"\u2014 {key_name(NODES[1].public_key)} {base64.b64encode(key_id(NODES[0].public_key) + signature).decode()}\n"
    text = note(signers=NODES[:1]) + wrong
    with pytest.raises(NoteError, match="key id does not match"):
        verify_note(text, CHAIN, NODE_KEYS)


def test_a_note_of_another_chain_is_refused():
    other = CheckpointBody(bytes(16), 42, b"\x07" * 32, 9, b"\x09" * 32)
    with pytest.raises(NoteError, match="is of chain 0000"):
        verify_note(note(other), CHAIN, NODE_KEYS)


def test_a_changed_body_breaks_every_signature():
    text = note(signers=NODES).replace("\n42\n", "\n43\n")
    with pytest.raises(NoteError, match="signature line 1 .* does not verify"):
        verify_note(text, CHAIN, NODE_KEYS)


@pytest.mark.parametrize("text", ["", "nanum/00\n", "hello\n\n", "x" * 70_000])
def test_malformed_notes_are_refused(text):
    with pytest.raises(NoteError):
        verify_note(text, CHAIN, NODE_KEYS)
