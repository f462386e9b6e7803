"""nanum's consensus core: a sans-I/O Raft state machine.

Modules, one concept each:
- entry: Entry, EntryKind (the replicated unit)
- messages: every message nodes exchange
- storage: HardState, the RaftStorage protocol, MemoryRaftStorage
- log: RaftLog, the stable + unstable view the core reads
- progress: the leader's per-follower replication state and flow control
- quorum: majority arithmetic
- config: RaftConfig and its limits
- ready: Ready (the core's output) and the contract for processing it
- errors: exceptions raised at the input boundary
- core: RaftNode, the state machine
"""

from node.raft.config import RaftConfig
from node.raft.core import RaftNode
from node.raft.entry import Entry, EntryKind
from node.raft.errors import CompactedError, NotLeader, ProposalDropped
from node.raft.messages import (
    AppendEntries,
    AppendResponse,
    CatchUpNotice,
    Message,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from node.raft.ready import CatchUp, Ready, ReadState, Role, SoftState
from node.raft.storage import HardState, MemoryRaftStorage, RaftStorage

__all__ = [
    "AppendEntries",
    "AppendResponse",
    "CatchUp",
    "CatchUpNotice",
    "CompactedError",
    "Entry",
    "EntryKind",
    "HardState",
    "MemoryRaftStorage",
    "Message",
    "NotLeader",
    "ProposalDropped",
    "RaftConfig",
    "RaftNode",
    "RaftStorage",
    "Ready",
    "ReadState",
    "Role",
    "SoftState",
    "TimeoutNow",
    "VoteRequest",
    "VoteResponse",
]
