"""`SimNode`: one simulated node — its disk (Raft storage + application) and,
while it is up, its RaftNode — and the ONE place that processes a Ready.

`READY_STAGES` is the Ready contract's order (node.raft.ready): persist, send,
apply, advance. `SimNode.process` walks it and can crash the node before any
stage; everything not yet written to the disk is then lost, exactly like a
real process dying there. The send stage also checks the core's half of the
contract: a vote grant or append acknowledgement must describe state that is
already on disk.
"""

from __future__ import annotations

import dataclasses
import enum
import random
from typing import Callable, Protocol

from node.raft import (
    AppendResponse,
    CatchUp,
    Entry,
    EntryKind,
    MemoryRaftStorage,
    Message,
    RaftConfig,
    RaftNode,
    Ready,
    VoteResponse,
)
from tests.sim.app import ReplicatedApp


class Stage(enum.Enum):
    PERSIST = "persist"
    SEND = "send"
    APPLY = "apply"
    ADVANCE = "advance"


READY_STAGES = (Stage.PERSIST, Stage.SEND, Stage.APPLY, Stage.ADVANCE)


class ContractViolation(AssertionError):
    """The core emitted a message its persisted state does not back."""


class NodeEnvironment(Protocol):
    """What a node's driver needs from the rest of the simulated world."""

    def send(self, message: Message) -> None: ...

    def applied(self, node: "SimNode", entry: Entry) -> None: ...

    def caught_up(self, node: "SimNode", index: int) -> None: ...

    def read_confirmed(self, node: "SimNode", context: int, index: int) -> None: ...

    def catch_up_donor(self, node_id: str) -> ReplicatedApp | None:
        """The app of `node_id` if it is reachable for an out-of-band fetch."""
        ...


class SimNode:
    def __init__(
        self,
        config: RaftConfig,
        app_factory: Callable[[], ReplicatedApp],
        log_tail_entries: int,
    ) -> None:
        self._config = config
        self._app_factory = app_factory
        # The driver compacts the log up to the applied index minus this tail.
        self._log_tail_entries = log_tail_entries
        self.storage = MemoryRaftStorage()
        self.app = app_factory()
        self.raft: RaftNode | None = None
        self.lost_disk = False

    @property
    def node_id(self) -> str:
        return self._config.node_id

    @property
    def is_up(self) -> bool:
        return self.raft is not None

    def start(self, rng: random.Random) -> None:
        config = dataclasses.replace(
            self._config,
            entry_validator=self.app.validate,
            # A node that lost its disk may have forgotten a vote: never a voter again.
            can_vote=not self.lost_disk,
        )
        self.raft = RaftNode(config, self.storage, rng, applied_index=self.app.applied_index)

    def crash(self) -> None:
        """The process dies: the core and any unprocessed Ready are gone; the
        disk (storage, app) survives."""
        self.raft = None

    def lose_disk(self) -> None:
        if self.is_up:
            raise RuntimeError("lose_disk() needs a crashed node")
        self.storage = MemoryRaftStorage()
        self.app = self._app_factory()
        self.lost_disk = True

    def process(self, env: NodeEnvironment, crash_before: Stage | None = None) -> None:
        """Handle every pending Ready in contract order, crashing before
        `crash_before` in the first one if given."""
        while self.raft is not None and (ready := self.raft.ready()) is not None:
            for stage in READY_STAGES:
                if stage is crash_before:
                    self.crash()
                    return
                self._run_stage(stage, ready, env)
            crash_before = None
            if ready.catch_up is not None:
                self._catch_up(ready.catch_up, env)
            self._compact()

    def _run_stage(self, stage: Stage, ready: Ready, env: NodeEnvironment) -> None:
        assert self.raft is not None
        if stage is Stage.PERSIST:
            # One atomic write in a real driver; nothing can interleave here.
            self.storage.append(ready.entries)
            if ready.hard_state is not None:
                self.storage.set_hard_state(ready.hard_state)
        elif stage is Stage.SEND:
            for message in ready.messages:
                self._check_backed_by_disk(message)
                env.send(message)
        elif stage is Stage.APPLY:
            for entry in ready.committed:
                self.app.apply(entry.index, entry.data if entry.kind is EntryKind.NORMAL else None)
                env.applied(self, entry)
        else:
            self.raft.advance(ready)
            for state in ready.read_states:
                env.read_confirmed(self, state.context, state.index)

    def _check_backed_by_disk(self, message: Message) -> None:
        hard_state = self.storage.hard_state()
        if isinstance(message, VoteResponse) and message.granted and not message.pre_vote:
            if (hard_state.term, hard_state.vote) != (message.term, message.recipient):
                raise ContractViolation(f"{message} sent before its vote was persisted ({hard_state})")
        if isinstance(message, AppendResponse) and message.success:
            if self.storage.last_index() < message.match_index or hard_state.term < message.term:
                raise ContractViolation(
                    f"{message} sent with only {self.storage.last_index()} entries and {hard_state} on disk"
                )

    def _catch_up(self, catch_up: CatchUp, env: NodeEnvironment) -> None:
        """Fetch committed history out of band. App install, storage restore and
        core restore form one atomic step (a crash cannot split them here; the
        real driver must use one transaction)."""
        assert self.raft is not None
        donor = env.catch_up_donor(catch_up.leader)
        if donor is None or donor.applied_index < catch_up.index:
            return  # unreachable for now; the leader repeats its notice
        self.app.catch_up_from(donor, catch_up.index)
        self.storage.restore(catch_up.index, catch_up.term)
        self.raft.restore(catch_up.index, catch_up.term)
        env.caught_up(self, catch_up.index)

    def _compact(self) -> None:
        applied = self.app.applied_index
        retained = applied - self.storage.first_index() + 1
        if retained > 2 * self._log_tail_entries:
            self.storage.compact(applied - self._log_tail_entries)

