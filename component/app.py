"""Builds the parts and runs them: start in dependency order, stop in reverse.

Every stanza from the server passes `App.dispatch`: type=error stanzas are dropped before any I/O (no
error loops), kinds listed in `bot.stanzas` go to the bot, the rest is answered locally.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET

from aiohttp import web

from component import api, codec, http1, local
from component.bot_client import new_client
from component.bridge import Bridge
from component.codec import Stanza
from component.config import Config, parse_listen
from component.events import Event
from component.metrics import Metrics
from component.notify.pusher import Notifier
from component.web import make_app
from component.web import start as start_web
from component.xmpp import DEFAULT_BACKOFF, Backoff, ComponentStream

log = logging.getLogger(__name__)
NOTIFY_FLUSH_SECONDS = 5.0


class App:
    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        flush_seconds: float = NOTIFY_FLUSH_SECONDS,
    ) -> None:
        self.config = config
        self.flush_seconds = flush_seconds
        self.metrics = metrics or Metrics()
        self.backoff = backoff
        self.web_port: int | None = None
        self.api_port: int | None = None
        self._api_runner: web.AppRunner | None = None
        self._pending_iqs: dict[str, tuple[str, asyncio.Future[Stanza]]] = {}
        self.connected = asyncio.Event()
        self._stop = asyncio.Event()
        self._stopping = False
        self._client: http1.Client | None = None
        self._runner: web.AppRunner | None = None
        self._supervisor: asyncio.Task[None] | None = None
        c = config.component
        self.stream = ComponentStream(c.jid, c.secret, c.host, c.port, self.dispatch)
        self.bridge: Bridge | None = None
        self.notifier = Notifier(config, self.metrics)

    # -- the way in --------------------------------------------------------------------------------------
    def dispatch(self, stanza: Stanza, element: ET.Element) -> None:
        self.metrics.received[stanza.kind].inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("received %s", stanza.xml)
        if self.notifier.active:
            self.notifier.emit(Event.of("in", stanza, self.config.component.jid))
        if stanza.kind == "iq" and stanza.type in ("result", "error") and stanza.id in self._pending_iqs:
            self._answered(stanza)
            return
        if stanza.type == "error":
            self.metrics.errors_received.inc()
            return  # never answer an error: no error loops
        try:
            if stanza.kind in self.config.bot.stanzas:
                assert self.bridge is not None
                self.bridge.submit(stanza)
            elif stanza.kind == "presence":
                for reply in local.answer_presence(stanza, self.config.presence.resource):
                    self.send(reply)
            elif stanza.kind == "iq":
                for reply in local.answer_iq(stanza, element):
                    self.send(reply)
        except Exception:  # the error boundary of the local flow
            self.metrics.internal_errors.inc()
            log.exception("internal error while handling a %s from %s", stanza.kind, stanza.from_)

    # -- the way out -------------------------------------------------------------------------------------
    def send(self, stanza: Stanza) -> None:
        too_large = codec.size_error((stanza,), self.config.component.max_stanza_bytes)
        if too_large is not None:  # the server would close the stream on it; the bot flow and the API say so
            self.metrics.stanzas_dropped.inc()
            log.warning("not sent to %s: %s", stanza.to, too_large)
            return
        if self.stream.send_text(stanza.xml):
            self.metrics.sent[stanza.kind].inc()
            if log.isEnabledFor(logging.DEBUG):
                log.debug("sent %s", stanza.xml)
            if self.notifier.active:
                self.notifier.emit(Event.of("out", stanza, self.config.component.jid))
        else:
            self.metrics.stanzas_dropped.inc()
            log.warning("stream down: could not send a %s to %s", stanza.kind, stanza.to)

    def send_all(self, stanzas: list[Stanza]) -> bool:
        """Send every stanza, or none when the stream is down."""
        if not self.stream.up:
            return False
        for stanza in stanzas:
            self.send(stanza)
        return True

    async def ask_iq(self, iq: Stanza, timeout: float) -> Stanza | None:
        """Send an iq get/set and wait for its answer (None after `timeout` seconds or if it cannot be sent)."""
        assert iq.id is not None
        if iq.id in self._pending_iqs:
            raise ValueError(f"an iq with id {iq.id!r} is already waiting for its answer")
        future: asyncio.Future[Stanza] = asyncio.get_running_loop().create_future()
        self._pending_iqs[iq.id] = (iq.to, future)
        try:
            if not self.send_all([iq]):
                return None
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            del self._pending_iqs[iq.id]

    def _answered(self, answer: Stanza) -> None:
        assert answer.id is not None
        to, future = self._pending_iqs[answer.id]
        # Only the account asked answers a result; an error may come from its server instead.
        if not future.done() and (answer.type == "error" or codec.bare(answer.from_) == codec.bare(to)):
            future.set_result(answer)

    # -- lifecycle ---------------------------------------------------------------------------------------
    def _stream_changed(self, up: bool) -> None:
        self.metrics.xmpp_connected.set(1 if up else 0)
        if up:
            self.metrics.xmpp_connects.inc()
            self.connected.set()
        else:
            self.connected.clear()

    async def start(self) -> None:
        bot = self.config.bot
        self._client = new_client()
        c = self.config.component
        self.bridge = Bridge(bot, c.jid, self._client, self.send, self.metrics, c.max_stanza_bytes)
        self.notifier.start()
        listen = parse_listen("web.listen", self.config.web.listen)
        if listen is not None:
            self._runner, self.web_port = await start_web(
                make_app(self.metrics, lambda: self.stream.up), "web.listen", *listen
            )
            log.info("serving /metrics and /healthz on %s:%d", listen[0], self.web_port)
        self._supervisor = asyncio.create_task(self.stream.maintain(self._stop, self.backoff, self._stream_changed))
        api_listen = parse_listen("api.listen", self.config.api.listen)
        if api_listen is not None:
            api_app = api.make_app(self.config, self.metrics, lambda: self.stream.up, self.send_all, self.ask_iq)
            self._api_runner, self.api_port = await start_web(api_app, "api.listen", *api_listen)
            log.info("send API on %s:%d", api_listen[0], self.api_port)

    async def stop(self) -> None:
        """Refuse new stanzas, drain the bot requests and flush notifications (bounded), close the stream, the
        web server, the sessions. Safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        if self._api_runner is not None:
            await self._api_runner.cleanup()
        self.stream.pause()
        if self.bridge is not None:
            await self.bridge.drain(self.config.bot.timeout + 1)
        await self.notifier.stop(self.flush_seconds)
        self._stop.set()
        if self._supervisor is not None:
            await self._supervisor
        if self._runner is not None:
            await self._runner.cleanup()
        if self._client is not None:
            self._client.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Start, serve until `stop` is set, stop (also after a failed start: whatever started is stopped)."""
        try:
            await self.start()
            await stop.wait()
            log.info("stopping")
        finally:
            await self.stop()
