"""A child process for the crash tests in tests/test_store.py: commits blocks in a loop.

    python tests/store_writer.py STORE_DIR TXS_PER_BLOCK MAX_BLOCKS

Creates a ledger at STORE_DIR from the test consortium's genesis (or reopens the one there)
and prints its height; then commits up to MAX_BLOCKS blocks, block h registering the member
``member_name(h)`` and depositing ``points_for(h, i)`` points for it. After every ``commit``
returns it prints the committed height on its own line and flushes: a printed height is an
acknowledged one, which must survive a SIGKILL at any later moment.

Everything it writes is deterministic (keys from fixed seeds, tx ids and block times from
the height), so the parent can recompute what any block should hold.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.ledger import Ledger  # noqa: E402
from tests.consortium import GENESIS_TIME_MS, TestConsortium  # noqa: E402

BLOCK_INTERVAL_MS = 1_000


def member_name(height: int) -> str:
    return f"crash-member-{height}"


def points_for(height: int, index: int) -> int:
    return 1 + (height * 7 + index) % 50


def tx_id(height: int, index: int) -> bytes:
    """Ids fixed by position, so a restarted writer never reuses one for other content."""
    return (height * 100_000 + index).to_bytes(16, "big")


def block_txs(consortium: TestConsortium, height: int, txs_per_block: int) -> list:
    member = consortium.member(member_name(height))
    txs = [consortium.register(member, centre=height % 2, tx_id=tx_id(height, 0))]
    for index in range(txs_per_block - 1):
        txs.append(consortium.deposit(member, points_for(height, index), centre=index % 2,
                                      tx_id=tx_id(height, index + 1)))
    return txs


def main(argv: list[str]) -> int:
    path, txs_per_block, max_blocks = Path(argv[1]), int(argv[2]), int(argv[3])
    consortium = TestConsortium()
    if (path / "data.mdb").exists():
        ledger = Ledger.open(path)
    else:
        ledger = Ledger.create(path, consortium.genesis_raw)
    print(ledger.height, flush=True)
    for height in range(ledger.height + 1, ledger.height + 1 + max_blocks):
        executed = ledger.build(block_txs(consortium, height, txs_per_block),
                                GENESIS_TIME_MS + height * BLOCK_INTERVAL_MS)
        ledger.commit(executed)
        print(ledger.height, flush=True)
    ledger.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
