"""The gRPC services of a node: the public Ledger API and the internal Consensus stream.

Owns turning requests into runtime calls and every outcome into a gRPC status (see
proto/ledger.proto for the table). Every input is checked before anything changes: sizes and
ids first, then admission (node.admission: the static check and the state's first checks,
charged to the caller's TLS identity); a refused request changes nothing.

Every read is checked against the access table of ``node.read_access`` (who the caller's TLS
certificate and, for a member, read grant say it is); a refused read is PERMISSION_DENIED with
a message naming who may read it, a malformed read grant INVALID_ARGUMENT, and a grant that does
not authenticate the read (expired, too long-lived, badly signed) UNAUTHENTICATED.

Trailing metadata on errors: ``nanum-code`` (result code number), ``nanum-code-name``,
``nanum-leader`` (host:port of the leader when known), ``nanum-height``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable

import grpc
from google.protobuf.message import DecodeError as ProtobufDecodeError

from ledger.block import decode_block
from ledger.codes import Code
from ledger.encoding import decode, encode
from ledger.limits import MAX_TX_BYTES, PARTY_ID_BYTES, TX_ID_BYTES
from ledger.ledger import MAX_HISTORY_PAGE
from ledger.read_grant import GrantError, ReadGrant, check_grant
from ledger.tx import Rejected, Tx
from node.codec import BlocksResponse, CodecError, decode_message
from node.pki import PkiError, identity_from_pem
from node.read_access import (
    ReadDenied,
    Reader,
    check_balance,
    check_blocks,
    check_history,
    check_transaction,
)
from node.admission import Refused
from node.runtime import UNIDENTIFIED_CALLER, NodeRuntime, Outcome, SubmitError
from node.wire import consensus_pb2, consensus_pb2_grpc, ledger_pb2, ledger_pb2_grpc

log = logging.getLogger("nanum.service")

MAX_BATCH_SUBMISSIONS = 256
DEFAULT_HISTORY_PAGE = 50
READ_WAIT_MS = 5_000              # how long a read waits for min_height before UNAVAILABLE
MAX_STREAM_BLOCKS = 10_000        # blocks in one StreamBlocks call


async def _abort(context, status: grpc.StatusCode, message: str, code: Code | None = None,
                 leader: str | None = None, height: int | None = None) -> None:
    metadata = []
    if code is not None:
        metadata += [("nanum-code", str(int(code))), ("nanum-code-name", code.name)]
    if leader:
        metadata.append(("nanum-leader", leader))
    if height is not None:
        metadata.append(("nanum-height", str(height)))
    await context.abort(status, message, trailing_metadata=tuple(metadata))


def _response(tx_id: bytes, outcome: Outcome) -> ledger_pb2.SubmitResponse:
    return ledger_pb2.SubmitResponse(tx_id=tx_id, code=int(outcome.code), code_name=outcome.code.name,
                                     message=outcome.code.message, height=outcome.height,
                                     leaf_index=outcome.leaf_index, duplicate=outcome.duplicate)


def _answer(raw: bytes, verdict) -> ledger_pb2.SubmitResponse | Tx:
    """A batch result from an admission verdict (None: over MAX_TX_BYTES), or the admitted Tx
    that still has to wait for its block."""
    if verdict is None:
        return ledger_pb2.SubmitResponse(code=int(Code.MALFORMED), code_name="MALFORMED",
                                         message=f"a transaction has at most {MAX_TX_BYTES} bytes")
    if isinstance(verdict, Rejected):
        code = verdict.rejection.code
        return ledger_pb2.SubmitResponse(code=int(code), code_name=code.name, message=str(verdict.rejection))
    if isinstance(verdict, Refused):             # not recorded: no height, no leaf
        return ledger_pb2.SubmitResponse(tx_id=verdict.tx_id, code=int(verdict.code),
                                         code_name=verdict.code.name, message=str(verdict))
    if isinstance(verdict, Outcome):
        return _response(decode(raw)[3], verdict)
    return verdict


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


class LedgerService(ledger_pb2_grpc.LedgerServicer):
    def __init__(self, runtime: NodeRuntime, now_ms: Callable[[], int] = _wall_clock_ms) -> None:
        self.runtime = runtime
        self._now_ms = now_ms          # the clock read grants' validity is judged by

    # --- writes ------------------------------------------------------------------------------

    async def Submit(self, request, context):
        if len(request.tx) > MAX_TX_BYTES:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"a transaction has at most {MAX_TX_BYTES} bytes", Code.MALFORMED)
        try:
            outcome = await self.runtime.submit(request.tx, _caller(context))
        except Rejected as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc.rejection), exc.rejection.code)
        except Refused as exc:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc), exc.code)
        except SubmitError as exc:
            await _abort(context, exc.status, str(exc), leader=exc.leader)
        tx_id = decode(request.tx)[3]
        if outcome.code != Code.OK:
            await _abort(context, grpc.StatusCode.FAILED_PRECONDITION,
                         f"{outcome.code.name}: {outcome.code.message}", outcome.code, height=outcome.height)
        return _response(tx_id, outcome)

    async def SubmitBatch(self, request, context):
        if len(request.txs) > MAX_BATCH_SUBMISSIONS:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"a batch holds at most {MAX_BATCH_SUBMISSIONS} transactions")
        # The whole call is admitted at once: its signature checks are counted, and charged to
        # the caller, before any of them runs (node.admission).
        try:
            verdicts = iter(await self.runtime.admit([raw for raw in request.txs if len(raw) <= MAX_TX_BYTES],
                                                     _caller(context)))
        except SubmitError as exc:
            await _abort(context, exc.status, str(exc), leader=exc.leader)
        results = [_answer(raw, next(verdicts) if len(raw) <= MAX_TX_BYTES else None) for raw in request.txs]
        queued = [i for i, result in enumerate(results) if isinstance(result, Tx)]
        waited = await asyncio.gather(*(self._wait(results[i]) for i in queued), return_exceptions=True)
        for i, result in zip(queued, waited):
            if isinstance(result, SubmitError):
                await _abort(context, result.status, str(result), leader=result.leader)
            if isinstance(result, BaseException):
                raise result
            results[i] = result
        return ledger_pb2.SubmitBatchResponse(results=results)

    async def _wait(self, tx: Tx) -> ledger_pb2.SubmitResponse:
        return _response(tx.tx_id, await self.runtime.enqueue(tx))

    # --- reads -------------------------------------------------------------------------------

    async def _before_read(self, context, read, linearizable: bool) -> None:
        """Read-your-writes via min_height; linearizable reads are served by the leader."""
        if read.min_height and not await self.runtime.wait_for_height(read.min_height, READ_WAIT_MS):
            await _abort(context, grpc.StatusCode.UNAVAILABLE,
                         f"this node has not reached height {read.min_height} yet; retry or ask another node",
                         leader=self.runtime.leader_address())
        if linearizable and not read.stale_ok:
            if not self.runtime.replica.is_leader:
                await _abort(context, grpc.StatusCode.UNAVAILABLE,
                             "linearizable reads are answered by the leader; retry there, or pass stale_ok",
                             leader=self.runtime.leader_address())
            try:
                await self.runtime.confirm_read(READ_WAIT_MS)
            except SubmitError as exc:
                await _abort(context, exc.status, str(exc), leader=exc.leader)

    async def _reader(self, context, request=None, method: str = "", subject: bytes = b"") -> Reader:
        """Who makes this read: the TLS certificate's identity and, when the request carries a
        read grant, the member it authenticates (checked here: sizes, validity, signature)."""
        identity = peer_identity(context)
        if identity is None:
            await _abort(context, grpc.StatusCode.UNAUTHENTICATED,
                         "the client certificate carries no nanum identity (a nanum://<role>/<id> SAN URI)")
        member_id = None
        if request is not None and request.HasField("grant"):
            g = request.grant
            grant = ReadGrant(bytes(g.member_key), g.not_after_ms, bytes(g.signature))
            try:
                member_id = check_grant(grant, self.runtime.ledger.chain_id, method, subject, self._now_ms())
            except GrantError as exc:
                status = grpc.StatusCode.INVALID_ARGUMENT if exc.malformed else grpc.StatusCode.UNAUTHENTICATED
                await _abort(context, status, f"signed read refused: {exc}")
        return Reader(identity.role, identity.party_id, member_id)

    async def _allow(self, context, reader: Reader, check, subject) -> None:
        """Applies one rule of the access table, after the read has waited for its height (the
        records it consults, such as a member's registration, are then there)."""
        ledger = self.runtime.ledger
        if reader.member_id is not None and not ledger.member_exists(reader.member_id):
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED,
                         f"the key of this signed read is not a registered member's "
                         f"(member id {reader.member_id.hex()}); a centre registers members")
        try:
            check(reader, subject, ledger)
        except ReadDenied as exc:
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED, str(exc))

    async def GetTransaction(self, request, context):
        await self._check_id(context, request.tx_id, TX_ID_BYTES, "tx_id")
        reader = await self._reader(context, request, "GetTransaction", request.tx_id)
        await self._before_read(context, request.read, linearizable=False)
        ledger = self.runtime.ledger
        view = ledger.tx(request.tx_id)
        if view is None:
            await _abort(context, grpc.StatusCode.NOT_FOUND, "no transaction with that id is recorded here")
        await self._allow(context, reader, check_transaction, view.tx)
        record = view.record
        redemption = ledger.redemption(request.tx_id) if record.code == Code.OK else None
        drawn = [ledger_pb2.CentreBalance(centre_id=c, points=p) for c, p in redemption.drawn] if redemption else []
        return ledger_pb2.TransactionView(
            tx=view.tx.raw, entry=view.entry, code=record.code, code_name=Code(record.code).name,
            height=record.height, index=record.index, leaf_index=record.leaf_index,
            tree_size=view.tree_size, tree_root=view.tree_root, inclusion_proof=view.proof, drawn=drawn)

    async def GetBalance(self, request, context):
        await self._check_id(context, request.member_id, PARTY_ID_BYTES, "member_id")
        reader = await self._reader(context, request, "GetBalance", request.member_id)
        await self._before_read(context, request.read, linearizable=True)
        await self._allow(context, reader, check_balance, request.member_id)
        ledger = self.runtime.ledger
        total, buckets = ledger.balance(request.member_id)
        return ledger_pb2.Balance(
            member_id=request.member_id, registered=ledger.member_exists(request.member_id), points=total,
            by_centre=[ledger_pb2.CentreBalance(centre_id=c, points=p) for c, p in buckets],
            height=ledger.height)

    async def GetHistory(self, request, context):
        await self._check_id(context, request.party_id, PARTY_ID_BYTES, "party_id")
        limit = request.limit or DEFAULT_HISTORY_PAGE
        if not 1 <= limit <= MAX_HISTORY_PAGE or request.after_leaf < -1:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         f"limit is 1..{MAX_HISTORY_PAGE} and after_leaf is -1 or a leaf index")
        reader = await self._reader(context, request, "GetHistory", request.party_id)
        await self._before_read(context, request.read, linearizable=False)
        await self._allow(context, reader, check_history, request.party_id)
        ledger = self.runtime.ledger
        page = ledger.history_page(request.party_id, request.after_leaf, limit)   # bounded in bytes read
        return ledger_pb2.History(
            items=[ledger_pb2.HistoryItem(leaf_index=leaf, tx=tx.raw, code=int(code), height=height)
                   for leaf, height, tx, code in page.items],
            more=page.more)

    async def StreamBlocks(self, request, context):
        reader = await self._reader(context)
        try:
            check_blocks(reader, request.headers_only)
        except ReadDenied as exc:
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED, str(exc))
        store, certified = self.runtime.ledger.store, self.runtime.replica.certified_height
        last = certified if not request.max_blocks else min(certified, request.from_height + request.max_blocks - 1)
        last = min(last, request.from_height + MAX_STREAM_BLOCKS - 1)
        for height in range(request.from_height, last + 1):
            certificate = self.runtime.replica.certificate(height) or b""
            if request.headers_only:
                header = encode(decode_block(store.block(height)).header.to_wire())
                yield ledger_pb2.CertifiedBlock(height=height, header=header, certificate=certificate)
            else:
                yield ledger_pb2.CertifiedBlock(height=height, block=store.block(height), certificate=certificate)

    # Checkpoints, consistency proofs and status carry hashes, heights and node names, no one's
    # transactions: any consortium certificate reads them.

    async def GetCheckpoint(self, request, context):
        await self._reader(context)
        ledger, height = self.runtime.ledger, self.runtime.replica.certified_height
        header = decode_block(ledger.block(height)).header
        return ledger_pb2.Checkpoint(height=height, tree_size=header.tree_size, tree_root=header.tree_root,
                                     block_hash=header.hash(), certificate=self.runtime.replica.certificate(height) or b"",
                                     chain_id=ledger.chain_id)

    async def GetConsistencyProof(self, request, context):
        await self._reader(context)
        size2 = request.size2 or self.runtime.ledger.head.header.tree_size
        try:
            proof = self.runtime.ledger.consistency_proof(request.size1, size2)
        except ValueError as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return ledger_pb2.ConsistencyProof(size1=request.size1, size2=size2, proof=proof)

    async def GetStatus(self, request, context):
        await self._reader(context)
        runtime, replica = self.runtime, self.runtime.replica
        role = replica.raft.role.value
        this = ledger_pb2.NodeStatus(node_id=replica.id, name=runtime.config.name, address=runtime.config.listen,
                                     role=role, term=replica.raft.term, applied_height=replica.height,
                                     certified_height=replica.certified_height,
                                     storage_failure=runtime.storage.failure or "",
                                     throttled_calls=runtime.throttled_calls)
        return ledger_pb2.ClusterStatus(chain_id=runtime.ledger.chain_id, leader_id=replica.leader or "",
                                        leader_address=runtime.leader_address() or "", nodes=[this],
                                        this_node_id=replica.id)

    async def _check_id(self, context, value: bytes, size: int, name: str) -> None:
        if len(value) != size:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{name} has {size} bytes, got {len(value)}")


def _caller(context) -> str:
    """Whom a submission's signature checks are charged to: the caller's TLS identity."""
    identity = peer_identity(context)
    return UNIDENTIFIED_CALLER if identity is None else f"{identity.role}/{identity.party_id.hex()}"


class MalformedRequest:
    """What a request that is not a valid protobuf message deserialises to, so that the service
    answers it like every other bad input (grpc.aio's own deserialiser error is UNKNOWN)."""

    def __init__(self, message_name: str, reason: str) -> None:
        self.message_name, self.reason = message_name, reason


def _lenient(message_class):
    def deserialize(raw: bytes):
        try:
            return message_class.FromString(raw)
        except ProtobufDecodeError as exc:
            return MalformedRequest(message_class.DESCRIPTOR.name, str(exc) or "it does not decode")
    return deserialize


async def _refuse_malformed(context, request: MalformedRequest) -> None:
    await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                 f"the request is not a valid {request.message_name} message: {request.reason}", Code.MALFORMED)


# Answered even when the node's storage failed: it reports the failure.
ANSWERED_AFTER_STORAGE_FAILURE = frozenset({"GetStatus"})


def _guarded(runtime: NodeRuntime, name: str, behaviour, server_streaming: bool):
    """``behaviour`` behind the MALFORMED refusal of a request that did not deserialise, and
    behind the UNAVAILABLE refusal of a node whose storage failed (node.durability)."""
    async def refuse(request, context) -> None:
        if isinstance(request, MalformedRequest):
            await _refuse_malformed(context, request)
        if runtime.storage.failure is not None and name not in ANSWERED_AFTER_STORAGE_FAILURE:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"{runtime.storage.failure}; ask another node",
                         leader=runtime.leader_address())

    if server_streaming:
        async def streaming(request, context):
            await refuse(request, context)
            async for item in behaviour(request, context):
                yield item
        return streaming

    async def unary(request, context):
        await refuse(request, context)
        return await behaviour(request, context)
    return unary


def add_ledger_service(service: LedgerService, server: grpc.aio.Server) -> None:
    """Registers the Ledger service like the generated ``add_LedgerServicer_to_server``, with
    two differences: request bytes that are not a valid protobuf message are refused with
    INVALID_ARGUMENT and MALFORMED (trailing metadata as ``_abort`` sets it), not UNKNOWN; and
    a node whose storage failed refuses all but GetStatus with UNAVAILABLE and the cause.
    Built from the service descriptor, so every method of proto/ledger.proto is covered."""
    descriptor = ledger_pb2.DESCRIPTOR.services_by_name["Ledger"]
    handlers = {}
    for method in descriptor.methods:
        request_class, response_class = (getattr(ledger_pb2, method.input_type.name),
                                         getattr(ledger_pb2, method.output_type.name))
        assert not method.client_streaming, "the Ledger API has no client-streaming method"
        make = grpc.unary_stream_rpc_method_handler if method.server_streaming else grpc.unary_unary_rpc_method_handler
        handlers[method.name] = make(_guarded(service.runtime, method.name, getattr(service, method.name),
                                              method.server_streaming),
                                     request_deserializer=_lenient(request_class),
                                     response_serializer=response_class.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(descriptor.full_name, handlers),))
    if hasattr(server, "add_registered_method_handlers"):
        server.add_registered_method_handlers(descriptor.full_name, handlers)


def peer_identity(context):
    """The nanum identity proven by the peer's TLS certificate, or None."""
    pems = context.auth_context().get("x509_pem_cert") or []
    if not pems:
        return None
    try:
        return identity_from_pem(pems[0])
    except PkiError:
        return None


READ_AHEAD_MESSAGES = 2        # decoded messages of one peer's stream waiting for the replica
_END_OF_STREAM = object()


async def _stop_reading(reader: asyncio.Task, ahead: asyncio.Queue) -> None:
    """Ends a stream's reader and the verifications it started for messages no one will take
    (the replica asks for those blocks again after CATCH_UP_RETRY_TICKS)."""
    reader.cancel()
    while not ahead.empty():
        item = ahead.get_nowait()
        if isinstance(item, tuple) and item[1] is not None:
            item[1].cancel()
    await asyncio.gather(reader, return_exceptions=True)


class ConsensusService(consensus_pb2_grpc.ConsensusServicer):
    def __init__(self, runtime: NodeRuntime) -> None:
        self.runtime = runtime

    async def Exchange(self, request_iterator, context):
        identity = peer_identity(context)
        replica = self.runtime.replica
        if identity is None or identity.role != "node":
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED, "consensus traffic is for nodes only")
        peer_id = identity.party_id.hex()
        if peer_id not in replica._node_keys() or peer_id == replica.id:
            await _abort(context, grpc.StatusCode.PERMISSION_DENIED, "this node is not in the current node set")
        counts = {"received": 0, "refused": 0}
        # Messages are handed to the replica strictly in stream order; the reader runs ahead by
        # at most READ_AHEAD_MESSAGES so that a catch-up answer is verified (on other threads)
        # while the replica still installs the one before it.
        ahead: asyncio.Queue = asyncio.Queue(READ_AHEAD_MESSAGES)
        reader = asyncio.create_task(self._read(request_iterator, peer_id, ahead, counts))
        try:
            while (item := await ahead.get()) is not _END_OF_STREAM:
                if isinstance(item, BaseException):
                    raise item
                message, verifying = item
                if verifying is not None:
                    try:
                        await verifying
                    except Exception:      # only a speed-up: the replica checks everything itself
                        log.exception("verifying a catch-up response ahead failed; the replica checks it")
                    self.runtime.request_ahead(message)    # sent now, not after the install
                if not self.runtime.deliver(message):     # the storage failed (node.durability)
                    await _abort(context, grpc.StatusCode.UNAVAILABLE, self.runtime.storage.failure)
        finally:
            await _stop_reading(reader, ahead)
        return consensus_pb2.ExchangeSummary(**counts)

    async def _read(self, request_iterator, peer_id: str, ahead: asyncio.Queue, counts: dict[str, int]) -> None:
        """Decodes and checks the stream's messages into ``ahead``, starting the verification of
        each catch-up answer at once; ends with _END_OF_STREAM, or the stream's error."""
        replica = self.runtime.replica
        try:
            async for envelope in request_iterator:
                try:
                    message = decode_message(envelope.message)
                except CodecError as exc:
                    counts["refused"] += 1
                    log.warning("refused a message from %s: %s", peer_id[:12], exc)
                    continue
                if message.sender != peer_id or message.recipient != replica.id:
                    counts["refused"] += 1
                    continue
                counts["received"] += 1
                verifying = (asyncio.ensure_future(self.runtime.precheck(message))
                             if isinstance(message, BlocksResponse) else None)
                await ahead.put((message, verifying))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:       # the stream broke: the handler re-raises it in order
            await ahead.put(exc)
            return
        await ahead.put(_END_OF_STREAM)
