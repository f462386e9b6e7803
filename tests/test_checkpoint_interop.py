"""nanum's checkpoint notes against the Go reference of C2SP signed notes, both directions.

tests/interop/signednote/main.go is built with golang.org/x/mod/sumdb/note (the package the
Go module mirror's clients use). With the vkeys `nanum audit keys` prints, Go's note.Open
verifies a nanum checkpoint note; notes that Go's note.Sign extends with one more signature
(a witness's, or a rotated key's reusing a node's name) pass nanum's verify_note; and on the
corpus of tests/test_checkpoint.py both agree: the notes nanum ignores lines of, Go accepts;
the ones nanum refuses as malformed, Go refuses.

Needs the `go` command and the x/mod source in a GOPATH (GOPATH mode: no module proxy):
on Debian, `apt-get install golang-go golang-golang-x-mod-dev`; elsewhere set NANUM_GO_XMOD to
a GOPATH whose src/golang.org/x/mod holds x/mod. Skipped, saying so, when either is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import main
from ledger.certificate import endorse
from ledger.checkpoint import body_of, parse_note, signed_note, vkey
from ledger.ledger import Ledger
from ledger.verify import verify_note
from tests import test_checkpoint as corpus
from tests.consortium import GENESIS_TIME_MS, TestConsortium, key

GO_SOURCE = Path(__file__).parent / "interop" / "signednote" / "main.go"
XMOD_GOPATH = Path(os.environ.get("NANUM_GO_XMOD", "/usr/share/gocode"))
BUILD_TIMEOUT_S = 300
RUN_TIMEOUT_S = 60
HOW_TO_INSTALL = ("on Debian: apt-get install golang-go golang-golang-x-mod-dev; or set NANUM_GO_XMOD to a "
                  "GOPATH holding src/golang.org/x/mod")


@pytest.fixture(scope="module")
def go_tool(tmp_path_factory) -> Path:
    go = shutil.which("go")
    if go is None:
        pytest.skip(f"the Go interop check needs the `go` command ({HOW_TO_INSTALL})")
    if not (XMOD_GOPATH / "src/golang.org/x/mod/sumdb/note/note.go").is_file():
        pytest.skip(f"the Go interop check needs golang.org/x/mod's source in {XMOD_GOPATH} ({HOW_TO_INSTALL})")
    folder = tmp_path_factory.mktemp("go")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(XMOD_GOPATH), "GOCACHE": str(folder / "cache"),
           "GOFLAGS": "", "CGO_ENABLED": "0"}
    binary = folder / "signednote"
    subprocess.run([go, "build", "-o", str(binary), str(GO_SOURCE)], env=env, cwd=folder, check=True,
                   timeout=BUILD_TIMEOUT_S)
    return binary


def go_open(tool: Path, vkeys: list[str], notes: dict[str, str], folder: Path) -> dict[str, dict]:
    """Go's note.Open verdict on each note (written as UTF-8; a lone surrogate becomes a bad byte)."""
    vkey_file = folder / "vkeys.txt"
    vkey_file.write_text("\n".join(vkeys) + "\n")
    files = []
    for name, text in notes.items():
        path = folder / f"{name}.note"
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
        files.append(str(path))
    run = subprocess.run([str(tool), "open", str(vkey_file), *files], capture_output=True, text=True,
                         check=True, timeout=RUN_TIMEOUT_S)
    verdicts = [json.loads(line) for line in run.stdout.splitlines()]
    return {Path(v["file"]).stem: v for v in verdicts}


@pytest.fixture(scope="module")
def certified(tmp_path_factory) -> dict:
    """A real certified block of a test consortium, its checkpoint note, and its genesis file."""
    folder = tmp_path_factory.mktemp("interop")
    c = TestConsortium()
    ledger = Ledger.create(folder / "store", c.genesis_raw)
    executed = ledger.build([c.register(c.member("interop-member"))], GENESIS_TIME_MS + 60_000)
    ledger.close()
    header = executed.block.header
    text = signed_note(body_of(header), [(n.public_key, endorse(n, header)) for n in c.nodes[:2]])
    genesis = folder / "genesis.bin"
    genesis.write_bytes(c.genesis_raw)
    return {"consortium": c, "header": header, "note": text, "genesis": genesis, "folder": folder}


def test_go_verifies_a_nanum_checkpoint_with_the_vkeys_audit_keys_prints(go_tool, certified):
    result = CliRunner().invoke(main, ["audit", "keys", "--genesis", str(certified["genesis"])])
    assert result.exit_code == 0, result.output
    vkeys = [line.split()[0] for line in result.output.splitlines()[1:]]
    c = certified["consortium"]
    assert len(vkeys) == len(c.nodes)
    verdict = go_open(go_tool, vkeys, {"checkpoint": certified["note"]}, certified["folder"])["checkpoint"]
    print("Go note.Open on a nanum checkpoint:", verdict)
    expected = sorted(line.name for line in parse_note(certified["note"])[1])
    assert verdict["ok"] and sorted(verdict["signers"]) == expected and verdict["unverified"] == 0, verdict
    # and with one vkey only (a verifier that trusts one node), Go still opens it
    one = go_open(go_tool, vkeys[:1], {"one": certified["note"]}, certified["folder"])["one"]
    assert one["ok"] and one["unverified"] == 1, one


def test_nanum_accepts_notes_go_signed_with_an_extra_unknown_key(go_tool, certified):
    c, folder = certified["consortium"], certified["folder"]
    vkey_file = folder / "cosign-vkeys.txt"
    vkey_file.write_text("".join(vkey(n.public_key) + "\n" for n in c.nodes))
    source = folder / "cosign-source.note"
    source.write_text(certified["note"])
    subprocess.run([str(go_tool), "cosign", str(vkey_file), str(source), str(folder / "cosigned")],
                   check=True, timeout=RUN_TIMEOUT_S)
    for kind in ("witness", "rotated"):
        text = (folder / f"cosigned.{kind}").read_text()
        print(f"Go note.Sign, extra {kind} signature:\n{text}")
        _, lines = parse_note(text)
        assert len(lines) == 3
        assert verify_note(text, c.chain_id, [n.public_key for n in c.nodes]) == body_of(certified["header"])
    rotated = parse_note((folder / "cosigned.rotated").read_text())[1]
    assert rotated[2].name == rotated[0].name and rotated[2].key_id != rotated[0].key_id


def accepted_corpus() -> dict[str, str]:
    rotated = key("interop-rotated")
    name = corpus.key_name(corpus.NODES[1].public_key)
    return {
        "plain": corpus.note(),
        "rotated": corpus.with_lines(corpus.line(name, corpus.signed_note_form.ed25519_key_id(name, rotated.public_key)
                                                 + rotated.sign(corpus.BODY.text()))),
        "short-unknown": corpus.with_lines(corpus.line("pq.example/log", b"\x01\x02\x03\x04" + bytes(1))),
        "long-unknown": corpus.with_lines(corpus.line("pq.example/log", b"\x01\x02\x03\x04" + bytes(2420))),
        "sixteen-unknown": corpus.with_lines(*corpus.filler(16)),
        "name-of-other-key-id": corpus.with_lines(corpus.line("someone-else",
                                                              corpus.key_id(corpus.NODES[0].public_key) + bytes(64))),
    }


def test_go_and_nanum_agree_on_which_notes_are_accepted(go_tool, tmp_path):
    vkeys = [vkey(k) for k in corpus.NODE_KEYS]
    accepted = accepted_corpus()
    malformed = {f"malformed-{i}": text for i, (text, _reason) in enumerate(corpus.MALFORMED)}
    verdicts = go_open(go_tool, vkeys, {**accepted, **malformed}, tmp_path)
    for name, text in accepted.items():
        assert verify_note(text, corpus.CHAIN, corpus.NODE_KEYS) == corpus.BODY
        assert verdicts[name]["ok"], (name, verdicts[name])
    refused_by_go = {name: verdicts[name]["error"] for name in malformed if not verdicts[name]["ok"]}
    print("Go note.Open refused:", refused_by_go)
    assert set(refused_by_go) == set(malformed), {n: verdicts[n] for n in malformed if n not in refused_by_go}
