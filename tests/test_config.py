"""Tests of node/config.py: reading, validating, overriding and writing node and client settings."""

import tomllib
from dataclasses import replace
from pathlib import Path

import pytest

from node.config import (
    MAX_LISTED_CERTIFICATES,
    ConfigError,
    NodeConfig,
    Peer,
    format_address,
    load_client_config,
    load_config,
    parse_address,
    toml_document,
    toml_string,
    write_client_config,
    write_config,
)

NODE_ID = "aa" * 20
PEER_A = "bb" * 20
PEER_B = "cc" * 20
FILES = ("genesis.block", "node.key", "tls.crt", "tls.key", "ca.crt")

BASE_TOML = f"""
name = "node-0"
node_id = "{NODE_ID}"
listen = "127.0.0.1:7400"
data_dir = "data"
genesis_file = "genesis.block"
node_key_file = "node.key"
tls_cert_file = "tls.crt"
tls_key_file = "tls.key"
ca_cert_file = "ca.crt"

[[peers]]
node_id = "{PEER_A}"
name = "node-1"
address = "127.0.0.1:7401"

[[peers]]
node_id = "{PEER_B}"
name = "node-2"
address = "[::1]:7402"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in FILES:
        (tmp_path / name).write_bytes(b"x")
    return tmp_path


def _write(folder: Path, text: str, name: str = "node.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _with(key: str, literal: str) -> str:
    """BASE_TOML with ``key = literal`` replacing (or added before) the top-level setting."""
    lines = BASE_TOML.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(f"{key} ="):
            lines[i] = f"{key} = {literal}"
            return "\n".join(lines)
    return f"{key} = {literal}\n" + BASE_TOML


# --- loading --------------------------------------------------------------------------------


def test_a_file_loads_with_defaults_and_paths_from_its_folder(folder):
    config = load_config(_write(folder, BASE_TOML), env={})
    assert config.name == "node-0" and config.node_id == NODE_ID
    assert config.data_dir == folder / "data"
    assert config.genesis_file == folder / "genesis.block"
    assert config.peers == (Peer(PEER_A, "node-1", "127.0.0.1:7401"),
                            Peer(PEER_B, "node-2", "[::1]:7402"))
    assert (config.tick_ms, config.election_ticks, config.heartbeat_ticks) == (50, 10, 1)
    assert (config.max_batch_txs, config.max_batch_wait_ms) == (512, 0)
    assert config.max_pending_submissions == 10_000
    assert config.max_message_bytes == 8 * 1024 * 1024
    assert (config.submit_timeout_ms, config.map_size_bytes) == (10_000, 1 << 30)
    assert config.party_id == bytes.fromhex(NODE_ID)


def test_ids_are_normalised_to_lowercase(folder):
    config = load_config(_write(folder, _with("node_id", f'"{"AB" * 20}"')), env={})
    assert config.node_id == "ab" * 20


def test_round_trip(folder, tmp_path_factory):
    first = load_config(_write(folder, _with("tick_ms", "20")), env={})
    other = tmp_path_factory.mktemp("elsewhere") / "copy.toml"
    write_config(other, first)
    assert load_config(other, env={}) == first


def test_relative_paths_are_written_relative_to_the_file(folder):
    config = NodeConfig("node-0", NODE_ID, "127.0.0.1:7400", Path("data"), Path("genesis.block"),
                        Path("node.key"), Path("tls.crt"), Path("tls.key"), Path("ca.crt"))
    write_config(folder / "node.toml", config)
    assert 'genesis_file = "genesis.block"' in (folder / "node.toml").read_text()
    loaded = load_config(folder / "node.toml", env={})
    assert loaded.genesis_file == folder / "genesis.block" and loaded.peers == ()


@pytest.mark.parametrize("key, literal, message", [
    ("listen", '"127.0.0.1:99999"', "port"),
    ("listen", '"127.0.0.1:0"', "port"),
    ("listen", '"127.0.0.1"', "host:port"),
    ("listen", '"bad host:7400"', "host:port"),
    ("listen", '"::1:7400"', "host:port"),
    ("listen", '"[nope]:7400"', "IPv6"),
    ("listen", "7400", "must be a string"),
    ("node_id", f'"{"zz" * 20}"', "40 hex digits"),
    ("node_id", '"abcd"', "40 hex digits"),
    ("genesis_file", '"missing.block"', "file not found"),
    ("ca_cert_file", '"."', "not a regular file"),
    ("data_dir", '"node.key"', "not a directory"),
    ("data_dir", '""', "path"),
    ("tick_ms", "-5", "from 1 to 60000"),
    ("tick_ms", "0", "from 1 to 60000"),
    ("tick_ms", '"50"', "must be an integer"),
    ("tick_ms", "true", "must be an integer"),
    ("tick_ms", "5.0", "must be an integer"),
    ("max_batch_txs", "4096", "from 1 to 2048"),
    ("max_message_bytes", "1024", "from"),
    ("map_size_bytes", "-1", "from"),
    ("election_ticks", "1", "from 2"),
    ("name", "7", "must be a string"),
    ("name", '""', "1 to 64 bytes"),
    ("name", '"a\\u0007b"', "control"),
    ("name", '"a\\u009bb"', "U\\+009B"),
    ("name", '"a\\u202eb"', "U\\+202E"),
    ("name", '"a\\u2028b"', "U\\+2028"),
    ("tick_msec", "50", "did you mean 'tick_ms'"),
    ("limits", "{ tick_ms = 5 }", "unknown setting"),
])
def test_each_invalid_value_names_its_key(folder, key, literal, message):
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(_write(folder, _with(key, literal)), env={})
    assert caught.value.key == key
    assert str(folder / "node.toml") in str(caught.value)


def test_the_election_timeout_must_exceed_the_heartbeat(folder):
    text = "election_ticks = 3\nheartbeat_ticks = 3\n" + BASE_TOML
    with pytest.raises(ConfigError, match="greater than heartbeat_ticks") as caught:
        load_config(_write(folder, text), env={})
    assert caught.value.key == "election_ticks"


@pytest.mark.parametrize("old, new, key", [
    ('address = "127.0.0.1:7401"', 'address = "127.0.0.1:"', "peers[0].address"),
    (f'node_id = "{PEER_A}"', f'node_id = "{NODE_ID}"', "peers[0].node_id"),
    (f'node_id = "{PEER_B}"', f'node_id = "{PEER_A}"', "peers[1].node_id"),
    ('address = "[::1]:7402"', 'address = "127.0.0.1:7401"', "peers[1].address"),
    ('name = "node-1"', 'name = "node-1"\nweight = 2', "peers[0].weight"),
    ('name = "node-2"\n', "", "peers[1].name"),
])
def test_bad_peers_are_named(folder, old, new, key):
    assert old in BASE_TOML
    with pytest.raises(ConfigError) as caught:
        load_config(_write(folder, BASE_TOML.replace(old, new, 1)), env={})
    assert caught.value.key == key


def test_peers_must_be_an_array_of_tables(folder):
    text = BASE_TOML.split("[[peers]]")[0] + "peers = 3\n"
    with pytest.raises(ConfigError) as caught:
        load_config(_write(folder, text), env={})
    assert caught.value.key == "peers"


def test_a_missing_setting_is_named(folder):
    with pytest.raises(ConfigError, match="required") as caught:
        load_config(_write(folder, BASE_TOML.replace('listen = "127.0.0.1:7400"\n', "")), env={})
    assert caught.value.key == "listen"


def test_bad_toml_and_missing_files_are_reported(folder):
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_config(_write(folder, "name = "), env={})
    assert caught.value.key is None
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(folder / "absent.toml", env={})


# --- environment and overrides --------------------------------------------------------------


def test_environment_overrides_the_file(folder, monkeypatch, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    env = {"NANUM_LISTEN": "0.0.0.0:7500", "NANUM_TICK_MS": "20", "NANUM_DATA_DIR": "store",
           "NANUM_SOMETHING_ELSE": "ignored"}
    config = load_config(_write(folder, BASE_TOML), env=env)
    assert config.listen == "0.0.0.0:7500" and config.tick_ms == 20
    assert config.data_dir == cwd / "store"          # relative to the current directory


@pytest.mark.parametrize("variable, value, key", [
    ("NANUM_TICK_MS", "fast", "tick_ms"),
    ("NANUM_TICK_MS", "-1", "tick_ms"),
    ("NANUM_LISTEN", "nowhere", "listen"),
    ("NANUM_NODE_ID", "xyz", "node_id"),
    ("NANUM_GENESIS_FILE", "/no/such/file", "genesis_file"),
])
def test_bad_environment_values_name_the_key_and_variable(folder, variable, value, key):
    with pytest.raises(ConfigError, match=variable) as caught:
        load_config(_write(folder, BASE_TOML), env={variable: value})
    assert caught.value.key == key


def test_precedence_is_overrides_then_environment_then_file_then_defaults(folder):
    path = _write(folder, _with("tick_ms", "30"))
    env = {"NANUM_TICK_MS": "40", "NANUM_ELECTION_TICKS": "12"}
    assert load_config(path, env={}).tick_ms == 30
    assert load_config(path, env={}).election_ticks == 10
    assert load_config(path, env=env).tick_ms == 40
    config = load_config(path, env=env, overrides={"tick_ms": 60, "election_ticks": None,
                                                   "submit_timeout_ms": "500"})
    assert (config.tick_ms, config.election_ticks, config.submit_timeout_ms) == (60, 12, 500)


def test_overrides_are_validated_and_unknown_ones_refused(folder):
    path = _write(folder, BASE_TOML)
    with pytest.raises(ConfigError, match="overrides") as caught:
        load_config(path, env={}, overrides={"tick_ms": 0})
    assert caught.value.key == "tick_ms"
    with pytest.raises(ConfigError, match="unknown") as caught:
        load_config(path, env={}, overrides={"peers": []})
    assert caught.value.key == "peers"
    config = load_config(path, env={}, overrides={"data_dir": folder / "elsewhere"})
    assert config.data_dir == folder / "elsewhere"


def test_the_process_environment_is_the_default(folder, monkeypatch):
    monkeypatch.setenv("NANUM_MAX_BATCH_TXS", "64")
    assert load_config(_write(folder, BASE_TOML)).max_batch_txs == 64


# --- writing --------------------------------------------------------------------------------


def test_write_refuses_to_overwrite_unless_asked(folder):
    config = load_config(_write(folder, BASE_TOML), env={})
    target = folder / "out.toml"
    write_config(target, config)
    with pytest.raises(ConfigError, match="overwrite"):
        write_config(target, replace(config, tick_ms=25))
    assert load_config(target, env={}).tick_ms == 50
    write_config(target, replace(config, tick_ms=25), overwrite=True)
    assert load_config(target, env={}).tick_ms == 25
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("change, key", [
    ({"tick_ms": 0}, "tick_ms"), ({"listen": "nowhere"}, "listen"),
    ({"node_id": "12"}, "node_id"), ({"tick_ms": "50"}, "tick_ms"),
    ({"peers": (Peer(NODE_ID, "me", "127.0.0.1:1"),)}, "peers[0].node_id"),
])
def test_write_refuses_an_invalid_config(folder, change, key):
    config = replace(load_config(_write(folder, BASE_TOML), env={}), **change)
    with pytest.raises(ConfigError) as caught:
        write_config(folder / "out.toml", config)
    assert caught.value.key == key
    assert not (folder / "out.toml").exists()


NASTY = ['quote " here', "back\\slash", "new\nline", "tab\tand\rcr", "nul\x00 bell\x07 del\x7f",
         "광주 나눔은행", "\u2028 separator", "'single'", "trailing\\"]


@pytest.mark.parametrize("text", NASTY)
def test_toml_strings_round_trip_through_tomllib(text):
    document = toml_document({"value": text, "list": [text, 1]}, {"t": [{"k": text}]})
    parsed = tomllib.loads(document)
    assert parsed == {"value": text, "list": [text, 1], "t": [{"k": text}]}
    assert toml_string(text).startswith('"')


def test_odd_names_round_trip_through_a_config_file(folder):
    config = load_config(_write(folder, BASE_TOML), env={})
    odd = replace(config, name='광주 "node" \\ one',
                  peers=(Peer(PEER_A, "it's = [peers]", "localhost:7401"),))
    write_config(folder / "odd.toml", odd)
    assert load_config(folder / "odd.toml", env={}) == odd


# --- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize("text, parsed", [
    ("127.0.0.1:7400", ("127.0.0.1", 7400)), ("localhost:1", ("localhost", 1)),
    ("node-1.example.org:65535", ("node-1.example.org", 65535)), ("[::1]:7400", ("::1", 7400)),
])
def test_addresses_parse(text, parsed):
    assert parse_address(text) == parsed
    assert format_address(*parsed) == text


@pytest.mark.parametrize("text", ["", ":7400", "host:", "host:65536", "host:-1", "host:７",
                                  "[::1]7400", "a..b:1", "-a:1", "h" * 300 + ":1"])
def test_bad_addresses_are_refused(text):
    with pytest.raises(ValueError):
        parse_address(text)


# --- client configs -------------------------------------------------------------------------

CLIENT_TOML = """
ca_cert_file = "ca.crt"
tls_cert_file = "tls.crt"
tls_key_file = "tls.key"
nodes = ["127.0.0.1:7400", "127.0.0.1:7401"]
genesis_file = "genesis.block"
"""


def test_client_config_loads_and_round_trips(folder):
    config = load_client_config(_write(folder, CLIENT_TOML, "client.toml"), env={})
    assert config.nodes == ("127.0.0.1:7400", "127.0.0.1:7401")
    assert config.ca_cert_file == folder / "ca.crt" and config.key_file is None
    assert config.timeout_ms == 10_000
    write_client_config(folder / "copy.toml", config)
    assert load_client_config(folder / "copy.toml", env={}) == config
    signed = replace(config, key_file=folder / "node.key")
    write_client_config(folder / "signed.toml", signed)
    assert load_client_config(folder / "signed.toml", env={}) == signed


def test_client_environment_and_overrides(folder):
    path = _write(folder, CLIENT_TOML, "client.toml")
    env = {"NANUM_CLIENT_NODES": "10.0.0.1:7400, 10.0.0.2:7400", "NANUM_NODES": "ignored:1"}
    assert load_client_config(path, env=env).nodes == ("10.0.0.1:7400", "10.0.0.2:7400")
    config = load_client_config(path, env=env, overrides={"nodes": ["h:1"], "timeout_ms": 5})
    assert config.nodes == ("h:1",) and config.timeout_ms == 5


@pytest.mark.parametrize("old, new, key", [
    ('nodes = ["127.0.0.1:7400", "127.0.0.1:7401"]', "nodes = []", "nodes"),
    ('nodes = ["127.0.0.1:7400", "127.0.0.1:7401"]', 'nodes = ["a:1", "a:1"]', "nodes"),
    ('nodes = ["127.0.0.1:7400", "127.0.0.1:7401"]', 'nodes = ["a:1", "b"]', "nodes"),
    ('nodes = ["127.0.0.1:7400", "127.0.0.1:7401"]', 'nodes = "a:1"', "nodes"),
    ('ca_cert_file = "ca.crt"', 'ca_cert_file = "nope.crt"', "ca_cert_file"),
    ('tls_key_file = "tls.key"', 'tls_key_file = "tls.key"\nkey_file = "missing.pem"', "key_file"),
    ('tls_key_file = "tls.key"', 'tls_key_file = "tls.key"\nlisten = "a:1"', "listen"),
    ('genesis_file = "genesis.block"', "", "genesis_file"),
])
def test_bad_client_settings_are_named(folder, old, new, key):
    with pytest.raises(ConfigError) as caught:
        load_client_config(_write(folder, CLIENT_TOML.replace(old, new), "client.toml"), env={})
    assert caught.value.key == key


# --- the certificates of callers that are no ledger party (node/call_policy.py) -------------


def test_auditor_and_member_certificate_ids_load_from_file_and_environment(folder):
    text = _with("auditor_ids", f'["{"AB" * 20}"]')
    config = load_config(_write(folder, text), env={"NANUM_MEMBER_CERT_IDS": f"{PEER_A}, {PEER_B}"})
    assert config.auditor_ids == ("ab" * 20,)
    assert config.member_cert_ids == (PEER_A, PEER_B)
    assert load_config(_write(folder, BASE_TOML), env={}).auditor_ids == ()      # none accepted


def test_listed_certificate_ids_round_trip(folder, tmp_path_factory):
    config = load_config(_write(folder, _with("member_cert_ids", f'["{PEER_A}"]')), env={})
    copy = tmp_path_factory.mktemp("copy") / "node.toml"
    write_config(copy, config)
    assert load_config(copy, env={}, overrides={"genesis_file": str(folder / "genesis.block"),
                                                 "node_key_file": str(folder / "node.key"),
                                                 "tls_cert_file": str(folder / "tls.crt"),
                                                 "tls_key_file": str(folder / "tls.key"),
                                                 "ca_cert_file": str(folder / "ca.crt")}).member_cert_ids == (PEER_A,)


@pytest.mark.parametrize("literal, message", [
    (f'"{PEER_A}"', "must be a list"),
    ('["abcd"]', "40 hex digits"),
    (f'["{PEER_A}", "{PEER_A.upper()}"]', "repeated"),
    ("[" + ", ".join(f'"{i:040x}"' for i in range(MAX_LISTED_CERTIFICATES + 1)) + "]", "at most 64"),
    ("[7]", "must be a string"),
])
def test_bad_listed_certificate_ids_are_named(folder, literal, message):
    for key in ("auditor_ids", "member_cert_ids"):
        with pytest.raises(ConfigError, match=message) as caught:
            load_config(_write(folder, _with(key, literal)), env={})
        assert caught.value.key == key


def test_exactly_the_limit_of_listed_ids_loads(folder):
    literal = "[" + ", ".join(f'"{i:040x}"' for i in range(MAX_LISTED_CERTIFICATES)) + "]"
    assert len(load_config(_write(folder, _with("auditor_ids", literal)), env={}).auditor_ids) == MAX_LISTED_CERTIFICATES
