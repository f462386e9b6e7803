"""The ledger state: its key layout, typed records, and the working overlay of one block.

Owns how state is laid out as (key, value) pairs (docs/FORMAT.md "State"), the typed
records the rules read and write, and ``Overlay``: the in-memory layer in which a block is
executed over a read-only base (an LMDB read transaction, or the verifier's dicts).

Keys start with one table byte:

    0x01 party       party_id                 -> [role, public_key, active, name, address]
    0x02 member      member_id                -> [member_key, registering centre_id]
    0x03 bucket      member_id || centre_id   -> points            (absent when zero)
    0x04 voucher     member_id || nonce       -> redemption tx_id  (used voucher nonces)
    0x05 deposit     tx_id                    -> [member_id, centre_id, points, reversed]
    0x06 redemption  tx_id                    -> [partner_id, member_id, points, refunded,
                                                  [[centre_id, points], ...] drawn]
    0x07 consortium  (empty)                  -> [name, threshold]

Values are canonical encodings. The transaction index (tx_id -> where and with what result
each transaction was recorded) is not part of this state: it is an index of the Merkle log,
which the header commits to separately.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

from ledger.commitment import StateCommitment
from ledger.encoding import decode, decode_uint, encode, expect_array, expect_uint
from ledger.tx import Role

PARTY = b"\x01"
MEMBER = b"\x02"
BUCKET = b"\x03"
VOUCHER = b"\x04"
DEPOSIT = b"\x05"
REDEMPTION = b"\x06"
CONSORTIUM = b"\x07"
BUCKET_PREFIX_BYTES = 21          # the bucket table byte and a member id: one member's buckets
DECODED_RECORD_CACHE_ENTRIES = 16_384   # party and member values kept decoded (read per transaction)


@dataclass(frozen=True, slots=True)
class TxRecord:
    """Where a transaction was recorded and its result; the idempotency index."""

    height: int
    index: int          # position in its block
    leaf_index: int     # position in the ledger-wide Merkle log
    body_hash: bytes
    code: int

    @property
    def location(self) -> tuple[int, int]:
        """(height, index): what a node's store keeps. The leaf index, the result code and the
        body hash follow from the block entry at that place, so they are not stored again."""
        return self.height, self.index

    def stored_bytes(self) -> bytes:
        return encode(list(self.location))

    @staticmethod
    def location_of(data: bytes) -> tuple[int, int]:
        """The location in ``stored_bytes``; DecodeError if they are not one."""
        fields = expect_array(decode(data), 2, "txs")
        return expect_uint(fields[0], "txs[0]"), expect_uint(fields[1], "txs[1]")


class StateReader(Protocol):
    """Read access to committed state. Implementations: the LMDB store, the verifier's dicts."""

    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes) -> Iterable[tuple[bytes, bytes]]:
        """All (key, value) with the prefix, in ascending key order."""
        ...

    def tx_record(self, tx_id: bytes) -> TxRecord | None: ...


@dataclass(frozen=True, slots=True)
class Party:
    role: Role
    public_key: bytes
    active: bool
    name: str
    address: str


@dataclass(frozen=True, slots=True)
class Member:
    member_key: bytes
    centre_id: bytes


@dataclass(frozen=True, slots=True)
class DepositRecord:
    member_id: bytes
    centre_id: bytes
    points: int
    reversed: bool


@dataclass(frozen=True, slots=True)
class RedemptionRecord:
    partner_id: bytes
    member_id: bytes
    points: int
    refunded: int
    drawn: tuple[tuple[bytes, int], ...]   # (centre_id, points) in the order drawn

    def refunded_split(self) -> list[tuple[bytes, int]]:
        """Per centre, how much of this redemption has been refunded. Refunds return the
        last-drawn points first, so the split follows from (drawn, refunded) alone."""
        remaining = self.refunded
        split = []
        for centre_id, taken in reversed(self.drawn):
            back = min(taken, remaining)
            if back:
                split.append((centre_id, back))
            remaining -= back
        return split


@dataclass(frozen=True, slots=True)
class Consortium:
    name: str
    threshold: int


class Overlay:
    """Writes of the block being executed, over a read-only base.

    Reads see earlier writes of the same block. ``changes()`` gives, per key, the base
    value and the final value, which is what the store persists and the commitment absorbs."""

    def __init__(self, base: StateReader) -> None:
        self._base = base
        self._writes: dict[bytes, bytes | None] = {}
        self._before: dict[bytes, bytes | None] = {}
        self._buckets_written: dict[bytes, set[bytes]] = {}   # member prefix -> bucket keys written
        self._records: dict[bytes, TxRecord] = {}
        self._changes: list[tuple[bytes, bytes | None, bytes | None]] | None = None

    # raw access
    def get(self, key: bytes) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._base.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        if key not in self._before:
            self._before[key] = self._base.get(key)
            if key[:1] == BUCKET:
                self._buckets_written.setdefault(key[:BUCKET_PREFIX_BYTES], set()).add(key)
        self._writes[key] = value
        self._changes = None

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        merged = {k: v for k, v in self._base.scan(prefix)}
        if len(prefix) == BUCKET_PREFIX_BYTES and prefix[:1] == BUCKET:
            written: Iterable[bytes] = self._buckets_written.get(prefix, ())   # one member's buckets
        else:
            written = (k for k in self._writes if k.startswith(prefix))
        merged.update((k, self._writes[k]) for k in written)
        for key in sorted(merged):
            if merged[key] is not None:
                yield key, merged[key]

    def tx_record(self, tx_id: bytes) -> TxRecord | None:
        return self._records.get(tx_id) or self._base.tx_record(tx_id)

    def put_tx_record(self, tx_id: bytes, record: TxRecord) -> None:
        self._records[tx_id] = record

    def tx_records(self) -> dict[bytes, TxRecord]:
        return dict(self._records)

    def changes(self) -> list[tuple[bytes, bytes | None, bytes | None]]:
        """(key, value before the block, value after), in the order the keys were first written
        (deterministic, but not sorted: nobody that needs an order may rely on this one);
        unchanged keys omitted. Needs no base access, so it stays valid after the base's read
        transaction ends. Computed once per set of writes (the commitment, the store and the
        verifier's state each ask); callers must not change the list."""
        if self._changes is None:
            before = self._before
            self._changes = [(key, before[key], new) for key, new in self._writes.items()
                             if before[key] != new]
        return self._changes

    def apply_to(self, commitment: StateCommitment) -> None:
        commitment.apply_changes(self.changes())

    # typed records
    def party(self, party_id: bytes) -> Party | None:
        raw = self.get(PARTY + party_id)
        return None if raw is None else _party_of(raw)

    def put_party(self, party_id: bytes, party: Party) -> None:
        self.put(PARTY + party_id, encode([int(party.role), party.public_key, party.active,
                                           party.name, party.address]))

    def active_parties(self, role: Role) -> list[tuple[bytes, Party]]:
        found = []
        for key, _ in self.scan(PARTY):
            party = self.party(key[1:])
            if party is not None and party.active and party.role == role:
                found.append((key[1:], party))
        return found

    def member(self, member_id: bytes) -> Member | None:
        raw = self.get(MEMBER + member_id)
        return None if raw is None else _member_of(raw)

    def put_member(self, member_id: bytes, member: Member) -> None:
        self.put(MEMBER + member_id, encode([member.member_key, member.centre_id]))

    def buckets(self, member_id: bytes) -> list[tuple[bytes, int]]:
        """(centre_id, points) of every non-empty bucket, ascending by centre id."""
        prefix = BUCKET + member_id
        return [(key[BUCKET_PREFIX_BYTES:], decode_uint(value)) for key, value in self.scan(prefix)]

    def bucket(self, member_id: bytes, centre_id: bytes) -> int:
        raw = self.get(BUCKET + member_id + centre_id)
        return 0 if raw is None else decode_uint(raw)

    def set_bucket(self, member_id: bytes, centre_id: bytes, points: int) -> None:
        self.put(BUCKET + member_id + centre_id, encode(points) if points else None)

    def voucher_used(self, member_id: bytes, nonce: bytes) -> bool:
        return self.get(VOUCHER + member_id + nonce) is not None

    def mark_voucher_used(self, member_id: bytes, nonce: bytes, redemption_id: bytes) -> None:
        self.put(VOUCHER + member_id + nonce, encode(redemption_id))

    def deposit(self, tx_id: bytes) -> DepositRecord | None:
        raw = self.get(DEPOSIT + tx_id)
        return None if raw is None else DepositRecord(*decode(raw))

    def put_deposit(self, tx_id: bytes, record: DepositRecord) -> None:
        self.put(DEPOSIT + tx_id, encode([record.member_id, record.centre_id, record.points,
                                          record.reversed]))

    def redemption(self, tx_id: bytes) -> RedemptionRecord | None:
        raw = self.get(REDEMPTION + tx_id)
        if raw is None:
            return None
        partner_id, member_id, points, refunded, drawn = decode(raw)
        return RedemptionRecord(partner_id, member_id, points, refunded,
                                tuple((c, p) for c, p in drawn))

    def put_redemption(self, tx_id: bytes, record: RedemptionRecord) -> None:
        self.put(REDEMPTION + tx_id, encode([record.partner_id, record.member_id, record.points,
                                             record.refunded, [[c, p] for c, p in record.drawn]]))

    def consortium(self) -> Consortium:
        name, threshold = decode(self.get(CONSORTIUM))
        return Consortium(name, threshold)

    def put_consortium(self, consortium: Consortium) -> None:
        self.put(CONSORTIUM, encode([consortium.name, consortium.threshold]))


# Every transaction reads its author's party record and most read a member record; these
# values rarely change, and decoding them again each time was a tenth of the replay. The
# caches are keyed by the value bytes themselves, so a changed record is simply another key.
@functools.lru_cache(maxsize=DECODED_RECORD_CACHE_ENTRIES)
def _party_of(raw: bytes) -> Party:
    role, public_key, active, name, address = decode(raw)
    return Party(Role(role), public_key, active, name, address)


@functools.lru_cache(maxsize=DECODED_RECORD_CACHE_ENTRIES)
def _member_of(raw: bytes) -> Member:
    member_key, centre_id = decode(raw)
    return Member(member_key, centre_id)


class MemoryState:
    """A dict-backed StateReader holding a whole state; the offline verifier's store.

    Scans are served from an index of the two prefixes the rules scan (the party table,
    and one member's buckets), so replaying a long chain stays linear."""

    def __init__(self) -> None:
        self.entries: dict[bytes, bytes] = {}
        self.records: dict[bytes, TxRecord] = {}
        self._groups: dict[bytes, set[bytes]] = {}    # scanned prefix -> its keys

    @staticmethod
    def _group(key: bytes) -> bytes | None:
        """The scanned prefix ``key`` belongs to; None for tables the rules never scan (most
        writes: deposits, redemptions, vouchers), which are then not indexed at all."""
        table = key[:1]
        if table == BUCKET:
            return key[:BUCKET_PREFIX_BYTES]
        return table if table == PARTY else None

    @classmethod
    def _is_group(cls, prefix: bytes) -> bool:
        """Whether ``prefix`` is exactly one indexed group (the party table, or one member's
        buckets — not the whole bucket table)."""
        return cls._group(prefix) == prefix and (prefix[:1] != BUCKET or len(prefix) == BUCKET_PREFIX_BYTES)

    def get(self, key: bytes) -> bytes | None:
        return self.entries.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        if self._is_group(prefix):
            keys: Iterable[bytes] = self._groups.get(prefix, ())
        else:
            keys = (k for k in self.entries if k.startswith(prefix))
        for key in sorted(keys):
            yield key, self.entries[key]

    def tx_record(self, tx_id: bytes) -> TxRecord | None:
        return self.records.get(tx_id)

    def absorb(self, overlay: Overlay) -> None:
        entries, groups = self.entries, self._groups
        for key, _, new in overlay.changes():
            prefix = self._group(key)
            if new is None:
                entries.pop(key, None)
                if prefix is not None:
                    groups.get(prefix, set()).discard(key)
            else:
                entries[key] = new
                if prefix is not None:
                    groups.setdefault(prefix, set()).add(key)
        self.records.update(overlay.tx_records())
