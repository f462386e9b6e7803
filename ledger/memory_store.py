"""An in-memory store with the same interface as the LMDB ``Store``.

For the deterministic cluster simulator: whatever ``commit_block`` accepted counts as
persisted (it survives a simulated crash, because the simulator keeps this object and drops
only the node's volatile parts). Same extension checks as the LMDB store; no map limits.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from ledger.block import Block, ChainHead, ExecutedBlock, decode_block
from ledger.merkle import MemoryNodes
from ledger.state import MemoryState, TxRecord
from ledger.store import RESERVED_META, StoreError


class MemoryStore:
    def __init__(self, name: str = "memory") -> None:
        self.path = name
        self._state = MemoryState()
        self._nodes = MemoryNodes()
        self._blocks: dict[int, bytes] = {}
        self._certs: dict[int, bytes] = {}
        self._meta: dict[bytes, bytes] = {}
        self._accounts: dict[bytes, list[tuple[int, int, int]]] = {}
        self._head: ChainHead | None = None

    def close(self) -> None:
        pass

    @contextmanager
    def reader(self) -> Iterator["MemoryReader"]:
        yield MemoryReader(self)

    def head(self) -> ChainHead | None:
        if self._head is None:
            return None
        return ChainHead(self._head.header, self._head.frontier.copy(), self._head.commitment.copy())

    def height(self) -> int | None:
        return None if self._head is None else self._head.header.height

    def block(self, height: int) -> bytes | None:
        return self._blocks.get(height)

    def certificate(self, height: int) -> bytes | None:
        return self._certs.get(height)

    def tx_record(self, tx_id: bytes) -> TxRecord | None:
        return self._state.tx_record(tx_id)

    def meta(self, key: bytes) -> bytes | None:
        return self._meta.get(key)

    def put_meta(self, entries: dict[bytes, bytes]) -> None:
        self._meta.update(entries)

    def put_certificates(self, certificates: dict[int, bytes], meta: dict[bytes, bytes] | None = None) -> None:
        self._certs.update(certificates)
        self._meta.update(meta or {})

    def commit_block(self, executed: ExecutedBlock, certificate: bytes | None = None,
                     meta: dict[bytes, bytes] | None = None,
                     certificates: dict[int, bytes] | None = None) -> None:
        header = executed.block.header
        if self._head is None and header.height != 0:
            raise StoreError("an empty store starts with block 0")
        if self._head is not None and (header.height != self._head.header.height + 1
                                       or header.prev_hash != self._head.hash):
            raise StoreError(f"block {header.height} does not extend the stored head")
        assert not set(meta or {}) & set(RESERVED_META), "the head is written by the store itself"
        self._blocks[header.height] = executed.block.encode()
        if certificate is not None:
            self._certs[header.height] = certificate
        self._state.absorb(executed.state)
        self._nodes.put(executed.merkle_nodes)
        for party, leaf, index in executed.accounts:
            self._accounts.setdefault(party, []).append((leaf, header.height, index))
        self._meta.update(meta or {})
        self._certs.update(certificates or {})
        self._head = ChainHead(header, executed.head.frontier.copy(), executed.head.commitment.copy())


class MemoryReader:
    """The read interface of ``ledger.store.StoreReader`` over a MemoryStore."""

    def __init__(self, store: MemoryStore) -> None:
        self._store = store

    def get(self, key: bytes) -> bytes | None:
        return self._store._state.get(key)

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._store._state.scan(prefix)

    def tx_record(self, tx_id: bytes) -> TxRecord | None:
        return self._store._state.tx_record(tx_id)

    def merkle_node(self, level: int, index: int) -> bytes:
        return self._store._nodes.read(level, index)

    def block(self, height: int) -> bytes | None:
        return self._store.block(height)

    def decoded_block(self, height: int) -> Block | None:
        raw = self.block(height)
        return None if raw is None else decode_block(raw)

    def head(self) -> ChainHead | None:
        return self._store.head()

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(sorted(self._store._state.entries.items()))

    def tx_locations(self) -> Iterator[tuple[bytes, tuple[int, int]]]:
        return iter(sorted((tx_id, record.location) for tx_id, record in self._store._state.records.items()))

    def state_vector(self) -> bytes | None:
        head = self._store._head
        return None if head is None else head.commitment.to_bytes()

    def account_entries(self, party: bytes, after_leaf: int = -1, limit: int = 100) -> list[tuple[int, int, int]]:
        entries = self._store._accounts.get(party, [])
        return [e for e in entries if e[0] > after_leaf][:limit]
