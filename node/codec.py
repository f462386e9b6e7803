"""Wire codec for node-to-node messages: Raft messages and block endorsements.

Owns the canonical encoding (ledger.encoding) of every consensus message, and strict decoding
of what arrives from the network: any size, type or range problem raises ``CodecError`` and
nothing else. Decoding never trusts the sender field; the transport checks it against the
authenticated TLS identity.

    message      = [type:uint, sender:str, recipient:str, term:uint, ...fields by type]
    append       = [3, sender, recipient, term, prev_index, prev_term, [entry...], leader_commit,
                    leader_time_ms:uint (the leader's clock; 0 = not stamped), read_round:uint]
    answer       = [4, sender, recipient, term, success, match_index, rejected_index, reject_hint,
                    read_round:uint (echoed)]
    entry        = [index:uint, term:uint, kind:uint (0 noop, 1 normal), data:bin]
    endorsement  = [10, sender, recipient, 0, height:uint, block_hash:bin32, signature:bin64]
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.encoding import (
    DecodeError,
    decode,
    encode,
    expect_array,
    expect_bool,
    expect_bytes,
    expect_list,
    expect_text,
    expect_uint,
)
from ledger.limits import MAX_TIME_MS
from node.raft.entry import Entry, EntryKind
from node.raft.messages import (
    AppendEntries,
    AppendResponse,
    CatchUpNotice,
    Message,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
MAX_ENTRIES_PER_MESSAGE = 4096
NODE_ID_CHARS = 40
_KINDS = {EntryKind.NOOP: 0, EntryKind.NORMAL: 1}
_KIND_OF = {v: k for k, v in _KINDS.items()}


class CodecError(ValueError):
    """A message from the network that is not a valid consensus message."""


@dataclass(frozen=True, slots=True)
class Endorsement:
    """A node's signature over (chain id, height, block hash): its share of a certificate."""

    sender: str
    recipient: str
    height: int
    block_hash: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class EndorsementRequest:
    """Asks a peer to (re)send its endorsements for ``count`` heights from ``from_height``."""

    sender: str
    recipient: str
    from_height: int
    count: int


@dataclass(frozen=True, slots=True)
class BlocksRequest:
    """Catch-up: asks for certified blocks from ``from_height``."""

    sender: str
    recipient: str
    from_height: int
    max_blocks: int


@dataclass(frozen=True, slots=True)
class BlocksResponse:
    """Certified blocks in order, each with the consensus (index, term) whose entry produced it;
    ``raft_index``/``raft_term`` are the last block's. A node that installs a block records its
    exact position, so that it never re-applies an entry whose block it already holds, and can
    answer others' catch-up with exact positions in turn."""

    sender: str
    recipient: str
    blocks: tuple[tuple[bytes, bytes], ...]      # (encoded block, encoded certificate)
    raft_index: int
    raft_term: int
    positions: tuple[tuple[int, int], ...] = ()  # (index, term) per block


NodeMessage = Message | Endorsement | EndorsementRequest | BlocksRequest | BlocksResponse
MAX_BLOCKS_PER_RESPONSE = 64
MAX_ENDORSEMENTS_PER_REQUEST = 64

_TYPES: dict[type, int] = {VoteRequest: 1, VoteResponse: 2, AppendEntries: 3, AppendResponse: 4,
                           TimeoutNow: 5, CatchUpNotice: 6, Endorsement: 10, EndorsementRequest: 11,
                           BlocksRequest: 12, BlocksResponse: 13}
_UNTERMED = (Endorsement, EndorsementRequest, BlocksRequest, BlocksResponse)


def _entry_wire(entry: Entry) -> list:
    return [entry.index, entry.term, _KINDS[entry.kind], entry.data]


def _fields(message: NodeMessage) -> list:
    if isinstance(message, VoteRequest):
        return [message.last_index, message.last_term, message.pre_vote, message.leader_transfer]
    if isinstance(message, VoteResponse):
        return [message.granted, message.pre_vote]
    if isinstance(message, AppendEntries):
        return [message.prev_index, message.prev_term, [_entry_wire(e) for e in message.entries],
                message.leader_commit, message.leader_time_ms, message.read_round]
    if isinstance(message, AppendResponse):
        return [message.success, message.match_index, message.rejected_index, message.reject_hint,
                message.read_round]
    if isinstance(message, TimeoutNow):
        return []
    if isinstance(message, CatchUpNotice):
        return [message.index, message.index_term]
    if isinstance(message, EndorsementRequest):
        return [message.from_height, message.count]
    if isinstance(message, BlocksRequest):
        return [message.from_height, message.max_blocks]
    if isinstance(message, BlocksResponse):
        return [[[b, c, i, t] for (b, c), (i, t) in zip(message.blocks, message.positions, strict=True)],
                message.raft_index, message.raft_term]
    return [message.height, message.block_hash, message.signature]


def encode_message(message: NodeMessage) -> bytes:
    term = 0 if isinstance(message, _UNTERMED) else message.term
    return encode([_TYPES[type(message)], message.sender, message.recipient, term] + _fields(message))


def decode_message(raw: bytes) -> NodeMessage:
    """Strictly decodes one message; CodecError for anything malformed."""
    try:
        value = decode(raw, MAX_MESSAGE_BYTES)
        if not isinstance(value, list) or len(value) < 4:
            raise DecodeError("a message is an array of at least 4 fields", "message")
        kind = expect_uint(value[0], "message.type")
        decoder = _DECODERS.get(kind)
        if decoder is None:
            raise DecodeError(f"unknown message type {kind}", "message.type")
        sender = _node_id(value[1], "message.sender")
        recipient = _node_id(value[2], "message.recipient")
        term = expect_uint(value[3], "message.term")
        return decoder(sender, recipient, term, value[4:])
    except DecodeError as exc:
        raise CodecError(f"{exc.field}: {exc}" if exc.field else str(exc)) from None


def _node_id(value: object, field: str) -> str:
    text = expect_text(value, field, NODE_ID_CHARS, NODE_ID_CHARS)
    if any(ch not in "0123456789abcdef" for ch in text):
        raise DecodeError("a node id is 40 lowercase hex digits", field)
    return text


def _exact(fields: list, count: int) -> list:
    if len(fields) != count:
        raise DecodeError(f"expected {count} fields after the header, found {len(fields)}", "message")
    return fields


def _vote_request(sender: str, recipient: str, term: int, f: list) -> VoteRequest:
    f = _exact(f, 4)
    return VoteRequest(sender, recipient, term, expect_uint(f[0], "last_index"), expect_uint(f[1], "last_term"),
                       expect_bool(f[2], "pre_vote"), expect_bool(f[3], "leader_transfer"))


def _vote_response(sender: str, recipient: str, term: int, f: list) -> VoteResponse:
    f = _exact(f, 2)
    return VoteResponse(sender, recipient, term, expect_bool(f[0], "granted"), expect_bool(f[1], "pre_vote"))


def _append_entries(sender: str, recipient: str, term: int, f: list) -> AppendEntries:
    f = _exact(f, 6)
    prev_index = expect_uint(f[0], "prev_index")
    items = expect_list(f[2], MAX_ENTRIES_PER_MESSAGE, "entries")
    entries = []
    for i, item in enumerate(items):
        e = expect_array(item, 4, f"entries[{i}]")
        index = expect_uint(e[0], f"entries[{i}].index")
        if index != prev_index + 1 + i:
            raise DecodeError("entries must be contiguous after prev_index", f"entries[{i}].index")
        kind = _KIND_OF.get(expect_uint(e[2], f"entries[{i}].kind"))
        if kind is None:
            raise DecodeError("unknown entry kind", f"entries[{i}].kind")
        entries.append(Entry(index, expect_uint(e[1], f"entries[{i}].term"), kind,
                             expect_bytes(e[3], f"entries[{i}].data", max_size=MAX_MESSAGE_BYTES)))
    return AppendEntries(sender, recipient, term, prev_index, expect_uint(f[1], "prev_term"),
                         tuple(entries), expect_uint(f[3], "leader_commit"),
                         expect_uint(f[4], "leader_time_ms", 0, MAX_TIME_MS), expect_uint(f[5], "read_round"))


def _append_response(sender: str, recipient: str, term: int, f: list) -> AppendResponse:
    f = _exact(f, 5)
    return AppendResponse(sender, recipient, term, expect_bool(f[0], "success"), expect_uint(f[1], "match_index"),
                          expect_uint(f[2], "rejected_index"), expect_uint(f[3], "reject_hint"),
                          expect_uint(f[4], "read_round"))


def _timeout_now(sender: str, recipient: str, term: int, f: list) -> TimeoutNow:
    _exact(f, 0)
    return TimeoutNow(sender, recipient, term)


def _catch_up_notice(sender: str, recipient: str, term: int, f: list) -> CatchUpNotice:
    f = _exact(f, 2)
    return CatchUpNotice(sender, recipient, term, expect_uint(f[0], "index"), expect_uint(f[1], "index_term"))


def _endorsement(sender: str, recipient: str, _term: int, f: list) -> Endorsement:
    f = _exact(f, 3)
    return Endorsement(sender, recipient, expect_uint(f[0], "height"),
                       expect_bytes(f[1], "block_hash", size=32), expect_bytes(f[2], "signature", size=64))


def _endorsement_request(sender: str, recipient: str, _term: int, f: list) -> EndorsementRequest:
    f = _exact(f, 2)
    return EndorsementRequest(sender, recipient, expect_uint(f[0], "from_height"),
                              expect_uint(f[1], "count", 1, MAX_ENDORSEMENTS_PER_REQUEST))


def _blocks_request(sender: str, recipient: str, _term: int, f: list) -> BlocksRequest:
    f = _exact(f, 2)
    return BlocksRequest(sender, recipient, expect_uint(f[0], "from_height", 1),
                         expect_uint(f[1], "max_blocks", 1, MAX_BLOCKS_PER_RESPONSE))


def _blocks_response(sender: str, recipient: str, _term: int, f: list) -> BlocksResponse:
    f = _exact(f, 3)
    items = expect_list(f[0], MAX_BLOCKS_PER_RESPONSE, "blocks")
    blocks, positions = [], []
    for i, item in enumerate(items):
        fields = expect_array(item, 4, f"blocks[{i}]")
        blocks.append((expect_bytes(fields[0], f"blocks[{i}].block", max_size=MAX_MESSAGE_BYTES),
                       expect_bytes(fields[1], f"blocks[{i}].certificate", max_size=MAX_MESSAGE_BYTES)))
        positions.append((expect_uint(fields[2], f"blocks[{i}].raft_index"),
                          expect_uint(fields[3], f"blocks[{i}].raft_term")))
    index, term = expect_uint(f[1], "raft_index"), expect_uint(f[2], "raft_term")
    if any(b[0] >= a[0] or b[1] > a[1] for a, b in zip(positions[1:], positions)) \
            or (positions and positions[-1] != (index, term)):
        raise CodecError("blocks' consensus positions must increase and end at raft_index/raft_term")
    return BlocksResponse(sender, recipient, tuple(blocks), index, term, tuple(positions))


_DECODERS = {1: _vote_request, 2: _vote_response, 3: _append_entries, 4: _append_response,
             5: _timeout_now, 6: _catch_up_notice, 10: _endorsement, 11: _endorsement_request,
             12: _blocks_request, 13: _blocks_response}
