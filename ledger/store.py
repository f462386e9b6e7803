"""The LMDB store of one node: blocks, certificates, transaction index, state, Merkle nodes.

Owns the on-disk layout and its one durability rule: a block, its state changes, its index
entries, its Merkle nodes and the new head (applied height, header, state vector) are written
in ONE LMDB write transaction, committed with fsync before ``commit_block`` returns. After a
crash at any point the store holds the whole block or none of it.

Named databases (keys big-endian so LMDB's order is numeric order):

    meta      b"chain_id", b"head" (encoded header), b"state_vector" (2048 bytes)
    blocks    height:u64                      -> encoded block, zlib-compressed (level 1)
    certs     height:u64                      -> encoded certificate (written by consensus)
    txs       tx_id:16                        -> [height, index] (the leaf index, result code and
                                                 body hash are read from the entry at that place)
    state     state key                       -> state value          (see ledger.state)
    pairs     group:u64                       -> the 32-byte level-1 Merkle nodes (hashes of leaf
                                                 pairs) [group * 63, group * 63 + 63), concatenated
                                                 (appended in order; the last group may be partial)
    merkle    level:u8 || index:u64           -> 32-byte node hash   (perfect subtrees only, and
                                                 only levels that are multiples of MERKLE_LEVEL_STEP)
    accounts  party_or_member_id:20 || first_leaf:u64 -> a chunk of the party's leaves
                                                 (history index; see ledger.postings)
    starts    first_leaf:u64                  -> height:u64  (the block whose first entry is
                                                 that leaf; turns a leaf into height, index)

Blocks are compressed: chain ids, centre and partner keys and member ids repeat in every
block, and zlib at level 1 stores a block of 1,000 transactions in 54% of its bytes for ~2 ms
(decompressing takes ~0.6 ms). Reads decompress at most MAX_BLOCK_BYTES; stored bytes that do
not decompress are a StoreError naming the height.

Merkle nodes: a leaf (level 0) is the hash of its block entry, read from the block; level 1 is
stored in groups of 63 (two groups fill a page); levels 2..7 are recomputed from level 1 and
the others from the stored level below them (at most 2**(MERKLE_LEVEL_STEP - 1) hashes per node
read). A proof thus reads the block of the leaf's sibling (the block a receipt reads anyway).
Storing every level cost 212 bytes per transaction (two entries per leaf, in half-full pages);
every leaf, one entry each, 51; the leaves in groups, 33; level 1 in groups, 16.

A full map is grown (doubling, up to ``max_map_size_bytes``) and the write retried; past
that ``StoreFull`` is raised and nothing of the block is written.
"""

from __future__ import annotations

import struct
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import lmdb
import msgpack

from ledger.block import (HEADER_TREE_SIZE, HEADER_TX_COUNT, Block, ChainHead, ExecutedBlock, Header,
                          decode_block, decode_entry)
from ledger.commitment import StateCommitment
from ledger.encoding import decode, decode_prechecked, encode
from ledger.limits import MAX_BLOCK_BYTES
from ledger.merkle import Frontier, leaf_hash, node_hash
from ledger.postings import PostingError, append_leaves, chunk_leaves
from ledger.state import TxRecord
from ledger.tx import decode_tx

DEFAULT_MAP_SIZE_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_MAP_SIZE_BYTES = 64 * 1024 * 1024 * 1024
MAX_DBS = 12      # the ledger's 9, plus room for the consensus log kept in the same environment
MERKLE_LEVEL_STEP = 8   # interior levels stored: 8, 16, 24, ...; the others are recomputed
LAYOUT_VERSION = b"6"   # meta "layout": 2 = leaves apart, sparse interior levels; 3 = no body hash
                        # in txs; 4 = compressed blocks; 5 = history index as posting lists,
                        # leaves in groups; 6 = a refused transaction indexed under its author only
NODES_PER_GROUP = 63    # 63 x 32 = 2,016 bytes: the largest value LMDB keeps inside a 4 KiB page
                        # two to a page (a node holds at most 2,038 bytes with its 8-byte header
                        # and key); 64 would go to overflow pages of their own
HASH_BYTES = 32
_U64 = struct.Struct(">Q")


RESERVED_META = (b"chain_id", b"head", b"state_vector", b"layout")


class StoreError(Exception):
    """The store cannot do what was asked; the message says what to do about it."""


class StoreFull(StoreError):
    pass


def u64(value: int) -> bytes:
    return _U64.pack(value)


class Store:
    def __init__(self, path: Path, map_size_bytes: int = DEFAULT_MAP_SIZE_BYTES,
                 max_map_size_bytes: int = DEFAULT_MAX_MAP_SIZE_BYTES) -> None:
        if map_size_bytes > max_map_size_bytes:
            raise ValueError("map_size_bytes exceeds max_map_size_bytes")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.max_map_size_bytes = max_map_size_bytes
        try:
            self.env = lmdb.open(str(self.path), map_size=map_size_bytes, max_dbs=MAX_DBS,
                                 sync=True, metasync=True, subdir=True, lock=True)
        except lmdb.Error as exc:
            raise StoreError(f"cannot open the store at {self.path}: {exc}") from None
        try:
            self._db = {"meta": self.env.open_db(b"meta")}
            self._check_layout()          # before creating anything an older layout lacks
            self._db.update((name, self.env.open_db(name.encode())) for name in
                            ("blocks", "certs", "txs", "state", "pairs", "merkle", "accounts", "starts"))
        except lmdb.MapFullError:
            self.env.close()
            raise StoreFull(f"the map of {map_size_bytes} bytes is too small for the store's layout "
                            f"at {self.path}; give a larger map size") from None

    def _check_layout(self) -> None:
        with self.env.begin() as txn:
            layout = txn.get(b"layout", db=self._db["meta"])
            is_new = layout is None and txn.get(b"head", db=self._db["meta"]) is None
        if is_new:
            with self.env.begin(write=True) as txn:
                txn.put(b"layout", LAYOUT_VERSION, db=self._db["meta"])
        elif layout != LAYOUT_VERSION:
            self.env.close()
            raise StoreError(f"the store at {self.path} has another on-disk layout "
                             f"({(layout or b'1').decode(errors='replace')}, this version reads "
                             f"{LAYOUT_VERSION.decode()}); move it away and re-sync the node from its peers "
                             "(docs/ARCHITECTURE.md, 'Re-syncing a node')")

    def open_db(self, name: str):
        """A further named database in this environment, for a layer above (the consensus log),
        so that it can share the environment's write transactions and fsyncs."""
        assert name not in self._db, "the ledger's own databases are not for others to write"
        return self.env.open_db(name.encode())

    def close(self) -> None:
        self.env.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- reading ---------------------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator["StoreReader"]:
        """A consistent snapshot of the store (one LMDB read transaction)."""
        with self.env.begin(buffers=False) as txn:
            yield StoreReader(txn, self._db)

    def head(self) -> ChainHead | None:
        with self.reader() as r:
            return r.head()

    def height(self) -> int | None:
        head = self.head()
        return None if head is None else head.header.height

    def block(self, height: int) -> bytes | None:
        with self.reader() as r:
            return r.block(height)

    def certificate(self, height: int) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(u64(height), db=self._db["certs"])

    def tx_record(self, tx_id: bytes) -> TxRecord | None:
        with self.reader() as r:
            return r.tx_record(tx_id)

    # --- writing ---------------------------------------------------------------------------

    def commit_block(self, executed: ExecutedBlock, certificate: bytes | None = None,
                     meta: dict[bytes, bytes] | None = None,
                     certificates: dict[int, bytes] | None = None) -> None:
        """Persists everything of one block atomically and durably. The block must extend the
        stored head (or be block 0 of an empty store). ``meta`` entries (for example the
        consensus log index that produced the block, or this node's endorsement) and
        ``certificates`` of earlier heights (height -> certificate) are written in the same
        transaction, so they are durable exactly when the block is."""
        def work(txn: lmdb.Transaction) -> None:
            self._put_block(txn, executed, certificate, meta or {})
            self._put_certificates(txn, certificates or {}, {})
        self._write(work)

    def meta(self, key: bytes) -> bytes | None:
        with self.env.begin() as txn:
            return txn.get(key, db=self._db["meta"])

    def put_meta(self, entries: dict[bytes, bytes]) -> None:
        def work(txn: lmdb.Transaction) -> None:
            for key, value in entries.items():
                txn.put(key, value, db=self._db["meta"])
        self._write(work)

    def put_certificates(self, certificates: dict[int, bytes], meta: dict[bytes, bytes] | None = None) -> None:
        """Stores certificates (height -> certificate) and ``meta`` in one fsynced transaction."""
        self._write(lambda txn: self._put_certificates(txn, certificates, meta or {}))

    def _put_certificates(self, txn: lmdb.Transaction, certificates: dict[int, bytes],
                          meta: dict[bytes, bytes]) -> None:
        for height, certificate in certificates.items():
            txn.put(u64(height), certificate, db=self._db["certs"])
        for key, value in meta.items():
            assert key not in RESERVED_META, "the head is written by the store itself"
            txn.put(key, value, db=self._db["meta"])

    def _write(self, work) -> None:
        """Runs ``work`` in one write transaction; on a full map, grows it and runs it again
        from scratch (the aborted attempt left nothing behind), until the size limit."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    work(txn)
                return
            except lmdb.MapFullError:
                if not self._grow():
                    raise StoreFull(
                        f"the store at {self.path} is full at {self.env.info()['map_size']} bytes "
                        f"(limit {self.max_map_size_bytes}); raise the map size limit or free disk "
                        "space; nothing of this write was stored") from None

    def _grow(self) -> bool:
        current = self.env.info()["map_size"]
        target = min(current * 2, self.max_map_size_bytes)
        if target <= current:
            return False
        self.env.set_mapsize(target)
        return True

    def _put_block(self, txn: lmdb.Transaction, executed: ExecutedBlock, certificate: bytes | None,
                   meta: dict[bytes, bytes]) -> None:
        header = executed.block.header
        self._check_extends(txn, header)
        db = self._db
        txn.put(u64(header.height), compress_block(executed.block.encode()), db=db["blocks"])
        if certificate is not None:
            txn.put(u64(header.height), certificate, db=db["certs"])
        for key, _, new in sorted(executed.state.changes()):   # key order: fewer pages touched
            if new is None:
                txn.delete(key, db=db["state"])
            else:
                txn.put(key, new, db=db["state"])
        for tx_id, record in executed.state.tx_records().items():
            txn.put(tx_id, record.stored_bytes(), db=db["txs"])
        pairs = []
        for level, index, node in executed.merkle_nodes:
            if level == 1:
                pairs.append((index, node))
            elif level and level % MERKLE_LEVEL_STEP == 0:
                txn.put(bytes([level]) + u64(index), node, db=db["merkle"])
        self._put_pairs(txn, pairs)
        self._index_accounts(txn, executed)
        txn.put(b"chain_id", header.chain_id, db=db["meta"])
        txn.put(b"head", encode(header.to_wire()), db=db["meta"])
        txn.put(b"state_vector", executed.head.commitment.to_bytes(), db=db["meta"])
        for key, value in meta.items():
            assert key not in RESERVED_META, "the head is written by the store itself"
            txn.put(key, value, db=db["meta"])

    def _put_pairs(self, txn: lmdb.Transaction, pairs: list[tuple[int, bytes]]) -> None:
        """Appends consecutive (index, hash) level-1 nodes to their groups: the stored partial
        group is extended, full ones are appended at the end of the database (pages stay full)."""
        db = self._db["pairs"]
        done = 0
        while done < len(pairs):
            first = pairs[done][0]
            group, offset = divmod(first, NODES_PER_GROUP)
            part = pairs[done:done + NODES_PER_GROUP - offset]
            if part[-1][0] != first + len(part) - 1:
                raise StoreError(f"the level-1 Merkle nodes from {first} are not consecutive")
            value = b"".join(node for _, node in part)
            if offset:
                stored = txn.get(u64(group), db=db)
                if stored is None or len(stored) != offset * HASH_BYTES:
                    raise StoreError(f"level-1 Merkle node {first} does not follow the stored ones")
                txn.put(u64(group), stored + value, db=db)
            elif not txn.put(u64(group), value, db=db, append=True):
                raise StoreError(f"level-1 Merkle node {first} does not follow the stored ones")
            done += len(part)

    def _check_extends(self, txn: lmdb.Transaction, header: Header) -> None:
        raw = txn.get(b"head", db=self._db["meta"])
        if raw is None:
            if header.height != 0:
                raise StoreError("an empty store starts with block 0")
            return
        stored = Header.from_wire(decode(raw))
        if header.height != stored.height + 1 or header.prev_hash != stored.hash():
            raise StoreError(f"block {header.height} does not extend the stored head {stored.height}")

    def _index_accounts(self, txn: lmdb.Transaction, executed: ExecutedBlock) -> None:
        header = executed.block.header
        if not txn.put(u64(header.tree_size - header.tx_count), u64(header.height), db=self._db["starts"],
                       append=True):
            raise StoreError(f"block {header.height}'s first leaf does not follow the stored blocks' leaves")
        by_party: dict[bytes, list[int]] = {}
        for party, leaf, _ in executed.accounts:
            by_party.setdefault(party, []).append(leaf)
        accounts = self._db["accounts"]
        cursor = txn.cursor(db=accounts)
        for party in sorted(by_party):       # key order: the cursor moves forward only
            try:
                chunks = append_leaves(_last_chunk(cursor, party), by_party[party])
            except ValueError as exc:
                raise StoreError(f"the history index of party {party.hex()} cannot take block "
                                 f"{header.height}: {exc}; run `nanum node check --full`") from None
            for first, value in chunks:
                txn.put(party + u64(first), value, db=accounts)


def _last_chunk(cursor: lmdb.Cursor, party: bytes) -> tuple[int, bytes] | None:
    """(first leaf, value) of the party's last posting-list chunk, or None."""
    if not _floor(cursor, party + _AFTER_LEAVES) or cursor.key()[:len(party)] != party:
        return None
    return _U64.unpack(cursor.key()[len(party):])[0], cursor.value()


_AFTER_LEAVES = b"\xff" * 8      # sorts after every party_id || first_leaf key of that party


BLOCK_COMPRESSION_LEVEL = 1      # zlib: level 6 saves 1% more for twice the time


def compress_block(raw: bytes) -> bytes:
    """The stored form of an encoded block."""
    return zlib.compress(raw, BLOCK_COMPRESSION_LEVEL)


def decompress_block(stored: bytes, height: int) -> bytes:
    """The encoded block from its stored form; StoreError if the stored bytes are damaged or
    would decompress to more than MAX_BLOCK_BYTES (nothing larger is ever stored)."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(stored, MAX_BLOCK_BYTES + 1)
    except zlib.error as exc:
        raise StoreError(f"the stored block {height} does not decompress ({exc})") from None
    if len(raw) > MAX_BLOCK_BYTES or not inflater.eof or inflater.unused_data:
        raise StoreError(f"the stored block {height} does not decompress to one block of at most "
                         f"{MAX_BLOCK_BYTES} bytes")
    return raw


class StoreReader:
    """Reads within one LMDB read transaction; implements ledger.state.StateReader."""

    def __init__(self, txn: lmdb.Transaction, dbs: dict) -> None:
        self._txn = txn
        self._db = dbs

    def get(self, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._db["state"])

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        cursor = self._txn.cursor(db=self._db["state"])
        if not cursor.set_range(prefix):
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                break
            yield key, value

    def tx_record(self, tx_id: bytes) -> TxRecord | None:
        """The record of a stored transaction; its leaf index, result and body hash are read from
        the block entry the index points at (a block read: records are looked up for duplicates
        and reads, not per transaction)."""
        raw = self._txn.get(tx_id, db=self._db["txs"])
        if raw is None:
            return None
        height, index = TxRecord.location_of(raw)
        found = self._entry(height, index)
        if found is None:
            raise StoreError(f"the transaction index points at block {height}, entry {index}, which is not "
                             "stored; run `nanum node check --full`")
        entry, first_leaf = found
        tx_raw, code = decode_entry(entry)
        tx = decode_tx(tx_raw)
        if tx.tx_id != tx_id:
            raise StoreError(f"the transaction index points at block {height}, entry {index}, which holds "
                             "another transaction; run `nanum node check --full`")
        return TxRecord(height, index, first_leaf + index, tx.body_hash(), code)

    def merkle_node(self, level: int, index: int) -> bytes:
        """The hash of the perfect subtree (level, index); KeyError if it is not in the store."""
        if level == 0:
            return self._leaf(index)
        base = max(1, level - level % MERKLE_LEVEL_STEP)
        nodes = self._stored_nodes(base, index << (level - base), 1 << (level - base))
        while len(nodes) > 1:
            nodes = [node_hash(nodes[i], nodes[i + 1]) for i in range(0, len(nodes), 2)]
        return nodes[0]

    def _leaf(self, index: int) -> bytes:
        """A leaf, hashed from its block entry; KeyError beyond the stored blocks' entries,
        StoreError if the block-start index and the block disagree."""
        location = self._location(index)
        found = None if location is None else self._entry(*location)
        if found is None:
            raise KeyError((0, index))
        entry, first_leaf = found
        if first_leaf != index - location[1]:
            raise StoreError(f"the block-start index puts leaf {index} in block {location[0]}, whose first leaf "
                             f"is {first_leaf}; run `nanum node check --full`")
        return leaf_hash(entry)

    def _stored_nodes(self, level: int, first: int, count: int) -> list[bytes]:
        """``count`` consecutive stored nodes of a stored level; KeyError at the first missing."""
        if level == 1:
            return self._stored_pairs(first, count)
        prefix = bytes([level])
        cursor = self._txn.cursor(db=self._db["merkle"])
        nodes: list[bytes] = []
        if cursor.set_key(prefix + u64(first)):
            for key, node in cursor:
                if key != prefix + u64(first + len(nodes)):
                    break
                nodes.append(node)
                if len(nodes) == count:
                    break
        if len(nodes) != count:
            raise KeyError((level, first + len(nodes)))
        return nodes

    def _stored_pairs(self, first: int, count: int) -> list[bytes]:
        group, offset = divmod(first, NODES_PER_GROUP)
        nodes: list[bytes] = []
        while len(nodes) < count:
            value = self._txn.get(u64(group), db=self._db["pairs"])
            if value is None:
                break
            if len(value) % HASH_BYTES or len(value) > NODES_PER_GROUP * HASH_BYTES:
                raise StoreError(f"the stored level-1 Merkle nodes from {group * NODES_PER_GROUP} are "
                                 f"damaged ({len(value)} bytes); run `nanum node check --full`")
            end = min(len(value) // HASH_BYTES, offset + count - len(nodes))
            nodes.extend(value[i * HASH_BYTES:(i + 1) * HASH_BYTES] for i in range(offset, end))
            if end < NODES_PER_GROUP:
                break
            group, offset = group + 1, 0
        if len(nodes) != count:
            raise KeyError((1, first + len(nodes)))
        return nodes

    def block(self, height: int) -> bytes | None:
        """The encoded block at ``height`` (None if not stored); StoreError if its stored bytes
        do not decompress to at most MAX_BLOCK_BYTES."""
        stored = self._txn.get(u64(height), db=self._db["blocks"])
        return None if stored is None else decompress_block(stored, height)

    def decoded_block(self, height: int) -> Block | None:
        raw = self.block(height)
        return None if raw is None else decode_block(raw)

    def head(self) -> ChainHead | None:
        header = self.head_header()
        if header is None:
            return None
        vector = self._txn.get(b"state_vector", db=self._db["meta"])
        return ChainHead(header, Frontier.load(header.tree_size, self.merkle_node),
                         StateCommitment.from_bytes(vector))

    def state_items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self._txn.cursor(db=self._db["state"]))

    def _entry(self, height: int, index: int) -> tuple[bytes, int] | None:
        """(entry, the block's first leaf) of one entry of a stored block, without decoding the
        others canonically (the block was verified when it was stored; the entry itself is
        decoded in full by the caller). None if no block is stored at ``height`` or it has no
        entry ``index``; StoreError if the stored block does not decode as one."""
        raw = self.block(height)
        if raw is None:
            return None
        try:
            header, entries = decode_prechecked(raw)
            first_leaf = header[HEADER_TREE_SIZE] - header[HEADER_TX_COUNT]
        except (ValueError, TypeError, IndexError, KeyError, msgpack.ExtraData):
            first_leaf = entries = None
        if type(first_leaf) is not int or first_leaf < 0 or type(entries) is not list:
            raise StoreError(f"the stored block {height} does not decode as a block; run `nanum node check --full`")
        if not 0 <= index < len(entries):
            return None
        if type(entries[index]) is not bytes:
            raise StoreError(f"the stored block {height} has a malformed entry {index}; run `nanum node check --full`")
        return entries[index], first_leaf

    def tx_locations(self) -> Iterator[tuple[bytes, tuple[int, int]]]:
        """Every (tx_id, TxRecord.location) of the transaction index."""
        for tx_id, raw in self._txn.cursor(db=self._db["txs"]):
            yield tx_id, TxRecord.location_of(raw)

    def state_vector(self) -> bytes | None:
        return self._txn.get(b"state_vector", db=self._db["meta"])

    def account_entries(self, party: bytes, after_leaf: int = -1, limit: int = 100) -> list[tuple[int, int, int]]:
        """(leaf index, height, index in block) of transactions touching ``party``, oldest first,
        strictly after ``after_leaf``; at most ``limit``. StoreError if the index is damaged:
        a chunk that does not decode, leaves not ascending across chunks, or beyond the tree."""
        leaves: list[int] = []
        last = -1
        cursor = self._txn.cursor(db=self._db["accounts"])
        if _chunk_holding(cursor, party, after_leaf + 1):
            for key, value in cursor:
                if key[:len(party)] != party or len(leaves) >= limit:
                    break
                if len(key) != len(party) + _U64.size:
                    raise StoreError(f"the history index of party {party.hex()} holds a malformed key; "
                                     "run `nanum node check --full`")
                first = _U64.unpack(key[len(party):])[0]
                try:
                    chunk = chunk_leaves(first, value)
                    if first <= last:
                        raise PostingError(f"the chunk does not start after the previous one's last leaf {last}")
                except PostingError as exc:
                    raise StoreError(f"the history index of party {party.hex()} is damaged at leaf {first}: "
                                     f"{exc}; run `nanum node check --full`") from None
                last = chunk[-1]
                leaves.extend(leaf for leaf in chunk if leaf > after_leaf)
        head = self.head_header()
        located = [(leaf, self._location(leaf)) for leaf in leaves[:limit]]
        if any(location is None or head is None or leaf >= head.tree_size for leaf, location in located):
            raise StoreError(f"the history index of party {party.hex()} names a leaf outside the stored tree; "
                             "run `nanum node check --full`")
        return [(leaf, *location) for leaf, location in located]

    def head_header(self) -> Header | None:
        raw = self._txn.get(b"head", db=self._db["meta"])
        return None if raw is None else Header.from_wire(decode(raw))

    def _location(self, leaf: int) -> tuple[int, int] | None:
        """(height, index in block) of the entry that is Merkle leaf ``leaf`` if a block starting
        at or before it is stored (the index may then lie beyond that block's entries)."""
        cursor = self._txn.cursor(db=self._db["starts"])
        if not _floor(cursor, u64(leaf)):
            return None
        if len(cursor.key()) != _U64.size or len(cursor.value()) != _U64.size:
            raise StoreError(f"the block-start index is damaged near leaf {leaf}; run `nanum node check --full`")
        return _U64.unpack(cursor.value())[0], leaf - _U64.unpack(cursor.key())[0]


def _chunk_holding(cursor: lmdb.Cursor, party: bytes, leaf: int) -> bool:
    """Positions ``cursor`` on the party's chunk that may hold ``leaf`` (the last one starting at
    or before it, else the first after it); False if the party has no chunk there."""
    start = party + u64(leaf)
    if _floor(cursor, start) and cursor.key()[:len(party)] == party:
        return True
    return cursor.set_range(start) and cursor.key()[:len(party)] == party


def _floor(cursor: lmdb.Cursor, key: bytes) -> bool:
    """Positions ``cursor`` on the last key at or before ``key``; False if there is none."""
    found = cursor.set_range(key)
    if found and cursor.key() == key:
        return True
    return cursor.prev() if found else cursor.last()
