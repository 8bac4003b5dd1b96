"""One door out: every stanza written to the XMPP stream passes here, whoever produced it (bot replies, local
answers, the send API, the stream's own refusals). Size check, write, count, event, and a hold while the
stream is down.

While the stream is down, stanzas are held (at most `hold_max`, for at most `hold_seconds`) and written, in
order, once it is back: a reply produced during a server restart reaches its user instead of being dropped.
What is held too long, or pushed out by newer stanzas, is dropped, counted and logged.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from component.metrics import Metrics
from component.notify.events import Event
from component.stanza import Stanza

log = logging.getLogger(__name__)

HOLD_MAX = 10000
HOLD_SECONDS = 60.0


class Stream(Protocol):
    """What the outbox writes to (the component stream)."""

    @property
    def up(self) -> bool: ...

    def send_text(self, xml: str) -> bool: ...


class Outbox:
    def __init__(
        self,
        stream: Stream,
        metrics: Metrics,
        host_type: str,
        max_stanza_bytes: int,
        emit: Callable[[Event], None] | None = None,
        hold_max: int = HOLD_MAX,
        hold_seconds: float = HOLD_SECONDS,
    ) -> None:
        self._stream = stream
        self._metrics = metrics
        self._host_type = host_type
        self._limit = max_stanza_bytes
        self._emit = emit  # None when no notification handler is configured: no Event is built
        self._held: deque[tuple[float, Stanza]] = deque()
        self._hold_max = hold_max
        self._hold_seconds = hold_seconds
        self._dropped = 0
        metrics.stanzas_held.set_function(lambda: len(self._held))

    @property
    def up(self) -> bool:
        return self._stream.up

    def send(self, stanza: Stanza) -> None:
        """Write `stanza` now, or hold it until the stream is back."""
        if len(stanza.xml) * 4 > self._limit and len(stanza.xml.encode()) > self._limit:
            # the server would close the stream on it; the bot flow and the API refuse such stanzas earlier
            self._drop(f"a {stanza.kind} to {stanza.to} is over component.max_stanza_bytes ({self._limit})")
            return
        if self._held or not self._write(stanza):  # behind held stanzas, to keep the order
            self._hold(stanza)

    def send_all(self, stanzas: Sequence[Stanza]) -> bool:
        """Write every stanza now, or none and False when the stream is down (for callers that answer their own
        caller, like the send API: it says 503 rather than holding)."""
        if not self._stream.up or self._held:
            return False
        for stanza in stanzas:
            self.send(stanza)
        return True

    def stream_up(self) -> None:
        """The stream is back: write what was held, oldest first, dropping what waited too long."""
        if not self._held:
            return
        expired = time.monotonic() - self._hold_seconds
        sent = late = 0
        while self._held and self._stream.up:
            held_since, stanza = self._held[0]
            if held_since < expired:
                late += 1
                self._metrics.stanzas_dropped.inc()
            elif not self._write(stanza):
                break
            else:
                sent += 1
            self._held.popleft()
        log.info(
            "stream back: sent %d held stanzas; %d had waited over %g s and were dropped",
            sent,
            late,
            self._hold_seconds,
        )

    def discard_held(self) -> None:
        """At exit: what is still held is lost; count and say it."""
        if self._held:
            self._metrics.stanzas_dropped.inc(len(self._held))
            log.warning("exiting with %d stanzas held for a stream that did not come back", len(self._held))
            self._held.clear()

    def _write(self, stanza: Stanza) -> bool:
        if not self._stream.send_text(stanza.xml):
            return False
        self._metrics.sent[stanza.kind].inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("sent %s", stanza.xml)
        if self._emit is not None:
            self._emit(Event.of("out", stanza, self._host_type))
        return True

    def _hold(self, stanza: Stanza) -> None:
        if len(self._held) >= self._hold_max:
            self._held.popleft()
            self._drop(f"more than {self._hold_max} stanzas held while the stream is down: dropped the oldest")
        if not self._held:
            log.info("stream down: holding stanzas for up to %g s until it is back", self._hold_seconds)
        self._held.append((time.monotonic(), stanza))

    def _drop(self, reason: str) -> None:
        self._metrics.stanzas_dropped.inc()
        self._dropped += 1
        if self._dropped & (self._dropped - 1) == 0:  # 1, 2, 4, 8...: visible, never a flood
            log.warning("stanza not sent: %s (%d dropped so far)", reason, self._dropped)
