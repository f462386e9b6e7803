"""The user-facing ``nanum`` commands against a real 3-node cluster on loopback.

One module-scoped ``LocalCluster`` (real node processes); the CLI runs in-process through
click's CliRunner with the cluster's own client.toml files. Covers the whole story (register,
deposits, an offline voucher, redeem, refund, reversal, balance, history, tx show with a
verified proof, --json) and the error paths with their documented exit codes. No output may
ever contain a Python traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from cli.main import main
from node.cluster import LocalCluster
from tests.consortium import key
from tests.cli_runner import CLEAN_ENV, nanum  # noqa: F401



@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    local = LocalCluster(tmp_path_factory.mktemp("cli"))
    try:
        local.create()
        local.start()
        local.leader()
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def files(cluster):
    layout = cluster.layout
    return {"centre": str(layout.centres[0].config_file), "partner": str(layout.partners[0].config_file),
            "member": str(layout.members.config_file), "genesis": str(layout.genesis_file),
            "partner_id": layout.partners[0].party_id, "centre_id": layout.centres[0].party_id}




def as_json(result: Result) -> dict:
    return json.loads(result.stdout)


def new_member(files, folder: Path, name: str, points: int = 0) -> tuple[str, str, int]:
    """A member key made with `nanum keys generate`, registered (and given points):
    (key file, member id, height of the last write)."""
    key = folder / f"{name}.pem"
    member_id = as_json(nanum("keys", "generate", str(key), "--json"))["party_id"]
    written = as_json(nanum("member", "register", "--member-key", str(key), "--client", files["centre"], "--json"))
    assert written["member_id"] == member_id
    if points:
        written = as_json(nanum("deposit", "--member", member_id, "--points", str(points), "--other", "--ref", "T",
                                "--client", files["centre"], "--json"))
    return str(key), member_id, written["height"]


def voucher(files, key: str, max_points: int, *extra: str) -> str:
    out = nanum("voucher", "create", "--key", key, "--genesis", files["genesis"], "--partner", files["partner_id"],
                "--max-points", str(max_points), "--valid-for", "1h", *extra).stdout.strip()
    assert re.fullmatch(r"nv1\.[A-Za-z0-9_-]+", out), out
    return out


def balance(files, member_id: str, height: int, key: str) -> dict:
    """The member's own balance: the member's client.toml, the read signed with their key."""
    return as_json(nanum("balance", member_id, "--client", files["member"], "--key", key, "--min-height", str(height),
                         "--json"))


# --- the whole story --------------------------------------------------------------------------


def test_user_story(files, tmp_path):
    key = tmp_path / "member.pem"
    member_id = as_json(nanum("keys", "generate", str(key), "--json"))["party_id"]

    # A centre registers the member; the member id is printed.
    registered = nanum("member", "register", "--member-key", str(key), "--client", files["centre"])
    assert f"member id: {member_id}" in registered.output
    assert re.search(r"tx [0-9a-f]{32}: OK at height \d+", registered.output)

    # Deposits: 1.5 hours volunteered (90 minutes) and a donation.
    volunteered = as_json(nanum("deposit", "--member", member_id, "--points", "30", "--hours", "1.5",
                                "--ref", "VOL-2024-001", "--sdg", "4", "--client", files["centre"], "--json"))
    assert volunteered["code_name"] == "OK" and volunteered["duplicate"] is False
    donated = nanum("deposit", "--member", member_id.upper(), "--points", "20", "--donation", "50000",
                    "--ref", "DON-17", "--client", files["centre"])
    donation_tx, donation_height = re.search(r"tx ([0-9a-f]{32}): OK at height (\d+)", donated.output).groups()
    shown = as_json(nanum("tx", "show", volunteered["tx_id"], "--client", files["member"], "--key", str(key), "--json",
                          "--min-height", donation_height))
    assert shown["payload"]["deposit_kind"] == "volunteering" and shown["payload"]["quantity"] == 90
    assert shown["payload"]["category"] == 4

    view = balance(files, member_id, int(donation_height), str(key))
    assert view["registered"] and view["points"] == 50
    assert view["by_centre"] == [{"centre_id": files["centre_id"], "name": "Gwangju Talent Donation Center",
                                  "points": 50}]
    human = nanum("balance", member_id, "--client", files["member"], "--key", str(key), "--min-height",
                  donation_height).output
    assert f"member {member_id}: 50 points" in human and "Gwangju Talent Donation Center" in human

    # The member signs a voucher offline (no --client: only the genesis file) and hands it over.
    voucher_file = tmp_path / "voucher.txt"
    created = as_json(nanum("voucher", "create", "--key", str(key), "--genesis", files["genesis"],
                            "--partner", files["partner_id"], "--max-points", "40", "--valid-for", "2h",
                            "--out", str(voucher_file), "--json"))
    assert voucher_file.read_text().strip() == created["voucher"]
    assert created["member_id"] == member_id and created["max_points"] == 40

    redeemed = as_json(nanum("redeem", "--voucher", f"@{voucher_file}", "--points", "35", "--memo", "two books",
                             "--client", files["partner"], "--json"))
    assert redeemed["code_name"] == "OK"
    assert balance(files, member_id, redeemed["height"], str(key))["points"] == 15

    refunded = as_json(nanum("refund", "--redemption", redeemed["tx_id"], "--points", "10", "--memo", "returned",
                             "--client", files["partner"], "--json"))
    assert refunded["code_name"] == "OK"
    assert balance(files, member_id, refunded["height"], str(key))["points"] == 25

    reversed_ = as_json(nanum("reverse", "--deposit", donation_tx, "--reason", "entered twice",
                              "--client", files["centre"], "--json"))
    assert reversed_["code_name"] == "OK"
    final = balance(files, member_id, reversed_["height"], str(key))
    assert final["points"] == 5 and final["by_centre"][0]["points"] == 5

    # History: oldest first, every step, heights ascending; pages join up to the whole.
    seen = ("--client", files["member"], "--key", str(key), "--min-height", str(reversed_["height"]))
    full = as_json(nanum("history", member_id, *seen, "--json"))
    assert [i["kind"] for i in full["items"]] == ["register-member", "deposit", "deposit", "redeem", "refund",
                                                  "reversal"]
    assert [i["tx_id"] for i in full["items"][1:]] == [volunteered["tx_id"], donation_tx, redeemed["tx_id"],
                                                       refunded["tx_id"], reversed_["tx_id"]]
    leaves = [i["leaf_index"] for i in full["items"]]
    assert leaves == sorted(leaves) and full["more"] is False
    assert [i["height"] for i in full["items"]][-1] == reversed_["height"]
    first = as_json(nanum("history", member_id, *seen, "--limit", "4", "--json"))
    assert first["more"] is True and first["next_after"] == leaves[3] and len(first["items"]) == 4
    rest = as_json(nanum("history", member_id, *seen, "--after", str(leaves[3]), "--json"))
    assert first["items"] + rest["items"] == full["items"]
    followed = as_json(nanum("history", member_id, *seen, "--limit", "2", "--all", "--json"))
    assert followed["items"] == full["items"] and followed["more"] is False
    page = nanum("history", member_id, *seen, "--limit", "2").output
    assert f"more: continue with --after {leaves[1]}" in page and "register-member" in page

    # tx show: decoded, with its inclusion proof verified here.
    shown = nanum("tx", "show", redeemed["tx_id"], *seen).output
    assert re.search(r"inclusion proof verified against tree size \d+ root [0-9a-f]{64}", shown)
    assert "redeem" in shown and "two books" in shown and "OK (0)" in shown
    shown = as_json(nanum("tx", "show", reversed_["tx_id"], "--client", files["centre"],
                          "--min-height", str(reversed_["height"]), "--json"))
    assert shown["verified"] is True and shown["kind"] == "reversal" and shown["height"] == reversed_["height"]
    assert shown["payload"] == {"deposit_tx_id": donation_tx, "reason": "entered twice"}

    # Who may read what: the bookstore sees its own redemption, not the member's donation or
    # balance; the member's client without the member's key reads nothing of hers.
    assert as_json(nanum("tx", "show", redeemed["tx_id"], "--client", files["partner"], "--json"))["verified"]
    denied = nanum("tx", "show", donation_tx, "--client", files["partner"], code=3).output
    assert "not allowed: a transaction is read by its parties" in denied and "PERMISSION_DENIED" in denied
    denied = nanum("balance", member_id, "--client", files["partner"], code=3).output
    assert "a member's balance is read by the member (signed read)" in denied
    denied = nanum("history", member_id, "--client", files["member"], code=3).output
    assert "a member signs their own reads with --key" in denied


# --- refusals by the ledger: exit 1 with the code's name ----------------------------------------


def test_redeem_more_than_the_balance_is_refused(files, tmp_path):
    key, _, _ = new_member(files, tmp_path, "poor", points=3)
    result = nanum("redeem", "--voucher", voucher(files, key, 100), "--points", "50",
                   "--client", files["partner"], code=1)
    assert "refused: INSUFFICIENT_POINTS (7): the member does not have enough points for this" in result.output


def test_a_voucher_is_used_once(files, tmp_path):
    key, _, _ = new_member(files, tmp_path, "twice", points=10)
    string = voucher(files, key, 5)
    nanum("redeem", "--voucher", string, "--points", "2", "--client", files["partner"])
    again = nanum("redeem", "--voucher", string, "--points", "2", "--client", files["partner"], "--json", code=1)
    assert as_json(again)["code_name"] == "VOUCHER_USED"
    assert "refused: VOUCHER_USED (9)" in again.output


def test_a_bookstore_cannot_deposit(files, tmp_path):
    _, member_id, _ = new_member(files, tmp_path, "target")
    result = nanum("deposit", "--member", member_id, "--points", "5", "--minutes", "60", "--ref", "X",
                   "--client", files["partner"], code=1)
    assert "refused: NOT_AUTHORISED (4)" in result.output


def test_the_same_tx_id_returns_the_original_result(files, tmp_path):
    key, member_id, _ = new_member(files, tmp_path, "retry")
    args = ["deposit", "--member", member_id, "--points", "7", "--donation", "1000", "--ref", "R",
            "--tx-id", "00112233445566778899AABBCCDDEEFF", "--client", files["centre"], "--json"]
    first, second = as_json(nanum(*args)), as_json(nanum(*args))
    assert first["duplicate"] is False and second["duplicate"] is True
    assert first["tx_id"] == second["tx_id"] == "00112233445566778899aabbccddeeff"
    assert (second["code_name"], second["height"], second["leaf_index"]) == \
           (first["code_name"], first["height"], first["leaf_index"])
    human = nanum(*args[:-1]).output
    assert "duplicate" in human
    assert balance(files, member_id, first["height"], key)["points"] == 7
    different = nanum(*[a if a != "7" else "8" for a in args], code=1)
    assert "EXISTS_WITH_DIFFERENT_FIELDS" in different.output


# --- mistakes of the user: one line, exit 2 or 3, nothing sent ----------------------------------


@pytest.mark.parametrize("member_id", ["12zz", "ab" * 19, "ab" * 21, ""])
def test_a_malformed_member_id(files, member_id):
    result = nanum("deposit", "--member", member_id, "--points", "5", "--other", "--ref", "X",
                   "--client", files["centre"], code=3)
    assert "--member must be 40 hex digits" in result.output
    nanum("balance", member_id, "--client", files["member"], code=3)


@pytest.mark.parametrize("string, problem", [
    ("hello", "starts with 'nv1.'"),
    ("nv1.garbage", "does not decode to a voucher"),
    ("nv1.!!!", "not a base64url character"),
    ("nv1." + "A" * 600, "longer than 512"),
])
def test_a_garbage_voucher(files, string, problem):
    result = nanum("redeem", "--voucher", string, "--points", "5", "--client", files["partner"], code=3)
    assert "malformed voucher" in result.output and problem in result.output


def test_an_altered_voucher(files, tmp_path):
    key, _, _ = new_member(files, tmp_path, "altered")
    string = voucher(files, key, 5)
    flipped = string[:-3] + ("A" if string[-3] != "A" else "B") + string[-2:]
    result = nanum("redeem", "--voucher", flipped, "--points", "1", "--client", files["partner"], code=3)
    assert "signature does not verify" in result.output


def test_key_problems(files, tmp_path):
    missing = nanum("deposit", "--member", "ab" * 20, "--points", "5", "--other", "--ref", "X",
                    "--client", files["centre"], "--key", str(tmp_path / "nope.pem"), code=3)
    assert "nope.pem" in missing.output and "No such file" in missing.output
    locked = tmp_path / "locked.pem"
    nanum("keys", "generate", str(locked), "--passphrase-env", "PW", env={"PW": "right"})
    wrong = nanum("voucher", "create", "--key", str(locked), "--passphrase-env", "PW", "--genesis", files["genesis"],
                  "--partner", files["partner_id"], "--max-points", "5", "--valid-for", "1d", code=3,
                  env={"PW": "wrong"})
    assert "passphrase is wrong" in wrong.output
    nanum("voucher", "create", "--key", str(locked), "--passphrase-env", "PW", "--genesis", files["genesis"],
          "--partner", files["partner_id"], "--max-points", "5", "--valid-for", "1d", env={"PW": "right"})
    # A valid member key (the key rule), so that the exit is about the missing client file.
    absent = nanum("member", "register", "--public-key", key("member:cli").public_key.hex(),
                   "--client", str(tmp_path / "absent.toml"), code=3)
    assert "absent.toml" in absent.output


@pytest.mark.parametrize("duration, code", [("31d", 3), ("0m", 3), ("2x", 3), ("1h30m", 0), ("30m", 0)])
def test_voucher_durations(files, tmp_path, duration, code):
    key = tmp_path / "m.pem"
    nanum("keys", "generate", str(key))
    result = nanum("voucher", "create", "--key", str(key), "--client", files["member"], "--partner",
                   files["partner_id"], "--max-points", "5", "--valid-for", duration, "--json", code=code)
    if code == 0:
        assert as_json(result)["voucher"].startswith("nv1.")
    else:
        assert "--valid-for" in result.output


def test_usage_errors(files):
    both = nanum("deposit", "--member", "ab" * 20, "--points", "5", "--other", "--hours", "2", "--ref", "X",
                 "--client", files["centre"], code=2)
    assert "exactly one of" in both.output
    nanum("deposit", "--member", "ab" * 20, "--points", "0", "--other", "--ref", "X", "--client", files["centre"],
          code=2)
    nanum("deposit", "--member", "ab" * 20, "--points", "5", "--hours", "0.001", "--ref", "X",
          "--client", files["centre"], code=2)
    nanum("member", "register", "--client", files["centre"], code=2)
    nanum("refund", "--redemption", "xyz", "--points", "1", "--client", files["partner"], code=3)
    nanum("tx", "show", "00" * 16, "--client", files["member"], code=3)


# --- nodes out of reach: exit 4, safe to retry ----------------------------------------------------


def test_unreachable_nodes(files):
    original = Path(files["centre"])
    dead = original.with_name("unreachable.toml")
    text = re.sub(r"(?m)^nodes = .*$", 'nodes = ["127.0.0.1:1"]', original.read_text())
    dead.write_text(re.sub(r"(?m)^timeout_ms = .*$", "timeout_ms = 800", text))
    result = nanum("deposit", "--member", "ab" * 20, "--points", "5", "--other", "--ref", "X",
                   "--tx-id", "ff" * 16, "--client", str(dead), code=4)
    assert "unavailable" in result.output and f"safe to retry with the same --tx-id {'ff' * 16}" in result.output
    nanum("balance", "ab" * 20, "--client", str(dead), code=4)


# --- tx show refuses what does not verify -------------------------------------------------------


def test_tx_show_fails_on_a_bad_proof(files, tmp_path, monkeypatch):
    key, member_id, height = new_member(files, tmp_path, "proof")
    history = as_json(nanum("history", member_id, "--client", files["member"], "--key", key, "--min-height", str(height),
                            "--json"))
    tx_id = history["items"][0]["tx_id"]
    from node.client import LedgerClient

    real = LedgerClient.transaction

    def tampered(self, *args, **kwargs):
        view = real(self, *args, **kwargs)
        view.tree_root = bytes(32)
        return view

    monkeypatch.setattr(LedgerClient, "transaction", tampered)
    result = nanum("tx", "show", tx_id, "--client", files["member"], "--key", key, "--min-height", str(height), code=5)
    assert "verification FAILED" in result.output and "inclusion proof" in result.output
