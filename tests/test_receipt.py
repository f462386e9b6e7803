"""Receipts: re-rooting proofs (pure), and receipts from a real 3-node cluster verified offline.

One module-scoped ``LocalCluster`` (two centres, two partners), populated through
``node.client.LedgerClient``: a member registered, deposits from both centres, a redemption and
a refund. Receipts for a deposit and a redemption must verify with only the genesis block; a
receipt changed anywhere (entry, proof, leaf index, tree size, header, certificate, a
minority, another consortium's genesis) must fail naming what failed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from cli.receipt_cmds import write_receipt
from cli.session import Session
from ledger.block import Header
from ledger.certificate import Certificate, endorsement_bytes
from ledger.codes import Code
from ledger.encoding import decode, encode
from ledger.keys import SigningKey, read_key_file, write_key_file
from ledger.merkle import Frontier, MemoryNodes, consistency_proof, inclusion_proof, leaf_hash
from ledger.receipt import Receipt, ReceiptError, reroot_inclusion, verify_receipt
from ledger.tx import Deposit, DepositKind, Redeem, Refund, RegisterMember, make_tx
from ledger.voucher import sign_voucher
from node.client import ClientError, LedgerClient
from node.cluster import LocalCluster, free_base_port
from node.consortium import ConsortiumSpec, create_consortium
from tests.consortium import TestConsortium
from tests.cli_runner import CLEAN_ENV, nanum  # noqa: F401



# --- re-rooting an inclusion proof onto an earlier tree (pure) --------------------------------


def test_reroot_gives_the_direct_proof_for_every_leaf_and_size():
    nodes, frontier = MemoryNodes(), Frontier.empty()
    for i in range(40):
        nodes.put(frontier.append(leaf_hash(bytes([i]))))
    for size in range(1, 41):
        for old in range(1, size + 1):
            consistency = consistency_proof(old, size, nodes.read)
            for leaf in range(old):
                path = inclusion_proof(leaf, size, nodes.read)
                assert reroot_inclusion(leaf, size, path, old, consistency) == \
                    inclusion_proof(leaf, old, nodes.read), (leaf, old, size)


def test_reroot_refuses_shapes_that_cannot_fit():
    with pytest.raises(ValueError):
        reroot_inclusion(5, 8, [b"\x00" * 32] * 3, 5, [])        # leaf not in the old tree
    with pytest.raises(ValueError):
        reroot_inclusion(0, 7, [b"\x00" * 32] * 3, 5, [])        # no consistency proof
    with pytest.raises(ValueError):
        reroot_inclusion(0, 5, [], 3, [b"\x00" * 32] * 9)        # a proof that is too long


# --- a cluster with two centres and two partners -----------------------------------------------


def start_cluster(folder: Path) -> LocalCluster:
    cluster = LocalCluster(folder)
    spec = ConsortiumSpec(name="Receipts and settlement (test)", created_ms=int(time.time() * 1000),
                          centres=("Centre A", "Centre B"), partners=("Bookstore", "Venue"),
                          base_port=free_base_port(3))
    cluster.layout = create_consortium(folder, spec)
    return cluster


@dataclass
class Writer:
    """Signs and submits transactions through LedgerClient, as centres and partners do."""

    cluster: LocalCluster
    centres: list[SigningKey] = field(init=False)
    partners: list[SigningKey] = field(init=False)

    def __post_init__(self) -> None:
        layout = self.cluster.layout
        self.centres = [read_key_file(c.key_file) for c in layout.centres]
        self.partners = [read_key_file(p.key_file) for p in layout.partners]
        self.chain_id = self.cluster.chain_id
        self.client: LedgerClient = self.cluster.client("centre")
        # A certificate carries only its own party's transactions (docs/ARCHITECTURE.md, "Who
        # may call what"): each author submits over its own.
        self.clients = {key.party_id: self.cluster.client_of(party)
                        for key, party in zip(self.centres + self.partners, layout.centres + layout.partners)}
        self.height = 0

    def submit(self, author: SigningKey, payload):
        tx = make_tx(author, self.chain_id, os.urandom(16), payload)
        response = self.clients[author.party_id].submit(tx.raw)
        self.height = max(self.height, response.height)
        return tx, response

    def register(self, member: SigningKey, centre: int = 0):
        return self.submit(self.centres[centre], RegisterMember(member.public_key))

    def deposit(self, member: SigningKey, points: int, centre: int = 0):
        return self.submit(self.centres[centre], Deposit(member.party_id, points, DepositKind.OTHER, 0, "T", 0))

    def redeem(self, member: SigningKey, points: int, partner: int = 0, max_points: int | None = None):
        voucher = sign_voucher(member, self.chain_id, self.partners[partner].party_id, max_points or points,
                               os.urandom(16), int(time.time() * 1000) + 3_600_000)
        return self.submit(self.partners[partner], Redeem(voucher, points, "books"))

    def refund(self, redemption_id: bytes, points: int, partner: int = 0):
        return self.submit(self.partners[partner], Refund(redemption_id, points, "returned"))

    def refused(self, call, *args, **kwargs) -> Code:
        with pytest.raises(ClientError) as caught:
            call(*args, **kwargs)
        return caught.value.code

    def close(self) -> None:
        self.client.close()
        for client in self.clients.values():
            client.close()




@pytest.fixture(scope="module")
def story(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("receipts") / "consortium")
    writer = None
    try:
        cluster.start()
        cluster.leader()
        writer = Writer(cluster)
        member = SigningKey.generate()
        member_key_file = cluster.folder / "member.pem"
        write_key_file(member_key_file, member)
        writer.register(member)
        deposit, deposited = writer.deposit(member, 30)
        writer.deposit(member, 20, centre=1)
        redemption, redeemed = writer.redeem(member, 35)
        writer.refund(redemption.tx_id, 10)
        yield {"cluster": cluster, "writer": writer, "member": member, "deposit": deposit, "deposited": deposited,
               "redemption": redemption, "redeemed": redeemed, "genesis": cluster.genesis(),
               "client_file": cluster.layout.members.config_file, "member_key_file": member_key_file}
    finally:
        if writer is not None:
            writer.close()
        cluster.stop()


@pytest.fixture(scope="module")
def deposit_receipt(story, tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("deposit") / "deposit.receipt"
    write_receipt(Session(story["client_file"]), story["deposit"].tx_id, story["writer"].height, path,
                  story["member"])
    return path.read_bytes()


# --- receipts verify offline with only the genesis block ---------------------------------------


def test_a_deposit_receipt_proves_the_deposit(story, deposit_receipt):
    report = verify_receipt(deposit_receipt, story["genesis"])
    writer, member = story["writer"], story["member"]
    assert report.kind == "deposit" and report.code == Code.OK
    assert report.tx_id == story["deposit"].tx_id and report.height == story["deposited"].height
    assert report.leaf_index == story["deposited"].leaf_index
    assert report.details["points"] == 30 and report.details["member_id"] == member.party_id.hex()
    assert report.details["centre_id"] == writer.centres[0].party_id.hex()
    assert report.signers >= 2 and report.nodes == 3
    receipt = Receipt.decode(deposit_receipt)
    assert Header.from_wire(decode(receipt.header)).height == report.height   # the recording block itself


def test_a_redemption_receipt_from_the_cli_verifies_with_only_the_genesis(story, tmp_path):
    path, genesis = tmp_path / "redeem.receipt", tmp_path / "genesis.block"
    genesis.write_bytes(story["genesis"])
    shown = nanum("tx", "show", story["redemption"].tx_id.hex(), "--client", str(story["client_file"]),
                  "--key", str(story["member_key_file"]),
                  "--min-height", str(story["writer"].height), "--receipt", str(path))
    assert "receipt" in shown.output and path.exists()
    human = nanum("receipt", "verify", str(path), "--genesis", str(genesis)).output
    assert "receipt VERIFIED" in human and "redeemed 35 points" in human
    report = __import__("json").loads(nanum("receipt", "verify", str(path), "--genesis", str(genesis),
                                            "--json").stdout)
    assert report["verified"] is True and report["kind"] == "redeem" and report["points"] == 35
    assert report["member_id"] == story["member"].party_id.hex() and report["code_name"] == "OK"
    assert report["partner_id"] == story["writer"].partners[0].party_id.hex()
    assert report["height"] == story["redeemed"].height


# --- a receipt changed anywhere fails, naming what failed --------------------------------------


def _fields(raw: bytes) -> list:
    return decode(raw)


def _with(raw: bytes, index: int, value) -> bytes:
    fields = _fields(raw)
    fields[index] = value
    return encode(fields)


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1:]


def _header(raw: bytes) -> list:
    return decode(_fields(raw)[5])


def _certificate(raw: bytes) -> Certificate:
    return Certificate.decode(_fields(raw)[6])


def _fails(receipt: bytes, genesis: bytes, *fields: str) -> str:
    with pytest.raises(ReceiptError) as caught:
        verify_receipt(receipt, genesis)
    assert any(caught.value.field.startswith(f) for f in fields), str(caught.value)
    return str(caught.value)


def test_a_changed_entry_byte_fails(story, deposit_receipt):
    entry = _fields(deposit_receipt)[2]
    # the last byte is the result code: the signature still holds, the proof no longer does
    message = _fails(_with(deposit_receipt, 2, entry[:-1] + bytes([entry[-1] ^ 0x01])), story["genesis"],
                     "receipt.proof")
    assert "the entry is not proven" in message
    # a byte inside the signed transaction: its signature fails first
    _fails(_with(deposit_receipt, 2, _flip(entry, len(entry) - 40)), story["genesis"], "receipt.entry")


def test_a_changed_proof_hash_fails(story, deposit_receipt):
    proof = _fields(deposit_receipt)[4]
    assert proof, "the test chain is long enough to need a proof"
    _fails(_with(deposit_receipt, 4, [_flip(proof[0], 0)] + proof[1:]), story["genesis"], "receipt.proof")
    _fails(_with(deposit_receipt, 4, proof[:-1]), story["genesis"], "receipt.proof")


def test_a_changed_leaf_index_fails(story, deposit_receipt):
    leaf = _fields(deposit_receipt)[3]
    for other in (leaf + 1, leaf - 1, leaf + 1000):
        _fails(_with(deposit_receipt, 3, other), story["genesis"], "receipt.leaf_index", "receipt.proof")


def test_a_changed_tree_size_or_header_byte_fails(story, deposit_receipt):
    header = _header(deposit_receipt)
    header[6] += 1                                           # tree_size
    message = _fails(_with(deposit_receipt, 5, encode(header)), story["genesis"], "receipt.certificate")
    assert "certifies another block" in message
    raw_header = _fields(deposit_receipt)[5]
    for at in (20, len(raw_header) - 1, len(raw_header) // 2):
        _fails(_with(deposit_receipt, 5, _flip(raw_header, at)), story["genesis"], "receipt.header",
               "receipt.certificate")


def test_a_changed_certificate_signature_fails(story, deposit_receipt):
    certificate = _certificate(deposit_receipt)
    (key, signature), *rest = certificate.signatures
    forged = Certificate(certificate.height, certificate.block_hash, ((key, _flip(signature, 5)), *rest))
    message = _fails(_with(deposit_receipt, 6, forged.encode()), story["genesis"], "receipt.certificate.signatures[0]")
    assert "does not verify" in message


def test_a_certificate_of_a_minority_fails(story, deposit_receipt):
    certificate = _certificate(deposit_receipt)
    minority = Certificate(certificate.height, certificate.block_hash, certificate.signatures[:1])
    message = _fails(_with(deposit_receipt, 6, minority.encode()), story["genesis"], "receipt.certificate.signatures")
    assert "1 of 3 nodes signed; a majority is 2" in message


def test_a_signer_outside_the_genesis_node_set_fails_clearly(story, deposit_receipt):
    certificate, stranger = _certificate(deposit_receipt), SigningKey.generate()
    header = Header.from_wire(_header(deposit_receipt))
    forged = Certificate.build(certificate.height, certificate.block_hash,
                               [*certificate.signatures, (stranger.public_key, stranger.sign(endorsement_bytes(header)))])
    message = _fails(_with(deposit_receipt, 6, forged.encode()), story["genesis"], "receipt.certificate.signatures")
    assert "genesis node set" in message and "export" in message


def test_a_receipt_checked_against_another_consortium_fails(story, deposit_receipt):
    message = _fails(deposit_receipt, TestConsortium().genesis_raw, "receipt.header.chain_id")
    assert "another consortium" in message


def test_not_a_receipt_fails(story, deposit_receipt):
    _fails(deposit_receipt + b"\x00", story["genesis"], "receipt")
    _fails(deposit_receipt[:-1], story["genesis"], "receipt")
    _fails(_with(deposit_receipt, 0, "nanum/v1/other"), story["genesis"], "receipt.tag")
    _fails(_with(deposit_receipt, 1, 2), story["genesis"], "receipt.version")
    with pytest.raises(ReceiptError, match="genesis"):
        verify_receipt(deposit_receipt, story["genesis"][:-1])


def test_the_cli_exits_5_on_a_tampered_receipt_and_3_on_bad_files(story, deposit_receipt, tmp_path):
    genesis, bad = tmp_path / "genesis.block", tmp_path / "bad.receipt"
    genesis.write_bytes(story["genesis"])
    proof = _fields(deposit_receipt)[4]
    bad.write_bytes(_with(deposit_receipt, 4, [_flip(proof[0], 3)] + proof[1:]))
    failed = nanum("receipt", "verify", str(bad), "--genesis", str(genesis), code=5)
    assert "verification FAILED" in failed.output and "receipt.proof" in failed.output
    nanum("receipt", "verify", str(tmp_path / "absent.receipt"), "--genesis", str(genesis), code=3)
    other = tmp_path / "other.block"
    other.write_bytes(b"not a genesis block")
    assert "not a valid genesis block" in nanum("receipt", "verify", str(bad), "--genesis", str(other),
                                                code=3).output


def test_every_flipped_byte_fails_with_a_named_field(story, deposit_receipt):
    """No byte of a receipt is left unchecked, and no input raises anything but ReceiptError."""
    for at in range(len(deposit_receipt)):
        with pytest.raises(ReceiptError):
            verify_receipt(_flip(deposit_receipt, at), story["genesis"])
