"""The event pusher's rabbit backend: events as JSON messages to RabbitMQ, with MongooseIM 6.5's exchanges, routing
keys and payloads, and none lost while the broker is away.

`RabbitPublisher.emit` maps an event (`rabbit_events.Mapping`, pure) and appends it to a bounded outbox, nothing
more: the bot flow never waits on the broker. One task connects (backoff with jitter), declares the exchanges, and
writes the outbox in order, many publishes per write. An event leaves the outbox when the broker acks it (publisher
confirms); one written but not acked when its connection drops is published again after the reconnect, so a consumer
may get it twice: every message carries a unique `message_id` to drop the second.

aio-pika and aiormq open the connection, declare the exchanges and close; the publishes and their acks, one of each
per event, go beside them, straight to and from the socket (`_ConfirmTap`, `RabbitPublisher._write`): through
aiormq they cost the bot flow, on the same event loop, two to three times as much (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import struct
import time
from bisect import bisect_left
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
from aio_pika.abc import ConnectionParameter
from aiormq.connection import TransportFactory
from aiormq.exceptions import AMQPConnectionError, AuthenticationError, ChannelClosed, ProbableAuthenticationError
from pamqp.commands import Basic
from yarl import URL

from component.metrics import Metrics
from component.notify.config import RABBIT_POOL, Rabbit
from component.notify.events import Event
from component.notify.rabbit_events import (
    CONTENT_HEAD,
    CONTENT_TAIL,
    FIXED_PROPERTIES,
    FLAGS,
    FRAME_BODY,
    FRAME_END,
    FRAME_HEADER,
    HEADER_SIZE,
    Mapping,
    Publication,
    body_frame,
    content_header,
)

log = logging.getLogger(__name__)

BATCH = 256  # publishes per write to the socket, at most
LINGER = 0.005  # seconds a write waits for more events, when fewer than BATCH wait
WINDOW = 1000  # publishes written and not yet acked, at most
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
    """An event in the outbox: what to publish, its message id (as the AMQP short string the content header carries)
    and time, and when it was last written."""

    __slots__ = ("message_id_field", "publication", "sent_at", "timestamp")

    def __init__(self, publication: Publication, message_id_field: bytes, timestamp: float) -> None:
        self.publication = publication
        self.message_id_field = message_id_field
        self.timestamp = timestamp
        self.sent_at = 0.0

    @property
    def message_id(self) -> str:
        return self.message_id_field[1:].decode()


# --- The socket: acks read, publishes written, beside aiormq -------------------------------------------------------

Confirm = tuple[int, bool, bool]  # a Basic.Ack or Basic.Nack: delivery tag, multiple, ack (else nack)


class Observations:
    """Values observed into a prometheus_client histogram child, many equal ones at once: `observe` takes two locks
    per value (1 µs an event); `add(value, count)` takes two per call, through the child's sum and bucket counters
    (what `observe` updates). Where those internals are not as expected, it calls `observe` `count` times."""

    def __init__(self, child: Any) -> None:
        self._child = child
        bounds: Any = getattr(child, "_upper_bounds", None)
        buckets: Any = getattr(child, "_buckets", None)
        total: Any = getattr(child, "_sum", None)
        fits = (
            isinstance(bounds, list)
            and isinstance(buckets, list)
            and len(bounds) == len(buckets) > 0
            and bounds[-1] == float("inf")
            and all(callable(getattr(counter, "inc", None)) for counter in [*buckets, total])
        )
        self._counters: tuple[list[float], list[Any], Any] | None = (bounds, buckets, total) if fits else None

    def add(self, value: float, count: int = 1) -> None:
        if self._counters is None:
            for _ in range(count):
                self._child.observe(value)
            return
        bounds, buckets, total = self._counters
        total.inc(value * count)
        buckets[bisect_left(bounds, value)].inc(count)  # the first bucket whose bound is >= value, as observe


_FRAME_HEAD = struct.Struct(">BHI")  # frame type, channel, payload size
_CONFIRM = struct.Struct(">HHQB")  # class, method, delivery tag, bits (multiple)
_METHOD, _FRAME_END = 1, 0xCE
_BASIC, _ACK, _NACK = 60, 80, 120
_CONFIRM_SIZE = _CONFIRM.size  # 13: the payload of a Basic.Ack or Basic.Nack
_CONFIRM_FRAME = 7 + _CONFIRM_SIZE + 1  # 21: a whole Basic.Ack or Basic.Nack frame
_TAG = struct.Struct(">QB")  # delivery tag, bits (multiple)
FORWARD_EVERY = 5.0  # seconds: an ack still goes through aiormq this often, so that it sees the broker alive


class _ConfirmTap(asyncio.Protocol):
    """The connection's protocol, between the socket and aiormq's own (a StreamReaderProtocol): every byte goes on
    to aiormq, in order, except the Basic.Ack and Basic.Nack frames of the publishing channel, which go to
    `on_confirm` as they arrive: 21 bytes read with `struct`, instead of aiormq's three reads, pamqp's unmarshalling
    and a queue between two tasks per frame (about 8 µs; the broker acks each publish alone when no queue takes it).

    It follows the frame boundaries from the connection's first byte. A frame that does not end with the frame-end
    octet means the stream is not what it expects: from then on everything goes to aiormq (which closes the
    connection on it) and the acks with it."""

    def __init__(self, inner: asyncio.StreamReaderProtocol, where: str) -> None:
        self.where = where
        self._inner = inner
        self._inner_received = inner.data_received
        self._held = b""  # the start of a frame whose header, or whole ack, is still to come
        self._skip = 0  # bytes of a frame already being passed on, still to come
        self._channel = -1  # none until `attach`
        # the first 11 bytes of a Basic.Ack of the channel; until `attach`, bytes no frame starts with (type 255)
        self._ack_head = b"\xff" * 11
        self._on_confirm: Callable[[list[Confirm]], None] | None = None
        self._forwarded_at = 0.0
        self._transport: asyncio.BaseTransport | None = None
        self.in_step = True

    def attach(self, channel: int, on_confirm: Callable[[list[Confirm]], None]) -> None:
        """From now on, the acks and nacks of `channel` go to on_confirm([(delivery tag, multiple, ack), ...]),
        once per read, in order."""
        self._channel = channel
        self._ack_head = _FRAME_HEAD.pack(_METHOD, channel, _CONFIRM_SIZE) + struct.pack(">HH", _BASIC, _ACK)
        self._on_confirm = on_confirm
        self._forwarded_at = time.monotonic()

    def data_received(self, data: bytes) -> None:
        if not self.in_step:
            self._inner_received(data)
            return
        if self._held:
            data = self._held + data
            self._held = b""
        size = len(data)
        pos = self._skip
        if pos >= size:  # all of it the middle of a frame being passed on
            self._skip = pos - size
            self._inner_received(data)
            return
        self._skip = 0
        start = 0  # the bytes before it are passed on or taken
        channel = self._channel if self._on_confirm is not None else -1
        confirms: list[Confirm] = []
        forward_one = time.monotonic() - self._forwarded_at >= FORWARD_EVERY
        ack = self._ack_head
        while size - pos >= 7:
            if data.startswith(ack, pos) and size - pos >= _CONFIRM_FRAME and data[pos + 20] == _FRAME_END:
                # a Basic.Ack of the channel, whole: the broker's answer to each publish, the case to be quick at
                tag, bits = _TAG.unpack_from(data, pos + 11)
                end = pos + _CONFIRM_FRAME
                if forward_one:  # this one through aiormq: its reader sees the broker alive
                    forward_one = False
                    self._forwarded_at = time.monotonic()
                else:
                    if start < pos:
                        self._inner_received(data[start:pos])
                    start = end
                    confirms.append((tag, bool(bits & 1), True))
                pos = end
                continue
            kind, number, length = _FRAME_HEAD.unpack_from(data, pos)
            end = pos + 8 + length
            confirm = kind == _METHOD and number == channel and length == _CONFIRM_SIZE
            if end > size:
                if not confirm:
                    self._skip = end - size  # passed on now, its rest too as it comes
                    pos = size
                break  # else held: perhaps an ack, taken once all of it is here
            if data[end - 1] != _FRAME_END:
                self.in_step = False
                log.error("RabbitMQ at %s: a frame without its end octet; every frame now goes to aiormq", self.where)
                pos = size
                break
            if confirm:
                class_, method, tag, bits = _CONFIRM.unpack_from(data, pos + 7)
                if class_ == _BASIC and method in (_ACK, _NACK):
                    if forward_one:  # this one through aiormq: its reader sees the broker alive
                        forward_one = False
                        self._forwarded_at = time.monotonic()
                    else:
                        if start < pos:
                            self._inner_received(data[start:pos])
                        start = end
                        confirms.append((tag, bool(bits & 1), method == _ACK))
            pos = end
        if not self.in_step:
            self._inner_received(data[start:])
        else:
            if pos < size:
                self._held = data[pos:]  # a frame header, or an ack, in two reads
            if start < pos:
                self._inner_received(data[start:pos] if start or pos < size else data)
        if confirms and self._on_confirm is not None:
            try:
                self._on_confirm(confirms)
            except Exception:  # a bug: said, and the connection closed, so that what it did not settle is published
                log.exception("RabbitMQ at %s: handling acks failed; closing the connection", self.where)
                self.in_step = False
                if self._transport is not None:
                    self._transport.close()

    # everything else is aiormq's
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._inner.connection_lost(exc)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _TapFactory(TransportFactory):
    """aiormq's way to open a connection's socket (its `transport_factory`), as its own TCP one does
    (asyncio.open_connection), with a `_ConfirmTap` in front of aiormq's protocol."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.tap: _ConfirmTap | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def create(self, url: URL, **kwargs: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        kwargs.pop("ssl_context_provider", None)  # plain TCP, as aiormq's own for amqp://
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(loop=loop)
        inner = asyncio.StreamReaderProtocol(reader, loop=loop)
        try:
            transport, tap = await loop.create_connection(
                lambda: _ConfirmTap(inner, self.where), url.host or "localhost", url.port or 5672, **kwargs
            )
        except OSError as exc:
            raise AMQPConnectionError(*exc.args) from exc
        self.tap = tap
        self.writer = asyncio.StreamWriter(transport, inner, reader, loop)
        return reader, self.writer


class _Connection(aio_pika.Connection):
    """aio-pika's connection, passing a `transport_factory` on to aiormq (as its RobustConnection adds its own
    parameters)."""

    PARAMETERS = (
        *aio_pika.Connection.PARAMETERS,
        ConnectionParameter(name="transport_factory", parser=lambda factory: factory, is_kwarg=True),
    )


class _Link:
    """One connection, its channel, and the items written on that channel and not yet acked, by delivery tag."""

    def __init__(
        self,
        connection: aio_pika.abc.AbstractConnection,
        channel: aiormq.Channel,
        tap: _ConfirmTap,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.connection = connection
        self.channel = channel
        self.tap = tap
        self.writer = writer
        self.closed = channel.closing  # done once the channel or its connection closes
        self.tag = 0  # the delivery tag of the last publish written on the channel
        self.unconfirmed: dict[int, _Item] = {}  # in the order written (the tags ascend)
        self.lowest = 1  # no tag below it is unconfirmed: where a "multiple" ack starts looking
        self.publish_frames: dict[tuple[str, ...], bytes] = {}  # marshalled once per (exchange, routing key)


class RabbitPublisher:
    """The outbox and the one task that publishes it. `emit` never waits; `stop` flushes for a bounded time."""

    def __init__(self, rabbit: Rabbit, metrics: Metrics, host_type: str, backoff: Backoff = DEFAULT_BACKOFF) -> None:
        self._rabbit = rabbit
        self._mapping = Mapping(rabbit)
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
        self._held = False  # the loop cannot write what waits (window full, or a pause): emit need not wake it
        # message ids: <16 random hex digits>-<12 hex digits counting>, unique across restarts and in order within
        # one; as a short string, its length octet first
        self._id_head = bytes((29,)) + secrets.token_hex(8).encode() + b"-"
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
        self._confirm_times = Observations(metrics.rabbit_confirm_time.labels(*labels))
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
        found = self._mapping(event)
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
        self._waiting.append(_Item(found, self._id_head + b"%012x" % self._seq, time.time()))
        self._idle.clear()
        if not self._held:
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
        factory = _TapFactory(self.where)
        connection = _Connection(url, transport_factory=factory)
        try:
            await connection.connect(timeout=CONNECT_TIMEOUT)
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
            if factory.tap is None or factory.writer is None:
                raise TypeError("this aiormq did not open its socket through its transport_factory")
        except BaseException:
            with contextlib.suppress(Exception):
                await connection.close()
            raise
        link = _Link(connection, raw, factory.tap, factory.writer)
        link.closed.add_done_callback(lambda _: self._wakeup.set())
        if self._confirms:
            # The broker's acks and nacks come to _confirmed straight from the socket (_ConfirmTap), one dict pop
            # per tag: through aiormq they cost 8 µs per frame to read, and its handler resolves one future per
            # publish (docs/benchmarks.md). The few the tap lets through (and all of them, should it lose step)
            # reach aiormq's channel reader, which calls this method for every Basic.Ack and Basic.Nack; the
            # check above fails the connection loudly if a version does not.
            confirmed = partial(self._confirmed, link)
            link.tap.attach(raw.number, confirmed)

            async def through_aiormq(frame: Basic.Ack | Basic.Nack | Basic.Reject) -> None:
                multiple = bool(getattr(frame, "multiple", False))
                confirmed([(frame.delivery_tag or 0, multiple, isinstance(frame, Basic.Ack))])

            raw._on_confirm_frame = through_aiormq  # type: ignore[method-assign]
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
                if link.closed.done() or link.channel.is_closed or link.writer.is_closing():
                    break  # closed while lingering
                try:
                    self._write(link, min(room, BATCH, len(self._waiting)))
                except (RuntimeError, OSError) as exc:  # the socket closed under the write
                    return f"{type(exc).__name__}: {exc}"  # _down puts its items back
                await asyncio.sleep(0)  # the loop's other work, between writes
                continue
            self._wakeup.clear()
            self._window_full = bool(self._waiting) and room <= 0  # then an ack wakes this loop; else it need not
            # While what waits cannot be written, a new event need not wake this loop (an ack, the pause's end, the
            # link's closing or stop do): woken for each, it would take a turn of the event loop per event for
            # nothing, just when the broker is slow.
            self._held = self._window_full or (pause > 0 and bool(self._waiting))
            try:
                if pause > 0 and self._waiting:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), pause)
                else:
                    await self._wakeup.wait()
            finally:
                self._held = False
        return _why(link.closed)

    def _write(self, link: _Link, count: int) -> None:
        """Write `count` publishes from the head of the outbox to the socket in one write, each with the next
        delivery tag of the channel. Straight to the socket, beside aiormq's writer task: this channel carries
        nothing but these publishes, each write is whole frames, and WINDOW bounds what the socket buffers.
        Each publish is its Basic.Publish frame (marshalled once per exchange and routing key), its content header
        and its body frame (content_frames, unrolled here: this loop runs for every event)."""
        raw = link.channel
        number, max_content = raw.number, raw.max_content_size
        waiting, unconfirmed, heads = self._waiting, link.unconfirmed, link.publish_frames
        head_of, tail_of = CONTENT_HEAD.pack, CONTENT_TAIL.pack
        parts: list[bytes] = []
        add = parts.append
        now = time.monotonic()
        first = tag = link.tag
        for _ in range(count):
            item = waiting.popleft()
            tag += 1
            unconfirmed[tag] = item  # from here on, _down puts it back if the link goes
            item.sent_at = now
            found = item.publication
            head = heads.get(found[:2])
            if head is None:
                head = self._publish_frame(link, found, number)
            body = found.body
            size = len(body)
            add(head)
            if size > max_content:
                add(content_header(number, size, item.message_id, int(item.timestamp)))
                for start in range(0, size, max_content):
                    add(body_frame(number, body[start : start + max_content]))
                continue
            mid = item.message_id_field
            add(head_of(FRAME_HEADER, number, HEADER_SIZE + len(mid), 60, 0, size, FLAGS))
            add(FIXED_PROPERTIES)
            add(mid)
            add(tail_of(int(item.timestamp), 0xCE, FRAME_BODY, number, size))
            add(body)
            add(FRAME_END)
        link.tag = tag
        link.writer.write(b"".join(parts))
        if not self._confirms:  # without confirms, written is all there is to know
            for written in range(first + 1, tag + 1):
                unconfirmed.pop(written, None)
            self._m_published.inc(count)
            self._settle_idle()

    @staticmethod
    def _publish_frame(link: _Link, found: Publication, number: int) -> bytes:
        if len(link.publish_frames) >= 4096:
            link.publish_frames.clear()
        frame = link.publish_frames[found[:2]] = pamqp.frame.marshal(
            Basic.Publish(exchange=found.exchange, routing_key=found.routing_key), number
        )
        return frame

    def _confirmed(self, link: _Link, confirms: list[Confirm]) -> None:
        """The broker's answers of one read, in order: each to one publish, or to every one up to its tag
        ("multiple"). An ack takes them out of the outbox; a nack puts them back at its head, to be published again
        after a pause. The metrics are counted once per read: events written together and acked in one read share
        their confirm time."""
        unconfirmed = link.unconfirmed
        now = time.monotonic()
        acked = 0
        sent_at, same = 0.0, 0  # a run of acked events written together: one confirm time, `same` of them
        for tag, multiple, ack in confirms:
            if not multiple:  # the broker acks each publish alone when no queue takes it: the short way
                item = unconfirmed.pop(tag, None)
                if item is None:
                    continue
                settled = [item]
            else:
                lowest = link.lowest
                # the tags up to this one: counted from the lowest unsettled, or taken from the unconfirmed ones (in
                # the order written, so ascending) when that is fewer, as after many acks of one publish each
                tags = (
                    range(lowest, tag + 1) if tag - lowest < len(unconfirmed) else [t for t in unconfirmed if t <= tag]
                )
                settled = [item for t in tags if (item := unconfirmed.pop(t, None)) is not None]
                link.lowest = max(lowest, tag + 1)
                if not settled:
                    continue
            if not ack:
                self._nacked(settled)
                continue
            self._nacks = 0
            acked += len(settled)
            for item in settled:
                if item.sent_at == sent_at:
                    same += 1
                else:
                    if same:
                        self._confirm_times.add(now - sent_at, same)
                    sent_at, same = item.sent_at, 1
        if same:
            self._confirm_times.add(now - sent_at, same)
        if acked:
            self._m_published.inc(acked)
            if not unconfirmed and not self._waiting:
                self._idle.set()
        if self._window_full:
            self._window_full = False
            self._wakeup.set()  # room in the window

    def _nacked(self, settled: list[_Item]) -> None:
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
