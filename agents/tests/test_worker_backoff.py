"""The worker's retry schedule: exponential backoff with jitter, and the server's Retry-After."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from symphony_agent.client import MAX_RETRY_AFTER, Backoff, parse_retry_after


def test_backoff_doubles_up_to_its_cap_each_wait_in_the_upper_half_of_its_step():
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(8)]
    steps = [0.5, 1, 2, 4, 8, 8, 8, 8]
    assert all(step / 2 <= delay <= step for delay, step in zip(delays, steps, strict=True)), delays
    assert len(set(delays)) == len(delays)  # jittered: a fleet does not retry in step
    backoff.reset()
    assert backoff.next_delay() <= 0.5


def test_a_retry_after_wins_over_the_schedule_with_at_most_ten_percent_more():
    backoff = Backoff(base=0.5, cap=1.0, rng=random.Random(2))
    assert all(30 <= backoff.next_delay(retry_after=30) <= 33 for _ in range(20))


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    now = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
    assert parse_retry_after("120") == 120
    assert parse_retry_after("Tue, 01 Dec 2026 10:00:45 GMT", now=now) == 45
    assert parse_retry_after("Tue, 01 Dec 2026 09:00:00 GMT", now=now) == 0  # in the past: now
    assert parse_retry_after("999999") == MAX_RETRY_AFTER  # a misconfigured proxy cannot park the fleet
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
