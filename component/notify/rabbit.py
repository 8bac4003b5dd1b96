"""The event pusher's rabbit backend: events as JSON messages to RabbitMQ, with MongooseIM 6.5's exchanges, routing
keys and payloads, and none lost while the broker is away.

`RabbitPublisher.emit` maps an event (`rabbit_events.publication`, pure) and appends it to a bounded outbox, nothing
more: the bot flow never waits on the broker. One task connects (backoff with jitter), declares the exchanges, and
writes the outbox in order, many publishes per write. An event leaves the outbox when the broker acks it (publisher
confirms); one written but not acked when its connection drops is published again after the reconnect, so a consumer
may get it twice: every message carries a unique `message_id` to drop the second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import aio_pika
import aio_pika.abc
import aiormq
import aiormq.exceptions
import pamqp.frame
from aiormq.abc import ChannelFrame
from aiormq.exceptions import AuthenticationError, ChannelClosed, ProbableAuthenticationError
from pamqp.commands import Basic
from yarl import URL

from component.metrics import Metrics
from component.notify.config import RABBIT_POOL, Rabbit
from component.notify.events import Event
from component.notify.rabbit_events import Publication, body_frame, content_header, publication

log = logging.getLogger(__name__)

BATCH = 256  # publishes per write to the socket, at most
LINGER = 0.005  # seconds a write waits for more events, when fewer than BATCH wait
WINDOW = 250  # publishes written and not yet acked, at most
CONNECT_TIMEOUT = 10.0
MAX_ROUTING_KEY = 255  # bytes: AMQP's short string


# --- Reconnecting ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between attempts to reach the broker: doubling from `first` to `most`, each shortened at random by
    up to `jitter` of itself, so that components restarted together do not knock in step."""

    first: float = 0.5
    most: float = 30.0
    jitter: float = 0.5

    def after(self, failures: int, draw: Callable[[], float] = random.random) -> float:
        delay = min(self.most, self.first * 2.0 ** min(max(0, failures - 1), 64))
        return delay * (1 - self.jitter * draw())


DEFAULT_BACKOFF = Backoff()


class _Item:
    """An event in the outbox: what to publish, its message id and time, and when it was last written."""

    __slots__ = ("message_id", "publication", "sent_at", "timestamp")

    def __init__(self, publication: Publication, message_id: str, timestamp: float) -> None:
        self.publication = publication
        self.message_id = message_id
        self.timestamp = timestamp
        self.sent_at = 0.0


class _Link:
    """One connection, its channel, and the items written on that channel and not yet acked, by delivery tag."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection, channel: aiormq.Channel) -> None:
        self.connection = connection
        self.channel = channel
        self.closed = channel.closing  # done once the channel or its connection closes
        self.unconfirmed: dict[int, _Item] = {}  # in the order written (the tags ascend)
        self.lowest = 1  # no tag below it is unconfirmed: where a "multiple" ack starts looking
        self.publish_frames: dict[tuple[str, str], bytes] = {}  # marshalled once per exchange and routing key


class RabbitPublisher:
    """The outbox and the one task that publishes it. `emit` never waits; `stop` flushes for a bounded time."""

    def __init__(self, rabbit: Rabbit, metrics: Metrics, host_type: str, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self._rabbit = rabbit
        self._host_type = host_type
        self._backoff = backoff
        c = rabbit.connection
        self.where = f"{c.host}:{c.port} (virtual host {c.virtual_host!r})"
        self._confirms = c.confirms_enabled
        self._max_queued = rabbit.pusher.max_queued
        self._waiting: deque[_Item] = deque()
        self._link: _Link | None = None
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = False
        self._window_full = False  # the loop waits for acks to make room
        self._instance = secrets.token_hex(8)  # message ids: unique across restarts, in order within one
        self._seq = 0
        self._dropped = 0
        self._nacks = 0  # in a row
        self._paused_until = 0.0
        self.connected = False
        labels = (host_type, RABBIT_POOL)
        self._m_connected = metrics.rabbit_connected.labels(*labels)
        self._m_opened = metrics.rabbit_opened.labels(*labels)
        self._m_closed = metrics.rabbit_closed.labels(*labels)
        self._m_connect_failed = metrics.rabbit_connect_failed.labels(*labels)
        self._m_published = metrics.rabbit_published.labels(*labels)
        self._m_failed = metrics.rabbit_failed.labels(*labels)
        self._m_timeout = metrics.rabbit_timeout.labels(*labels)
        self._m_confirm_time = metrics.rabbit_confirm_time.labels(*labels)
        self._m_dropped = metrics.rabbit_dropped.labels(*labels)
        metrics.rabbit_queued.labels(*labels).set_function(lambda: self.outstanding)

    @property
    def outstanding(self) -> int:
        """Events not yet published (acked): waiting, or written and unconfirmed."""
        return len(self._waiting) + (len(self._link.unconfirmed) if self._link is not None else 0)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def emit(self, event: Event) -> None:
        """Append what `event` publishes to the outbox; past max_queued the oldest waiting event is dropped."""
        if self._stopped:
            return
        found = publication(event, self._rabbit)
        if found is None:
            return
        if len(found.routing_key) * 4 > MAX_ROUTING_KEY and len(found.routing_key.encode()) > MAX_ROUTING_KEY:
            self._drop(f"routing key over {MAX_ROUTING_KEY} bytes: {found.routing_key[:80]}...")
            return
        if self.outstanding >= self._max_queued:
            if not self._waiting:  # every event is written and awaits its ack: the new one cannot wait
                self._drop("the outbox is full of unconfirmed events")
                return
            self._waiting.popleft()
            self._drop("the outbox is full: dropped the oldest waiting event")
        self._seq += 1
        self._waiting.append(_Item(found, f"{self._instance}-{self._seq}", time.time()))
        self._idle.clear()
        self._wakeup.set()

    def _drop(self, reason: str) -> None:
        self._dropped += 1
        self._m_dropped.inc()
        if self._dropped & (self._dropped - 1) == 0:  # 1, 2, 4, 8...: visible, never a flood
            log.warning(
                "event for RabbitMQ at %s not published: %s (%d dropped so far)", self.where, reason, self._dropped
            )

    async def stop(self, timeout: float) -> None:
        """Publish what waits, for up to `timeout` seconds; then close. What is left is counted and logged."""
        if self._task is None:
            self._stopped = True
            return
        self._stopping = True  # no more lingering: publish what waits at once
        self._wakeup.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        self._stopped = True
        was_connected = self.connected
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        if was_connected:
            log.info("closed the connection to RabbitMQ at %s", self.where)
        left = len(self._waiting)
        if left:
            self._dropped += left
            self._m_dropped.inc(left)
            log.warning("gave up on %d events not confirmed by RabbitMQ at %s at shutdown", left, self.where)
            self._waiting.clear()

    # -- the publishing task ------------------------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                link = await self._open()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._m_connect_failed.inc()
                self._log_failure(failures, exc)
                await asyncio.sleep(self._backoff.after(failures))
                continue
            self._up(link, failures)
            failures = 0
            reason = "closed"
            try:
                reason = await self._publish(link)
            except Exception as exc:  # a bug, or an error the channel did not report as its closing: reconnect
                reason = f"{type(exc).__name__}: {exc}"
                log.exception("publishing to RabbitMQ at %s failed", self.where)
            finally:
                again = self._down(link)
                await _close(link)
            log.warning(
                "lost the connection to RabbitMQ at %s: %s; %d events wait (%d written but not confirmed will be "
                "published again), reconnecting",
                self.where,
                reason,
                len(self._waiting),
                again,
            )
            await asyncio.sleep(self._backoff.after(1))

    async def _open(self) -> _Link:
        """Connect, open the channel (confirms on or off), declare the exchanges that are on."""
        c = self._rabbit.connection
        url = URL.build(
            scheme="amqp",
            host=c.host,
            port=c.port,
            user=c.username,
            password=c.password,
            path="/" + c.virtual_host,
            query={"name": f"xmpp-http-component {self._host_type}"},
        )
        connection = await aio_pika.connect(url, timeout=CONNECT_TIMEOUT)
        try:
            channel = await connection.channel(publisher_confirms=self._confirms)
            for key, exchange in (
                ("presence_exchange", self._rabbit.presence),
                ("chat_msg_exchange", self._rabbit.chat),
                ("groupchat_msg_exchange", self._rabbit.groupchat),
            ):
                if exchange is None:
                    continue
                try:
                    await channel.declare_exchange(exchange.name, exchange.type, durable=exchange.durable)
                except ChannelClosed as exc:
                    raise _DeclareFailed(f"event_pusher.rabbit.{key}: cannot declare {exchange.name!r}: {exc}") from exc
            raw = await channel.get_underlay_channel()
            if not isinstance(raw, aiormq.Channel) or not callable(getattr(raw, "_on_confirm_frame", None)):
                raise TypeError(f"this aiormq ({type(raw).__module__}) does not pass acks to _on_confirm_frame")
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        link = _Link(connection, raw)
        link.closed.add_done_callback(lambda _: self._wakeup.set())
        if self._confirms:
            # The broker's acks and nacks come here instead of to aiormq's handler, which resolves one future per
            # publish and scans every unconfirmed one for each "multiple" ack: that was 10 of the 25 µs per event
            # the backend cost (docs/benchmarks.md). aiormq's channel reader calls this method for every
            # Basic.Ack and Basic.Nack; the check above fails the connection loudly if a version does not.
            raw._on_confirm_frame = partial(self._confirmed, link)  # type: ignore[method-assign]
        return link

    def _up(self, link: _Link, failures: int) -> None:
        self._link = link
        self.connected = True
        self._m_connected.set(1)
        self._m_opened.inc()
        after = f" after {failures} failed attempts" if failures else ""
        on = [e.name for e in (self._rabbit.presence, self._rabbit.chat, self._rabbit.groupchat) if e is not None]
        log.info(
            "connected to RabbitMQ at %s%s; exchanges declared: %s; %d events waiting",
            self.where,
            after,
            ", ".join(on),
            len(self._waiting),
        )

    def _down(self, link: _Link) -> int:
        """The link is gone: what it wrote and did not see acked goes back to the head of the outbox, in order."""
        again = list(link.unconfirmed.values())
        link.unconfirmed.clear()
        self._waiting.extendleft(reversed(again))
        if again and self._confirms:
            self._m_timeout.inc(len(again))
        self._link = None
        self.connected = False
        self._m_connected.set(0)
        self._m_closed.inc()
        return len(again)

    async def _publish(self, link: _Link) -> str:
        """Write the outbox, in order, while the link is up; returns why it went down."""
        while not (link.closed.done() or link.channel.is_closed):
            room = WINDOW - len(link.unconfirmed)
            pause = self._paused_until - time.monotonic()
            if self._waiting and room > 0 and pause <= 0:
                if len(self._waiting) < BATCH and not self._stopping:
                    # Linger: the events of the next few milliseconds go in the same write, and the broker then
                    # acks them together. Fewer writes and acks cost the bot flow, on the same loop, less.
                    await asyncio.sleep(LINGER)
                    room = WINDOW - len(link.unconfirmed)
                try:
                    await self._write(link, min(room, BATCH, len(self._waiting)))
                except (
                    aiormq.exceptions.AMQPError,
                    aiormq.exceptions.ChannelInvalidStateError,
                    ConnectionError,
                ) as exc:
                    return f"{type(exc).__name__}: {exc}"  # closed under the write: _down puts its items back
                continue
            self._wakeup.clear()
            self._window_full = bool(self._waiting) and room <= 0  # then an ack wakes this loop; else it need not
            if pause > 0 and self._waiting:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), pause)
            else:
                await self._wakeup.wait()
        return _why(link.closed)

    async def _write(self, link: _Link, count: int) -> None:
        """Write `count` publishes from the head of the outbox in one frame, each with the next delivery tag of the
        channel (under its lock, as aiormq's own basic_publish takes them): one write instead of one per message."""
        raw = link.channel
        parts: list[bytes] = []
        async with raw.lock:
            now = time.monotonic()
            first = raw.delivery_tag + 1
            for _ in range(count):
                item = self._waiting.popleft()
                raw.delivery_tag += 1
                link.unconfirmed[raw.delivery_tag] = item  # from here on, _down puts it back if the link goes
                item.sent_at = now
                parts.append(self._frames(link, item, raw.number, raw.max_content_size))
            written = raw.create_future()
            await raw.write_queue.put(ChannelFrame(b"".join(parts), should_close=False, drain_future=written))
        await asyncio.wait([written, link.closed], return_when=asyncio.FIRST_COMPLETED)
        if not self._confirms and written.done() and written.exception() is None:
            for tag in range(first, first + count):  # without confirms, written is all there is to know
                link.unconfirmed.pop(tag, None)
            self._m_published.inc(count)
            self._settle_idle()

    def _frames(self, link: _Link, item: _Item, number: int, max_content: int) -> bytes:
        found = item.publication
        key = (found.exchange, found.routing_key)
        head = link.publish_frames.get(key)
        if head is None:
            if len(link.publish_frames) >= 4096:
                link.publish_frames.clear()
            head = link.publish_frames[key] = pamqp.frame.marshal(
                Basic.Publish(exchange=found.exchange, routing_key=found.routing_key), number
            )
        body = found.body
        parts = [head, content_header(number, len(body), item.message_id, int(item.timestamp))]
        for start in range(0, len(body), max_content):
            chunk = body[start : start + max_content]
            parts.append(body_frame(number, chunk))
        return b"".join(parts)

    async def _confirmed(self, link: _Link, frame: Basic.Ack | Basic.Nack) -> None:
        """The broker's answer to one publish, or to every one up to its tag ("multiple"): an ack takes them out of
        the outbox; a nack puts them back at its head, to be published again after a pause."""
        unconfirmed, tag = link.unconfirmed, frame.delivery_tag
        if frame.multiple:
            settled = [item for t in range(link.lowest, tag + 1) if (item := unconfirmed.pop(t, None)) is not None]
            link.lowest = max(link.lowest, tag + 1)
        else:
            item = unconfirmed.pop(tag, None)
            settled = [] if item is None else [item]
        if not settled:
            return
        if isinstance(frame, Basic.Ack):
            self._nacks = 0
            self._m_published.inc(len(settled))
            now = time.monotonic()
            for item in settled:
                self._m_confirm_time.observe(now - item.sent_at)
            self._settle_idle()
        else:
            self._nacks += 1
            self._m_failed.inc(len(settled))
            self._waiting.extendleft(reversed(settled))
            delay = self._backoff.after(self._nacks)
            self._paused_until = time.monotonic() + delay
            if self._nacks & (self._nacks - 1) == 0:
                log.warning(
                    "RabbitMQ at %s nacked %d publishes; publishing them again in %.1f s",
                    self.where,
                    len(settled),
                    delay,
                )
            self._wakeup.set()  # published again: wake the loop, for after the pause
        if self._window_full:
            self._window_full = False
            self._wakeup.set()  # room in the window

    def _settle_idle(self) -> None:
        if not self._waiting and (self._link is None or not self._link.unconfirmed):
            self._idle.set()

    def _log_failure(self, failures: int, exc: Exception) -> None:
        if failures & (failures - 1):  # 1, 2, 4, 8...: the state stays visible, never a flood
            log.debug("RabbitMQ at %s: attempt %d failed: %s", self.where, failures, exc)
            return
        if isinstance(exc, AuthenticationError | ProbableAuthenticationError):
            what = "refused the login (outgoing_pools.rabbit.event_pusher.connection.username and .password)"
            log.error("RabbitMQ at %s %s: %s; retrying", self.where, what, exc)
        elif isinstance(exc, _DeclareFailed):
            log.error("RabbitMQ at %s: %s; retrying", self.where, exc)
        else:
            log.warning(
                "cannot reach RabbitMQ at %s (attempt %d): %s; events wait in the outbox (up to %d), retrying",
                self.where,
                failures,
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__,
                self._max_queued,
            )


class _DeclareFailed(Exception):
    """An exchange could not be declared (it exists with another type or durability, or access is refused)."""


def _why(closed: asyncio.Future[Any]) -> str:
    if closed.cancelled():
        return "closed"
    error = closed.exception()
    return f"{type(error).__name__}: {error}" if error is not None else "closed"


async def _close(link: _Link) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(link.connection.close(), 5)
