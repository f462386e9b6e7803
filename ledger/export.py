"""The export file: a chain's certified blocks in one file, for auditors (docs/FORMAT.md §13).

Owns the file format, its strict reader, its appending writer, and resuming an interrupted
export. It knows nothing of nodes: the CLI feeds the writer with blocks it streams from one.

    file   = MAGIC || record 0 || record 1 || ... || record n
    MAGIC  = b"NANUM-EXPORT/1\\n"
    record = length:u32 big-endian || body          (1 <= length <= MAX_RECORD_BYTES)
    body 0 = encode([0, chain_id:bin16, genesis_block:bin])
    body h = encode([1, h:uint, block:bin, certificate:bin])      for h = 1, 2, ... n in order

The reader checks the framing, the canonical encoding and the schema of every record, that
heights are consecutive from 1, and that record 0's chain id is its genesis block's; any
failure is an ``ExportError`` naming the record, the height and the byte offset. It does not
verify blocks: that is ``ledger.verify``'s job.

The writer appends whole records and fsyncs after each page, so a crash or a kill leaves
complete, durable records followed at worst by one partial record (or a zero-filled tail).
``resume_export`` validates such a file, cuts that tail, and carries on at the next height.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from ledger.block import BlockError, Header, decode_block
from ledger.encoding import DecodeError, decode, encode, expect_array, expect_bytes, expect_uint
from ledger.limits import CHAIN_ID_BYTES, MAX_BLOCK_BYTES

MAGIC = b"NANUM-EXPORT/1\n"
RECORD_GENESIS = 0
RECORD_BLOCK = 1
MAX_CERTIFICATE_BYTES = 64 * 1024           # 256 node signatures need about 26 KiB
MAX_RECORD_BYTES = MAX_BLOCK_BYTES + MAX_CERTIFICATE_BYTES + 64
_LENGTH = struct.Struct(">I")
_READ_CHUNK = 1024 * 1024


class ExportError(Exception):
    """An export file that is not well formed. ``record`` (0 = genesis), ``height`` (None for
    the magic line and record 0's framing) and ``offset`` (where the record starts) locate it."""

    def __init__(self, record: int, offset: int, reason: str, height: int | None = None) -> None:
        where = f"record {record}" + (f" (block {height})" if height is not None else "")
        super().__init__(f"{where} at byte {offset}: {reason}")
        self.record, self.offset, self.reason, self.height = record, offset, reason, height


class PartialRecord(ExportError):
    """The file ends inside a record (an interrupted export): resumable."""


@dataclass(frozen=True, slots=True)
class BlockRecord:
    height: int
    block: bytes
    certificate: bytes
    offset: int            # where the record starts in the file
    end: int               # where the next one starts


def encode_genesis_record(chain_id: bytes, genesis_block: bytes) -> bytes:
    return _frame(encode([RECORD_GENESIS, chain_id, genesis_block]))


def encode_block_record(height: int, block: bytes, certificate: bytes) -> bytes:
    return _frame(encode([RECORD_BLOCK, height, block, certificate]))


def _frame(body: bytes) -> bytes:
    if not 0 < len(body) <= MAX_RECORD_BYTES:
        raise ValueError(f"a record holds 1..{MAX_RECORD_BYTES} bytes")
    return _LENGTH.pack(len(body)) + body


# --- reading ---------------------------------------------------------------------------------


class ExportReader:
    """Reads an export from an open binary file, strictly, in order. The magic line and record 0
    are read on construction (``chain_id``, ``genesis``); ``records()`` yields the blocks."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.offset = 0
        magic = self._read_exact(len(MAGIC))
        if magic != MAGIC and MAGIC.startswith(magic):
            raise PartialRecord(0, 0, "the file ends inside the magic line")
        if magic != MAGIC:
            raise ExportError(0, 0, f"not a nanum export (it does not start with {MAGIC!r})")
        self.offset = len(MAGIC)
        body = self._next_body(0, None)
        if body is None:
            raise PartialRecord(0, self.offset, "the file ends before the genesis record")
        self.chain_id, self.genesis = _genesis_fields(body, self.offset)
        self.offset += _LENGTH.size + len(body)
        self.records_read = 1

    def records(self) -> Iterator[BlockRecord]:
        """Block records in order, each checked; ExportError at the first bad one."""
        height = 1
        while True:
            start = self.offset
            body = self._next_body(height, height)
            if body is None:
                return
            record_height, block, certificate = _block_fields(body, height, start)
            self.offset += _LENGTH.size + len(body)
            self.records_read += 1
            yield BlockRecord(record_height, block, certificate, start, self.offset)
            height += 1

    def _next_body(self, record: int, height: int | None) -> bytes | None:
        start = self.offset
        prefix = self._read_exact(_LENGTH.size)
        if not prefix:
            return None
        if len(prefix) < _LENGTH.size:
            raise PartialRecord(record, start, "the file ends inside a record's length", height)
        (length,) = _LENGTH.unpack(prefix)
        if not 0 < length <= MAX_RECORD_BYTES:
            raise ExportError(record, start, f"record length {length} outside 1..{MAX_RECORD_BYTES}", height)
        body = self._read_exact(length)
        if len(body) < length:
            raise PartialRecord(record, start, f"the file ends inside the record ({len(body)} of {length} bytes)",
                                height)
        return body

    def _read_exact(self, size: int) -> bytes:
        parts, remaining = [], size
        while remaining:
            part = self._handle.read(min(remaining, _READ_CHUNK))
            if not part:
                break
            parts.append(part)
            remaining -= len(part)
        return b"".join(parts)


def _genesis_fields(body: bytes, offset: int) -> tuple[bytes, bytes]:
    try:
        fields = expect_array(decode(body, MAX_RECORD_BYTES), 3, "record")
        expect_uint(fields[0], "record.type", RECORD_GENESIS, RECORD_GENESIS)
        chain_id = expect_bytes(fields[1], "record.chain_id", size=CHAIN_ID_BYTES)
        genesis = expect_bytes(fields[2], "record.genesis", max_size=MAX_BLOCK_BYTES)
        header = decode_block(genesis).header
    except DecodeError as exc:
        raise ExportError(0, offset, f"{exc.field or 'record'}: {exc}") from None
    if header.height != 0 or header.chain_id != chain_id:
        raise ExportError(0, offset, "record.chain_id: not the chain id of the genesis block it holds")
    return chain_id, genesis


def _block_fields(body: bytes, height: int, offset: int) -> tuple[int, bytes, bytes]:
    try:
        fields = expect_array(decode(body, MAX_RECORD_BYTES), 4, "record")
        expect_uint(fields[0], "record.type", RECORD_BLOCK, RECORD_BLOCK)
        record_height = expect_uint(fields[1], "record.height")
        block = expect_bytes(fields[2], "record.block", max_size=MAX_BLOCK_BYTES)
        certificate = expect_bytes(fields[3], "record.certificate", max_size=MAX_CERTIFICATE_BYTES)
    except DecodeError as exc:
        raise ExportError(height, offset, f"{exc.field or 'record'}: {exc}", height) from None
    if record_height != height:
        raise ExportError(height, offset, f"record.height: holds block {record_height}; block {height} "
                          "belongs here (a block is missing or out of order)", height)
    return record_height, block, certificate


def verify_input(reader: ExportReader) -> Iterator[tuple[bytes, bytes]]:
    """(block, certificate) pairs for ``ledger.verify.verify_chain``; a malformed record
    becomes a BlockError at its height (field ``export``), so it is reported in order."""
    try:
        for record in reader.records():
            yield record.block, record.certificate
    except ExportError as exc:
        raise BlockError(exc.height or 1, None, "export", str(exc)) from None


# --- writing ---------------------------------------------------------------------------------


class ExportWriter:
    """Appends block records to an export, checking each extends the last; fsyncs per page."""

    def __init__(self, handle: BinaryIO, chain_id: bytes, next_height: int, last_hash: bytes) -> None:
        self._handle = handle
        self.chain_id = chain_id
        self.next_height = next_height
        self.last_hash = last_hash

    def append_page(self, page: list[tuple[int, bytes, bytes]]) -> None:
        """Writes (height, block, certificate) records, then fsyncs. ValueError, with nothing
        of the page written, if a block is not the next one or does not link to the last."""
        frames, height, last_hash = [], self.next_height, self.last_hash
        for record_height, block, certificate in page:
            header = _extending_header(record_height, block, certificate, height, last_hash)
            frames.append(encode_block_record(height, block, certificate))
            height, last_hash = height + 1, header.hash()
        self._handle.write(b"".join(frames))
        _sync(self._handle)
        self.next_height, self.last_hash = height, last_hash

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "ExportWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _extending_header(record_height: int, block: bytes, certificate: bytes, height: int,
                      last_hash: bytes) -> Header:
    if record_height != height:
        raise ValueError(f"block {record_height} was given where block {height} belongs")
    if not certificate:
        raise ValueError(f"block {height} has no certificate; only certified blocks are exported")
    try:
        header = decode_block(block).header
    except DecodeError as exc:
        raise ValueError(f"block {height} does not decode: {exc}") from None
    if header.height != height or header.prev_hash != last_hash:
        raise ValueError(f"block {height} does not extend the export's last block")
    return header


def _sync(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def create_export(path: Path, chain_id: bytes, genesis_block: bytes) -> ExportWriter:
    """A new export at ``path`` (refuses to overwrite a file) holding the magic and record 0."""
    handle = open(path, "xb")
    try:
        handle.write(MAGIC + encode_genesis_record(chain_id, genesis_block))
        _sync(handle)
        _sync_folder(path)
    except BaseException:
        handle.close()
        raise
    return ExportWriter(handle, chain_id, 1, _hash_of_block(genesis_block))


@dataclass(frozen=True, slots=True)
class ExportScan:
    chain_id: bytes
    genesis: bytes
    last_height: int
    last_hash: bytes
    end: int                 # offset just after the last complete record
    cut: int                 # bytes after it: a partial record or a zero-filled tail


def scan_export(path: Path) -> ExportScan:
    """Reads a whole export; its complete records must all be well formed (else ExportError).
    A partial last record, or a tail of zero bytes, is reported in ``cut``, not as an error."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        reader = ExportReader(handle)
        last_height, last_block = 0, reader.genesis
        try:
            for record in reader.records():
                last_height, last_block = record.height, record.block
        except PartialRecord:
            pass
        except ExportError:
            if not _zero_tail(handle, reader.offset, size):
                raise
    return ExportScan(reader.chain_id, reader.genesis, last_height, _hash_of_block(last_block),
                      reader.offset, size - reader.offset)


def resume_export(path: Path, chain_id: bytes, genesis_block: bytes) -> tuple[ExportWriter, ExportScan]:
    """Opens an existing export to continue it: checks its records and its chain id, cuts a
    partial last record, and returns a writer positioned after the last complete block. A file
    cut short before its genesis record was complete is started again with ``genesis_block``."""
    try:
        scan = scan_export(path)
    except PartialRecord as exc:
        if exc.record != 0:
            raise
        discarded = path.stat().st_size
        path.unlink()
        return create_export(path, chain_id, genesis_block), ExportScan(
            chain_id, genesis_block, 0, _hash_of_block(genesis_block), 0, discarded)
    if scan.chain_id != chain_id:
        raise ExportError(0, len(MAGIC), f"the export is of chain {scan.chain_id.hex()}, not {chain_id.hex()}")
    handle = open(path, "r+b")
    try:
        handle.truncate(scan.end)
        handle.seek(scan.end)
        _sync(handle)
    except BaseException:
        handle.close()
        raise
    return ExportWriter(handle, chain_id, scan.last_height + 1, scan.last_hash), scan


def _zero_tail(handle: BinaryIO, start: int, size: int) -> bool:
    handle.seek(start)
    while chunk := handle.read(_READ_CHUNK):
        if chunk.count(0) != len(chunk):
            return False
    return size > start


def _hash_of_block(block: bytes) -> bytes:
    try:
        return decode_block(block).header.hash()
    except DecodeError as exc:
        raise ExportError(0, 0, f"the last block of the export does not decode: {exc}") from None


def _sync_folder(path: Path) -> None:
    fd = os.open(path.parent if str(path.parent) else ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
