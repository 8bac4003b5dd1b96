"""Pure: which failed attempts are tried again, and after how long (exponential backoff with jitter, Retry-After)."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class Backoff:
    """Waits between attempts: `first` doubling up to `most`, each shortened at random by up to half of itself
    ("equal jitter"). While under `most`, a wait is never shorter than the one before it (the n-th lies in
    [d/2, d], the next in [d, 2d]), and stanzas that failed together do not come back in step."""

    first: float
    most: float

    def after(self, failures: int, draw: Callable[[], float] = random.random) -> float:
        """The wait after the `failures`-th failed attempt (1 for the first)."""
        delay = min(self.most, self.first * 2.0 ** min(max(0, failures - 1), 64))
        return delay * (1 - 0.5 * draw())


def retried_status(status: int) -> bool:
    """A status worth another attempt: 408 (Request Timeout), 429 (Too Many Requests) and every 5xx. Any other
    non-2xx status is the bot's final answer."""
    return status >= 500 or status in (408, 429)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """The seconds a Retry-After header asks to wait (RFC 9110: delay-seconds or an HTTP-date), or None when
    there is none or it cannot be read. A date in the past is 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; an obsolete form may parse without a zone
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
