"""Who may read what through the Ledger API (docs/ARCHITECTURE.md, "Who may read what").

Owns the access table and the identity a read is made by: the role and party id of the
caller's TLS certificate, plus, for a member, the member id a valid read grant (a signed read,
``ledger.read_grant``) authenticates. Every decision is a pure function of that reader, the
request's subject and the ledger's records at the head; a refusal is ``ReadDenied`` whose
message says which role may make the read.

Roles (node/pki.py): auditors and nodes read everything (an auditor verifies the whole chain;
a node holds it anyway and catches up from it); a centre reads what it wrote and the members it
registered; a partner and an admin read their own history and the transactions they are a
party to; a member reads only their own account, and only with a grant; everyone with a
consortium certificate reads block headers, checkpoints, consistency proofs and status.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.ledger import Ledger
from ledger.tx import Tx

READS_EVERYTHING = ("auditor", "node")
LEDGER_PARTIES = ("centre", "partner", "admin")     # certificates whose party id is a ledger key's

BALANCE_READERS = "a member's balance is read by the member (signed read), the centre that registered them, or an auditor"
MEMBER_HISTORY_READERS = ("a member's history is read by the member (signed read), the centre that registered "
                          "them, or an auditor")
PARTY_HISTORY_READERS = "a centre's, partner's or admin's history is read by that party itself or an auditor"
TRANSACTION_READERS = ("a transaction is read by its parties (its author; the member it touches, by signed read), "
                       "the centre that registered that member, or an auditor")
BLOCK_READERS = ("whole blocks carry everyone's transactions and are read by auditors and nodes; "
                 "other roles ask for headers_only")


class ReadDenied(Exception):
    """This reader may not make this read; the message names who may."""


@dataclass(frozen=True, slots=True)
class Reader:
    role: str                       # the TLS certificate's role
    party_id: bytes                 # the TLS certificate's party id
    member_id: bytes | None = None  # the member a valid read grant authenticates

    @property
    def reads_everything(self) -> bool:
        return self.role in READS_EVERYTHING

    def is_party(self, party_id: bytes) -> bool:
        """The certificate itself speaks for ``party_id`` (a ledger party's own key)."""
        return self.role in LEDGER_PARTIES and self.party_id == party_id

    def is_member(self, member_id: bytes) -> bool:
        return self.member_id is not None and self.member_id == member_id


def _registered_by(ledger: Ledger, reader: Reader, member_id: bytes) -> bool:
    if reader.role != "centre":
        return False
    member = ledger.member(member_id)
    return member is not None and member.centre_id == reader.party_id


def check_balance(reader: Reader, member_id: bytes, ledger: Ledger) -> None:
    if reader.reads_everything or reader.is_member(member_id) or _registered_by(ledger, reader, member_id):
        return
    raise ReadDenied(BALANCE_READERS)


def check_history(reader: Reader, party_id: bytes, ledger: Ledger) -> None:
    if reader.reads_everything or reader.is_party(party_id) or reader.is_member(party_id):
        return
    if _registered_by(ledger, reader, party_id):
        return
    is_member = ledger.member(party_id) is not None
    raise ReadDenied(MEMBER_HISTORY_READERS if is_member else PARTY_HISTORY_READERS)


def check_transaction(reader: Reader, tx: Tx, ledger: Ledger) -> None:
    if reader.reads_everything:
        return
    parties = ledger.parties(tx)
    if any(reader.is_party(p) or reader.is_member(p) or _registered_by(ledger, reader, p) for p in parties):
        return
    raise ReadDenied(TRANSACTION_READERS)


def check_blocks(reader: Reader, headers_only: bool) -> None:
    if headers_only or reader.reads_everything:
        return
    raise ReadDenied(BLOCK_READERS)


__all__ = ["ReadDenied", "Reader", "check_balance", "check_blocks", "check_history", "check_transaction"]
