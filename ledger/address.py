"""Node network addresses: the one grammar of ``host:port`` (docs/FORMAT.md §4.5).

Every place that reads a node address — a genesis node entry, a governance admission of a
node, a node's or a client's configuration — parses it here, so a verifier, a node and a
client agree on which addresses exist. In ABNF (RFC 5234; ``IPv6address`` is RFC 3986 §3.2.2's):

    address  = host ":" port                      ; at most MAX_ADDRESS_BYTES bytes
    host     = dns-name / "[" IPv6address "]"
    dns-name = label *("." label)                 ; at most 253 characters
    label    = let-dig [*61(let-dig / "-") let-dig]
    let-dig  = ALPHA / DIGIT                      ; ASCII only
    port     = %x31-39 *4DIGIT                    ; 1 … 65535, no leading zero

A dotted IPv4 address is a ``dns-name`` by this grammar. An IPv6 address carries no zone
identifier (``%eth0``): a zone names an interface of one machine, never a consortium's node.
"""

from __future__ import annotations

import ipaddress
import re

from ledger.limits import MAX_ADDRESS_BYTES

MAX_HOST_CHARS = 253            # a DNS name (RFC 1035 §2.3.4, without the root's dot)
MIN_PORT, MAX_PORT = 1, 65535

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PORT = re.compile(r"[1-9][0-9]{0,4}")


class AddressError(ValueError):
    """Text that is not a ``host:port`` of the grammar above; the message says what is wrong."""


def parse_address(text: str) -> tuple[str, int]:
    """``host:port`` → (host, port), the host without brackets; AddressError otherwise."""
    if not isinstance(text, str) or not text or len(text.encode("utf-8")) > MAX_ADDRESS_BYTES:
        raise AddressError(f"must be host:port, at most {MAX_ADDRESS_BYTES} bytes")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if not rest.startswith(":") or not is_ipv6(host):
            raise AddressError(f"must be host:port or [IPv6]:port, got {text!r}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or not is_dns_name(host):
            raise AddressError(f"must be host:port with a DNS name or IPv4 host, got {text!r}")
    if not _PORT.fullmatch(port_text) or not MIN_PORT <= int(port_text) <= MAX_PORT:
        raise AddressError(f"port must be a number from {MIN_PORT} to {MAX_PORT} without leading zeros, "
                           f"got {port_text!r}")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """The inverse of parse_address: brackets IPv6 hosts."""
    return f"[{host}]:{port}" if is_ipv6(host) else f"{host}:{port}"


def is_ipv6(host: str) -> bool:
    """An RFC 3986 ``IPv6address`` (hex digits of either case), without a zone identifier."""
    if "%" in host or not host.isascii():
        return False
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def is_dns_name(host: str) -> bool:
    return 0 < len(host) <= MAX_HOST_CHARS and _DNS_NAME.fullmatch(host) is not None
