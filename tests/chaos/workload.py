"""The clients: concurrent writers and readers, and the log of everything they saw.

Owns the client log (``History``): every submission with its bytes and every attempt's start,
end and answer; every balance read with its start, end, points and height. Times are
``time.monotonic()`` seconds (one clock, the harness's); ``History.wall_offset_s`` turns them
into wall time for the block-time check.

Writers pick client-chosen transaction ids from their own ``random.Random`` (derived from the
run's seed) and submit through ``node.client``; an attempt whose outcome is unknown (timeout,
unavailable) is resubmitted with the same bytes up to ``RESUBMITS`` times, and whatever is still
unknown is resolved after the faults by ``resolve_unknown``. What they write, and what answer each
kind must get:

* ``deposit``        - 1 to 5 points to a registered member                      -> OK
* ``unknown_member`` - a deposit to a member nobody registered (recorded refusal) -> UNKNOWN_MEMBER
* ``unauthorised``   - a deposit signed by a key with no role, sent over the centre's certificate
                       -> refused by the call policy (PERMISSION_DENIED, no ledger code, never recorded)
* ``wrong_chain``    - signed for another chain id (static refusal, never in a block) -> WRONG_CHAIN
* ``conflict``       - a new transaction reusing an acknowledged deposit's id     -> EXISTS_WITH_DIFFERENT_FIELDS
* ``race``           - two different transactions with one new id, sent at once   -> one OK, the other 19

Readers make default (linearizable) balance reads as the auditor. Everything is bounded: requests
per writer, the client's deadlines, and the resolution phase's deadline.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import grpc

from ledger.codes import Code
from ledger.keys import SigningKey
from ledger.tx import Deposit, DepositKind, RegisterMember, make_tx
from node.client import ClientError

RESUBMITS = 3                   # attempts of the same bytes before a writer moves on
WRITER_TIMEOUT_MS = 4_000       # one client call (it tries several nodes within it): shorter than
                                # a pause plus an election, so writers see unknown outcomes too
READER_TIMEOUT_MS = 5_000
READ_PAUSE_S = (0.02, 0.1)
WRITE_PAUSE_S = (0.02, 0.08)     # keeps the load moderate (2 cores shared) and the log's growth near 40 entries/s
RESOLVE_TIMEOUT_S = 60
MEMBERS = 6

# kind -> weight in the writers' mix; "race" only when asked for (issue 16, defect 1)
KINDS = {"deposit": 80, "unknown_member": 5, "unauthorised": 4, "wrong_chain": 4, "conflict": 5, "race": 2}
EXPECTED = {"deposit": Code.OK, "unknown_member": Code.UNKNOWN_MEMBER, "unauthorised": None,
            "wrong_chain": Code.WRONG_CHAIN, "conflict": Code.EXISTS_WITH_DIFFERENT_FIELDS}


@dataclass
class Answer:
    """One attempt's answer: ``kind`` is "ok", "refused" (a definite refusal) or "unknown"."""

    start: float
    end: float
    kind: str
    code: int | None = None
    height: int | None = None
    leaf: int | None = None
    duplicate: bool = False
    status: str = ""
    phase: str = "faults"         # "faults" or "resolve"


@dataclass
class Submission:
    number: int
    writer: int
    kind: str
    tx_id: bytes
    raw: bytes
    member: bytes
    points: int
    attempts: list[Answer] = field(default_factory=list)
    partner: int | None = None    # a race's other submission

    def definite(self) -> list[Answer]:
        return [a for a in self.attempts if a.kind != "unknown"]

    @property
    def first_start(self) -> float:
        return self.attempts[0].start


@dataclass
class Read:
    reader: int
    member: bytes
    start: float
    end: float
    ok: bool
    points: int = 0
    height: int = 0
    status: str = ""


@dataclass
class History:
    submissions: list[Submission] = field(default_factory=list)
    reads: list[Read] = field(default_factory=list)
    members: list[bytes] = field(default_factory=list)
    wall_offset_s: float = field(default_factory=lambda: time.time() - time.monotonic())
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_submission(self, **fields) -> Submission:
        with self.lock:
            submission = Submission(number=len(self.submissions), **fields)
            self.submissions.append(submission)
        return submission

    def add_read(self, read: Read) -> None:
        with self.lock:
            self.reads.append(read)


def attempt(client, submission: Submission, phase: str = "faults") -> Answer:
    """One call of the client (which itself retries across nodes within its deadline)."""
    start = time.monotonic()
    try:
        response = client.submit(submission.raw)
        answer = Answer(start, time.monotonic(), "ok", response.code, response.height, response.leaf_index,
                        response.duplicate, phase=phase)
    except ClientError as exc:
        # A ledger code with FAILED_PRECONDITION / INVALID_ARGUMENT, or the call policy's refusal
        # (PERMISSION_DENIED: a certificate submits only what its party wrote), is final.
        definite = (exc.status in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.INVALID_ARGUMENT)
                    and exc.code is not None) or exc.status is grpc.StatusCode.PERMISSION_DENIED
        answer = Answer(start, time.monotonic(), "refused" if definite else "unknown",
                        None if exc.code is None else int(exc.code), exc.height, status=f"{exc.status.name}: {exc}",
                        phase=phase)
    submission.attempts.append(answer)
    return answer


def register_members(cluster, history: History, count: int = MEMBERS) -> None:
    centre = cluster.centre_key()
    with cluster.client("centre", WRITER_TIMEOUT_MS) as client:
        for i in range(count):
            member = SigningKey.generate()
            tx = make_tx(centre, cluster.chain_id, random.Random(f"member-{i}").randbytes(16),
                         RegisterMember(member.public_key))
            client.submit(tx.raw)
            history.members.append(member.party_id)


class Writer(threading.Thread):
    def __init__(self, number: int, seed: int, cluster, history: History, stop: threading.Event,
                 max_requests: int, kinds: dict[str, int]) -> None:
        super().__init__(name=f"writer-{number}", daemon=True)
        self.number, self.cluster, self.history, self.stop = number, cluster, history, stop
        self.rng = random.Random(f"{seed}-writer-{number}")
        self.max_requests = max_requests
        self.kinds = [k for k in kinds], [kinds[k] for k in kinds]
        self.centre = cluster.centre_key()
        self.stranger = SigningKey.from_seed(self.rng.randbytes(32))
        self.acknowledged: list[Submission] = []     # this writer's OK deposits, for conflicts
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.cluster.client("centre", WRITER_TIMEOUT_MS) as client:
                for _ in range(self.max_requests):
                    if self.stop.is_set():
                        return
                    self._one(client)
                    time.sleep(self.rng.uniform(*WRITE_PAUSE_S))
        except BaseException as exc:          # a harness bug: the runner reports it
            self.error = exc

    def _one(self, client) -> None:
        kind = self.rng.choices(*self.kinds)[0]
        if kind == "conflict" and not self.acknowledged:
            kind = "deposit"
        if kind == "race":
            return self._race()
        submission = self._make(kind)
        for _ in range(RESUBMITS):
            answer = attempt(client, submission)
            if answer.kind != "unknown" or self.stop.is_set():
                break
        if kind == "deposit" and answer.kind == "ok":
            self.acknowledged.append(submission)

    def _make(self, kind: str, tx_id: bytes | None = None, points: int | None = None) -> Submission:
        member = self.rng.choice(self.history.members)
        points = points or self.rng.randint(1, 5)
        author, chain_id = self.centre, self.cluster.chain_id
        tx_id = tx_id or self.rng.randbytes(16)
        if kind == "unknown_member":
            member = self.rng.randbytes(20)
        elif kind == "unauthorised":
            author = self.stranger
        elif kind == "wrong_chain":
            chain_id = self.rng.randbytes(16)
        elif kind == "conflict":
            original = self.rng.choice(self.acknowledged)
            tx_id, member, points = original.tx_id, original.member, original.points + 1
        payload = Deposit(member, points, DepositKind.OTHER, 0, f"chaos-{kind}", 0)
        tx = make_tx(author, chain_id, tx_id, payload)
        return self.history.new_submission(writer=self.number, kind=kind, tx_id=tx_id, raw=tx.raw,
                                           member=member, points=points)

    def _race(self) -> None:
        """Two different deposits with one new id, submitted at the same moment."""
        tx_id = self.rng.randbytes(16)
        pair = [self._make("race", tx_id, points) for points in (1, 2)]
        pair[0].partner, pair[1].partner = pair[1].number, pair[0].number
        barrier = threading.Barrier(2)

        def go(submission):
            with self.cluster.client("centre", WRITER_TIMEOUT_MS) as client:
                try:
                    barrier.wait(5)
                except threading.BrokenBarrierError:
                    pass                  # sent anyway: every submission gets an attempt
                attempt(client, submission)

        threads = [threading.Thread(target=go, args=(s,), daemon=True) for s in pair]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WRITER_TIMEOUT_MS / 1000 * 2)


class Reader(threading.Thread):
    def __init__(self, number: int, seed: int, cluster, history: History, stop: threading.Event) -> None:
        super().__init__(name=f"reader-{number}", daemon=True)
        self.number, self.cluster, self.history, self.stop = number, cluster, history, stop
        self.rng = random.Random(f"{seed}-reader-{number}")
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.cluster.client("auditor", READER_TIMEOUT_MS) as client:
                while not self.stop.is_set():
                    self._one(client)
                    time.sleep(self.rng.uniform(*READ_PAUSE_S))
        except BaseException as exc:
            self.error = exc

    def _one(self, client) -> None:
        member = self.rng.choice(self.history.members)
        start = time.monotonic()
        try:
            balance = client.balance(member)
            read = Read(self.number, member, start, time.monotonic(), True, balance.points, balance.height)
        except ClientError as exc:
            read = Read(self.number, member, start, time.monotonic(), False, status=exc.status.name)
        self.history.add_read(read)


def resolve_unknown(cluster, history: History, timeout_s: float = RESOLVE_TIMEOUT_S) -> list[Submission]:
    """After the faults: resubmits (same bytes) every submission no answer settled, until each
    gets a definite answer or the deadline passes. Returns those still unsettled."""
    deadline = time.monotonic() + timeout_s
    pending = [s for s in history.submissions if not s.definite()]
    with cluster.client("centre", WRITER_TIMEOUT_MS) as client:
        while pending and time.monotonic() < deadline:
            pending = [s for s in pending if attempt(client, s, phase="resolve").kind == "unknown"]
            if pending:
                time.sleep(0.5)
    return pending
