"""The one signature rule (docs/FORMAT.md §2 key rule, §3 signature rule) and where it holds.

Finding 1 of issue 14: a member registered with a small-order public key could have a voucher
"signed" by ``key || 32 zero bytes``, which the old verifier (OpenSSL through ``cryptography``)
accepted, so any partner spent the member's points without any secret and the auditor passed
the chain, while a libsodium verifier written from the same FORMAT.md refused it.

Here: all of Wycheproof's Ed25519 vectors against ``ledger.keys.verify``; one test per edge
class (small-order A and R, mixed-order A, non-canonical A, R and S) with the expected verdict;
the key rule itself; and the finding end to end: the registration is refused statically, the
forged redemption never succeeds, and both auditors (sequential and parallel, and the CLI)
refuse a chain that holds one.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ledger import keys
from ledger.block import BlockError, execute_block
from ledger.codes import Code
from ledger.genesis import build_genesis
from ledger.parallel import verify_chain_parallel
from ledger.tx import (
    Deposit,
    DepositKind,
    Governance,
    GovernanceAction,
    Redeem,
    RegisterMember,
    Rejected,
    Role,
    check_tx,
    signatures_hold,
)
from ledger.verify import verify_chain
from ledger.voucher import Voucher
from tests import ed25519_edges as edges
from tests.consortium import DAY_MS, GENESIS_TIME_MS, key
from tests.consortium import TestConsortium as Consortium

SEED = bytes(range(32))
MESSAGE = b"nanum signature rule"


def _vectors_file() -> Path:
    # shared/ sits beside the repository (CI, the main clone); a git worktree sits deeper, so
    # the nearest ancestor that holds it is taken.
    relative = Path("shared", "vectors", "wycheproof", "ed25519_test.json")
    repository = Path(__file__).resolve().parents[1]
    for folder in repository.parents:
        if (folder / relative).is_file():
            return folder / relative
    return repository.parent / relative


VECTORS = _vectors_file()
VECTORS_MISSING = (f"Wycheproof Ed25519 vectors not found at {VECTORS}; the repository expects the "
                   "shared material beside it (../shared/vectors/wycheproof/ed25519_test.json)")
EXPECTED_VECTORS = 151


# --- Wycheproof ---------------------------------------------------------------------------------


def _wycheproof_cases() -> list:
    # Missing vectors fail the suite (one failing case) rather than skip it silently.
    if not VECTORS.is_file():
        return [pytest.param(None, id="vectors-missing")]
    data = json.loads(VECTORS.read_text())
    return [pytest.param((bytes.fromhex(group["publicKey"]["pk"]), case), id=f"tc{case['tcId']}")
            for group in data["testGroups"] for case in group["tests"]]


def test_every_wycheproof_vector_is_present():
    assert VECTORS.is_file(), VECTORS_MISSING
    data = json.loads(VECTORS.read_text())
    assert data["numberOfTests"] == EXPECTED_VECTORS
    assert sum(len(g["tests"]) for g in data["testGroups"]) == EXPECTED_VECTORS
    # No case is "acceptable" in this file: every verdict is fixed by the vectors themselves.
    assert {c["result"] for g in data["testGroups"] for c in g["tests"]} == {"valid", "invalid"}


@pytest.mark.parametrize("vector", _wycheproof_cases())
def test_wycheproof_vector(vector):
    assert vector is not None, VECTORS_MISSING
    public_key, case = vector
    verdict = keys.verify(public_key, bytes.fromhex(case["sig"]), bytes.fromhex(case["msg"]))
    assert verdict is (case["result"] == "valid"), (case["comment"], case["flags"])


# --- the key rule -------------------------------------------------------------------------------


def test_an_ordinary_key_passes_the_key_rule():
    assert keys.public_key_valid(key("member:jiwoo").public_key)
    assert keys.public_key_valid(edges.public_key(SEED))


@pytest.mark.parametrize("name", list(edges.SMALL_ORDER) + list(edges.SMALL_ORDER_NON_CANONICAL))
def test_a_small_order_key_fails_the_key_rule(name):
    encoding = {**edges.SMALL_ORDER, **edges.SMALL_ORDER_NON_CANONICAL}[name]
    assert not keys.public_key_valid(encoding)


def test_a_mixed_order_key_fails_the_key_rule():
    for torsion in (edges.ORDER_2, edges.ORDER_4, edges.ORDER_8_A, edges.ORDER_8_B):
        assert not keys.public_key_valid(edges.mixed_order_key(SEED, torsion))


def test_a_non_canonical_key_fails_the_key_rule():
    # y >= p: every y in [p, 2^255) is some y - p < 19 written the long way, either sign bit.
    for y in range(edges.P, 2**255):
        encoding = y.to_bytes(32, "little")
        assert not keys.public_key_valid(encoding), y - edges.P
        assert not keys.public_key_valid(edges.with_sign_bit(encoding)), y - edges.P


def test_a_point_off_the_curve_fails_the_key_rule():
    # y = 2: (y^2 - 1) / (d y^2 + 1) has no square root mod p, so no x exists.
    assert not keys.public_key_valid((2).to_bytes(32, "little"))


@pytest.mark.parametrize("value", [b"", bytes(31), bytes(33), "01" * 32, None, bytearray(32)])
def test_the_key_rule_refuses_wrong_types_and_sizes_without_raising(value):
    assert keys.public_key_valid(value) is False


def test_the_key_rule_states_a_reason_a_person_can_act_on():
    reason = keys.key_problem(edges.ORDER_8_B)
    assert reason is not None and "small order" in reason and "generate" in reason
    assert keys.key_problem(key("member:jiwoo").public_key) is None


# --- the signature rule, one edge class at a time ------------------------------------------------


def test_a_valid_signature_verifies():
    signature = edges.sign_with_r(SEED, MESSAGE, 12345)
    assert keys.verify(edges.public_key(SEED), signature, MESSAGE) is True
    signer = key("member:jiwoo")
    assert keys.verify(signer.public_key, signer.sign(MESSAGE), MESSAGE) is True


@pytest.mark.parametrize("name", list(edges.SMALL_ORDER) + list(edges.SMALL_ORDER_NON_CANONICAL))
def test_small_order_a_with_the_zero_signature_is_refused(name):
    # Finding 1's forgery: R = A, S = 0. Pick a message for which the cofactorless equation
    # holds (so a verifier without the key rule accepts), then the rule must refuse it.
    public_key = {**edges.SMALL_ORDER, **edges.SMALL_ORDER_NON_CANONICAL}[name]
    canonical = edges.SMALL_ORDER.get(name, public_key)
    message = next(b"m%d" % i for i in range(256) if edges.zero_signature_holds(canonical, b"m%d" % i))
    assert keys.verify(public_key, edges.zero_signature(public_key), message) is False


def test_finding_1_forged_voucher_signature_is_refused_for_both_keys():
    for public_key in (edges.IDENTITY, edges.ORDER_8_B):
        message = next(b"v%d" % i for i in range(256) if edges.zero_signature_holds(public_key, b"v%d" % i))
        assert keys.verify(public_key, edges.zero_signature(public_key), message) is False


def test_a_non_canonical_identity_key_with_identity_r_is_refused():
    # A = identity written as y = p + 1; R = identity, S = 0: [0]B - [k]A = R for every k.
    for public_key in (edges.SMALL_ORDER_NON_CANONICAL["identity as y = p + 1"],
                       edges.SMALL_ORDER_NON_CANONICAL["identity, negative zero"]):
        assert keys.verify(public_key, edges.IDENTITY + bytes(32), MESSAGE) is False


def test_small_order_r_is_refused():
    # R = identity and S = k*a: [S]B - [k]A = identity = R holds cofactorlessly for an honest key.
    signature = edges.identity_r_signature(SEED, MESSAGE)
    assert signature[:32] == edges.IDENTITY
    assert keys.verify(edges.public_key(SEED), signature, MESSAGE) is False


def test_mixed_order_r_is_refused_the_rule_is_cofactorless():
    # [8]([S]B - [k]A - R) = identity holds, [S]B - [k]A = R does not: the rule is cofactorless
    # (FORMAT.md §3), so only the key's holder could make this, and no conforming verifier takes it.
    signature = edges.mixed_order_r_signature(SEED, MESSAGE)
    assert keys.verify(edges.public_key(SEED), signature, MESSAGE) is False


def test_mixed_order_a_is_refused_even_when_the_equation_holds():
    for torsion in (edges.ORDER_8_A, edges.ORDER_8_B):
        mixed, message, signature = edges.mixed_order_signature(SEED, torsion)
        assert keys.verify(mixed, signature, message) is False


def test_non_canonical_s_is_refused():
    signature = edges.sign_with_r(SEED, MESSAGE, 777)
    s = int.from_bytes(signature[32:], "little")
    assert s + edges.L < 2**256
    malleated = signature[:32] + (s + edges.L).to_bytes(32, "little")
    assert keys.verify(edges.public_key(SEED), malleated, MESSAGE) is False
    assert keys.verify(edges.public_key(SEED), signature, MESSAGE) is True


@pytest.mark.parametrize("r", [edges.SMALL_ORDER_NON_CANONICAL["identity as y = p + 1"],
                               edges.SMALL_ORDER_NON_CANONICAL["identity, negative zero"]],
                         ids=["y = p + 1", "negative zero"])
def test_non_canonical_r_is_refused(r):
    # The identity-R signature with R written non-canonically (k changes with R's bytes, so S
    # is recomputed for those bytes): a lax verifier comparing points would accept.
    a = edges.secret_scalar(SEED)
    k = edges.challenge(r, edges.public_key(SEED), MESSAGE)
    signature = r + ((k * a) % edges.L).to_bytes(32, "little")
    assert keys.verify(edges.public_key(SEED), signature, MESSAGE) is False


@pytest.mark.parametrize("public_key, signature", [
    (b"", bytes(64)), (bytes(32), b""), (bytes(31), bytes(64)), (bytes(32), bytes(65)),
    ("00" * 32, bytes(64)), (bytes(32), None),
], ids=["empty key", "empty signature", "short key", "long signature", "text key", "no signature"])
def test_verify_never_raises_for_bad_input(public_key, signature):
    assert keys.verify(public_key, signature, MESSAGE) is False


# --- where a key enters the ledger: the static check ------------------------------------------------


@pytest.fixture(scope="module")
def c() -> Consortium:
    return Consortium()


def _weak_member(public_key: bytes) -> SimpleNamespace:
    return SimpleNamespace(public_key=public_key, party_id=keys.party_id(public_key))


def _forged_voucher(c: Consortium, public_key: bytes, points: int = 40) -> Voucher:
    """A voucher for ``public_key`` with the zero signature, its nonce picked so the
    cofactorless equation holds (an attacker can pick the nonce freely)."""
    for i in range(256):
        unsigned = Voucher(c.chain_id, public_key, c.partners[0].party_id, points, i.to_bytes(16, "big"),
                           GENESIS_TIME_MS + DAY_MS, bytes(64))
        if edges.zero_signature_holds(public_key, unsigned.signing_bytes()):
            return dataclasses.replace(unsigned, signature=edges.zero_signature(public_key))
    raise AssertionError("no nonce found")


def _rejection(raw: bytes, chain_id: bytes):
    with pytest.raises(Rejected) as caught:
        check_tx(raw, chain_id)
    assert signatures_hold(raw, chain_id) is False, "the auditor's fast path must refuse it too"
    return caught.value.rejection


@pytest.mark.parametrize("public_key", [edges.IDENTITY, edges.ORDER_8_B], ids=["identity", "order-8"])
def test_invalid_key_registering_a_small_order_member_is_refused(c, public_key):
    rejection = _rejection(c.make(c.centres[0], RegisterMember(public_key)).raw, c.chain_id)
    assert (rejection.code, rejection.field) == (Code.INVALID_KEY, "payload.member_key")
    assert Code.INVALID_KEY.static


@pytest.mark.parametrize("public_key", [edges.IDENTITY, edges.ORDER_8_B], ids=["identity", "order-8"])
def test_invalid_key_the_forged_voucher_redemption_is_refused(c, public_key):
    voucher = _forged_voucher(c, public_key)
    rejection = _rejection(c.redeem(voucher, 40).raw, c.chain_id)
    assert (rejection.code, rejection.field) == (Code.INVALID_KEY, "payload.voucher.member_key")


def test_invalid_key_a_mixed_order_member_is_refused(c):
    rejection = _rejection(c.make(c.centres[0], RegisterMember(edges.mixed_order_key(SEED))).raw, c.chain_id)
    assert rejection.code == Code.INVALID_KEY


@pytest.mark.parametrize("action", [GovernanceAction.ADMIT, GovernanceAction.RETIRE])
def test_invalid_key_a_governance_admission_of_a_weak_party_is_refused(c, action):
    admit = action == GovernanceAction.ADMIT
    payload = Governance(action, Role.PARTNER, edges.ORDER_8_A, "weak" if admit else "", "")
    raw = c.make(c.admins[0], payload, approvers=(c.admins[1],)).raw
    rejection = _rejection(raw, c.chain_id)
    assert (rejection.code, rejection.field) == (Code.INVALID_KEY, "payload.public_key")


def test_invalid_key_an_author_or_approval_key_is_refused_before_its_signature(c):
    from ledger.encoding import decode, encode
    raw = c.make(c.centres[0], RegisterMember(key("member:x").public_key)).raw
    fields = decode(raw)
    fields[4] = edges.IDENTITY                                     # the author
    assert _rejection(encode(fields), c.chain_id).field == "author"
    raw = c.governance(GovernanceAction.ADMIT, Role.PARTNER, key("partner-y"), name="partner-y").raw
    fields = decode(raw)
    fields[7][0][0] = edges.ORDER_8_B                              # the approval's key
    rejection = _rejection(encode(fields), c.chain_id)
    assert (rejection.code, rejection.field) == (Code.INVALID_KEY, "approvals[0].public_key")


@pytest.mark.parametrize("group", ["centres", "partners", "nodes"])
def test_invalid_key_in_genesis_is_a_clear_error_naming_the_key(group):
    good = [key(f"admin{i}") for i in range(2)]
    parties = {"centres": [(key("centre-a").public_key, "centre")],
               "partners": [(key("bookstore").public_key, "bookstore")],
               "nodes": [(key("node0").public_key, "node0", "127.0.0.1:7000")]}
    weak = (edges.ORDER_8_B, "weak", "127.0.0.1:7001") if group == "nodes" else (edges.ORDER_8_B, "weak")
    parties[group] = [*parties[group], weak]
    with pytest.raises(Rejected) as caught:
        build_genesis("weak", GENESIS_TIME_MS, 2, [(k, f"admin{i}") for i, k in enumerate(good)],
                      parties["centres"], parties["partners"], parties["nodes"])
    rejection = caught.value.rejection
    assert (rejection.code, rejection.field) == (Code.INVALID_KEY, f"payload.{group}[1].public_key")
    assert edges.ORDER_8_B.hex() in rejection.detail


# --- the finding end to end: a chain holding the forgery -------------------------------------------


def _chain_with_the_forgery(c: Consortium, public_key: bytes) -> list[tuple[bytes, None]]:
    """Blocks 1-2 as a node with the old verifier would have built them: the weak member
    registered and credited 40 points, then the forged voucher redeemed. ``execute_block``
    runs the rules only (the static check is done before), so these blocks build."""
    member = _weak_member(public_key)
    state, head = c.open_chain()
    register = c.make(c.centres[0], RegisterMember(public_key))
    deposit = c.make(c.centres[0], Deposit(member.party_id, 40, DepositKind.VOLUNTEERING, 120, "VOL-0001", 3))
    first = c.run_block(state, head, [register, deposit])
    assert first.codes == [Code.OK, Code.OK]
    second = execute_block(first.head, [c.redeem(_forged_voucher(c, public_key), 40)],
                           first.head.header.time_ms + 60_000, state)
    assert second.codes == [Code.OK], "the rules alone would let the forged redemption through"
    return [(first.block.encode(), None), (second.block.encode(), None)]


@pytest.mark.parametrize("public_key", [edges.IDENTITY, edges.ORDER_8_B], ids=["identity", "order-8"])
def test_the_auditor_refuses_a_chain_holding_a_small_order_member(c, public_key):
    blocks = _chain_with_the_forgery(c, public_key)
    reports = [verify_chain(c.genesis_raw, blocks), verify_chain_parallel(c.genesis_raw, iter(blocks), 0)]
    for report in reports:
        assert not report.ok, "the chain with the forged redemption passed"
        problem = report.problem
        assert (problem.height, problem.index, problem.field) == (1, 0, "payload.member_key"), problem
        assert "INVALID_KEY" in problem.reason, problem


def test_the_parallel_auditor_with_workers_refuses_it_at_the_same_place(c):
    blocks = _chain_with_the_forgery(c, edges.ORDER_8_B)
    sequential = verify_chain(c.genesis_raw, blocks)
    parallel = verify_chain_parallel(c.genesis_raw, iter(blocks), 1)
    assert not parallel.ok and parallel.problem == sequential.problem


def test_nanum_audit_verify_refuses_an_export_holding_it(c, tmp_path):
    from ledger.block import decode_block
    from ledger.certificate import Certificate, endorse
    from tests.test_audit import verify_json, write_export
    records = []
    for height, (raw, _) in enumerate(_chain_with_the_forgery(c, edges.ORDER_8_B), start=1):
        header = decode_block(raw).header
        certificate = Certificate.build(height, decode_block(raw).hash, [
            (node.public_key, endorse(node, header)) for node in c.nodes[:2]])
        records.append((height, raw, certificate.encode()))
    genesis = tmp_path / "genesis.bin"
    genesis.write_bytes(c.genesis_raw)
    export = write_export(tmp_path / "forged.nanum", c.genesis_raw, records)
    for workers in (0, 2):
        problem = verify_json(export, genesis, 5, workers=workers)["problem"]
        assert (problem["height"], problem["index"], problem["field"]) == (1, 0, "payload.member_key")
        assert "INVALID_KEY" in problem["reason"]


def test_execute_block_builds_it_but_a_replay_refuses_it(c):
    # A node replaying another's block (catch-up) runs the static check: BlockError at the key.
    from ledger.block import decode_block, replay_block
    blocks = _chain_with_the_forgery(c, edges.IDENTITY)
    state, head = c.open_chain()
    with pytest.raises(BlockError) as caught:
        replay_block(head, decode_block(blocks[0][0]), state)
    assert caught.value.field == "payload.member_key"


@pytest.mark.parametrize("public_key", [edges.IDENTITY, edges.ORDER_8_B, edges.mixed_order_key(SEED)],
                         ids=["identity", "order-8", "mixed-order"])
def test_nanum_member_register_refuses_a_weak_key_before_signing(tmp_path, public_key):
    from click.testing import CliRunner
    from cli.main import main
    result = CliRunner().invoke(main, ["member", "register", "--public-key", public_key.hex(),
                                       "--client", str(tmp_path / "absent.toml")],
                                env={"NANUM_KEY": None, "NANUM_CLIENT": None, "NANUM_CONFIG": None})
    assert result.exit_code == 3, result.output
    assert "not a valid Ed25519 key" in result.output and "nanum keys generate" in result.output
    assert "absent.toml" not in result.output, "the key is checked before the client file is read"


def test_invalid_key_in_a_genesis_file_read_back_names_the_key(monkeypatch):
    # A genesis block holding a small-order node key, built as the old code would have
    # (the key check switched off), then read as a node or an auditor reads a genesis file.
    import ledger.tx
    from ledger.block import decode_genesis_block
    from ledger.state import MemoryState
    admins = [key(f"admin{i}") for i in range(2)]
    with monkeypatch.context() as patched:
        patched.setattr(ledger.tx, "check_public_keys", lambda tx: None)
        raw = build_genesis("weak", GENESIS_TIME_MS, 2, [(k, f"admin{i}") for i, k in enumerate(admins)],
                            [], [], [(key("node0").public_key, "node0", "127.0.0.1:7000"),
                                     (edges.IDENTITY, "weak", "127.0.0.1:7001")])
    with pytest.raises(BlockError) as caught:
        decode_genesis_block(raw, MemoryState())
    error = caught.value
    assert (error.height, error.index, error.field) == (0, 0, "payload.nodes[1].public_key")
    assert "INVALID_KEY" in str(error) and edges.IDENTITY.hex() in str(error)
