"""Admission: what a node checks, and what it charges the caller, before it queues a submission.

Owns the order of the admission checks, cheapest first, so that the work one caller can make a
node do is bounded by what that caller is allowed (docs/ARCHITECTURE.md, "Admission"):

    1. the SHA-256 of the exact bytes against earlier verdicts: a static failure or an answer
       from the record is given from memory (``Verdicts``); bytes whose signatures passed
       before are not checked again (``node.batch.VerifiedTxs``);
    2. decoding and the chain id (no signature);
    3. the id: already recorded -> answered from the record, no signature checked (other
       content under the id: EXISTS_WITH_DIFFERENT_FIELDS);
    4. ``before_work``: the runtime's leader check (a follower checks no signature);
    5. the rules' first checks against the current state
       (``ledger.rules.refusal_before_signatures``): a transaction no active party of the right
       role wrote, or a deposit for no member, is refused here and never recorded;
    6. the caller's budget: per call at most ``max_batch_signatures`` signature checks, and per
       TLS identity a token bucket (``CallerBudget``) in units of work: one per transaction of
       the call (taken before step 1: hashing, decoding and answering it cost tens of
       microseconds, and a flood of refusals must be bounded too) and one per signature
       check (taken here); past either, the call is ``Throttled``;
    7. the signatures, in the runtime's worker threads (libsodium releases the GIL), each
       distinct transaction once even when several calls send it at the same time; every
       verdict is remembered, a failure as well as a pass.

Everything passing here is queued; the block's rules still decide it (the state may change in
between), and a refusal there is recorded as it always was.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from ledger.codes import Code
from ledger.ledger import Ledger
from ledger.rules import refusal_before_signatures
from ledger.state import Overlay, TxRecord
from ledger.tx import Redeem, Rejected, Rejection, Tx, TxKind, check_signatures, decode_or_reject
from node.batch import VerifiedTxs

log = logging.getLogger("nanum.admission")

MAX_VERDICTS = 65_536            # remembered failures and recorded answers (~0.3 KiB each)
MAX_TRACKED_CALLERS = 4_096      # callers with a token bucket; the least recent is forgotten (full again)
THROTTLE_WARNING_INTERVAL_S = 10.0   # at most one warning per caller per interval


class Refused(Exception):
    """Refused at admission from this node's current state; nothing was recorded."""

    def __init__(self, code: Code, detail: str, tx_id: bytes) -> None:
        super().__init__(f"{code.name} ({int(code)}): {detail}; refused at admission from this node's "
                         "current state, not recorded")
        self.code, self.detail, self.tx_id = code, detail, tx_id


class Throttled(Exception):
    """The call is over a budget of signature checks; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Answered:
    """An answer from the ledger's record of the submitted id, given without a signature check:
    the record's own code for these bytes, or EXISTS_WITH_DIFFERENT_FIELDS for other content."""

    record: TxRecord
    code: Code


Verdict = Union[Tx, Answered, Rejected, Refused]     # Tx: admitted, to be queued


def signature_count(tx: Tx) -> int:
    """The Ed25519 verifications ``check_tx`` makes for ``tx`` at most: the author's, each
    approval's, and a redeemed voucher's."""
    return 1 + len(tx.approvals) + (1 if isinstance(tx.payload, Redeem) else 0)


class Verdicts:
    """A bounded memo, by the SHA-256 of the exact bytes, of what never changes for them: a
    static failure (a Rejection) or the record that answers them (an Answered)."""

    def __init__(self, capacity: int = MAX_VERDICTS) -> None:
        self._capacity = capacity
        self._known: OrderedDict[bytes, Rejection | Answered] = OrderedDict()

    def get(self, key: bytes) -> Rejection | Answered | None:
        found = self._known.get(key)
        if found is not None:
            self._known.move_to_end(key)
        return found

    def put(self, key: bytes, verdict: Rejection | Answered) -> None:
        self._known[key] = verdict
        self._known.move_to_end(key)
        if len(self._known) > self._capacity:
            self._known.popitem(last=False)

    def __len__(self) -> int:
        return len(self._known)


class CallerBudget:
    """A token bucket of admission work per caller (units: a transaction answered, a signature
    checked): ``rate`` a second, at most ``burst`` saved up. ``clock`` is monotonic seconds."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_callers: int = MAX_TRACKED_CALLERS) -> None:
        self.rate, self.burst, self._clock, self._max = rate, burst, clock, max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()   # caller -> (tokens, at)

    def take(self, caller: str, cost: int) -> float:
        """Takes ``cost`` tokens and returns 0, or takes nothing and returns the seconds until
        ``cost`` tokens will be there."""
        now = self._clock()
        tokens, at = self._buckets.get(caller, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        if tokens >= cost:
            tokens, wait = tokens - cost, 0.0
        else:
            wait = (cost - tokens) / self.rate
        self._buckets[caller] = (tokens, now)
        self._buckets.move_to_end(caller)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        return wait


class ThrottleLog:
    """Counts throttled calls (in all and per caller) and warns, at most once per caller per
    THROTTLE_WARNING_INTERVAL_S, with how many were throttled since the last warning."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.total = 0
        self.by_caller: dict[str, int] = {}
        self._warned: dict[str, tuple[float, int]] = {}     # caller -> (when, count then)

    def note(self, caller: str, message: str) -> None:
        self.total += 1
        count = self.by_caller[caller] = self.by_caller.get(caller, 0) + 1
        if len(self.by_caller) > MAX_TRACKED_CALLERS:
            self.by_caller.pop(next(iter(self.by_caller)))
        now = self._clock()
        when, logged = self._warned.get(caller, (None, 0))
        if when is None or now - when >= THROTTLE_WARNING_INTERVAL_S:
            log.warning("throttled %d call(s) of %s since the last warning: %s", count - logged, caller, message)
            self._warned[caller] = (now, count)
            if len(self._warned) > MAX_TRACKED_CALLERS:
                self._warned.pop(next(iter(self._warned)))


@dataclass(slots=True)
class _Screened:
    """A submission that needs the state checks: decoded, maybe already verified, and the record
    of its id when the id is recorded with the same body (answered after the signatures)."""

    key: bytes
    tx: Tx
    verified: bool
    record: TxRecord | None = None


def _check_signatures(tx: Tx, chain_id: bytes) -> Rejection | None:
    """The signature half of ``check_tx`` on a decoded transaction: safe in any thread."""
    try:
        check_signatures(tx, chain_id)
    except Rejected as exc:
        return exc.rejection
    return None


class Admission:
    """Runs the admission checks of the module docstring for a node's ledger. Lives on the
    event loop's thread; only the signature checks run elsewhere."""

    def __init__(self, ledger: Ledger, verified: VerifiedTxs, executor: Executor, *, max_batch_signatures: int,
                 max_signatures_per_second_per_caller: int, max_signature_burst_per_caller: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ledger, self._verified, self._executor = ledger, verified, executor
        self.max_batch_signatures = max_batch_signatures
        self.budget = CallerBudget(max_signatures_per_second_per_caller, max_signature_burst_per_caller, clock)
        self.throttles = ThrottleLog(clock)
        self.verdicts = Verdicts()
        self._in_flight: dict[bytes, asyncio.Future] = {}

    async def admit(self, raws: Sequence[bytes], caller: str, before_work: Callable[[], None]) -> list[Verdict]:
        """A verdict for each of ``raws`` (one call's transactions), in order. ``before_work``
        runs once before any state check or signature, if any is needed (it may raise, for
        the whole call). Raises Throttled for a call over a budget; no signature is then
        checked (the unit per transaction, taken first, stays taken)."""
        self._charge(caller, len(raws))            # answering any transaction costs a unit
        keys = [hashlib.sha256(raw).digest() for raw in raws]
        distinct: dict[bytes, Verdict | _Screened] = {}       # copies in one call are judged once
        for key, raw in zip(keys, raws):
            if key not in distinct:
                distinct[key] = self._screen(key, raw)
        if any(isinstance(item, _Screened) for item in distinct.values()):
            before_work()
            self._refuse_from_state(distinct)
            outcomes = await self._verify([item for item in distinct.values() if isinstance(item, _Screened)], caller)
            distinct = {key: self._decide(item, outcomes) if isinstance(item, _Screened) else item
                        for key, item in distinct.items()}
        return [distinct[key] for key in keys]

    def _refuse_from_state(self, distinct: dict[bytes, "Verdict | _Screened"]) -> None:
        """Step 5, in place: what the current state refuses becomes a Refused."""
        with self._ledger.store.reader() as reader:
            state = Overlay(reader)
            for key, item in distinct.items():
                if isinstance(item, _Screened) and item.record is None:
                    refusal = refusal_before_signatures(item.tx, state)
                    if refusal is not None:
                        distinct[key] = Refused(*refusal, item.tx.tx_id)

    async def _verify(self, screened: list[_Screened], caller: str) -> dict[bytes, Rejection | None]:
        """Steps 6 and 7: charges the signature checks not yet made or under way, starts them,
        and waits for every one these transactions need; key -> Rejection or None (passed)."""
        work = {item.key: item.tx for item in screened if not item.verified and item.key not in self._in_flight}
        signatures = sum(signature_count(tx) for tx in work.values())
        if signatures > self.max_batch_signatures:
            self._throttle(caller, f"this call needs {signatures} signature checks; a call may need at most "
                                   f"{self.max_batch_signatures} (max_batch_signatures): send fewer "
                                   "transactions per call")
        self._charge(caller, signatures)
        for key, tx in work.items():
            self._start(key, tx)
        waits = {item.key: self._in_flight[item.key] for item in screened if not item.verified}
        return dict(zip(waits, await asyncio.gather(*(asyncio.shield(f) for f in waits.values()))))

    def _screen(self, key: bytes, raw: bytes) -> Verdict | _Screened:
        """Steps 1-3 for ``raw`` (``key`` = its SHA-256): everything decided without the state's
        rules or a signature."""
        known = self.verdicts.get(key)
        if isinstance(known, Rejection):
            return Rejected(known)
        if known is not None:
            return known
        tx = self._verified.get(key)
        verified = tx is not None
        if tx is None:
            try:
                tx = decode_or_reject(raw)
                if tx.kind == TxKind.GENESIS:
                    raise Rejected(Rejection(Code.MALFORMED, "kind", "a genesis transaction only opens a chain"))
                if tx.chain_id != self._ledger.chain_id:
                    raise Rejected(Rejection(Code.WRONG_CHAIN, "chain_id", "the transaction is for another chain"))
            except Rejected as exc:
                self.verdicts.put(key, exc.rejection)
                return exc
        found = self._ledger.recorded(tx.tx_id)
        if found is None:
            return _Screened(key, tx, verified)
        record, recorded_raw = found
        if recorded_raw == raw or record.body_hash != tx.body_hash():
            code = Code(record.code) if recorded_raw == raw else Code.EXISTS_WITH_DIFFERENT_FIELDS
            answer = Answered(record, code)
            self.verdicts.put(key, answer)
            return answer
        return _Screened(key, tx, verified, record)      # same body, other signatures: check them

    def _charge(self, caller: str, cost: int) -> None:
        """Takes ``cost`` units of the caller's budget, or raises Throttled having taken none."""
        if cost == 0:
            return
        wait_s = self.budget.take(caller, cost)
        if wait_s > 0:
            self._throttle(caller, f"caller {caller} is over its budget of admission work "
                                   f"({self.budget.rate} units/s, bursts of {self.budget.burst}: "
                                   "max_signatures_per_second_per_caller, max_signature_burst_per_caller; "
                                   "a transaction costs 1, and 1 more per signature checked); "
                                   f"this needs {cost}; retry in {max(1, round(wait_s * 1000))} ms")

    def _throttle(self, caller: str, message: str) -> None:
        self.throttles.note(caller, message)
        raise Throttled(message)

    def _start(self, key: bytes, tx: Tx) -> None:
        future = asyncio.get_running_loop().run_in_executor(self._executor, _check_signatures, tx,
                                                            self._ledger.chain_id)
        self._in_flight[key] = future
        future.add_done_callback(lambda done: self._settle(key, tx, done))

    def _settle(self, key: bytes, tx: Tx, done: asyncio.Future) -> None:
        """Remembers a finished check's verdict (on the loop's thread, whoever waits for it)."""
        self._in_flight.pop(key, None)
        if done.cancelled() or done.exception() is not None:
            return
        rejection = done.result()
        if rejection is None:
            self._verified.remember([(key, tx)])
        else:
            self.verdicts.put(key, rejection)

    def _decide(self, item: _Screened, outcomes: dict[bytes, Rejection | None]) -> Verdict:
        rejection = outcomes.get(item.key)
        if rejection is not None:
            return Rejected(rejection)
        if item.record is not None:
            return Answered(item.record, Code(item.record.code))
        return item.tx
