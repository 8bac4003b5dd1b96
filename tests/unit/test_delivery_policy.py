"""Queued delivery's pure policy: which outcomes are retried, the backoff's waits, Retry-After."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from component.delivery.policy import Backoff, retried_status, retry_after


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        pytest.param(408, True, id="408-request-timeout"),
        pytest.param(429, True, id="429-too-many-requests"),
        pytest.param(500, True, id="500"),
        pytest.param(502, True, id="502"),
        pytest.param(503, True, id="503"),
        pytest.param(504, True, id="504"),
        pytest.param(599, True, id="599"),
        pytest.param(400, False, id="400-final"),
        pytest.param(401, False, id="401-final"),
        pytest.param(403, False, id="403-final"),
        pytest.param(404, False, id="404-final"),
        pytest.param(410, False, id="410-final"),
        pytest.param(422, False, id="422-final"),
        pytest.param(301, False, id="301-final"),
    ],
)
def test_which_statuses_are_retried(status: int, retried: bool) -> None:
    assert retried_status(status) is retried


def test_the_waits_double_from_first_to_most_less_up_to_half() -> None:
    backoff = Backoff(first=1.0, most=60.0)
    assert [backoff.after(n, lambda: 0.0) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert [backoff.after(n, lambda: 1.0) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


@given(st.lists(st.floats(min_value=0.0, max_value=0.999999), min_size=12, max_size=12))
def test_with_any_jitter_each_wait_is_at_least_the_one_before_until_the_cap(draws: list[float]) -> None:
    backoff = Backoff(first=0.25, most=1000.0)  # uncapped for the first 12 failures
    waits = [backoff.after(n, iter([d]).__next__) for n, d in enumerate(draws, 1)]
    assert all(b >= a for a, b in itertools.pairwise(waits)), waits
    assert all(0.25 * 2 ** (n - 1) / 2 <= w <= 0.25 * 2 ** (n - 1) for n, w in enumerate(waits, 1))


def test_the_jitter_spreads_stanzas_that_failed_together() -> None:
    rng = random.Random(1)
    waits = {round(Backoff(1.0, 60.0).after(3, rng.random), 6) for _ in range(50)}
    assert len(waits) == 50 and min(waits) >= 2.0 and max(waits) <= 4.0


def test_no_overflow_after_many_failures() -> None:
    assert Backoff(1.0, 300.0).after(10**6, lambda: 0.0) == 300.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        pytest.param("2", 2.0, id="delay-seconds"),
        pytest.param(" 120 ", 120.0, id="spaces"),
        pytest.param("0", 0.0, id="zero"),
        pytest.param(None, None, id="absent"),
        pytest.param("soon", None, id="garbage"),
        pytest.param("-5", None, id="negative"),
        pytest.param("1.5", None, id="not-an-integer"),
        pytest.param("Wed, 21 Oct 2015 07:28:00 GMT", 0.0, id="date-in-the-past"),
    ],
)
def test_retry_after(header: str | None, seconds: float | None) -> None:
    assert retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC).timestamp()
    later = format_datetime(datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert later == "Wed, 25 Nov 2026 12:00:30 GMT"
    assert retry_after(later, now) == 30.0
