"""Verifying a chain on every core: the static checks in a process pool and in this process,
the rules in order in this process.

Owns splitting a stream of blocks into bounded chunks, running the static checks of each chunk
in a ``multiprocessing`` pool — canonical decoding, chain id and every signature of every
transaction (``tx.signatures_hold``, with ``check_tx`` for the verdict where that fails), and
every certificate signature over its block's checkpoint — while this process, whenever the
oldest chunk's results are not back, checks the next blocks itself, one at a time (and, once
the whole chain is read, takes back the newest chunks still waiting in the pool rather than sit
idle: the pool's copies of that work are cancelled); and handing
the results, in chain order, to ``ledger.verify.verify_chain`` as ``Prechecked`` blocks. This
process then replays the rules with a check that only decodes (the schema) transactions already
verified, and the certificate check that depends on state (the node set in force) with the
signatures already verified.

The answer is the sequential verifier's: a static failure is raised when the replay reaches
that block and entry, so the first problem reported is at the same place (lowest height, then
lowest index). Memory stays bounded: chunks hold at most ``MAX_CHUNK_BLOCKS`` blocks or
``MAX_CHUNK_BYTES`` bytes (one block may be bigger), at most ``IN_FLIGHT_PER_WORKER`` chunks per
pool process are read ahead, and blocks checked here wait only up to ``MAX_CHECKED_HERE_BLOCKS``
blocks and ``MAX_CHECKED_HERE_BYTES`` bytes.

The pool is never killed while its workers may be writing (see ``ChunkPool``): it is closed
once every worker has answered, cancelled work answering at its next block.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections import deque
from typing import Callable, Iterable, Iterator

from ledger import keys
from ledger.block import decode_block, decode_entry
from ledger.certificate import Certificate, endorsement_bytes
from ledger.codes import Code
from ledger.encoding import DecodeError
from ledger.tx import Rejected, Rejection, Tx, check_tx, signatures_hold
from ledger.verify import Prechecked, Report, verify_chain

MAX_CHUNK_BLOCKS = 64
# Small chunks (a full block of 1,000 transactions is ~200 KiB: one per chunk) keep the tail
# short: when the last chunk is back, the main process replays what is left on one core.
MAX_CHUNK_BYTES = 256 * 1024
IN_FLIGHT_PER_WORKER = 3
# Blocks this process checked itself wait for their turn up to these bounds: enough that it is
# never idle while the pool is behind (a 256 KiB bound left it waiting after two full blocks:
# 1.75 of 2 cores busy), and a bounded amount of memory.
MAX_CHECKED_HERE_BLOCKS = 64
MAX_CHECKED_HERE_BYTES = 16 * 1024 * 1024
MAX_WORKERS = 256
# Closing the pool waits this long for the checks still running to see they were cancelled (each
# stops at its next block; one block's checks take well under a second), before it kills them.
POOL_DRAIN_TIMEOUT_MS = 30_000
_NOTHING_CANCELLED = 2**62

Pair = tuple[bytes, "bytes | None"]
# per block: (txs_ok, failure as (tx_raw, code, field, detail) or None, signed hash or None,
#             per-signature validity or None)
StaticResult = tuple[bool, "tuple[bytes, int, str, str] | None", "bytes | None", "tuple[bool, ...] | None"]


def default_workers() -> int:
    """One pool process per core but one: the main process replays the rules and, while the
    oldest results are not back, checks blocks itself, so every core is busy and none is
    shared by two busy processes (a third process on two cores cost ~7% more CPU in all)."""
    return max(0, min((os.cpu_count() or 1) - 1, MAX_WORKERS))


def verify_chain_parallel(genesis_raw: bytes, blocks: Iterable[Pair], workers: int | None = None,
                          require_certificates: bool = False,
                          on_block: Callable[[bytes], None] | None = None,
                          start_method: str = "spawn", freeze_survivors: bool = False) -> Report:
    """``verify_chain`` with the static checks spread over ``workers`` pool processes (default:
    ``default_workers()``) and this one; 0 verifies in this process only. Same report, same
    first problem. ``blocks`` yields (block, certificate or None) pairs; it may raise BlockError
    where it breaks.

    ``start_method="fork"`` saves each worker from importing everything again (about 0.6 CPU-s
    each); only a caller that has started no threads may ask for it — a gRPC channel has
    threads of its own, so verifying a live node keeps "spawn". ``freeze_survivors``: as in
    ``verify_chain``, for a process that verifies once."""
    workers = default_workers() if workers is None else workers
    chain_id = _chain_id_of(genesis_raw)
    if workers <= 0 or chain_id is None:
        return verify_chain(genesis_raw, _watched(blocks, on_block), require_certificates, freeze_survivors)
    pool = ChunkPool(multiprocessing.get_context(start_method), min(workers, MAX_WORKERS), chain_id)
    try:
        items = prechecked(pool, blocks, workers * IN_FLIGHT_PER_WORKER, chain_id)
        return verify_chain(genesis_raw, _watched(items, on_block), require_certificates, freeze_survivors)
    finally:
        pool.close()


class ChunkPool:
    """The pool processes that run the static checks of chunks, each chunk numbered in the
    order it was submitted. A chunk can be cancelled with every chunk after it (the pool's
    copy of work this process took back); closing cancels everything, waits for each worker to
    answer, and only then lets the workers exit.

    Why not ``Pool.terminate()``: it kills workers wherever they are, and a worker killed while
    writing its result holds the result queue's lock for ever; CPython's pool then hangs in
    terminate(), sending its own sentinel through that queue. A pool whose workers have all
    answered is closed and joined instead; terminate() is left for workers that never answer
    within POOL_DRAIN_TIMEOUT_MS (killed from outside)."""

    def __init__(self, context, workers: int, chain_id: bytes) -> None:
        self._cancel_from = context.RawValue("q", _NOTHING_CANCELLED)
        self._pool = context.Pool(workers, initializer=_start_worker, initargs=(chain_id, self._cancel_from))
        self._submitted: deque = deque()      # (number, AsyncResult) not yet known to be answered
        self._next_number = 0

    def submit(self, chunk: list[Pair]):
        while self._submitted and self._submitted[0][1].ready():
            self._submitted.popleft()
        result = self._pool.apply_async(_check_chunk, (self._next_number, chunk))
        self._submitted.append((self._next_number, result))
        self._next_number += 1
        return result

    def cancel(self, result) -> None:
        """Cancels the chunk of ``result`` and every chunk submitted after it."""
        for number, submitted in self._submitted:
            if submitted is result:
                self._cancel_from.value = min(self._cancel_from.value, number)
                return

    def close(self) -> None:
        self._cancel_from.value = 0
        deadline = time.monotonic() + POOL_DRAIN_TIMEOUT_MS / 1000
        for _number, result in self._submitted:
            result.wait(max(0.0, deadline - time.monotonic()))
        if all(result.ready() for _number, result in self._submitted):
            self._pool.close()
            self._pool.join()
        else:
            self._pool.terminate()


def _chain_id_of(genesis_raw: bytes) -> bytes | None:
    try:
        return decode_block(genesis_raw).header.chain_id
    except DecodeError:
        return None           # the verifier reports a genesis that does not decode


def _watched(items: Iterable, on_block: Callable[[bytes], None] | None) -> Iterator:
    for item in items:
        yield item
        if on_block is not None:
            on_block(item.block if isinstance(item, Prechecked) else item[0])


class _Source:
    """The blocks, read in order, in pool-sized chunks or one at a time. A failure of the
    underlying iterable is kept and raised by ``prechecked`` after every block read before it."""

    def __init__(self, blocks: Iterable[Pair]) -> None:
        self._blocks = iter(blocks)
        self.failure: BaseException | None = None
        self.done = False

    def next_block(self) -> Pair | None:
        if self.done:
            return None
        try:
            return next(self._blocks)
        except StopIteration:
            self.done = True
        except Exception as exc:       # the source broke here: after what came before
            self.failure, self.done = exc, True
        return None

    def next_chunk(self) -> list[Pair]:
        """Up to MAX_CHUNK_BLOCKS blocks or MAX_CHUNK_BYTES bytes (one block may be bigger)."""
        chunk: list[Pair] = []
        size = 0
        while len(chunk) < MAX_CHUNK_BLOCKS and size < MAX_CHUNK_BYTES:
            pair = self.next_block()
            if pair is None:
                break
            chunk.append(pair)
            size += len(pair[0]) + len(pair[1] or b"")
        return chunk


def prechecked(pool, blocks: Iterable[Pair], max_in_flight: int, chain_id: bytes) -> Iterator[Prechecked]:
    """Prechecked blocks in order, their static checks run in ``pool`` and, while the oldest
    chunk's results are not back, by this process one block at a time (so it never holds up
    its own replay for long). At most ``max_in_flight`` chunks are in the pool, and blocks
    checked here wait for their turn only while fewer than MAX_CHECKED_HERE_BLOCKS of them, of
    fewer than MAX_CHECKED_HERE_BYTES bytes, do (one more may go past the bytes). An exception raised by
    ``blocks`` is raised after every block before it has been yielded."""
    if max_in_flight <= 0:
        raise ValueError("at least one chunk must be allowed in flight")
    source = _Source(blocks)
    pending: deque = deque()        # [chunk, AsyncResult] from the pool, or [pairs, statics] checked here
    in_pool = checked_here = bytes_here = 0
    while True:
        while in_pool < max_in_flight and (chunk := source.next_chunk()):
            pending.append([chunk, pool.submit(chunk)])
            in_pool += 1
        if not pending:
            break
        chunk, result = pending[0]
        if isinstance(result, list) or result.ready():
            pending.popleft()
            if isinstance(result, list):
                checked_here -= len(chunk)
                bytes_here -= sum(len(raw) + len(certificate or b"") for raw, certificate in chunk)
                for (raw, certificate), (static, decoded) in zip(chunk, result):
                    yield _prechecked(raw, certificate, static, decoded)
            else:
                in_pool -= 1
                for (raw, certificate), static in zip(chunk, result.get()):
                    yield _prechecked(raw, certificate, static)
        elif (checked_here < MAX_CHECKED_HERE_BLOCKS and bytes_here < MAX_CHECKED_HERE_BYTES
              and (pair := source.next_block()) is not None):
            _check_here(pending, pair, chain_id)
            checked_here += 1
            bytes_here += len(pair[0]) + len(pair[1] or b"")
        elif source.done and (taken := _take_back_newest(pool, pending, chain_id)):
            in_pool -= 1
            checked_here += len(taken)
            bytes_here += sum(len(raw) + len(certificate or b"") for raw, certificate in taken)
        else:
            result.wait()
    if source.failure is not None:
        raise source.failure


def _check_here(pending: deque, pair: Pair, chain_id: bytes) -> None:
    """Checks one block in this process and queues it behind everything read before it, with
    the transactions it decoded (the replay uses them rather than decoding them again)."""
    decoded: dict[bytes, Tx] = {}
    static = check_block_statically(pair[0], pair[1], chain_id, decoded)
    if pending and isinstance(pending[-1][1], list):
        pending[-1][0].append(pair)
        pending[-1][1].append((static, decoded))
    else:
        pending.append([[pair], [(static, decoded)]])


def _take_back_newest(pool, pending: deque, chain_id: bytes) -> list[Pair]:
    """At the end of the chain, while the pool is still behind: checks the newest chunk that is
    in the pool and not yet done in this process instead (the pool's copy is cancelled: as the
    newest, nothing after it is still the pool's), so that this process is not idle while the
    last chunks wait their turn. The chunk taken back (empty if none: the oldest chunk is the
    pool's to finish)."""
    for i in range(len(pending) - 1, 0, -1):
        chunk, result = pending[i]
        if isinstance(result, list):
            continue
        if result.ready():
            return []
        pool.cancel(result)
        pending[i] = [chunk, []]
        for pair in chunk:
            decoded: dict[bytes, Tx] = {}
            pending[i][1].append((check_block_statically(pair[0], pair[1], chain_id, decoded), decoded))
        return chunk
    return []


def _prechecked(raw: bytes, certificate: bytes | None, static: StaticResult,
                decoded: dict[bytes, Tx] | None = None) -> Prechecked:
    txs_ok, failure, signed_hash, signatures_ok = static
    rejection = None
    if failure is not None:
        tx_raw, code, field, detail = failure
        rejection = (tx_raw, Rejection(Code(code), field, detail))
    return Prechecked(raw, certificate, txs_ok, rejection, signed_hash, signatures_ok, decoded or None)


# --- in the worker processes -------------------------------------------------------------

_chain_id: bytes = b""
_cancel_from = None          # shared with ChunkPool: chunks numbered at or above it are not checked


def _start_worker(chain_id: bytes, cancel_from) -> None:
    # Ctrl-C reaches the whole process group: the main process handles it and closes the pool;
    # a worker that died of it would lose its chunk's answer.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _init_worker(chain_id, cancel_from)


def _init_worker(chain_id: bytes, cancel_from=None) -> None:
    global _chain_id, _cancel_from
    _chain_id, _cancel_from = chain_id, cancel_from


def _check_chunk(number: int, chunk: list[Pair]) -> list[StaticResult] | None:
    """The static checks of a chunk's blocks; None if it was cancelled before the last."""
    results = []
    for raw, certificate in chunk:
        if _cancel_from is not None and number >= _cancel_from.value:
            return None
        results.append(check_block_statically(raw, certificate, _chain_id))
    return results


def check_block_statically(raw: bytes, certificate: bytes | None, chain_id: bytes,
                           decoded: dict[bytes, Tx] | None = None) -> StaticResult:
    """The static checks of one block: every entry's transaction canonical, for this chain, with
    every signature valid (``signatures_hold``; where that fails, ``check_tx`` gives the verdict,
    and the first failure stops the block), and every certificate signature over the block's
    checkpoint. The schema of transactions whose signatures hold is left to the replay, which
    decodes them anyway (``Prechecked``).

    With ``decoded`` (a caller in the replaying process), each transaction goes through
    ``check_tx`` itself — the same verdicts — and those that pass are kept there by their bytes,
    so the replay need not decode them a second time."""
    try:
        block = decode_block(raw)
    except DecodeError:
        return False, None, None, None          # the replay finds and locates it
    txs_ok, failure = True, None
    for entry in block.entries:
        try:
            tx_raw = decode_entry(entry)[0]
            if decoded is not None:
                decoded[tx_raw] = check_tx(tx_raw, chain_id)
            elif not signatures_hold(tx_raw, chain_id):
                check_tx(tx_raw, chain_id)      # the verdict, with its code and field
        except DecodeError:
            txs_ok = False                       # the replay finds and locates it
            break
        except Rejected as exc:
            r = exc.rejection
            txs_ok, failure = False, (decode_entry(entry)[0], int(r.code), r.field, r.detail)
            break
    signed_hash, signatures_ok = _certificate_signatures(block.header, certificate)
    return txs_ok, failure, signed_hash, signatures_ok


def _certificate_signatures(header, certificate: bytes | None) -> tuple[bytes | None, tuple[bool, ...] | None]:
    if not certificate:
        return None, None
    try:
        pairs = Certificate.decode(certificate).signatures
    except DecodeError:
        return None, None
    message = endorsement_bytes(header)
    return header.hash(), tuple(keys.verify(pk, signature, message) for pk, signature in pairs)
