"""A small, deterministic consortium for tests: keys from fixed seeds, and transaction makers.

Each maker returns a signed ``Tx`` with a fresh tx id unless one is given.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

from ledger.block import decode_block
from ledger.encoding import decode
from ledger.genesis import build_genesis
from ledger.keys import SigningKey
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
    Tx,
    decode_tx,
    make_tx,
)
from ledger.voucher import Voucher, sign_voucher
from ledger.block import ChainHead, ExecutedBlock, decode_genesis_block, execute_block
from ledger.state import MemoryState

GENESIS_TIME_MS = 1_790_000_000_000
DAY_MS = 86_400_000


def key(name: str) -> SigningKey:
    return SigningKey.from_seed(hashlib.sha256(b"nanum-test-key:" + name.encode()).digest())


@dataclass
class TestConsortium:
    __test__ = False   # a helper, not a test class
    admins: list[SigningKey] = field(default_factory=lambda: [key(f"admin{i}") for i in range(3)])
    centres: list[SigningKey] = field(default_factory=lambda: [key("centre-a"), key("centre-b")])
    partners: list[SigningKey] = field(default_factory=lambda: [key("bookstore"), key("venue")])
    nodes: list[SigningKey] = field(default_factory=lambda: [key(f"node{i}") for i in range(3)])
    threshold: int = 2
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.genesis_raw = build_genesis(
            "Gwangju Nanum Bank (test)", GENESIS_TIME_MS, self.threshold,
            [(k, f"admin{i}") for i, k in enumerate(self.admins)],
            [(k.public_key, f"centre{i}") for i, k in enumerate(self.centres)],
            [(k.public_key, f"partner{i}") for i, k in enumerate(self.partners)],
            [(k.public_key, f"node{i}", f"127.0.0.1:{7000 + i}") for i, k in enumerate(self.nodes)],
        )
        genesis_tx = decode_tx(decode(decode_block(self.genesis_raw).entries[0])[0])
        self.chain_id = genesis_tx.tx_id

    def tx_id(self) -> bytes:
        return next(self._ids).to_bytes(16, "big")

    def member(self, name: str) -> SigningKey:
        return key("member:" + name)

    def register(self, member: SigningKey, centre: int = 0, tx_id: bytes | None = None) -> Tx:
        return make_tx(self.centres[centre], self.chain_id, tx_id or self.tx_id(),
                       RegisterMember(member.public_key))

    def deposit(self, member: SigningKey, points: int, centre: int = 0, minutes: int = 120,
                tx_id: bytes | None = None, author: SigningKey | None = None) -> Tx:
        payload = Deposit(member.party_id, points, DepositKind.VOLUNTEERING, minutes, "VOL-0001", 3)
        return make_tx(author or self.centres[centre], self.chain_id, tx_id or self.tx_id(), payload)

    def voucher(self, member: SigningKey, max_points: int, partner: int = 0,
                expiry_ms: int = GENESIS_TIME_MS + DAY_MS, nonce: bytes | None = None) -> Voucher:
        return sign_voucher(member, self.chain_id, self.partners[partner].party_id, max_points,
                            nonce or self.tx_id(), expiry_ms)

    def redeem(self, voucher: Voucher, points: int, partner: int = 0, tx_id: bytes | None = None) -> Tx:
        return make_tx(self.partners[partner], self.chain_id, tx_id or self.tx_id(),
                       Redeem(voucher, points, "two books"))

    def refund(self, redemption_id: bytes, points: int, partner: int = 0) -> Tx:
        return make_tx(self.partners[partner], self.chain_id, self.tx_id(),
                       Refund(redemption_id, points, "returned a book"))

    def reverse(self, deposit_id: bytes, centre: int = 0) -> Tx:
        return make_tx(self.centres[centre], self.chain_id, self.tx_id(),
                       Reversal(deposit_id, "entered twice by mistake"))

    def governance(self, action: GovernanceAction, role: Role, subject: SigningKey,
                   signers: int | None = None, name: str = "new party", address: str = "") -> Tx:
        count = self.threshold if signers is None else signers
        admit = action == GovernanceAction.ADMIT
        payload = Governance(action, role, subject.public_key, name if admit else "",
                             address if admit else "")
        return make_tx(self.admins[0], self.chain_id, self.tx_id(), payload,
                       approvers=tuple(self.admins[1:count]))

    # --- added for the rules and property tests --------------------------------------------

    def make(self, author: SigningKey, payload, tx_id: bytes | None = None,
             approvers: tuple[SigningKey, ...] = ()) -> Tx:
        """Any transaction with any payload, signed by ``author`` (co-signed by ``approvers``)."""
        return make_tx(author, self.chain_id, tx_id or self.tx_id(), payload, approvers=approvers)

    def open_chain(self) -> tuple[MemoryState, ChainHead]:
        """Block 0 verified and replayed into a fresh in-memory state, as the verifier does."""
        state = MemoryState()
        executed = decode_genesis_block(self.genesis_raw, state)
        state.absorb(executed.state)
        return state, executed.head

    def run_block(self, state: MemoryState, head: ChainHead, txs: list[Tx],
                  time_ms: int | None = None) -> ExecutedBlock:
        """Executes ``txs`` as the block after ``head`` and absorbs its changes into ``state``.
        The block time defaults to one minute after the previous block."""
        if time_ms is None:
            time_ms = head.header.time_ms + 60_000
        executed = execute_block(head, list(txs), time_ms, state)
        state.absorb(executed.state)
        return executed
