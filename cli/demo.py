"""``nanum demo``: a local consortium of three node processes, walked end to end.

Starts three nodes on loopback with mutual TLS in a temporary folder; a centre registers
members and deposits points for volunteering and a donation; a member signs a voucher and a
bookstore redeems it; a refund and a reversal follow; the member reads her own balance with a
read signed by her key, and the bookstore is refused the member's history. Mid-way the leader is killed with
SIGKILL while deposits keep coming, a new leader takes over, and the killed node is restarted
and catches up. Finally the whole chain is fetched from a node and verified from the genesis
block alone, certificates included. Every step checks its outcome; the exit code is 0 only
if all of them checked out, and the node processes are always stopped.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import click
import grpc

from ledger.keys import SigningKey
from ledger.tx import Deposit, DepositKind, Redeem, Refund, RegisterMember, Reversal, make_tx
from ledger.verify import verify_chain
from ledger.voucher import sign_voucher
from node.client import ClientError
from node.cluster import ClusterError, LocalCluster
from node.wire import ledger_pb2

HOUR_MS = 3_600_000
CATCH_UP_TIMEOUT_MS = 20_000


class DemoFailed(Exception):
    pass


def _step(text: str) -> None:
    click.echo(click.style("==> ", fg="cyan", bold=True) + text)


def _check(label: str, got: object, want: object) -> None:
    if got != want:
        raise DemoFailed(f"{label}: expected {want}, got {got}")
    click.echo(f"    ok  {label}: {got}")


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="nanum-demo-") as folder:
        cluster = LocalCluster(Path(folder) / "consortium")
        try:
            Demo(cluster).run()
        except (DemoFailed, ClusterError, ClientError) as exc:
            click.echo(click.style(f"demo FAILED: {exc}", fg="red"), err=True)
            return 1
        finally:
            cluster.stop()
    click.echo(click.style("demo finished: every step checked out", fg="green", bold=True))
    return 0


class Demo:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster

    def run(self) -> None:
        self.found()
        self.earn()
        self.spend()
        self.failover()
        self.audit()

    # --- steps -------------------------------------------------------------------------------

    def found(self) -> None:
        _step("founding a consortium: 3 nodes, 3 admins (2 must sign), a centre and a bookstore")
        layout = self.cluster.create()
        click.echo(f"    chain id {layout.chain_id}; folder {layout.folder}")
        self.cluster.start()
        leader = self.cluster.leader()
        click.echo(f"    3 node processes serving over mutual TLS; leader: {layout.nodes[leader].name}"
                   f" ({layout.nodes[leader].address})")
        self.chain = self.cluster.chain_id
        self.centre, self.bookstore = self.cluster.key("centre"), self.cluster.key("partner")
        self.centre_client, self.bookstore_client = self.cluster.client("centre"), self.cluster.client("partner")

    def _submit(self, client, author: SigningKey, payload) -> tuple[bytes, object]:
        tx = make_tx(author, self.chain, os.urandom(16), payload)
        return tx.tx_id, client.submit(tx.raw)

    def earn(self) -> None:
        self.member = SigningKey.generate()
        _step(f"the centre registers a member (pseudonymous id {self.member.party_id.hex()})")
        _, result = self._submit(self.centre_client, self.centre, RegisterMember(self.member.public_key))
        _check("registered at height", result.code_name, "OK")
        _step("deposits: 30 points for 3 hours of volunteering, 20 points for a 50,000 won donation")
        _, result = self._submit(self.centre_client, self.centre, Deposit(
            self.member.party_id, 30, DepositKind.VOLUNTEERING, 180, "VOL-2026-0113", 4))
        _check("volunteering deposit", result.code_name, "OK")
        self.donation_id, result = self._submit(self.centre_client, self.centre, Deposit(
            self.member.party_id, 20, DepositKind.DONATION, 50_000, "DON-2026-0042", 1))
        _check("donation deposit", result.code_name, "OK")
        _check("member's balance", self.centre_client.balance(self.member.party_id).points, 50)

    def spend(self) -> None:
        bookstore_id = self.bookstore.party_id
        _step("the member signs a voucher offline: at most 25 points at the bookstore, valid 2 hours")
        voucher = sign_voucher(self.member, self.chain, bookstore_id, 25, os.urandom(16),
                               int(time.time() * 1000) + 2 * HOUR_MS)
        click.echo(f"    voucher string: {voucher.to_compact()[:40]}…")
        _step("the bookstore redeems 25 points against it")
        self.redemption_id, result = self._submit(self.bookstore_client, self.bookstore, Redeem(voucher, 25, "two books"))
        _check("redemption", result.code_name, "OK")
        _step("using the same voucher again is refused")
        try:
            self._submit(self.bookstore_client, self.bookstore, Redeem(voucher, 5, "again"))
            raise DemoFailed("a used voucher was accepted")
        except ClientError as exc:
            _check("second use refused with", exc.code.name if exc.code else exc.status.name, "VOUCHER_USED")
        _step("the bookstore refunds 10 points for a returned book; the centre reverses the donation")
        _, result = self._submit(self.bookstore_client, self.bookstore, Refund(self.redemption_id, 10, "returned"))
        _check("refund", result.code_name, "OK")
        _, result = self._submit(self.centre_client, self.centre, Reversal(self.donation_id, "entered twice"))
        _check("reversal", result.code_name, "OK")
        _check("member's balance (50 - 25 + 10 - 20)", self.centre_client.balance(self.member.party_id).points, 15)
        self.reads()

    def reads(self) -> None:
        _step("who may read what: the member reads her own balance with a read signed by her key; "
              "the bookstore may not read her history")
        with self.cluster.client("member") as member_client:
            member_client.sign_reads_as(self.member, self.chain)
            _check("member's own balance (signed read)", member_client.balance(self.member.party_id).points, 15)
        try:
            self.bookstore_client.history(self.member.party_id)
            raise DemoFailed("the bookstore read a member's history")
        except ClientError as exc:
            _check("the bookstore asking for her history gets", exc.status, grpc.StatusCode.PERMISSION_DENIED)
            click.echo(f"    ({exc})")

    def failover(self) -> None:
        cluster = self.cluster
        leader = cluster.leader()
        name = cluster.layout.nodes[leader].name
        _step(f"deposits keep coming while the leader {name} is killed with SIGKILL")
        acknowledged = 0
        for i in range(10):
            if i == 3:
                cluster.kill(leader)
                click.echo(f"    killed {name} (SIGKILL) after {acknowledged} acknowledged deposits")
            self._submit(self.centre_client, self.centre, Deposit(
                self.member.party_id, 1, DepositKind.OTHER, 0, f"EVT-{i}", 0))
            acknowledged += 1
        new_leader = cluster.leader(exclude=leader)
        click.echo(f"    new leader: {cluster.layout.nodes[new_leader].name}")
        _check("acknowledged deposits", acknowledged, 10)
        _check("member's balance", self.centre_client.balance(self.member.party_id).points, 25)
        _step(f"restarting {name}: it catches up with the others")
        cluster.start(leader)
        heights = self._wait_converged()
        click.echo(f"    heights: {heights}")

    def _wait_converged(self) -> dict[str, int]:
        deadline = time.monotonic() + CATCH_UP_TIMEOUT_MS / 1000
        while time.monotonic() < deadline:
            statuses = self.cluster.statuses()
            heights = {self.cluster.layout.nodes[i].name: s.certified_height for i, s in statuses.items()}
            if len(heights) == self.cluster.nodes and len(set(heights.values())) == 1:
                return heights
            time.sleep(0.2)
        raise DemoFailed(f"nodes did not converge: {heights}")

    def audit(self) -> None:
        _step("an auditor fetches every block with its certificate and verifies the chain from genesis")
        with self.cluster.client("auditor") as auditor:
            blocks = [(b.block, b.certificate) for b in auditor.blocks(1)]
        report = verify_chain(self.cluster.genesis(), blocks, require_certificates=True)
        if not report.ok:
            raise DemoFailed(f"verification failed: {report.problem}")
        click.echo(f"    verified {report.blocks} blocks (genesis included), {report.transactions} transactions, "
                   f"{report.members} member(s); every block certified by a majority of nodes")
        for centre, totals in report.centres.items():
            click.echo(f"    centre {centre.hex()[:12]}…: deposited {totals.deposited}, redeemed {totals.redeemed},"
                       f" refunded {totals.refunded}, reversed {totals.reversed}, outstanding {totals.outstanding}")
            _check("conservation holds", totals.balanced, True)
        self._check_same_head(report.head_hash)
        _step("a flipped byte in one block is found and located")
        tampered = list(blocks)
        block, certificate = tampered[2]
        flipped = bytearray(block)
        flipped[len(flipped) // 2] ^= 0x01
        tampered[2] = (bytes(flipped), certificate)
        bad = verify_chain(self.cluster.genesis(), tampered, require_certificates=True)
        _check("tampered copy verifies", bad.ok, False)
        click.echo(f"    found at {bad.problem}")

    def _check_same_head(self, head_hash: bytes) -> None:
        hashes = set()
        with self.cluster.client("auditor") as auditor:
            for address in self.cluster.layout.addresses:
                checkpoint = auditor.stub(address).GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=5)
                hashes.add(checkpoint.block_hash)
        _check("nodes agreeing on the certified head", len(hashes), 1)
