"""The application seam: what a simulated node hosts on top of Raft.

`ReplicatedApp` is the whole interface the simulator (and, later, a real
driver) needs from an application. `HashChainApp` is the default: a hash
chain over applied data. The real ledger (blocks, state commitments, commit
certificates) plugs in as another implementation.

Durability contract: an app's state and its `applied_index` are persisted
together (one transaction), so after a crash the app is exactly at some
applied index and the driver tells the Raft core where that is.
"""

from __future__ import annotations

import bisect
import hashlib
from typing import Protocol


class ReplicatedApp(Protocol):
    @property
    def applied_index(self) -> int:
        """Index of the last applied log entry (0 before any)."""
        ...

    def validate(self, data: bytes) -> bool:
        """Would an honest node accept this entry? Pure and deterministic: every
        node must reach the same verdict. Used as the Raft entry validator."""
        ...

    def apply(self, index: int, data: bytes | None) -> None:
        """Apply the committed entry at `index` (always applied_index + 1).
        `data` is None for a Raft NOOP: only the applied index moves."""
        ...

    def digest(self) -> bytes:
        """Commitment to the applied state; equal at equal applied_index on
        every honest node."""
        ...

    def catch_up_from(self, donor: "ReplicatedApp", upto_index: int) -> None:
        """Install the donor's committed history through `upto_index` (which the
        donor has applied), replacing ours. The real ledger fetches blocks with
        their commit certificates and verifies them here."""
        ...


class HashChainApp:
    """digest_i = sha256(digest_{i-1} || index || data) over applied NORMAL entries."""

    GENESIS = hashlib.sha256(b"nanum-sim-genesis").digest()

    def __init__(self) -> None:
        self._applied_index = 0
        # Digest after each applied NORMAL entry, for serving catch-up.
        self._history_indices: list[int] = [0]
        self._history_digests: list[bytes] = [self.GENESIS]

    @property
    def applied_index(self) -> int:
        return self._applied_index

    def validate(self, data: bytes) -> bool:
        return not data.startswith(b"!")  # the simulated client marks bad entries with '!'

    def apply(self, index: int, data: bytes | None) -> None:
        if index != self._applied_index + 1:
            raise AssertionError(f"apply({index}) after applied index {self._applied_index}")
        self._applied_index = index
        if data is not None:
            digest = hashlib.sha256(self.digest() + index.to_bytes(8, "big") + data).digest()
            self._history_indices.append(index)
            self._history_digests.append(digest)

    def digest(self) -> bytes:
        return self._history_digests[-1]

    def catch_up_from(self, donor: ReplicatedApp, upto_index: int) -> None:
        if not isinstance(donor, HashChainApp):
            raise TypeError("HashChainApp catches up only from a HashChainApp")
        if upto_index > donor.applied_index:
            raise ValueError(f"donor applied only {donor.applied_index} < {upto_index}")
        keep = bisect.bisect_right(donor._history_indices, upto_index)
        self._history_indices = donor._history_indices[:keep]
        self._history_digests = donor._history_digests[:keep]
        self._applied_index = upto_index
