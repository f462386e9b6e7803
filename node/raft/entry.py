"""Log entries: the unit Raft replicates.

Owns `Entry` and `EntryKind`. An entry is immutable; its `(index, term)` pair
identifies it uniquely across the cluster (Raft's log-matching property).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class EntryKind(enum.Enum):
    # A leader appends one NOOP at the start of its term so that it can commit
    # entries of earlier terms (which it may only count indirectly, Figure 8).
    NOOP = "noop"
    NORMAL = "normal"


@dataclass(frozen=True, slots=True)
class Entry:
    index: int
    term: int
    kind: EntryKind
    data: bytes = b""

    @property
    def size_bytes(self) -> int:
        """Payload size used by the per-message byte budget."""
        return len(self.data)
