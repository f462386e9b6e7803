"""Writes the test vectors of docs/vectors/ (described in docs/vectors/README.md).

    python -m tests.vectors_gen            # rewrite the files of docs/vectors/ (not its README)
    python -m tests.vectors_gen --check    # exit 1 if the committed files differ

Everything comes from the deterministic test consortium (tests/consortium.py: keys from fixed
seeds, counting transaction ids, fixed times) and Ed25519's deterministic signatures, so the
same code gives the same bytes every time. tests/test_vectors.py regenerates the files and
fails if they differ from the committed ones, and checks each vector from FORMAT.md's
definitions, so the vectors can never go stale.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ledger import keys
from ledger.block import ExecutedBlock, decode_block, decode_entry
from ledger.certificate import Certificate, endorse, quorum
from ledger.checkpoint import body_of, key_id, key_name, signed_note
from ledger.codes import Code
from ledger.encoding import encode
from ledger.export import MAGIC, encode_block_record, encode_genesis_record
from ledger.merkle import leaf_hash
from ledger.state import MemoryState
from ledger.tx import Deposit, DepositKind, GovernanceAction, Role, Tx, TxKind, decode_tx
from tests.consortium import TestConsortium, key

VECTORS_DIR = Path(__file__).resolve().parent.parent / "docs" / "vectors"
FILES = ("party_ids.json", "chain_id.json", "transactions.json", "checkpoint.json", "export.json",
         "genesis.block", "reference.export")


def _seed(name: str) -> bytes:
    """The private seed tests/consortium.py derives a test key from (test keys only)."""
    return hashlib.sha256(b"nanum-test-key:" + name.encode()).digest()


class ReferenceChain:
    """The tiny reference chain: block 0 and three blocks, each certified by a majority of
    the three genesis nodes (the first two by public key order)."""

    def __init__(self) -> None:
        c = self.c = TestConsortium()
        self.state, head = c.open_chain()
        self.genesis_head = head
        alice, bob = c.member("alice"), c.member("bob")
        register_alice, register_bob = c.register(alice), c.register(bob, centre=1)
        deposit_alice = c.deposit(alice, 100)
        donation_bob = c.make(c.centres[1], _donation(bob.party_id))
        redeem = c.redeem(c.voucher(alice, 40), 30)
        unknown = c.deposit(c.member("carol"), 5)                 # UNKNOWN_MEMBER: not registered
        centre_as_member = c.register(c.centres[1])               # KEY_IN_USE: a centre's key
        refund = c.refund(redeem.tx_id, 10)
        reversal = c.reverse(donation_bob.tx_id, centre=1)
        admit = c.governance(GovernanceAction.ADMIT, Role.PARTNER, key("cafe"), name="Cafe Haneul")
        batches = [[register_alice, register_bob, deposit_alice, donation_bob],
                   [redeem, unknown, centre_as_member],
                   [refund, reversal, admit]]
        self.txs: dict[str, Tx] = {
            "register-member": register_alice, "deposit": deposit_alice, "redeem": redeem,
            "refund": refund, "reversal": reversal, "governance": admit}
        self.blocks: list[tuple[ExecutedBlock, bytes]] = []
        for batch in batches:
            executed = c.run_block(self.state, head, batch)
            head = executed.head
            self.blocks.append((executed, self.certificate(executed)))

    def certificate(self, executed: ExecutedBlock) -> bytes:
        header = executed.block.header
        signers = sorted(self.c.nodes, key=lambda k: k.public_key)[:quorum(len(self.c.nodes))]
        return Certificate.build(header.height, header.hash(),
                                 [(k.public_key, endorse(k, header)) for k in signers]).encode()

    def export_file(self) -> bytes:
        parts = [MAGIC, encode_genesis_record(self.c.chain_id, self.c.genesis_raw)]
        parts += [encode_block_record(e.block.header.height, e.block.encode(), cert) for e, cert in self.blocks]
        return b"".join(parts)


def _donation(member_id: bytes) -> Deposit:
    return Deposit(member_id, 50, DepositKind.DONATION, 50_000, "DON-2026-0042", 1)


def _hex(data: bytes) -> str:
    return data.hex()


def party_ids(chain: ReferenceChain) -> dict:
    c = chain.c
    named = [(f"admin{i}", k) for i, k in enumerate(c.admins)] + [
        ("centre-a", c.centres[0]), ("bookstore", c.partners[0]), ("node0", c.nodes[0]),
        ("member:alice", c.member("alice"))]
    return {"vectors": [{
        "name": name, "seed": _hex(_seed(name)), "public_key": _hex(k.public_key),
        "preimage": _hex(encode(["nanum/v1/party-id", k.public_key])),
        "party_id": _hex(keys.party_id(k.public_key))} for name, k in named]}


def chain_id(chain: ReferenceChain) -> dict:
    c = chain.c
    genesis_block = c.genesis_raw
    genesis = _genesis_tx(chain)
    payload_wire = genesis.payload.to_wire()
    return {
        "genesis_payload": _hex(encode(payload_wire)),
        "preimage": _hex(encode(["nanum/v1/chain-id", payload_wire])),
        "chain_id": _hex(c.chain_id),
        "genesis_tx": _hex(genesis.raw),
        "genesis_signing_message": _hex(genesis.signing_bytes()),
        "genesis_block": _hex(genesis_block),
        "genesis_block_hash": _hex(chain.genesis_head.hash),
    }


def _genesis_tx(chain: ReferenceChain) -> Tx:
    return decode_tx(decode_entry(decode_block(chain.c.genesis_raw).entries[0])[0])


def transactions(chain: ReferenceChain) -> dict:
    items = [("genesis", _genesis_tx(chain))] + list(chain.txs.items())
    vectors = []
    for name, tx in items:
        vector = {
            "kind": name, "kind_number": int(tx.kind), "tag": tx.kind.tag, "tx": _hex(tx.raw),
            "tx_id": _hex(tx.tx_id), "author": _hex(tx.author), "author_id": _hex(tx.author_id),
            "signing_message": _hex(tx.signing_bytes()), "body_hash": _hex(tx.body_hash()),
            "signature": _hex(tx.signature),
            "approvals": [[_hex(a.public_key), _hex(a.signature)] for a in tx.approvals],
        }
        if tx.kind == TxKind.REDEEM:
            voucher = tx.payload.voucher
            vector["voucher"] = {"compact": voucher.to_compact(),
                                 "signing_message": _hex(voucher.signing_bytes()),
                                 "member_id": _hex(voucher.member_id)}
        vectors.append(vector)
    return {"chain_id": _hex(chain.c.chain_id), "vectors": vectors}


def checkpoint(chain: ReferenceChain) -> dict:
    executed, certificate = chain.blocks[0]
    header = executed.block.header
    text = body_of(header).text()
    cert = Certificate.decode(certificate)
    return {
        "height": header.height, "header": _hex(encode(header.to_wire())), "block_hash": _hex(header.hash()),
        "checkpoint_text": text.decode(), "checkpoint_bytes": _hex(text),
        "certificate": _hex(certificate),
        "signers": [{"public_key": _hex(pk), "key_name": key_name(pk), "key_id": _hex(key_id(pk)),
                     "signature": _hex(sig)} for pk, sig in cert.signatures],
        "signed_note": signed_note(body_of(header), list(cert.signatures)),
    }


def export(chain: ReferenceChain) -> dict:
    blocks = []
    for executed, certificate in chain.blocks:
        header = executed.block.header
        first_leaf = header.tree_size - header.tx_count
        entries = []
        for index, entry in enumerate(executed.block.entries):
            tx_raw, code = decode_entry(entry)
            tx = decode_tx(tx_raw)
            entries.append({"index": index, "leaf_index": first_leaf + index, "tx_id": _hex(tx.tx_id),
                            "kind": tx.kind.tag.rsplit("/", 1)[1], "code": code, "code_name": Code(code).name,
                            "entry": _hex(entry), "leaf_hash": _hex(leaf_hash(entry))})
        blocks.append({
            "height": header.height, "block": _hex(executed.block.encode()), "block_hash": _hex(header.hash()),
            "prev_hash": _hex(header.prev_hash), "time_ms": header.time_ms, "tx_count": header.tx_count,
            "tree_size": header.tree_size, "tree_root": _hex(header.tree_root),
            "state_root": _hex(header.state_root), "certificate": _hex(certificate), "entries": entries})
    state: MemoryState = chain.state
    return {
        "chain_id": _hex(chain.c.chain_id),
        "genesis_block_hash": _hex(chain.genesis_head.hash),
        "export_file": _hex(chain.export_file()),
        "blocks": blocks,
        "final_state": [{"key": _hex(k), "value": _hex(v)} for k, v in sorted(state.entries.items())],
    }


def build() -> dict[str, bytes]:
    """File name → its exact bytes: the JSON vectors, and the reference chain's genesis block
    and export file as binary files (the same bytes as in chain_id.json and export.json), for
    ``nanum audit verify --export reference.export --genesis genesis.block``."""
    chain = ReferenceChain()
    contents = {"party_ids.json": party_ids(chain), "chain_id.json": chain_id(chain),
                "transactions.json": transactions(chain), "checkpoint.json": checkpoint(chain),
                "export.json": export(chain)}
    built = {name: (json.dumps(value, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
             for name, value in contents.items()}
    built["genesis.block"] = chain.c.genesis_raw
    built["reference.export"] = chain.export_file()
    assert tuple(built) == FILES
    return built


def main(argv: list[str]) -> int:
    built = build()
    if argv[1:] == ["--check"]:
        stale = [name for name, data in built.items()
                 if not (VECTORS_DIR / name).is_file() or (VECTORS_DIR / name).read_bytes() != data]
        for name in stale:
            print(f"docs/vectors/{name} differs from what the code gives; run python -m tests.vectors_gen")
        return 1 if stale else 0
    VECTORS_DIR.mkdir(parents=True, exist_ok=True)
    for name, data in built.items():
        (VECTORS_DIR / name).write_bytes(data)
    print(f"wrote {len(built)} files to {VECTORS_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
