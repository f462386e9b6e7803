"""A node whose durable writes fail (issue 16, defect 4): it must not freeze silently.

What operators rely on (docs/ARCHITECTURE.md, "Durability contract of the store"): a failed
durable write puts the node in the storage-failed state. It logs the cause at error level once,
stops taking part in consensus, answers submissions and reads UNAVAILABLE naming the cause,
reports it in GetStatus and gRPC health (NOT_SERVING), exits with EXIT_STORAGE_FAILED within a
bounded time, and, restarted once the disk has room, recovers from its intact store.

Two ways in: a failure injected at the storage layer (every machine), and a real 8 MiB-style
tmpfs that fills up (where this process may mount one; skipped with the reason otherwise).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import threading
import time

import grpc
import lmdb
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cli.common import EXIT_STORAGE_FAILED
from cli.main import main
from ledger.keys import SigningKey
from ledger.store import Store
from ledger.tx import Deposit, DepositKind, RegisterMember, make_tx
from node.cluster import LocalCluster
from node.config import load_config
from node.durability import STORAGE_FAILURE_EXIT_AFTER_MS, StorageFailed
from node.runtime import run_node
from node.wire import ledger_pb2, ledger_pb2_grpc

EXIT_MARGIN_S = 10.0


class _InProcessNode:
    """One node's run_node on an event loop in a thread, so the test can break its storage."""

    def __init__(self, config_file) -> None:
        self.config = load_config(config_file)
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        async def main() -> None:
            self._stop = asyncio.Event()
            await run_node(self.config, self._stop)
        try:
            self._loop.run_until_complete(main())
        except BaseException as exc:            # the test looks at it
            self.error = exc
        finally:
            self._loop.close()

    def stop(self) -> None:
        if self._thread.is_alive() and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()


@pytest.fixture()
def single(tmp_path):
    """A consortium of one node (its own leader), not started: the test runs it in-process."""
    cluster = LocalCluster(tmp_path / "consortium", nodes=1)
    cluster.create()
    return cluster


def _stubs(cluster, address=None):
    """A centre's channel to ``address`` (node 0 by default), with Ledger and Health stubs."""
    party = cluster.layout.centres[0]
    credentials = grpc.ssl_channel_credentials(cluster.layout.ca_cert_file.read_bytes(),
                                               party.tls_key_file.read_bytes(), party.tls_cert_file.read_bytes())
    channel = grpc.secure_channel(address or cluster.layout.nodes[0].address, credentials)
    return channel, ledger_pb2_grpc.LedgerStub(channel), health_pb2_grpc.HealthStub(channel)


def _wait_serving(stub, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return stub.GetStatus(ledger_pb2.GetStatusRequest(), timeout=1)
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def test_a_failed_durable_write_refuses_work_reports_why_exits_and_recovers_on_restart(
        single, monkeypatch, caplog):
    broken = threading.Event()
    write = Store._write

    def failing_write(self, work):
        if broken.is_set():
            raise lmdb.Error("mdb_txn_commit: Input/output error")      # what a full tmpfs gave
        return write(self, work)
    monkeypatch.setattr(Store, "_write", failing_write)
    centre, chain_id = single.key("centre"), single.chain_id
    register = make_tx(centre, chain_id, os.urandom(16), RegisterMember(SigningKey.generate().public_key))
    deposit = make_tx(centre, chain_id, os.urandom(16),
                      Deposit(register.payload.member_id, 5, DepositKind.OTHER, 0, "after the disk filled", 0))
    caplog.set_level(logging.INFO)
    node = _InProcessNode(single.layout.nodes[0].config_file)
    channel, stub, health = _stubs(single)
    try:
        _wait_serving(stub)
        deadline = time.monotonic() + 10
        while True:                                  # until the single node has elected itself
            try:
                stub.Submit(ledger_pb2.SubmitRequest(tx=register.raw), timeout=5)
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                time.sleep(0.1)
        height = stub.GetStatus(ledger_pb2.GetStatusRequest(), timeout=5).nodes[0].applied_height

        broken.set()
        refused = _refusal(lambda: stub.Submit(ledger_pb2.SubmitRequest(tx=deposit.raw), timeout=10))
        assert refused.code() == grpc.StatusCode.UNAVAILABLE, refused
        assert "storage failed" in refused.details() and "Input/output error" in refused.details()
        status = stub.GetStatus(ledger_pb2.GetStatusRequest(), timeout=5).nodes[0]
        assert "Input/output error" in status.storage_failure
        assert status.applied_height == height
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == \
            health_pb2.HealthCheckResponse.NOT_SERVING
        shown = CliRunner().invoke(main, ["status", "--client", str(single.layout.centres[0].config_file), "--json"],
                                   env={"NANUM_CLIENT": None, "NANUM_CONFIG": None})
        assert "Input/output error" in json.loads(shown.output)["nodes"][0]["storage_failure"], shown.output
        read = _refusal(lambda: stub.GetBalance(ledger_pb2.GetBalanceRequest(
            member_id=register.payload.member_id), timeout=5))
        assert read.code() == grpc.StatusCode.UNAVAILABLE and "storage failed" in read.details()
        again = _refusal(lambda: stub.Submit(ledger_pb2.SubmitRequest(tx=deposit.raw), timeout=5))
        assert again.code() == grpc.StatusCode.UNAVAILABLE

        assert node.join(STORAGE_FAILURE_EXIT_AFTER_MS / 1000 + EXIT_MARGIN_S), "the node did not exit"
        assert isinstance(node.error, StorageFailed), node.error
        errors = [r for r in caplog.records if r.levelno >= logging.ERROR and "durable write failed" in r.message]
        assert len(errors) == 1, [r.message for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        node.stop()

    # Space again: a restart recovers from the store as it was, and takes the deposit.
    broken.clear()
    node = _InProcessNode(single.layout.nodes[0].config_file)
    try:
        assert _wait_serving(stub).nodes[0].applied_height == height
        deadline = time.monotonic() + 10
        while True:
            try:
                assert stub.Submit(ledger_pb2.SubmitRequest(tx=deposit.raw), timeout=5).code == 0
                break
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE and time.monotonic() < deadline
                time.sleep(0.1)
        assert stub.GetBalance(ledger_pb2.GetBalanceRequest(member_id=register.payload.member_id),
                               timeout=5).points == 5
    finally:
        node.stop()
        channel.close()
    assert node.error is None


# --- a real full disk ---------------------------------------------------------------------------

TMPFS_SIZE = "4m"            # small, so that the load fills it in seconds
FILL_TIMEOUT_S = 120


def _mount_tmpfs(folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(folder)],
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test: {exc}")
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the full-disk test (needs root or CAP_SYS_ADMIN): "
                    f"{result.stderr.strip()}")


@pytest.fixture()
def small_disk_cluster(tmp_path):
    """A 3-node cluster whose node 2 keeps its data on a small tmpfs (unmounted in teardown)."""
    cluster = LocalCluster(tmp_path / "consortium")
    cluster.create()
    data = cluster.layout.nodes[2].folder / "data"
    _mount_tmpfs(data)
    try:
        cluster.start()
        yield cluster, data
    finally:
        cluster.stop()
        subprocess.run(["umount", str(data)], capture_output=True, timeout=30)


def _batch_writer(cluster, member_id, stop) -> None:
    centre, chain_id = cluster.key("centre"), cluster.chain_id
    with cluster.client("centre", timeout_ms=5_000) as client:
        while not stop.is_set():
            txs = [make_tx(centre, chain_id, os.urandom(16),
                           Deposit(member_id, 1, DepositKind.OTHER, 0, "x" * 60, 0)).raw for _ in range(100)]
            try:
                client.submit_batch(txs)
            except Exception:                 # the cluster keeps serving; the test checks that
                time.sleep(0.1)


def test_a_node_on_a_full_tmpfs_says_why_exits_and_catches_up_once_there_is_room(small_disk_cluster):
    cluster, data = small_disk_cluster
    with cluster.client("centre") as client:
        register = make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16),
                           RegisterMember(SigningKey.generate().public_key))
        client.submit(register.raw)
    stop = threading.Event()
    writers = [threading.Thread(target=_batch_writer, args=(cluster, register.payload.member_id, stop))
               for _ in range(2)]
    for writer in writers:
        writer.start()
    victim = cluster.layout.nodes[2]
    try:
        deadline, failure = time.monotonic() + FILL_TIMEOUT_S, ""
        while not failure:
            assert time.monotonic() < deadline, \
                "no storage failure reported in time (a frozen node, or the tmpfs never filled: see node.log)"
            assert cluster.processes[2].poll() is None, "the node exited before it said why"
            status = cluster.statuses().get(2)
            failure = status.storage_failure if status is not None else ""
            time.sleep(0.2)
        channel, stub, health = _stubs(cluster, victim.address)
        assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == \
            health_pb2.HealthCheckResponse.NOT_SERVING
        probe = make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16),
                        RegisterMember(SigningKey.generate().public_key))
        refused = _refusal(lambda: stub.Submit(ledger_pb2.SubmitRequest(tx=probe.raw), timeout=5))
        assert refused.code() == grpc.StatusCode.UNAVAILABLE and "storage failed" in refused.details()
        channel.close()
        assert cluster.processes[2].wait(timeout=STORAGE_FAILURE_EXIT_AFTER_MS / 1000 + EXIT_MARGIN_S) \
            == EXIT_STORAGE_FAILED
        cluster.processes.pop(2)
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=30)
    log = (victim.folder / "node.log").read_text()
    assert "a durable write failed" in log and "advance() the previous Ready first" not in log
    # The others kept going; with room again, the node restarts from its store and catches up.
    with cluster.client("centre") as client:
        client.submit(make_tx(cluster.key("centre"), cluster.chain_id, os.urandom(16),
                              RegisterMember(SigningKey.generate().public_key)).raw)
    subprocess.run(["mount", "-o", "remount,size=256m", str(data)], check=True, timeout=10)
    cluster.start(2)
    target = max(s.applied_height for i, s in cluster.statuses().items() if i != 2)
    deadline = time.monotonic() + 60
    while (cluster.statuses().get(2) or status).applied_height < target:
        assert time.monotonic() < deadline, f"the restarted node is at {cluster.statuses().get(2)} of {target}"
        time.sleep(0.2)
    assert cluster.statuses()[2].storage_failure == ""

