"""A replica: one node's consensus core, ledger and finality, driven through one contract.

Owns the order in which a node does its work (docs/ARCHITECTURE.md, "The Ready contract"):

    1. persist the Ready's hard state and entries (one fsynced write);
    2. queue its messages for sending (the driver sends them only after this call returns);
    3. apply committed entries: each batch becomes the next block, which is stored together
       with the consensus index that produced it and this node's endorsement of it, in ONE
       store transaction — only then is the endorsement queued for the peers;
    4. advance the core.

The simulator and the node runtime both drive this same class; neither re-implements the
order. It does no network I/O and reads no clock: ticks and times are passed in. Its only
I/O is through the ledger store and the consensus storage it is given.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Callable

from ledger.block import BlockError, ExecutedBlock, claimed_height, decode_block
from ledger.certificate import Certificate, CertificateError, endorse
from ledger.encoding import DecodeError, decode, encode
from ledger.keys import SigningKey, party_id
from ledger.limits import MAX_BLOCK_TIME_SKEW_MS
from ledger.ledger import Ledger
from ledger.store import u64
from ledger.tx import Tx
from ledger.verify import node_set_in_force
from node.batch import VerifiedTxs, decode_batch, encode_batch
from node.codec import (
    MAX_BLOCKS_PER_RESPONSE,
    MAX_ENDORSEMENTS_PER_REQUEST,
    BlocksRequest,
    BlocksResponse,
    Endorsement,
    EndorsementRequest,
    NodeMessage,
)
from node.finality import Finality
from node.raft import AppendEntries, CatchUp, EntryKind, RaftConfig, RaftNode, Ready, ReadState, Role as RaftRole

# How many applied consensus entries stay in the log behind the compaction point, so a briefly
# lagging follower is served from the log rather than by catch-up.
LOG_RETENTION_ENTRIES = 256
# ... and at most this many bytes of them: entries are whole batches (up to max_batch_txs
# transactions), and 256 of those kept a copy of most of a young ledger (187 B/tx at 100k tx).
# The log is compacted on bytes once it holds twice this, so that this costs a write per
# LOG_RETENTION_BYTES of traffic, not per block. 1 MiB is about 5,000 transactions: a follower
# further behind catches up by certified blocks, which is as fast; 4 MiB cost 54 B/tx on disk
# in a 100,000-transaction ledger (2 x 4 MiB of log pages, plus their free pages).
LOG_RETENTION_BYTES = 1024 * 1024
# The log is compacted only once this many more entries can go, so that compaction costs one
# synced write per this many blocks rather than one per block.
COMPACTION_STEP_ENTRIES = 64
# Every this many ticks, a node re-asks peers for endorsements of heights still uncertified, and
# a node catching up repeats its block request.
RETRY_TICKS = 10
# A certificate completed by endorsements is written with the next block's transaction rather
# than in a synced transaction of its own (under load that saves one fsync per block); with no
# block to ride along, it is written once it has waited this many ticks, or once this many wait.
# One lost in a crash is collected again from endorsements (_restore_pending_certificates).
CERTIFICATE_SAVE_TICKS = 2
MAX_UNSAVED_CERTIFICATES = 64
# A catch-up response carries at most this many bytes of blocks: its install blocks the node's
# event loop, so 1 MiB (about 5,000 transactions, under a second) rather than more.
MAX_CATCH_UP_BYTES = 1024 * 1024
# A node catching up asks again for blocks only if this many ticks passed since it last asked
# (a lost request or peer); an answer still being verified must not be asked for twice.
CATCH_UP_RETRY_TICKS = 40
# A node catching up asks for the next blocks as soon as an answer arrives, before verifying and
# installing it, so that one answer is installed while the next is verified and a third
# travels; it stops asking ahead while this many answers have arrived and are not installed.
CATCH_UP_AHEAD_ANSWERS = 2

META_APPLIED = b"raft_applied"              # [index, term] of the last consensus entry applied
META_CERTIFIED = b"certified_through"       # uint
META_ENDORSED = b"endorsed:"                # + u64 height -> this node's signature
META_RAFT_AT = b"raft_at:"                  # + u64 height -> [index, term] that produced the block


@dataclass(slots=True)
class ReplicaOptions:
    election_tick: int = 10
    heartbeat_tick: int = 1
    max_append_entries: int = 64
    max_inflight_appends: int = 8
    max_uncommitted_entries: int = 1024
    can_vote: bool = True


@dataclass(slots=True)
class Outbox:
    """What the driver takes after each call: messages to send and blocks newly applied."""

    messages: list[NodeMessage] = field(default_factory=list)
    applied: list[ExecutedBlock] = field(default_factory=list)
    reads: list[ReadState] = field(default_factory=list)     # confirmed linearizable reads


class Replica:
    def __init__(self, node_key: SigningKey, ledger: Ledger, raft_storage, rng: random.Random,
                 options: ReplicaOptions | None = None, *, clock_ms: Callable[[], int]) -> None:
        """``clock_ms`` is this node's wall clock (ms since the Unix epoch), the only time the
        replica reads: it stamps nothing with it, but checks the time of every batch it is
        offered against it (``_batch_timely``)."""
        options = options or ReplicaOptions()
        self._clock_ms = clock_ms
        # Batches refused as untimely, and the last one's (batch time, our clock) — for the
        # runtime's log and status: a node that refuses many has a wrong clock, or its leader has.
        self.untimely_batches = 0
        self.last_untimely: tuple[int, int] | None = None
        self.key = node_key
        self.id = node_key.party_id.hex()
        self.ledger = ledger
        self.storage = raft_storage
        self.verified = VerifiedTxs(ledger.chain_id)
        # (index, bytes) of the entries this process applied that may still be in the log,
        # oldest first; after a restart only the entry bound applies until it refills.
        self._log_tail: deque[tuple[int, int]] = deque()
        self._log_tail_bytes = 0
        self.out = Outbox()
        self._ticks = 0
        self._unsaved_certificates: dict[int, bytes] = {}    # height -> certificate, not yet stored
        self._unsaved_since_tick = 0
        self._catch_up: CatchUp | None = None
        self._blocks_requested_tick = 0
        self._blocks_requested_from = 0       # first height of the newest BlocksRequest
        self._answers_ahead: deque[int] = deque()   # first heights of arrived answers that asked
                                                    # ahead, not yet installed
        node_keys = self._node_keys()
        if self.id not in node_keys:
            raise ValueError("this node's key is not an active node of the consortium")
        applied_index = self._restore_log_marker()
        certified = self.ledger.store.meta(META_CERTIFIED)
        self._stored_certified = decode(certified) if certified else 0     # durable, <= finality's
        self.finality = Finality(ledger.chain_id, ledger.height, self._stored_certified)
        self._restore_pending_certificates()
        config = RaftConfig(
            node_id=self.id, voters=tuple(sorted(node_keys)), election_tick=options.election_tick,
            heartbeat_tick=options.heartbeat_tick, max_append_entries=options.max_append_entries,
            max_inflight_appends=options.max_inflight_appends,
            max_uncommitted_entries=options.max_uncommitted_entries,
            entry_validator=self.verified.batch_valid, entry_timely=self._batch_timely,
            can_vote=options.can_vote)
        self.raft = RaftNode(config, raft_storage, rng, applied_index=applied_index)
        # Fault injection for the simulator: called with the name of each step of the Ready
        # contract just before it runs; it may raise to model a crash at that point.
        self.crash_point: Callable[[str], None] | None = None

    def _stamped(self, messages):
        """Appends carry the leader's clock, so a follower can tell a leader with a wrong clock
        before it offers anything (_time_ok); other messages go as they are."""
        now_ms = self._clock_ms()
        return [replace(m, leader_time_ms=now_ms) if isinstance(m, AppendEntries) else m for m in messages]

    def _time_ok(self, time_ms: int) -> bool:
        """A time (a batch's, or a leader's clock) within MAX_BLOCK_TIME_SKEW_MS of this node's
        clock; otherwise counted and remembered for the runtime's warning."""
        now_ms = self._clock_ms()
        if abs(time_ms - now_ms) <= MAX_BLOCK_TIME_SKEW_MS:
            return True
        self.untimely_batches += 1
        self.last_untimely = (time_ms, now_ms)
        return False

    def _batch_timely(self, data: bytes) -> bool:
        """A batch offered before it is committed may not be stamped more than
        MAX_BLOCK_TIME_SKEW_MS ahead of this node's clock (RaftConfig.entry_timely says what a
        refusal does). Behind is not refused here: a batch carried over from an earlier term may
        honestly be old (the consortium was down); a leader whose clock is behind is caught by
        the clock stamped on its appends (_time_ok in receive)."""
        time_ms, _ = decode_batch(data)                  # already checked by entry_validator
        now_ms = self._clock_ms()
        if time_ms - now_ms <= MAX_BLOCK_TIME_SKEW_MS:
            return True
        self.untimely_batches += 1
        self.last_untimely = (time_ms, now_ms)
        return False

    # --- inputs ------------------------------------------------------------------------------

    def tick(self) -> None:
        self._ticks += 1
        self.raft.tick()
        if self._ticks % RETRY_TICKS == 0:
            self._retry()
        if self._unsaved_certificates and self._ticks - self._unsaved_since_tick >= CERTIFICATE_SAVE_TICKS:
            self.save_certificates()
        self._drain()

    def receive(self, message: NodeMessage) -> None:
        """A message from a peer, already authenticated as coming from ``message.sender``."""
        if isinstance(message, Endorsement):
            self._on_endorsement(message)
        elif isinstance(message, EndorsementRequest):
            self._on_endorsement_request(message)
        elif isinstance(message, BlocksRequest):
            self._on_blocks_request(message)
        elif isinstance(message, BlocksResponse):
            self._on_blocks_response(message)
        else:
            if isinstance(message, AppendEntries) and not self._time_ok(message.leader_time_ms):
                self.raft.distrust_leader(message.term)
            self.raft.step(message)
        self._drain()

    def admit(self, raw: bytes) -> Tx:
        """The static check at admission (once per node); raises ledger.tx.Rejected."""
        return self.verified.check(raw)

    def propose(self, txs: list[Tx], time_ms: int) -> int:
        """Proposes admitted transactions as one batch; raises NotLeader / ProposalDropped."""
        index = self.raft.propose(encode_batch(time_ms, [tx.raw for tx in txs]))
        self._drain()
        return index

    def transfer_leadership(self, target: str) -> None:
        self.raft.transfer_leadership(target)
        self._drain()

    def read_index(self, context: int) -> None:
        """Asks the core to confirm leadership for a linearizable read (RaftNode.read_index);
        the confirmation comes out in ``out.reads``. Raises NotLeader / ProposalDropped."""
        self.raft.read_index(context)
        self._drain()

    def take(self) -> Outbox:
        out, self.out = self.out, Outbox()
        return out

    # --- observation -------------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.raft.role == RaftRole.LEADER

    @property
    def leader(self) -> str | None:
        return self.raft.leader

    @property
    def height(self) -> int:
        return self.ledger.height

    @property
    def certified_height(self) -> int:
        return self.finality.certified_through

    @property
    def catching_up(self) -> bool:
        return self._catch_up is not None

    def catch_up_progress(self) -> tuple[str, int, int] | None:
        """While catching up: (the node served from, the consensus index of the last block
        installed, the index the catch-up must reach); else None. Reads the store."""
        if self._catch_up is None:
            return None
        return self._catch_up.leader, self._meta_pair(META_APPLIED)[0], self._catch_up.index

    # --- the Ready contract ------------------------------------------------------------------

    def _drain(self) -> None:
        while (ready := self.raft.ready()) is not None:
            self._process(ready)

    def _process(self, ready: Ready) -> None:
        self._at("persist")
        self._persist(ready)                                   # 1. durable first
        self._at("send")
        self.out.messages.extend(self._stamped(ready.messages))   # 2. then (queued for) sending
        for entry in ready.committed:                          # 3. apply, durably with its index
            self._at("apply")
            self._apply(entry)
        self._at("advance")
        self.raft.advance(ready)                               # 4. acknowledge
        self.out.reads.extend(ready.read_states)
        if ready.catch_up is not None and self._catch_up is None:
            self._catch_up = ready.catch_up
            self._request_blocks()
        self._compact()

    def _persist(self, ready: Ready) -> None:
        if hasattr(self.storage, "persist"):
            self.storage.persist(ready.entries, ready.hard_state)
            return
        self.storage.append(ready.entries)
        if ready.hard_state is not None:
            self.storage.set_hard_state(ready.hard_state)

    def _apply(self, entry) -> None:
        applied = encode([entry.index, entry.term])
        if entry.kind != EntryKind.NORMAL:
            self._note_logged(entry)
            return
        time_ms, raws = decode_batch(entry.data)       # validated before it was appended
        txs = [self.verified.check(raw) for raw in raws]
        node_set = self._node_set()
        executed = self.ledger.build(txs, time_ms)
        header = executed.block.header
        height, block_hash = header.height, header.hash()
        signature = self._endorse(header)
        certified = self._certified_meta()
        self.ledger.commit(executed, meta={META_APPLIED: applied, META_RAFT_AT + u64(height): applied,
                                           META_ENDORSED + u64(height): signature, **certified},
                           certificates=self._unsaved_certificates)
        self._note_stored(certified)
        self._note_logged(entry)
        self.out.applied.append(executed)
        self._at("endorse")
        certificate = self.finality.applied(header, node_set, (self.key.public_key, signature))
        self._store_certificate(certificate)
        for peer in self._peers():
            self.out.messages.append(Endorsement(self.id, peer, height, block_hash, signature))

    def _note_logged(self, entry) -> None:
        """Counts an applied entry's bytes towards the log's byte bound (LOG_RETENTION_BYTES)."""
        self._log_tail.append((entry.index, len(entry.data)))
        self._log_tail_bytes += len(entry.data)

    def _endorse(self, header) -> bytes:
        """Signs a block's checkpoint before storing it. The guard: a height already endorsed
        is never endorsed again (the signature is written in the block's own transaction)."""
        previous = self.ledger.store.meta(META_ENDORSED + u64(header.height))
        assert previous is None, f"height {header.height} was already endorsed by this node"
        return endorse(self.key, header)

    def _at(self, step: str) -> None:
        if self.crash_point is not None:
            self.crash_point(step)

    # --- finality ----------------------------------------------------------------------------

    def _on_endorsement(self, message: Endorsement) -> None:
        signer = self._node_keys().get(message.sender)
        if signer is None:
            return
        certificate = self.finality.add(signer, message.height, message.block_hash, message.signature)
        self._store_certificate(certificate)

    def _store_certificate(self, certificate: Certificate | None) -> None:
        """Stages a completed certificate (see CERTIFICATE_SAVE_TICKS)."""
        if certificate is None:
            return
        if not self._unsaved_certificates:
            self._unsaved_since_tick = self._ticks
        self._unsaved_certificates[certificate.height] = certificate.encode()
        if len(self._unsaved_certificates) >= MAX_UNSAVED_CERTIFICATES:
            self.save_certificates()

    def save_certificates(self) -> None:
        """Writes the staged certificates and the certified height in one synced transaction."""
        if self._unsaved_certificates:
            meta = self._certified_meta()
            self.ledger.store.put_certificates(self._unsaved_certificates, meta)
            self._note_stored(meta)

    def certificate(self, height: int) -> bytes | None:
        """The certificate of ``height``, staged or stored; None if it has none yet."""
        return self._unsaved_certificates.get(height) or self.ledger.store.certificate(height)

    def _certified_meta(self) -> dict[bytes, bytes]:
        # Written only together with every staged certificate: each height up to the certified
        # one then has its certificate stored in the same transaction or before it.
        if not self._unsaved_certificates:
            return {}
        return {META_CERTIFIED: encode(self.finality.certified_through)}

    def _note_stored(self, meta: dict[bytes, bytes]) -> None:
        """After a write that carried every staged certificate (and ``meta``) returned: they are
        stored. Until then they stay staged, so a failed write (StoreFull) loses none."""
        self._unsaved_certificates.clear()
        if META_CERTIFIED in meta:
            self._stored_certified = decode(meta[META_CERTIFIED])

    def _on_endorsement_request(self, message: EndorsementRequest) -> None:
        last = min(self.height, message.from_height + min(message.count, MAX_ENDORSEMENTS_PER_REQUEST) - 1)
        for height in range(max(1, message.from_height), last + 1):
            signature = self.ledger.store.meta(META_ENDORSED + u64(height))
            block = self.ledger.store.block(height)
            if signature is not None and block is not None:
                block_hash = _block_hash(block)
                self.out.messages.append(Endorsement(self.id, message.sender, height, block_hash, signature))

    def _restore_pending_certificates(self) -> None:
        """After a restart: heights applied but not certified wait for endorsements again."""
        with self.ledger.store.reader() as reader:
            for height in range(self.finality.certified_through + 1, self.height + 1):
                if self.ledger.store.certificate(height) is not None:
                    self.finality.mark_certified(height)
                    continue
                signature = self.ledger.store.meta(META_ENDORSED + u64(height))
                header = decode_block(reader.block(height)).header
                own = (self.key.public_key, signature) if signature else None
                self._store_certificate(self.finality.applied(header, self._node_set(), own))

    # --- catch-up ----------------------------------------------------------------------------

    def _request_blocks(self, from_height: int | None = None) -> None:
        """Asks the leader for blocks from ``from_height``; by default from the next height to
        install, which also forgets the answers asked ahead of (a retry starts over)."""
        if self._catch_up is not None:
            if from_height is None:
                self._answers_ahead.clear()
            self._blocks_requested_tick = self._ticks
            self._blocks_requested_from = self.height + 1 if from_height is None else from_height
            self.out.messages.append(BlocksRequest(self.id, self._catch_up.leader, self._blocks_requested_from,
                                                   MAX_BLOCKS_PER_RESPONSE))

    def request_ahead(self, message: BlocksResponse, first_height: int | None) -> None:
        """Asks for the blocks after a catch-up answer that has arrived and is not installed yet,
        so that they travel while this one is verified and installed. ``first_height`` is the
        height the answer's first block claims (unchecked: it only decides what to ask for).
        Only the answer to the newest request moves the request on, once, and only while fewer
        than CATCH_UP_AHEAD_ANSWERS answers have arrived and are not installed. The runtime
        calls this on arrival; receiving the answer calls it too (then it does nothing new)."""
        if self._catch_up is None or message.raft_index >= self._catch_up.index or not message.blocks:
            return
        while self._answers_ahead and self._answers_ahead[0] <= self.height:
            self._answers_ahead.popleft()
        if first_height == self._blocks_requested_from and len(self._answers_ahead) < CATCH_UP_AHEAD_ANSWERS:
            self._answers_ahead.append(first_height)
            self._request_blocks(first_height + len(message.blocks))

    def _on_blocks_request(self, message: BlocksRequest) -> None:
        blocks, positions, size = [], [], 0
        last = min(self.finality.certified_through, message.from_height + message.max_blocks - 1)
        for height in range(message.from_height, last + 1):
            block, certificate = self.ledger.store.block(height), self.certificate(height)
            position = self._meta_pair(META_RAFT_AT + u64(height))
            if block is None or certificate is None or position[0] == 0 \
                    or (blocks and size + len(block) > MAX_CATCH_UP_BYTES):
                break           # (the first block goes even if larger: else a big block stalls catch-up)
            blocks.append((block, certificate))
            positions.append(position)
            size += len(block) + len(certificate)
        if not blocks:
            return
        index, term = positions[-1]
        self.out.messages.append(BlocksResponse(self.id, message.sender, tuple(blocks), index, term,
                                                tuple(positions)))

    def _on_blocks_response(self, message: BlocksResponse) -> None:
        """Verifies and stores certified blocks; once past the notice's index, resumes Raft."""
        if self._catch_up is None:
            return
        self.request_ahead(message, claimed_height(message.blocks[0][0]) if message.blocks else None)
        for (block, certificate), position in zip(message.blocks, message.positions):
            if not self._install(block, certificate, position):
                return
        if message.raft_index >= self._catch_up.index:
            self.storage.restore(message.raft_index, message.raft_term)
            self.raft.restore(message.raft_index, message.raft_term)
            self._catch_up = None
        elif self._blocks_requested_from <= self.height:     # nothing asked for past what we hold
            self._request_blocks()

    def _install(self, block: bytes, certificate_raw: bytes, position: tuple[int, int]) -> bool:
        """Stores one certified block with the consensus position of the entry that produced it
        (so after a crash here the log restarts right after it: see ``_restore_log_marker``)."""
        node_set = self._node_set()
        try:
            executed = self.ledger.replay(block, check=self.verified.check)
        except BlockError:
            return False      # not the next block, or invalid: ignore this response
        height = executed.block.header.height
        try:
            Certificate.decode(certificate_raw).verify(executed.block.header, node_set)
        except (DecodeError, CertificateError):
            return False
        applied = encode(list(position))
        # The block comes with its certificate: the certified height it makes goes in the same
        # transaction, with any staged certificates of lower heights. Finality counts the height
        # only once that transaction is stored (a failed write must not leave it counted).
        through = self.finality.certified_through
        certified = {META_CERTIFIED: encode(height if through == height - 1 else through)}
        self.ledger.commit(executed, certificate_raw, meta={META_RAFT_AT + u64(height): applied,
                                                           META_APPLIED: applied, **certified},
                           certificates=self._unsaved_certificates)
        self.finality.mark_certified(height)
        self._note_stored(certified)
        self.out.applied.append(executed)
        return True

    # --- housekeeping ------------------------------------------------------------------------

    def _retry(self) -> None:
        if self._catch_up is not None and self._ticks - self._blocks_requested_tick >= CATCH_UP_RETRY_TICKS:
            self._request_blocks()
        uncertified = self.finality.uncertified()
        if uncertified:
            count = min(len(uncertified), MAX_ENDORSEMENTS_PER_REQUEST)
            for peer in self._peers():
                self.out.messages.append(EndorsementRequest(self.id, peer, uncertified[0], count))

    def _compact(self) -> None:
        """Drops consensus entries that produced certified blocks, keeping a tail. Only blocks
        whose certificates are stored count: a staged one may be lost in a crash.

        Only entries the log holds and this node applied from it may go (the storage contract).
        Blocks installed by catch-up come from beyond the log's end until the catch-up restores
        the log past them, so a node catching up, or one whose certified blocks lie beyond its
        log, compacts nothing: a compaction point computed from them once raised
        ``IndexError: compact at N beyond last index M`` on every Ready, and a wiped node never
        caught up (issue 16, defect 3)."""
        certified = self._stored_certified
        if certified == 0 or self._catch_up is not None:
            return
        certified_index = self._meta_pair(META_RAFT_AT + u64(certified))[0]
        if certified_index > self.storage.last_index():
            return
        first = self.storage.first_index()
        by_bytes = self._over_byte_budget(first, certified_index)
        index = max(certified_index - LOG_RETENTION_ENTRIES, by_bytes or 0)
        if index >= first + COMPACTION_STEP_ENTRIES or (by_bytes and index >= first):   # amortised
            self.storage.compact(index)

    def _over_byte_budget(self, first: int, certified_index: int) -> int | None:
        """Once the applied entries still logged hold over twice LOG_RETENTION_BYTES: the last
        certified index to drop so that at most LOG_RETENTION_BYTES stay. Else None."""
        tail = self._log_tail
        while tail and tail[0][0] < first:               # compacted already
            self._log_tail_bytes -= tail.popleft()[1]
        if self._log_tail_bytes <= 2 * LOG_RETENTION_BYTES:
            return None
        kept, index = self._log_tail_bytes, None
        for entry_index, size in tail:
            if entry_index > certified_index or kept <= LOG_RETENTION_BYTES:
                break
            kept -= size
            index = entry_index
        return index

    def _peers(self) -> list[str]:
        return [node for node in sorted(self._node_keys()) if node != self.id]

    def _node_set(self) -> frozenset[bytes]:
        """Public keys of the node set in force for the next block (active nodes at the head)."""
        with self.ledger.store.reader() as reader:
            return node_set_in_force(reader)

    def _node_keys(self) -> dict[str, bytes]:
        return {party_id(key).hex(): key for key in self._node_set()}

    def _restore_log_marker(self) -> int:
        """The consensus index applied to the ledger. A node that crashed while catching up
        holds blocks installed by catch-up past the end of its consensus log; each was stored
        with the exact (index, term) of the entry that produced it, so the log is restarted
        right after the last of them, as the end of the catch-up would have done. (Restarting
        it any lower could re-apply an entry whose block the node already holds.)"""
        index, term = self._meta_pair(META_APPLIED)
        if index > self.storage.last_index():
            self.storage.restore(index, term)
        return index

    def _meta_pair(self, key: bytes) -> tuple[int, int]:
        raw = self.ledger.store.meta(key)
        return (0, 0) if raw is None else tuple(decode(raw))


def _block_hash(raw: bytes) -> bytes:
    return decode_block(raw).hash
