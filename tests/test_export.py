"""The export file format (ledger/export.py, docs/FORMAT.md §13): bytes on disk, the strict
reader and its located errors, the writer's checks, and resuming an interrupted export.

The chain is built offline (tests/consortium.py), one certified block per transaction.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ledger.block import BlockError, decode_block
from ledger.certificate import Certificate, endorse
from ledger.encoding import encode
from ledger.export import (
    MAGIC,
    MAX_RECORD_BYTES,
    ExportError,
    ExportReader,
    PartialRecord,
    create_export,
    encode_block_record,
    encode_genesis_record,
    resume_export,
    scan_export,
    verify_input,
)
from ledger.ledger import Ledger
from ledger.verify import verify_chain
from tests.consortium import GENESIS_TIME_MS, TestConsortium

BLOCKS = 8


@pytest.fixture(scope="module")
def chain() -> tuple[TestConsortium, list[tuple[int, bytes, bytes]]]:
    c = TestConsortium()
    ledger = Ledger.in_memory(c.genesis_raw)
    alice = c.member("alice")
    txs = [c.register(alice)] + [c.deposit(alice, 10 + i) for i in range(BLOCKS - 1)]
    records = []
    for height, tx in enumerate(txs, start=1):
        executed = ledger.build([tx], GENESIS_TIME_MS + height * 1000)
        header = executed.block.header
        certificate = Certificate.build(height, header.hash(),
                                        [(n.public_key, endorse(n, header)) for n in c.nodes[:2]]).encode()
        ledger.commit(executed, certificate)
        records.append((height, executed.block.encode(), certificate))
    return c, records


def write_export(path: Path, chain, upto: int = BLOCKS, page: int = 3) -> Path:
    c, records = chain
    with create_export(path, c.chain_id, c.genesis_raw) as writer:
        for start in range(0, upto, page):
            writer.append_page(records[start:min(start + page, upto)])
    return path


def expected_bytes(chain) -> bytes:
    c, records = chain
    return MAGIC + encode_genesis_record(c.chain_id, c.genesis_raw) + b"".join(
        encode_block_record(h, b, cert) for h, b, cert in records)


def read_all(path: Path) -> tuple[ExportReader, list]:
    handle = open(path, "rb")
    reader = ExportReader(handle)
    return reader, list(reader.records())


# --- the bytes on disk ------------------------------------------------------------------------


def test_the_file_is_the_magic_then_length_prefixed_canonical_records(chain, tmp_path):
    c, records = chain
    path = write_export(tmp_path / "x.nanum", chain)
    data = path.read_bytes()
    assert data.startswith(b"NANUM-EXPORT/1\n")
    offset = len(MAGIC)
    (length,) = struct.unpack(">I", data[offset:offset + 4])
    assert data[offset + 4:offset + 4 + length] == encode([0, c.chain_id, c.genesis_raw])
    offset += 4 + length
    (length,) = struct.unpack(">I", data[offset:offset + 4])
    height, block, certificate = records[0]
    assert data[offset + 4:offset + 4 + length] == encode([1, 1, block, certificate])
    assert data == expected_bytes(chain)


def test_the_reader_gives_back_every_record_in_order(chain, tmp_path):
    c, records = chain
    reader, got = read_all(write_export(tmp_path / "x.nanum", chain))
    assert (reader.chain_id, reader.genesis) == (c.chain_id, c.genesis_raw)
    assert [(r.height, r.block, r.certificate) for r in got] == records
    assert got[0].offset == len(MAGIC) + 4 + len(encode([0, c.chain_id, c.genesis_raw]))
    assert all(a.end == b.offset for a, b in zip(got, got[1:]))


def test_an_export_verifies(chain, tmp_path):
    reader, _ = read_all(write_export(tmp_path / "x.nanum", chain))
    with open(tmp_path / "x.nanum", "rb") as handle:
        reader = ExportReader(handle)
        report = verify_chain(reader.genesis, verify_input(reader), require_certificates=True)
    assert report.ok, report.problem
    assert (report.blocks, report.transactions) == (BLOCKS + 1, BLOCKS + 1)


# --- the strict reader ------------------------------------------------------------------------


def corrupt(path: Path, offset: int, data: bytes) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset:offset + len(data)] = data
    path.write_bytes(bytes(raw))


def record_offsets(path: Path) -> list[int]:
    _, got = read_all(path)
    return [r.offset for r in got]


def test_a_file_that_is_not_an_export_is_refused_at_byte_0(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(b"PK\x03\x04 a zip file, not an export")
    with pytest.raises(ExportError) as caught, open(path, "rb") as handle:
        ExportReader(handle)
    assert (caught.value.record, caught.value.offset) == (0, 0)
    assert "not a nanum export" in str(caught.value)


@pytest.mark.parametrize("length,reason", [(0, "outside"), (MAX_RECORD_BYTES + 1, "outside")])
def test_a_record_length_out_of_bounds_is_located(chain, tmp_path, length, reason):
    path = write_export(tmp_path / "x.nanum", chain)
    offsets = record_offsets(path)
    corrupt(path, offsets[3], struct.pack(">I", length))
    with pytest.raises(ExportError) as caught:
        read_all(path)
    error = caught.value
    assert (error.record, error.height, error.offset) == (4, 4, offsets[3])
    assert reason in error.reason and f"record 4 (block 4) at byte {offsets[3]}" in str(error)


def test_a_record_of_the_wrong_type_or_shape_is_located(chain, tmp_path):
    c, records = chain
    path = tmp_path / "x.nanum"
    body = encode([1, 1, records[0][1]])                       # three fields, not four
    path.write_bytes(MAGIC + encode_genesis_record(c.chain_id, c.genesis_raw) + struct.pack(">I", len(body)) + body)
    with pytest.raises(ExportError) as caught:
        read_all(path)
    assert caught.value.height == 1 and "record" in caught.value.reason
    body = encode([0, 1, records[0][1], records[0][2]])         # type 0 where a block belongs
    path.write_bytes(MAGIC + encode_genesis_record(c.chain_id, c.genesis_raw) + struct.pack(">I", len(body)) + body)
    with pytest.raises(ExportError, match="record.type"):
        read_all(path)


def test_a_non_canonical_record_is_refused(chain, tmp_path):
    c, records = chain
    body = bytearray(encode([1, 1, records[0][1], records[0][2]]))
    assert body[1] == 1
    body[1:2] = b"\xcc\x01"                                      # height 1 as uint8: not the shortest form
    path = tmp_path / "x.nanum"
    path.write_bytes(MAGIC + encode_genesis_record(c.chain_id, c.genesis_raw) + struct.pack(">I", len(body))
                     + bytes(body))
    with pytest.raises(ExportError, match="canonical"):
        read_all(path)


@pytest.mark.parametrize("change", ["drop", "swap", "repeat"])
def test_heights_must_be_consecutive(chain, tmp_path, change):
    c, records = chain
    order = {"drop": [1, 2, 4, 5], "swap": [1, 2, 4, 3, 5], "repeat": [1, 2, 3, 3, 4]}[change]
    path = tmp_path / "x.nanum"
    path.write_bytes(MAGIC + encode_genesis_record(c.chain_id, c.genesis_raw) + b"".join(
        encode_block_record(*records[h - 1]) for h in order))
    with pytest.raises(ExportError) as caught:
        read_all(path)
    bad = next(i for i, h in enumerate(order, start=1) if h != i)
    assert (caught.value.record, caught.value.height) == (bad, bad)
    assert f"holds block {order[bad - 1]}; block {bad} belongs here" in caught.value.reason


def test_record_0_must_name_its_genesis_chain(chain, tmp_path):
    c, _ = chain
    path = tmp_path / "x.nanum"
    path.write_bytes(MAGIC + encode_genesis_record(bytes(16), c.genesis_raw))
    with pytest.raises(ExportError, match="record.chain_id"):
        read_all(path)


def test_a_partial_last_record_is_reported_as_partial(chain, tmp_path):
    path = write_export(tmp_path / "x.nanum", chain)
    data = path.read_bytes()
    last = record_offsets(path)[-1]
    for cut in (last + 2, last + 4, last + 40, len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(PartialRecord) as caught:
            read_all(path)
        assert (caught.value.height, caught.value.offset) == (BLOCKS, last)


def test_a_broken_record_becomes_a_block_problem_at_its_height_for_the_verifier(chain, tmp_path):
    path = write_export(tmp_path / "x.nanum", chain)
    corrupt(path, record_offsets(path)[5], struct.pack(">I", 0))
    with open(path, "rb") as handle:
        reader = ExportReader(handle)
        report = verify_chain(reader.genesis, verify_input(reader), require_certificates=True)
    assert not report.ok
    assert (report.problem.height, report.problem.index, report.problem.field) == (6, None, "export")
    assert report.blocks == 6         # blocks 0..5 verified before it


# --- the writer -------------------------------------------------------------------------------


def test_the_writer_refuses_what_does_not_extend_the_export_and_writes_nothing(chain, tmp_path):
    c, records = chain
    path = tmp_path / "x.nanum"
    with create_export(path, c.chain_id, c.genesis_raw) as writer:
        writer.append_page(records[:2])
        size = path.stat().st_size
        with pytest.raises(ValueError, match="belongs"):
            writer.append_page([records[3]])                            # height 4 after 2
        with pytest.raises(ValueError, match="does not extend"):
            writer.append_page([(3, records[4][1], records[4][2])])     # block 5 posing as 3
        with pytest.raises(ValueError, match="no certificate"):
            writer.append_page([(3, records[2][1], b"")])
        with pytest.raises(ValueError, match="does not decode"):
            writer.append_page([(3, b"\x00" + records[2][1], records[2][2])])
        assert path.stat().st_size == size
        writer.append_page(records[2:])
    assert path.read_bytes() == expected_bytes(chain)


def test_create_refuses_to_overwrite(chain, tmp_path):
    path = write_export(tmp_path / "x.nanum", chain)
    c, _ = chain
    with pytest.raises(FileExistsError):
        create_export(path, c.chain_id, c.genesis_raw)


# --- resuming ---------------------------------------------------------------------------------


def test_resuming_after_a_cut_anywhere_gives_the_one_shot_file(chain, tmp_path):
    c, records = chain
    whole = expected_bytes(chain)
    offsets = record_offsets(write_export(tmp_path / "ref.nanum", chain))
    cuts = sorted({len(MAGIC) + 3, offsets[0], offsets[0] + 1, offsets[3] - 1, offsets[3], offsets[3] + 3,
                   offsets[5] + 50, len(whole) - 1, len(whole)})
    for cut in cuts:
        path = tmp_path / f"cut{cut}.nanum"
        path.write_bytes(whole[:cut])
        writer, scan = resume_export(path, c.chain_id, c.genesis_raw)
        with writer:
            assert scan.end + scan.cut == cut
            writer.append_page(records[writer.next_height - 1:])
        assert path.read_bytes() == whole, f"cut at {cut}"


def test_resuming_cuts_a_zero_filled_tail(chain, tmp_path):
    c, records = chain
    path = write_export(tmp_path / "x.nanum", chain, upto=5)
    path.write_bytes(path.read_bytes() + bytes(4096))
    writer, scan = resume_export(path, c.chain_id, c.genesis_raw)
    with writer:
        assert (scan.last_height, scan.cut) == (5, 4096)
        writer.append_page(records[5:])
    assert path.read_bytes() == expected_bytes(chain)


def test_resuming_a_file_cut_inside_its_genesis_record_starts_it_again(chain, tmp_path):
    c, records = chain
    path = tmp_path / "x.nanum"
    path.write_bytes(expected_bytes(chain)[:len(MAGIC) + 10])
    writer, _ = resume_export(path, c.chain_id, c.genesis_raw)
    with writer:
        writer.append_page(records)
    assert path.read_bytes() == expected_bytes(chain)


def test_resuming_refuses_a_damaged_record_before_the_end(chain, tmp_path):
    c, _ = chain
    path = write_export(tmp_path / "x.nanum", chain)
    corrupt(path, record_offsets(path)[2], struct.pack(">I", MAX_RECORD_BYTES + 7))
    before = path.read_bytes()
    with pytest.raises(ExportError) as caught:
        resume_export(path, c.chain_id, c.genesis_raw)
    assert caught.value.height == 3
    assert path.read_bytes() == before, "a refused resume changes nothing"


def test_resuming_refuses_another_chain(chain, tmp_path):
    c, _ = chain
    path = write_export(tmp_path / "x.nanum", chain)
    with pytest.raises(ExportError, match="is of chain"):
        resume_export(path, bytes(16), c.genesis_raw)


def test_scan_reports_the_last_block_and_its_hash(chain, tmp_path):
    c, records = chain
    path = write_export(tmp_path / "x.nanum", chain, upto=4)
    scan = scan_export(path)
    assert (scan.chain_id, scan.last_height, scan.cut) == (c.chain_id, 4, 0)
    assert scan.last_hash == decode_block(records[3][1]).header.hash()
    assert scan.end == path.stat().st_size


def test_verify_input_turns_a_reader_error_into_a_block_error(chain, tmp_path):
    path = write_export(tmp_path / "x.nanum", chain)
    path.write_bytes(path.read_bytes()[:-5])
    with open(path, "rb") as handle:
        reader = ExportReader(handle)
        items = verify_input(reader)
        for _ in range(BLOCKS - 1):
            next(items)
        with pytest.raises(BlockError) as caught:
            next(items)
    assert (caught.value.height, caught.value.field) == (BLOCKS, "export")
    assert "ends inside the record" in caught.value.reason
