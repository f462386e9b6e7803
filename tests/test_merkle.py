"""Tests of ledger/merkle.py: RFC 6962 vectors, a naive reference, read bounds, bad input."""

import base64
import hashlib
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    MAX_PROOF_HASHES,
    MAX_TREE_SIZE,
    Frontier,
    MemoryNodes,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_at,
    verify_consistency,
    verify_inclusion,
)
from tests import merkle_reference as ref

FAST = settings(max_examples=60, deadline=None)
SLOW = settings(max_examples=15, deadline=None)

# --------------------------------------------------------------------------
# RFC 6962 test vectors (transparency-dev/merkle testdata), one test per file.
# The shared folder sits beside the repository, locally and in CI; if it is
# missing the suite fails rather than skips, or the vectors would silently stop
# guarding the verifiers.

VECTORS_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "vectors" / "rfc6962"
TESTDATA = VECTORS_DIR / "testdata"
EXPECTED_VECTOR_FILES = 196
VECTORS_MISSING = (
    f"RFC 6962 test vectors not found at {TESTDATA}; the repository expects the "
    "shared material cloned beside it (../shared/vectors/rfc6962/testdata)"
)


def _vector_files() -> list[Path]:
    return sorted(TESTDATA.rglob("*.json")) if TESTDATA.is_dir() else []


def _vector_params() -> list:
    files = _vector_files()
    if not files:
        return [pytest.param(None, id="vectors-missing")]
    return [pytest.param(path, id=path.relative_to(TESTDATA).as_posix()) for path in files]


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _check_inclusion_case(case: dict) -> None:
    proof = [_b64(h) for h in case["proof"] or []]  # JSON null is Go's nil slice
    verify_inclusion(_b64(case["leafHash"]), case["leafIdx"], case["treeSize"], proof, _b64(case["root"]))


def _check_consistency_case(case: dict) -> None:
    proof = [_b64(h) for h in case["proof"] or []]
    verify_consistency(case["size1"], case["size2"], proof, _b64(case["root1"]), _b64(case["root2"]))


def test_vector_directory_holds_every_file():
    assert TESTDATA.is_dir(), VECTORS_MISSING
    assert len(_vector_files()) == EXPECTED_VECTOR_FILES


@pytest.mark.parametrize("path", _vector_params())
def test_rfc6962_vector(path):
    if path is None:
        pytest.fail(VECTORS_MISSING)
    case = json.loads(path.read_text())
    kind = path.relative_to(TESTDATA).parts[0]
    check = {"inclusion": _check_inclusion_case, "consistency": _check_consistency_case}[kind]
    if case["wantErr"]:
        with pytest.raises(ProofError):
            check(case)
    else:
        check(case)


# --------------------------------------------------------------------------
# Building trees


def build(entries: list[bytes]) -> tuple[Frontier, MemoryNodes]:
    frontier, store = Frontier.empty(), MemoryNodes()
    for entry in entries:
        store.put(frontier.append(leaf_hash(entry)))
    return frontier, store


# One tree of distinct entries serves every size up to N: stored nodes never change.
N = 300
ENTRIES = [b"nanum tx %d" % i for i in range(N)]
_, STORE = build(ENTRIES)


def test_hashing_matches_rfc():
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()


def test_empty_tree():
    frontier = Frontier.empty()
    assert frontier.size == 0 and frontier.hashes == []
    assert frontier.root() == EMPTY_ROOT == ref.mth([])
    assert root_at(0, MemoryNodes().read) == EMPTY_ROOT
    assert Frontier.load(0, MemoryNodes().read) == frontier


# Hypothesis keeps lists short by default; draw the length first so large trees
# (many levels, long right edges) are as likely as small ones.
entry_lists = st.integers(0, N).flatmap(lambda n: st.lists(st.binary(max_size=8), min_size=n, max_size=n))


@SLOW
@given(entry_lists)
def test_frontier_matches_reference_at_every_size(entries):
    frontier, store = Frontier.empty(), MemoryNodes()
    for n, entry in enumerate(entries, start=1):
        before = frontier.size
        completed = frontier.append(leaf_hash(entry))
        # The new leaf completes one node per trailing one bit of the old size.
        assert len(completed) == 1 + (before ^ (before + 1)).bit_length() - 1
        store.put(completed)
        assert len(store) == 2 * n - n.bit_count()
        assert frontier.root() == ref.mth(entries[:n])
        assert Frontier.load(n, store.read) == frontier
    for n in range(len(entries) + 1):
        assert root_at(n, store.read) == ref.mth(entries[:n])


def test_stored_tree_matches_reference_at_every_size():
    for n in range(N + 1):
        assert root_at(n, STORE.read) == ref.mth(ENTRIES[:n])
    assert len(STORE) == 2 * N - N.bit_count()


def test_append_returns_each_completed_node():
    frontier = Frontier.empty()
    leaves = [leaf_hash(e) for e in ENTRIES[:4]]
    assert frontier.append(leaves[0]) == [(0, 0, leaves[0])]
    ab = node_hash(leaves[0], leaves[1])
    assert frontier.append(leaves[1]) == [(0, 1, leaves[1]), (1, 0, ab)]
    assert frontier.append(leaves[2]) == [(0, 2, leaves[2])]
    cd = node_hash(leaves[2], leaves[3])
    assert frontier.append(leaves[3]) == [(0, 3, leaves[3]), (1, 1, cd), (2, 0, node_hash(ab, cd))]
    assert frontier.hashes == [node_hash(ab, cd)]


def test_copy_is_independent():
    frontier = Frontier.load(5, STORE.read)
    copy = frontier.copy()
    copy.append(leaf_hash(b"more"))
    assert frontier == Frontier.load(5, STORE.read)
    assert copy == Frontier.load(6, build(ENTRIES[:5] + [b"more"])[1].read)


# --------------------------------------------------------------------------
# Proofs against the reference


def test_every_small_proof_matches_reference():
    """Exhaustive over sizes up to 33: every edge of the bit arithmetic around 2**k."""
    for size in range(1, 34):
        root = ref.mth(ENTRIES[:size])
        for index in range(size):
            proof = inclusion_proof(index, size, STORE.read)
            assert proof == ref.path(index, ENTRIES[:size])
            verify_inclusion(ref.leaf_hash(ENTRIES[index]), index, size, proof, root)
        for size1 in range(1, size + 1):
            proof = consistency_proof(size1, size, STORE.read)
            assert proof == ref.proof(size1, ENTRIES[:size])
            verify_consistency(size1, size, proof, ref.mth(ENTRIES[:size1]), root)


@st.composite
def index_and_size(draw, max_size=N):
    size = draw(st.integers(1, max_size))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw, max_size=N):
    size2 = draw(st.integers(1, max_size))
    return draw(st.integers(1, size2)), size2


@FAST
@given(index_and_size())
def test_inclusion_proof_matches_reference_and_verifies(case):
    index, size = case
    proof = inclusion_proof(index, size, STORE.read)
    assert proof == ref.path(index, ENTRIES[:size])
    verify_inclusion(ref.leaf_hash(ENTRIES[index]), index, size, proof, ref.mth(ENTRIES[:size]))


@FAST
@given(two_sizes())
def test_consistency_proof_matches_reference_and_verifies(case):
    size1, size2 = case
    proof = consistency_proof(size1, size2, STORE.read)
    assert proof == ref.proof(size1, ENTRIES[:size2])
    verify_consistency(size1, size2, proof, ref.mth(ENTRIES[:size1]), ref.mth(ENTRIES[:size2]))


# --------------------------------------------------------------------------
# Tampered proofs fail


@st.composite
def tampered(draw, proof: list[bytes]) -> list[bytes]:
    """The proof with one bit flipped, one hash dropped, or one hash added at either end."""
    kinds = ["append", "prepend"] + (["flip", "drop"] if proof else [])
    kind = draw(st.sampled_from(kinds))
    extra = draw(st.binary(min_size=HASH_SIZE, max_size=HASH_SIZE))
    if kind == "append":
        return proof + [extra]
    if kind == "prepend":
        return [extra] + proof
    i = draw(st.integers(0, len(proof) - 1))
    if kind == "drop":
        return proof[:i] + proof[i + 1 :]
    bit = draw(st.integers(0, 8 * HASH_SIZE - 1))
    flipped = bytearray(proof[i])
    flipped[bit // 8] ^= 1 << (bit % 8)
    return proof[:i] + [bytes(flipped)] + proof[i + 1 :]


@FAST
@given(index_and_size(), st.data())
def test_tampered_inclusion_proof_fails(case, data):
    index, size = case
    bad = data.draw(tampered(inclusion_proof(index, size, STORE.read)))
    with pytest.raises(ProofError):
        verify_inclusion(ref.leaf_hash(ENTRIES[index]), index, size, bad, ref.mth(ENTRIES[:size]))


@FAST
@given(two_sizes(), st.data())
def test_tampered_consistency_proof_fails(case, data):
    size1, size2 = case
    bad = data.draw(tampered(consistency_proof(size1, size2, STORE.read)))
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, bad, ref.mth(ENTRIES[:size1]), ref.mth(ENTRIES[:size2]))


@FAST
@given(index_and_size(), st.integers(0, 8 * HASH_SIZE - 1), st.booleans())
def test_wrong_leaf_or_root_fails_inclusion(case, bit, flip_root):
    index, size = case
    leaf, root = ref.leaf_hash(ENTRIES[index]), ref.mth(ENTRIES[:size])
    flipped = bytearray(root if flip_root else leaf)
    flipped[bit // 8] ^= 1 << (bit % 8)
    leaf, root = (leaf, bytes(flipped)) if flip_root else (bytes(flipped), root)
    with pytest.raises(ProofError):
        verify_inclusion(leaf, index, size, inclusion_proof(index, size, STORE.read), root)


@FAST
@given(two_sizes(), st.integers(0, 8 * HASH_SIZE - 1), st.booleans())
def test_wrong_root_fails_consistency(case, bit, flip_root1):
    size1, size2 = case
    roots = [bytearray(ref.mth(ENTRIES[:size1])), bytearray(ref.mth(ENTRIES[:size2]))]
    roots[0 if flip_root1 else 1][bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, consistency_proof(size1, size2, STORE.read), *map(bytes, roots))


# --------------------------------------------------------------------------
# Reads: proof generation touches O(log n) stored nodes, never leaves in bulk


class CountingReader:
    """A NodeReader for a tree of n leaves that is never built: any perfect node
    inside the tree has a deterministic stand-in hash; anything else is absent."""

    def __init__(self, n: int) -> None:
        self.n, self.reads = n, 0

    def __call__(self, level: int, index: int) -> bytes:
        if level < 0 or index < 0 or (index + 1) << level > self.n:
            raise KeyError((level, index))
        self.reads += 1
        return hashlib.sha256(b"%d/%d" % (level, index)).digest()


def read_bound(n: int) -> int:
    return 2 * math.ceil(math.log2(n)) + 4


def count_reads(n: int, generate) -> int:
    reader = CountingReader(n)
    generate(reader)
    return reader.reads


@pytest.mark.parametrize("n", [1_000_003, 2**20, 2**20 - 1, 999_999])
def test_proof_generation_reads_are_logarithmic(n):
    for index in [0, 1, 2, n // 3, n // 2, 2**19 - 1, 2**19, n - 2, n - 1]:
        assert count_reads(n, lambda read: inclusion_proof(index, n, read)) <= read_bound(n)
    for size1 in [1, 2, 3, 7, n // 3, n // 2, 2**19, 2**19 + 1, n - 1, n]:
        assert count_reads(n, lambda read: consistency_proof(size1, n, read)) <= read_bound(n)
    assert count_reads(n, lambda read: root_at(n, read)) == n.bit_count()
    assert count_reads(n, lambda read: Frontier.load(n, read)) == n.bit_count()


@FAST
@given(st.integers(1, MAX_TREE_SIZE), st.data())
def test_read_bound_holds_up_to_the_size_limit(n, data):
    index = data.draw(st.integers(0, n - 1))
    size1 = data.draw(st.integers(1, n))
    assert count_reads(n, lambda read: inclusion_proof(index, n, read)) <= read_bound(n)
    assert count_reads(n, lambda read: consistency_proof(size1, n, read)) <= read_bound(n)


def test_size_beyond_stored_tree_is_a_key_error():
    with pytest.raises(KeyError):
        inclusion_proof(0, N + 1, STORE.read)
    with pytest.raises(KeyError):
        root_at(N + 1, STORE.read)


# --------------------------------------------------------------------------
# Bad input: ValueError from generators and builders, ProofError from verifiers


H = leaf_hash(b"x")
NOT_INTS = [-1, MAX_TREE_SIZE + 1, 2**64 - 1, 1.0, "1", None, True]
BAD_HASHES = [b"", b"\x00" * 31, b"\x00" * 33, bytearray(32), "0" * 32, None]


@pytest.mark.parametrize("bad", NOT_INTS)
def test_generators_refuse_bad_sizes(bad):
    for call in [
        lambda: root_at(bad, STORE.read),
        lambda: Frontier.load(bad, STORE.read),
        lambda: inclusion_proof(0, bad, STORE.read),
        lambda: inclusion_proof(bad, 5, STORE.read),
        lambda: consistency_proof(bad, 5, STORE.read),
        lambda: consistency_proof(1, bad, STORE.read),
    ]:
        with pytest.raises(ValueError):
            call()


@pytest.mark.parametrize(
    "index, size", [(0, 0), (5, 5), (6, 5), (-1, 5), (MAX_TREE_SIZE, MAX_TREE_SIZE)]
)
def test_inclusion_proof_refuses_index_outside_tree(index, size):
    with pytest.raises(ValueError):
        inclusion_proof(index, size, STORE.read)


@pytest.mark.parametrize("size1, size2", [(0, 0), (0, 5), (6, 5), (2, 1)])
def test_consistency_proof_refuses_bad_sizes(size1, size2):
    with pytest.raises(ValueError):
        consistency_proof(size1, size2, STORE.read)


@pytest.mark.parametrize("bad", BAD_HASHES)
def test_builders_refuse_bad_hashes(bad):
    frontier = Frontier.load(5, STORE.read)
    with pytest.raises(ValueError):
        frontier.append(bad)
    assert frontier == Frontier.load(5, STORE.read)  # unchanged
    for call in [
        lambda: node_hash(bad, H),
        lambda: node_hash(H, bad),
        lambda: Frontier(1, [bad]),
        lambda: MemoryNodes().put([(0, 0, bad)]),
    ]:
        with pytest.raises(ValueError):
            call()


def test_builders_refuse_bad_shapes():
    with pytest.raises(ValueError):
        leaf_hash("text")
    with pytest.raises(ValueError):
        Frontier(3, [H])  # 3 leaves need 2 subtree roots
    with pytest.raises(ValueError):
        Frontier(MAX_TREE_SIZE, [H]).append(H)  # full
    for node in [(-1, 0, H), (0, -1, H), (48, 1, H), (0, MAX_TREE_SIZE, H), (0, 0), "node"]:
        with pytest.raises(ValueError):
            MemoryNodes().put([node])


def test_memory_nodes_never_change_a_node():
    store = MemoryNodes()
    store.put([(0, 0, H)])
    store.put([(0, 0, H)])  # the same hash again is harmless
    with pytest.raises(ValueError):
        store.put([(0, 1, H), (0, 0, leaf_hash(b"other"))])
    with pytest.raises(ValueError):
        store.put([(0, 1, H), (0, 1, leaf_hash(b"other"))])
    assert len(store) == 1 and store.read(0, 0) == H  # all or nothing
    with pytest.raises(KeyError):
        store.read(0, 1)


def test_storage_returning_a_malformed_node_is_refused():
    with pytest.raises(ValueError):
        root_at(1, lambda level, index: b"short")


GOOD_INCLUSION = dict(
    leaf=ref.leaf_hash(ENTRIES[5]),
    index=5,
    size=11,
    proof=ref.path(5, ENTRIES[:11]),
    root=ref.mth(ENTRIES[:11]),
)
GOOD_CONSISTENCY = dict(
    size1=6,
    size2=11,
    proof=ref.proof(6, ENTRIES[:11]),
    root1=ref.mth(ENTRIES[:6]),
    root2=ref.mth(ENTRIES[:11]),
)


def test_good_proofs_used_below_verify():
    verify_inclusion(**GOOD_INCLUSION)
    verify_consistency(**GOOD_CONSISTENCY)


def _bad_verifier_inputs(good: dict, sizes: list[str], hashes: list[str]) -> list[dict]:
    cases = []
    for name in sizes:
        cases += [{**good, name: bad} for bad in NOT_INTS]
    for name in hashes:
        cases += [{**good, name: bad} for bad in BAD_HASHES]
    proof = good["proof"]
    cases += [{**good, "proof": [bad] + proof[1:]} for bad in BAD_HASHES]
    cases += [
        {**good, "proof": proof[:-1]},  # too short
        {**good, "proof": proof + [H]},  # trailing garbage
        {**good, "proof": [H] * (MAX_PROOF_HASHES + 1)},  # beyond the limit
        {**good, "proof": None},
        {**good, "proof": b"".join(proof)},  # bytes is not a sequence of hashes
    ]
    return cases


@pytest.mark.parametrize(
    "kwargs", _bad_verifier_inputs(GOOD_INCLUSION, ["index", "size"], ["leaf", "root"])
)
def test_verify_inclusion_refuses_bad_input(kwargs):
    with pytest.raises(ProofError):
        verify_inclusion(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    _bad_verifier_inputs(GOOD_CONSISTENCY, ["size1", "size2"], ["root1", "root2"])
    + [
        {**GOOD_CONSISTENCY, "size1": 12},  # size1 > size2
        {**GOOD_CONSISTENCY, "size1": 0, "proof": []},  # from the empty tree
        {**GOOD_CONSISTENCY, "size1": 0, "size2": 0, "proof": [], "root1": EMPTY_ROOT, "root2": EMPTY_ROOT},
        {**GOOD_CONSISTENCY, "size1": 11, "root1": GOOD_CONSISTENCY["root2"]},  # equal sizes, proof not empty
        {**GOOD_CONSISTENCY, "size1": 11, "proof": []},  # equal sizes, roots differ
        {**GOOD_CONSISTENCY, "size1": 11, "proof": [], "root1": None, "root2": None},
    ],
)
def test_verify_consistency_refuses_bad_input(kwargs):
    with pytest.raises(ProofError):
        verify_consistency(**kwargs)


def test_verify_index_beyond_limits():
    with pytest.raises(ProofError):
        verify_inclusion(H, MAX_TREE_SIZE, MAX_TREE_SIZE, [], H)
    with pytest.raises(ProofError):
        verify_inclusion(H, 2**64 - 1, 8, [H] * 3, H)


def test_proof_length_limit_is_checked_first():
    too_long = [b""] * (MAX_PROOF_HASHES + 1)  # malformed too: the limit must trip before any per-hash work
    with pytest.raises(ProofError, match="limit"):
        verify_inclusion(H, 0, MAX_TREE_SIZE, too_long, H)
    with pytest.raises(ProofError, match="limit"):
        verify_consistency(1, MAX_TREE_SIZE, too_long, H, H)


def test_equal_sizes_need_only_equal_roots():
    root = ref.mth(ENTRIES[:11])
    verify_consistency(11, 11, [], root, root)
    verify_consistency(11, 11, (), root, root)
