"""The client side of the Ledger API, for the CLI, the demo and tests.

Owns connecting to the consortium's nodes over mutual TLS, following the leader hint, and
retrying what is safe to retry: a submission is retried with the *same bytes* (its id makes
it idempotent) on UNAVAILABLE, RESOURCE_EXHAUSTED and DEADLINE_EXCEEDED, within a bounded
number of attempts and an overall deadline. Every other failure becomes a ``ClientError``
with the status, the rejection code when there is one, and a message a person can act on.

A member's client signs its reads (``sign_reads_as``): balance, history and transaction
requests then carry a fresh read grant (ledger/read_grant.py, docs/FORMAT.md §16) valid for
``DEFAULT_READ_VALIDITY_MS``; centres, partners and auditors read as their TLS certificate.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import grpc

from ledger.codes import Code
from ledger.keys import SigningKey
from ledger.read_grant import DEFAULT_READ_VALIDITY_MS, sign_read
from node.wire import ledger_pb2, ledger_pb2_grpc

MAX_ATTEMPTS = 20
RETRY_PAUSE_MS = (50, 1000)
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.DEADLINE_EXCEEDED)


class ClientError(Exception):
    def __init__(self, status: grpc.StatusCode, message: str, code: Code | None = None,
                 height: int | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.height = status, code, height

    @property
    def retryable(self) -> bool:
        return self.status in RETRYABLE


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_cert: bytes
    cert: bytes
    key: bytes

    @classmethod
    def load(cls, ca_cert_file: Path, cert_file: Path, key_file: Path) -> "TlsFiles":
        return cls(Path(ca_cert_file).read_bytes(), Path(cert_file).read_bytes(), Path(key_file).read_bytes())


def _metadata(error: grpc.RpcError) -> dict[str, str]:
    return {key: value for key, value in (error.trailing_metadata() or ())}


class LedgerClient:
    def __init__(self, addresses: list[str], tls: TlsFiles, timeout_ms: int = 10_000,
                 max_message_bytes: int = 8 * 1024 * 1024) -> None:
        if not addresses:
            raise ValueError("at least one node address is needed")
        self.addresses = list(addresses)
        self.timeout_ms = timeout_ms
        self._credentials = grpc.ssl_channel_credentials(tls.ca_cert, tls.key, tls.cert)
        self._options = [("grpc.max_receive_message_length", max_message_bytes),
                         ("grpc.max_send_message_length", max_message_bytes)]
        self._channels: dict[str, grpc.Channel] = {}
        self._preferred = self.addresses[0]
        self._member: tuple[SigningKey, bytes] | None = None

    def sign_reads_as(self, member: SigningKey, chain_id: bytes) -> "LedgerClient":
        """From now on, balance, history and transaction reads are signed by ``member``."""
        self._member = (member, bytes(chain_id))
        return self

    def _grant(self, method: str, subject: bytes) -> ledger_pb2.ReadGrant | None:
        if self._member is None:
            return None
        member, chain_id = self._member
        grant = sign_read(member, chain_id, method, subject, int(time.time() * 1000) + DEFAULT_READ_VALIDITY_MS)
        return ledger_pb2.ReadGrant(member_key=grant.member_key, not_after_ms=grant.not_after_ms,
                                    signature=grant.signature)

    def close(self) -> None:
        for channel in self._channels.values():
            channel.close()

    def __enter__(self) -> "LedgerClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stub(self, address: str) -> ledger_pb2_grpc.LedgerStub:
        if address not in self._channels:
            self._channels[address] = grpc.secure_channel(address, self._credentials, options=self._options)
        return ledger_pb2_grpc.LedgerStub(self._channels[address])

    # --- calls with leader following and safe retries ----------------------------------------

    def call(self, method: str, request, leader_only: bool = False):
        """Calls ``method`` on the preferred node, following leader hints and moving to another
        node when one is unreachable, until the deadline. Raises ClientError."""
        deadline = time.monotonic() + self.timeout_ms / 1000
        pause_ms, last_error = RETRY_PAUSE_MS[0], None
        candidates = self._rotation()
        for attempt in range(MAX_ATTEMPTS):
            address = self._preferred if attempt == 0 else next(candidates)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                return getattr(self.stub(address), method)(request, timeout=remaining)
            except grpc.RpcError as error:
                last_error = self._classify(error)
                if not last_error.retryable:
                    raise last_error from None
                hint = _metadata(error).get("nanum-leader")
                if hint:
                    self._preferred = hint
                    candidates = self._rotation()
            time.sleep(min(pause_ms / 1000, max(0.0, deadline - time.monotonic())))
            pause_ms = min(pause_ms * 2, RETRY_PAUSE_MS[1])
        raise last_error or ClientError(grpc.StatusCode.DEADLINE_EXCEEDED, "no node answered in time")

    def _rotation(self):
        order = [self._preferred] + [a for a in self.addresses if a != self._preferred]
        while True:
            yield from order

    @staticmethod
    def _classify(error: grpc.RpcError) -> ClientError:
        metadata = _metadata(error)
        code = Code(int(metadata["nanum-code"])) if "nanum-code" in metadata else None
        height = int(metadata["nanum-height"]) if "nanum-height" in metadata else None
        return ClientError(error.code(), error.details() or error.code().name, code, height)

    # --- the API ---------------------------------------------------------------------------

    def submit(self, raw: bytes) -> ledger_pb2.SubmitResponse:
        """Returns once the transaction is recorded; ClientError with ``code`` if refused."""
        return self.call("Submit", ledger_pb2.SubmitRequest(tx=raw))

    def submit_batch(self, raws: list[bytes]) -> ledger_pb2.SubmitBatchResponse:
        return self.call("SubmitBatch", ledger_pb2.SubmitBatchRequest(txs=raws))

    def balance(self, member_id: bytes, min_height: int = 0, stale_ok: bool = False) -> ledger_pb2.Balance:
        read = ledger_pb2.ReadOptions(min_height=min_height, stale_ok=stale_ok)
        return self.call("GetBalance", ledger_pb2.GetBalanceRequest(
            member_id=member_id, read=read, grant=self._grant("GetBalance", member_id)))

    def transaction(self, tx_id: bytes, min_height: int = 0) -> ledger_pb2.TransactionView:
        read = ledger_pb2.ReadOptions(min_height=min_height)
        return self.call("GetTransaction", ledger_pb2.GetTransactionRequest(
            tx_id=tx_id, read=read, grant=self._grant("GetTransaction", tx_id)))

    def history(self, party_id: bytes, after_leaf: int = -1, limit: int = 50,
                min_height: int = 0) -> ledger_pb2.History:
        read = ledger_pb2.ReadOptions(min_height=min_height)
        return self.call("GetHistory", ledger_pb2.GetHistoryRequest(
            party_id=party_id, after_leaf=after_leaf, limit=limit, read=read,
            grant=self._grant("GetHistory", party_id)))

    def checkpoint(self) -> ledger_pb2.Checkpoint:
        return self.call("GetCheckpoint", ledger_pb2.GetCheckpointRequest())

    def consistency_proof(self, size1: int, size2: int = 0) -> ledger_pb2.ConsistencyProof:
        return self.call("GetConsistencyProof", ledger_pb2.GetConsistencyProofRequest(size1=size1, size2=size2))

    def status_of(self, address: str, timeout_ms: int = 2_000) -> ledger_pb2.ClusterStatus:
        """One node's own view (no retries): for `nanum status`, which asks every node."""
        return self.stub(address).GetStatus(ledger_pb2.GetStatusRequest(), timeout=timeout_ms / 1000)

    def blocks(self, from_height: int, max_blocks: int = 0, headers_only: bool = False):
        """Streams certified blocks (or, with ``headers_only``, their headers) from
        ``from_height`` from the preferred node. Whole blocks are for auditors and nodes."""
        request = ledger_pb2.StreamBlocksRequest(from_height=from_height, max_blocks=max_blocks,
                                                 headers_only=headers_only)
        return self.stub(self._preferred).StreamBlocks(request, timeout=self.timeout_ms / 1000)
