"""Signed checkpoint notes as an auditor checks them (ledger.verify.verify_note): a majority of
valid signatures by the genesis node keys, other chains refused, and the C2SP signed-note rules
(https://c2sp.org/signed-note, docs/FORMAT.md §7.4): malformed notes refused, lines of unknown
(key name, key id) pairs ignored, a known key's bad signature refused. Also the generic form
(ledger.note) against the Go reference's published example. The commands built on it
(`nanum audit checkpoint`, `consistency`, `keys`) are tested in tests/test_audit.py; the
interop with Go's golang.org/x/mod/sumdb/note in tests/test_checkpoint_interop.py.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from ledger import keys, note as signed_note_form
from ledger.checkpoint import CheckpointBody, key_id, key_name, parse_note, signed_note, vkey
from ledger.limits import MAX_NOTE_BYTES, MAX_NOTE_SIGNATURES
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
    name, kid, signature = lines[1].name, lines[1].key_id, lines[1].signature
    forged = bytes([signature[0] ^ 1]) + signature[1:]
    bad_line = f"\u2014 {name} {base64.b64encode(kid + forged).decode()}\n"
    text = text.replace(text.splitlines(keepends=True)[-1], bad_line)
    with pytest.raises(NoteError, match=f"signature line 2 \\({name}\\): the signature does not verify"):
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


# --- C2SP signed-note conformance -----------------------------------------------------------


def line(name: str, blob: bytes) -> str:
    return f"\u2014 {name} {base64.b64encode(blob).decode()}\n"


def with_lines(*extra: str, signers=NODES[:2]) -> str:
    return note(signers=signers) + "".join(extra)


def test_a_known_key_is_a_name_and_key_id_pair_computed_as_the_spec_says():
    public_key = NODES[0].public_key
    name = f"nanum-node-{keys.party_id(public_key).hex()}"
    assert key_name(public_key) == name
    assert key_id(public_key) == hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]


def test_a_rotated_key_with_a_known_name_but_another_key_id_is_ignored():
    """Today's code refused it ('key id does not match'); the spec says verifiers MUST ignore it."""
    rotated = key("note-node1-rotated")
    name = key_name(NODES[1].public_key)
    other_id = signed_note_form.ed25519_key_id(name, rotated.public_key)
    text = with_lines(line(name, other_id + rotated.sign(BODY.text())))
    assert verify_note(text, CHAIN, NODE_KEYS) == BODY


def test_a_line_with_a_known_key_id_under_another_name_is_ignored():
    forged = bytes(64)                      # not even a signature: the line is not a known key's
    text = with_lines(line("someone-else", key_id(NODES[0].public_key) + forged))
    assert verify_note(text, CHAIN, NODE_KEYS) == BODY


def test_a_witness_cosignature_is_ignored():
    """A tlog-cosignature line: key id of type 0x04, then an 8-byte timestamp and a signature
    (72 bytes after the key id). Today's code refused any line not of 4 + 64 bytes."""
    witness = key("witness")
    name = "witness.example.org/w1"
    kid = hashlib.sha256(name.encode() + b"\n\x04" + witness.public_key).digest()[:4]
    timestamp = (1_700_000_000).to_bytes(8, "big")
    message = b"cosignature/v1\ntime 1700000000\n" + BODY.text()
    text = with_lines(line(name, kid + timestamp + witness.sign(message)))
    assert verify_note(text, CHAIN, NODE_KEYS) == BODY


@pytest.mark.parametrize("size", [1, 63, 65, 2420])
def test_unknown_signatures_of_any_length_are_ignored(size):
    text = with_lines(line("pq.example/log", b"\xab\xcd\xef\x01" + bytes(size)))
    assert verify_note(text, CHAIN, NODE_KEYS) == BODY


def test_unknown_lines_do_not_make_up_for_a_missing_majority():
    strangers = [key(f"stranger{i}") for i in range(5)]
    text = note(signers=NODES[:1] + strangers)
    with pytest.raises(NoteError, match="1 valid signatures by known node keys; a majority is 2 of 3"):
        verify_note(text, CHAIN, NODE_KEYS)


def test_a_known_key_with_a_signature_of_the_wrong_length_is_refused():
    public_key = NODES[2].public_key
    text = with_lines(line(key_name(public_key), key_id(public_key) + NODES[2].sign(BODY.text()) + b"\x00"))
    with pytest.raises(NoteError, match="signature line 3 .*does not verify"):
        verify_note(text, CHAIN, NODE_KEYS)


def test_a_repeated_known_line_with_a_bad_signature_is_still_refused():
    """Every line of a known key is verified (the spec: 'verifiers MUST verify the signature')."""
    public_key = NODES[0].public_key
    text = with_lines(line(key_name(public_key), key_id(public_key) + bytes(64)))
    with pytest.raises(NoteError, match="signature line 3 .*does not verify"):
        verify_note(text, CHAIN, NODE_KEYS)


VALID = note()
NAME0 = key_name(NODES[0].public_key)
SIG_B64 = VALID.splitlines()[-1].split(" ")[-1]


MALFORMED = [       # (note, why): each one malformed for C2SP signed-note, or no checkpoint
    (VALID + line("a+b", bytes(68)), "holds no white space and no '\\+'"),
    (VALID + line("a\tb", bytes(68)), "no control character"),
    (VALID + line("a\u00a0b", bytes(68)), "no white space"),
    (VALID + line("a\u3000b", bytes(68)), "no white space"),
    (VALID + line("a\u2028b", bytes(68)), "no white space"),
    (VALID + f"\u2014  {SIG_B64}\n", "a key name is not empty"),
    (VALID[:-1], "each ending in a newline"),
    (VALID + f"\u2014 {NAME0}  {SIG_B64}\n", "standard base64"),
    (VALID + f"\u2014 {NAME0} {SIG_B64.rstrip('=')}\n", "standard base64"),
    (VALID + f"\u2014 {NAME0} {SIG_B64}==\n", "standard base64"),
    (VALID + f"\u2014 {NAME0} {SIG_B64.replace('+', '-').replace('/', '_')}x\n", "standard base64"),
    (VALID + line("short", b"\x01\x02\x03\x04"), "a 4-byte key id and a signature"),
    (VALID + f"- {NAME0} {SIG_B64}\n", "starts with an em dash"),
    (VALID + f"\u2014{NAME0} {SIG_B64}\n", "starts with an em dash"),
    (VALID.replace("\n", "\r\n"), "no control character"),
    (VALID + "\n", "each ending in a newline"),
    (VALID.replace("\n\u2014", "\n\n\u2014", 1).replace("\n\u2014", "\n\n\u2014"), "4 lines"),
    (VALID + "\udcff\n", "valid UTF-8"),
    (VALID + "\x00" + line("x", bytes(68)), "no control character"),
]


@pytest.mark.parametrize("text, reason", MALFORMED)
def test_malformed_signed_notes_are_refused(text, reason):
    """Each of these is malformed for C2SP signed-note. The code before this rule accepted the
    names with '+', a tab, other Unicode spaces or none, a missing final newline, a trailing
    blank line and a blank line between signatures, and crashed on the invalid UTF-8."""
    with pytest.raises(NoteError, match=reason):
        verify_note(text, CHAIN, NODE_KEYS)


def test_the_signature_block_is_the_text_after_the_last_blank_line():
    """A blank line between signature lines: the note's text is then everything before it, which
    is no checkpoint. Today's code split at the first blank line and skipped empty lines."""
    lines = VALID.split("\n\n")[1].splitlines(keepends=True)
    text = VALID.split("\n\n")[0] + "\n\n" + lines[0] + "\n" + lines[1]
    with pytest.raises(NoteError, match="4 lines"):
        verify_note(text, CHAIN, NODE_KEYS)


def filler(count: int, name: str = "witness.example") -> list[str]:
    return [line(f"{name}/{i}", bytes(68)) for i in range(count)]


def test_sixteen_unknown_signatures_are_accepted_as_the_spec_requires():
    assert verify_note(with_lines(*filler(16)), CHAIN, NODE_KEYS) == BODY


def test_at_most_max_note_signatures_lines():
    at_limit = with_lines(*filler(MAX_NOTE_SIGNATURES - 2))
    assert verify_note(at_limit, CHAIN, NODE_KEYS) == BODY
    with pytest.raises(NoteError, match=f"at most {MAX_NOTE_SIGNATURES} signature lines"):
        verify_note(at_limit + line("one-more", bytes(68)), CHAIN, NODE_KEYS)


def test_at_most_max_note_bytes():
    """Exactly MAX_NOTE_BYTES is accepted (today's code stopped at 64 KiB), one more byte is not."""
    base = with_lines(*filler(10))
    template = line("pad", bytes(68))
    room = MAX_NOTE_BYTES - len(base.encode()) - len(template.encode()) + len("pad")
    at_limit = base + line("p" * room, bytes(68))
    assert len(at_limit.encode()) == MAX_NOTE_BYTES
    assert verify_note(at_limit, CHAIN, NODE_KEYS) == BODY
    with pytest.raises(NoteError, match=f"at most {MAX_NOTE_BYTES} bytes"):
        verify_note(base + line("p" * (room + 1), bytes(68)), CHAIN, NODE_KEYS)


def test_signing_a_note_is_unchanged_and_well_formed():
    """The rendering nodes and `nanum audit checkpoint` use: the text, a blank line, one line per
    signature, each 'em dash, space, name, space, base64(key id || signature), newline'."""
    signature = NODES[0].sign(BODY.text())
    expected = (BODY.text().decode() + "\n\u2014 " + NAME0 + " "
                + base64.b64encode(key_id(NODES[0].public_key) + signature).decode() + "\n")
    assert signed_note(BODY, [(NODES[0].public_key, signature)]) == expected


# --- verifier keys and the Go reference's example -------------------------------------------

# The example of golang.org/x/mod/sumdb/note's package documentation (its vkey and signed note).
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = ("If you think cryptography is the answer to your problem,\n"
           "then you don't know what your problem is.\n"
           "\n"
           "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")


def test_the_go_reference_example_vkey_and_note():
    name, kid, public_key = signed_note_form.parse_ed25519_vkey(GO_VKEY)
    assert (name, kid.hex()) == ("PeterNeumann", "c74f20a3")
    assert signed_note_form.ed25519_vkey(name, public_key) == GO_VKEY
    text, lines = signed_note_form.split(GO_NOTE)
    assert text == GO_NOTE.split("\n\n")[0].encode() + b"\n"
    assert [(sig.name, sig.key_id) for sig in lines] == [(name, kid)]
    assert keys.verify(public_key, lines[0].signature, text)


def test_a_node_vkey_is_name_key_id_and_typed_key():
    public_key = NODES[1].public_key
    text = vkey(public_key)
    name, hex_id, key_b64 = text.split("+", 2)
    assert name == key_name(public_key) and hex_id == key_id(public_key).hex()
    assert base64.b64decode(key_b64) == b"\x01" + public_key
    assert signed_note_form.parse_ed25519_vkey(text) == (name, key_id(public_key), public_key)


@pytest.mark.parametrize("bad", [
    GO_VKEY.replace("c74f20a3", "c74f20a4"), "Peter+Neumann+c74f20a3+x",
    GO_VKEY[:-4], GO_VKEY.replace("+ARpc", "+Arpc"), "PeterNeumann+c74f20a3+" + base64.b64encode(b"\x02" + bytes(32)).decode(),
])
def test_malformed_or_mismatched_vkeys_are_refused(bad):
    with pytest.raises(ValueError):
        signed_note_form.parse_ed25519_vkey(bad)


def test_the_vkey_test_vector_of_format_md():
    """docs/FORMAT.md §7.4 prints this vector for outsiders; it must stay true."""
    public_key = bytes.fromhex("5280d3d51c746f52c175b793e7620c9dd734a5e74dd2e7fa0a17dc64cfdaaceb")
    assert vkey(public_key) == ("nanum-node-610d92710262ca5e0a8fca763062e6e7f1f9c14b+42cf2176+"
                                "AVKA09UcdG9SwXW3k+diDJ3XNKXnTdLn+goX3GTP2qzr")
