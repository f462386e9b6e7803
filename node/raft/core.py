"""`RaftNode`: the Raft state machine, with no I/O of its own.

Inputs: `step(message)`, `tick()`, `propose(data)`, `transfer_leadership(target)`
and `restore(index, term)`. Output: `ready()` returns the work to do (see
node.raft.ready for the processing contract) and `advance(ready)` confirms it
was done. Time exists only as `tick()` calls and randomness only as the
injected `random.Random`, so a run is a pure function of its inputs.

Implements Raft (Ongaro & Ousterhout) with the thesis extensions PreVote
(9.6), CheckQuorum with a leader lease (6.2), and leadership transfer (3.10).
Snapshots are replaced by catch-up: the driver installs compacted, committed
history out of band and calls `restore`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import replace

from node.raft.config import RaftConfig
from node.raft.entry import Entry, EntryKind
from node.raft.errors import NotLeader, ProposalDropped
from node.raft.log import RaftLog
from node.raft.messages import (
    AppendEntries,
    AppendResponse,
    CatchUpNotice,
    Message,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from node.raft.progress import Progress, ReplicationState
from node.raft.quorum import VoteResult, quorum_index, tally
from node.raft.ready import CatchUp, Ready, ReadState, Role, SoftState
from node.raft.storage import HardState, RaftStorage

_FROM_LEADER = (AppendEntries, CatchUpNotice, TimeoutNow)


class RaftNode:
    def __init__(
        self,
        config: RaftConfig,
        storage: RaftStorage,
        rng: random.Random,
        *,
        applied_index: int = 0,
    ) -> None:
        """`applied_index` is what the application has durably applied; committed
        entries up to it are not delivered again."""
        self._config = config
        self._rng = rng
        self._log = RaftLog(storage, applied_index)
        hard_state = storage.hard_state()
        self._term = hard_state.term
        self._vote = hard_state.vote
        self._persisted = hard_state
        self._role = Role.FOLLOWER
        self._leader: str | None = None
        self._reported = SoftState(Role.FOLLOWER, None)
        self._election_elapsed_ticks = 0
        self._heartbeat_elapsed_ticks = 0
        self._election_timeout_ticks = 0
        self._reset_election_timer()
        # The term whose leader offered an entry that entry_timely refused: that leader keeps no
        # lease with this node (see RaftConfig.entry_timely). One term at most: a new term clears it.
        self._distrusted_term: int | None = None
        self._votes: dict[str, bool] = {}
        self._progress: dict[str, Progress] = {}
        self._replication_pending = False
        self._transfer_target: str | None = None
        self._transfer_elapsed_ticks = 0
        self._outbox: list[Message] = []
        self._catch_up: CatchUp | None = None
        self._outstanding: Ready | None = None
        # ReadIndex (Raft thesis 6.4), leader only: the current read round, the reads waiting for
        # a quorum to answer a round (round, commit index, context), and those confirmed.
        self._read_round = 0
        self._pending_reads: deque[tuple[int, int, int]] = deque()
        self._waiting_reads: list[int] = []     # asked before this term's first commit
        self._read_states: list[ReadState] = []

    # --- observation (read-only) ---------------------------------------------

    @property
    def node_id(self) -> str:
        return self._config.node_id

    @property
    def role(self) -> Role:
        return self._role

    @property
    def term(self) -> int:
        return self._term

    @property
    def leader(self) -> str | None:
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._log.committed

    @property
    def last_index(self) -> int:
        return self._log.last_index()

    @property
    def first_index(self) -> int:
        return self._log.first_index()

    def log_term(self, index: int) -> int | None:
        return self._log.term(index)

    # --- inputs ----------------------------------------------------------------

    def tick(self) -> None:
        """One unit of logical time has passed."""
        if self._role is Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def propose(self, data: bytes) -> int:
        """Append `data` as a new entry; returns its index. Raises NotLeader or
        ProposalDropped (nothing appended). Appending is not committing: the
        entry may still be lost if this leader is deposed."""
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader)
        if self._transfer_target is not None:
            raise ProposalDropped(f"leadership transfer to {self._transfer_target} in progress")
        if self._log.last_index() - self._log.committed >= self._config.max_uncommitted_entries:
            raise ProposalDropped(f"{self._config.max_uncommitted_entries} entries already uncommitted")
        if not self._is_valid(data):
            raise ProposalDropped("entry_validator refused the entry")
        index = self._log.last_index() + 1
        self._log.append([Entry(index, self._term, EntryKind.NORMAL, data)])
        self._after_leader_append()
        return index

    def read_index(self, context: int) -> None:
        """Confirm, for a linearizable read identified by `context`, that this node is still
        the leader: a quorum must answer a heartbeat round started after this call. A later
        Ready carries ReadState(context, index); answer the read once the application applied
        through `index`. No clock is involved, so a leader paused for any time cannot answer
        from stale state: its round is answered only by nodes still in its term. Raises
        NotLeader; reads asked before the leader committed an entry of its term wait for that
        (its commit index may lag the true one until then). At most
        `max_pending_reads` wait; beyond that ProposalDropped."""
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader)
        if len(self._pending_reads) + len(self._waiting_reads) >= self._config.max_pending_reads:
            raise ProposalDropped(f"{self._config.max_pending_reads} reads already wait for confirmation")
        if self._log.term(self._log.committed) != self._term:
            self._waiting_reads.append(context)
            return
        self._start_read_round([context])

    def _start_read_round(self, contexts: list[int]) -> None:
        self._read_round += 1
        for context in contexts:
            self._pending_reads.append((self._read_round, self._log.committed, context))
        for peer in self._config.peers:
            self._heartbeat_to(peer)
        self._confirm_reads()

    def _confirm_reads(self) -> None:
        while self._pending_reads:
            read_round, index, context = self._pending_reads[0]
            answered = 1 + sum(p.read_round >= read_round for p in self._progress.values())
            if answered < self._config.quorum:
                return
            self._pending_reads.popleft()
            self._read_states.append(ReadState(context, index))

    def transfer_leadership(self, target: str) -> None:
        """Hand leadership to `target`: stop accepting proposals, bring it up to
        date, then tell it to campaign. Aborted after an election timeout."""
        if self._role is not Role.LEADER:
            raise NotLeader(self._leader)
        if target not in self._config.voters:
            raise ValueError(f"{target!r} is not a voter")
        if target == self._config.node_id or target == self._transfer_target:
            return
        self._transfer_target = target
        self._transfer_elapsed_ticks = 0
        self._maybe_send_timeout_now(target)
        self._replicate_to(target)

    def restore(self, index: int, term: int) -> None:
        """The driver installed committed history through `index` (entry term
        `term`) out of band and called storage.restore(index, term). Call right
        after advance(), before any other input, so no entry is unpersisted."""
        if self._outstanding is not None:
            raise RuntimeError("restore() must follow advance()")
        covered = self._log.first_index() - 1 >= index or self._log.matches(index, term)
        if not covered:
            raise RuntimeError(f"storage was not restored to ({index}, {term})")
        self._log.restored(index)
        self._catch_up = None
        if self._role is Role.FOLLOWER and self._leader is not None:
            self._send(AppendResponse(self.node_id, self._leader, self._term, success=True, match_index=index))

    def distrust_leader(self, term: int) -> None:
        """The driver found that the leader of `term` does not share this node's time (its
        clock, stamped on its appends, is out of bound). From now on in that term it gets no
        lease here and none of its entries that are not yet committed (RaftConfig.entry_timely
        has the same effect for one entry). Call before stepping that leader's message."""
        if term >= self._term:
            self._distrusted_term = term

    def step(self, message: Message) -> None:
        """Feed one message received from the network."""
        if message.recipient != self._config.node_id or message.sender not in self._config.peers:
            raise ValueError(f"{self.node_id} cannot step {message}")
        if message.term > self._term and not self._adopt_higher_term(message):
            return
        if message.term < self._term:
            self._answer_stale(message)
            return
        match message:
            case VoteRequest():
                self._on_vote_request(message)
            case VoteResponse():
                self._on_vote_response(message)
            case AppendEntries():
                self._on_append(message)
            case AppendResponse():
                self._on_append_response(message)
            case TimeoutNow():
                self._on_timeout_now()
            case CatchUpNotice():
                self._on_catch_up_notice(message)

    # --- output ----------------------------------------------------------------

    def ready(self) -> Ready | None:
        """The next batch of work, or None if there is none. Process it as
        described in node.raft.ready, then call advance(ready) before asking
        for another."""
        if self._outstanding is not None:
            raise RuntimeError("advance() the previous Ready first")
        if self._replication_pending:
            self._replication_pending = False
            for peer in self._config.peers:
                self._replicate_to(peer)
        hard_state = HardState(self._term, self._vote, self._log.committed)
        soft_state = SoftState(self._role, self._leader)
        entries = self._log.unstable_entries()
        ready = Ready(
            hard_state=hard_state if self._must_persist(hard_state, entries) else None,
            entries=entries,
            messages=tuple(self._outbox[: self._config.max_ready_messages]),
            committed=self._log.next_committed(self._config.max_ready_committed),
            soft_state=soft_state if soft_state != self._reported else None,
            catch_up=self._catch_up,
            read_states=tuple(self._read_states),
        )
        if ready == _EMPTY_READY:
            return None
        del self._outbox[: len(ready.messages)]
        self._reported = soft_state
        self._catch_up = None
        self._read_states = []
        self._outstanding = ready
        return ready

    def _must_persist(self, hard_state: HardState, entries) -> bool:
        """Term and vote are persisted whenever they change (one vote per term depends on it).
        The commit index alone is not worth a synced write: after a restart the log takes
        max(persisted commit, applied), and the leader re-announces the rest. It rides along
        whenever entries or a term/vote change are persisted anyway."""
        persisted = self._persisted
        if (hard_state.term, hard_state.vote) != (persisted.term, persisted.vote):
            return True
        return bool(entries) and hard_state.commit != persisted.commit

    def advance(self, ready: Ready) -> None:
        """`ready` was fully processed: state persisted, messages sent,
        committed entries applied."""
        if ready is not self._outstanding:
            raise RuntimeError("advance() must be given the outstanding Ready")
        self._outstanding = None
        if ready.hard_state is not None:
            self._persisted = ready.hard_state
        if ready.entries:
            self._log.stable_to(ready.entries[-1])
        if ready.committed:
            self._log.applied_to(ready.committed[-1].index)

    # --- timers ------------------------------------------------------------

    def _reset_election_timer(self) -> None:
        self._election_elapsed_ticks = 0
        # Randomised in [election_tick, 2 * election_tick) so split votes resolve.
        self._election_timeout_ticks = self._config.election_tick + self._rng.randrange(self._config.election_tick)

    def _tick_election(self) -> None:
        self._election_elapsed_ticks += 1
        if self._config.can_vote and self._election_elapsed_ticks >= self._election_timeout_ticks:
            self._campaign(leader_transfer=False)

    def _tick_leader(self) -> None:
        self._election_elapsed_ticks += 1
        self._heartbeat_elapsed_ticks += 1
        if self._transfer_target is not None:
            self._transfer_elapsed_ticks += 1
            if self._transfer_elapsed_ticks >= self._config.election_tick:
                self._transfer_target = None  # the target did not take over in time
        if self._election_elapsed_ticks >= self._config.election_tick:
            self._election_elapsed_ticks = 0
            if self._config.check_quorum and not self._quorum_recently_active():
                self._become_follower(self._term, None)
                return
        for progress in self._progress.values():
            progress.tick_stall(self._config.election_tick)
        if self._heartbeat_elapsed_ticks >= self._config.heartbeat_tick:
            self._heartbeat_elapsed_ticks = 0
            for peer in self._config.peers:
                self._heartbeat_to(peer)

    def _quorum_recently_active(self) -> bool:
        """CheckQuorum: has a quorum (counting ourselves) been heard from since
        the last round? Starts the next round either way."""
        active = 1 + sum(p.recent_active for p in self._progress.values())
        for progress in self._progress.values():
            progress.recent_active = False
        return active >= self._config.quorum

    def _in_lease(self) -> bool:
        """Leader lease: we heard from a live leader (or are one) within the
        minimum election timeout, so no election can be warranted yet."""
        return (
            self._config.check_quorum
            and self._leader is not None
            and not self._distrusts_leader()
            and self._election_elapsed_ticks < self._config.election_tick
        )

    def _distrusts_leader(self) -> bool:
        return self._distrusted_term == self._term

    # --- role changes ----------------------------------------------------------

    def _become_follower(self, term: int, leader: str | None) -> None:
        if term != self._term:
            self._term, self._vote = term, None
        self._role = Role.FOLLOWER
        self._leader = leader
        self._progress = {}
        self._votes = {}
        self._transfer_target = None
        self._pending_reads.clear()     # never confirmed: the driver times them out
        self._waiting_reads.clear()
        self._reset_election_timer()

    def _campaign(self, leader_transfer: bool) -> None:
        if self._config.pre_vote and not leader_transfer:
            # PreVote: ask whether we could win before disturbing anyone's term.
            self._role = Role.PRE_CANDIDATE
            self._start_election(self._term + 1, pre_vote=True, leader_transfer=False)
        else:
            self._become_candidate(leader_transfer)

    def _become_candidate(self, leader_transfer: bool) -> None:
        self._term += 1
        self._vote = self._config.node_id
        self._role = Role.CANDIDATE
        self._start_election(self._term, pre_vote=False, leader_transfer=leader_transfer)

    def _start_election(self, term: int, pre_vote: bool, leader_transfer: bool) -> None:
        # A (pre-)candidate knows no leader, which also ends its own lease: it
        # must be able to vote for a better-placed candidate.
        self._leader = None
        self._reset_election_timer()
        self._votes = {self._config.node_id: True}
        for peer in self._config.peers:
            self._send(
                VoteRequest(
                    self.node_id, peer, term, self._log.last_index(), self._log.last_term(),
                    pre_vote=pre_vote, leader_transfer=leader_transfer,
                )
            )
        self._count_votes()

    def _count_votes(self) -> None:
        result = tally(self._votes, len(self._config.voters), self._config.quorum)
        if result is VoteResult.LOST:
            self._become_follower(self._term, None)
        elif result is VoteResult.WON and self._role is Role.PRE_CANDIDATE:
            self._become_candidate(leader_transfer=False)
        elif result is VoteResult.WON:
            self._become_leader()

    def _become_leader(self) -> None:
        self._role = Role.LEADER
        self._leader = self._config.node_id
        self._reset_election_timer()
        self._heartbeat_elapsed_ticks = 0
        next_index = self._log.last_index() + 1
        self._progress = {peer: Progress(next=next_index) for peer in self._config.peers}
        self._read_round = 0
        # Figure 8: entries of earlier terms commit only once an entry of this
        # term does, so start the term with one.
        self._log.append_noop(self._term)
        self._after_leader_append()

    # --- elections ---------------------------------------------------------

    def _adopt_higher_term(self, message: Message) -> bool:
        """Handle a message from a later term. Returns False to ignore it."""
        if isinstance(message, VoteRequest):
            if self._in_lease() and not message.leader_transfer:
                # Within the lease a live leader exists: this candidate is
                # disruptive (e.g. just rejoined). Do not even adopt its term.
                return False
            if message.pre_vote:
                return True  # a pre-vote never changes anyone's term
        if isinstance(message, VoteResponse) and message.pre_vote and message.granted:
            return True  # carries the term we would campaign in, not a newer one
        leader = message.sender if isinstance(message, _FROM_LEADER) else None
        self._become_follower(message.term, leader)
        return True

    def _answer_stale(self, message: Message) -> None:
        """A message from an earlier term. Mostly obsolete, but two kinds need a
        reply carrying our term, or PreVote + CheckQuorum can deadlock:
        - a leader of an older term: a node that advanced its term in a
          partition ignores that leader forever while the leader's followers,
          in their lease, ignore the node's (pre-)votes. Our reply deposes it.
        - a pre-vote from a node behind on terms: it may hold the best log
          while the higher-term nodes cannot win; our rejection teaches it the
          term so its next pre-vote counts.
        """
        if not (self._config.check_quorum or self._config.pre_vote):
            return
        if isinstance(message, (AppendEntries, CatchUpNotice)):
            self._send(AppendResponse(self.node_id, message.sender, self._term, success=False))
        elif isinstance(message, VoteRequest) and message.pre_vote:
            self._send(VoteResponse(self.node_id, message.sender, self._term, granted=False, pre_vote=True))

    def _on_vote_request(self, request: VoteRequest) -> None:
        if self._may_grant(request):
            if not request.pre_vote:
                self._vote = request.sender
                self._reset_election_timer()
            # Echo the request's term: for a pre-vote it is the candidate's future term.
            self._send(VoteResponse(self.node_id, request.sender, request.term, granted=True, pre_vote=request.pre_vote))
        else:
            self._send(VoteResponse(self.node_id, request.sender, self._term, granted=False, pre_vote=request.pre_vote))

    def _may_grant(self, request: VoteRequest) -> bool:
        if not self._config.can_vote:
            return False
        free_to_vote = self._vote == request.sender or (self._vote is None and self._leader is None)
        future_pre_vote = request.pre_vote and request.term > self._term
        return (free_to_vote or future_pre_vote) and self._log.is_up_to_date(request.last_index, request.last_term)

    def _on_vote_response(self, response: VoteResponse) -> None:
        if self._answers_current_election(response):
            self._votes.setdefault(response.sender, response.granted)
            self._count_votes()

    def _answers_current_election(self, response: VoteResponse) -> bool:
        if self._role is Role.CANDIDATE:
            return not response.pre_vote  # the term check in step() already matched it
        if self._role is Role.PRE_CANDIDATE:
            # A grant echoes the term we asked about; a rejection carries the voter's term.
            return response.pre_vote and (not response.granted or response.term == self._term + 1)
        return False

    def _on_timeout_now(self) -> None:
        if self._role is Role.FOLLOWER and self._config.can_vote:
            self._campaign(leader_transfer=True)

    # --- replication: follower side ------------------------------------------

    def _follow(self, leader: str) -> None:
        """A message from the leader of our term: (re)start its lease."""
        if self._role is Role.LEADER:
            raise AssertionError(f"two leaders in term {self._term}: {self.node_id} and {leader}")
        if self._distrusts_leader():
            return  # no lease for a leader whose entry we refused as untimely: let an election run
        if self._role is not Role.FOLLOWER:
            self._become_follower(self._term, leader)
        self._leader = leader
        self._election_elapsed_ticks = 0

    def _on_append(self, append: AppendEntries) -> None:
        self._follow(append.sender)
        prev_index, prev_term, entries = append.prev_index, append.prev_term, append.entries
        committed = self._log.committed
        if prev_index < committed:
            # Our committed prefix agrees with every leader of this or a later
            # term, so start checking right after it.
            entries = tuple(e for e in entries if e.index > committed)
            prev_index, prev_term = committed, self._log.term(committed)
        if not self._log.matches(prev_index, prev_term):
            self._reply_append(append, success=False, reject_hint=self._reject_hint(prev_index, prev_term))
            return
        new_entries = self._log.new_suffix(entries)
        if not all(e.kind is EntryKind.NOOP or self._is_valid(e.data) for e in new_entries):
            return  # refuse, without acknowledging anything in the message
        last_verified = prev_index + len(entries)
        timely = self._timely_prefix(new_entries, append)
        if len(timely) < len(new_entries):
            self._distrusted_term = self._term
            last_verified = new_entries[len(timely)].index - 1
            new_entries = timely
        self._log.append(new_entries)
        self._log.commit_to(min(append.leader_commit, last_verified))
        self._reply_append(append, success=True, match_index=last_verified)

    def _timely_prefix(self, entries, append: AppendEntries):
        """The entries before the first one that is refused as untimely: any, from a leader
        we distrust; a batch whose time entry_timely refuses. Entries the leader says are
        committed are a majority's decision already and are taken from anyone."""
        check = self._config.entry_timely
        distrusted = self._distrusts_leader()
        if check is None and not distrusted:
            return entries
        for position, entry in enumerate(entries):
            if entry.index > append.leader_commit and (
                    distrusted or (entry.kind is EntryKind.NORMAL and not check(entry.data))):
                return entries[:position]
        return entries

    def _reject_hint(self, prev_index: int, prev_term: int) -> int:
        """Highest index that could still match the leader: nothing after our
        log's end, and no entry of a term above prev_term (the leader's log has
        only terms <= prev_term before prev_index). Skips a whole conflicting
        term per round trip."""
        index = min(prev_index - 1, self._log.last_index())
        while index > self._log.committed and (self._log.term(index) or 0) > prev_term:
            index -= 1
        return index

    def _reply_append(self, append: AppendEntries, *, success: bool, match_index: int = 0, reject_hint: int = 0) -> None:
        self._send(
            AppendResponse(
                self.node_id, append.sender, self._term, success=success, match_index=match_index,
                rejected_index=0 if success else append.prev_index, reject_hint=reject_hint,
                read_round=append.read_round,
            )
        )

    def _on_catch_up_notice(self, notice: CatchUpNotice) -> None:
        self._follow(notice.sender)
        if notice.index <= self._log.committed:
            match_index = self._log.committed  # a stale notice: we are past it
        elif self._log.matches(notice.index, notice.index_term):
            match_index = notice.index
        else:
            self._catch_up = CatchUp(notice.sender, notice.index, notice.index_term)
            return
        self._send(AppendResponse(self.node_id, notice.sender, self._term, success=True, match_index=match_index))

    # --- replication: leader side ----------------------------------------------

    def _after_leader_append(self) -> None:
        self._replication_pending = True  # batched: sent when the next Ready is built
        self._maybe_commit()

    def _on_append_response(self, response: AppendResponse) -> None:
        progress = self._progress.get(response.sender) if self._role is Role.LEADER else None
        if progress is None:
            return
        progress.recent_active = True
        if response.read_round > progress.read_round:
            progress.read_round = response.read_round
            self._confirm_reads()
        if response.success:
            if progress.acknowledged(response.match_index):
                committed = self._maybe_commit()
                self._maybe_send_timeout_now(response.sender)
                self._replicate_to(response.sender)
                if committed:
                    self._announce_commit()
        elif progress.rejected(response.rejected_index, response.reject_hint):
            self._replicate_to(response.sender)

    def _maybe_commit(self) -> bool:
        """Advances the commit index as far as a quorum has replicated; True if it moved."""
        matches = [
            self._log.last_index() if voter == self._config.node_id else self._progress[voter].match
            for voter in self._config.voters
        ]
        index = quorum_index(matches, self._config.quorum)
        # Figure 8: only an entry of our own term is committed by counting replicas.
        if index > self._log.committed and self._log.term(index) == self._term:
            self._log.commit_to(index)
            if self._waiting_reads:               # the term's first commit: its reads may go
                waiting, self._waiting_reads = self._waiting_reads, []
                self._start_read_round(waiting)
            return True
        return False

    def _announce_commit(self) -> None:
        """Tells each replicating follower with nothing more to receive now the new commit
        index at once, as a heartbeat does (an empty append at its match index), instead of
        with the next entries or heartbeat. Otherwise a follower applies a block only when the
        next entry arrives, in the same Ready, and its acknowledgement of that entry waits
        behind the block's synced write: 2.7-3 ms of every sequential commit (W1 trace)."""
        last_index = self._log.last_index()
        for peer in self._config.peers:
            progress = self._progress[peer]
            if progress.state is not ReplicationState.REPLICATE or progress.next <= last_index:
                continue                    # a probe/catch-up, or entries (with the commit) follow
            match_term = self._log.term(progress.match)
            if match_term is not None:
                self._send(AppendEntries(self.node_id, peer, self._term, progress.match, match_term, (),
                                         self._log.committed))

    def _maybe_send_timeout_now(self, peer: str) -> None:
        if peer == self._transfer_target and self._progress[peer].match == self._log.last_index():
            self._send(TimeoutNow(self.node_id, peer, self._term))

    def _replicate_to(self, peer: str) -> None:
        """Send `peer` as many batches of entries as flow control allows."""
        while self._send_append(peer):
            pass

    def _send_append(self, peer: str) -> bool:
        """Send the next batch (or probe, or catch-up notice) to `peer`.
        Returns True if another batch could follow at once."""
        progress = self._progress[peer]
        if progress.is_paused(self._config.max_inflight_appends):
            return False
        if progress.state is ReplicationState.CATCH_UP:
            self._send_catch_up_notice(peer, progress)
            return False
        prev_index = progress.next - 1
        prev_term = self._log.term(prev_index)
        if prev_term is None:  # compacted: the follower must catch up out of band
            progress.become_catch_up()
            self._send_catch_up_notice(peer, progress)
            return False
        entries = self._log.entries_for_append(
            progress.next, self._config.max_append_entries, self._config.max_append_bytes
        )
        if not entries and progress.state is ReplicationState.REPLICATE:
            return False  # nothing new; heartbeats carry the commit index
        self._send(AppendEntries(self.node_id, peer, self._term, prev_index, prev_term, tuple(entries), self._log.committed))
        progress.sent_append(entries[-1].index if entries else prev_index, len(entries))
        return True

    def _send_catch_up_notice(self, peer: str, progress: Progress) -> None:
        marker = self._log.first_index() - 1
        self._send(CatchUpNotice(self.node_id, peer, self._term, marker, self._log.term(marker) or 0))
        progress.awaiting_answer = True

    def _heartbeat_to(self, peer: str) -> None:
        """Keep the lease alive and the commit index flowing. A replicating
        follower gets an empty append at its match index (which it accepts, so
        the commit rides on verified agreement); a probing or catching-up
        follower gets its probe or notice again, in case it was lost."""
        progress = self._progress[peer]
        if progress.state is not ReplicationState.REPLICATE:
            progress.awaiting_answer = False
            self._replicate_to(peer)
            return
        match_term = self._log.term(progress.match)
        if match_term is None:
            progress.become_probe(progress.match + 1)
            self._replicate_to(peer)
            return
        self._send(AppendEntries(self.node_id, peer, self._term, progress.match, match_term, (), self._log.committed))

    # --- helpers ----------------------------------------------------------------

    def _is_valid(self, data: bytes) -> bool:
        validator = self._config.entry_validator
        return validator is None or validator(data)

    def _send(self, message: Message) -> None:
        if self._read_round and isinstance(message, AppendEntries):
            message = replace(message, read_round=self._read_round)
        self._outbox.append(message)


_EMPTY_READY = Ready(hard_state=None, entries=(), messages=(), committed=(), soft_state=None, catch_up=None)
