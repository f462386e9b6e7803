"""Founding a consortium: building and signing the genesis transaction and block 0.

The genesis block is the auditor's trust anchor: given only its bytes, anyone can derive
the chain id, the admins, their threshold, and the first node set.
"""

from __future__ import annotations

from typing import Sequence

from ledger.block import genesis_block
from ledger.keys import SigningKey
from ledger.state import MemoryState
from ledger.tx import Genesis, PartyEntry, make_tx


def build_genesis(name: str, created_ms: int, threshold: int,
                  admins: Sequence[tuple[SigningKey, str]],
                  centres: Sequence[tuple[bytes, str]],
                  partners: Sequence[tuple[bytes, str]],
                  nodes: Sequence[tuple[bytes, str, str]]) -> bytes:
    """Returns the encoded block 0. ``admins`` are signing keys (the first ``threshold`` sign);
    centres and partners are (public key, name); nodes are (public key, name, address)."""
    genesis = Genesis(
        name=name, created_ms=created_ms, threshold=threshold,
        admins=tuple(PartyEntry(k.public_key, n) for k, n in admins),
        centres=tuple(PartyEntry(k, n) for k, n in centres),
        partners=tuple(PartyEntry(k, n) for k, n in partners),
        nodes=tuple(PartyEntry(k, n, a) for k, n, a in nodes),
    )
    signers = [k for k, _ in admins[:threshold]]
    chain_id = genesis.chain_id()
    tx = make_tx(signers[0], chain_id, chain_id, genesis, approvers=tuple(signers[1:]))
    return genesis_block(tx, MemoryState()).block.encode()
