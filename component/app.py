"""Wiring and lifecycle: builds the parts, starts them in dependency order, stops them in reverse.

Stanzas in: stream -> Inbound (the bot bridge or the local answers). Stanzas out: everyone -> Outbox -> stream.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from contextlib import suppress
from dataclasses import replace
from typing import TYPE_CHECKING

from component import http_server, instance, web
from component.api import rooms as api_rooms
from component.api import server as api_server
from component.api import status as api_status
from component.api.iq import IqWaiter
from component.bot.bridge import Bridge
from component.bot.client import Client
from component.cluster import Peers, RouteCheck, Slots
from component.config import Config
from component.inbound import Inbound
from component.metrics import Metrics
from component.notify.pusher import Notifier
from component.outbox import Outbox
from component.rooms.manager import RoomManager
from component.stanza import Stanza
from component.xmpp import DEFAULT_BACKOFF, Backoff, ComponentStream

if TYPE_CHECKING:
    from component.notify.rabbit import Backoff as RabbitBackoff

log = logging.getLogger(__name__)
NOTIFY_FLUSH_SECONDS = 5.0
USER_AGENT = "xmpp-http-component"


class App:
    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        flush_seconds: float = NOTIFY_FLUSH_SECONDS,
        rabbit_backoff: RabbitBackoff | None = None,
    ) -> None:
        self.config = config
        self.flush_seconds = flush_seconds
        self.metrics = metrics or Metrics()
        self.instance = instance.resolve(config.instance.id)
        self.metrics.instance_info.labels(self.instance).set(1)
        self.backoff = replace(backoff, standby=config.component.standby_retry)
        slots = config.instance.slots
        self.slots = Slots(config.instance, config.component.jid, self.instance, self.metrics) if slots else None
        self.connected = asyncio.Event()
        self.web_port: int | None = None
        self.api_port: int | None = None
        self._web: http_server.Served | None = None
        self._api: http_server.Served | None = None
        self._stop = asyncio.Event()
        self._stopping = False
        self._supervisor: asyncio.Task[None] | None = None
        c = config.component
        self.notifier = Notifier(config, self.metrics, rabbit_backoff)
        emit = self.notifier.emit if config.handlers or config.rabbit is not None else None
        self.peers: Peers | None = None
        if self.slots is None:
            self.iq_waiter = IqWaiter()
        else:  # several instances: an iq's answer may reach another instance (component/api/iq.py)
            self.iq_waiter = IqWaiter(self.instance)
        self.http = Client({"User-Agent": USER_AGENT}, max_idle_per_origin=config.bot.max_in_flight)
        self.stream = ComponentStream(c.jid, c.secret, c.host, c.port, self._receive, self._refused)
        self.outbox = Outbox(self.stream, self.metrics, c.jid, c.max_stanza_bytes, emit)
        # with ejabberd's balancing over 2 or more slots: is anything routed to our connection? (component/cluster.py)
        self.route_check: RouteCheck | None = None
        if slots >= 2 and config.instance.probe_interval > 0:
            self.route_check = RouteCheck(config.instance, c.jid, self.stream.send_text, self.metrics)
        self._probing: asyncio.Task[None] | None = None
        self.rooms = RoomManager(config.rooms, c.jid, self.outbox.send, self.metrics, config.state.dir)
        if self.slots is not None:  # ... and a room's stanzas, another than the one that joined (rooms/manager.py)
            self.peers = Peers(config.instance, c.jid, self.instance, self.iq_waiter.take, self.rooms.peer)
            self.iq_waiter.forward = self.peers.forward
            self.rooms.share = self.peers.share
        self.bridge = Bridge(
            config.bot, c.jid, self.http, self._to_xmpp, self.metrics, c.max_stanza_bytes, config.state.dir
        )
        self.inbound = Inbound(
            config.bot.stanzas,
            self.bridge.submit,
            self.outbox.send,
            self.iq_waiter,
            self.metrics,
            config.presence.resource,
            c.jid,
            emit,
            self.rooms,
        )

    # the stream is built before the parts it feeds: it calls them through these two
    def _receive(self, stanza: Stanza, element: ET.Element) -> None:
        if self.route_check is not None and self.route_check.take(stanza):
            return
        self.inbound.receive(stanza, element)

    def _refused(self, stanza: Stanza) -> None:
        self.outbox.send(stanza)

    # what the bots and the send API send: addressed for the rooms the bots sit in, then out
    def _to_xmpp(self, stanza: Stanza) -> None:
        addressed = self.rooms.outgoing(stanza)
        if addressed is not None:
            self.outbox.send(addressed)

    def _send_all(self, stanzas: list[Stanza]) -> bool:
        if not self.stream.up:
            return False
        return self.outbox.send_all([s for s in map(self.rooms.outgoing, stanzas) if s is not None])

    def _stream_changed(self, up: bool) -> None:
        self.metrics.xmpp_connected.set(1 if up else 0)
        if self.bridge.delivery is not None:
            self.bridge.delivery.stream_changed(up)
        if up:
            self.metrics.xmpp_connects.inc()
            self.outbox.stream_up()
            self.connected.set()
            if self.route_check is None:
                self.rooms.stream_up()
            else:  # the rooms are joined once the server routes to this connection, not on each one it does not
                self._probing = asyncio.create_task(self.route_check.run(self.stream.recycle, self.rooms.stream_up))
        else:
            self.rooms.stream_down()
            self.connected.clear()
            if self._probing is not None:
                self._probing.cancel()
                self._probing = None
            if self.route_check is not None:
                self.route_check.stream_down()

    def serving(self) -> bool:
        """What /healthz says: the stream is up (and, with the route check, the server routes to it)."""
        return self.stream.up and (self.route_check is None or self.route_check.routed)

    async def start(self) -> None:
        delivery = self.bridge.delivery
        if delivery is not None:  # first: what the last run left queued is loaded, and POSTed once the stream is up
            delivery.stream_changed(False)
            delivery.open()
        self.rooms.open()
        self.notifier.start()
        if self.peers is not None:
            self.peers.start()
        listen = self.config.web.listen
        if listen is not None:
            app = web.make_app(self.metrics, self.serving)
            self._web = await http_server.serve(app, "web.listen", listen.host, listen.port, http_server.WEB_LIMITS)
            self.web_port = self._web.port
            log.info("serving /metrics and /healthz on %s:%d", listen.host, self.web_port)
        if self.slots is None:
            self._supervisor = asyncio.create_task(self.stream.maintain(self._stop, self.backoff, self._stream_changed))
        else:
            self._supervisor = asyncio.create_task(self._serve_slots(self.slots))
        if self.config.api.listen is not None:
            more = [] if delivery is None else [api_status.add_routes(delivery, self.config.api.token)]
            more.append(api_rooms.add_routes(self.rooms, self.config.api.token))
            self._api = await api_server.start(
                self.config, self.metrics, lambda: self.stream.up, self._send_all, self.iq_waiter, more
            )
            self.api_port = self._api.port
            log.info("send API on %s:%d", self.config.api.listen.host, self.api_port)

    async def _serve_slots(self, slots: Slots) -> None:
        """With [instance] slots: hold an XMPP connection only while holding a slot (component/cluster.py)."""
        while not self._stop.is_set():
            if await slots.take(self._stop) is None:
                break
            tenure = asyncio.Event()  # set when the stop begins or the lock is lost: the stream closes
            held = asyncio.create_task(self._hold(slots, tenure))
            try:
                await self.stream.maintain(tenure, self.backoff, self._stream_changed)
            finally:
                if not held.done():
                    held.cancel()
                    with suppress(asyncio.CancelledError):
                        await held
        await slots.release()

    async def _hold(self, slots: Slots, tenure: asyncio.Event) -> None:
        try:
            await slots.hold(self._stop)
        finally:
            tenure.set()

    async def stop(self) -> None:
        """Stop taking API requests; refuse new stanzas (each sender is told) while the bot requests under way
        finish (bounded); flush notifications; close the stream, then the queue of queued delivery (what it holds
        stays on disk for the next start), the servers and the client. Safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        if self._api is not None:
            await self._api.close()
        await self.bridge.drain(self.config.bot.timeout + 1)
        await self.notifier.stop(self.flush_seconds)
        self.rooms.stop()  # the bots leave their rooms before the stream closes
        self._stop.set()
        if self._supervisor is not None:
            await self._supervisor
        if self.bridge.delivery is not None:
            self.bridge.delivery.close()
        self.outbox.discard_held()
        if self.peers is not None:
            await self.peers.close()
        if self._web is not None:
            await self._web.close()
        self.http.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until `stop` is set, stop (also after a failed start: whatever started is stopped)."""
        try:
            await self.start()
            await stop.wait()
            log.info("stopping")
        finally:
            await self.stop()
