"""The storage-failed state: what a node does when a durable write fails.

Owns recognising a failed durable write (an LMDB error such as ``mdb_txn_commit: Input/output
error`` on a full disk, an OSError such as ENOSPC or EIO, or the store's own StoreFull at its
map limit), remembering its cause once, and the contract that follows from it
(docs/ARCHITECTURE.md, "Durability contract"): the node logs the cause at error level once,
stops taking part in consensus (it never acknowledges what is not durable), answers every
request but GetStatus with UNAVAILABLE naming the cause, reports it in GetStatus and in gRPC
health (NOT_SERVING), and stops after STORAGE_FAILURE_EXIT_AFTER_MS (``run_node`` raises
StorageFailed; ``nanum node run`` exits with its own code, cli.common.EXIT_STORAGE_FAILED), so
that a supervisor restarts it; a restarted node recovers from what is on disk.

Why exit rather than retry in place: a write that failed half-way may leave the consensus
core with a Ready it can never advance, and LMDB may refuse every later transaction of the
environment (MDB_PANIC); the one state known to be consistent is the one on disk.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import contextmanager
from typing import Callable, Iterator

import lmdb

from ledger.store import StoreError

log = logging.getLogger("nanum.node")

# Exceptions that mean a durable write failed.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (lmdb.Error, OSError, StoreError)
# How long a node whose storage failed keeps answering (UNAVAILABLE, and its status and health
# saying why) before it exits for a restart.
STORAGE_FAILURE_EXIT_AFTER_MS = 5_000


class StorageFailed(Exception):
    """The node stopped because a durable write failed; restart it once the disk has room."""


class StorageGuard:
    """Holds the storage-failed state of one node: ``failure`` is None while writes work, else
    the cause as a sentence. ``on_failure`` runs once, on the event loop, when it fails."""

    def __init__(self, on_failure: Callable[[str], None]) -> None:
        self.failure: str | None = None
        self._on_failure = on_failure
        self._failed = asyncio.Event()

    @contextmanager
    def writes(self) -> Iterator[None]:
        """Around every call that may write durably: a storage error is turned into the
        storage-failed state (and swallowed; callers check ``failure`` after)."""
        try:
            yield
        except STORAGE_ERRORS as exc:
            self.fail(exc)

    def fail(self, exc: BaseException) -> None:
        if self.failure is not None:
            return
        self.failure = (f"this node's storage failed ({type(exc).__name__}: {exc}); it refuses work and "
                        "exits for a restart; free disk space, then restart it")
        log.error("a durable write failed: %s: %s. The node stops taking part in consensus, refuses "
                  "submissions and reads, and exits in %d ms for a restart; its store is left as it was "
                  "before the write, and a restart recovers from it once the disk has room",
                  type(exc).__name__, exc, STORAGE_FAILURE_EXIT_AFTER_MS)
        self._failed.set()
        self._on_failure(self.failure)

    async def wait_then_exit(self, stop: asyncio.Event) -> None:
        """Returns when ``stop`` is set, or STORAGE_FAILURE_EXIT_AFTER_MS after a failure."""
        stopped = asyncio.ensure_future(stop.wait())
        failed = asyncio.ensure_future(self._failed.wait())
        try:
            await asyncio.wait({stopped, failed}, return_when=asyncio.FIRST_COMPLETED)
            if failed.done() and not stopped.done():
                await asyncio.wait({stopped}, timeout=STORAGE_FAILURE_EXIT_AFTER_MS / 1000)
        finally:
            stopped.cancel()
            failed.cancel()
