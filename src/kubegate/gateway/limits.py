"""Rate and concurrency limits, per identity: pure, with the clock passed in.

A :class:`TokenBucket` answers how long a caller must wait before its next request; a
:class:`Concurrency` counts open long-lived requests (watches, exec and port-forward
streams) against a ceiling. Both answer without blocking, so the caller can refuse with
429 and a ``Retry-After``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float) -> float:
        """Take one token: answers 0 when granted, else the seconds until one is free."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        # The tolerance keeps a caller pacing at exactly the rate from a float rounding refusal.
        if self.tokens >= 1 - 1e-9:
            self.tokens = max(0.0, self.tokens - 1)
            return 0.0
        return (1 - self.tokens) / self.rate


def retry_after(wait: float) -> int:
    """A wait as the integer seconds of ``Retry-After`` (client-go understands only those)."""
    return max(1, math.ceil(wait))


@dataclass(slots=True)
class RateLimiter:
    """One :class:`TokenBucket` per key, made on first use; idle full buckets are dropped."""

    rate: float
    burst: float
    buckets: dict[Hashable, TokenBucket] = field(default_factory=dict)
    _last_sweep: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a rate limiter needs rate > 0 and burst >= 1")

    def take(self, key: Hashable, now: float) -> float:
        """Seconds ``key`` must wait (0: go ahead, and the token is spent)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, stamp=now)
        wait = bucket.take(now)
        if now - self._last_sweep > 60:
            self._sweep(now)
        return wait

    def _sweep(self, now: float) -> None:
        """Forget buckets that have refilled: they are indistinguishable from new ones."""
        self._last_sweep = now
        full = [
            key for key, b in self.buckets.items() if b.tokens + (now - b.stamp) * b.rate >= b.burst
        ]
        for key in full:
            del self.buckets[key]


@dataclass(slots=True)
class Concurrency:
    """Open long-lived requests per key, at most ``limit`` each."""

    limit: int
    open: dict[Hashable, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a concurrency limit must be at least 1")

    def acquire(self, key: Hashable) -> bool:
        """Count one more for ``key``; False (and nothing counted) at the limit."""
        count = self.open.get(key, 0)
        if count >= self.limit:
            return False
        self.open[key] = count + 1
        return True

    def release(self, key: Hashable) -> None:
        count = self.open.get(key, 0) - 1
        if count > 0:
            self.open[key] = count
        else:
            self.open.pop(key, None)
