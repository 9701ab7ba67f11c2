"""What a relay stored or is storing, by record digest: so that each record goes into the
step's logs once, whether the program re-sends a request (after a retryable answer, or after
its own export timeout while the first copy is still being stored) or its spool repeats
records the relay took before the program died (the spool is at-least-once).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Sequence

from ._otlp import DecodedRecord

# A claim's kinds: this caller stores the record; it is stored already; another caller is
# storing it.
MINE, STORED, PENDING = "mine", "stored", "pending"


@dataclasses.dataclass
class Claim:
    """One record's place in the ledger: `kind`, its digest (None: never matched) and
    which of the caller's records with this digest it is (0 for the first)."""

    kind: str
    digest: int | None
    occurrence: int
    settled: bool = False


def digest(scope_name: str, encoded: bytes, record: DecodedRecord) -> int | None:
    """The same for a record read from a request and from the spool: both hold the crate's
    same encoding of it (its own fields, its context's attributes, the rest:
    src/otlp/protobuf.rs, docs/spool.md), and equal encodings decode alike. A 64-bit hash
    (this process's) of the scope's name and the encoding: against the last 2^17 records a
    false match is about 2^-47 likely.

    A record without a time has none (None: never matched, so stored again when its
    request is re-sent): two such records, or requests, may well be alike on purpose.
    The crate stamps every record."""
    if not (record["time_unix_nano"] or record["observed_time_unix_nano"]):
        return None
    return hash((scope_name, encoded))


class Ledger:
    """Counts of the records stored (the last `size`) and in flight, by digest
    (thread-safe).

    A caller's batch holds a record with digest d for the k-th time (k from 0):
    it is stored already when k < stored[d], being stored by another caller when
    k < stored[d] + in_flight[d], else the caller's to store. Counting, not a
    set: two alike records in one request are both stored, a re-sent copy of
    both neither."""

    def __init__(self, size: int = 1 << 17) -> None:
        self._changed = threading.Condition()
        self._size = size
        self._order: collections.deque[int] = collections.deque()
        # Plain dicts read with .get: a Counter's missing key is a Python call, per record.
        self._stored: dict[int, int] = {}
        self._in_flight: dict[int, int] = {}

    def claim(self, digests: Sequence[int | None]) -> list[Claim]:
        """A claim per record of a batch, in order; the `MINE` ones count as in
        flight until `settle`d (a `finally` must settle them)."""
        seen: dict[int, int] = {}
        claims = []
        with self._changed:
            stored, in_flight = self._stored, self._in_flight
            for d in digests:
                if d is None:
                    claims.append(Claim(MINE, None, 0))
                    continue
                k = seen.get(d, 0)
                seen[d] = k + 1
                before, flying = stored.get(d, 0), in_flight.get(d, 0)
                if k < before:
                    claims.append(Claim(STORED, d, k, settled=True))
                elif k < before + flying:
                    claims.append(Claim(PENDING, d, k))
                else:
                    in_flight[d] = flying + 1
                    claims.append(Claim(MINE, d, k))
        return claims

    def settle(self, claims: Sequence[Claim], stored: bool) -> None:
        """`MINE` claims' end: stored, or given back (another copy may store them); the
        others' and those settled before are left as they are."""
        with self._changed:
            for claim in claims:
                if claim.settled or claim.kind != MINE:
                    continue
                claim.settled = True
                d = claim.digest
                if d is None:
                    continue
                if self._in_flight[d] > 1:
                    self._in_flight[d] -= 1
                else:
                    del self._in_flight[d]
                if stored:
                    self._remember(d)
            self._changed.notify_all()

    def _remember(self, d: int) -> None:
        self._stored[d] = self._stored.get(d, 0) + 1
        self._order.append(d)
        if len(self._order) > self._size:
            oldest = self._order.popleft()
            if self._stored[oldest] > 1:
                self._stored[oldest] -= 1
            else:
                del self._stored[oldest]

    def wait(self, pending: Sequence[Claim], timeout: float) -> bool:
        """Waits until the records other callers were storing are settled: True
        when all were stored; False when one was given back (nobody stores it
        now) or `timeout` seconds passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            for claim in pending:
                assert claim.digest is not None  # PENDING claims have digests
                while True:
                    stored = self._stored.get(claim.digest, 0)
                    flying = self._in_flight.get(claim.digest, 0)
                    if claim.occurrence < stored:
                        break
                    left = deadline - time.monotonic()
                    if claim.occurrence >= stored + flying or left <= 0:
                        return False
                    self._changed.wait(left)
        return True
