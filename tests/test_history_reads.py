"""History reads that cost what they return (issue 15, finding 7): ``Ledger.history_page``
decodes each block it touches once per call, and no more than MAX_HISTORY_READ_BYTES of blocks.

Finding 7: each history item decoded its whole block again, so a 500-item page over few
blocks decoded a block 500 times. The answer must not change: it is compared with that old
path (kept here as the reference) on a random ledger, on a real LMDB store and in memory.
"""

from __future__ import annotations

import inspect
import random

import pytest

import ledger.block
import ledger.ledger
import ledger.memory_store
import ledger.store
from ledger.codes import Code
from ledger.encoding import decode
from ledger.ledger import MAX_HISTORY_PAGE, MAX_HISTORY_READ_BYTES, Ledger
from ledger.limits import MAX_BLOCK_BYTES
from ledger.tx import decode_tx
from tests.consortium import GENESIS_TIME_MS, TestConsortium


def old_history(ledger: Ledger, party_id: bytes, after_leaf: int = -1, limit: int = 100):
    """The history query as it was before finding 7: one full block decode per item."""
    with ledger.store.reader() as r:
        return [(leaf, height, decode_tx(decode(r.decoded_block(height).entries[index])[0]),
                 Code(decode(r.decoded_block(height).entries[index])[1]))
                for leaf, height, index in r.account_entries(party_id, after_leaf, limit)]


@pytest.fixture
def decodes(monkeypatch):
    """Counts block decodes by height, wherever the ledger or its stores decode a block."""
    counted: dict[int, int] = {}
    real = ledger.block.decode_block

    def counting(raw: bytes):
        block = real(raw)
        counted[block.header.height] = counted.get(block.header.height, 0) + 1
        return block
    for module in (ledger.ledger, ledger.store, ledger.memory_store):
        monkeypatch.setattr(module, "decode_block", counting)
    return counted


def _commit(chain: Ledger, txs, height: int) -> None:
    chain.commit(chain.build(txs, GENESIS_TIME_MS + height * 60_000))


@pytest.fixture(scope="module")
def busy(tmp_path_factory):
    """A member with 600 deposits in four blocks of 150 (block 1 registers the member)."""
    c = TestConsortium()
    member = c.member("busy")
    chain = Ledger.create(tmp_path_factory.mktemp("busy") / "store", c.genesis_raw)
    _commit(chain, [c.register(member)], 1)
    for height in range(2, 6):
        _commit(chain, [c.deposit(member, 1, centre=height % 2) for _ in range(150)], height)
    yield chain, member.party_id
    chain.close()


def test_a_500_item_page_over_few_blocks_decodes_each_block_once(busy, decodes):
    chain, member_id = busy
    page = chain.history_page(member_id, limit=MAX_HISTORY_PAGE)
    assert len(page.items) == MAX_HISTORY_PAGE and page.more
    heights = sorted({height for _, height, _, _ in page.items})
    assert heights == [1, 2, 3, 4, 5]
    assert decodes == {h: 1 for h in heights}
    assert page.read_bytes == sum(len(chain.block(h)) for h in heights)


def test_history_too_decodes_each_block_once(busy, decodes):
    chain, member_id = busy
    items = chain.history(member_id, limit=MAX_HISTORY_PAGE)
    assert len(items) == MAX_HISTORY_PAGE
    assert decodes == {h: 1 for h in range(1, 6)}


def test_the_old_path_decoded_a_block_per_item(busy, decodes):
    # The reference is the code finding 7 describes; this shows what the count above measures.
    chain, member_id = busy
    old_history(chain, member_id, limit=MAX_HISTORY_PAGE)
    assert sum(decodes.values()) == 2 * MAX_HISTORY_PAGE


def test_more_is_known_without_reading_a_block_beyond_the_page(busy, decodes):
    chain, member_id = busy
    page = chain.history_page(member_id, after_leaf=-1, limit=1)
    assert [leaf for leaf, _, _, _ in page.items] == [1] and page.more and decodes == {1: 1}
    last = chain.history_page(member_id, after_leaf=page.items[0][0], limit=MAX_HISTORY_PAGE)
    assert not chain.history_page(member_id, after_leaf=last.items[-1][0] + 10**6, limit=5).more


def test_a_page_stops_before_the_block_that_would_pass_the_read_bound(busy, decodes):
    chain, member_id = busy
    sizes = {h: len(chain.block(h)) for h in range(1, 6)}
    bound = sizes[1] + sizes[2] + sizes[3] - 1          # blocks 1 and 2 fit, block 3 does not
    page = chain.history_page(member_id, limit=MAX_HISTORY_PAGE, max_read_bytes=bound)
    assert {h for _, h, _, _ in page.items} == {1, 2} and page.more and len(page.items) == 1 + 150
    assert page.read_bytes <= bound and decodes == {1: 1, 2: 1}
    # Following the pages gives the whole history, unchanged.
    items, after = list(page.items), page.items[-1][0]
    while True:
        page = chain.history_page(member_id, after_leaf=after, limit=MAX_HISTORY_PAGE, max_read_bytes=bound)
        items += page.items
        if not page.more:
            break
        after = page.items[-1][0]
    assert items == chain.history(member_id, limit=MAX_HISTORY_PAGE) + \
        chain.history(member_id, after_leaf=items[MAX_HISTORY_PAGE - 1][0], limit=MAX_HISTORY_PAGE)


def test_the_first_block_is_always_read_so_a_page_progresses(busy):
    chain, member_id = busy
    page = chain.history_page(member_id, after_leaf=1, limit=MAX_HISTORY_PAGE, max_read_bytes=1)
    assert len(page.items) == 150 and {h for _, h, _, _ in page.items} == {2} and page.more


def test_the_service_bound_is_the_named_limit_and_admits_any_block():
    default = inspect.signature(Ledger.history_page).parameters["max_read_bytes"].default
    assert default == MAX_HISTORY_READ_BYTES >= MAX_BLOCK_BYTES


def _random_ledger(chain: Ledger, c: TestConsortium, rng: random.Random) -> list[bytes]:
    """Blocks of random sizes mixing every kind, some refused, over six members."""
    members = [c.member(f"m{i}") for i in range(6)]
    _commit(chain, [c.register(m, centre=i % 2) for i, m in enumerate(members)], 1)
    deposits, redemptions = [], []
    for height in range(2, 14):
        txs = []
        for _ in range(rng.randrange(1, 60)):
            m = rng.choice(members)
            roll = rng.random()
            if roll < 0.6 or not deposits:
                txs.append(c.deposit(m, rng.randrange(1, 50), centre=rng.randrange(2)))
                deposits.append(txs[-1])
            elif roll < 0.8:
                txs.append(c.redeem(c.voucher(m, 40, partner=rng.randrange(2)), rng.randrange(1, 40),
                                    partner=rng.randrange(2)))
                redemptions.append(txs[-1])
            elif roll < 0.9 and redemptions:
                txs.append(c.refund(rng.choice(redemptions).tx_id, rng.randrange(1, 10), partner=rng.randrange(2)))
            else:
                txs.append(c.reverse(rng.choice(deposits).tx_id, centre=rng.randrange(2)))
        _commit(chain, txs, height)
    return [m.party_id for m in members] + [k.party_id for k in c.centres + c.partners]


@pytest.mark.parametrize("store", ["lmdb", "memory"])
def test_the_answer_is_the_old_paths_on_a_random_ledger(tmp_path, store):
    rng = random.Random(7)
    c = TestConsortium()
    chain = (Ledger.create(tmp_path / "store", c.genesis_raw) if store == "lmdb"
             else Ledger.in_memory(c.genesis_raw))
    parties = _random_ledger(chain, c, rng)
    codes = set()
    for _ in range(300):
        party = rng.choice(parties)
        after, limit = rng.randrange(-1, chain.head.header.tree_size + 2), rng.randrange(1, MAX_HISTORY_PAGE + 1)
        expected = old_history(chain, party, after, limit)
        assert chain.history(party, after, limit) == expected
        page = chain.history_page(party, after, limit)
        assert page.items == expected
        # what the service computed from the old path: a full page, and one more item after it
        old_more = len(expected) == limit and bool(old_history(chain, party, expected[-1][0], 1))
        assert page.more == old_more
        codes.update(code for _, _, _, code in expected)
    assert {Code.OK} < codes          # refused entries are in the comparison too
    chain.close()
