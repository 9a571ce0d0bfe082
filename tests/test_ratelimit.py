"""The token bucket behind ``rate_limited``: its rate and burst, on a clock the test moves."""

from __future__ import annotations

from syncd.ratelimit import TokenBucket


class FakeTime:
    """A monotonic clock that only moves when told."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_allows_the_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=10, burst=5, clock=FakeTime())
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2


def test_tokens_come_back_at_the_rate_and_never_beyond_the_burst() -> None:
    time = FakeTime()
    bucket = TokenBucket(rate=10, burst=5, clock=time)
    assert all(bucket.take() for _ in range(5))
    time.now += 0.25  # 2.5 tokens
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    time.now += 60  # a long pause refills to the burst, not to 600
    assert sum(bucket.take() for _ in range(20)) == 5


def test_a_refused_message_spends_nothing() -> None:
    time = FakeTime()
    bucket = TokenBucket(rate=1, burst=1, clock=time)
    assert bucket.take()
    assert not any(bucket.take() for _ in range(100))
    time.now += 1.0
    assert bucket.take()
