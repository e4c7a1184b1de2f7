"""The one rate limiter: bursts, refill, per-client buckets in bounded memory, byte budgets."""

from __future__ import annotations

from scopelink.ratelimit import KeyedLimiter, TokenBucket


def test_a_bucket_allows_its_burst_then_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0, stamp=100.0)
    assert [bucket.take(now=100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(now=100.05)  # half a token back
    assert bucket.take(now=100.11)
    # Idle for a long time: never more than the burst.
    assert [bucket.take(now=200.0) for _ in range(4)] == [True, True, True, False]


def test_a_refused_take_costs_nothing() -> None:
    bucket = TokenBucket(rate=1000.0, burst=3000.0, tokens=1000.0, stamp=0.0)
    assert not bucket.take(1200.0, now=0.0)
    assert bucket.take(1000.0, now=0.0)  # what was held is still there


def test_a_byte_budget_follows_a_rate_that_changes() -> None:
    """The retransmission budget: empty at first, its rate set from the estimate each time."""
    bucket = TokenBucket(rate=0.0, burst=0.0, tokens=0.0, stamp=0.0)
    bucket.rate, bucket.burst = 10_000.0, 2_500.0
    assert bucket.take(1200.0, now=1.0) and bucket.take(1200.0, now=1.0)
    assert not bucket.take(1200.0, now=1.0)  # 2 500 held at most
    bucket.rate, bucket.burst = 1_000.0, 250.0  # the estimate fell
    assert not bucket.take(1200.0, now=2.0)


def test_clients_have_their_own_buckets() -> None:
    limiter = KeyedLimiter(rate=1.0, burst=2.0)
    assert [limiter.allow("a", now=0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("b", now=0.0), "b is not slowed down by a"
    assert not limiter.allow("a", now=0.5)
    assert limiter.allow("a", now=1.0)


def test_the_longest_idle_client_is_forgotten_past_the_bound() -> None:
    limiter = KeyedLimiter(rate=0.001, burst=1.0, max_keys=3)
    for key in "abc":
        assert limiter.allow(key, now=0.0)
    assert not limiter.allow("a", now=0.0)  # a is now the most recent
    assert limiter.allow("d", now=0.0)
    assert len(limiter) == 3
    assert limiter.allow("b", now=0.0), "b was forgotten, so it starts full again"
    assert not limiter.allow("a", now=0.0), "a was kept: still empty"
