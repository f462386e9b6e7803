"""A 500-item history page, before and after finding 7 (issue 15): ms per call on an LMDB store.

Before: each item decoded its whole block again (the reference below is that code). After:
``Ledger.history_page`` decodes each block once. Two layouts of one member's 500+ items:
few blocks (5 blocks of 150 of the member's deposits) and spread (50 blocks of 200
transactions, 12 of them the member's). Runs in well under a minute:
    python benchmarks/history_reads.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.ledger_core import machine  # noqa: E402
from ledger.codes import Code  # noqa: E402
from ledger.encoding import decode  # noqa: E402
from ledger.ledger import MAX_HISTORY_PAGE, Ledger  # noqa: E402
from ledger.tx import decode_tx  # noqa: E402
from tests.consortium import GENESIS_TIME_MS, TestConsortium  # noqa: E402

RUNS = 5


def old_history(ledger: Ledger, party_id: bytes, limit: int):
    with ledger.store.reader() as r:
        found = []
        for leaf, height, index in r.account_entries(party_id, -1, limit):
            tx_raw, code = decode(r.decoded_block(height).entries[index])
            found.append((leaf, height, decode_tx(tx_raw), Code(code)))
        return found


def build(folder: Path, blocks: int, per_block: int, mine: int) -> tuple[Ledger, bytes]:
    c = TestConsortium()
    member, others = c.member("reader"), [c.member(f"other{i}") for i in range(20)]
    chain = Ledger.create(folder / "store", c.genesis_raw)
    chain.commit(chain.build([c.register(m) for m in [member, *others]], GENESIS_TIME_MS + 60_000))
    for height in range(2, blocks + 2):
        txs = [c.deposit(member if i < mine else others[i % 20], 1, centre=i % 2) for i in range(per_block)]
        chain.commit(chain.build(txs, GENESIS_TIME_MS + height * 60_000))
    return chain, member.party_id


def timed_ms(call) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    print(f"[machine] {machine()}")
    for label, blocks, per_block, mine in (("few blocks", 5, 150, 150), ("spread", 50, 200, 12)):
        with tempfile.TemporaryDirectory() as folder:
            chain, member_id = build(Path(folder), blocks, per_block, mine)
            assert old_history(chain, member_id, MAX_HISTORY_PAGE) == \
                chain.history_page(member_id, limit=MAX_HISTORY_PAGE).items
            page = chain.history_page(member_id, limit=MAX_HISTORY_PAGE)
            before = timed_ms(lambda: old_history(chain, member_id, MAX_HISTORY_PAGE))
            after = timed_ms(lambda: chain.history_page(member_id, limit=MAX_HISTORY_PAGE))
            heights = len({h for _, h, _, _ in page.items})
            print(f"[history] {label}: {len(page.items)} items in {heights} blocks of {per_block} txs "
                  f"({page.read_bytes:,} bytes of blocks): before {before:.1f} ms, after {after:.1f} ms per page "
                  f"(median of {RUNS}), {before / after:.1f}x")
            chain.close()


if __name__ == "__main__":
    main()
