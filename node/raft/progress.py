"""`Progress`: the leader's view of one follower's log and the flow control
for replicating to it (modelled on etcd's progress tracker).

States:
- PROBE: the leader does not know where the follower's log diverges. At most
  one append is outstanding; heartbeats re-arm it (the probe may be lost).
- REPLICATE: the follower acknowledged `match`; appends are pipelined
  optimistically from `next`, at most `max_inflight` unacknowledged ones.
- CATCH_UP: the follower needs entries the leader compacted. The leader sends
  a CatchUpNotice (re-armed by heartbeats) until an ack shows the follower
  restored past the compaction point.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


class ReplicationState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    CATCH_UP = "catch_up"


@dataclass(slots=True)
class Progress:
    next: int
    match: int = 0
    state: ReplicationState = ReplicationState.PROBE
    # PROBE / CATCH_UP: a probe or notice is outstanding; wait for an answer or the next heartbeat.
    awaiting_answer: bool = False
    # REPLICATE: last index of each unacknowledged append, oldest first.
    inflight: deque[int] = field(default_factory=deque)
    # REPLICATE: ticks since an ack last advanced `match` while appends were in flight.
    stalled_ticks: int = 0
    # Heard from this follower since the leader's last CheckQuorum round.
    recent_active: bool = False
    # Highest read round (ReadIndex) this follower answered in the leader's term.
    read_round: int = 0

    def is_paused(self, max_inflight: int) -> bool:
        if self.state is ReplicationState.REPLICATE:
            return len(self.inflight) >= max_inflight
        return self.awaiting_answer

    def become_probe(self, next_index: int) -> None:
        self.state = ReplicationState.PROBE
        self.next = max(self.match + 1, next_index)
        self._clear_flow()

    def become_replicate(self) -> None:
        self.state = ReplicationState.REPLICATE
        self.next = self.match + 1
        self._clear_flow()

    def become_catch_up(self) -> None:
        self.state = ReplicationState.CATCH_UP
        self._clear_flow()

    def _clear_flow(self) -> None:
        self.awaiting_answer = False
        self.inflight.clear()
        self.stalled_ticks = 0

    def sent_append(self, last_index: int, entry_count: int) -> None:
        if self.state is ReplicationState.REPLICATE:
            if entry_count:
                self.next = last_index + 1
                self.inflight.append(last_index)
        else:
            self.awaiting_answer = True

    def acknowledged(self, index: int) -> bool:
        """The follower's log matches ours through `index`. Returns True if
        that moved replication forward (more may be sent)."""
        if index < self.match or (index == self.match and self.state is ReplicationState.REPLICATE):
            return False
        self.match = index
        if self.state is ReplicationState.REPLICATE:
            self.next = max(self.next, index + 1)
            while self.inflight and self.inflight[0] <= index:
                self.inflight.popleft()
            self.stalled_ticks = 0
        else:
            # A probe (or post-catch-up ack) located the follower: pipeline from here.
            self.become_replicate()
        return True

    def rejected(self, rejected_index: int, reject_hint: int) -> bool:
        """The follower's log did not match ours at `rejected_index`. Returns
        True if the leader should send again from the new `next`."""
        if rejected_index < self.match:
            return False  # a stale answer: the follower acknowledged more since
        if rejected_index == self.match:
            # The follower no longer holds what it acknowledged: it lost its
            # disk. Nothing of its log is known to match any more.
            self.match = 0
        elif self.state is ReplicationState.PROBE and rejected_index != self.next - 1:
            return False  # answer to an older probe
        if self.state is ReplicationState.CATCH_UP:
            return False  # only an ack after restore ends catch-up
        self.become_probe(min(rejected_index, reject_hint + 1))
        return True

    def tick_stall(self, limit_ticks: int) -> None:
        """Presume in-flight appends lost after `limit_ticks` without progress;
        probing again resends them."""
        if self.state is not ReplicationState.REPLICATE or not self.inflight:
            return
        self.stalled_ticks += 1
        if self.stalled_ticks >= limit_ticks:
            self.become_probe(self.match + 1)
