"""The test vectors of docs/vectors/ stay true: the committed files are exactly what the code
gives (tests/vectors_gen.py), and every vector is re-derived here from FORMAT.md's definitions
with plain msgpack, hashlib and blake3 — not the ledger's own encoder — and also checked with
the ledger's functions. A format change that moves one byte fails here until the vectors are
regenerated and the change is seen in review."""

import base64
import hashlib
import json
import struct

import msgpack
import pytest
from blake3 import blake3

from ledger import keys
from ledger.block import decode_block
from ledger.checkpoint import body_of
from ledger.codes import Code
from ledger.keys import SigningKey
from ledger.tx import decode_tx
from ledger.verify import verify_chain
from ledger.voucher import Voucher
from tests import merkle_reference, vectors_gen

VECTORS = vectors_gen.VECTORS_DIR


def pack(value) -> bytes:
    """FORMAT.md §1's canonical encoding is msgpack's shortest form, with bin for bytes."""
    return msgpack.packb(value, use_bin_type=True)


def unpack(data: bytes):
    return msgpack.unpackb(data, raw=False)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def load(name: str) -> dict:
    return json.loads((VECTORS / name).read_text("utf-8"))


# --- the committed files are what the code gives --------------------------------------------


def test_the_committed_vectors_are_exactly_what_the_generator_gives():
    built = vectors_gen.build()
    assert sorted(built) == sorted(vectors_gen.FILES)
    on_disk = sorted(p.name for p in VECTORS.iterdir())
    assert on_disk == sorted([*vectors_gen.FILES, "README.md"]), "a file in docs/vectors/ nobody writes"
    stale = [name for name, data in built.items() if (VECTORS / name).read_bytes() != data]
    assert not stale, f"{stale} differ from the code: run python -m tests.vectors_gen and review the diff"


def test_the_generator_is_deterministic():
    assert vectors_gen.build() == vectors_gen.build()


def test_the_readme_describes_every_file():
    readme = (VECTORS / "README.md").read_text("utf-8")
    for name in vectors_gen.FILES:
        assert f"`{name}`" in readme, name


# --- §2: party ids ------------------------------------------------------------------------


@pytest.mark.parametrize("vector", load("party_ids.json")["vectors"], ids=lambda v: v["name"])
def test_a_party_id_is_the_first_20_bytes_of_the_hash_of_its_tagged_key(vector):
    public_key = bytes.fromhex(vector["public_key"])
    assert SigningKey.from_seed(bytes.fromhex(vector["seed"])).public_key == public_key   # RFC 8032 §5.1.5
    preimage = pack(["nanum/v1/party-id", public_key])
    assert preimage.hex() == vector["preimage"]
    assert sha256(preimage)[:20].hex() == vector["party_id"] == keys.party_id(public_key).hex()


# --- §4.2: the chain id ---------------------------------------------------------------------


def test_the_chain_id_is_the_first_16_bytes_of_the_hash_of_the_tagged_genesis_payload():
    v = load("chain_id.json")
    payload = unpack(bytes.fromhex(v["genesis_payload"]))
    preimage = pack(["nanum/v1/chain-id", payload])
    assert preimage.hex() == v["preimage"]
    assert sha256(preimage)[:16].hex() == v["chain_id"]
    block = unpack(bytes.fromhex(v["genesis_block"]))
    header, entries = block
    assert sha256(pack(header)).hex() == v["genesis_block_hash"]
    assert header[1].hex() == v["chain_id"] and header[2] == 0 and header[3] == bytes(32)
    tx_raw, code = unpack(entries[0])
    assert (tx_raw.hex(), code) == (v["genesis_tx"], 0)
    tx = unpack(tx_raw)
    assert tx[1].hex() == tx[3].hex() == v["chain_id"], "the genesis tx_id and chain_id are the chain id"
    assert pack(tx[5]).hex() == v["genesis_payload"]
    assert decode_tx(tx_raw).payload.chain_id().hex() == v["chain_id"]
    assert (VECTORS / "genesis.block").read_bytes().hex() == v["genesis_block"]


# --- §3, §4: signing messages and body hashes -----------------------------------------------


def test_there_is_one_transaction_of_each_kind():
    assert [v["kind"] for v in load("transactions.json")["vectors"]] == [
        "genesis", "register-member", "deposit", "redeem", "refund", "reversal", "governance"]


@pytest.mark.parametrize("vector", load("transactions.json")["vectors"], ids=lambda v: v["kind"])
def test_a_signing_message_and_body_hash_follow_the_envelope(vector):
    raw = bytes.fromhex(vector["tx"])
    version, chain_id, kind, tx_id, author, payload, signature, approvals = unpack(raw)
    assert version == 1 and kind == vector["kind_number"] and vector["tag"] == f"nanum/v1/tx/{vector['kind']}"
    message = pack([vector["tag"], chain_id, kind, tx_id, author, payload])
    assert message.hex() == vector["signing_message"]
    assert sha256(message).hex() == vector["body_hash"]
    assert (tx_id.hex(), author.hex(), signature.hex()) == (vector["tx_id"], vector["author"], vector["signature"])
    assert sha256(pack(["nanum/v1/party-id", author]))[:20].hex() == vector["author_id"]
    assert [[k.hex(), s.hex()] for k, s in approvals] == vector["approvals"]
    assert [k for k, _ in approvals] == sorted({k for k, _ in approvals}), "ascending bytewise, distinct"
    for public_key, sig in [(author, signature), *approvals]:
        assert keys.verify(public_key, sig, message)
    tx = decode_tx(raw)
    assert tx.signing_bytes() == message and tx.body_hash().hex() == vector["body_hash"]
    if "voucher" in vector:
        wire = payload[0]
        voucher_message = pack(["nanum/v1/voucher", *wire[1:7]])
        assert voucher_message.hex() == vector["voucher"]["signing_message"]
        assert keys.verify(wire[2], wire[7], voucher_message)
        compact = vector["voucher"]["compact"]
        assert compact == "nv1." + base64.urlsafe_b64encode(pack(wire)).decode().rstrip("=")
        assert Voucher.from_compact(compact).member_id.hex() == vector["voucher"]["member_id"]


# --- §7.4: the checkpoint text and the certificate ---------------------------------------------


def test_the_checkpoint_text_of_a_block_is_built_from_its_header():
    v = load("checkpoint.json")
    header_raw = bytes.fromhex(v["header"])
    header = unpack(header_raw)
    tag, chain_id, height, _prev, _time, _count, tree_size, tree_root, _state = header
    block_hash = sha256(header_raw)
    assert tag == "nanum/v1/block-header" and height == v["height"] and block_hash.hex() == v["block_hash"]
    text = (f"nanum/{chain_id.hex()}\n{tree_size}\n{base64.b64encode(tree_root).decode()}\n"
            f"height {height} block {block_hash.hex()}\n")
    assert text == v["checkpoint_text"] and text.encode().hex() == v["checkpoint_bytes"]
    cert_height, cert_hash, pairs = unpack(bytes.fromhex(v["certificate"]))
    assert (cert_height, cert_hash) == (height, block_hash)
    assert [k for k, _ in pairs] == sorted({k for k, _ in pairs})
    lines = []
    for (public_key, signature), signer in zip(pairs, v["signers"], strict=True):
        name = "nanum-node-" + sha256(pack(["nanum/v1/party-id", public_key]))[:20].hex()
        kid = sha256(name.encode() + b"\n\x01" + public_key)[:4]
        assert (name, kid.hex(), signature.hex()) == (signer["key_name"], signer["key_id"], signer["signature"])
        assert keys.verify(public_key, signature, text.encode())
        lines.append(f"\u2014 {name} {base64.b64encode(kid + signature).decode()}\n")
    assert v["signed_note"] == text + "\n" + "".join(lines)


# --- §13: the reference export, with its roots ------------------------------------------------


def read_export(data: bytes) -> list[list]:
    """§13 by hand: the magic line, then records of a 4-byte big-endian length and a body."""
    assert data.startswith(b"NANUM-EXPORT/1\n")
    records, offset = [], 15
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset:offset + 4])
        body = data[offset + 4:offset + 4 + length]
        assert len(body) == length and pack(unpack(body)) == body
        records.append(unpack(body))
        offset += 4 + length
    return records


def lanes(key: bytes, value: bytes) -> list[int]:
    digest = blake3(pack(["nanum/v1/state-entry", key, value])).digest(length=2048)
    return list(struct.unpack("<1024H", digest))


def test_the_reference_export_reads_and_its_hashes_and_roots_recompute():
    v = load("export.json")
    data = bytes.fromhex(v["export_file"])
    assert (VECTORS / "reference.export").read_bytes() == data
    records = read_export(data)
    assert records[0][0] == 0 and records[0][1].hex() == v["chain_id"]
    genesis = unpack(records[0][2])
    previous = sha256(pack(genesis[0]))
    assert previous.hex() == v["genesis_block_hash"]
    leaves = list(genesis[1])
    assert [r[:2] for r in records[1:]] == [[1, b["height"]] for b in v["blocks"]]
    for record, block in zip(records[1:], v["blocks"], strict=True):
        assert (record[2].hex(), record[3].hex()) == (block["block"], block["certificate"])
        header, entries = unpack(record[2])
        tag, chain_id, height, prev_hash, time_ms, tx_count, tree_size, tree_root, state_root = header
        assert sha256(pack(header)).hex() == block["block_hash"]
        assert prev_hash == previous and prev_hash.hex() == block["prev_hash"]
        assert (height, time_ms, tx_count, tree_size) == (
            block["height"], block["time_ms"], block["tx_count"], block["tree_size"])
        assert tx_count == len(entries) == len(block["entries"])
        for entry, listed in zip(entries, block["entries"], strict=True):
            assert entry.hex() == listed["entry"] and unpack(entry)[1] == listed["code"]
            assert Code(listed["code"]).name == listed["code_name"]
            assert listed["leaf_index"] == len(leaves)
            assert merkle_reference.leaf_hash(entry).hex() == listed["leaf_hash"]
            leaves.append(entry)
        assert tree_size == len(leaves)
        assert merkle_reference.mth(leaves).hex() == tree_root.hex() == block["tree_root"]
        assert state_root.hex() == block["state_root"]
        previous = sha256(pack(header))
    vector = [0] * 1024
    for item in v["final_state"]:
        for i, lane in enumerate(lanes(bytes.fromhex(item["key"]), bytes.fromhex(item["value"]))):
            vector[i] = (vector[i] + lane) & 0xFFFF
    root = sha256(pack(["nanum/v1/state-root", struct.pack("<1024H", *vector)]))
    assert root.hex() == v["blocks"][-1]["state_root"]


def test_the_reference_export_verifies_and_holds_accepted_and_refused_entries():
    v = load("export.json")
    records = read_export(bytes.fromhex(v["export_file"]))
    report = verify_chain(records[0][2], [(r[2], r[3]) for r in records[1:]], require_certificates=True)
    assert report.ok, report.problem
    assert report.head_hash.hex() == v["blocks"][-1]["block_hash"]
    codes = {e["code_name"] for b in v["blocks"] for e in b["entries"]}
    assert {"OK", "UNKNOWN_MEMBER", "KEY_IN_USE"} <= codes
    last = decode_block(records[-1][2]).header
    assert body_of(last).text().startswith(f"nanum/{v['chain_id']}\n".encode())
