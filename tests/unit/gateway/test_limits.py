from __future__ import annotations

import pytest

from kubegate.gateway.limits import Concurrency, RateLimiter, TokenBucket, retry_after

# --- TokenBucket ----------------------------------------------------------------------------


def test_bucket_starts_full_and_grants_a_burst() -> None:
    bucket = TokenBucket(rate=1, burst=3, stamp=100.0)
    assert [bucket.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]


def test_empty_bucket_answers_the_wait_until_the_next_token() -> None:
    bucket = TokenBucket(rate=2, burst=1, stamp=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == pytest.approx(0.5)
    assert bucket.take(0.25) == pytest.approx(0.25)


def test_refused_take_spends_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=1, stamp=0.0)
    bucket.take(0.0)
    for _ in range(5):
        assert bucket.take(0.5) > 0
    assert bucket.take(1.0) == 0.0


def test_bucket_refills_at_rate_up_to_burst() -> None:
    bucket = TokenBucket(rate=2, burst=2, stamp=0.0)
    bucket.take(0.0)
    bucket.take(0.0)
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) > 0
    # A long idle time refills only to the burst, not beyond.
    granted = [bucket.take(1000.0) for _ in range(3)]
    assert granted[:2] == [0.0, 0.0]
    assert granted[2] > 0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0), (1, 0.5)])
def test_bucket_refuses_a_useless_configuration(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        TokenBucket(rate=rate, burst=burst)


# --- retry_after ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wait", "seconds"), [(0.0, 1), (0.001, 1), (1.0, 1), (1.01, 2), (2.5, 3), (59.9, 60)]
)
def test_retry_after_rounds_up_to_whole_seconds_at_least_one(wait: float, seconds: int) -> None:
    assert retry_after(wait) == seconds


# --- RateLimiter ----------------------------------------------------------------------------


def test_rate_limiter_keeps_a_bucket_per_key() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    assert limiter.take("alice", 10.0) == 0.0
    assert limiter.take("alice", 10.0) > 0
    assert limiter.take("bob", 10.0) == 0.0


def test_new_key_starts_with_a_full_burst_at_any_clock_value() -> None:
    limiter = RateLimiter(rate=1, burst=2)
    assert limiter.take("k", 5_000_000.0) == 0.0
    assert limiter.take("k", 5_000_000.0) == 0.0
    assert limiter.take("k", 5_000_000.0) == pytest.approx(1.0)


def test_rate_limiter_forgets_refilled_buckets_on_a_sweep() -> None:
    limiter = RateLimiter(rate=1, burst=1)
    limiter.take("idle", 100.0)
    limiter.take("busy", 100.0)
    limiter.take("busy", 100.0)
    limiter.take("busy", 161.5)
    limiter.take("busy", 161.5)
    assert "idle" not in limiter.buckets
    assert "busy" in limiter.buckets


def test_rate_limiter_keeps_a_drained_bucket_across_a_sweep() -> None:
    limiter = RateLimiter(rate=0.005, burst=1)
    limiter.take("k", 100.0)
    limiter.take("other", 200.0)
    assert "k" in limiter.buckets
    assert limiter.take("k", 200.0) == pytest.approx(100.0)


def test_forgetting_a_bucket_does_not_grant_more_than_the_burst() -> None:
    limiter = RateLimiter(rate=1, burst=2)
    limiter.take("k", 0.0)
    limiter.take("k", 0.0)
    limiter.take("other", 100.0)
    assert "k" not in limiter.buckets
    assert [limiter.take("k", 100.0) for _ in range(3)][2] > 0


# --- Concurrency ----------------------------------------------------------------------------


def test_concurrency_refuses_at_the_limit_per_key() -> None:
    watches = Concurrency(limit=2)
    assert watches.acquire("alice")
    assert watches.acquire("alice")
    assert not watches.acquire("alice")
    assert watches.acquire("bob")


def test_refused_acquire_counts_nothing() -> None:
    watches = Concurrency(limit=1)
    watches.acquire("k")
    assert not watches.acquire("k")
    watches.release("k")
    assert watches.acquire("k")


def test_release_frees_a_slot_and_forgets_idle_keys() -> None:
    watches = Concurrency(limit=1)
    watches.acquire("k")
    watches.release("k")
    assert watches.open == {}
    assert watches.acquire("k")


def test_extra_release_does_not_raise_the_limit() -> None:
    watches = Concurrency(limit=1)
    watches.release("k")
    watches.release("k")
    assert watches.acquire("k")
    assert not watches.acquire("k")


def test_a_limit_below_one_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Concurrency(limit=0)


def test_a_rate_limiter_without_rate_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        RateLimiter(rate=0, burst=5)


def test_a_caller_pacing_at_exactly_the_rate_is_never_refused() -> None:
    bucket = TokenBucket(rate=3, burst=1)
    for i in range(1, 301):
        assert bucket.take(i / 3) == 0
