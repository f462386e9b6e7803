"""Transactions: their kinds, payloads, wire form, signatures and the static check.

Wire form of every transaction (canonical array, docs/FORMAT.md "Transactions"):

    [1, chain_id:bin16, kind:uint, tx_id:bin16, author:bin32, payload:array,
     signature:bin64, approvals:array]

``author`` is the author's Ed25519 public key (its party id is derived from it), so every
signature can be checked from the bytes alone. The author signs

    encode([tag(kind), chain_id, kind, tx_id, author, payload])

where tag(kind) is ``"nanum/v1/tx/<kind name>"``. ``approvals`` are ``[public_key, signature]``
pairs by further admins over the same bytes, sorted by public key, distinct, never the
author's own; only genesis and governance transactions may carry them.

``check_tx`` is the *static* check: decoding, chain id, every public key against the key rule
(``keys.public_key_valid``; a weak key never enters a block) and every signature. It needs no
state, so it can run anywhere, once per transaction per node.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from enum import IntEnum
from typing import ClassVar, Union

from ledger import keys
from ledger.address import AddressError, parse_address
from ledger.codes import Code
from ledger.encoding import (
    DecodeError,
    decode,
    decode_prechecked,
    encode,
    expect_array,
    expect_bytes,
    expect_list,
    expect_text,
    expect_uint,
)
from ledger.limits import (
    CHAIN_ID_BYTES,
    MAX_ACTIVITY_REF_BYTES,
    MAX_ADDRESS_BYTES,
    MAX_APPROVALS,
    MAX_GENESIS_PARTIES,
    MAX_MEMO_BYTES,
    MAX_NAME_BYTES,
    MAX_REASON_BYTES,
    MAX_TIME_MS,
    MAX_TX_BYTES,
    MIN_ACTIVITY_REF_BYTES,
    PUBLIC_KEY_BYTES,
    SDG_GOALS,
    SIGNATURE_BYTES,
    TX_ID_BYTES,
    PARTY_ID_BYTES,
)
from ledger.voucher import VOUCHER_TAG, Voucher

TX_VERSION = 1


class TxKind(IntEnum):
    GENESIS = 1
    REGISTER_MEMBER = 2
    DEPOSIT = 3
    REDEEM = 4
    REFUND = 5
    REVERSAL = 6
    GOVERNANCE = 7

    @property
    def tag(self) -> str:
        return f"nanum/v1/tx/{self.name.lower().replace('_', '-')}"


class Role(IntEnum):
    """Roles of consortium parties. Members are not parties: they have their own table."""

    ADMIN = 1
    CENTRE = 2
    PARTNER = 3
    NODE = 4


class DepositKind(IntEnum):
    VOLUNTEERING = 1   # quantity = minutes volunteered
    DONATION = 2       # quantity = amount donated, smallest currency unit
    OTHER = 3          # quantity = 0


class GovernanceAction(IntEnum):
    ADMIT = 1
    RETIRE = 2


def _enum(enum_type: type[IntEnum], value: object, field: str) -> IntEnum:
    number = expect_uint(value, field)
    member = _members_of(enum_type).get(number)
    if member is None:
        raise DecodeError(f"unknown {enum_type.__name__} value {number}", field)
    return member


@functools.cache
def _members_of(enum_type: type[IntEnum]) -> dict[int, IntEnum]:
    """value -> member; a dict lookup instead of ``enum_type(value)``, which costs several
    times as much on every decoded transaction."""
    return {int(member): member for member in enum_type}


def expect_node_address(text: str, field: str) -> str:
    """A node's address is a ``host:port`` of ledger/address.py's grammar, else MALFORMED."""
    try:
        parse_address(text)
    except AddressError as exc:
        raise DecodeError(f"a node address: {exc}", field) from None
    return text


# --- payloads: each has to_wire() and from_wire(value) ------------------------------------


@dataclass(frozen=True, slots=True)
class PartyEntry:
    """A party named in the genesis transaction. ``address`` is for nodes only, else ""."""

    public_key: bytes
    name: str
    address: str = ""

    def to_wire(self) -> list:
        return [self.public_key, self.name, self.address]

    @classmethod
    def from_wire(cls, value: object, field: str, is_node: bool) -> "PartyEntry":
        fields = expect_array(value, 3, field)
        address = expect_text(fields[2], f"{field}.address", MAX_ADDRESS_BYTES)
        if is_node:
            expect_node_address(address, f"{field}.address")
        elif address:
            raise DecodeError("only nodes have an address", f"{field}.address")
        return cls(
            public_key=expect_bytes(fields[0], f"{field}.public_key", size=PUBLIC_KEY_BYTES),
            name=expect_text(fields[1], f"{field}.name", MAX_NAME_BYTES, min_bytes=1),
            address=address,
        )

    @property
    def party_id(self) -> bytes:
        return keys.party_id(self.public_key)


@dataclass(frozen=True, slots=True)
class Genesis:
    """The consortium's founding document; the only transaction of block 0."""

    kind: ClassVar[TxKind] = TxKind.GENESIS
    name: str
    created_ms: int
    threshold: int
    admins: tuple[PartyEntry, ...]
    centres: tuple[PartyEntry, ...]
    partners: tuple[PartyEntry, ...]
    nodes: tuple[PartyEntry, ...]

    def to_wire(self) -> list:
        return [self.name, self.created_ms, self.threshold,
                [p.to_wire() for p in self.admins], [p.to_wire() for p in self.centres],
                [p.to_wire() for p in self.partners], [p.to_wire() for p in self.nodes]]

    @classmethod
    def from_wire(cls, value: object) -> "Genesis":
        fields = expect_array(value, 7, "payload")
        groups = []
        for position, label in ((3, "admins"), (4, "centres"), (5, "partners"), (6, "nodes")):
            items = expect_list(fields[position], MAX_GENESIS_PARTIES, f"payload.{label}")
            groups.append(tuple(
                PartyEntry.from_wire(item, f"payload.{label}[{i}]", label == "nodes")
                for i, item in enumerate(items)))
        admins = groups[0]
        genesis = cls(
            name=expect_text(fields[0], "payload.name", MAX_NAME_BYTES, min_bytes=1),
            created_ms=expect_uint(fields[1], "payload.created_ms", 0, MAX_TIME_MS),
            threshold=expect_uint(fields[2], "payload.threshold", 1, max(1, len(admins))),
            admins=admins, centres=groups[1], partners=groups[2], nodes=groups[3],
        )
        genesis._check_parties()
        return genesis

    def _check_parties(self) -> None:
        if not self.admins or not self.nodes:
            raise DecodeError("genesis needs at least one admin and one node", "payload")
        seen: set[bytes] = set()
        for party in self.admins + self.centres + self.partners + self.nodes:
            if party.public_key in seen:
                raise DecodeError("a public key appears twice; one key has one role", "payload")
            seen.add(party.public_key)

    def chain_id(self) -> bytes:
        """The chain id is derived from the genesis payload, so it names this consortium only."""
        return hashlib.sha256(encode(["nanum/v1/chain-id", self.to_wire()])).digest()[:CHAIN_ID_BYTES]


@dataclass(frozen=True, slots=True)
class RegisterMember:
    kind: ClassVar[TxKind] = TxKind.REGISTER_MEMBER
    member_key: bytes

    @property
    def member_id(self) -> bytes:
        return keys.party_id(self.member_key)

    def to_wire(self) -> list:
        return [self.member_key]

    @classmethod
    def from_wire(cls, value: object) -> "RegisterMember":
        fields = expect_array(value, 1, "payload")
        return cls(expect_bytes(fields[0], "payload.member_key", size=PUBLIC_KEY_BYTES))


@dataclass(frozen=True, slots=True)
class Deposit:
    kind: ClassVar[TxKind] = TxKind.DEPOSIT
    member_id: bytes
    points: int
    deposit_kind: DepositKind
    quantity: int          # minutes (volunteering), amount (donation), 0 (other)
    activity_ref: str      # short opaque code or hash pointing at the centre's own records
    category: int          # 0 = none, 1..17 = UN SDG goal

    def to_wire(self) -> list:
        return [self.member_id, self.points, int(self.deposit_kind), self.quantity,
                self.activity_ref, self.category]

    @classmethod
    def from_wire(cls, value: object) -> "Deposit":
        fields = expect_array(value, 6, "payload")
        deposit_kind = _enum(DepositKind, fields[2], "payload.deposit_kind")
        quantity = expect_uint(fields[3], "payload.quantity")
        if deposit_kind == DepositKind.OTHER and quantity != 0:
            raise DecodeError("quantity must be 0 for deposit kind OTHER", "payload.quantity")
        return cls(
            member_id=expect_bytes(fields[0], "payload.member_id", size=PARTY_ID_BYTES),
            points=expect_uint(fields[1], "payload.points"),
            deposit_kind=deposit_kind,
            quantity=quantity,
            activity_ref=expect_text(fields[4], "payload.activity_ref", MAX_ACTIVITY_REF_BYTES,
                                     min_bytes=MIN_ACTIVITY_REF_BYTES),
            category=expect_uint(fields[5], "payload.category", 0, SDG_GOALS),
        )


@dataclass(frozen=True, slots=True)
class Redeem:
    kind: ClassVar[TxKind] = TxKind.REDEEM
    voucher: Voucher
    points: int
    memo: str

    def to_wire(self) -> list:
        return [self.voucher.to_wire(), self.points, self.memo]

    @classmethod
    def from_wire(cls, value: object) -> "Redeem":
        fields = expect_array(value, 3, "payload")
        try:
            voucher = Voucher.from_wire(fields[0])
        except DecodeError as exc:
            raise exc.at("payload") from None
        return cls(voucher, expect_uint(fields[1], "payload.points"),
                   expect_text(fields[2], "payload.memo", MAX_MEMO_BYTES))


@dataclass(frozen=True, slots=True)
class Refund:
    kind: ClassVar[TxKind] = TxKind.REFUND
    redemption_id: bytes
    points: int
    memo: str

    def to_wire(self) -> list:
        return [self.redemption_id, self.points, self.memo]

    @classmethod
    def from_wire(cls, value: object) -> "Refund":
        fields = expect_array(value, 3, "payload")
        return cls(expect_bytes(fields[0], "payload.redemption_id", size=TX_ID_BYTES),
                   expect_uint(fields[1], "payload.points"),
                   expect_text(fields[2], "payload.memo", MAX_MEMO_BYTES))


@dataclass(frozen=True, slots=True)
class Reversal:
    kind: ClassVar[TxKind] = TxKind.REVERSAL
    deposit_id: bytes
    reason: str

    def to_wire(self) -> list:
        return [self.deposit_id, self.reason]

    @classmethod
    def from_wire(cls, value: object) -> "Reversal":
        fields = expect_array(value, 2, "payload")
        return cls(expect_bytes(fields[0], "payload.deposit_id", size=TX_ID_BYTES),
                   expect_text(fields[1], "payload.reason", MAX_REASON_BYTES, min_bytes=1))


@dataclass(frozen=True, slots=True)
class Governance:
    kind: ClassVar[TxKind] = TxKind.GOVERNANCE
    action: GovernanceAction
    role: Role             # CENTRE, PARTNER or NODE
    public_key: bytes
    name: str              # for ADMIT; "" for RETIRE
    address: str           # nodes being admitted only; else ""

    def to_wire(self) -> list:
        return [int(self.action), int(self.role), self.public_key, self.name, self.address]

    @classmethod
    def from_wire(cls, value: object) -> "Governance":
        fields = expect_array(value, 5, "payload")
        action = _enum(GovernanceAction, fields[0], "payload.action")
        role = _enum(Role, fields[1], "payload.role")
        if role == Role.ADMIN:
            raise DecodeError("governance admits or retires centres, partners and nodes", "payload.role")
        admit = action == GovernanceAction.ADMIT
        name = expect_text(fields[3], "payload.name", MAX_NAME_BYTES, min_bytes=1 if admit else 0)
        address = expect_text(fields[4], "payload.address", MAX_ADDRESS_BYTES)
        if not admit and name:
            raise DecodeError("a retirement carries no name", "payload.name")
        if not admit and address:
            raise DecodeError("a retirement carries no address", "payload.address")
        if admit and (role == Role.NODE) != bool(address):
            raise DecodeError("an admitted node needs an address; other roles have none", "payload.address")
        if admit and role == Role.NODE:
            expect_node_address(address, "payload.address")
        return cls(action, role, expect_bytes(fields[2], "payload.public_key", size=PUBLIC_KEY_BYTES),
                   name, address)


Payload = Union[Genesis, RegisterMember, Deposit, Redeem, Refund, Reversal, Governance]
PAYLOAD_TYPES: dict[TxKind, type] = {
    TxKind.GENESIS: Genesis, TxKind.REGISTER_MEMBER: RegisterMember, TxKind.DEPOSIT: Deposit,
    TxKind.REDEEM: Redeem, TxKind.REFUND: Refund, TxKind.REVERSAL: Reversal,
    TxKind.GOVERNANCE: Governance,
}
KINDS_WITH_APPROVALS = (TxKind.GENESIS, TxKind.GOVERNANCE)


# --- the transaction ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Approval:
    public_key: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class Tx:
    chain_id: bytes
    tx_id: bytes
    author: bytes                       # public key
    payload: Payload
    signature: bytes
    approvals: tuple[Approval, ...]
    raw: bytes                          # the canonical encoding, kept to hash without re-encoding
    signed: bytes = field(repr=False, compare=False)   # the signing bytes, cut from raw

    @property
    def kind(self) -> TxKind:
        return self.payload.kind

    @property
    def author_id(self) -> bytes:
        return keys.party_id(self.author)

    def signing_bytes(self) -> bytes:
        return self.signed

    def body_hash(self) -> bytes:
        """What 'the same transaction' means for idempotency: the signed content, not the signatures."""
        return hashlib.sha256(self.signing_bytes()).digest()

    def signers(self) -> list[bytes]:
        return [self.author] + [a.public_key for a in self.approvals]


def signing_bytes(chain_id: bytes, payload: Payload, tx_id: bytes, author: bytes) -> bytes:
    return encode([payload.kind.tag, chain_id, int(payload.kind), tx_id, author, payload.to_wire()])


# The signing bytes are a slice of the canonical encoding: ``raw`` is the fixarray-8 byte, the
# one-byte version, fields 1..5 (exactly the signed fields after the tag), the signature (a bin8
# of 64 bytes) and the approvals. So they are ``fixarray-6 + encode(tag) + raw[2:-tail]``, with
# no re-encoding of the payload on every check (tests/test_tx.py compares both ways).
assert TX_VERSION < 0x80, "the version must stay a one-byte fixint for the signing-bytes slice"
_SIGNATURE_FIELD_BYTES = 2 + SIGNATURE_BYTES
_SIGNING_PREFIX = {kind: b"\x96" + encode(kind.tag) for kind in TxKind}


def _signed_slice(raw: bytes, kind: TxKind, approvals_wire: list) -> bytes:
    tail = _SIGNATURE_FIELD_BYTES + (len(encode(approvals_wire)) if approvals_wire else 1)   # 0x90: []
    return _SIGNING_PREFIX[kind] + raw[2:len(raw) - tail]


def make_tx(author: keys.SigningKey, chain_id: bytes, tx_id: bytes, payload: Payload,
            approvers: tuple[keys.SigningKey, ...] = ()) -> Tx:
    """Builds and signs a transaction. Approvers co-sign genesis and governance transactions."""
    message = signing_bytes(chain_id, payload, tx_id, author.public_key)
    approvals = tuple(sorted(
        (Approval(k.public_key, k.sign(message)) for k in approvers if k.public_key != author.public_key),
        key=lambda a: a.public_key))
    wire = [TX_VERSION, chain_id, int(payload.kind), tx_id, author.public_key, payload.to_wire(),
            author.sign(message), [[a.public_key, a.signature] for a in approvals]]
    return decode_tx(encode(wire))


def decode_tx(raw: bytes, prechecked: bool = False) -> Tx:
    """Decodes and schema-checks a transaction; DecodeError(field=...) if anything is off.
    ``prechecked``: these bytes already passed ``check_tx`` elsewhere (an auditor's worker),
    so the canonical-form check is not repeated; the schema checks still run."""
    if len(raw) > MAX_TX_BYTES:
        raise DecodeError(f"transaction of {len(raw)} bytes, over the limit of {MAX_TX_BYTES}")
    value = decode_prechecked(raw) if prechecked else decode(raw, MAX_TX_BYTES)
    fields = expect_array(value, 8, "tx")
    expect_uint(fields[0], "version", TX_VERSION, TX_VERSION)
    kind = _enum(TxKind, fields[2], "kind")
    approvals = _decode_approvals(fields[7], kind, fields[4])
    raw = bytes(raw)
    return Tx(
        chain_id=expect_bytes(fields[1], "chain_id", size=CHAIN_ID_BYTES),
        tx_id=expect_bytes(fields[3], "tx_id", size=TX_ID_BYTES),
        author=expect_bytes(fields[4], "author", size=PUBLIC_KEY_BYTES),
        payload=PAYLOAD_TYPES[kind].from_wire(fields[5]),
        signature=expect_bytes(fields[6], "signature", size=SIGNATURE_BYTES),
        approvals=approvals,
        raw=raw,
        signed=_signed_slice(raw, kind, fields[7]),
    )


def _decode_approvals(value: object, kind: TxKind, author: object) -> tuple[Approval, ...]:
    items = expect_list(value, MAX_APPROVALS, "approvals")
    if not items:
        return ()
    if kind not in KINDS_WITH_APPROVALS:
        raise DecodeError("only genesis and governance transactions carry approvals", "approvals")
    approvals = []
    for i, item in enumerate(items):
        pair = expect_array(item, 2, f"approvals[{i}]")
        approvals.append(Approval(
            expect_bytes(pair[0], f"approvals[{i}].public_key", size=PUBLIC_KEY_BYTES),
            expect_bytes(pair[1], f"approvals[{i}].signature", size=SIGNATURE_BYTES)))
    signers = [a.public_key for a in approvals]
    if signers != sorted(set(signers)) or author in signers:
        raise DecodeError("approvals must be sorted by key, distinct, and not the author's", "approvals")
    return tuple(approvals)


# --- static check ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rejection:
    code: Code
    field: str
    detail: str

    def __str__(self) -> str:
        where = f" at {self.field}" if self.field else ""
        return f"{self.code.name} ({int(self.code)}){where}: {self.detail}"


class Rejected(Exception):
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection))
        self.rejection = rejection


def decode_or_reject(raw: bytes, prechecked: bool = False) -> Tx:
    """``decode_tx``, with a decoding failure raised as the MALFORMED rejection ``check_tx``
    gives for it (``prechecked`` as in ``decode_tx``)."""
    try:
        return decode_tx(raw, prechecked)
    except DecodeError as exc:
        raise Rejected(Rejection(Code.MALFORMED, exc.field, str(exc))) from None


def check_tx(raw: bytes, chain_id: bytes) -> Tx:
    """The static check: canonical decoding, chain id, every public key the transaction carries
    (``public_keys``) and every signature (the author's, each approval's, a redeemed voucher's).
    Raises Rejected with code MALFORMED, WRONG_CHAIN, INVALID_KEY or BAD_SIGNATURE; never any
    other exception for any input bytes."""
    tx = decode_or_reject(raw)
    if tx.kind == TxKind.GENESIS:
        raise Rejected(Rejection(Code.MALFORMED, "kind", "a genesis transaction only opens a chain"))
    check_signatures(tx, chain_id)
    return tx


_NON_GENESIS_KINDS = frozenset(int(kind) for kind in TxKind if kind != TxKind.GENESIS)


def signatures_hold(raw: bytes, chain_id: bytes) -> bool:
    """A quick accept for an auditor's workers, which check signatures and nothing else.

    True only if ``raw`` is a canonical encoding of an 8-field transaction for ``chain_id``,
    not a genesis transaction, whose author signature, approval signatures and (for a
    redemption) voucher signature all verify. Then ``check_tx(raw, chain_id)`` succeeds exactly
    when ``decode_tx(raw, prechecked=True)`` does, so the schema is left to whoever decodes the
    transaction anyway. False says nothing about why: run ``check_tx`` for the verdict. Never
    raises."""
    try:
        fields = decode(raw, MAX_TX_BYTES)
    except DecodeError:
        return False
    if type(fields) is not list or len(fields) != 8 or fields[0] != TX_VERSION or fields[1] != chain_id:
        return False
    kind, author, payload, signature, approvals = fields[2], fields[4], fields[5], fields[6], fields[7]
    if (type(kind) is not int or kind not in _NON_GENESIS_KINDS or type(author) is not bytes
            or type(signature) is not bytes or type(approvals) is not list):
        return False
    # A signature of the wrong size makes the slice wrong, and then it does not verify either.
    message = _signed_slice(raw, TxKind(kind), approvals)
    if not keys.verify(author, signature, message):
        return False
    for pair in approvals:
        if (type(pair) is not list or len(pair) != 2 or type(pair[0]) is not bytes
                or type(pair[1]) is not bytes or not keys.verify(pair[0], pair[1], message)):
            return False
    if kind == TxKind.REDEEM:
        return _voucher_signature_holds(payload, chain_id)
    # The keys a registration or a governance transaction brings into the ledger (the signers'
    # keys passed the key rule inside keys.verify above).
    if kind in (TxKind.REGISTER_MEMBER, TxKind.GOVERNANCE):
        position = 0 if kind == TxKind.REGISTER_MEMBER else 2
        return (type(payload) is list and len(payload) > position
                and keys.public_key_valid(payload[position]))
    return True


def _voucher_signature_holds(payload: object, chain_id: bytes) -> bool:
    voucher = payload[0] if type(payload) is list and payload else None
    if type(voucher) is not list or len(voucher) != 8 or voucher[1] != chain_id:
        return False
    member_key, signature = voucher[2], voucher[7]
    if type(member_key) is not bytes or type(signature) is not bytes:
        return False
    return keys.verify(member_key, signature, encode([VOUCHER_TAG, *voucher[1:7]]))


def public_keys(tx: Tx) -> list[tuple[str, bytes]]:
    """Every public key in ``tx`` as (field, key), in wire order: the author, those of the
    payload (each genesis party's, a registered member's, an admitted or retired party's, a
    redeemed voucher's member key), then each approval's."""
    found = [("author", tx.author)]
    payload = tx.payload
    if isinstance(payload, Genesis):
        for label in ("admins", "centres", "partners", "nodes"):
            found += [(f"payload.{label}[{i}].public_key", party.public_key)
                      for i, party in enumerate(getattr(payload, label))]
    elif isinstance(payload, RegisterMember):
        found.append(("payload.member_key", payload.member_key))
    elif isinstance(payload, Governance):
        found.append(("payload.public_key", payload.public_key))
    elif isinstance(payload, Redeem):
        found.append(("payload.voucher.member_key", payload.voucher.member_key))
    found += [(f"approvals[{i}].public_key", a.public_key) for i, a in enumerate(tx.approvals)]
    return found


def check_public_keys(tx: Tx) -> None:
    """Raises Rejected(INVALID_KEY) at the first key in ``tx`` that fails the key rule."""
    for field_name, public_key in public_keys(tx):
        problem = keys.key_problem(public_key)
        if problem is not None:
            raise Rejected(Rejection(Code.INVALID_KEY, field_name, problem))


def check_signatures(tx: Tx, chain_id: bytes) -> None:
    """Chain id, then every key (INVALID_KEY), then every signature (BAD_SIGNATURE); the
    order FORMAT.md ("The static check") gives."""
    if tx.chain_id != chain_id:
        raise Rejected(Rejection(Code.WRONG_CHAIN, "chain_id", "the transaction is for another chain"))
    check_public_keys(tx)
    message = tx.signing_bytes()
    if not keys.verify(tx.author, tx.signature, message):
        raise Rejected(Rejection(Code.BAD_SIGNATURE, "signature", "the author's signature does not verify"))
    for i, approval in enumerate(tx.approvals):
        if not keys.verify(approval.public_key, approval.signature, message):
            raise Rejected(Rejection(Code.BAD_SIGNATURE, f"approvals[{i}].signature",
                                     "an approval signature does not verify"))
    if isinstance(tx.payload, Redeem):
        voucher = tx.payload.voucher
        if voucher.chain_id != chain_id:
            raise Rejected(Rejection(Code.WRONG_CHAIN, "payload.voucher.chain_id",
                                     "the voucher is for another chain"))
        if not voucher.signature_valid():
            raise Rejected(Rejection(Code.BAD_SIGNATURE, "payload.voucher.signature",
                                     "the member's voucher signature does not verify"))
