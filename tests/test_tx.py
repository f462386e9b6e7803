"""Tests of ledger/tx.py and ledger/voucher.py: wire forms and the static check.

The static check (``check_tx``) is what every node runs on bytes from anyone: it must accept
exactly the canonical, correctly signed transactions of its chain, and refuse everything else
with MALFORMED, WRONG_CHAIN or BAD_SIGNATURE and the field at fault, never another exception."""

import base64
import dataclasses

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.block import decode_block
from ledger.codes import Code
from ledger.encoding import DecodeError, decode, encode
from ledger.limits import (
    MAX_ACTIVITY_REF_BYTES,
    MAX_MEMO_BYTES,
    MAX_NAME_BYTES,
    MAX_REASON_BYTES,
    MAX_TIME_MS,
    MAX_TX_BYTES,
    MAX_VOUCHER_POINTS,
    MIN_ACTIVITY_REF_BYTES,
    MIN_VOUCHER_POINTS,
)
from ledger.tx import (
    Deposit,
    DepositKind,
    GovernanceAction,
    Refund,
    Rejected,
    Rejection,
    Reversal,
    Role,
    Tx,
    TxKind,
    check_tx,
    decode_tx,
    make_tx,
    signatures_hold,
    signing_bytes,
)
from ledger.voucher import MAX_COMPACT_CHARS, VOUCHER_TAG, Voucher, sign_voucher
from tests.consortium import TestConsortium as Consortium, key

PROPERTY = settings(max_examples=300, deadline=None, derandomize=True)
OTHER_CHAIN = b"\xee" * 16

c = Consortium()
member = c.member("jiwoo")
voucher = c.voucher(member, 100)
redeem = c.redeem(voucher, 40)
deposit = c.deposit(member, 50)
SAMPLES: dict[str, Tx] = {
    "register": c.register(member),
    "deposit": deposit,
    "donation": c.make(c.centres[0], Deposit(member.party_id, 30, DepositKind.DONATION, 50_000, "DON-7", 1)),
    "other-deposit": c.make(c.centres[1], Deposit(member.party_id, 5, DepositKind.OTHER, 0, "O", 0)),
    "redeem": redeem,
    "refund": c.refund(redeem.tx_id, 10),
    "reversal": c.reverse(deposit.tx_id),
    "admit": c.governance(GovernanceAction.ADMIT, Role.PARTNER, key("cafe"), signers=3, name="Cafe"),
    "admit-node": c.governance(GovernanceAction.ADMIT, Role.NODE, key("node9"), name="node9",
                               address="10.0.0.9:7000"),
    "retire": c.governance(GovernanceAction.RETIRE, Role.CENTRE, c.centres[1]),
}
GENESIS = decode_tx(decode(decode_block(c.genesis_raw).entries[0])[0])


def rejection(raw: bytes, chain_id: bytes = c.chain_id) -> Rejection:
    with pytest.raises(Rejected) as caught:
        check_tx(raw, chain_id)
    return caught.value.rejection


def rewired(tx: Tx, path: tuple[int, ...], value) -> bytes:
    """``tx`` re-encoded with the wire field at ``path`` replaced (``value`` may be a function
    of the old value). The signature is left as it was."""
    wire = decode(tx.raw)
    if not path:
        return encode(value(wire))
    parent = wire
    for index in path[:-1]:
        parent = parent[index]
    parent[path[-1]] = value(parent[path[-1]]) if callable(value) else value
    return encode(wire)


def flipped(data: bytes, bit: int = 0) -> bytes:
    return data[:-1] + bytes([data[-1] ^ (1 << bit)])


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLES)
def test_every_kind_round_trips_through_its_bytes(name):
    tx = SAMPLES[name]
    assert decode_tx(tx.raw) == tx
    assert encode(decode(tx.raw)) == tx.raw
    assert check_tx(tx.raw, c.chain_id) == tx


@pytest.mark.parametrize("name", [*SAMPLES, "genesis"])
def test_the_signing_bytes_cut_from_the_encoding_are_the_documented_ones(name):
    # Tx.signing_bytes() slices the canonical encoding; FORMAT.md defines them by re-encoding.
    tx = GENESIS if name == "genesis" else SAMPLES[name]
    assert tx.signing_bytes() == signing_bytes(tx.chain_id, tx.payload, tx.tx_id, tx.author)
    assert tx.signing_bytes() == encode([tx.kind.tag, tx.chain_id, int(tx.kind), tx.tx_id, tx.author,
                                         tx.payload.to_wire()])


def test_the_genesis_transaction_round_trips():
    assert GENESIS.kind == TxKind.GENESIS
    assert decode_tx(GENESIS.raw) == GENESIS
    assert GENESIS.tx_id == c.chain_id == GENESIS.payload.chain_id()


def test_the_author_id_is_the_party_id_of_the_signing_key():
    assert SAMPLES["deposit"].author_id == c.centres[0].party_id
    assert SAMPLES["redeem"].payload.voucher.member_id == member.party_id


def test_approvals_are_sorted_distinct_and_exclude_the_author():
    tx = make_tx(c.admins[0], c.chain_id, c.tx_id(), SAMPLES["admit"].payload,
                 approvers=(c.admins[2], c.admins[0], c.admins[1]))
    keys_ = [a.public_key for a in tx.approvals]
    assert keys_ == sorted({c.admins[1].public_key, c.admins[2].public_key})
    assert check_tx(tx.raw, c.chain_id) == tx


def test_body_hash_ignores_signatures_but_not_content():
    tx = SAMPLES["admit"]
    fewer = make_tx(c.admins[0], c.chain_id, tx.tx_id, tx.payload, approvers=(c.admins[1],))
    assert fewer.body_hash() == tx.body_hash()
    other = c.deposit(member, 51, tx_id=deposit.tx_id)
    assert other.body_hash() != deposit.body_hash()


@pytest.mark.parametrize("author, payload, text, limit", [
    ("partner", Refund(redeem.tx_id, 1, "가" * 46 + "ab"), "memo", MAX_MEMO_BYTES),
    ("centre", Reversal(deposit.tx_id, "r" * MAX_REASON_BYTES), "reason", MAX_REASON_BYTES),
    ("centre", Deposit(member.party_id, 1, DepositKind.VOLUNTEERING, 60, "a" * MAX_ACTIVITY_REF_BYTES, 17),
     "activity_ref", MAX_ACTIVITY_REF_BYTES),
], ids=["memo", "reason", "activity_ref"])
def test_text_exactly_at_its_limit_in_utf8_bytes_is_accepted(author, payload, text, limit):
    tx = c.make(c.partners[0] if author == "partner" else c.centres[0], payload)
    assert len(getattr(tx.payload, text).encode("utf-8")) == limit
    assert check_tx(tx.raw, c.chain_id) == tx


def test_an_activity_ref_of_the_minimum_length_is_accepted():
    tx = c.make(c.centres[0], Deposit(member.party_id, 1, DepositKind.OTHER, 0, "a" * MIN_ACTIVITY_REF_BYTES, 0))
    assert check_tx(tx.raw, c.chain_id) == tx


# Every text field of every structure a transaction carries (FORMAT.md §1 names the same list).
TEXT_FIELDS = [
    ("genesis", (5, 0), "payload.name"),
    ("genesis", (5, 3, 0, 1), "payload.admins[0].name"),
    ("genesis", (5, 4, 0, 1), "payload.centres[0].name"),
    ("genesis", (5, 5, 0, 1), "payload.partners[0].name"),
    ("genesis", (5, 6, 0, 1), "payload.nodes[0].name"),
    ("genesis", (5, 6, 0, 2), "payload.nodes[0].address"),
    ("deposit", (5, 4), "payload.activity_ref"),
    ("redeem", (5, 2), "payload.memo"),
    ("refund", (5, 2), "payload.memo"),
    ("reversal", (5, 1), "payload.reason"),
    ("admit", (5, 3), "payload.name"),
    ("admit-node", (5, 4), "payload.address"),
]


def _sample(name: str) -> Tx:
    return GENESIS if name == "genesis" else SAMPLES[name]


# Examples of each refused general category (FORMAT.md §1, Unicode 14.0.0).
REFUSED_EXAMPLES = {
    "Cc": ["\x00", "\x1b", "\x1f", "\x7f", "\x80", "\x85", "\x9b", "\x9d", "\x9f"],
    "Cf": ["\u00ad", "\u061c", "\u200b", "\u200d", "\u200e", "\u200f", "\u202a", "\u202d", "\u202e",
           "\u2060", "\u2066", "\u2069", "\ufeff", "\U000e0001", "\U000e0041"],
    "Zl": ["\u2028"],
    "Zp": ["\u2029"],
    "Cn": ["\u0378", "\u2065", "\ufdd0", "\ufffe", "\uffff", "\U0001fafa", "\U0010ffff"],
}
REFUSED = [(category, ch) for category, chars in REFUSED_EXAMPLES.items() for ch in chars]


@pytest.mark.parametrize("category, refused", REFUSED, ids=[f"{k}-U+{ord(ch):04X}" for k, ch in REFUSED])
@pytest.mark.parametrize("name, path, field", TEXT_FIELDS, ids=[f"{n}:{f}" for n, _, f in TEXT_FIELDS])
def test_a_refused_character_in_any_text_field_is_malformed(name, path, field, category, refused):
    # Inside the host of an address, so that it is the character, not the grammar, at fault.
    for where in (lambda text: refused + text, lambda text: text[:1] + refused + text[1:]):
        raw = rewired(_sample(name), path, where)
        with pytest.raises(DecodeError, match=f"U\\+{ord(refused):04X}") as caught:
            decode_tx(raw)
        assert caught.value.field == field
        assert refused not in str(caught.value)     # the message names it, never carries it


def test_the_refused_examples_are_of_their_category_in_unicode_14():
    import unicodedata
    if unicodedata.unidata_version != "14.0.0":
        pytest.skip(f"this Python's Unicode is {unicodedata.unidata_version}; the examples are chosen in 14.0.0")
    for category, ch in REFUSED:
        assert unicodedata.category(ch) == category, hex(ord(ch))


# Allowed: just past the control sets, spaces (Zs), Hangul, a 14.0.0 emoji with its variation
# selector (Mn), private use (Co), combining marks.
ALLOWED_TEXT = "\x20\x7e\xa0광\u3000\U0001faf6\ufe0f\ue000\u0301"


@pytest.mark.parametrize("name, path, field", [f for f in TEXT_FIELDS if not f[2].endswith("address")],
                         ids=[f"{n}:{f}" for n, _, f in TEXT_FIELDS if not f.endswith("address")])
def test_the_characters_just_past_the_refused_sets_are_text(name, path, field):
    tx = decode_tx(rewired(_sample(name), path, lambda text: ALLOWED_TEXT + text[:30]))
    assert tx.raw != _sample(name).raw


def test_a_genesis_node_address_follows_the_host_port_grammar():
    for bad in ("", "node0", "127.0.0.1:0", "127.0.0.1:65536", "[::1]:07000"):
        with pytest.raises(DecodeError) as caught:
            decode_tx(rewired(GENESIS, (5, 6, 0, 2), bad))
        assert caught.value.field == "payload.nodes[0].address", bad
    assert decode_tx(rewired(GENESIS, (5, 6, 0, 2), "[::1]:65535")).payload.nodes[0].address == "[::1]:65535"


def test_a_name_exactly_at_its_limit_is_accepted():
    tx = c.governance(GovernanceAction.ADMIT, Role.CENTRE, key("centre-z"), name="n" * MAX_NAME_BYTES)
    assert check_tx(tx.raw, c.chain_id) == tx


def test_points_of_2_64_minus_1_decode_and_are_left_to_the_rules():
    tx = c.deposit(member, 2**64 - 1)
    assert check_tx(tx.raw, c.chain_id).payload.points == 2**64 - 1


# --- MALFORMED ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [
    deposit.raw[:-1],
    deposit.raw[:10],
    b"",
    b"\x00garbage",
    b"\xc1",
    encode("not a transaction"),
    encode([1, 2, 3]),
    bytes(MAX_TX_BYTES + 1),
    rewired(deposit, (6,), bytes(MAX_TX_BYTES)),
], ids=["truncated-by-one", "truncated", "empty", "garbage", "reserved-byte", "text",
        "short-array", "oversized-zeros", "oversized-tx"])
def test_bytes_that_are_not_a_transaction_are_malformed(raw):
    assert rejection(raw).code == Code.MALFORMED


MALFORMED_FIELDS = [
    ("deposit", (0,), 2, "version"),
    ("deposit", (0,), 0, "version"),
    ("deposit", (2,), 8, "kind"),
    ("deposit", (2,), 0, "kind"),
    ("deposit", (2,), "deposit", "kind"),
    ("deposit", (1,), bytes(17), "chain_id"),
    ("deposit", (1,), "chain", "chain_id"),
    ("deposit", (3,), bytes(15), "tx_id"),
    ("deposit", (3,), bytes(17), "tx_id"),
    ("deposit", (4,), bytes(31), "author"),
    ("deposit", (6,), bytes(63), "signature"),
    ("deposit", (6,), bytes(65), "signature"),
    ("deposit", (5,), lambda p: p + [0], "payload"),
    ("deposit", (5,), 7, "payload"),
    ("deposit", (5, 0), bytes(19), "payload.member_id"),
    ("deposit", (5, 0), "member", "payload.member_id"),
    ("deposit", (5, 1), True, "payload.points"),
    ("deposit", (5, 1), None, "payload.points"),
    ("deposit", (5, 1), "50", "payload.points"),
    ("deposit", (5, 2), 9, "payload.deposit_kind"),
    ("deposit", (5, 2), 0, "payload.deposit_kind"),
    ("deposit", (5, 4), "x" * (MAX_ACTIVITY_REF_BYTES + 1), "payload.activity_ref"),
    ("deposit", (5, 4), "VOL\x00", "payload.activity_ref"),
    ("deposit", (5, 4), "VOL\x7f", "payload.activity_ref"),
    ("deposit", (5, 4), b"VOL", "payload.activity_ref"),
    ("deposit", (5, 4), "", "payload.activity_ref"),
    ("deposit", (5, 4), "VOL\x80", "payload.activity_ref"),
    ("deposit", (5, 4), "VOL\x9f", "payload.activity_ref"),
    ("deposit", (5, 5), 18, "payload.category"),
    ("other-deposit", (5, 3), 120, "payload.quantity"),
    ("register", (5, 0), bytes(33), "payload.member_key"),
    ("redeem", (5, 1), False, "payload.points"),
    ("redeem", (5, 2), "가" * 47, "payload.memo"),
    ("redeem", (5, 2), "two\nbooks", "payload.memo"),
    ("redeem", (5, 0), lambda v: v[:7], "payload.voucher"),
    ("redeem", (5, 0, 0), 2, "payload.voucher.version"),
    ("redeem", (5, 0, 1), bytes(15), "payload.voucher.chain_id"),
    ("redeem", (5, 0, 2), bytes(31), "payload.voucher.member_key"),
    ("redeem", (5, 0, 3), bytes(21), "payload.voucher.partner_id"),
    ("redeem", (5, 0, 4), True, "payload.voucher.max_points"),
    ("redeem", (5, 0, 4), MIN_VOUCHER_POINTS - 1, "payload.voucher.max_points"),
    ("redeem", (5, 0, 4), MAX_VOUCHER_POINTS + 1, "payload.voucher.max_points"),
    ("redeem", (5, 0, 5), bytes(15), "payload.voucher.nonce"),
    ("redeem", (5, 0, 6), MAX_TIME_MS + 1, "payload.voucher.expiry_ms"),
    ("redeem", (5, 0, 7), bytes(63), "payload.voucher.signature"),
    ("refund", (5, 0), bytes(17), "payload.redemption_id"),
    ("refund", (5, 2), "m" * (MAX_MEMO_BYTES + 1), "payload.memo"),
    ("reversal", (5, 0), bytes(15), "payload.deposit_id"),
    ("reversal", (5, 1), "r" * (MAX_REASON_BYTES + 1), "payload.reason"),
    ("reversal", (5, 1), "", "payload.reason"),
    ("reversal", (5, 1), "typo\r", "payload.reason"),
    ("admit", (5, 0), 7, "payload.action"),
    ("admit", (5, 0), 0, "payload.action"),
    ("admit", (5, 1), 9, "payload.role"),
    ("admit", (5, 1), int(Role.ADMIN), "payload.role"),
    ("admit", (5, 2), bytes(31), "payload.public_key"),
    ("admit", (5, 3), "n" * (MAX_NAME_BYTES + 1), "payload.name"),
    ("admit", (5, 3), "", "payload.name"),
    ("admit", (5, 3), "Cafe\tA", "payload.name"),
    ("admit", (5, 4), "127.0.0.1:7000", "payload.address"),
    ("admit-node", (5, 4), "", "payload.address"),
    ("admit-node", (5, 4), "h" * 257, "payload.address"),
    ("admit-node", (5, 4), "10.0.0.9", "payload.address"),
    ("admit-node", (5, 4), "10.0.0.9:0", "payload.address"),
    ("admit-node", (5, 4), "10.0.0.9:65536", "payload.address"),
    ("admit-node", (5, 4), ":7000", "payload.address"),
    ("admit-node", (5, 4), "node 9:7000", "payload.address"),
    ("admit-node", (5, 4), "fe80::1:7000", "payload.address"),
    ("admit-node", (5, 4), "[fe80::1%eth0]:7000", "payload.address"),
    ("retire", (5, 3), "centre1", "payload.name"),
    ("retire", (5, 4), "10.0.0.1:7000", "payload.address"),
    ("admit", (7,), lambda a: a + [[b"\x01" * 32]], "approvals[2]"),
    ("admit", (7,), lambda a: a[:1] + [[a[1][0], bytes(63)]], "approvals[1].signature"),
    ("admit", (7,), 5, "approvals"),
    ("deposit", (), lambda w: w + [[]], "tx"),
    ("deposit", (), lambda w: w[:7], "tx"),
]


@pytest.mark.parametrize("name, path, value, field", MALFORMED_FIELDS,
                         ids=[f"{n}:{f}:{i}" for i, (n, _, _, f) in enumerate(MALFORMED_FIELDS)])
def test_a_malformed_field_is_named_in_the_rejection(name, path, value, field):
    found = rejection(rewired(SAMPLES[name], path, value))
    assert (found.code, found.field) == (Code.MALFORMED, field)


def test_a_negative_integer_is_malformed():
    wire = decode(deposit.raw)
    wire[5][1] = -1
    assert rejection(msgpack.packb(wire, use_bin_type=True)).code == Code.MALFORMED


def test_a_float_amount_is_malformed():
    wire = decode(deposit.raw)
    wire[5][1] = 50.0
    assert rejection(msgpack.packb(wire, use_bin_type=True)).code == Code.MALFORMED


def test_a_map_payload_is_malformed():
    wire = decode(deposit.raw)
    wire[5] = {"points": 50}
    assert rejection(msgpack.packb(wire, use_bin_type=True)).code == Code.MALFORMED


@pytest.mark.parametrize("raw", [
    b"\xdc\x00\x08" + deposit.raw[1:],                                  # array16 for the tx
    deposit.raw[:1] + b"\xcc\x01" + deposit.raw[2:],                    # version as uint8
    redeem.raw.replace(b"\xa9two books", b"\xd9\x09two books"),         # memo as str8
    deposit.raw.replace(b"\xa8VOL-0001", b"\xd9\x08VOL-0001"),          # activity ref as str8
], ids=["array16", "uint8-version", "str8-memo", "str8-activity-ref"])
def test_a_non_canonical_encoding_of_a_valid_transaction_is_malformed(raw):
    assert raw != deposit.raw and raw != redeem.raw
    assert rejection(raw).code == Code.MALFORMED


def test_approvals_on_a_deposit_are_malformed():
    approval = [c.admins[1].public_key, c.admins[1].sign(deposit.signing_bytes())]
    found = rejection(rewired(deposit, (7,), [approval]))
    assert (found.code, found.field) == (Code.MALFORMED, "approvals")


@pytest.mark.parametrize("change", [
    lambda a: list(reversed(a)),
    lambda a: [a[0], a[0]],
    lambda a: [[c.admins[0].public_key, a[0][1]]] + a,
], ids=["unsorted", "duplicate", "the-authors-own"])
def test_approvals_must_be_sorted_distinct_and_not_the_authors(change):
    admit = SAMPLES["admit"]
    assert len(admit.approvals) == 2
    found = rejection(rewired(admit, (7,), lambda a: change(sorted(a))))
    assert (found.code, found.field) == (Code.MALFORMED, "approvals")


def test_a_genesis_transaction_submitted_as_a_normal_one_is_malformed():
    found = rejection(GENESIS.raw, GENESIS.tx_id)
    assert (found.code, found.field) == (Code.MALFORMED, "kind")


def test_deposit_kind_other_with_zero_quantity_is_accepted():
    tx = SAMPLES["other-deposit"]
    assert tx.payload.deposit_kind == DepositKind.OTHER
    assert check_tx(tx.raw, c.chain_id) == tx


# --- WRONG_CHAIN ----------------------------------------------------------------------------


def test_a_transaction_for_another_chain_is_wrong_chain():
    tx = make_tx(c.centres[0], OTHER_CHAIN, c.tx_id(), deposit.payload)
    found = rejection(tx.raw)
    assert (found.code, found.field) == (Code.WRONG_CHAIN, "chain_id")
    assert check_tx(tx.raw, OTHER_CHAIN) == tx


def test_a_voucher_for_another_chain_is_wrong_chain():
    foreign = sign_voucher(member, OTHER_CHAIN, c.partners[0].party_id, 100, bytes(16),
                           voucher.expiry_ms)
    found = rejection(c.redeem(foreign, 40).raw)
    assert (found.code, found.field) == (Code.WRONG_CHAIN, "payload.voucher.chain_id")


# --- BAD_SIGNATURE ------------------------------------------------------------------------


@pytest.mark.parametrize("bit", [0, 7])
def test_a_flipped_bit_in_the_author_signature_is_a_bad_signature(bit):
    found = rejection(rewired(deposit, (6,), lambda s: flipped(s, bit)))
    assert (found.code, found.field) == (Code.BAD_SIGNATURE, "signature")


def test_a_signature_by_another_key_is_a_bad_signature():
    forged = c.centres[1].sign(deposit.signing_bytes())
    found = rejection(rewired(deposit, (6,), forged))
    assert (found.code, found.field) == (Code.BAD_SIGNATURE, "signature")


def test_points_changed_after_signing_are_a_bad_signature():
    found = rejection(rewired(deposit, (5, 1), 5000))
    assert (found.code, found.field) == (Code.BAD_SIGNATURE, "signature")


def test_an_author_swapped_after_signing_is_a_bad_signature():
    found = rejection(rewired(deposit, (4,), c.centres[1].public_key))
    assert (found.code, found.field) == (Code.BAD_SIGNATURE, "signature")


@pytest.mark.parametrize("position", [0, 1])
def test_a_bad_approval_signature_is_a_bad_signature(position):
    def spoil(approvals):
        approvals[position][1] = flipped(approvals[position][1])
        return approvals

    found = rejection(rewired(SAMPLES["admit"], (7,), spoil))
    assert (found.code, found.field) == (Code.BAD_SIGNATURE, f"approvals[{position}].signature")


def test_a_voucher_changed_after_the_member_signed_it_is_a_bad_signature():
    raised = dataclasses.replace(voucher, max_points=1_000_000)
    found = rejection(c.redeem(raised, 40).raw)
    assert (found.code, found.field) == (Code.BAD_SIGNATURE, "payload.voucher.signature")


def test_a_voucher_signed_by_another_member_is_a_bad_signature():
    other = c.member("minho")
    forged = dataclasses.replace(voucher, signature=other.sign(voucher.signing_bytes()))
    found = rejection(c.redeem(forged, 40).raw)
    assert (found.code, found.field) == (Code.BAD_SIGNATURE, "payload.voucher.signature")


def test_rejections_read_as_code_number_field_and_detail():
    text = str(rejection(rewired(deposit, (6,), lambda s: flipped(s))))
    assert text.startswith("BAD_SIGNATURE (3) at signature: ")


# --- check_tx never raises anything but Rejected --------------------------------------------


def _static_check(raw: bytes) -> None:
    try:
        tx = check_tx(raw, c.chain_id)
    except Rejected as exc:
        assert exc.rejection.code in (Code.MALFORMED, Code.WRONG_CHAIN, Code.INVALID_KEY, Code.BAD_SIGNATURE)
        return
    assert tx.raw == raw


@PROPERTY
@given(st.binary(max_size=200))
def test_check_tx_on_arbitrary_bytes_returns_a_tx_or_raises_rejected(raw):
    _static_check(raw)


@PROPERTY
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_check_tx_on_damaged_transactions_returns_a_tx_or_raises_rejected(name, data):
    raw = bytearray(SAMPLES[name].raw)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["set", "delete", "insert", "cut"]))
        byte = data.draw(st.integers(0, 255))
        if action == "set":
            raw[position] = byte
        elif action == "delete" and len(raw) > 1:
            del raw[position]
        elif action == "insert":
            raw.insert(position, byte)
        else:
            raw = raw[:position + 1]
    _static_check(bytes(raw))


# --- the auditor's quick accept: signatures hold, the schema is left to the replay -----------


def signed_wire(author, kind: TxKind, payload_wire, approvers=()) -> bytes:
    """A transaction whose signatures are all valid over whatever payload it carries."""
    tx_id = c.tx_id()
    message = encode([kind.tag, c.chain_id, int(kind), tx_id, author.public_key, payload_wire])
    approvals = [[k.public_key, k.sign(message)] for k in approvers]
    return encode([1, c.chain_id, int(kind), tx_id, author.public_key, payload_wire, author.sign(message),
                   approvals])


def signed_voucher_wire(max_points) -> list:
    fields = [c.chain_id, member.public_key, c.partners[0].party_id, max_points, b"\x07" * 16, 2**40]
    return [1, *fields, member.sign(encode([VOUCHER_TAG, *fields]))]


def _deposit_wire(index: int, value) -> list:
    wire = deposit.payload.to_wire()
    wire[index] = value
    return wire


SIGNED_BUT_MALFORMED = {
    "points as bytes": (signed_wire(c.centres[0], TxKind.DEPOSIT, _deposit_wire(1, b"x")), "payload.points"),
    "control character": (signed_wire(c.centres[0], TxKind.DEPOSIT, _deposit_wire(4, "VOL\n1")),
                          "payload.activity_ref"),
    "bidi override": (signed_wire(c.centres[0], TxKind.DEPOSIT, _deposit_wire(4, "VOL\u202e1")),
                      "payload.activity_ref"),
    "paragraph separator in a memo": (signed_wire(c.partners[0], TxKind.REDEEM,
                                                  [signed_voucher_wire(5), 5, "two\u2029books"]), "payload.memo"),
    "short payload": (signed_wire(c.centres[0], TxKind.DEPOSIT, deposit.payload.to_wire()[:-1]), "payload"),
    "approvals on a deposit": (signed_wire(c.centres[0], TxKind.DEPOSIT, deposit.payload.to_wire(),
                                           approvers=(c.admins[1],)), "approvals"),
    "unsorted approvals": (signed_wire(c.admins[0], TxKind.GOVERNANCE, SAMPLES["admit"].payload.to_wire(),
                                       approvers=sorted(c.admins[1:], key=lambda k: k.public_key, reverse=True)),
                           "approvals"),
    "voucher points as text": (signed_wire(c.partners[0], TxKind.REDEEM, [signed_voucher_wire("x"), 5, ""]),
                               "payload.voucher.max_points"),
}


@pytest.mark.parametrize("name", SIGNED_BUT_MALFORMED)
def test_signatures_may_hold_on_a_malformed_transaction_and_decoding_names_the_same_field(name):
    raw, field = SIGNED_BUT_MALFORMED[name]
    assert signatures_hold(raw, c.chain_id)
    found = rejection(raw)
    assert (found.code, found.field) == (Code.MALFORMED, field)
    with pytest.raises(DecodeError) as caught:
        decode_tx(raw, prechecked=True)
    assert caught.value.field == field


@pytest.mark.parametrize("name", SAMPLES)
def test_signatures_hold_on_every_valid_kind_but_not_on_another_chain(name):
    assert signatures_hold(SAMPLES[name].raw, c.chain_id)
    assert not signatures_hold(SAMPLES[name].raw, OTHER_CHAIN)


def test_signatures_do_not_hold_for_genesis_or_any_bad_signature():
    assert not signatures_hold(GENESIS.raw, c.chain_id)
    assert not signatures_hold(rewired(deposit, (6,), flipped), c.chain_id)
    assert not signatures_hold(rewired(redeem, (5, 0, 7), flipped), c.chain_id)
    assert not signatures_hold(rewired(SAMPLES["admit"], (7, 1, 1), flipped), c.chain_id)
    assert not signatures_hold(rewired(redeem, (5, 0, 1), OTHER_CHAIN), c.chain_id)


@PROPERTY
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_where_signatures_hold_check_tx_agrees_with_decoding_alone(name, data):
    # Damage anywhere in a transaction re-signed over its damaged payload, so that the quick
    # accept often says yes: check_tx and the replay's decode must then give the same answer.
    wire = decode(SAMPLES[name].raw)
    payload = encode(wire[5])
    position = data.draw(st.integers(0, len(payload) - 1))
    damaged = bytearray(payload)
    damaged[position] = data.draw(st.integers(0, 255))
    try:
        payload_wire = decode(bytes(damaged))
    except DecodeError:
        return
    author = next(k for k in [*c.centres, *c.partners, *c.admins] if k.public_key == wire[4])
    approvers = [k for k in c.admins if any(k.public_key == a[0] for a in wire[7])]
    raw = signed_wire(author, TxKind(wire[2]), payload_wire, approvers)
    if not signatures_hold(raw, c.chain_id):
        return
    try:
        expected = check_tx(raw, c.chain_id)
    except Rejected as exc:
        with pytest.raises(DecodeError) as caught:
            decode_tx(raw, prechecked=True)
        assert (exc.rejection.code, exc.rejection.field) == (Code.MALFORMED, caught.value.field)
        return
    assert decode_tx(raw, prechecked=True) == expected


@PROPERTY
@given(st.binary(max_size=300))
def test_signatures_hold_never_raises(raw):
    assert signatures_hold(raw, c.chain_id) in (True, False)


# --- vouchers -----------------------------------------------------------------------------


def test_a_voucher_survives_its_compact_string():
    text = voucher.to_compact()
    assert text.startswith("nv1.") and "=" not in text
    assert Voucher.from_compact(text) == voucher
    assert Voucher.from_compact(f"  {text}\n") == voucher
    assert Voucher.from_compact(text).signature_valid()


def test_a_voucher_names_its_member_and_verifies_only_unchanged():
    assert voucher.member_id == member.party_id
    assert voucher.signature_valid()
    assert not dataclasses.replace(voucher, expiry_ms=voucher.expiry_ms + 1).signature_valid()
    assert not dataclasses.replace(voucher, partner_id=c.partners[1].party_id).signature_valid()


@pytest.mark.parametrize("text", [
    "",
    "nv1.",
    "nv1.!!!!",
    "nv1.A",
    "nv1.AAAA",
    "nv1." + "A" * (MAX_COMPACT_CHARS - 4 + 1),
    "nv2." + voucher.to_compact()[4:],
    voucher.to_compact()[4:],
    voucher.to_compact()[:-8],
    "nv1.가나다라",
    "nv1." + encode([1, 2, 3]).hex(),
], ids=["empty", "prefix-only", "punctuation", "one-char", "zeros", "oversized", "wrong-prefix",
        "no-prefix", "truncated", "hangul", "hex"])
def test_a_bad_voucher_string_is_a_decode_error(text):
    with pytest.raises(DecodeError):
        Voucher.from_compact(text)


@pytest.mark.parametrize("index, value, field", [
    (0, 2, "voucher.version"),
    (1, bytes(15), "voucher.chain_id"),
    (4, -1, None),
    (6, MAX_TIME_MS + 1, "voucher.expiry_ms"),
])
def test_a_voucher_with_a_bad_field_is_a_decode_error(index, value, field):
    wire = voucher.to_wire()
    wire[index] = value
    body = base64.urlsafe_b64encode(msgpack.packb(wire, use_bin_type=True)).rstrip(b"=").decode()
    with pytest.raises(DecodeError) as caught:
        Voucher.from_compact("nv1." + body)
    if field is not None:
        assert caught.value.field == field


@PROPERTY
@given(st.text(max_size=80))
def test_any_text_is_a_voucher_or_a_decode_error(text):
    for candidate in (text, "nv1." + text):
        try:
            Voucher.from_compact(candidate)
        except DecodeError:
            pass
