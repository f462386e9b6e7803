"""Signature verifier candidates: verification rate on one core, and the vectors each passes.

Measures, on the same keys and messages, in one process (one core), rounds interleaved so that
the host's drift hits every candidate alike (the median round is printed):
  - ``cryptography`` (OpenSSL): ``Ed25519PublicKey.verify``, the key parsed once;
  - PyNaCl (libsodium): ``nacl.signing.VerifyKey.verify`` and ``nacl.bindings.crypto_sign_open``;
  - the key rule alone: ``crypto_core_ed25519_is_valid_point`` (what a cache miss costs);
  - ``ledger.keys.verify``: the project's verifier (key rule cached, then libsodium), with its
    cache warm (keys that recur) and cold (every key new).
Then every candidate is run on the same vectors: all of Wycheproof's Ed25519 vectors (when
../shared is there) and the edge cases of tests/ed25519_edges.py (finding 1 of issue 14), and
the verdicts that differ from the expected ones are counted.

Usage: python benchmarks/signature_rate.py [--seconds 1.0] [--rounds 5] [--keys 64] [--message-bytes 200]
                                          [--clock cpu|wall]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import nacl.bindings  # noqa: E402
import nacl.signing  # noqa: E402
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey  # noqa: E402
from nacl.exceptions import BadSignatureError  # noqa: E402

from benchmarks.ledger_core import machine  # noqa: E402
from ledger import keys  # noqa: E402
from ledger.keys import SigningKey  # noqa: E402
from tests import ed25519_edges as edges  # noqa: E402


def _openssl(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _sodium(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


VERDICTS = {"cryptography (OpenSSL)": _openssl, "PyNaCl (libsodium)": _sodium, "ledger.keys.verify": keys.verify}


def _workload(count: int, message_bytes: int) -> list[tuple[bytes, bytes, bytes]]:
    signers = [SigningKey.from_seed(i.to_bytes(32, "big")) for i in range(count)]
    items = []
    for i, signer in enumerate(signers):
        message = (b"nanum %d " % i).ljust(message_bytes, b"m")
        items.append((signer.public_key, signer.sign(message), message))
    return items


def _timed(run, items, seconds: float, clock) -> float:
    count, start = 0, clock()
    while clock() - start < seconds:
        run(items)
        count += len(items)
    return count / (clock() - start)


def _candidates(items):
    openssl = [(Ed25519PublicKey.from_public_bytes(pk), s, m) for pk, s, m in items]
    verify_keys = [(nacl.signing.VerifyKey(pk), s, m) for pk, s, m in items]

    def run_openssl(_):
        for public, signature, message in openssl:
            public.verify(signature, message)

    def run_verify_key(_):
        for verify_key, signature, message in verify_keys:
            verify_key.verify(message, signature)

    def run_sign_open(batch):
        for public_key, signature, message in batch:
            nacl.bindings.crypto_sign_open(signature + message, public_key)

    def run_key_rule(batch):
        for public_key, _, _ in batch:
            nacl.bindings.crypto_core_ed25519_is_valid_point(public_key)

    def run_project_warm(batch):
        for public_key, signature, message in batch:
            assert keys.verify(public_key, signature, message)

    def run_project_cold(batch):
        for public_key, signature, message in batch:
            keys._key_rule.cache_clear()          # every key new: the key rule runs each time
            assert keys.verify(public_key, signature, message)

    return {
        "cryptography (OpenSSL) Ed25519PublicKey.verify": run_openssl,
        "PyNaCl nacl.signing.VerifyKey.verify": run_verify_key,
        "PyNaCl nacl.bindings.crypto_sign_open": run_sign_open,
        "key rule alone (crypto_core_ed25519_is_valid_point)": run_key_rule,
        "ledger.keys.verify, key-rule cache warm": run_project_warm,
        "ledger.keys.verify, key-rule cache cold": run_project_cold,
    }


def _wycheproof() -> list[tuple[bytes, bytes, bytes, bool, str]]:
    relative = Path("shared", "vectors", "wycheproof", "ed25519_test.json")
    path = next((folder / relative for folder in REPO.parents if (folder / relative).is_file()), None)
    if path is None:
        return []
    data = json.loads(path.read_text())
    return [(bytes.fromhex(g["publicKey"]["pk"]), bytes.fromhex(c["sig"]), bytes.fromhex(c["msg"]),
             c["result"] == "valid", f"wycheproof tc{c['tcId']}")
            for g in data["testGroups"] for c in g["tests"]]


def _edge_vectors() -> list[tuple[bytes, bytes, bytes, bool, str]]:
    seed, message = bytes(range(32)), b"nanum signature rule"
    vectors = []
    for name, public_key in edges.SMALL_ORDER.items():
        m = next(b"m%d" % i for i in range(256) if edges.zero_signature_holds(public_key, b"m%d" % i))
        vectors.append((public_key, edges.zero_signature(public_key), m, False, f"small-order A ({name})"))
    vectors.append((edges.public_key(seed), edges.identity_r_signature(seed, message), message, False,
                    "small-order R (identity)"))
    for torsion in (edges.ORDER_8_A, edges.ORDER_8_B):
        mixed, m, signature = edges.mixed_order_signature(seed, torsion)
        vectors.append((mixed, signature, m, False, "mixed-order A"))
    good = edges.sign_with_r(seed, message, 777)
    s = int.from_bytes(good[32:], "little")
    vectors.append((edges.public_key(seed), good[:32] + (s + edges.L).to_bytes(32, "little"), message, False,
                    "non-canonical S (S + L)"))
    vectors.append((edges.public_key(seed), good, message, True, "valid"))
    return vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per candidate per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keys", type=int, default=64, help="distinct keys and messages, used in turn")
    parser.add_argument("--message-bytes", type=int, default=200, help="about a transaction's signed bytes")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="cpu: per CPU-second of this process (other load on the host shows less); wall")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter

    print(f"machine:    {machine()}")
    print(f"libraries:  cryptography {_version('cryptography')} ({_openssl_version()}), "
          f"PyNaCl {_version('nacl')} (bundled libsodium)")
    print(f"parameters: seconds={args.seconds} rounds={args.rounds} keys={args.keys} "
          f"message_bytes={args.message_bytes} clock={args.clock}; one process, rounds interleaved, median shown")
    items = _workload(args.keys, args.message_bytes)
    candidates = _candidates(items)
    rates: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(args.rounds):
        for name, run in candidates.items():
            rates[name].append(_timed(run, items, args.seconds, clock))
    unit = "CPU-s" if args.clock == "cpu" else "s"
    base = statistics.median(rates["cryptography (OpenSSL) Ed25519PublicKey.verify"])
    for name, values in rates.items():
        median = statistics.median(values)
        print(f"[rate]  {name}: {median:,.0f}/{unit} = {1e6 / median:.1f} us each, {median / base:.2f}x OpenSSL "
              f"(rounds {min(values):,.0f}..{max(values):,.0f})")

    vectors = _wycheproof()
    if not vectors:
        print("[vectors] Wycheproof vectors not found beside the repository (../shared): edge cases only")
    wycheproof_count = len(vectors)
    vectors += _edge_vectors()
    for name, verdict in VERDICTS.items():
        wrong = [label for pk, sig, msg, expected, label in vectors if verdict(pk, sig, msg) is not expected]
        wrong_wycheproof = sum(1 for label in wrong if label.startswith("wycheproof"))
        print(f"[vectors] {name}: Wycheproof {wycheproof_count - wrong_wycheproof}/{wycheproof_count}, "
              f"edge cases {len(vectors) - wycheproof_count - (len(wrong) - wrong_wycheproof)}"
              f"/{len(vectors) - wycheproof_count}" + (f"; wrong on: {', '.join(wrong)}" if wrong else ""))


def _version(module: str) -> str:
    return getattr(__import__(module), "__version__", "?")


def _openssl_version() -> str:
    from cryptography.hazmat.backends.openssl import backend
    return backend.openssl_version_text()


if __name__ == "__main__":
    main()
