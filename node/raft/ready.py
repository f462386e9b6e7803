"""`Ready`: the batch of work the core hands to its driver, and the contract
for processing it.

The driver processes one Ready at a time, in exactly this order:

1. Persist: `storage.append(ready.entries)` and `storage.set_hard_state(ready.hard_state)`
   in one atomic write (a persisted commit index must never point past
   persisted entries, and a vote must never be sent before it is durable).
2. Send `ready.messages`. Vote grants and append acknowledgements in this
   list describe state persisted in step 1 (or earlier); the core never puts
   such a message in a Ready that precedes the state it vouches for.
3. Apply `ready.committed` to the application, in index order. The applied
   state and its applied index must be durable together.
4. Call `RaftNode.advance(ready)`.
5. If `ready.catch_up` is set: fetch and install committed history through
   catch_up.index out of band, call `storage.restore(index, term)` and then
   `RaftNode.restore(index, term)`, atomically with the app's install; or skip
   it (the leader repeats its notice).

`soft_state` is informational (role, leader) and needs no persistence.
`read_states` are reads confirmed by ReadIndex (`ReadState`): answer each once the application
has applied through its index. A read that never appears (leadership lost) is the driver's to
time out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from node.raft.entry import Entry
from node.raft.messages import Message
from node.raft.storage import HardState


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class SoftState:
    role: Role
    leader: str | None


@dataclass(frozen=True, slots=True)
class CatchUp:
    """Fetch committed history through `index` (entry term `term`) out of
    band; `leader` sent the notice and is a node known to hold it."""

    leader: str
    index: int
    term: int


@dataclass(frozen=True, slots=True)
class ReadState:
    """A read asked for with `RaftNode.read_index(context)` may be answered once the
    application has applied the log through `index`: a quorum confirmed this node was still
    the leader after the read was asked for, and `index` was its commit index then."""

    context: int
    index: int


@dataclass(frozen=True, slots=True)
class Ready:
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    messages: tuple[Message, ...]
    committed: tuple[Entry, ...]
    soft_state: SoftState | None
    catch_up: CatchUp | None
    read_states: tuple[ReadState, ...] = ()
