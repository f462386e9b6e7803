"""The auditor's side, end to end: `nanum audit export | verify | checkpoint | consistency` and
`nanum node check`, through click's CliRunner, on real files and a real 3-node cluster.

Offline part: the verifier's story chain of tests/test_verify.py (every kind of transaction,
exact totals known there), written to an export file; then each kind of corruption of the
EXPORT FILE must make `audit verify` exit 5 and name the right height, index and field in its
--json output, and the parallel verifier must report exactly what the sequential one does.

Live part (one module-scoped LocalCluster, always stopped): a workload of every kind whose
totals are known by construction, verified from the nodes and from an export; resuming an
interrupted export; checkpoints and consistency proofs, with forged checkpoints refused; and a
node's store edited on disk (a balance in `state`, a byte of a block in `blocks`), which
`nanum node check` names and the node refuses to start on.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from ledger.block import Block, BlockError, decode_block
from ledger.certificate import Certificate, endorse
from ledger.checkpoint import CheckpointBody, body_of, parse_note, signed_note
from ledger.codes import Code
from ledger.encoding import decode, encode
from ledger.export import MAGIC, ExportReader, encode_block_record, encode_genesis_record, verify_input
from ledger.genesis import build_genesis
from ledger.ledger import Ledger
from ledger.keys import SigningKey, read_key_file
from ledger.parallel import verify_chain_parallel
from ledger.state import BUCKET
from ledger.store import Store, compress_block, decompress_block, u64
from ledger.tx import (
    Deposit,
    DepositKind,
    Governance,
    GovernanceAction,
    Redeem,
    Refund,
    RegisterMember,
    Reversal,
    Role,
    make_tx,
)
from ledger.verify import verify_chain
from ledger.voucher import sign_voucher
from node.client import ClientError
from node.cluster import LocalCluster, free_base_port
from node.config import load_config
from node.consortium import ConsortiumSpec, create_consortium
from tests.consortium import GENESIS_TIME_MS, TestConsortium, key
from tests.test_verify import Chain, chain  # noqa: F401  (the story chain fixture)
from tests.cli_runner import CLEAN_ENV, nanum  # noqa: F401

SEED = int(os.environ.get("NANUM_TEST_SEED", "424242"))




def verify_json(export: Path, genesis: Path, code: int, workers: int = 2) -> dict:
    out = json.loads(nanum("audit", "verify", "--export", export, "--genesis", genesis, "--json",
                           "--workers", workers, code=code).stdout)
    assert out["ok"] == (code == 0)
    return out


def assert_problem(out: dict, height: int, index: int | None, field: str, reason: str = "") -> None:
    problem = out["problem"]
    assert problem is not None, "the corruption was not found"
    assert (problem["height"], problem["index"]) == (height, index), f"found at the wrong place: {problem}"
    assert problem["field"].startswith(field), f"wrong field: {problem}"
    assert reason in problem["reason"], f"wrong reason: {problem}"


# --- an export of the story chain --------------------------------------------------------------


def write_export(path: Path, genesis: bytes, records: list[tuple[int, bytes, bytes]]) -> Path:
    """An export holding exactly these records (no checks: tampered ones too)."""
    chain_id = decode_block(genesis).header.chain_id
    path.write_bytes(MAGIC + encode_genesis_record(chain_id, genesis)
                     + b"".join(encode_block_record(*r) for r in records))
    return path


def records_of(chain: Chain) -> list[tuple[int, bytes, bytes]]:
    return [(h, b, c) for h, (b, c) in enumerate(zip(chain.blocks, chain.certificates), start=1)]


@pytest.fixture(scope="module")
def story(chain, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("story")
    genesis = folder / "genesis.bin"
    genesis.write_bytes(chain.genesis)
    export = write_export(folder / "story.nanum", chain.genesis, records_of(chain))
    return {"folder": folder, "genesis": genesis, "export": export}


def tampered(story: dict, chain: Chain, name: str, records) -> Path:
    return write_export(story["folder"] / f"{name}.nanum", chain.genesis, records)


def with_record(chain: Chain, height: int, block: bytes | None = None, certificate: bytes | None = None):
    records = records_of(chain)
    h, b, c = records[height - 1]
    records[height - 1] = (h, block if block is not None else b, certificate if certificate is not None else c)
    return records


def flip(raw: bytes, position: int, mask: int = 0x01) -> bytes:
    return raw[:position] + bytes([raw[position] ^ mask]) + raw[position + 1:]


def flip_in_file(path: Path, target: Path, needle: bytes, offset: int) -> Path:
    data = path.read_bytes()
    assert data.count(needle) == 1
    target.write_bytes(flip(data, data.index(needle) + offset))
    return target


@pytest.mark.parametrize("workers", [0, 2])
def test_a_good_export_verifies_with_exact_totals(story, chain, workers):
    c = chain.consortium
    out = verify_json(story["export"], story["genesis"], 0, workers)
    last = decode_block(chain.blocks[-1]).header
    assert (out["blocks"], out["transactions"], out["members"]) == (11, 25, 3)
    assert (out["head_height"], out["head_hash"], out["tree_size"], out["tree_root"]) == \
        (10, last.hash().hex(), 25, last.tree_root.hex())
    centres = {x["name"]: (x["deposited"], x["reversed"], x["redeemed"], x["refunded"], x["outstanding"])
               for x in out["centres"]}
    assert centres == {"centre0": (130, 30, 80, 20, 40), "centre1": (125, 0, 90, 40, 75),
                       "centre-c": (25, 0, 0, 0, 25)}
    partners = {x["name"]: (x["id"], x["redeemed"]) for x in out["partners"]}
    assert partners == {"partner0": (c.partners[0].party_id.hex(), 100),
                        "partner1": (c.partners[1].party_id.hex(), 10)}
    assert out["problem"] is None and out["workers"] == workers


def test_the_human_summary_names_centres_and_partners(story):
    text = nanum("audit", "verify", "--export", story["export"], "--genesis", story["genesis"]).output
    assert "11 blocks (0..10), 25 transactions, 3 members" in text
    assert "centre-c" in text and "partner1" in text and "tree:  size 25" in text


def test_a_flipped_transaction_byte_is_located(story, chain):
    height, index = chain.where("d2")
    member = chain.consortium.member("alice").party_id
    bad = flip_in_file(story["export"], story["folder"] / "txbyte.nanum", chain.txs["d2"].raw,
                       chain.txs["d2"].raw.index(member) + 5)
    out = verify_json(bad, story["genesis"], 5)
    assert_problem(out, height, index, "", "BAD_SIGNATURE")
    assert (out["blocks"], out["transactions"]) == (height, 1 + 3)       # genesis and block 1 verified before it


@pytest.mark.parametrize("name,which,field", [
    ("r1", "author", "signature"),
    ("r1", "voucher", "signature"),            # the voucher is inside what the partner signed
    ("admit_c", "approval", "approvals[0].signature"),
    ("d5", "author", "signature"),
])
def test_a_flipped_signature_is_located(story, chain, name, which, field):
    tx = chain.txs[name]
    needle = {"author": lambda: tx.signature, "voucher": lambda: tx.payload.voucher.signature,
              "approval": lambda: tx.approvals[0].signature}[which]()
    height, index = chain.where(name)
    bad = flip_in_file(story["export"], story["folder"] / f"sig-{name}-{which}.nanum", needle, 20)
    assert_problem(verify_json(bad, story["genesis"], 5), height, index, field, "BAD_SIGNATURE")


@pytest.mark.parametrize("height", [1, 6, 10])
def test_a_flipped_certificate_signature_is_located(story, chain, height):
    certificate = Certificate.decode(chain.certificates[height - 1])
    bad = flip_in_file(story["export"], story["folder"] / f"cert{height}.nanum", certificate.signatures[1][1], 7)
    assert_problem(verify_json(bad, story["genesis"], 5), height, None, "certificate.signatures[1].signature",
                   "does not verify")


@pytest.mark.parametrize("field", ["state_root", "tree_root", "time_ms", "prev_hash"])
def test_a_changed_header_field_is_located(story, chain, field):
    block = decode_block(chain.block(5))
    value = {"state_root": flip(block.header.state_root, 3), "tree_root": flip(block.header.tree_root, 3),
             "time_ms": block.header.time_ms - 60_001, "prev_hash": flip(block.header.prev_hash, 9)}[field]
    raw = Block(dataclasses.replace(block.header, **{field: value}), block.entries).encode()
    bad = tampered(story, chain, f"header-{field}", with_record(chain, 5, block=raw))
    assert_problem(verify_json(bad, story["genesis"], 5), 5, None, f"header.{field}")


def test_a_dropped_block_record_is_located(story, chain):
    records = records_of(chain)
    bad = tampered(story, chain, "dropped", records[:3] + records[4:])
    out = verify_json(bad, story["genesis"], 5)
    assert_problem(out, 4, None, "export", "holds block 5; block 4 belongs here")
    assert out["blocks"] == 4


def test_two_swapped_block_records_are_located(story, chain):
    records = records_of(chain)
    records[3], records[4] = records[4], records[3]
    bad = tampered(story, chain, "swapped", records)
    assert_problem(verify_json(bad, story["genesis"], 5), 4, None, "export", "holds block 5")


def test_blocks_renumbered_to_hide_a_drop_break_the_hash_chain(story, chain):
    records = records_of(chain)
    kept = records[:3] + records[4:]
    renumbered = [(h, b, c) for h, (_, b, c) in enumerate(kept, start=1)]
    bad = tampered(story, chain, "renumbered", renumbered)
    assert_problem(verify_json(bad, story["genesis"], 5), 4, None, "header.")


def _certificate(chain: Chain, height: int, signers) -> bytes:
    header = decode_block(chain.block(height)).header
    return Certificate.build(height, header.hash(), [(k.public_key, endorse(k, header)) for k in signers]).encode()


def test_a_block_certified_by_a_minority_is_located(story, chain):
    minority = _certificate(chain, 7, chain.consortium.nodes[:1])
    bad = tampered(story, chain, "minority", with_record(chain, 7, certificate=minority))
    assert_problem(verify_json(bad, story["genesis"], 5), 7, None, "certificate.signatures",
                   "1 of 3 nodes signed; a majority is 2")


def test_a_certificate_signed_by_a_key_outside_the_node_set_is_located(story, chain):
    mallory = key("mallory-node")
    signers = [chain.consortium.nodes[0], mallory]
    outsider = _certificate(chain, 8, signers)
    index = sorted(k.public_key for k in signers).index(mallory.public_key)
    bad = tampered(story, chain, "outsider", with_record(chain, 8, certificate=outsider))
    assert_problem(verify_json(bad, story["genesis"], 5), 8, None, f"certificate.signatures[{index}].public_key",
                   "outside the node set")


def test_a_certificate_of_another_block_or_none_is_located(story, chain):
    bad = tampered(story, chain, "othercert", with_record(chain, 3, certificate=chain.certificates[3]))
    assert_problem(verify_json(bad, story["genesis"], 5), 3, None, "certificate.height")
    bad = tampered(story, chain, "nocert", with_record(chain, 9, certificate=b""))
    assert_problem(verify_json(bad, story["genesis"], 5), 9, None, "certificate")


def test_an_export_of_another_genesis_is_refused(story, chain):
    other = build_genesis("Another bank", GENESIS_TIME_MS, 1, [(key("admin-x"), "x")],
                          [(key("centre-x").public_key, "cx")], [], [(key("node-x").public_key, "n", "127.0.0.1:1")])
    foreign = story["folder"] / "foreign-genesis.bin"
    foreign.write_bytes(other)
    assert_problem(verify_json(story["export"], foreign, 5), 0, None, "genesis", "not the one in")


def test_a_truncated_export_is_located_at_its_last_block(story):
    bad = story["folder"] / "truncated.nanum"
    bad.write_bytes(story["export"].read_bytes()[:-100])
    out = verify_json(bad, story["genesis"], 5)
    assert_problem(out, 10, None, "export", "ends inside the record")
    assert out["blocks"] == 10


def _genesis_record_length(story) -> int:
    return int.from_bytes(story["export"].read_bytes()[len(MAGIC):len(MAGIC) + 4], "big")


@pytest.mark.parametrize("damage, reason", [
    (lambda data, n: b"", "ends inside the magic line"),
    (lambda data, n: b"not an export at all", "not a nanum export"),
    (lambda data, n: b"NANUM-EXPORT/2\n" + data[len(MAGIC):], "not a nanum export"),
    (lambda data, n: data[:len(MAGIC) - 3], "ends inside the magic line"),
    (lambda data, n: data[:len(MAGIC)], "ends before the genesis record"),
    (lambda data, n: data[:len(MAGIC) + 2], "ends inside a record's length"),
    (lambda data, n: data[:len(MAGIC) + 4 + n // 2], "ends inside the record"),
    (lambda data, n: data[:len(MAGIC)] + bytes(4) + data[len(MAGIC) + 4:], "record length 0"),
    (lambda data, n: flip(data, len(MAGIC) + 4), "record 0 at byte 15"),
    (lambda data, n: flip(data, len(MAGIC) + 4 + 3, 0xFF), "record 0 at byte 15"),
], ids=["empty", "garbage", "other-magic", "cut-in-magic", "magic-only", "cut-in-length", "cut-in-record-0",
        "length-0", "record-0-type-flipped", "record-0-field-flipped"])
def test_a_damaged_magic_line_or_record_0_is_a_located_json_verdict(story, damage, reason):
    """Finding 5: these exited 3 with no JSON; like any other damage, they are one JSON verdict
    with the problem located (height 0, field export) and exit 5."""
    bad = story["folder"] / "damaged-start.nanum"
    bad.write_bytes(damage(story["export"].read_bytes(), _genesis_record_length(story)))
    out = verify_json(bad, story["genesis"], 5)
    assert_problem(out, 0, None, "export", reason)
    assert out["blocks"] == 0 and out["head_height"] is None
    human = nanum("audit", "verify", "--export", bad, "--genesis", story["genesis"], code=5).output
    assert "VERIFICATION FAILED" in human and reason in human and "0..-1" not in human


def test_unreadable_input_and_usage_errors_have_their_exit_codes(story, tmp_path):
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not an export at all")
    assert "cannot read" in nanum("audit", "verify", "--export", tmp_path / "missing", "--genesis",
                                  story["genesis"], "--json", code=3).output
    nanum("audit", "verify", "--export", story["export"], "--genesis", garbage, code=3)
    assert "--genesis" in nanum("audit", "verify", "--export", story["export"], code=2).output
    nanum("audit", "verify", code=2)
    nanum("audit", "verify", "--export", story["export"], "--client", garbage, "--genesis", story["genesis"], code=2)
    # NANUM_CLIENT in the environment does not get in the way of --export
    result = CliRunner().invoke(main, ["audit", "verify", "--export", str(story["export"]), "--genesis",
                                       str(story["genesis"]), "--workers", "0"],
                                env={**CLEAN_ENV, "NANUM_CLIENT": str(garbage)})
    assert result.exit_code == 0, result.output


def test_parallel_and_sequential_verification_report_the_same_first_problem(story, chain):
    """Seeded random byte flips anywhere after the genesis record: both verifiers find each one,
    at the same height, index, field and reason."""
    rng = random.Random(SEED)
    data = story["export"].read_bytes()
    start = len(MAGIC) + 4 + len(encode([0, chain.consortium.chain_id, chain.genesis]))
    path = story["folder"] / "flipped.nanum"
    differences = []
    for _ in range(12):
        position, mask = rng.randrange(start, len(data)), rng.randint(1, 255)
        path.write_bytes(flip(data, position, mask))
        reports = []
        for workers in (0, 2):
            with open(path, "rb") as handle:
                reader = ExportReader(handle)
                reports.append(verify_chain_parallel(chain.genesis, verify_input(reader), workers,
                                                     require_certificates=True))
        sequential, parallel = reports
        if sequential.ok or sequential.problem != parallel.problem or sequential.blocks != parallel.blocks:
            differences.append(f"byte {position} ^ {mask:#04x}: {sequential.problem} / {parallel.problem}")
    assert not differences, f"NANUM_TEST_SEED={SEED}:\n" + "\n".join(differences)


def test_a_signed_but_malformed_transaction_is_found_at_its_place_by_both_verifiers(chain):
    """The workers only check signatures (the replay decodes the schema), the main process checks
    in full: a transaction whose signatures hold but whose payload is malformed is MALFORMED at
    its exact place either way."""
    from ledger.tx import signatures_hold
    from tests.test_tx import SIGNED_BUT_MALFORMED
    raw, field = SIGNED_BUT_MALFORMED["points as bytes"]
    assert signatures_hold(raw, chain.consortium.chain_id)     # so the workers do accept it
    height, index = chain.where("refund_r2")
    block = decode(chain.block(height))
    block[1][index] = encode([raw, 0])
    items = [(b, c) for b, c in zip(chain.blocks, chain.certificates)]
    items[height - 1] = (encode(block), items[height - 1][1])
    reports = [verify_chain_parallel(chain.genesis, iter(items), workers, require_certificates=True)
               for workers in (0, 2)]
    # and with every block checked by the main process, which keeps the transactions it decoded
    from ledger import parallel
    here = verify_chain(chain.genesis, parallel.prechecked(_SlowPool(chain.consortium.chain_id, 1000), iter(items),
                                                           2, chain.consortium.chain_id), require_certificates=True)
    assert reports[0].problem == reports[1].problem == here.problem
    problem = reports[1].problem
    assert (problem.height, problem.index, problem.field) == (height, index, field)
    assert problem.reason.startswith("MALFORMED")


def test_parallel_verification_of_a_long_chain_in_many_chunks_matches(chain):
    """More blocks than one chunk holds, with a bad signature late in the chain."""
    from ledger import parallel
    items = [(b, c) for b, c in zip(chain.blocks, chain.certificates)]
    height, index = chain.where("refund_r2")
    tx = chain.txs["refund_r2"]
    raw = chain.block(height)
    items[height - 1] = (flip(raw, raw.index(tx.raw) + tx.raw.index(tx.signature) + 3), items[height - 1][1])
    old = parallel.MAX_CHUNK_BLOCKS
    parallel.MAX_CHUNK_BLOCKS = 2
    try:
        report = verify_chain_parallel(chain.genesis, iter(items), 2, require_certificates=True)
    finally:
        parallel.MAX_CHUNK_BLOCKS = old
    assert report.problem == verify_chain(chain.genesis, items, require_certificates=True).problem
    assert (report.problem.height, report.problem.index, report.problem.field) == (height, index, "signature")


# --- a live cluster ---------------------------------------------------------------------------


def graceful_stop(cluster: LocalCluster, index: int) -> None:
    process = cluster.processes.pop(index)
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _SlowPool:
    """A pool whose chunk results are computed by the real static check, but reported ready
    only after ``delay`` polls: the main process then checks blocks itself meanwhile. Used to
    put every split of the work between the pool and the main process under test; a real
    pool's timing decides the split by chance."""

    def __init__(self, chain_id: bytes, delay: int) -> None:
        self.chain_id, self.delay, self.checked_here = chain_id, delay, 0

    def submit(self, chunk):
        from ledger import parallel
        parallel._init_worker(self.chain_id)
        return _SlowResult(parallel._check_chunk(0, chunk), self.delay)

    def cancel(self, result) -> None:
        """Nothing runs in the background here, so there is nothing to stop."""


class _SlowResult:
    def __init__(self, value, delay: int) -> None:
        self.value, self.polls_left = value, delay

    def ready(self) -> bool:
        self.polls_left -= 1
        return self.polls_left < 0

    def wait(self) -> None:
        self.polls_left = -1

    def get(self):
        return self.value


@pytest.mark.parametrize("delay", [0, 1, 3, 1000])
def test_blocks_checked_by_the_main_process_meanwhile_verify_in_order(chain, delay):
    """Whatever share of the blocks the main process checks while it waits for the pool (none,
    some, or as many as it may hold), the report is the sequential one: same totals on a good
    chain, same first problem on a bad one, and a source that breaks is reported after the
    blocks before it."""
    from ledger import parallel
    items = [(b, c) for b, c in zip(chain.blocks, chain.certificates)]
    bad = list(items)
    height, index = chain.where("refund_r2")
    tx = chain.txs["refund_r2"]
    raw = chain.block(height)
    bad[height - 1] = (flip(raw, raw.index(tx.raw) + tx.raw.index(tx.signature) + 3), bad[height - 1][1])

    def broken():
        yield from items[:3]
        raise BlockError(4, None, "export", "the file ends inside a record")

    old = parallel.MAX_CHUNK_BLOCKS, parallel.MAX_CHECKED_HERE_BLOCKS
    parallel.MAX_CHUNK_BLOCKS = parallel.MAX_CHECKED_HERE_BLOCKS = 2
    try:
        for source, sequential_source in ((items, items), (bad, bad), (broken, broken)):
            pool = _SlowPool(chain.consortium.chain_id, delay)
            found = verify_chain(chain.genesis, parallel.prechecked(
                pool, source() if callable(source) else iter(source), 2, chain.consortium.chain_id),
                require_certificates=True)
            expected = verify_chain(chain.genesis, sequential_source() if callable(sequential_source)
                                    else sequential_source, require_certificates=True)
            assert (found.ok, found.problem, found.blocks, found.transactions, found.centres) == \
                (expected.ok, expected.problem, expected.blocks, expected.transactions, expected.centres)
    finally:
        parallel.MAX_CHUNK_BLOCKS, parallel.MAX_CHECKED_HERE_BLOCKS = old


@pytest.mark.parametrize("in_flight", [1, 2, 4])
def test_a_bad_signature_in_any_block_is_found_whoever_checks_that_block(chain, in_flight):
    """A pool that finishes a chunk only when waited on: the main process checks blocks while it
    waits and, once the chain is read, takes back chunks still in the pool. A signature broken
    in any one block is found at its place, as the sequential verifier finds it."""
    from ledger import parallel
    items = [(b, c) for b, c in zip(chain.blocks, chain.certificates)]
    old = parallel.MAX_CHUNK_BLOCKS, parallel.MAX_CHECKED_HERE_BLOCKS
    parallel.MAX_CHUNK_BLOCKS, parallel.MAX_CHECKED_HERE_BLOCKS = 1, 2
    try:
        for height in range(1, len(items) + 1):
            block = decode_block(items[height - 1][0])
            tx_raw = decode(block.entries[0])[0]
            signature_at = items[height - 1][0].index(tx_raw) + len(tx_raw) - 10   # in the last signature
            bad = list(items)
            bad[height - 1] = (flip(items[height - 1][0], signature_at), items[height - 1][1])
            found = verify_chain(chain.genesis, parallel.prechecked(
                _SlowPool(chain.consortium.chain_id, 10**9), iter(bad), in_flight, chain.consortium.chain_id),
                require_certificates=True)
            expected = verify_chain(chain.genesis, bad, require_certificates=True)
            assert not expected.ok and found.problem == expected.problem, height
            assert (found.problem.height, found.problem.index) == (height, 0)
            assert found.problem.field.endswith("signature"), found.problem
    finally:
        parallel.MAX_CHUNK_BLOCKS, parallel.MAX_CHECKED_HERE_BLOCKS = old


def test_a_cancelled_chunk_stops_and_closing_the_pool_lets_its_workers_exit(chain):
    """A real pool: cancelling a chunk cancels it and every later one, which answer None at
    their next block; closing cancels the rest, waits for every answer and lets the workers
    exit by themselves (exit code 0). A pool killed with terminate() while a worker writes its
    answer can hang for ever. Two workers: one is busy with the second chunk (over ten seconds
    of checks here, so it cannot finish before it is cancelled) while the other takes the
    rest."""
    import multiprocessing
    from ledger import parallel
    pairs = [(b, c) for b, c in zip(chain.blocks, chain.certificates)]
    long_chunk = pairs * (20_000 // len(pairs))
    pool = parallel.ChunkPool(multiprocessing.get_context("spawn"), 2, chain.consortium.chain_id)
    try:
        first = pool.submit(pairs[:1])
        second, third, fourth = pool.submit(long_chunk), pool.submit(long_chunk), pool.submit(long_chunk)
        assert first.get(timeout=30) == [parallel.check_block_statically(*pairs[0], chain.consortium.chain_id)]
        pool.cancel(third)
        assert third.get(timeout=30) is None and fourth.get(timeout=30) is None
        assert not second.ready()
        workers = list(pool._pool._pool)
    finally:
        pool.close()
    assert second.get(timeout=0) is None
    assert [worker.exitcode for worker in workers] == [0, 0]


def test_closing_a_pool_whose_worker_was_killed_gives_up_after_the_drain_timeout(chain, monkeypatch):
    """A worker killed from outside (SIGKILL) never answers: closing waits POOL_DRAIN_TIMEOUT_MS
    for it, then terminates the pool rather than wait for ever."""
    import multiprocessing
    from ledger import parallel
    monkeypatch.setattr(parallel, "POOL_DRAIN_TIMEOUT_MS", 500)
    pairs = [(b, c) for b, c in zip(chain.blocks, chain.certificates)]
    pool = parallel.ChunkPool(multiprocessing.get_context("spawn"), 1, chain.consortium.chain_id)
    try:
        assert pool.submit(pairs[:1]).get(timeout=30) is not None      # the worker is up
        lost = pool.submit(pairs * (20_000 // len(pairs)))
        time.sleep(0.2)
        (worker,) = pool._pool._pool
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        started = time.monotonic()
        pool.close()
    assert 0.5 <= time.monotonic() - started < 10
    assert not lost.ready()
    assert all(process.exitcode is not None for process in pool._pool._pool)


def test_one_pool_worker_and_the_main_process_verify_like_the_sequential_verifier(chain):
    items = [(b, c) for b, c in zip(chain.blocks, chain.certificates)]
    report = verify_chain_parallel(chain.genesis, iter(items), 1, require_certificates=True)
    expected = verify_chain(chain.genesis, items, require_certificates=True)
    assert report.ok and (report.blocks, report.transactions, report.centres) == \
        (expected.blocks, expected.transactions, expected.centres)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    local = LocalCluster(tmp_path_factory.mktemp("audit") / "consortium")
    try:
        local.layout = create_consortium(local.folder, ConsortiumSpec(
            name="Audit test bank", created_ms=int(time.time() * 1000), nodes=3,
            centres=("Centre A", "Centre B"), partners=("Bookstore P", "Venue Q"),
            base_port=free_base_port(3)))
        local.start()
        local.leader()
        yield local
    finally:
        local.stop()


class Workload:
    """Every kind of transaction, with totals known by construction (see EXPECTED)."""

    def __init__(self, cluster: LocalCluster) -> None:
        layout = cluster.layout
        self.chain_id = cluster.chain_id
        self.a, self.b = (read_key_file(c.key_file) for c in layout.centres)
        self.p, self.q = (read_key_file(p.key_file) for p in layout.partners)
        self.admins = [read_key_file(a.key_file) for a in layout.admins]
        self.members = [SigningKey.generate() for _ in range(4)]
        self.centre_c = SigningKey.generate()
        self.count = 0

    def tx(self, author, payload, approvers=()):
        self.count += 1
        return make_tx(author, self.chain_id, os.urandom(16), payload, approvers=tuple(approvers))

    def deposit(self, centre, member, points):
        return self.tx(centre, Deposit(member.party_id, points, DepositKind.VOLUNTEERING, 60, "VOL-1", 3))

    def redeem(self, partner, member, points):
        voucher = sign_voucher(member, self.chain_id, partner.party_id, points, os.urandom(16),
                               int(time.time() * 1000) + 3_600_000)
        return self.tx(partner, Redeem(voucher, points, "books"))

    def governance(self, action, role, subject, signers=2, name="Centre C"):
        admit = action == GovernanceAction.ADMIT
        return self.tx(self.admins[0], Governance(action, role, subject.public_key, name if admit else "", ""),
                       self.admins[1:signers])


def submit(client, tx, code: Code = Code.OK) -> None:
    """Submits and checks the recorded result (a refusal comes back as a ClientError with it)."""
    try:
        response = client.submit(tx.raw)
    except ClientError as error:
        assert error.code == code, error
        return
    assert response.code == code, (response.code_name, response.message)


def run_workload(cluster: LocalCluster) -> Workload:
    w = Workload(cluster)
    m1, m2, m3, m4 = w.members
    with cluster.author_clients() as client:
        for member, centre in ((m1, w.a), (m2, w.a), (m3, w.b), (m4, w.b)):
            submit(client, w.tx(centre, RegisterMember(member.public_key)))
        d2 = w.deposit(w.a, m2, 30)
        for tx in (w.deposit(w.a, m1, 100), d2, w.deposit(w.b, m3, 70), w.deposit(w.b, m4, 20)):
            submit(client, tx)
        client.submit_batch([w.deposit(w.a, m4, points).raw for points in range(1, 11)])
        r1 = w.redeem(w.p, m1, 60)
        submit(client, r1)
        submit(client, w.tx(w.p, Refund(r1.tx_id, 10, "returned")))
        submit(client, w.tx(w.a, Reversal(d2.tx_id, "entered twice")))
        r2 = w.redeem(w.q, m3, 40)
        submit(client, r2)
        submit(client, w.deposit(w.p, m1, 5), Code.NOT_AUTHORISED)
        submit(client, w.redeem(w.p, m2, 5), Code.INSUFFICIENT_POINTS)
        submit(client, w.governance(GovernanceAction.ADMIT, Role.CENTRE, key("never"), signers=1),
               Code.INSUFFICIENT_APPROVALS)
        w.count -= 2          # the bookstore's deposit and the one-signer governance were refused at
                              # admission (docs/ARCHITECTURE.md, "Admission"): never recorded
        submit(client, w.governance(GovernanceAction.ADMIT, Role.CENTRE, w.centre_c))
        submit(client, w.deposit(w.centre_c, m4, 25))
        submit(client, w.tx(w.q, Refund(r2.tx_id, 40, "cancelled")))
        submit(client, w.redeem(w.q, m1, 10))
        submit(client, w.governance(GovernanceAction.RETIRE, Role.PARTNER, w.q))
    return w


def expected_summary(w: Workload) -> dict:
    return {
        "transactions": w.count + 1, "members": 4,
        "centres": {w.a.party_id.hex(): ("Centre A", 185, 30, 70, 10, 95),
                    w.b.party_id.hex(): ("Centre B", 90, 0, 40, 40, 90),
                    w.centre_c.party_id.hex(): ("Centre C", 25, 0, 0, 0, 25)},
        "partners": {w.p.party_id.hex(): ("Bookstore P", 50), w.q.party_id.hex(): ("Venue Q", 10)},
    }


def certified_head(cluster: LocalCluster, timeout_s: float = 20) -> int:
    """Waits until every node has applied and certified the same height; returns it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = cluster.statuses()
        heights = {(s.applied_height, s.certified_height) for s in statuses.values()}
        if len(statuses) == len(cluster.processes) and len(heights) == 1:
            applied, certified = heights.pop()
            if applied == certified:
                return certified
        time.sleep(0.1)
    raise AssertionError(f"the nodes did not converge: {cluster.statuses()}")


@pytest.fixture(scope="module")
def live(cluster) -> dict:
    w = run_workload(cluster)
    layout = cluster.layout
    return {"workload": w, "expected": expected_summary(w), "height": certified_head(cluster),
            "auditor": layout.auditor.config_file, "genesis": layout.genesis_file}


def assert_summary(out: dict, live: dict) -> None:
    expected = live["expected"]
    assert out["ok"], out["problem"]
    assert (out["blocks"], out["transactions"], out["members"]) == \
        (live["height"] + 1, expected["transactions"], expected["members"])
    centres = {c["id"]: (c["name"], c["deposited"], c["reversed"], c["redeemed"], c["refunded"], c["outstanding"])
               for c in out["centres"]}
    assert centres == expected["centres"]
    assert {p["id"]: (p["name"], p["redeemed"]) for p in out["partners"]} == expected["partners"]


def test_a_live_node_verifies_with_exact_totals(live):
    out = json.loads(nanum("audit", "verify", "--client", live["auditor"], "--json").stdout)
    assert_summary(out, live)


def test_an_export_from_a_node_verifies_and_resumes_to_the_same_file(live, tmp_path):
    one_shot = tmp_path / "one-shot.nanum"
    out = json.loads(nanum("audit", "export", "--client", live["auditor"], "--out", one_shot, "--json").stdout)
    assert (out["first_height"], out["last_height"], out["resumed_at"]) == (1, live["height"], None)
    assert_summary(verify_json(one_shot, live["genesis"], 0), live)
    whole = one_shot.read_bytes()
    with open(one_shot, "rb") as handle:
        offsets = [0] + [r.offset for r in ExportReader(handle).records()]
    for cut in (offsets[len(offsets) // 2] + 7, len(whole) - 3, offsets[3]):
        resumed = tmp_path / f"resumed-{cut}.nanum"
        resumed.write_bytes(whole[:cut])                                   # killed mid-record
        again = json.loads(nanum("audit", "export", "--client", live["auditor"], "--out", resumed,
                                 "--json").stdout)
        assert again["resumed_at"] == again["first_height"] and again["last_height"] == live["height"]
        assert resumed.read_bytes() == whole, f"resumed after a cut at byte {cut}"
    nothing_new = json.loads(nanum("audit", "export", "--client", live["auditor"], "--out", one_shot,
                                   "--json").stdout)
    assert nothing_new["first_height"] == live["height"] + 1 and one_shot.read_bytes() == whole


def test_export_refuses_a_file_of_another_chain_or_a_foreign_genesis(live, story, tmp_path):
    before = story["export"].read_bytes()
    assert "is of chain" in nanum("audit", "export", "--client", live["auditor"], "--out", story["export"],
                                  code=3).output
    assert story["export"].read_bytes() == before
    result = nanum("audit", "export", "--client", live["auditor"], "--genesis", story["genesis"],
                   "--out", tmp_path / "x.nanum", code=5)
    assert "block 0 is not the genesis block" in result.output


def test_verify_refuses_a_node_of_another_genesis(live, story):
    out = json.loads(nanum("audit", "verify", "--client", live["auditor"], "--genesis", story["genesis"],
                           "--json", code=5).stdout)
    assert_problem(out, 0, None, "genesis", "node's block 0")


# --- checkpoints and consistency -------------------------------------------------------------


def node_keys(cluster: LocalCluster) -> list[SigningKey]:
    return [read_key_file(node.key_file) for node in cluster.layout.nodes]


def forged_note(cluster: LocalCluster, body: CheckpointBody, signers: int = 3) -> str:
    keys = node_keys(cluster)[:signers]
    return signed_note(body, [(k.public_key, k.sign(body.text())) for k in keys])


def test_checkpoints_and_consistency(cluster, live, tmp_path):
    first = tmp_path / "first.txt"
    out = json.loads(nanum("audit", "checkpoint", "--client", live["auditor"], "--out", first, "--json").stdout)
    assert out["height"] == live["height"]
    body, lines = parse_note(first.read_text())
    assert (body.height, body.tree_size, len(lines)) == (live["height"], live["expected"]["transactions"], len(lines))
    assert len(lines) >= 2
    assert "never overwritten" in nanum("audit", "checkpoint", "--client", live["auditor"], "--out", first,
                                        code=3).output
    assert "OK" in nanum("audit", "consistency", "--client", live["auditor"], "--old", first).output
    w = live["workload"]
    with cluster.author_clients() as client:
        submit(client, w.deposit(w.a, w.members[0], 7))
        submit(client, w.deposit(w.b, w.members[2], 8))
    live["height"] = certified_head(cluster)
    live["expected"]["transactions"] += 2
    centres = live["expected"]["centres"]
    a, b = w.a.party_id.hex(), w.b.party_id.hex()
    centres[a] = centres[a][:1] + (centres[a][1] + 7,) + centres[a][2:5] + (centres[a][5] + 7,)
    centres[b] = centres[b][:1] + (centres[b][1] + 8,) + centres[b][2:5] + (centres[b][5] + 8,)
    out = json.loads(nanum("audit", "consistency", "--client", live["auditor"], "--old", first, "--json").stdout)
    assert out["ok"] and (out["old"]["tree_size"], out["new"]["height"]) == (body.tree_size, live["height"])
    second = tmp_path / "second.txt"
    nanum("audit", "checkpoint", "--client", live["auditor"], "--out", second)
    nanum("audit", "consistency", "--client", live["auditor"], "--old", first, "--new", second)
    older = nanum("audit", "consistency", "--client", live["auditor"], "--old", second, "--new", first, code=5)
    assert "older than the old one" in older.output
    printed = nanum("audit", "checkpoint", "--client", live["auditor"]).stdout
    assert printed.startswith(f"nanum/{cluster.chain_id.hex()}\n")


def test_a_rewritten_history_is_detected_by_consistency(cluster, live, tmp_path):
    body, _ = parse_note(json.loads(nanum("audit", "checkpoint", "--client", live["auditor"], "--json")
                                    .stdout)["note"])
    # A majority of node keys signing another history: a smaller tree with a root the log never had.
    rewritten = CheckpointBody(body.chain_id, body.tree_size - 3, b"\x55" * 32, body.height - 2, b"\x66" * 32)
    old = tmp_path / "rewritten.txt"
    old.write_text(forged_note(cluster, rewritten))
    result = nanum("audit", "consistency", "--client", live["auditor"], "--old", old, code=5)
    assert "history was rewritten" in result.output
    # Two different checkpoints for the same tree size.
    fork = CheckpointBody(body.chain_id, body.tree_size, b"\x77" * 32, body.height, body.block_hash)
    old.write_text(forged_note(cluster, fork))
    new = tmp_path / "real.txt"
    new.write_text(forged_note(cluster, body))
    assert "two different checkpoints" in nanum("audit", "consistency", "--client", live["auditor"], "--old", old,
                                                "--new", new, code=5).output


def test_a_checkpoint_without_a_majority_of_genesis_node_signatures_is_refused(cluster, live, tmp_path):
    body, _ = parse_note(json.loads(nanum("audit", "checkpoint", "--client", live["auditor"], "--json")
                                    .stdout)["note"])
    old = tmp_path / "minority.txt"
    old.write_text(forged_note(cluster, body, signers=1))
    result = nanum("audit", "consistency", "--client", live["auditor"], "--old", old, code=5)
    assert "a majority is 2 of 3" in result.output
    old.write_text("not a note")
    nanum("audit", "consistency", "--client", live["auditor"], "--old", old, code=5)
    nanum("audit", "consistency", "--client", live["auditor"], "--old", tmp_path / "missing.txt", code=3)


# --- a node's store, edited on disk ----------------------------------------------------------


TAMPERED = 2          # the node whose store the tests edit (stopped meanwhile, then restored)


@pytest.fixture
def stopped_node(cluster, live):
    """Node TAMPERED stopped, its store saved aside; restored and restarted afterwards."""
    certified_head(cluster)
    node = cluster.layout.nodes[TAMPERED]
    config = node.config_file
    store_path = Path(load_config(config).data_dir) / "ledger"
    graceful_stop(cluster, TAMPERED)
    saved = store_path.parent / "ledger.saved"
    shutil.copytree(store_path, saved)
    try:
        yield config, store_path
    finally:
        shutil.rmtree(store_path)
        saved.rename(store_path)
        cluster.start(TAMPERED)


def edit(store_path: Path, db: str, key_bytes: bytes, change) -> bytes:
    with Store(store_path) as store:
        handle = store.env.open_db(db.encode())
        with store.env.begin(write=True) as txn:
            old = txn.get(key_bytes, db=handle)
            txn.put(key_bytes, change(old), db=handle)
    return old


def node_check(config: Path, *flags: str, code: int) -> dict:
    out = json.loads(nanum("node", "check", "--config", config, "--json", *flags, code=code).stdout)
    assert out["ok"] == (code == 0)
    return out


def refuses_to_start(config: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "cli.main", "node", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 4, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_a_healthy_store_passes_both_checks(stopped_node, live):
    config, _ = stopped_node
    assert node_check(config, code=0)["height"] >= live["height"]
    assert node_check(config, "--full", code=0)["check"] == "full"


def test_a_balance_changed_on_disk_is_named_and_the_node_refuses_to_start(stopped_node):
    config, store_path = stopped_node
    with Store(store_path) as store, store.reader() as r:
        bucket_key, value = next(iter(r.scan(BUCKET)))
    edit(store_path, "state", bucket_key, lambda old: encode(decode(old) + 1000))
    quick = node_check(config, code=5)
    assert quick["problem"]["field"] == "state"
    full = node_check(config, "--full", code=5)
    assert full["problem"]["field"] == f"state[bucket:{bucket_key[1:].hex()}]"
    line = refuses_to_start(config)
    assert "fails its integrity check" in line and "state" in line and "Re-syncing a node" in line


def test_a_block_byte_changed_on_disk_is_named_and_the_node_refuses_to_start(stopped_node):
    config, store_path = stopped_node
    with Store(store_path) as store:
        height = store.height()
        block = decode_block(store.block(height))
    entry = block.entries[0]
    tx_raw = decode(entry)[0]
    signature_at = tx_raw.index(decode(tx_raw)[6])
    edit(store_path, "blocks", u64(height),       # as someone who can decompress would edit it
         lambda old: compress_block(flip(raw := decompress_block(old, height), raw.index(tx_raw) + signature_at + 11)))
    quick = node_check(config, code=5)
    assert (quick["problem"]["height"], quick["problem"]["index"], quick["problem"]["field"]) == (height, 0, "entry")
    full = node_check(config, "--full", code=5)
    assert (full["problem"]["height"], full["problem"]["index"], full["problem"]["field"]) == \
        (height, 0, "signature")
    assert f"block {height}, transaction 0" in refuses_to_start(config)


def test_node_check_reports_a_missing_store_and_a_bad_config(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text("not = [valid")
    nanum("node", "check", "--config", config, code=3)


def test_a_node_resynced_from_its_peers_catches_up(cluster, live):
    """The documented re-sync (docs/ARCHITECTURE.md): stop, move the data folder aside, start."""
    height = certified_head(cluster)
    config = cluster.layout.nodes[TAMPERED].config_file
    data = Path(load_config(config).data_dir)
    graceful_stop(cluster, TAMPERED)
    data.rename(data.parent / "data.damaged")
    cluster.start(TAMPERED)
    assert certified_head(cluster) >= height
    graceful_stop(cluster, TAMPERED)
    assert node_check(config, "--full", code=0)["height"] >= height
    cluster.start(TAMPERED)


# --- nanum audit keys: the nodes' signed-note verifier keys ---------------------------------


def _verify_with_vkeys(text: str, vkeys: list[str]) -> int:
    """A signed-note verifier that knows nothing of nanum: the vkeys, the note, the spec's
    rules (ledger.note only splits the note). Returns how many known keys signed."""
    from ledger import keys as ledger_keys, note
    known = {}
    for v in vkeys:
        name, kid, public_key = note.parse_ed25519_vkey(v)
        assert kid == hashlib.sha256(name.encode() + b"\n\x01" + public_key).digest()[:4]
        known[(name, kid)] = public_key
    message, lines = note.split(text)
    signed = {(s.name, s.key_id) for s in lines if (s.name, s.key_id) in known
              and ledger_keys.verify(known[(s.name, s.key_id)], s.signature, message)}
    return len(signed)


def test_audit_keys_prints_the_genesis_node_vkeys_that_verify_a_checkpoint(story, chain):
    out = json.loads(nanum("audit", "keys", "--genesis", story["genesis"], "--json").stdout)
    nodes = chain.consortium.nodes
    assert out["height"] == 0 and out["source"] == str(story["genesis"])
    assert out["origin"] == f"nanum/{chain.consortium.chain_id.hex()}"
    assert out["quorum"] == len(nodes) // 2 + 1
    assert sorted(row["public_key"] for row in out["nodes"]) == sorted(k.public_key.hex() for k in nodes)
    for row in out["nodes"]:
        assert row["vkey"] == f"{row['key_name']}+{row['key_id']}+" + \
            base64.b64encode(b"\x01" + bytes.fromhex(row["public_key"])).decode()
        assert row["name"]
    # any signed-note verifier given these keys accepts the checkpoint of a certified block
    header = decode_block(chain.blocks[-1]).header
    text = signed_note(body_of(header), list(Certificate.decode(chain.certificates[-1]).signatures))
    assert _verify_with_vkeys(text, [row["vkey"] for row in out["nodes"]]) >= out["quorum"]
    human = nanum("audit", "keys", "--genesis", story["genesis"]).output.splitlines()
    assert f"{len(nodes)} nodes" in human[0] and f"signatures of {out['quorum']}" in human[0]
    assert [line.split("  ", 1) for line in human[1:]] == [[row["vkey"], row["name"]] for row in out["nodes"]]


def test_audit_keys_from_an_export_shows_a_node_admitted_later(tmp_path):
    c = TestConsortium()
    ledger = Ledger.create(tmp_path / "store", c.genesis_raw)
    newcomer = key("node-admitted-later")
    executed = ledger.build([c.governance(GovernanceAction.ADMIT, Role.NODE, newcomer, name="Busan node",
                                          address="127.0.0.1:7999")], GENESIS_TIME_MS + 60_000)
    assert executed.codes == [Code.OK]
    certificate = Certificate.build(1, executed.block.hash, [
        (node.public_key, endorse(node, executed.block.header)) for node in c.nodes[:2]]).encode()
    ledger.commit(executed, certificate)
    ledger.close()
    genesis = tmp_path / "genesis.bin"
    genesis.write_bytes(c.genesis_raw)
    export = write_export(tmp_path / "x.nanum", c.genesis_raw, [(1, executed.block.encode(), certificate)])
    before = json.loads(nanum("audit", "keys", "--genesis", genesis, "--json").stdout)
    after = json.loads(nanum("audit", "keys", "--genesis", genesis, "--export", export, "--json").stdout)
    assert len(after["nodes"]) == len(before["nodes"]) + 1 and after["height"] == 1
    added = [row for row in after["nodes"] if row["public_key"] == newcomer.public_key.hex()]
    assert [row["name"] for row in added] == ["Busan node"]
    assert after["quorum"] == (len(before["nodes"]) + 1) // 2 + 1
    # an export that does not verify gives no keys
    bad = write_export(tmp_path / "bad.nanum", c.genesis_raw, [(1, executed.block.encode(), b"")])
    assert "does not verify" in nanum("audit", "keys", "--genesis", genesis, "--export", bad, code=5).output
    damaged = tmp_path / "damaged.nanum"
    damaged.write_bytes(b"NANUM")
    assert "not a readable export" in nanum("audit", "keys", "--genesis", genesis, "--export", damaged,
                                            code=5).output
    assert "--genesis" in nanum("audit", "keys", code=2).output
