"""``nanum demo``: walk a new user through the Nanum Bank's ledger, end to end.

At this stage (ledger core only) it runs one ledger in-process on a real LMDB store in a
temporary folder: founding a consortium, registering a member, deposits for volunteering and
a donation, a member's voucher, a bookstore's redemption, a refund, a reversal, a refused
transaction, and a full verification of the chain from its genesis. Every step checks its
outcome; the exit code is 0 only if every step checked out.
"""

from __future__ import annotations

import os
import tempfile
import time

import click

from ledger.codes import Code
from ledger.genesis import build_genesis
from ledger.keys import SigningKey
from ledger.ledger import Ledger
from ledger.tx import Deposit, DepositKind, Redeem, Refund, RegisterMember, Reversal, Tx, make_tx
from ledger.verify import verify_chain
from ledger.voucher import sign_voucher

HOUR_MS = 3_600_000


class DemoFailed(Exception):
    pass


def _step(text: str) -> None:
    click.echo(click.style("==> ", fg="cyan") + text)


def _expect(label: str, got: object, want: object) -> None:
    if got != want:
        raise DemoFailed(f"{label}: expected {_show(want)}, got {_show(got)}")
    click.echo(f"    ok: {label} = {_show(got)}")


def _show(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value)
    return value.name if isinstance(value, Code) else str(value)


def run_demo() -> int:
    try:
        with tempfile.TemporaryDirectory(prefix="nanum-demo-") as folder:
            _walkthrough(folder)
    except DemoFailed as exc:
        click.echo(click.style(f"demo FAILED: {exc}", fg="red"), err=True)
        return 1
    click.echo(click.style("demo finished: every step checked out", fg="green"))
    return 0


def _walkthrough(folder: str) -> None:
    now_ms = int(time.time() * 1000)
    admins = [SigningKey.generate() for _ in range(3)]
    centre, bookstore, node = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    _step("founding a consortium: 3 admins (2 must sign), 1 centre, 1 bookstore, 1 node")
    genesis = build_genesis("Gwangju Talent Donation Center (demo)", now_ms, 2,
                            [(k, f"admin-{i}") for i, k in enumerate(admins)],
                            [(centre.public_key, "Gwangju Talent Donation Center")],
                            [(bookstore.public_key, "Dongmyeong Bookstore")],
                            [(node.public_key, "node-1", "127.0.0.1:7401")])
    ledger = Ledger.create(os.path.join(folder, "node-1"), genesis)
    chain = ledger.chain_id
    click.echo(f"    chain id {chain.hex()}, store {folder}/node-1 (LMDB)")
    clock = [now_ms]

    def commit(*txs: Tx) -> list[Code]:
        clock[0] += 1000
        executed = ledger.build(list(txs), clock[0])
        ledger.commit(executed)
        return executed.codes

    member = SigningKey.generate()
    _step(f"the centre registers a member (pseudonymous id {member.party_id.hex()})")
    _expect("register", commit(make_tx(centre, chain, os.urandom(16), RegisterMember(member.public_key))), [Code.OK])

    _step("deposits: 30 points for 3 hours of volunteering, 20 for a donation of 50,000 won")
    volunteering = make_tx(centre, chain, os.urandom(16), Deposit(
        member.party_id, 30, DepositKind.VOLUNTEERING, 180, "VOL-2026-0113", 4))
    donation = make_tx(centre, chain, os.urandom(16), Deposit(
        member.party_id, 20, DepositKind.DONATION, 50_000, "DON-2026-0042", 1))
    _expect("deposits", commit(volunteering, donation), [Code.OK, Code.OK])
    _expect("balance", ledger.balance(member.party_id)[0], 50)

    _step("the member signs a voucher for the bookstore: at most 25 points, valid 2 hours")
    voucher = sign_voucher(member, chain, bookstore.party_id, 25, os.urandom(16), clock[0] + 2 * HOUR_MS)
    click.echo(f"    voucher: {voucher.to_compact()[:48]}...")

    _step("the bookstore redeems 25 points against the voucher")
    redemption = make_tx(bookstore, chain, os.urandom(16), Redeem(voucher, 25, "two books"))
    _expect("redeem", commit(redemption), [Code.OK])
    _step("the same voucher again is refused (single use), and resubmitting is idempotent")
    again = make_tx(bookstore, chain, os.urandom(16), Redeem(voucher, 5, "one more"))
    _expect("second use", commit(again, redemption), [Code.VOUCHER_USED, Code.EXISTS])

    _step("the bookstore refunds 10 points for a returned book")
    _expect("refund", commit(make_tx(bookstore, chain, os.urandom(16), Refund(redemption.tx_id, 10, "returned"))), [Code.OK])
    _step("the centre reverses the donation deposit (entered by mistake)")
    _expect("reversal", commit(make_tx(centre, chain, os.urandom(16), Reversal(donation.tx_id, "duplicate entry"))), [Code.OK])
    _expect("balance", ledger.balance(member.party_id)[0], 50 - 25 + 10 - 20)

    _step("an auditor verifies the whole chain from the genesis block alone")
    blocks = [ledger.block(h) for h in range(1, ledger.height + 1)]
    report = verify_chain(genesis, blocks)
    _expect("verified", report.ok, True)
    click.echo(f"    {report.blocks} blocks, {report.transactions} transactions, "
               f"tree size {report.tree_size}, root {report.tree_root.hex()[:16]}...")
    _step("a flipped byte in a stored block is found and located")
    tampered = bytearray(blocks[1])
    tampered[-70] ^= 0x01
    bad = verify_chain(genesis, [blocks[0], bytes(tampered)] + blocks[2:])
    _expect("tamper detected", bad.ok, False)
    click.echo(f"    found: {bad.problem}")
    ledger.close()
