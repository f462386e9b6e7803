"""Settings of a node (``node.toml``) and of a CLI client (``client.toml``).

Owns: the ``NodeConfig`` and ``ClientConfig`` values, reading them from TOML with every value
validated (errors name the exact key, where it came from, and what is wrong), the precedence
rule, and writing them back as TOML.

Precedence, highest first: the ``overrides`` mapping (the CLI's flags; ``None`` values mean
"not given") > environment variables > the file > defaults. Every scalar setting ``key`` has
an environment variable: ``NANUM_<KEY>`` for a node, ``NANUM_CLIENT_<KEY>`` for a client
(``NANUM_TICK_MS``, ``NANUM_CLIENT_NODES`` as a comma-separated list). Unrelated ``NANUM_*``
variables are ignored; an unknown key in the file or in ``overrides`` is an error.

Relative paths in a file are relative to that file's folder; relative paths from the
environment or overrides are relative to the current directory, as a shell user expects.
``write_config`` writes a path as it is held: absolute, or relative to the written file's
folder (that is how ``nanum init`` writes a relocatable consortium folder).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from ledger import files
from ledger.address import format_address, parse_address   # the one host:port grammar
from ledger.encoding import text_problem
from ledger.limits import MAX_BLOCK_BYTES, MAX_GENESIS_PARTIES, MAX_NAME_BYTES
from ledger.limits import MAX_TXS_PER_BLOCK, PARTY_ID_BYTES

# --- named limits ---------------------------------------------------------------------------

NODE_ENV_PREFIX = "NANUM_"
CLIENT_ENV_PREFIX = "NANUM_CLIENT_"
MAX_CONFIG_BYTES = 1024 * 1024          # a config file
MAX_PATH_CHARS = 4096
MAX_PEERS = MAX_GENESIS_PARTIES - 1     # every other node of the largest node set
MAX_CLIENT_NODES = MAX_GENESIS_PARTIES
MAX_LISTED_CERTIFICATES = 64            # auditor or member certificate ids one node accepts
MIN_MESSAGE_BYTES = MAX_BLOCK_BYTES + 64 * 1024   # a message must carry the largest block
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MAX_BATCH_SIGNATURES = 1_000_000        # the largest admission budget in signature checks a setting takes
CONFIG_FILE_MODE = 0o644

_HEX_ID = re.compile(rf"[0-9a-fA-F]{{{PARTY_ID_BYTES * 2}}}")
_DECIMAL = re.compile(r"[+-]?[0-9]+")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_REQUIRED = object()


class ConfigError(Exception):
    """A setting that is missing, unknown or invalid. ``key`` names it (``None`` for the file
    as a whole), ``source`` says where it came from, ``problem`` what is wrong."""

    def __init__(self, key: str | None, problem: str, source: str | None = None) -> None:
        self.key, self.problem, self.source = key, problem, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{key}: {problem}" if key else f"{where}{problem}")


class _Invalid(Exception):
    """A value check failed; the caller turns it into a ConfigError naming the key."""


# --- the values -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Peer:
    node_id: str        # 40 lowercase hex digits: the peer's party id
    name: str
    address: str        # host:port

    @property
    def party_id(self) -> bytes:
        return bytes.fromhex(self.node_id)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str
    node_id: str                      # 40 lowercase hex digits: this node's party id
    listen: str                       # host:port
    data_dir: Path
    genesis_file: Path
    node_key_file: Path               # Ed25519 ledger key (PKCS#8 PEM)
    tls_cert_file: Path
    tls_key_file: Path
    ca_cert_file: Path
    peers: tuple[Peer, ...] = ()
    tick_ms: int = 50
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_batch_txs: int = 512
    max_batch_wait_ms: int = 0      # 0: on the next pass of the event loop
    max_pending_submissions: int = 10_000
    max_message_bytes: int = 8 * 1024 * 1024
    submit_timeout_ms: int = 10_000
    # Admission budgets (node/admission.py; RESOURCE_EXHAUSTED beyond): signature checks per
    # call, and per caller's TLS identity a token bucket (a rate and the most saved up) of units:
    # one per signature check and one per transaction submitted.
    max_batch_signatures: int = 2_048
    max_signatures_per_second_per_caller: int = 4_000
    max_signature_burst_per_caller: int = 8_192
    map_size_bytes: int = 1 << 30
    # Added to this node's wall clock. For fault tests only (a node with a wrong clock): the
    # consortium bounds block time whatever one node's clock says (ledger/limits.py).
    clock_offset_ms: int = 0
    # The certificates of callers that are no ledger party (node/call_policy.py): the party
    # ids (SAN URI) of the auditor certificates and of the shared member certificates this node
    # accepts. Removing an id (and restarting) revokes that certificate.
    auditor_ids: tuple[str, ...] = ()
    member_cert_ids: tuple[str, ...] = ()

    @property
    def party_id(self) -> bytes:
        return bytes.fromhex(self.node_id)


@dataclass(frozen=True, slots=True)
class ClientConfig:
    ca_cert_file: Path
    tls_cert_file: Path
    tls_key_file: Path
    nodes: tuple[str, ...]            # host:port of every node, tried in order
    genesis_file: Path
    key_file: Path | None = None      # the user's Ed25519 signing key, if they sign
    timeout_ms: int = 10_000
    max_message_bytes: int = 8 * 1024 * 1024


# --- settings: kind, default, range ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Setting:
    key: str
    kind: str                 # "name" | "id" | "ids" | "address" | "addresses" | "dir" | "file" | "int"
    default: Any = _REQUIRED
    low: int = 0
    high: int = 0


def _int(key: str, default: int, low: int, high: int) -> _Setting:
    return _Setting(key, "int", default, low, high)


MAX_CLOCK_OFFSET_MS = 10 * 366 * 24 * 3600 * 1000     # ten years either way

NODE_SETTINGS: tuple[_Setting, ...] = (
    _Setting("name", "name"),
    _Setting("node_id", "id"),
    _Setting("listen", "address"),
    _Setting("data_dir", "dir"),
    _Setting("genesis_file", "file"),
    _Setting("node_key_file", "file"),
    _Setting("tls_cert_file", "file"),
    _Setting("tls_key_file", "file"),
    _Setting("ca_cert_file", "file"),
    _int("tick_ms", 50, 1, 60_000),
    _int("election_ticks", 10, 2, 10_000),
    _int("heartbeat_ticks", 1, 1, 1_000),
    _int("max_batch_txs", 512, 1, MAX_TXS_PER_BLOCK),
    _int("max_batch_wait_ms", 0, 0, 10_000),
    _int("max_pending_submissions", 10_000, 1, 1_000_000),
    _int("max_message_bytes", 8 * 1024 * 1024, MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES),
    _int("submit_timeout_ms", 10_000, 1, 3_600_000),
    _int("max_batch_signatures", 2_048, 1, MAX_BATCH_SIGNATURES),
    _int("max_signatures_per_second_per_caller", 4_000, 1, MAX_BATCH_SIGNATURES),
    _int("max_signature_burst_per_caller", 8_192, 1, MAX_BATCH_SIGNATURES),
    _int("map_size_bytes", 1 << 30, 1 << 20, 1 << 40),
    _int("clock_offset_ms", 0, -MAX_CLOCK_OFFSET_MS, MAX_CLOCK_OFFSET_MS),
    _Setting("auditor_ids", "ids", ()),
    _Setting("member_cert_ids", "ids", ()),
)
NODE_TABLES = ("peers",)
PEER_KEYS = ("node_id", "name", "address")

CLIENT_SETTINGS: tuple[_Setting, ...] = (
    _Setting("ca_cert_file", "file"),
    _Setting("tls_cert_file", "file"),
    _Setting("tls_key_file", "file"),
    _Setting("nodes", "addresses"),
    _Setting("genesis_file", "file"),
    _Setting("key_file", "file", None),
    _int("timeout_ms", 10_000, 1, 3_600_000),
    _int("max_message_bytes", 8 * 1024 * 1024, MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES),
)


# --- loading --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Raw:
    value: Any
    source: str
    base: Path | None         # folder for relative paths; None = the current directory
    is_text: bool             # from the environment or a string override: parse it


def load_config(path: Path, env: Mapping[str, str] = os.environ,
                overrides: Mapping[str, Any] | None = None) -> NodeConfig:
    """Reads and validates a node's TOML file, then the environment and ``overrides``."""
    path = Path(path).absolute()
    document = _read_toml(path)
    values = _settings(path, document, NODE_SETTINGS, NODE_TABLES, env, NODE_ENV_PREFIX,
                       overrides, check_files=True)
    peers = _peers(document.get("peers", []), str(path))
    config = NodeConfig(**values, peers=peers)
    _check_node(config, str(path))
    return config


def load_client_config(path: Path, env: Mapping[str, str] = os.environ,
                       overrides: Mapping[str, Any] | None = None) -> ClientConfig:
    """Reads and validates a client's TOML file, then the environment and ``overrides``."""
    path = Path(path).absolute()
    document = _read_toml(path)
    values = _settings(path, document, CLIENT_SETTINGS, (), env, CLIENT_ENV_PREFIX,
                       overrides, check_files=True)
    return ClientConfig(**values)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(None, f"cannot read config file: {exc.strerror}", str(path)) from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(None, f"config file is larger than {MAX_CONFIG_BYTES} bytes", str(path))
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(None, "config file is not UTF-8 text", str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(None, f"not valid TOML: {exc}", str(path)) from None


def _settings(path: Path, document: Mapping[str, Any], settings: tuple[_Setting, ...],
              tables: tuple[str, ...], env: Mapping[str, str], prefix: str,
              overrides: Mapping[str, Any] | None, check_files: bool) -> dict[str, Any]:
    """Each setting's value by precedence, parsed and checked."""
    known = {s.key: s for s in settings}
    raws: dict[str, _Raw] = {}
    for key, value in document.items():
        if key not in tables:
            _known_key(key, known, tables, str(path))
            raws[key] = _Raw(value, str(path), path.parent, False)
    for key in known:
        variable = prefix + key.upper()
        if variable in env:
            raws[key] = _Raw(env[variable], f"environment variable {variable}", None, True)
    for key, value in (overrides or {}).items():
        if value is not None:
            _known_key(key, known, (), "overrides")
            raws[key] = _Raw(value, "overrides", None, isinstance(value, str))
    values = {}
    for setting in settings:
        raw = raws.get(setting.key)
        if raw is None:
            if setting.default is _REQUIRED:
                raise ConfigError(setting.key, "missing; this setting is required", str(path))
            values[setting.key] = setting.default
        else:
            values[setting.key] = _value(setting.key, setting, raw, check_files)
    return values


def _known_key(key: str, known: Mapping[str, _Setting], tables: tuple[str, ...],
               source: str) -> None:
    if key in known:
        return
    close = difflib.get_close_matches(key, list(known) + list(tables), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ConfigError(key, f"unknown setting{hint}", source)


def _value(label: str, setting: _Setting, raw: _Raw, check_files: bool) -> Any:
    """One checked value; ConfigError naming ``label`` and the source if it is wrong."""
    value = str(raw.value) if isinstance(raw.value, Path) else raw.value
    try:
        if raw.is_text:
            value = _from_text(setting, value)
        return _CHECKS[setting.kind](setting, value, raw.base, check_files)
    except _Invalid as exc:
        raise ConfigError(label, str(exc), raw.source) from None


def _from_text(setting: _Setting, text: str) -> Any:
    """An environment variable's (or string override's) text as the setting's TOML type."""
    if setting.kind == "int":
        if not _DECIMAL.fullmatch(text.strip()):
            raise _Invalid(f"must be an integer, got {text!r}")
        return int(text)
    if setting.kind in ("addresses", "ids"):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text


def _peers(value: Any, source: str) -> tuple[Peer, ...]:
    if not isinstance(value, list):
        raise ConfigError("peers", "must be an array of tables ([[peers]])", source)
    if len(value) > MAX_PEERS:
        raise ConfigError("peers", f"at most {MAX_PEERS} peers", source)
    return tuple(_peer(item, f"peers[{i}]", source) for i, item in enumerate(value))


def _peer(item: Any, label: str, source: str) -> Peer:
    if not isinstance(item, dict):
        raise ConfigError(label, "must be a table with node_id, name and address", source)
    for key in item:
        if key not in PEER_KEYS:
            raise ConfigError(f"{label}.{key}", "unknown setting", source)
    values = {}
    for key in PEER_KEYS:
        if key not in item:
            raise ConfigError(f"{label}.{key}", "missing; a peer needs node_id, name, address",
                              source)
        setting = _Setting(key, {"node_id": "id", "name": "name", "address": "address"}[key])
        values[key] = _value(f"{label}.{key}", setting, _Raw(item[key], source, None, False), False)
    return Peer(**values)


def _check_node(config: NodeConfig, source: str) -> None:
    """Checks between settings: the election timeout, the admission budgets and the peer set."""
    if config.election_ticks <= config.heartbeat_ticks:
        raise ConfigError("election_ticks", f"must be greater than heartbeat_ticks "
                          f"({config.heartbeat_ticks}), got {config.election_ticks}", source)
    if config.max_signature_burst_per_caller < config.max_batch_signatures:
        raise ConfigError("max_signature_burst_per_caller", f"must be at least max_batch_signatures "
                          f"({config.max_batch_signatures}), or a full call could never pass; got "
                          f"{config.max_signature_burst_per_caller}", source)
    ids, addresses = {config.node_id}, set()
    for i, peer in enumerate(config.peers):
        if peer.node_id in ids:
            problem = "is this node's own id" if peer.node_id == config.node_id else "repeated"
            raise ConfigError(f"peers[{i}].node_id", problem, source)
        if peer.address in addresses:
            raise ConfigError(f"peers[{i}].address", "repeated", source)
        ids.add(peer.node_id)
        addresses.add(peer.address)


# --- value checks: each returns the value in its final form or raises _Invalid --------------


def _check_name(setting: _Setting, value: Any, base: Path | None, check_files: bool) -> str:
    text = _text(value)
    if not text or len(text.encode("utf-8")) > MAX_NAME_BYTES:
        raise _Invalid(f"must be 1 to {MAX_NAME_BYTES} bytes of UTF-8 text")
    problem = text_problem(text)      # a node's name goes into genesis and governance text fields
    if problem is not None:
        raise _Invalid(problem)
    return text


def _check_id(setting: _Setting, value: Any, base: Path | None, check_files: bool) -> str:
    text = _text(value)
    if not _HEX_ID.fullmatch(text):
        raise _Invalid(f"must be {PARTY_ID_BYTES * 2} hex digits (a party id), got {text!r}")
    return text.lower()


def _check_address(setting: _Setting, value: Any, base: Path | None, check_files: bool) -> str:
    text = _text(value)
    try:
        parse_address(text)
    except ValueError as exc:
        raise _Invalid(str(exc)) from None
    return text


def _check_addresses(setting: _Setting, value: Any, base: Path | None,
                     check_files: bool) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_CLIENT_NODES:
        raise _Invalid(f"must be a list of 1 to {MAX_CLIENT_NODES} host:port addresses")
    addresses = tuple(_check_address(setting, item, base, check_files) for item in value)
    if len(set(addresses)) != len(addresses):
        raise _Invalid("an address is repeated")
    return addresses


def _check_ids(setting: _Setting, value: Any, base: Path | None, check_files: bool) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_LISTED_CERTIFICATES:
        raise _Invalid(f"must be a list of at most {MAX_LISTED_CERTIFICATES} party ids")
    ids = tuple(_check_id(setting, item, base, check_files) for item in value)
    if len(set(ids)) != len(ids):
        raise _Invalid("an id is repeated")
    return ids


def _check_dir(setting: _Setting, value: Any, base: Path | None, check_files: bool) -> Path:
    path = _path(value, base)
    if check_files and path.exists() and not path.is_dir():
        raise _Invalid(f"{path} exists and is not a directory")
    return path


def _check_file(setting: _Setting, value: Any, base: Path | None, check_files: bool) -> Path:
    path = _path(value, base)
    if check_files and not path.exists():
        raise _Invalid(f"file not found: {path}")
    if check_files and not path.is_file():
        raise _Invalid(f"{path} is not a regular file")
    return path


def _check_int(setting: _Setting, value: Any, base: Path | None, check_files: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f"must be an integer, got {type(value).__name__} {value!r}")
    if not setting.low <= value <= setting.high:
        raise _Invalid(f"must be from {setting.low} to {setting.high}, got {value}")
    return value


_CHECKS: dict[str, Callable[[_Setting, Any, Path | None, bool], Any]] = {
    "name": _check_name, "id": _check_id, "ids": _check_ids, "address": _check_address,
    "addresses": _check_addresses, "dir": _check_dir, "file": _check_file, "int": _check_int,
}


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, got {type(value).__name__} {value!r}")
    return value


def _path(value: Any, base: Path | None) -> Path:
    """An absolute, normalised path; a relative one is taken from ``base`` (None: the current
    directory). Symbolic links are kept, so a written config reads back to the same paths."""
    text = _text(value)
    if not text or len(text) > MAX_PATH_CHARS or "\0" in text:
        raise _Invalid(f"must be a path of 1 to {MAX_PATH_CHARS} characters")
    path = Path(text)
    if path.is_absolute():
        return Path(os.path.normpath(path))
    return Path(os.path.normpath((base or Path.cwd()) / path))


# --- writing --------------------------------------------------------------------------------


def write_config(path: Path, config: NodeConfig, overwrite: bool = False) -> None:
    """Writes ``config`` as TOML that ``load_config`` reads back to the same values (given the
    same files). Values are checked first (except that files exist); refuses to overwrite
    unless ``overwrite``."""
    path = Path(path)
    top = _check_for_writing(config, NODE_SETTINGS, path)
    peers = [{"node_id": p.node_id, "name": p.name, "address": p.address} for p in config.peers]
    for i, peer in enumerate(peers):
        _peer(peer, f"peers[{i}]", "the configuration to write")
    _check_node(config, "the configuration to write")
    text = toml_document(top, {"peers": peers}, "nanum node configuration")
    _write_text(path, text, overwrite)


def write_client_config(path: Path, config: ClientConfig, overwrite: bool = False) -> None:
    """Writes ``config`` as TOML that ``load_client_config`` reads back; as write_config."""
    path = Path(path)
    top = _check_for_writing(config, CLIENT_SETTINGS, path)
    text = toml_document(top, {}, "nanum client configuration")
    _write_text(path, text, overwrite)


def _check_for_writing(config: Any, settings: tuple[_Setting, ...],
                       path: Path) -> dict[str, Any]:
    """The config's settings as TOML values, each checked as load would check it."""
    top: dict[str, Any] = {}
    for setting in settings:
        value = getattr(config, setting.key)
        if value is None:
            continue                                  # an optional setting left out
        if isinstance(value, Path):
            value = value.as_posix() if not value.is_absolute() else str(value)
        elif isinstance(value, tuple):
            value = list(value)
        _value(setting.key, setting, _Raw(value, "the configuration to write", path.parent,
                                          False), check_files=False)
        top[setting.key] = value
    return top


def _write_text(path: Path, text: str, overwrite: bool) -> None:
    try:
        files.write_new_file(path, text.encode("utf-8"), CONFIG_FILE_MODE, overwrite)
    except FileExistsError:
        raise ConfigError(None, f"refusing to overwrite existing file {path}") from None


# --- a minimal TOML writer: scalars, arrays of scalars, arrays of tables --------------------


def toml_document(top: Mapping[str, Any], tables: Mapping[str, list[Mapping[str, Any]]],
                  title: str = "") -> str:
    """TOML text: ``top`` key/values first, then each array of tables as ``[[name]]``."""
    lines = [f"# {title}", ""] if title else []
    lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in top.items()]
    for name, items in tables.items():
        for item in items:
            lines += ["", f"[[{toml_key(name)}]]"]
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items()]
    return "\n".join(lines) + "\n"


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


__all__ = [
    "ClientConfig", "ConfigError", "NodeConfig", "Peer", "format_address", "load_client_config",
    "load_config", "parse_address", "toml_document", "write_client_config", "write_config",
]
