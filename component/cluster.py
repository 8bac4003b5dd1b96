"""Slots: which instances of several serving one domain hold an XMPP connection, decided by the RabbitMQ broker.

With `[instance] slots = N` (N > 0) there is one queue per domain and slot, `xhc.slot.<domain>.<i>` for i in
0..N-1, and a slot is held by the one instance whose consumer on its queue is exclusive (`basic.consume` with
`exclusive`: the broker refuses a second one with ACCESS_REFUSED). An instance takes the first free slot and only then
opens its XMPP connection; one that finds all N taken is a spare: it holds no XMPP connection and tries again every
`lock_retry` seconds. When an instance's process dies its AMQP connection closes and the broker frees the slot at
once; when its host or network hangs, the broker frees it after missing two AMQP heartbeats (`heartbeat`). The spare
that takes it then opens a fresh XMPP connection (on ejabberd with `domain_balancing`, a connection made while all
slots were full gets nothing, so a spare must not connect before it holds a slot). A restarted instance finds the
slots held and is a spare.

The rule that keeps two instances off one slot: an instance holds its XMPP connection only while it knows it holds
its lock. It checks with a round trip to the broker every heartbeat/2 seconds, given heartbeat/2 seconds to answer;
when a check fails (the broker is gone, the connection closed, no answer) it closes its XMPP stream at once and
goes back to trying to take a slot, as a spare. So it lets go at most about one heartbeat after the broker last
heard from it, while the broker frees the slot for another only after two. When the broker itself goes (a restart),
every lock frees at once while the instances that held them may not have noticed yet, so an instance that has just
connected (or reconnected) to the broker waits one heartbeat before it tries to take a slot: by then every former
holder has closed its stream. (A spare connected all along takes a slot the moment it frees: the kill -9 case.)
Without the broker no instance serves (the domain is safe, not available): the broker is the one shared part. An
instance whose XMPP stream drops keeps its slot and reconnects (the slot is free at the XMPP server the moment its
connection is gone); a spare takes over only from an instance that died or lost the broker.

`Peers` carries what instances tell each other: the answers to the send API's iqs (component/api/iq.py) and the
rooms' notes (component/rooms/manager.py). `RouteCheck` finds a connection that ejabberd routes nothing to.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from contextlib import suppress
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractConnection,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustConnection,
)

from component.config.sections import InstanceSection
from component.metrics import Metrics
from component.stanza import Stanza, from_element, parse

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 5.0


def broker(s: InstanceSection, name: str) -> dict[str, Any]:
    """aio-pika's connection arguments for the broker of `[instance]`; `name` shows in the broker's management."""
    return {
        "host": s.broker_host,
        "port": s.broker_port,
        "login": s.broker_username,
        "password": s.broker_password,
        "virtualhost": s.broker_virtual_host,
        "timeout": CONNECT_TIMEOUT,
        "heartbeat": s.heartbeat,
        "client_properties": {"connection_name": name},
    }


def queue_name(domain: str, slot: int) -> str:
    return f"xhc.slot.{domain}.{slot}"


async def _ignore(message: AbstractIncomingMessage) -> None:  # nothing is ever published to a slot's queue
    await message.reject(requeue=False)


class Slots:
    """Takes one of `[instance] slots` locks on the broker, holds it while the broker answers, lets it go."""

    def __init__(self, section: InstanceSection, domain: str, instance: str, metrics: Metrics) -> None:
        self._section = section
        self._domain = domain
        self._instance = instance
        self._metrics = metrics
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None  # the one whose consumer holds the slot
        self.slot: int | None = None
        self._broker_down = False  # said once until the broker is back

    async def take(self, stop: asyncio.Event) -> int | None:
        """Wait for a free slot and take it: its number, or None when `stop` is set first."""
        spare_said = False
        while not stop.is_set():
            try:
                if self._connection is None or self._connection.is_closed:
                    await self._connect()  # then a heartbeat's wait: see the module's docstring
                    with suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._section.heartbeat)
                    if stop.is_set():
                        break
                slot = await self._try_all()
            except (OSError, TimeoutError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
                await self._drop_connection()
                if not self._broker_down:
                    self._broker_down = True
                    s = self._section
                    log.error("cannot reach the broker at %s:%d for the slots' locks (%s); serving nothing until "
                              "it answers", s.broker_host, s.broker_port, exc or type(exc).__name__)  # fmt: skip
                slot = None
            if slot is not None:
                self.slot = slot
                self._metrics.instance_slot.set(slot)
                self._metrics.slot_takeovers.inc()
                log.info("took slot %d of %d (%s): connecting to XMPP", slot, self._section.slots,
                         queue_name(self._domain, slot))  # fmt: skip
                return slot
            if not spare_said and not self._broker_down:
                spare_said = True
                log.info("spare: all %d slots are held; trying every %g s to take one that frees",
                         self._section.slots, self._section.lock_retry)  # fmt: skip
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._section.lock_retry)
        return None

    async def _try_all(self) -> int | None:
        connection = self._connection
        assert connection is not None
        for slot in range(self._section.slots):
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(queue_name(self._domain, slot), auto_delete=False)
                await queue.consume(_ignore, exclusive=True)
            except aiormq.exceptions.ChannelAccessRefused:  # held by another instance; the broker closed the channel
                with suppress(Exception):
                    await channel.close()
                continue
            self._channel = channel
            return slot
        return None

    async def _connect(self) -> None:
        s = self._section
        self._connection = await aio_pika.connect(**broker(s, f"xmpp-http-component {self._instance}"))
        if self._broker_down:
            self._broker_down = False
            log.info("the broker answers again")

    async def hold(self, stop: asyncio.Event) -> bool:
        """Check the lock every heartbeat/2 seconds until `stop` is set (True) or a check fails (False: the lock is
        let go, the connection closed)."""
        assert self._channel is not None and self.slot is not None
        half = self._section.heartbeat / 2
        name = queue_name(self._domain, self.slot)
        while True:
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), half)
            if stop.is_set():
                return True
            try:
                await asyncio.wait_for(self._channel.declare_queue(name, passive=True), half)
            except (OSError, TimeoutError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
                log.error("lost the broker while holding slot %d (%s): closing the XMPP stream so that no two "
                          "instances serve one slot; trying to take a slot again", self.slot,
                          exc or type(exc).__name__)  # fmt: skip
                await self.release()
                return False

    async def release(self) -> None:
        """Let the slot go (closing the connection frees it at the broker)."""
        self.slot = None
        self._channel = None
        self._metrics.instance_slot.set(-1)
        await self._drop_connection()

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            with suppress(Exception):
                await asyncio.wait_for(connection.close(), CONNECT_TIMEOUT)


class Peers:
    """What instances tell each other through the broker, on one robust connection and one exclusive queue per
    instance:
    - the answers to the send API's iqs that reached another instance than the one that asked (component/api/iq.py):
      the direct exchange `xhc.iq.<domain>`, keyed by instance id; `forward` publishes an answer there under the id
      of the instance its iq id names, and what arrives goes to `deliver` (the IqWaiter);
    - notes on the rooms (component/rooms/manager.py, `peer`): the fanout exchange `xhc.rooms.<domain>`, JSON
      objects; `share` publishes one to every other instance, and each goes to `on_note(instance, note)`. A
      "hello" note goes out each time the queue is (re)opened.
    The connection is made again, with the queue and its consumer, when it drops; what is published while there is
    none is dropped with a warning (an iq's caller then gets a 504)."""

    def __init__(
        self,
        section: InstanceSection,
        domain: str,
        instance: str,
        deliver: Callable[[Stanza], object],
        on_note: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self._section = section
        self._iq_exchange_name = f"xhc.iq.{domain}"
        self._notes_exchange_name = f"xhc.rooms.{domain}"
        self._instance = instance
        self._deliver = deliver
        self._on_note = on_note
        self._connection: AbstractRobustConnection | None = None
        self._iq_exchange: AbstractExchange | None = None
        self._notes_exchange: AbstractExchange | None = None
        self._task: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._open())

    async def _open(self) -> None:
        s = self._section
        said = False
        while True:
            connection: AbstractRobustConnection | None = None
            try:
                connection = await aio_pika.connect_robust(
                    **broker(s, f"xmpp-http-component {self._instance} peers"), reconnect_interval=1
                )
                channel = await connection.channel()  # robust: made again with its queue when the broker is back
                iqs = await channel.declare_exchange(self._iq_exchange_name, aio_pika.ExchangeType.DIRECT)
                notes = await channel.declare_exchange(self._notes_exchange_name, aio_pika.ExchangeType.FANOUT)
                queue = await channel.declare_queue(exclusive=True)
                await queue.bind(iqs, routing_key=self._instance)
                await queue.bind(notes)
                await queue.consume(self._received, no_ack=True)
            except (OSError, TimeoutError, aiormq.exceptions.AMQPError, RuntimeError) as exc:
                if connection is not None:
                    with suppress(Exception):
                        await connection.close()
                if not said:
                    said = True
                    log.warning("cannot open this instance's queue on the broker (%s); retrying every second", exc)
                await asyncio.sleep(1.0)
                continue
            self._connection, self._iq_exchange, self._notes_exchange = connection, iqs, notes
            connection.reconnect_callbacks.add(lambda _connection: self.share({"t": "hello"}))
            self.share({"t": "hello"})
            return

    async def _received(self, message: AbstractIncomingMessage) -> None:
        try:
            if message.exchange == self._notes_exchange_name:
                sender = message.app_id or ""
                if sender != self._instance and self._on_note is not None:
                    note = json.loads(message.body)
                    if not isinstance(note, dict):
                        raise ValueError(f"not a JSON object: {message.body[:200]!r}")
                    self._on_note(sender, note)
                return
            element, kind = parse(message.body.decode())
            self._deliver(from_element(element, kind))
        except Exception:  # the error boundary of the queue: one bad message does not stop it
            log.exception("could not read a message of another instance (exchange %r)", message.exchange)

    def forward(self, owner: str, stanza: Stanza) -> None:
        """Publish `stanza` (an iq answer) to instance `owner`'s queue."""
        if self._iq_exchange is None:
            log.warning("no broker connection: dropped the answer (id %s) to an iq of instance %s", stanza.id, owner)
            return
        self._publish(self._iq_exchange, owner, stanza.xml.encode(), f"the answer (id {stanza.id}) to an iq")

    def share(self, note: dict[str, Any]) -> None:
        """Publish `note` to every other instance."""
        if self._notes_exchange is None:
            log.debug("no broker connection: not told to the other instances: %s", note.get("t"))
            return
        body = json.dumps(note, separators=(",", ":")).encode()
        self._publish(self._notes_exchange, "", body, f"a note ({note.get('t')}) to the other instances")

    def _publish(self, exchange: AbstractExchange, key: str, body: bytes, what: str) -> None:
        message = aio_pika.Message(body, app_id=self._instance)
        task = asyncio.create_task(self._send(exchange, key, message, what))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _send(self, exchange: AbstractExchange, key: str, message: aio_pika.Message, what: str) -> None:
        try:
            await exchange.publish(message, routing_key=key)
        except Exception as exc:
            log.warning("could not pass %s on: %s", what, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._publishing:
            await asyncio.wait(self._publishing, timeout=CONNECT_TIMEOUT)
        if self._connection is not None:
            with suppress(Exception):
                await asyncio.wait_for(self._connection.close(), CONNECT_TIMEOUT)


PROBE_USER = "xhc-probe"  # probes are addressed to xhc-probe@<domain>: that address is never a bot's
PROBES_PER_SLOT = 16  # a round sends 16 x slots probes: all of them miss a held slot with odds of about e^-16
PROBES_MOST = 512


class RouteCheck:
    """Does the XMPP server route anything to this connection? With ejabberd's `domain_balancing` a connection made
    while every slot of the domain was held (by a hung instance's connection that ejabberd has not yet dropped)
    completes its handshake and then gets nothing, and never takes the slot when it frees. A round sends probes
    from many bare JIDs of the domain to the domain itself (`PROBE_USER@<domain>`): `bare_source` spreads them over
    every slot, so a connection that holds one gets some back. A round comes back when one probe does within
    `probe_timeout`; a held connection runs a round every `probe_interval`. Two rounds in a row with nothing back
    (a held slot has odds of about e^-32 of that) mean the connection holds no slot: `unrouted` is called, and the
    stream is made again, which takes the slot the moment ejabberd frees it. Probes of other instances reach this
    one too, and stop here like its own (`take`)."""

    def __init__(
        self, section: InstanceSection, domain: str, send_text: Callable[[str], bool], metrics: Metrics
    ) -> None:
        self.target = f"{PROBE_USER}@{domain}"
        self._domain = domain
        self._send_text = send_text
        self._interval = section.probe_interval
        self._timeout = section.probe_timeout
        self._count = min(PROBES_MOST, PROBES_PER_SLOT * max(1, section.slots))
        self._metrics = metrics
        self._nonce = ""
        self._back: asyncio.Event | None = None
        self.routed = False  # until a probe of this connection came back
        metrics.xmpp_routed.set_function(lambda: int(self.routed))
        self._said = False  # the unrouted state is logged once until the connection is routed again

    def take(self, stanza: Stanza) -> bool:
        """True when `stanza` is a probe (this instance's or another's): it goes no further."""
        if stanza.to != self.target:
            return False
        if self._back is not None and (stanza.id or "").startswith(self._nonce):
            self._back.set()
        return True

    async def run(self, unrouted: Callable[[str], None], routed: Callable[[], None] | None = None) -> None:
        """Probe this connection until it proves unrouted (then `unrouted(why)` and return) or is cancelled;
        `routed()` is called when its first round comes back."""
        misses = 0
        while True:
            if await self._round():
                misses = 0
                if not self.routed:
                    self.routed = True
                    if routed is not None:
                        routed()
                    if self._said:
                        self._said = False
                        log.info("the XMPP server routes this domain's stanzas to this connection again")
                await asyncio.sleep(self._interval)
                continue
            misses += 1
            if misses < 2 and self.routed:
                continue  # one round with nothing back: try once more at once before acting
            why = (f"none of {self._count} probes came back within {self._timeout:g} s: the XMPP server routes "
                   "nothing to this connection (every balancing slot of the domain is held, one of them perhaps by a "
                   "hung instance's connection)")  # fmt: skip
            self.routed = False
            self._metrics.unrouted_reconnects.inc()
            if not self._said:
                self._said = True
                log.warning("%s; connecting again until a slot frees", why)
            unrouted(why)
            return

    async def _round(self) -> bool:
        self._nonce = f"{secrets.token_hex(6)}-"
        self._back = back = asyncio.Event()
        probes = "".join(
            f'<message to="{self.target}" from="{PROBE_USER}-{self._nonce}{i}@{self._domain}" type="headline" '
            f'id="{self._nonce}{i}"/>'
            for i in range(self._count)
        )
        if not self._send_text(probes):
            return False
        self._metrics.probes_sent.inc(self._count)
        try:
            await asyncio.wait_for(back.wait(), self._timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._back = None

    def stream_down(self) -> None:
        self.routed = False
