"""Tests of ledger/address.py: the one ``host:port`` grammar (docs/FORMAT.md §4.5), used by
genesis node entries, governance admissions of nodes and the node and client configurations."""

import pytest

from ledger.address import AddressError, format_address, parse_address
from ledger.limits import MAX_ADDRESS_BYTES
from node import config


@pytest.mark.parametrize("text, parsed", [
    ("127.0.0.1:7400", ("127.0.0.1", 7400)),
    ("localhost:1", ("localhost", 1)),
    ("node-1.example.org:65535", ("node-1.example.org", 65535)),
    ("NODE-1.Example.ORG:7400", ("NODE-1.Example.ORG", 7400)),
    ("a:7400", ("a", 7400)),
    ("1-2.x9:80", ("1-2.x9", 80)),
    ("[::1]:7400", ("::1", 7400)),
    ("[2001:DB8::a]:443", ("2001:DB8::a", 443)),
    ("[::ffff:192.0.2.1]:7400", ("::ffff:192.0.2.1", 7400)),
    ("[1:2:3:4:5:6:7:8]:1", ("1:2:3:4:5:6:7:8", 1)),
    (("a" * 63 + ".") * 3 + "b" * 61 + ":9", (("a" * 63 + ".") * 3 + "b" * 61, 9)),   # a 253-character host
])
def test_addresses_of_the_grammar_parse_and_format_back(text, parsed):
    assert parse_address(text) == parsed
    assert format_address(*parsed) == text


@pytest.mark.parametrize("text", [
    "", ":7400", "host:", "host", "host:0", "host:65536", "host:99999", "host:-1", "host:+1",
    "host:07400", "host:00", "host:７", "host:1 ", " host:1", "ho st:1", "host :1", "host: 1",
    "a..b:1", ".a:1", "a.:1", "-a:1", "a-:1", "a_b:1", "가.kr:1", "a" * 64 + ":1",
    ("a" * 63 + ".") * 3 + "b" * 62 + ":9",                                  # 254 characters
    "::1:7400", "[::1]7400", "[::1]:", "[::1]:0", "[::1]:65536", "[]:1", "[nope]:1",
    "[fe80::1%eth0]:7400", "[1:2:3:4:5:6:7:8:9]:1", "[::1]]:1", "[[::1]]:1", "[127.0.0.1]:1",
    "host:1\n", "host\t:1", "h" * 300 + ":1",
], ids=repr)
def test_text_outside_the_grammar_is_refused(text):
    with pytest.raises(AddressError):
        parse_address(text)


def test_an_address_longer_than_the_documented_bytes_is_refused_for_its_length():
    with pytest.raises(AddressError, match=f"at most {MAX_ADDRESS_BYTES} bytes"):
        parse_address("[" + "0" * MAX_ADDRESS_BYTES + "]:1")


def test_the_node_configuration_uses_the_same_parser():
    assert config.parse_address is parse_address
    assert config.format_address is format_address
