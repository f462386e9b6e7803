"""The node runtime: one asyncio event loop that drives a Replica over gRPC and LMDB.

Owns the node process's moving parts: the tick timer (monotonic clock), the leader's batcher
(submissions gathered into one proposal, bounded in size and wait), the waiters of pending
submissions, routing the replica's outbox to peer links, and start/stop. Every call into the
Replica happens on the loop's thread, so the replica needs no locks. The replica persists
before its messages are handed to the links (see node.replica).

What a submission is checked for, and charged, before it is queued is node.admission's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ledger.block import claimed_height
from ledger.codes import Code
from ledger.keys import read_key_file
from ledger.limits import MAX_BLOCK_TIME_SKEW_MS
from ledger.ledger import Ledger
from ledger.store import Store
from ledger.tx import Tx
from ledger.verify import check_store
from node.admission import Admission, Answered, Throttled
from node.batch import precheck_blocks
from node.call_policy import CallPolicyInterceptor, ListedClients, NodeView
from node.codec import BlocksResponse
from node.config import NodeConfig
from node.durability import STORAGE_ERRORS, StorageFailed, StorageGuard
from node.peers import PeerLink
from node.raft import NotLeader, ProposalDropped
from node.raft_lmdb import LmdbRaftStorage
from node.replica import Replica, ReplicaOptions
from node.wire import consensus_pb2, consensus_pb2_grpc, ledger_pb2

log = logging.getLogger("nanum.node")


# Group commit: at most this many of the leader's batches are in flight (proposed, not yet
# committed) before new submissions wait for one to commit; a waiting batch is proposed at the
# latest after GROUP_COMMIT_MAX_WAIT_MS (a leader that lost its quorum must not hold it forever).
MAX_BATCHES_IN_FLIGHT = 1
GROUP_COMMIT_MAX_WAIT_MS = 100
# A leader that is stopped waits at most this long for a peer to take over.
HANDOVER_TIMEOUT_MS = 2_000
# A confirmed linearizable read waits for the node to apply through its read index (usually at
# once: the leader committed it) by polling this often: the entry may be a no-op with no block.
READ_APPLY_POLL_MS = 2
# While catching up, progress is logged at info at most this often (and at its start and end).
CATCH_UP_LOG_INTERVAL_MS = 5_000
# Threads that verify a catch-up response's signatures before the replica installs it, and the
# signatures of submissions at admission (Ed25519 verification in libsodium, through cffi,
# releases the GIL: one thread per core).
PRECHECK_THREADS = max(1, os.cpu_count() or 1)
# The caller of a submission whose TLS certificate names no nanum identity (and of in-process
# calls): such callers share one budget of signature checks.
UNIDENTIFIED_CALLER = "unidentified"


class SubmitError(Exception):
    """A submission that cannot be accepted now; ``status`` is the gRPC status to answer with."""

    def __init__(self, status: grpc.StatusCode, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.status, self.leader = status, leader


@dataclass(slots=True)
class Outcome:
    """The recorded result of a submitted transaction."""

    code: Code
    height: int
    index: int
    leaf_index: int
    duplicate: bool = False


class NodeRuntime:
    def __init__(self, config: NodeConfig, rejoin: bool = False) -> None:
        """``rejoin``: this node lost its disk and is being rebuilt from its peers. It may have
        forgotten a vote it cast and entries it acknowledged, so it must not vote while it runs
        so; it replicates and catches up normally."""
        self.config = config
        genesis = Path(config.genesis_file).read_bytes()
        store_path = Path(config.data_dir) / "ledger"
        with Store(store_path, config.map_size_bytes) as store:    # refuse a damaged store
            problem, empty = check_store(store), store.meta(b"head") is None
            if not empty and store.block(0) != genesis:
                raise RuntimeError(f"the store at {store_path} holds another chain than {config.genesis_file}")
        if problem is not None:
            raise RuntimeError(f"the store at {store_path} fails its integrity check: {problem}; run "
                               "`nanum node check --full`, and re-sync the node from its peers "
                               "(docs/ARCHITECTURE.md, \"Re-syncing a node\")")
        if empty:
            Ledger.create(store_path, genesis, config.map_size_bytes).close()
        self.ledger = Ledger.open(store_path, config.map_size_bytes)
        node_key = read_key_file(config.node_key_file)
        options = ReplicaOptions(election_tick=config.election_ticks, heartbeat_tick=config.heartbeat_ticks,
                                 can_vote=not rejoin)
        self.replica = Replica(node_key, self.ledger, LmdbRaftStorage(self.ledger.store),
                               random.Random(os.urandom(16)), options, clock_ms=self.clock_ms)
        self._untimely_logged = 0
        self.addresses = {peer.node_id: peer.address for peer in config.peers}
        self.addresses[self.replica.id] = config.listen
        self._pending: list[Tx] = []
        # Waiters are keyed by the exact transaction bytes, never by id alone: two different
        # transactions with one id may be in flight at once, and each must be answered with
        # the result its own bytes got (the loser's is EXISTS_WITH_DIFFERENT_FIELDS).
        self._waiters: dict[bytes, list[asyncio.Future]] = {}
        self._reads: dict[int, asyncio.Future] = {}     # read_index context -> its read index
        self._next_read = 0
        self._flush_handle: asyncio.TimerHandle | None = None
        self._proposed: list[int] = []          # consensus indexes of our batches not yet committed
        self._applied_event = asyncio.Event()
        self._links: dict[str, PeerLink] = {}
        self._verifiers = ThreadPoolExecutor(PRECHECK_THREADS, thread_name_prefix="precheck")
        self.admission = Admission(self.ledger, self.replica.verified, self._verifiers,
                                   max_batch_signatures=config.max_batch_signatures,
                                   max_signatures_per_second_per_caller=config.max_signatures_per_second_per_caller,
                                   max_signature_burst_per_caller=config.max_signature_burst_per_caller)
        self._server: grpc.aio.Server | None = None
        self._ticker: asyncio.Task | None = None
        self._catch_up_log: _CatchUpLog | None = None
        self.storage = StorageGuard(self._on_storage_failure)     # see node.durability
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        credentials = self._server_credentials()
        options = [("grpc.max_receive_message_length", self.config.max_message_bytes),
                   ("grpc.max_send_message_length", self.config.max_message_bytes)]
        from node.service import ConsensusService, LedgerService, add_ledger_service   # service depends on runtime

        # No SO_REUSEPORT: a second process on our port must make this node fail to start,
        # never share the port (and its clients) silently.
        self._server = grpc.aio.server(options=options + [("grpc.so_reuseport", 0)],
                                       interceptors=[self._call_policy()])   # who may call what
        add_ledger_service(LedgerService(self, now_ms=self.clock_ms), self._server)   # malformed -> MALFORMED
        consensus_pb2_grpc.add_ConsensusServicer_to_server(ConsensusService(self), self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self._server)
        names = (ledger_pb2.DESCRIPTOR.services_by_name["Ledger"].full_name,
                 consensus_pb2.DESCRIPTOR.services_by_name["Consensus"].full_name,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, self._server)
        try:
            port = self._server.add_secure_port(self.config.listen, credentials)
        except RuntimeError:
            port = 0
        if port == 0:
            raise RuntimeError(f"cannot listen on {self.config.listen}: the address is in use or invalid")
        await self._server.start()
        for peer in self.config.peers:
            link = PeerLink(peer.node_id, peer.address, self._client_credentials(), options)
            link.start()
            self._links[peer.node_id] = link
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="ticker")
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("node %s serving on %s (height %d)", self.replica.id[:12], self.config.listen, self.ledger.height)

    async def stop(self) -> None:
        """Stops serving. A leader first hands leadership to a connected peer (a centre taking
        its node down for maintenance should not make the others wait for an election)."""
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.storage.failure is None:
            await self._hand_over_leadership()
        if self._ticker is not None:
            self._ticker.cancel()
        for link in self._links.values():
            await link.close()
        if self._server is not None:
            await self._server.stop(grace=0.5)
        self._verifiers.shutdown(wait=True, cancel_futures=True)
        try:
            if self.storage.failure is None:
                with self.storage.writes():
                    self.replica.save_certificates()
        finally:
            self.ledger.close()

    async def _hand_over_leadership(self) -> None:
        target = next((peer for peer, link in sorted(self._links.items()) if link.connected), None)
        if not self.replica.is_leader or target is None:
            return
        with self.storage.writes():
            self.replica.transfer_leadership(target)
        self.after_replica()
        deadline = time.monotonic() + HANDOVER_TIMEOUT_MS / 1000
        while self.replica.is_leader and time.monotonic() < deadline:
            await asyncio.sleep(self.config.tick_ms / 1000)
        if self.replica.is_leader:
            log.warning("leadership was not handed over in %d ms; stopping anyway", HANDOVER_TIMEOUT_MS)
        else:
            log.info("handed leadership to %s before stopping", target[:12])
        await asyncio.sleep(self.config.tick_ms / 1000)     # let the last messages leave

    async def _set_health(self, status) -> None:
        result = self.health.set("", status)
        if asyncio.iscoroutine(result):
            await result

    def _call_policy(self) -> CallPolicyInterceptor:
        listed = ListedClients(frozenset(bytes.fromhex(i) for i in self.config.auditor_ids),
                               frozenset(bytes.fromhex(i) for i in self.config.member_cert_ids))
        node = NodeView(party=self.ledger.party, is_leader=lambda: self.replica.is_leader,
                        leader_address=self.leader_address, storage_failed=lambda: self.storage.failure is not None)
        return CallPolicyInterceptor(node, listed)

    def _server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(Path(self.config.tls_key_file).read_bytes(), Path(self.config.tls_cert_file).read_bytes())],
            root_certificates=Path(self.config.ca_cert_file).read_bytes(), require_client_auth=True)

    def _client_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=Path(self.config.ca_cert_file).read_bytes(),
            private_key=Path(self.config.tls_key_file).read_bytes(),
            certificate_chain=Path(self.config.tls_cert_file).read_bytes())

    # --- driving the replica -----------------------------------------------------------------

    def clock_ms(self) -> int:
        """This node's wall clock, ms since the Unix epoch: the time it stamps on its batches as
        leader and checks others' batches against (``clock_offset_ms`` is for fault tests)."""
        return int(time.time() * 1000) + self.config.clock_offset_ms

    def _report_untimely(self) -> None:
        """Says, once per refused batch up to the tick, that this node refused a leader's batch
        time — either that leader's clock or this node's is wrong."""
        count = self.replica.untimely_batches
        if count != self._untimely_logged and self.replica.last_untimely is not None:
            batch_ms, local_ms = self.replica.last_untimely
            log.warning("refused %d batch(es) from leader %s: batch time is %+d ms from this node's "
                        "clock (bound %d ms); check the clocks (NTP) of both nodes",
                        count - self._untimely_logged, (self.replica.leader or "?")[:12],
                        batch_ms - local_ms, MAX_BLOCK_TIME_SKEW_MS)
            self._untimely_logged = count

    async def _tick_loop(self) -> None:
        """One replica tick per ``tick_ms``. Ticks missed while the loop was busy (a long
        catch-up install) are dropped, not fired back to back, as Go's time.Ticker does for
        etcd: a burst made a node that had just installed a 4 MiB response fire a dozen block
        re-requests at once, each answered with another 4 MiB it then had to discard."""
        interval = self.config.tick_ms / 1000
        next_tick = time.monotonic()
        while self.storage.failure is None:
            next_tick = max(next_tick + interval, time.monotonic())
            await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
            with self.storage.writes():
                self.replica.tick()
            self.after_replica()
            self._report_untimely()

    def deliver(self, message) -> bool:
        """A peer's message into the replica, then its output routed; False once the node's
        storage failed (the message was not taken: the node no longer takes part)."""
        if self.storage.failure is None:
            with self.storage.writes():
                self.replica.receive(message)
        if self.storage.failure is not None:
            return False
        self.after_replica()
        return True

    def _on_storage_failure(self, cause: str) -> None:
        """The storage-failed state begins (node.durability): nothing more goes to the replica
        or out to the peers; pending submissions are answered UNAVAILABLE; health NOT_SERVING."""
        error = SubmitError(grpc.StatusCode.UNAVAILABLE, cause, None)
        pending, self._pending = self._pending, []
        self._fail(pending, error)
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(error)
        self._waiters.clear()
        for read in self._reads.values():
            if not read.done():
                read.set_exception(error)
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        asyncio.get_running_loop().create_task(self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING))

    def after_replica(self) -> None:
        """Routes what the replica produced: messages to peer links, applied blocks to waiters.
        Nothing once the storage failed: a Ready whose write failed may have queued messages."""
        if self.storage.failure is not None:
            return
        out = self.replica.take()
        for message in out.messages:
            link = self._links.get(message.recipient)
            if link is not None:
                link.send(message)
        for executed in out.applied:
            self._resolve(executed)
        self._resolve_reads(out.reads)
        if out.applied and self._pending and self._batches_in_flight() < MAX_BATCHES_IN_FLIGHT:
            self._flush()
        if out.applied:
            self._applied_event.set()
            self._applied_event = asyncio.Event()
        if self.replica.catching_up or self._catch_up_log is not None:
            self._log_catch_up()

    def _log_catch_up(self) -> None:
        """Info lines for an operator watching a node catch up: its start, its progress every
        CATCH_UP_LOG_INTERVAL_MS, and its end."""
        now, height = time.monotonic(), self.ledger.height
        state = self._catch_up_log
        if state is not None and not self.replica.catching_up:
            log.info("caught up: height %d, %d blocks installed in %.1f s", height, height - state.start_height,
                     now - state.started)
            self._catch_up_log = None
            return
        if state is None:
            source, _, target = self.replica.catch_up_progress()
            log.info("catching up from %s: at height %d, installing certified blocks through consensus "
                     "index %d", self.node_name(source) or source[:12], height, target)
            self._catch_up_log = _CatchUpLog(now, height, now, height)
        elif now - state.logged >= CATCH_UP_LOG_INTERVAL_MS / 1000:
            _, index, target = self.replica.catch_up_progress()
            log.info("catching up: height %d (+%d blocks in %.1f s), consensus index %d of %d", height,
                     height - state.logged_height, now - state.logged, index, target)
            state.logged, state.logged_height = now, height

    def request_ahead(self, message: BlocksResponse) -> int | None:
        """Replica.request_ahead for a catch-up answer, its request sent at once; returns the
        height the answer's first block claims."""
        first_height = claimed_height(message.blocks[0][0]) if message.blocks else None
        self.replica.request_ahead(message, first_height)
        self.after_replica()
        return first_height

    async def precheck(self, message: BlocksResponse) -> None:
        """On a catch-up answer's arrival: asks for the next blocks at once (Replica.request_ahead),
        then verifies this answer's transactions on every core before the replica installs it,
        so that its install finds them checked (the replica alone would verify them one by one
        on the event loop's thread). The service starts this for the next answer while the
        replica installs the previous one. Skipped for blocks the node already holds."""
        if not self.replica.catching_up or not message.blocks:
            return
        first_height = self.request_ahead(message)
        if first_height is None or first_height <= self.ledger.height:
            return
        loop = asyncio.get_running_loop()
        blocks = [block for block, _ in message.blocks]
        shares = [share for i in range(PRECHECK_THREADS) if (share := blocks[i::PRECHECK_THREADS])]
        results = await asyncio.gather(*(loop.run_in_executor(self._verifiers, precheck_blocks, share,
                                                              self.ledger.chain_id) for share in shares))
        for checked in results:
            self.replica.verified.remember(checked)

    def _resolve(self, executed) -> None:
        header = executed.block.header
        first_leaf = header.tree_size - header.tx_count
        for index, tx in enumerate(executed.txs):
            for waiter in self._waiters.pop(tx.raw, ()):
                if not waiter.done():
                    waiter.set_result(Outcome(executed.codes[index], header.height, index, first_leaf + index))

    # --- submissions -------------------------------------------------------------------------

    async def submit(self, raw: bytes, caller: str = UNIDENTIFIED_CALLER) -> Outcome:
        """Admits, batches and waits for the block that records ``raw``. Raises SubmitError,
        ledger.tx.Rejected (static check) or node.admission.Refused (refused at admission)."""
        (verdict,) = await self.admit([raw], caller)
        if isinstance(verdict, Exception):
            raise verdict
        if isinstance(verdict, Outcome):
            return verdict
        return await self.enqueue(verdict)

    async def admit(self, raws: list[bytes], caller: str = UNIDENTIFIED_CALLER) -> list[Tx | Outcome | Exception]:
        """node.admission for one call's transactions from ``caller`` (its TLS identity): per
        transaction an admitted Tx to ``enqueue``, the Outcome already recorded, or the
        Rejected / Refused to answer. Raises SubmitError for the whole call: UNAVAILABLE when a
        signature or state check is needed and this node is not the leader, RESOURCE_EXHAUSTED
        when the call is over the caller's budget of signature checks."""
        if self.storage.failure is not None:
            raise SubmitError(grpc.StatusCode.UNAVAILABLE, self.storage.failure, self.leader_address())
        try:
            verdicts = await self.admission.admit(raws, caller, self._check_leader)
        except Throttled as exc:
            raise SubmitError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        return [Outcome(v.code, v.record.height, v.record.index, v.record.leaf_index, duplicate=True)
                if isinstance(v, Answered) else v for v in verdicts]

    def _check_leader(self) -> None:
        if not self.replica.is_leader:
            raise SubmitError(grpc.StatusCode.UNAVAILABLE, "this node is not the leader; retry at the leader",
                              self.leader_address())

    @property
    def throttled_calls(self) -> int:
        """Calls refused RESOURCE_EXHAUSTED for a budget of signature checks since the start."""
        return self.admission.throttles.total

    async def enqueue(self, tx: Tx) -> Outcome:
        """Batches an admitted transaction and waits for the block that records it; raises
        SubmitError."""
        if not self.replica.is_leader:
            raise SubmitError(grpc.StatusCode.UNAVAILABLE, "this node is not the leader; retry at the leader",
                              self.leader_address())
        if len(self._pending) >= self.config.max_pending_submissions:
            raise SubmitError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                              f"{len(self._pending)} submissions are queued; retry after a pause")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(tx.raw, []).append(waiter)
        self._pending.append(tx)
        self._schedule_flush()
        try:
            outcome = await asyncio.wait_for(asyncio.shield(waiter), self.config.submit_timeout_ms / 1000)
        except asyncio.TimeoutError:
            raise SubmitError(grpc.StatusCode.DEADLINE_EXCEEDED,
                              "not committed in time; resubmitting the same transaction is safe") from None
        if outcome.code in (Code.EXISTS, Code.EXISTS_WITH_DIFFERENT_FIELDS):
            return self.recorded(tx) or outcome
        return outcome

    def recorded(self, tx: Tx) -> Outcome | None:
        """The original result of an already recorded transaction id, if any."""
        record = self.ledger.store.tx_record(tx.tx_id)
        if record is None:
            return None
        code = Code(record.code) if record.body_hash == tx.body_hash() else Code.EXISTS_WITH_DIFFERENT_FIELDS
        return Outcome(code, record.height, record.index, record.leaf_index, duplicate=True)

    def _schedule_flush(self) -> None:
        """Group commit: with no batch of ours in flight, propose after at most
        ``max_batch_wait_ms``; while batches are in flight, keep gathering until one is applied
        (``after_replica`` flushes then) or the batch is full, so that under load each block —
        and its synced writes — carries many transactions."""
        if len(self._pending) >= self.config.max_batch_txs:
            self._flush()
        elif self._flush_handle is None:
            in_flight = self._batches_in_flight()
            wait_ms = self.config.max_batch_wait_ms if in_flight < MAX_BATCHES_IN_FLIGHT else GROUP_COMMIT_MAX_WAIT_MS
            self._flush_handle = asyncio.get_running_loop().call_later(wait_ms / 1000, self._flush)

    def _batches_in_flight(self) -> int:
        committed = self.replica.raft.commit_index
        self._proposed = [index for index in self._proposed if index > committed]
        return len(self._proposed)

    def _flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self._pending and self.storage.failure is None:
            batch, self._pending = self._pending[:self.config.max_batch_txs], self._pending[self.config.max_batch_txs:]
            try:
                self._proposed.append(self.replica.propose(_unique(batch), self.clock_ms()))
            except (NotLeader, ProposalDropped) as exc:
                self._fail(batch, SubmitError(grpc.StatusCode.UNAVAILABLE,
                                              f"proposal not accepted ({exc}); retry", self.leader_address()))
            except STORAGE_ERRORS as exc:       # fails every waiter, this batch's too
                self.storage.fail(exc)
            self.after_replica()

    def _fail(self, batch: list[Tx], error: SubmitError) -> None:
        for tx in batch:
            for waiter in self._waiters.pop(tx.raw, ()):
                if not waiter.done():
                    waiter.set_exception(error)

    # --- reads -------------------------------------------------------------------------------

    async def confirm_read(self, timeout_ms: int) -> None:
        """Returns once a linearizable read may be answered from this node's state: a quorum
        confirmed it still leads after the call (ReadIndex, RaftNode.read_index) and it applied
        the log through its commit index of then. Raises SubmitError (UNAVAILABLE, with the
        leader if known) if it does not lead or cannot confirm within ``timeout_ms``."""
        deadline = time.monotonic() + timeout_ms / 1000
        self._next_read += 1
        context, future = self._next_read, asyncio.get_running_loop().create_future()
        self._reads[context] = future
        try:
            self.replica.read_index(context)
            self.after_replica()
            index = await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
            while self.replica.raft.applied_index < index:
                if time.monotonic() > deadline:
                    raise asyncio.TimeoutError
                await asyncio.sleep(READ_APPLY_POLL_MS / 1000)
        except (NotLeader, ProposalDropped) as exc:
            raise SubmitError(grpc.StatusCode.UNAVAILABLE, f"cannot confirm a linearizable read here ({exc})",
                              self.leader_address()) from None
        except STORAGE_ERRORS as exc:                # read_index persists what its Ready holds
            self.storage.fail(exc)
            raise SubmitError(grpc.StatusCode.UNAVAILABLE, self.storage.failure, None) from None
        except asyncio.TimeoutError:
            raise SubmitError(grpc.StatusCode.UNAVAILABLE,
                              "could not confirm with a majority that this node still leads; retry",
                              self.leader_address()) from None
        finally:
            self._reads.pop(context, None)

    def _resolve_reads(self, confirmed) -> None:
        for state in confirmed:
            future = self._reads.get(state.context)
            if future is not None and not future.done():
                future.set_result(state.index)
        if self._reads and not self.replica.is_leader:
            for future in self._reads.values():        # the core dropped them with its leadership
                if not future.done():
                    future.set_exception(NotLeader(self.replica.leader))

    async def wait_for_height(self, height: int, timeout_ms: int) -> bool:
        deadline = time.monotonic() + timeout_ms / 1000
        while self.ledger.height < height:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._applied_event.wait(), remaining)
            except asyncio.TimeoutError:
                return False
        return True

    def leader_address(self) -> str | None:
        leader = self.replica.leader
        return None if leader is None else self.addresses.get(leader)

    def node_name(self, node_id: str) -> str:
        for peer in self.config.peers:
            if peer.node_id == node_id:
                return peer.name
        return self.config.name if node_id == self.replica.id else ""


@dataclass(slots=True)
class _CatchUpLog:
    started: float            # monotonic seconds
    start_height: int
    logged: float
    logged_height: int


def _unique(batch: list[Tx]) -> list[Tx]:
    """One copy of each transaction per batch: copies of the same bytes share one waiter list.
    Different bytes with the same id all stay: the block records the first with its result and
    the others as EXISTS_WITH_DIFFERENT_FIELDS, and each is answered with its own."""
    seen: dict[bytes, Tx] = {}
    for tx in batch:
        seen.setdefault(tx.raw, tx)
    return list(seen.values())


async def run_node(config: NodeConfig, stop: asyncio.Event, rejoin: bool = False) -> None:
    """Runs a node until ``stop``; raises StorageFailed if it stopped because a durable write
    failed (node.durability), so that the process exits with its own code."""
    runtime = NodeRuntime(config, rejoin)
    await runtime.start()
    try:
        await runtime.storage.wait_then_exit(stop)
    finally:
        await runtime.stop()
    if runtime.storage.failure is not None:
        raise StorageFailed(runtime.storage.failure)
