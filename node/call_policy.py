"""Who may call what on a node's gRPC server (docs/ARCHITECTURE.md, "Who may call what").

Owns the one table of which certificate role may call which RPC (``CALLERS``), the rule that a
certificate speaks only for a current member of the consortium (revocation), the rule of whose
transactions a certificate may submit, and the grpc.aio server interceptor that applies all
three before any handler runs. What a permitted read may return is ``node.read_access``'s.

The caller is the identity in its TLS client certificate (``node.pki``: role and party id of the
SAN URI ``nanum://<role>/<party id>``); the TLS layer has already checked that the consortium CA
issued it and that it is within its validity period. Then, in order:

1. a certificate without a nanum identity is UNAUTHENTICATED;
2. a certificate of a ledger party role (node, centre, partner, admin) must name an *active*
   party of that role in this node's ledger state at its head: retiring a party by governance
   revokes its certificates as soon as the block is applied here. (A party a follower does not
   know yet is sent to the leader, UNAVAILABLE: it may have been admitted in a block the
   follower has not applied.) The auditor and the shared
   member certificates are no ledger parties: their party ids must be listed in the node's
   config (``auditor_ids``, ``member_cert_ids``, written by ``nanum init``);
3. the role must be one the table lets call the method;
4. a Submit or SubmitBatch carries only transactions the certificate's party wrote: the author
   of each (decoded from the envelope only, no signature checked) is the caller; an admin may
   also carry governance it approved. A batch with one transaction that is not the caller's is
   refused whole.

A refusal is PERMISSION_DENIED (UNAUTHENTICATED for 1) with a message that says who may call.
Everything here is a pure function of the identity, the method, the request and two lookups
(the party table, the config's lists), except ``CallPolicyInterceptor`` which wires it to gRPC.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass
from typing import Callable

import grpc

from ledger import keys
from ledger.encoding import DecodeError, decode, expect_array, expect_bytes, expect_list, expect_uint
from ledger.limits import MAX_APPROVALS, MAX_TX_BYTES, PUBLIC_KEY_BYTES
from ledger.state import Party
from ledger.tx import Role, TxKind
from node.pki import Identity, PkiError, identity_from_pem

log = logging.getLogger("nanum.policy")

EVERY_ROLE = frozenset({"node", "centre", "partner", "admin", "auditor", "member"})
WRITERS = frozenset({"centre", "partner", "admin"})     # roles that author transactions
LEDGER_ROLES = {"node": Role.NODE, "centre": Role.CENTRE, "partner": Role.PARTNER, "admin": Role.ADMIN}
SUBMIT_METHODS = ("/nanum.v1.Ledger/Submit", "/nanum.v1.Ledger/SubmitBatch")

# Full method name (or "<service>/*" for every method of a service) -> the roles that may call
# it. A method in no row is refused to everyone (a new RPC is closed until it is given a row).
CALLERS: dict[str, frozenset[str]] = {
    "/nanum.v1.Ledger/Submit": WRITERS,
    "/nanum.v1.Ledger/SubmitBatch": WRITERS,
    # Reads: every role may ask; node.read_access decides what each may see.
    "/nanum.v1.Ledger/GetTransaction": EVERY_ROLE,
    "/nanum.v1.Ledger/GetBalance": EVERY_ROLE,
    "/nanum.v1.Ledger/GetHistory": EVERY_ROLE,
    "/nanum.v1.Ledger/StreamBlocks": EVERY_ROLE,
    "/nanum.v1.Ledger/GetCheckpoint": EVERY_ROLE,
    "/nanum.v1.Ledger/GetConsistencyProof": EVERY_ROLE,
    "/nanum.v1.Ledger/GetStatus": EVERY_ROLE,
    "/nanum.v1.Consensus/Exchange": frozenset({"node"}),
    "/grpc.health.v1.Health/*": EVERY_ROLE,
    "/grpc.reflection.v1alpha.ServerReflection/*": EVERY_ROLE,
    "/grpc.reflection.v1.ServerReflection/*": EVERY_ROLE,
}

_ROLE_NAMES = {"node": "nodes", "centre": "centres", "partner": "partners", "admin": "admins",
               "auditor": "auditors", "member": "member certificates"}
_WHY = {
    "/nanum.v1.Ledger/Submit": " (each for transactions it wrote; an admin also for governance it approved)",
    "/nanum.v1.Ledger/SubmitBatch": " (each for transactions it wrote; an admin also for governance it approved)",
}


class CallDenied(Exception):
    """This caller may not make this call (here); ``status`` is the gRPC status to answer with,
    ``leader`` the leader's address for a caller sent on (UNAVAILABLE)."""

    def __init__(self, status: grpc.StatusCode, message: str, leader: str | None = None) -> None:
        super().__init__(message)
        self.status, self.leader = status, leader


@dataclass(frozen=True, slots=True)
class NodeView:
    """What the policy asks of the node: a party at its head (None if unknown), whether it
    leads (and where the leader is), and whether its storage failed (then its state cannot be
    read, and it answers only GetStatus, node.durability)."""

    party: Callable[[bytes], Party | None]
    is_leader: Callable[[], bool]
    leader_address: Callable[[], str | None]
    storage_failed: Callable[[], bool]


@dataclass(frozen=True, slots=True)
class ListedClients:
    """The certificates of callers that are no ledger party, by party id (the node's config)."""

    auditors: frozenset[bytes]
    members: frozenset[bytes]

    def lists(self, identity: Identity) -> bool:
        return identity.party_id in (self.auditors if identity.role == "auditor" else self.members)


def allowed_roles(method: str) -> frozenset[str]:
    service = method.rsplit("/", 1)[0]
    return CALLERS.get(method, CALLERS.get(f"{service}/*", frozenset()))


def _who_may(method: str, roles: frozenset[str]) -> str:
    name = method.rsplit("/", 1)[-1]
    if not roles:
        return f"{name} is not open to any caller"
    if roles == EVERY_ROLE:
        return f"{name} is open to every consortium certificate"
    listed = [_ROLE_NAMES[r] for r in sorted(EVERY_ROLE) if r in roles]
    return f"{name} is called by {', '.join(listed)}{_WHY.get(method, '')}"


def check_current(identity: Identity, node: NodeView, listed: ListedClients) -> None:
    """Revocation: the certificate speaks for an active party of its role at this node's head,
    or is a listed auditor or member certificate. A party this node does not know may have been
    admitted in a block it has not applied yet: a follower sends the caller to the leader
    (UNAVAILABLE), which applied every block it acknowledged; the leader refuses it."""
    role = LEDGER_ROLES.get(identity.role)
    if role is None:
        if not listed.lists(identity):
            raise CallDenied(grpc.StatusCode.PERMISSION_DENIED,
                             f"this {identity.role} certificate ({identity.party_id.hex()}) is not one this node "
                             f"accepts (node.toml {'auditor_ids' if identity.role == 'auditor' else 'member_cert_ids'})")
        return
    record = node.party(identity.party_id)
    if record is not None and record.role == role and not record.active:
        raise CallDenied(grpc.StatusCode.PERMISSION_DENIED,
                         f"this certificate's {identity.role} ({identity.party_id.hex()}) was retired by "
                         f"governance: its certificates are revoked")
    if record is None and not node.is_leader():
        raise CallDenied(grpc.StatusCode.UNAVAILABLE,
                         f"this node does not know the certificate's {identity.role} ({identity.party_id.hex()}) "
                         f"yet; ask the leader", node.leader_address())
    if record is None or record.role != role:
        raise CallDenied(grpc.StatusCode.PERMISSION_DENIED,
                         f"this certificate's {identity.role} ({identity.party_id.hex()}) is not one of the "
                         f"consortium's {_ROLE_NAMES[identity.role]} in this node's ledger (never admitted, "
                         f"or admitted in a block this node has not applied yet)")


def check_method(identity: Identity, method: str) -> None:
    roles = allowed_roles(method)
    if identity.role not in roles:
        raise CallDenied(grpc.StatusCode.PERMISSION_DENIED,
                         f"{_who_may(method, roles)}; this certificate is a {identity.role}'s")


@dataclass(frozen=True, slots=True)
class Envelope:
    """What the write rule reads of a transaction: its kind, author and approvers (party ids)."""

    kind: int
    author_id: bytes
    approver_ids: tuple[bytes, ...]


def read_envelope(raw: bytes) -> Envelope | None:
    """The envelope of a transaction's bytes, or None when they are not even that (the handler
    then refuses them MALFORMED, recording nothing). No signature is checked here."""
    try:
        fields = expect_array(decode(raw, MAX_TX_BYTES), 8, "tx")
        kind = expect_uint(fields[2], "kind")
        author = expect_bytes(fields[4], "author", size=PUBLIC_KEY_BYTES)
        approvals = expect_list(fields[7], MAX_APPROVALS, "approvals")
        approvers = tuple(expect_bytes(expect_array(pair, 2, "approval")[0], "approval", size=PUBLIC_KEY_BYTES)
                          for pair in approvals)
    except (DecodeError, TypeError):
        return None
    return Envelope(kind, keys.party_id(author), tuple(keys.party_id(k) for k in approvers))


def check_authored(identity: Identity, raw: bytes) -> None:
    """A centre or partner submits only what it wrote; an admin, governance it wrote or approved."""
    envelope = read_envelope(raw)
    if envelope is None:
        return
    if envelope.author_id == identity.party_id:
        return
    if identity.role == "admin" and envelope.kind == TxKind.GOVERNANCE and identity.party_id in envelope.approver_ids:
        return
    mine = "wrote or approved" if identity.role == "admin" else "wrote"
    raise CallDenied(grpc.StatusCode.PERMISSION_DENIED,
                     f"a {identity.role}'s certificate submits only transactions that {identity.role} {mine}; "
                     f"this one's author is {envelope.author_id.hex()}, the certificate's party is "
                     f"{identity.party_id.hex()}")


def check_submission(identity: Identity, method: str, request) -> None:
    if method == SUBMIT_METHODS[0]:
        raws = [request.tx] if hasattr(request, "tx") else []
    else:
        raws = list(request.txs) if hasattr(request, "txs") else []   # not deserialised: MALFORMED later
    for raw in raws:
        check_authored(identity, raw)


def caller_identity(context) -> Identity:
    pems = context.auth_context().get("x509_pem_cert") or []
    try:
        if pems:
            return identity_from_pem(pems[0])
    except PkiError:
        pass
    raise CallDenied(grpc.StatusCode.UNAUTHENTICATED,
                     "the client certificate carries no nanum identity (a nanum://<role>/<id> SAN URI)")


class CallPolicyInterceptor(grpc.aio.ServerInterceptor):
    """Applies the policy to every call before its handler."""

    def __init__(self, node: NodeView, listed: ListedClients) -> None:
        self._node, self._listed = node, listed

    def _check(self, method: str, request, context) -> None:
        identity = caller_identity(context)
        if not self._node.storage_failed():
            check_current(identity, self._node, self._listed)
        check_method(identity, method)
        if method in SUBMIT_METHODS:
            check_submission(identity, method, request)

    async def _guard(self, method: str, request, context) -> None:
        try:
            self._check(method, request, context)
        except CallDenied as denied:
            log.info("refused %s: %s", method, denied)
            leader = (("nanum-leader", denied.leader),) if denied.leader else ()
            await context.abort(denied.status, str(denied), trailing_metadata=leader)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return _wrapped(handler, handler_call_details.method, self._guard)


async def _result(value):
    return await value if inspect.isawaitable(value) else value


def _wrapped(handler: grpc.RpcMethodHandler, method: str, guard) -> grpc.RpcMethodHandler:
    """``handler`` with ``guard(method, request or None, context)`` run first."""
    serial = dict(request_deserializer=handler.request_deserializer,
                  response_serializer=handler.response_serializer)
    if handler.unary_unary:
        async def unary_unary(request, context):
            await guard(method, request, context)
            return await _result(handler.unary_unary(request, context))
        return grpc.unary_unary_rpc_method_handler(unary_unary, **serial)
    if handler.stream_unary:
        async def stream_unary(requests, context):
            await guard(method, None, context)
            return await _result(handler.stream_unary(requests, context))
        return grpc.stream_unary_rpc_method_handler(stream_unary, **serial)
    behaviour = handler.unary_stream or handler.stream_stream

    async def streaming(request, context):
        await guard(method, request if handler.unary_stream else None, context)
        result = behaviour(request, context)
        if hasattr(result, "__aiter__"):
            async for item in result:
                yield item
        elif inspect.isawaitable(result):
            await result
        else:
            for item in result:
                yield item
    make = grpc.unary_stream_rpc_method_handler if handler.unary_stream else grpc.stream_stream_rpc_method_handler
    return make(streaming, **serial)


__all__ = ["CALLERS", "CallDenied", "CallPolicyInterceptor", "ListedClients", "NodeView", "allowed_roles", "check_authored",
           "check_current", "check_method", "read_envelope"]
