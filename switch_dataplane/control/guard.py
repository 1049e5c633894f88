"""Per-source guards of the switch thread: failed-credential rate limits, a fair share of the
control plane per batch, rate-limited logs.

Every datagram may be hostile, so nothing here grows without bound or writes per packet: the
limiter tracks at most ``MAX_SOURCES`` addresses (the oldest are forgotten), and the error log
writes one line per kind of error per interval, with the count since the last line.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Failed credentials a source may have at once, and refills per second: room for an honest
# host whose windows of packets all fail at once after its job closed or the switch restarted
# (a drain window is 512), while a 64-bit token takes ~10^8 years to guess at this rate.
FAILURE_BURST = 4096.0
FAILURES_PER_S = 1024.0
MAX_SOURCES = 1 << 16
LOG_INTERVAL_S = 10.0
# Control requests answered per batch (what was waiting in the socket): each sender's first
# ones, at most CONTROL_PER_SENDER, and CONTROL_PER_BATCH in all. A client waits for each
# answer before its next request, so honest senders are never cut; a flood is, and the switch
# thread gets back to the socket before the kernel drops anybody's datagrams.
CONTROL_PER_SENDER = 8
CONTROL_PER_BATCH = 256


def over_share(
    senders: np.ndarray, per_sender: int = CONTROL_PER_SENDER, per_batch: int = CONTROL_PER_BATCH
) -> np.ndarray:
    """Which of a batch's control requests (their senders, in arrival order) go unanswered.

    Each sender keeps its first ``per_sender``; if more than ``per_batch`` remain, they are
    taken round by round (every sender's first, then every sender's second, ...), earliest first
    within a round, so a sender with one request is answered however many others flood.

    >>> over_share(np.array([7, 7, 7, 1, 7]), per_sender=2, per_batch=3).tolist()
    [False, False, True, False, True]
    """
    n = len(senders)
    order = np.argsort(senders, kind="stable")
    grouped = senders[order]
    firsts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n) - np.repeat(firsts, np.diff(np.r_[firsts, n]))
    keep = rank < per_sender
    if keep.sum() > per_batch:
        by_round = np.lexsort((np.arange(n), rank))
        keep[:] = False
        keep[by_round[:per_batch]] = True
    return ~keep


@dataclass
class _Bucket:
    allowance: float
    at: float


class CredentialLimiter:
    """Token bucket of failed credentials (wrong token, unknown job) per source host: a source
    that runs out gets no answers at all until it refills (within a millisecond: it owes
    nothing beyond an empty bucket, so an honest host behind the same address is not locked
    out for long), so guessing a 64-bit token runs at ``FAILURES_PER_S`` answers and a right
    guess cannot be told from silence."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        burst: float = FAILURE_BURST,
        per_s: float = FAILURES_PER_S,
    ) -> None:
        self.clock = clock
        self.burst = burst
        self.per_s = per_s
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _refilled(self, source: str, now: float) -> _Bucket | None:
        bucket = self._buckets.get(source)
        if bucket is not None:
            bucket.allowance = min(self.burst, bucket.allowance + (now - bucket.at) * self.per_s)
            bucket.at = now
        return bucket

    def charge(self, source: str, failures: int) -> None:
        """Count ``failures`` failed credentials of ``source``."""
        now = self.clock()
        bucket = self._refilled(source, now)
        if bucket is None:
            bucket = self._buckets[source] = _Bucket(self.burst, now)
            if len(self._buckets) > MAX_SOURCES:
                self._buckets.popitem(last=False)
        bucket.allowance = max(0.0, bucket.allowance - failures)  # no debt: silence ends soon
        self._buckets.move_to_end(source)

    def blocked(self, source: str) -> bool:
        """Whether ``source`` is out of allowance now (it gets no answer)."""
        if not self._buckets:
            return False
        bucket = self._refilled(source, self.clock())
        return bucket is not None and bucket.allowance < 1


class ErrorLog:
    """Logs each kind of error at most once per interval, with how many there were."""

    def __init__(
        self,
        log: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        interval_s: float = LOG_INTERVAL_S,
    ) -> None:
        self.log = log
        self.clock = clock
        self.interval_s = interval_s
        self._last: dict[str, float] = {}
        self._since: dict[str, int] = {}

    def note(self, kind: str, detail: str) -> None:
        now = self.clock()
        self._since[kind] = self._since.get(kind, 0) + 1
        if now - self._last.get(kind, -self.interval_s) >= self.interval_s:
            self.log.warning(
                "inc-switch: %d %s in the last %.0f s; latest: %s",
                self._since[kind],
                kind,
                self.interval_s,
                detail[:200],
            )
            self._last[kind] = now
            self._since[kind] = 0
