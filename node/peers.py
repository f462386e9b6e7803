"""Outbound links to the other nodes: one long-lived gRPC stream per peer, over mutual TLS.

Owns connecting, the bounded send queue per peer, and reconnecting with bounded backoff.
Consensus tolerates lost messages, so a full queue drops the oldest message rather than
blocking the node, and a broken stream is simply reopened; nothing here ever retries a
message. Inbound streams are handled by node.service.
"""

from __future__ import annotations

import asyncio
import logging

import grpc

from node.codec import NodeMessage, encode_message
from node.pki import node_host_name
from node.wire import consensus_pb2, consensus_pb2_grpc

log = logging.getLogger("nanum.peers")

MAX_PEER_QUEUE = 4096                 # messages waiting for one peer
RECONNECT_BACKOFF_MS = (50, 1000)     # first and largest pause between connection attempts


def peer_identity_options(peer_id: str) -> list[tuple[str, str]]:
    """Channel options under which only node ``peer_id`` completes the TLS handshake: the
    server certificate must carry that node's own DNS name (``pki.node_host_name``), not just
    the shared host names every node certificate has (a node at a wrong or hijacked address
    is refused by TLS, before a message is sent)."""
    return [("grpc.ssl_target_name_override", node_host_name(bytes.fromhex(peer_id)))]


class PeerLink:
    def __init__(self, peer_id: str, address: str, credentials: grpc.ChannelCredentials,
                 options: list[tuple[str, int]]) -> None:
        self.peer_id = peer_id
        self.address = address
        self._channel = grpc.aio.secure_channel(address, credentials, options=options + peer_identity_options(peer_id) + [
            # gRPC's own reconnect backoff (1 s growing 1.6x to 120 s by default) decides when a
            # broken channel dials again, whatever _run's pause: a peer down for 30 s was heard
            # from only ~10 s after it came back. Bound it as _run's pause is bounded.
            # (Not grpc.min_reconnect_backoff_ms: gRPC takes it as the minimum time one connection
            # attempt may take, and 20 s is right for a slow TLS handshake.)
            ("grpc.initial_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[0]),
            ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS[1])])
        self._stub = consensus_pb2_grpc.ConsensusStub(self._channel)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(MAX_PEER_QUEUE)
        self._task: asyncio.Task | None = None
        self.dropped = 0
        self.connected = False
        self.last_error: str | None = None    # the latest failure of the stream, for logs and tests

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"peer-{self.peer_id[:8]}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._channel.close(grace=None)

    def send(self, message: NodeMessage) -> None:
        """Queues a message; when the queue is full the oldest is dropped (Raft resends)."""
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(encode_message(message))

    async def _run(self) -> None:
        backoff_ms = RECONNECT_BACKOFF_MS[0]
        while True:
            try:
                await self._stub.Exchange(self._envelopes())
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as exc:
                if self.connected:
                    log.info("link to %s lost: %s", self.address, exc.code().name)
                error = f"{exc.code().name}: {exc.details()}"
                if error != self.last_error:      # once per kind of failure, not per retry
                    log.warning("link to node %s at %s failed (%s); if the TLS handshake failed, the node "
                                "answering there may not be %s", self.peer_id[:12], self.address, error,
                                self.peer_id[:12])
                self.last_error = error
            self.connected = False
            await asyncio.sleep(backoff_ms / 1000)
            backoff_ms = min(backoff_ms * 2, RECONNECT_BACKOFF_MS[1])

    async def _envelopes(self):
        self.connected = True
        while True:
            yield consensus_pb2.Envelope(message=await self._queue.get())
