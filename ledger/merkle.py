"""The ledger's Merkle tree: RFC 9162 section 2.1 (the same tree as RFC 6962).

Every committed transaction is one leaf, appended in commit order. This module
owns the arithmetic of that tree and nothing else:

* hashing: leaf = SHA-256(0x00 || data), node = SHA-256(0x01 || left || right),
  root of the empty tree = SHA-256(b"");
* `Frontier`, the compact right edge of the tree, which takes one leaf hash per
  committed transaction and returns the new nodes for the caller to persist;
* generation of inclusion and consistency proofs for any historical tree size,
  from stored nodes read through a `NodeReader` callback;
* verification of those proofs, checking every step of RFC 9162 sections
  2.1.3.2 and 2.1.4.2 (a verifier that skips a link is broken; see immudb
  advisory GHSA-672p-m5jq-mrh8).

It is pure: no I/O, no clock, no randomness, stdlib only. It never stores
anything itself. The storage module persists what `Frontier.append` returns in
the same write transaction as the block whose transactions were appended.

Storage model
-------------
Only perfect, aligned subtrees are stored. Node ``(level, index)`` is the root
hash of the perfect subtree over leaves ``[index * 2**level, (index + 1) *
2**level)``; level 0 holds the leaf hashes. The log is append-only, so a node
never changes once written, and any historical tree size can be proven from the
same nodes. A subtree that is not perfect only ever lies on the right edge of a
tree; it is composed from its perfect pieces (one read per set bit of its
size), never by walking leaves, so every proof costs O(log n) reads.

Errors
------
Bad arguments to hashing, `Frontier`, `MemoryNodes` and the proof generators
raise ValueError: the caller broke it. The verifiers raise `ProofError` for
anything wrong with what they were handed, because that normally comes from
another party. A KeyError raised by a `NodeReader` propagates unchanged: a node
the requested size needs is not stored, i.e. the size is beyond the stored tree.
"""

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_PROOF_HASHES",
    "MAX_TREE_SIZE",
    "Frontier",
    "MemoryNodes",
    "NodeReader",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_at",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

# Limits (put a limit on everything). 2**48 leaves is far beyond any ledger this
# project will hold; it bounds proofs to 48 hashes (49 for consistency), so a
# verifier refuses anything longer than MAX_PROOF_HASHES before hashing it.
MAX_TREE_SIZE = 2**48
MAX_PROOF_HASHES = 64

# (level, index) -> the stored 32-byte hash of that perfect subtree;
# raises KeyError if the node is not stored.
NodeReader = Callable[[int, int], bytes]

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"


class ProofError(Exception):
    """A proof, or the claim it was checked against, is invalid.

    Raised only by the verifiers; str() says which check failed.
    """


# --------------------------------------------------------------------------
# Hashing


def leaf_hash(data: bytes) -> bytes:
    """RFC 9162 leaf hash of one entry: SHA-256(0x00 || data)."""
    if not isinstance(data, bytes):
        raise ValueError(f"leaf data must be bytes, got {type(data).__name__}")
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 9162 interior node hash: SHA-256(0x01 || left || right)."""
    _check_hash(left, "left", ValueError)
    _check_hash(right, "right", ValueError)
    return _hash_children(left, right)


def _hash_children(left: bytes, right: bytes) -> bytes:
    """node_hash without argument checks, for hashes already validated."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    """Root of adjacent perfect subtrees, largest (leftmost) first.

    This is MTH of their concatenation: RFC 9162 splits at the largest power of
    two below the size, which is exactly the first (largest) piece, and recurses
    on the rest.
    """
    assert hashes, "an empty range has no subtree root"
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = _hash_children(left, root)
    return root


# --------------------------------------------------------------------------
# Argument checks, shared by generators (ValueError) and verifiers (ProofError)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_size(value: object, name: str, error: type[Exception]) -> None:
    if not _is_int(value) or not 0 <= value <= MAX_TREE_SIZE:
        raise error(f"{name} must be an int in [0, {MAX_TREE_SIZE}], got {value!r}")


def _check_index(index: object, size: int, error: type[Exception]) -> None:
    if not _is_int(index) or not 0 <= index < size:
        raise error(f"leaf index must be an int in [0, size={size}), got {index!r}")


def _check_hash(value: object, name: str, error: type[Exception]) -> None:
    if not isinstance(value, bytes):
        raise error(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise error(f"{name} must be {HASH_SIZE} bytes, got {len(value)}")


def _check_proof(proof: object) -> list[bytes]:
    """The proof as a list, once it is a sequence of at most MAX_PROOF_HASHES hashes."""
    if isinstance(proof, (bytes, bytearray, str)) or not isinstance(proof, Sequence):
        raise ProofError(f"proof must be a sequence of hashes, got {type(proof).__name__}")
    if len(proof) > MAX_PROOF_HASHES:
        raise ProofError(f"proof has {len(proof)} hashes, more than the limit {MAX_PROOF_HASHES}")
    for i, item in enumerate(proof):
        _check_hash(item, f"proof[{i}]", ProofError)
    return list(proof)


# --------------------------------------------------------------------------
# Reading stored nodes


def _largest_power_of_two_below(n: int) -> int:
    """RFC 9162's split point k: the largest power of two strictly less than n (n >= 2)."""
    assert n >= 2
    return 1 << ((n - 1).bit_length() - 1)


def _perfect_pieces(start: int, end: int) -> Iterator[tuple[int, int]]:
    """The stored nodes (level, index) that make up leaves [start, end), left to right.

    Contract: [start, end) is a subtree of RFC 9162's recursion, i.e. start is a
    multiple of a power of two >= end - start (true of [0, n) and of every range
    the proof recursions visit). Then the greedy split into the largest power of
    two that fits yields aligned perfect subtrees, one per set bit of end - start.
    """
    while start < end:
        level = (end - start).bit_length() - 1
        assert start % (1 << level) == 0, "range is not an RFC 9162 subtree"
        yield level, start >> level
        start += 1 << level


def _read_node(read: NodeReader, level: int, index: int) -> bytes:
    node = read(level, index)
    if not isinstance(node, bytes) or len(node) != HASH_SIZE:
        raise ValueError(f"stored node ({level}, {index}) is not a {HASH_SIZE}-byte hash")
    return node


def _range_hash(start: int, end: int, read: NodeReader) -> bytes:
    """MTH of leaves [start, end), composed from its perfect pieces (see _perfect_pieces)."""
    return _fold_right([_read_node(read, level, index) for level, index in _perfect_pieces(start, end)])


# --------------------------------------------------------------------------
# Appending


@dataclass(slots=True)
class Frontier:
    """The compact right edge of the tree.

    `hashes` are the roots of the perfect subtrees that make up a tree of `size`
    leaves: one per set bit of size, largest (leftmost) first. It is all the
    state appending needs; the caller keeps it in memory, or rebuilds it from
    storage with `load`. Mutated in place by `append`; `copy` for a scratch one.
    """

    size: int
    hashes: list[bytes]

    def __post_init__(self) -> None:
        _check_size(self.size, "size", ValueError)
        if not isinstance(self.hashes, list) or len(self.hashes) != self.size.bit_count():
            raise ValueError(f"a frontier of size {self.size} has {self.size.bit_count()} hashes")
        for i, item in enumerate(self.hashes):
            _check_hash(item, f"hashes[{i}]", ValueError)

    @classmethod
    def empty(cls) -> "Frontier":
        return cls(0, [])

    @classmethod
    def load(cls, size: int, read: NodeReader) -> "Frontier":
        """The frontier of the stored tree of `size` leaves; reads popcount(size) nodes."""
        _check_size(size, "size", ValueError)
        return cls(size, [_read_node(read, level, index) for level, index in _perfect_pieces(0, size)])

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash (already leaf_hash()ed) and return the nodes to store.

        Returns every perfect subtree the new leaf completes, as (level, index,
        hash) from level 0 (the leaf itself) upwards. The frontier is unchanged
        if the arguments are refused.
        """
        _check_hash(leaf, "leaf", ValueError)
        if self.size >= MAX_TREE_SIZE:
            raise ValueError(f"the tree is full ({MAX_TREE_SIZE} leaves)")
        completed = [(0, self.size, leaf)]
        node, level, index = leaf, 0, self.size
        # A set bit at `level` of the old size is a perfect subtree of that level
        # at the end of the frontier: the left sibling of the one just completed.
        while (self.size >> level) & 1:
            node = _hash_children(self.hashes.pop(), node)
            level, index = level + 1, index >> 1
            completed.append((level, index, node))
        self.hashes.append(node)
        self.size += 1
        return completed

    def root(self) -> bytes:
        """Root of the current tree (EMPTY_ROOT when size == 0)."""
        return _fold_right(self.hashes) if self.hashes else EMPTY_ROOT

    def copy(self) -> "Frontier":
        return Frontier(self.size, list(self.hashes))


# --------------------------------------------------------------------------
# Proof generation (RFC 9162 2.1.3.1 and 2.1.4.1)


def root_at(size: int, read: NodeReader) -> bytes:
    """Root of the historical tree of `size` leaves; reads popcount(size) nodes."""
    _check_size(size, "size", ValueError)
    return _range_hash(0, size, read) if size else EMPTY_ROOT


def inclusion_proof(index: int, size: int, read: NodeReader) -> list[bytes]:
    """RFC 9162 PATH(index, D[size]): the audit path of leaf `index`, bottom-up.

    Walks from the root towards the leaf, taking the sibling of each subtree
    entered. Left siblings are always perfect (one read each); only the first
    right sibling can be imperfect (it holds the tree's right edge), and below
    it every subtree is perfect. Reads <= 2 * log2(size) nodes.
    """
    _check_size(size, "size", ValueError)
    _check_index(index, size, ValueError)
    siblings = []  # collected top-down; PATH lists them bottom-up
    start, end = 0, size
    while end - start > 1:
        mid = start + _largest_power_of_two_below(end - start)
        if index < mid:
            siblings.append(_range_hash(mid, end, read))
            end = mid
        else:
            siblings.append(_range_hash(start, mid, read))
            start = mid
    siblings.reverse()
    return siblings


def consistency_proof(size1: int, size2: int, read: NodeReader) -> list[bytes]:
    """RFC 9162 PROOF(size1, D[size2]) for 0 < size1 <= size2; empty when equal.

    SUBPROOF recurses into the subtree holding the boundary `size1`, appending
    the other subtree's hash after the recursion's result; when the recursion
    ends on a subtree that is not a prefix of the whole tree (b = false), that
    subtree's own hash comes first. Same read bound as inclusion_proof, plus one.
    """
    _check_size(size1, "size1", ValueError)
    _check_size(size2, "size2", ValueError)
    if not 0 < size1 <= size2:
        raise ValueError(f"a consistency proof needs 0 < size1 <= size2, got {size1}, {size2}")
    hashes = []  # collected top-down; PROOF lists them bottom-up
    start, end, is_prefix = 0, size2, True
    while size1 < end:
        mid = start + _largest_power_of_two_below(end - start)
        if size1 <= mid:
            hashes.append(_range_hash(mid, end, read))
            end = mid
        else:
            hashes.append(_range_hash(start, mid, read))
            start, is_prefix = mid, False
    if not is_prefix:
        hashes.append(_range_hash(start, end, read))
    hashes.reverse()
    return hashes


# --------------------------------------------------------------------------
# Verification (RFC 9162 2.1.3.2 and 2.1.4.2)


def _inclusion_proof_len(index: int, size: int) -> int:
    """Exact length of PATH(index, D[size]).

    `inner` levels lie below the point where the paths to `index` and to the
    last leaf diverge (one sibling each); above it the path runs along the right
    border, where only the left siblings (set bits of index) are proof hashes.
    """
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_len(size1: int, size2: int) -> int:
    """Exact length of PROOF(size1, D[size2]) for 0 < size1 < size2.

    The proof is the inclusion path of leaf size1 - 1 in the tree of size2, cut
    below the largest perfect subtree ending at size1 (its `shift` low levels
    are covered by that subtree's hash), and prefixed with that subtree's hash
    unless it is the whole old tree, whose root the verifier already has.
    """
    shift = (size1 & -size1).bit_length() - 1
    seed_in_proof = 0 if size1 == 1 << shift else 1
    return seed_in_proof + _inclusion_proof_len(size1 - 1, size2) - shift


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that `leaf` (a leaf hash) is leaf `index` of the tree of `size` leaves with `root`.

    Raises ProofError saying which check failed; returns None if all pass.
    """
    _check_size(size, "size", ProofError)
    _check_index(index, size, ProofError)
    _check_hash(leaf, "leaf", ProofError)
    _check_hash(root, "root", ProofError)
    path = _check_proof(proof)
    expected = _inclusion_proof_len(index, size)
    if len(path) != expected:
        raise ProofError(f"inclusion proof has {len(path)} hashes, expected {expected}")
    if _root_from_inclusion_path(leaf, index, size, path) != root:
        raise ProofError("inclusion proof does not lead to the given root")


def _root_from_inclusion_path(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """RFC 9162 2.1.3.2 steps 2-5, literally.

    The caller has already checked the exact length; the RFC's own `sn` checks
    stay as a second guard, so no link of the algorithm is skipped.
    """
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = _hash_children(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _hash_children(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    return r


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of size1 with root1 is a prefix of the tree of size2 with root2.

    Requires 0 < size1 <= size2: a consistency check from the empty tree proves
    nothing, and the RFC 6962 test vectors reject it whatever the proof. For
    size1 == size2 the proof must be empty and the roots equal; no hash is
    computed, so, as the vectors require, the roots' length is not checked then.
    Raises ProofError saying which check failed; returns None if all pass.
    """
    _check_size(size1, "size1", ProofError)
    _check_size(size2, "size2", ProofError)
    path = _check_proof(proof)
    if size1 > size2:
        raise ProofError(f"size1 {size1} > size2 {size2}: an append-only log cannot shrink")
    if size1 == 0:
        raise ProofError("consistency with the empty tree proves nothing; size1 must be > 0")
    if size1 == size2:
        _verify_same_tree(path, root1, root2)
        return
    _check_hash(root1, "root1", ProofError)
    _check_hash(root2, "root2", ProofError)
    expected = _consistency_proof_len(size1, size2)
    if len(path) != expected:
        raise ProofError(f"consistency proof has {len(path)} hashes, expected {expected}")
    if size1 & (size1 - 1) == 0:  # RFC 9162 2.1.4.2 step 2: the old root is the seed
        path.insert(0, root1)
    fr, sr = _roots_from_consistency_path(size1, size2, path)
    if fr != root1:
        raise ProofError("consistency proof does not lead to root1")
    if sr != root2:
        raise ProofError("consistency proof does not lead to root2")


def _verify_same_tree(path: list[bytes], root1: object, root2: object) -> None:
    if path:
        raise ProofError(f"sizes are equal, so the proof must be empty; it has {len(path)} hashes")
    if not isinstance(root1, bytes) or not isinstance(root2, bytes):
        raise ProofError("root1 and root2 must be bytes")
    if root1 != root2:
        raise ProofError("sizes are equal but root1 != root2")


def _roots_from_consistency_path(size1: int, size2: int, path: list[bytes]) -> tuple[bytes, bytes]:
    """RFC 9162 2.1.4.2 steps 3-7, literally: the (old, new) roots the path leads to.

    As for inclusion, the RFC's `sn` checks back up the exact-length check.
    """
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr, sr = _hash_children(c, fr), _hash_children(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _hash_children(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the root")
    return fr, sr


# --------------------------------------------------------------------------
# In-memory node store


def _check_node(item: object) -> tuple[int, int, bytes]:
    """A (level, index, hash) node of a tree of at most MAX_TREE_SIZE leaves."""
    if not isinstance(item, tuple) or len(item) != 3:
        raise ValueError(f"a node is a (level, index, hash) tuple, got {type(item).__name__}")
    level, index, node = item
    if not _is_int(level) or not 0 <= level < MAX_TREE_SIZE.bit_length():
        raise ValueError(f"node level out of range: {level!r}")
    if not _is_int(index) or not 0 <= index < MAX_TREE_SIZE >> level:
        raise ValueError(f"node index out of range at level {level}: {index!r}")
    _check_hash(node, f"node ({level}, {index})", ValueError)
    return level, index, node


class MemoryNodes:
    """Dict-backed node store, for tests and the offline verifier.

    Enforces the storage contract: a node, once written, never changes.
    Rewriting the same hash is a no-op; a different hash is refused.
    """

    __slots__ = ("_nodes",)

    def __init__(self) -> None:
        self._nodes: dict[tuple[int, int], bytes] = {}

    def put(self, nodes: Iterable[tuple[int, int, bytes]]) -> None:
        """Store (level, index, hash) nodes; all or none (checked before any is stored)."""
        staged: dict[tuple[int, int], bytes] = {}
        for item in nodes:
            level, index, node = _check_node(item)
            known = staged.get((level, index), self._nodes.get((level, index)))
            if known is not None and known != node:
                raise ValueError(f"node ({level}, {index}) is already stored with a different hash")
            staged[(level, index)] = node
        self._nodes.update(staged)

    def read(self, level: int, index: int) -> bytes:
        """A NodeReader: the stored hash, or KeyError if absent."""
        return self._nodes[(level, index)]

    def __len__(self) -> int:
        return len(self._nodes)
