"""Tests of the LMDB store through the Ledger: atomicity, durability, refusals, a full map.

The crash tests run tests/store_writer.py as a real child process and SIGKILL it at seeded
moments; the store is then reopened in this process and checked. Set NANUM_TEST_SEED to
replay or vary the moments; a failure message always names the seed.
"""

from __future__ import annotations

import itertools
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ledger import merkle
from ledger.block import decode_block, decode_genesis_block
from ledger.ledger import Ledger
from ledger.merkle import leaf_hash
from ledger.codes import Code
from ledger.encoding import encode
from ledger.state import MemoryState, TxRecord
from ledger.store import Store, StoreError, StoreFull
from ledger.verify import verify_store
from tests import store_writer
from tests.consortium import DAY_MS, GENESIS_TIME_MS, TestConsortium

SEED = int(os.environ.get("NANUM_TEST_SEED", "20250611"))
WRITER = Path(__file__).with_name("store_writer.py")
REPO = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT_S = 20.0
TXS_PER_BLOCK = 8


def time_of(height: int) -> int:
    return GENESIS_TIME_MS + height * 60_000


def fresh_consortium() -> TestConsortium:
    """The test consortium, with tx ids far from those store_writer.py uses."""
    return TestConsortium(_ids=itertools.count(10**15))


def genesis_in_store(path: Path, map_size: int, max_map_size: int) -> Ledger:
    """A ledger on a Store with explicit map limits (Ledger.create takes no maximum)."""
    store = Store(path, map_size_bytes=map_size, max_map_size_bytes=max_map_size)
    store.commit_block(decode_genesis_block(TestConsortium().genesis_raw, MemoryState()))
    return Ledger(store)


def assert_verifies(ledger: Ledger, context: str = "") -> None:
    report = verify_store(ledger.store)
    assert report.ok, f"{context}verify_store: {report.problem}"


# --- crash safety ------------------------------------------------------------------------


class Child:
    """store_writer.py as a child process, with its stdout read line by line (with a deadline)."""

    def __init__(self, path: Path, max_blocks: int = 1_000_000) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(TXS_PER_BLOCK), str(max_blocks)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        self._buffer = b""
        self.heights: list[int] = []
        self._selector = selectors.DefaultSelector()
        self._selector.register(self.proc.stdout, selectors.EVENT_READ)

    def _take_lines(self) -> None:
        *complete, self._buffer = self._buffer.split(b"\n")
        self.heights.extend(int(line) for line in complete)

    def read_lines(self, count: int) -> None:
        """Blocks until the child has printed ``count`` lines in all."""
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        while len(self.heights) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(timeout=left):
                self.kill()
                raise AssertionError(f"store_writer printed {len(self.heights)} of {count} lines "
                                     f"in {CHILD_TIMEOUT_S}s; stderr: {self.stderr!r}")
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                self.proc.wait()
                raise AssertionError(f"store_writer exited ({self.proc.returncode}) early; "
                                     f"stderr: {self.proc.stderr.read()!r}")
            self._buffer += chunk
            self._take_lines()

    def kill(self) -> int:
        """SIGKILLs the child, collects every line it printed before dying, returns the last
        acknowledged height."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self._buffer += self.proc.stdout.read()
        self._take_lines()
        self.stderr = self.proc.stderr.read()
        self._selector.close()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.heights[-1]


def check_after_crash(path: Path, acked: int, context: str) -> int:
    """Reopens the store and checks everything a crash must not break; returns the head."""
    ledger = Ledger.open(path)
    try:
        head = ledger.height
        assert acked <= head <= acked + 1, (
            f"{context}the child acknowledged height {acked}, the reopened store is at {head}")
        for height in range(head + 1):
            assert ledger.block(height) is not None, f"{context}block {height} of {head} is missing"
        beyond = ledger.block(head + 1) is not None
        assert not beyond, f"{context}a block past the head {head} is stored"
        assert_verifies(ledger, context)
        # Whole blocks or nothing: each committed block's member holds all its deposits, and
        # the member of the block that was in flight (if it did not commit) does not exist.
        consortium = TestConsortium()
        for height in range(1, head + 1):
            member = consortium.member(store_writer.member_name(height)).party_id
            expected = sum(store_writer.points_for(height, i) for i in range(TXS_PER_BLOCK - 1))
            assert ledger.balance(member)[0] == expected, f"{context}block {height} is partial"
        in_flight = consortium.member(store_writer.member_name(head + 1)).party_id
        assert not ledger.member_exists(in_flight), f"{context}block {head + 1} left state behind"
        assert ledger.tx(store_writer.tx_id(head + 1, 0)) is None, f"{context}block {head + 1} left a tx"
        return head
    finally:
        ledger.close()


def crash_cycle(path: Path, how: str, amount: float, head: int | None, where: str) -> int:
    """Starts the writer on the store, SIGKILLs it after ``amount`` more acknowledged blocks
    (``how == "lines"``) or ``amount`` seconds, checks the store; returns its head."""
    child = Child(path)
    try:
        child.read_lines(1)                # the store is open (and, at first, created)
        if head is not None:
            assert child.heights[0] == head, f"{where}the restarted writer sees another head"
        if how == "lines":
            child.read_lines(1 + amount)
        else:
            time.sleep(amount)
    finally:
        alive = child.proc.poll() is None
        if alive:
            acked = child.kill()
    assert alive and child.proc.returncode == -signal.SIGKILL, (
        f"{where}the writer exited on its own ({child.proc.returncode}): {child.proc.stderr.read()!r}")
    assert child.stderr == b"", f"{where}the writer failed: {child.stderr!r}"
    return check_after_crash(path, acked, where)


def test_sigkill_at_seeded_moments_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(SEED)
    context = f"[NANUM_TEST_SEED={SEED}] "
    path = tmp_path / "store"
    plan = [("lines", rng.randint(1, 25)), ("delay", rng.uniform(0.0, 0.1)),
            ("lines", rng.randint(1, 25)), ("delay", rng.uniform(0.0, 0.1)),
            ("lines", rng.randint(1, 5))]
    head = None
    for cycle, (how, amount) in enumerate(plan):
        where = f"{context}cycle {cycle} ({how} {amount}): "
        try:
            head = crash_cycle(path, how, amount, head, where)
        except AssertionError:
            raise
        except Exception as exc:        # anything else still names the seed that replays it
            raise AssertionError(f"{where}{exc!r}") from exc

    # After all the crashes the ledger keeps working in this process, and what it commits stays.
    ledger = Ledger.open(path)
    consortium = fresh_consortium()
    member = consortium.member("after-the-crashes")
    ledger.commit(ledger.build([consortium.register(member), consortium.deposit(member, 77)],
                               time_of(10_000)))
    assert ledger.height == head + 1, context
    ledger.close()
    ledger = Ledger.open(path)
    assert ledger.height == head + 1, context
    assert ledger.balance(member.party_id)[0] == 77, context
    assert_verifies(ledger, context)
    ledger.close()


def test_a_writer_that_finishes_leaves_every_block(tmp_path):
    path = tmp_path / "store"
    child = subprocess.run([sys.executable, str(WRITER), str(path), "3", "12"], cwd=REPO,
                           capture_output=True, timeout=CHILD_TIMEOUT_S, check=True)
    assert child.stdout.split() == [str(h).encode() for h in range(13)]
    ledger = Ledger.open(path)
    assert ledger.height == 12
    assert_verifies(ledger)
    ledger.close()


# --- reopening and refusals -----------------------------------------------------------------


def small_chain(path: Path) -> tuple[Ledger, TestConsortium, list]:
    consortium = TestConsortium()
    ledger = Ledger.create(path, consortium.genesis_raw)
    alice, bob = consortium.member("alice"), consortium.member("bob")
    txs = [[consortium.register(alice), consortium.register(bob, centre=1)],
           [consortium.deposit(alice, 100), consortium.deposit(alice, 40, centre=1),
            consortium.deposit(bob, 5, centre=1)]]
    voucher = consortium.voucher(alice, 60, expiry_ms=GENESIS_TIME_MS + DAY_MS)
    txs.append([consortium.redeem(voucher, 60)])
    for height, batch in enumerate(txs, start=1):
        ledger.commit(ledger.build(batch, time_of(height)))
    return ledger, consortium, txs


def test_reopening_gives_the_same_head_state_and_answers(tmp_path):
    ledger, consortium, txs = small_chain(tmp_path / "store")
    alice = consortium.member("alice").party_id
    before = (ledger.head.header, ledger.head.hash, ledger.head.commitment.to_bytes(),
              ledger.head.frontier.hashes, ledger.balance(alice), ledger.genesis,
              [ledger.block(h) for h in range(ledger.height + 1)])
    redeem_view = ledger.tx(txs[2][0].tx_id)
    ledger.close()

    reopened = Ledger.open(tmp_path / "store")
    after = (reopened.head.header, reopened.head.hash, reopened.head.commitment.to_bytes(),
             reopened.head.frontier.hashes, reopened.balance(alice), reopened.genesis,
             [reopened.block(h) for h in range(reopened.height + 1)])
    assert after == before
    assert reopened.head.commitment.root() == reopened.head.header.state_root
    assert reopened.head.frontier.root() == reopened.head.header.tree_root
    assert reopened.tx(txs[2][0].tx_id) == redeem_view
    # and it extends the chain exactly as the original would have
    carol = consortium.member("carol")
    reopened.commit(reopened.build([consortium.register(carol)], time_of(4)))
    assert reopened.height == 4
    assert_verifies(reopened)
    reopened.close()


def test_create_refuses_a_store_that_holds_a_chain(tmp_path):
    ledger, _, _ = small_chain(tmp_path / "store")
    head = ledger.head.hash
    ledger.close()
    other = TestConsortium(threshold=3)        # another consortium, another genesis
    assert other.chain_id != TestConsortium().chain_id
    for genesis in (TestConsortium().genesis_raw, other.genesis_raw):
        with pytest.raises(StoreError, match="already holds a chain"):
            Ledger.create(tmp_path / "store", genesis)
    reopened = Ledger.open(tmp_path / "store")
    assert reopened.height == 3 and reopened.head.hash == head
    assert_verifies(reopened)
    reopened.close()


def test_open_refuses_an_empty_store(tmp_path):
    Store(tmp_path / "empty").close()
    with pytest.raises(StoreError, match="no genesis block"):
        Ledger.open(tmp_path / "empty")


def test_a_block_built_on_a_stale_head_is_refused_and_changes_nothing(tmp_path):
    ledger, consortium, _ = small_chain(tmp_path / "store")
    dave, erin = consortium.member("dave"), consortium.member("erin")
    first = ledger.build([consortium.register(dave)], time_of(4))
    stale_tx = consortium.register(erin)
    stale = ledger.build([stale_tx], time_of(4))
    ledger.commit(first)
    head = ledger.head.hash

    with pytest.raises(StoreError):
        ledger.commit(stale)
    # the store refuses it on its own too, as it does a second copy of the committed block
    with pytest.raises(StoreError, match="does not extend"):
        ledger.store.commit_block(stale)
    with pytest.raises(StoreError, match="does not extend"):
        ledger.store.commit_block(first)

    assert ledger.height == 4 and ledger.store.height() == 4
    assert ledger.head.hash == head and ledger.store.head().hash == head
    assert ledger.block(4) == first.block.encode()
    assert ledger.block(5) is None
    assert ledger.tx(stale_tx.tx_id) is None
    assert not ledger.member_exists(erin.party_id)
    assert ledger.member_exists(dave.party_id)
    assert ledger.history(erin.party_id) == []
    assert_verifies(ledger)
    ledger.close()


# --- the map: growing, and full -------------------------------------------------------------


def test_the_map_grows_when_the_limit_allows(tmp_path):
    initial = 64 * 1024
    ledger = genesis_in_store(tmp_path / "store", initial, 64 * 1024 * 1024)
    consortium = fresh_consortium()
    members = [consortium.member(f"grow{i}") for i in range(40)]
    for height, member in enumerate(members, start=1):
        ledger.commit(ledger.build([consortium.register(member)] +
                                   [consortium.deposit(member, 3) for _ in range(9)],
                                   time_of(height)))
    grown = ledger.store.env.info()["map_size"]
    assert initial < grown <= 64 * 1024 * 1024
    assert ledger.height == 40
    assert all(ledger.balance(m.party_id)[0] == 27 for m in members)
    assert_verifies(ledger)
    ledger.close()


def test_a_block_larger_than_twice_the_map_still_fits_under_the_limit(tmp_path):
    # The module promises to grow the map "doubling, up to max_map_size_bytes"; a single block
    # that needs more than one doubling must not be refused while the limit is far away.
    ledger = genesis_in_store(tmp_path / "store", 64 * 1024, 64 * 1024 * 1024)
    consortium = fresh_consortium()
    txs = [consortium.register(consortium.member(f"big{i}")) for i in range(400)]
    executed = ledger.build(txs, time_of(1))
    ledger.commit(executed)
    assert ledger.height == 1
    assert ledger.store.env.info()["map_size"] <= 64 * 1024 * 1024
    assert_verifies(ledger)
    ledger.close()


def test_a_map_too_small_for_the_layout_is_a_store_error(tmp_path):
    # Every refusal of the store is a StoreError with a message saying what to do, not a raw
    # backend exception the callers do not catch.
    with pytest.raises(StoreError):
        Store(tmp_path / "tiny", map_size_bytes=16 * 1024, max_map_size_bytes=16 * 1024)


def test_a_full_store_refuses_the_block_whole_and_stays_usable(tmp_path):
    limit = 256 * 1024
    path = tmp_path / "store"
    ledger = genesis_in_store(path, limit, limit)
    consortium = fresh_consortium()
    committed: list = []
    refused = None
    for height in range(1, 500):
        members = [consortium.member(f"fill{height}.{i}") for i in range(5)]
        txs = [consortium.register(m) for m in members] + [consortium.deposit(members[0], height % 90 + 1)]
        executed = ledger.build(txs, time_of(height))
        try:
            ledger.commit(executed)
        except StoreFull as exc:
            refused = (exc, txs, executed, members)
            break
        committed.append((txs, members))
    assert refused is not None, f"{limit} bytes never filled up"
    exc, txs, executed, members = refused
    message = str(exc)
    assert str(path) in message and str(limit) in message and "nothing of this write" in message

    head = len(committed)
    assert head >= 3, "the map should hold a few blocks before filling"
    assert ledger.height == head and ledger.store.height() == head
    assert ledger.block(head + 1) is None
    assert all(ledger.tx(tx.tx_id) is None for tx in txs)
    assert not any(ledger.member_exists(m.party_id) for m in members)
    assert_verifies(ledger)
    # earlier data is still readable, with proofs that verify
    first_txs, first_members = committed[0]
    view = ledger.tx(first_txs[-1].tx_id)
    merkle.verify_inclusion(leaf_hash(view.entry), view.record.leaf_index, view.tree_size,
                            view.proof, view.tree_root)
    assert ledger.balance(first_members[0].party_id)[0] == 2
    ledger.close()

    # Reopened with a larger map, the same block (rebuilt identically) now commits.
    ledger = Ledger.open(path, map_size_bytes=4 * 1024 * 1024)
    assert ledger.height == head
    again = ledger.build(txs, time_of(head + 1))
    assert again.block.encode() == executed.block.encode()
    ledger.commit(again)
    assert ledger.height == head + 1
    assert all(ledger.member_exists(m.party_id) for m in members)
    assert_verifies(ledger)
    ledger.close()


# --- Merkle nodes: leaves stored apart, interior levels only every MERKLE_LEVEL_STEP ---------


def test_merkle_nodes_of_every_level_match_the_reference_and_proofs_verify(tmp_path):
    """Over 2**9 leaves, so levels 8 and 9 exist: every perfect-subtree node the store gives
    (stored or recomputed) is the reference's, and so are roots and proofs at many sizes."""
    from ledger.store import MERKLE_LEVEL_STEP
    consortium = TestConsortium()
    ledger = Ledger.create(tmp_path / "store", consortium.genesis_raw)
    members = [consortium.member(f"m{i}") for i in range(600)]
    for height, start in enumerate(range(0, 600, 150), start=1):
        ledger.commit(ledger.build([consortium.register(m) for m in members[start:start + 150]], time_of(height)))
    size = ledger.head.header.tree_size
    assert size > 2 ** 9 and MERKLE_LEVEL_STEP == 8
    nodes = merkle.MemoryNodes()
    frontier = merkle.Frontier.empty()
    for height in range(ledger.height + 1):
        for entry in decode_block(ledger.block(height)).entries:
            nodes.put(frontier.append(leaf_hash(entry)))
    with ledger.store.reader() as r:
        for level in range(0, 10):
            for index in range(size >> level):
                assert r.merkle_node(level, index) == nodes.read(level, index), (level, index)
        with pytest.raises(KeyError):
            r.merkle_node(3, size >> 3)                 # not a perfect subtree yet
        for tree_size in (1, 2, 255, 256, 257, 511, 512, size):
            assert merkle.root_at(tree_size, r.merkle_node) == merkle.root_at(tree_size, nodes.read)
            for index in (0, tree_size // 2, tree_size - 1):
                assert (merkle.inclusion_proof(index, tree_size, r.merkle_node)
                        == merkle.inclusion_proof(index, tree_size, nodes.read))
            assert (merkle.consistency_proof(tree_size, size, r.merkle_node)
                    == merkle.consistency_proof(tree_size, size, nodes.read))
    assert_verifies(ledger)
    ledger.close()


def test_a_store_with_another_layout_is_refused_with_what_to_do(tmp_path):
    ledger, _, _ = small_chain(tmp_path / "store")
    with ledger.store.env.begin(write=True) as txn:
        txn.put(b"layout", b"1", db=ledger.store._db["meta"])
    ledger.close()
    with pytest.raises(StoreError, match="another on-disk layout.*re-sync the node from its peers"):
        Ledger.open(tmp_path / "store")


# --- the transaction index keeps locations; body hashes come from the blocks -----------------


def test_a_resubmission_found_in_the_store_is_told_apart_by_its_body(tmp_path):
    """A transaction id recorded in an earlier, stored block: the same body is EXISTS, other
    fields are EXISTS_WITH_DIFFERENT_FIELDS, also after reopening (the body hash is read from
    the stored transaction, not from the index)."""
    ledger, consortium, txs = small_chain(tmp_path / "store")
    alice = consortium.member("alice")
    original = txs[1][0]
    with ledger.store.env.begin() as txn:
        stored = txn.get(original.tx_id, db=ledger.store._db["txs"])
    record = ledger.store.tx_record(original.tx_id)
    assert TxRecord.location_of(stored) == record.location and record.body_hash == original.body_hash()
    ledger.close()
    ledger = Ledger.open(tmp_path / "store")
    changed = consortium.deposit(alice, 101, tx_id=original.tx_id)
    executed = ledger.build([original, changed], time_of(4))
    assert executed.codes == [Code.EXISTS, Code.EXISTS_WITH_DIFFERENT_FIELDS]
    ledger.close()


def test_the_index_gives_every_transaction_the_record_its_execution_made(tmp_path):
    """Only (height, index) is stored; the leaf index, result and body hash read back from the
    block entry are what executing the blocks recorded."""
    ledger, consortium, batches = small_chain(tmp_path / "store")
    memory = Ledger.in_memory(consortium.genesis_raw)
    for height, batch in enumerate(batches, start=1):
        memory.commit(memory.build(batch, time_of(height)))
    for tx in (tx for batch in batches for tx in batch):
        with ledger.store.env.begin() as txn:
            assert TxRecord.location_of(txn.get(tx.tx_id, db=ledger.store._db["txs"])) == \
                memory.store.tx_record(tx.tx_id).location
        assert ledger.store.tx_record(tx.tx_id) == memory.store.tx_record(tx.tx_id)
    ledger.close()


def test_an_index_entry_pointing_at_the_wrong_place_is_a_store_error(tmp_path):
    ledger, consortium, txs = small_chain(tmp_path / "store")
    deposit, other = txs[1][0], txs[1][1]
    other_place = ledger.store.tx_record(other.tx_id)
    for location in ((99, 0), other_place.location, (1, 7)):
        with ledger.store.env.begin(write=True) as txn:
            txn.put(deposit.tx_id, encode(list(location)), db=ledger.store._db["txs"])
        with pytest.raises(StoreError, match="node check --full"):
            ledger.store.tx_record(deposit.tx_id)
    ledger.close()


# --- the history index holds what took effect (issue 15, finding 3) ----------------------------


FLOOD = 10_001          # one more than a history read of MAX_HISTORY_ITEMS_ALL (cli/session.py) takes


def test_a_flood_of_refused_deposits_naming_a_member_leaves_that_members_history_as_it_was(tmp_path):
    """Finding 3: refused deposits naming member X went into X's history, and 10,001 of them (by
    a key that is no party, or by a centre with an amount out of range) pushed X's real entries
    past every bounded history read. A refused entry is now indexed under its author only."""
    from ledger.keys import SigningKey
    from ledger.ledger import MAX_HISTORY_PAGE
    from ledger.limits import MAX_POINTS_PER_TX, MAX_TXS_PER_BLOCK

    ledger, consortium, txs = small_chain(tmp_path / "store")
    alice = consortium.member("alice").party_id
    before = ledger.history(alice)
    stranger = SigningKey.from_seed(bytes(range(32)))
    flood = [consortium.deposit(consortium.member("alice"), 5, author=stranger) for _ in range(FLOOD - 1)]
    flood.append(consortium.deposit(consortium.member("alice"), MAX_POINTS_PER_TX + 1))   # the centre's, refused
    height = ledger.height
    for start in range(0, len(flood), MAX_TXS_PER_BLOCK):
        height += 1
        executed = ledger.build(flood[start:start + MAX_TXS_PER_BLOCK], time_of(height))
        assert set(executed.codes) == {Code.NOT_AUTHORISED} or start + MAX_TXS_PER_BLOCK >= len(flood)
        ledger.commit(executed)
    assert ledger.tx(flood[-1].tx_id).code == Code.AMOUNT_OUT_OF_RANGE
    page = ledger.history_page(alice, limit=MAX_HISTORY_PAGE)
    assert [tx for _, _, tx, _ in page.items] == [tx for _, _, tx, _ in before] and not page.more
    assert len(before) == 4 and all(code == Code.OK for _, _, _, code in before)
    # each refused entry is its author's: the stranger's history holds all its junk
    assert len(ledger.history_page(stranger.party_id, limit=MAX_HISTORY_PAGE).items) == MAX_HISTORY_PAGE
    centre = consortium.centres[0].party_id
    assert ledger.history(centre, limit=MAX_HISTORY_PAGE)[-1][2] == flood[-1]
    # what takes effect later is still in her history, right after her earlier entries
    later = consortium.deposit(consortium.member("alice"), 7)
    ledger.commit(ledger.build([later], time_of(height + 1)))
    assert [tx for _, _, tx, _ in ledger.history(alice)][-1] == later
    assert_verifies(ledger)
