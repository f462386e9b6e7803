"""Text that cannot attack a terminal, at the CLI (issue 15, finding 6).

Input: every option that becomes a ledger text field (``deposit --ref``, ``--memo``,
``reverse --reason``, the names given to ``nanum init``) refuses the characters FORMAT.md §1
refuses, before anything is sent or written. Output: every human line goes through
cli/text.py, so text that reached the CLI anyway (a chain of an older rule, a hostile node's
status or error message) is shown as visible escapes, never as raw control characters.

No node runs here: one consortium folder made by ``create_consortium`` gives the client files
and genesis, and only the data source (``LedgerClient``'s calls) is replaced.
"""

from __future__ import annotations

import json
import re
import secrets
import unicodedata

import pytest
from click.testing import CliRunner, Result

import ledger.encoding
from cli.main import main
from cli.text import echo, printable
from ledger.encoding import encode
from ledger.keys import SigningKey
from ledger.merkle import leaf_hash
from ledger.tx import TX_VERSION, Deposit, DepositKind, Reversal, signing_bytes
from node.client import ClientError, LedgerClient
from node.consortium import ConsortiumSpec, create_consortium
from node.wire import ledger_pb2
from tests.cli_runner import CLEAN_ENV, nanum  # noqa: F401


# One example per refused category (Unicode 14.0.0), and terminal attacks made of them.
HOSTILE = {
    "C0 escape (CSI, set title)": "\x1b[2J\x1b]0;pwned\x07",
    "C1 CSI and OSC": "\x9b2J\x9d0;pwned\x9c",
    "bidi override": "abc\u202edef",
    "bidi isolate": "\u2066x\u2069",
    "zero width": "a\u200bb\ufeff",
    "soft hyphen": "a\u00adb",
    "line separator": "a\u2028b",
    "paragraph separator": "a\u2029b",
    "tag": "a\U000e0041b",
    "unassigned": "a\u0378b",
    "newline": "a\nforged line",
}


def _raw_refused(text: str) -> list[str]:
    """The characters of ``text`` a terminal must never receive raw (the ones the CLI escapes;
    the newlines the CLI itself prints between lines excepted)."""
    return [c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Cn")]




@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    spec = ConsortiumSpec(name="Gwangju Nanum Bank", created_ms=1_700_000_000_000, nodes=1, admins=1, threshold=1,
                          centres=["Gwangju Centre"], partners=["Dongmyeong Books"])
    return create_consortium(tmp_path_factory.mktemp("text") / "consortium", spec)


@pytest.fixture
def nothing_sent(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a request was sent")
    for method in ("submit", "transaction", "history", "balance", "status_of"):
        monkeypatch.setattr(LedgerClient, method, refuse)


# --- the escaping function ------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE)
def test_printable_leaves_no_refused_character_and_is_idempotent(name):
    shown = printable(HOSTILE[name])
    assert _raw_refused(shown) == [] and "\n" not in shown
    assert printable(shown) == shown
    for c in _raw_refused(HOSTILE[name]):
        assert f"{ord(c):02x}" in shown


def test_printable_keeps_ordinary_text():
    for text in ("VOL-2024-001", "두 권의 책", "a\\u202e b", "\U0001faf6\ufe0f", "\u3000x\ue000"):
        assert printable(text) == text


def test_printable_uses_python_style_escapes():
    assert printable("\x1b\u202e\U000e0041") == "\\x1b\\u202e\\U000e0041"


def test_echo_keeps_the_line_breaks_it_is_given(capsys):
    echo("first \u202e\nsecond \x9b")
    assert capsys.readouterr().out == "first \\u202e\nsecond \\x9b\n"


# --- input: the CLI refuses what the ledger would ---------------------------------------------


# The text option first: click runs the callbacks in the order the options are given.
TEXT_OPTIONS = [
    ("deposit", "--ref", ["--member", "ab" * 20, "--points", "5", "--other"]),
    ("redeem", "--memo", ["--voucher", "nv1.AAAA", "--points", "1"]),
    ("refund", "--memo", ["--redemption", "ab" * 16, "--points", "1"]),
    ("reverse", "--reason", ["--deposit", "ab" * 16]),
]
CHARACTERS = {"Cc": "\x9b", "Cf": "\u202e", "Zl": "\u2028", "Zp": "\u2029", "Cn": "\u0378"}


@pytest.mark.parametrize("category", CHARACTERS)
@pytest.mark.parametrize("command, option, rest", TEXT_OPTIONS, ids=[t[0] for t in TEXT_OPTIONS])
def test_a_text_option_refuses_each_category_before_sending(layout, nothing_sent, command, option, rest, category):
    refused = CHARACTERS[category]
    client = str(layout.centres[0].config_file if command in ("deposit", "reverse")
                 else layout.partners[0].config_file)
    result = nanum(command, option, f"X{refused}Y", *rest, "--client", client, code=3)
    assert option in result.output and f"U+{ord(refused):04X}" in result.output
    assert refused not in result.output


@pytest.mark.parametrize("category", CHARACTERS)
@pytest.mark.parametrize("option", ["--name", "--centre", "--partner"])
def test_init_refuses_each_category_in_a_name(tmp_path, option, category):
    refused = CHARACTERS[category]
    folder = tmp_path / "c"
    result = nanum("init", str(folder), "--nodes", "1", "--admins", "1", "--threshold", "1",
                   option, f"Name{refused}", code=3)
    assert f"U+{ord(refused):04X}" in result.output and refused not in result.output
    assert not folder.exists() or not any(folder.iterdir())


# --- output: what reaches the CLI anyway is escaped ---------------------------------------------


def _hostile_deposit(chain_id: bytes, ref: str) -> bytes:
    """A deposit whose activity_ref breaks the text rule, validly signed: built below the rules
    (make_tx would refuse it), as a node of an older rule or a hostile node could send it."""
    author = SigningKey.generate()
    payload = Deposit(bytes(20), 5, DepositKind.OTHER, 0, ref, 0)
    tx_id = secrets.token_bytes(16)
    signature = author.sign(signing_bytes(chain_id, payload, tx_id, author.public_key))
    return encode([TX_VERSION, chain_id, int(payload.kind), tx_id, author.public_key, payload.to_wire(),
                   signature, []])


def _view(raw: bytes) -> ledger_pb2.TransactionView:
    entry = encode([raw, 0])
    return ledger_pb2.TransactionView(tx=raw, entry=entry, code=0, code_name="OK", height=1, index=0, leaf_index=0,
                                      tree_size=1, tree_root=leaf_hash(entry))


def _chain_id(layout) -> bytes:
    return bytes.fromhex(layout.chain_id)


def _tx_id(raw: bytes) -> str:
    return ledger.encoding.decode(raw)[3].hex()


@pytest.fixture
def older_rule(monkeypatch):
    """Decode text as a CLI of the older rule (or a bug in the rule) would: the escaping is
    then all that stands between the chain's text and the terminal."""
    monkeypatch.setattr(ledger.encoding, "text_problem", lambda text: None)


@pytest.mark.parametrize("name", HOSTILE)
def test_tx_show_of_hostile_text_fails_verification_and_prints_no_control(layout, monkeypatch, name):
    raw = _hostile_deposit(_chain_id(layout), HOSTILE[name])
    monkeypatch.setattr(LedgerClient, "transaction", lambda self, *a, **k: _view(raw))
    result = nanum("tx", "show", _tx_id(raw), "--client", str(layout.members.config_file), code=5)
    assert "verification FAILED" in result.output and "U+" in result.output
    assert _raw_refused(result.output) == []


@pytest.mark.parametrize("name", HOSTILE)
def test_tx_show_escapes_text_that_an_older_rule_let_through(layout, monkeypatch, older_rule, name):
    raw = _hostile_deposit(_chain_id(layout), HOSTILE[name])
    monkeypatch.setattr(LedgerClient, "transaction", lambda self, *a, **k: _view(raw))
    result = nanum("tx", "show", _tx_id(raw), "--client", str(layout.members.config_file))
    assert _raw_refused(result.output) == []
    assert f"activity_ref:      {printable(HOSTILE[name])}\n" in result.output
    assert "forged line" not in result.output.replace("\\x0aforged line", "")    # no line of its own

    as_json = nanum("tx", "show", _tx_id(raw), "--client", str(layout.members.config_file), "--json")
    assert as_json.output.isascii()
    assert json.loads(as_json.output)["payload"]["activity_ref"] == HOSTILE[name]


def test_history_escapes_text_that_an_older_rule_let_through(layout, monkeypatch, older_rule):
    chain_id = _chain_id(layout)
    raws = [_hostile_deposit(chain_id, text) for text in HOSTILE.values()]
    items = [ledger_pb2.HistoryItem(leaf_index=i, tx=raw, code=0, height=1) for i, raw in enumerate(raws)]
    monkeypatch.setattr(LedgerClient, "history", lambda self, *a, **k: ledger_pb2.History(items=items, more=False))
    result = nanum("history", "ab" * 20, "--client", str(layout.members.config_file))
    assert _raw_refused(result.output) == []
    assert len(result.output.splitlines()) == 1 + len(raws)      # a header, then one line per item
    as_json = nanum("history", "ab" * 20, "--client", str(layout.members.config_file), "--json")
    assert as_json.output.isascii()
    assert [i["payload"]["activity_ref"] for i in json.loads(as_json.output)["items"]] == list(HOSTILE.values())


def test_status_escapes_what_a_hostile_node_reports(layout, monkeypatch):
    hostile = "".join(HOSTILE.values())
    node = ledger_pb2.NodeStatus(node_id="ab" * 20, name="n\u202eode", address=hostile, role="leader\x9b2J",
                                 term=1, applied_height=3, certified_height=3)
    monkeypatch.setattr(LedgerClient, "status_of",
                        lambda self, address, *a, **k: ledger_pb2.ClusterStatus(nodes=[node], leader_id=hostile))
    result = nanum("status", "--client", str(layout.members.config_file))
    assert _raw_refused(result.output) == []
    assert "n\\u202eode" in result.output and "leader\\x9b2J" in result.output
    assert nanum("status", "--client", str(layout.members.config_file), "--json").output.isascii()


def test_an_error_message_from_a_node_is_escaped(layout, monkeypatch):
    import grpc

    def failing(self, *args, **kwargs):
        raise ClientError(grpc.StatusCode.INVALID_ARGUMENT, "bad \x1b]0;pwned\x07 request \u202e")
    monkeypatch.setattr(LedgerClient, "history", failing)
    result = nanum("history", "ab" * 20, "--client", str(layout.members.config_file), code=3)
    assert _raw_refused(result.output) == []
    assert "bad \\x1b]0;pwned\\x07 request \\u202e" in result.output


def test_no_human_output_in_cli_bypasses_the_escaping_function():
    # Every click.echo in cli/ prints JSON (pure ASCII) or is cli/text.py's own; the demo prints
    # only what it made itself, with click.style colours.
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "cli"
    for path in sorted(root.glob("*.py")):
        if path.name in ("text.py", "demo.py"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "click.echo(" in line or re.search(r"\bprint\(", line):
                assert "json.dumps(" in line, f"{path.name}:{number}: {line.strip()}"
