"""Event notifications end to end: a real Prosody, real clients and bots, real aiohttp notification sinks."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from component.app import App
from component.metrics import Metrics
from component.xmpp import Backoff
from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, REPO, Bot, ConnectClient, component_config, serve_posts
from tests.harness.servers import XmppServer

ECHO = f"echo@{COMPONENT}"


class Sink:
    """A notification service on loopback; `mode` is ok, hang (never answers) or an HTTP status."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], str]] = []
        self.mode: str | int = "ok"
        self.delay = 0.0
        self.running = 0
        self.peak = 0
        self.peers: set[tuple[str, int]] = set()
        self.arrived = asyncio.Condition()
        self.host = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.peers.add(request.transport.get_extra_info("peername"))  # type: ignore[union-attr]
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            body = await request.text()
            async with self.arrived:
                self.requests.append((request.path, dict(request.headers), body))
                self.arrived.notify_all()
            if self.mode == "hang":
                await asyncio.sleep(3600)
            await asyncio.sleep(self.delay)
            return web.Response(status=self.mode if isinstance(self.mode, int) else 200)
        finally:
            self.running -= 1

    async def wait_for(self, count: int) -> None:
        async with self.arrived:
            await asyncio.wait_for(self.arrived.wait_for(lambda: len(self.requests) >= count), WAIT)

    def bodies(self, path: str) -> list[str]:
        return [body for p, _, body in self.requests if p == path]

    async def start(self) -> None:
        self._runner, self.host = await serve_posts(self._handle, shutdown_timeout=0.1)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def sinks() -> AsyncIterator[Callable[[], Awaitable[Sink]]]:
    made: list[Sink] = []

    async def make() -> Sink:
        sink = Sink()
        await sink.start()
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.stop()


StartApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def start_app(server: XmppServer, bot: Bot) -> AsyncIterator[StartApp]:
    apps: list[App] = []

    async def start(pools: dict[str, Any], handlers: list[dict[str, Any]], flush_seconds: float = 5.0) -> App:
        cfg = component_config(
            server, bot.url, outgoing_pools={"http": pools}, event_pusher={"http": {"handlers": handlers}}
        )
        app = App(cfg, Metrics(), Backoff(first=0.1, most=1.0), flush_seconds=flush_seconds)
        apps.append(app)
        await app.start()
        await asyncio.wait_for(app.connected.wait(), WAIT)
        return app

    yield start
    for app in apps:
        if not app._stop.is_set():
            await app.stop()


def pool(sink: Sink, **options: Any) -> dict[str, Any]:
    connection = {"host": sink.host, **options.pop("connection", {})}
    return {"connection": connection, **options}


def value(app: App, name: str) -> float:
    return app.metrics.registry.get_sample_value(name, {"host_type": COMPONENT}) or 0.0


async def test_default_handler_sends_mongooseims_form(
    start_app: StartApp, sinks: Callable[[], Awaitable[Sink]], connect: ConnectClient
) -> None:
    sink = await sinks()
    app = await start_app(
        {"http_pool": pool(sink, connection={"path_prefix": "/webservice"})}, [{"path": "/notifications"}]
    )
    alice = await connect("alice")
    alice.say(f"Echo@{COMPONENT}", "Hi, Bob!")
    assert (await alice.next_message())["body"] == "Did you say Hi, Bob!?"
    await app.stop()  # flushes: every notification there is has been sent
    [(path, headers, body)] = sink.requests  # the bot's reply (an out event) sends nothing by default
    assert path == "/webservice/notifications"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert body == "author=alice&server=localhost&receiver=echo&message=Hi%2C+Bob%21"
    assert value(app, "mod_event_pusher_http_sent_count_total") == 1
    assert value(app, "mod_event_pusher_http_sent_response_time_count") == 1


async def test_every_handler_sees_every_event(
    start_app: StartApp, sinks: Callable[[], Awaitable[Sink]], connect: ConnectClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "examples"))
    sink = await sinks()
    app = await start_app(
        {"http_pool": pool(sink)},
        [
            {"path": "/notifications"},
            {"path": "/alerts", "callback_module": "alerts_callback"},
            {"path": "/all", "callback_module": "tests.notify_all"},
        ],
    )
    alice = await connect("alice")
    alice.send_presence(pto=ECHO)  # directed presence: available, then unavailable
    alice.send_presence(pto=ECHO, ptype="unavailable")
    alice.say(ECHO, "ping")
    await alice.next_message()
    alice.say(f"room@{COMPONENT}", "to the room", mtype="groupchat")
    async with asyncio.timeout(WAIT):  # the echo of a groupchat goes to the room (alice's bare JID): see it leave
        while app.metrics.registry.get_sample_value("bot_requests_total", {"outcome": "replied"}) != 2:
            await asyncio.sleep(0.02)
    await app.stop()
    assert sink.bodies("/notifications") == ["author=alice&server=localhost&receiver=echo&message=ping"]
    alerts = [json.loads(b) for b in sink.bodies("/alerts")]  # the bot's two replies
    assert len(alerts) == 2
    assert alerts[0] == {
        "bot": ECHO,
        "to": str(alice.boundjid),
        "type": "chat",
        "body": "Did you say ping?",
        "host": COMPONENT,
    }
    seen = [json.loads(b) for b in sink.bodies("/all")]
    kinds = [(e["direction"], e["kind"], e["type"]) for e in seen]
    for expected in [
        ("in", "presence", "available"),
        ("in", "presence", "unavailable"),
        ("in", "message", "chat"),
        ("out", "message", "chat"),
        ("in", "message", "groupchat"),
    ]:
        assert expected in kinds
    assert all(e["host_type"] == COMPONENT for e in seen)


async def test_a_hanging_endpoint_delays_neither_the_bot_nor_other_handlers(
    start_app: StartApp, sinks: Callable[[], Awaitable[Sink]], connect: ConnectClient
) -> None:
    stuck, good = await sinks(), await sinks()
    stuck.mode = "hang"
    await start_app(
        {"stuck": pool(stuck, workers=2, connection={"request_timeout": 60000}), "good": pool(good)},
        [{"pool_name": "stuck", "path": "/n"}, {"pool_name": "good", "path": "/n"}],
        flush_seconds=0.5,
    )
    alice = await connect("alice")
    for i in range(5):
        alice.say(ECHO, str(i))
    assert [(await alice.next_message())["body"] for _ in range(5)] == [f"Did you say {i}?" for i in range(5)]
    await good.wait_for(5)
    assert len(good.bodies("/n")) == 5
    await stuck.wait_for(2)
    await asyncio.sleep(0.2)
    assert (len(stuck.requests), stuck.peak, len(stuck.peers)) == (2, 2, 2)  # `workers` connections, no more


async def test_a_full_queue_drops_the_oldest(
    start_app: StartApp, sinks: Callable[[], Awaitable[Sink]], connect: ConnectClient, caplog: pytest.LogCaptureFixture
) -> None:
    stuck = await sinks()
    stuck.mode = "hang"
    app = await start_app(
        {"http_pool": pool(stuck, workers=1, connection={"request_timeout": 60000})},
        [{"path": "/n", "max_queued": 2}],
        flush_seconds=0.5,
    )
    alice = await connect("alice")
    alice.say(ECHO, "0")
    await stuck.wait_for(1)  # the one worker now hangs on the first notification
    for i in range(1, 6):
        alice.say(ECHO, str(i))
    for _ in range(6):
        await alice.next_message()
    # one in flight, two queued: three of the six dropped
    assert value(app, "mod_event_pusher_http_dropped_count_total") == 3
    assert any("dropped the oldest" in r.getMessage() for r in caplog.records)


async def test_failures_are_counted(
    start_app: StartApp, sinks: Callable[[], Awaitable[Sink]], connect: ConnectClient
) -> None:
    failing = await sinks()
    failing.mode = 500
    app = await start_app({"http_pool": pool(failing)}, [{"path": "/n"}])
    alice = await connect("alice")
    alice.say(ECHO, "x")
    await alice.next_message()
    await app.stop()
    assert value(app, "mod_event_pusher_http_sent_failure_count_total") == 1
    assert value(app, "mod_event_pusher_http_sent_count_total") == 0
    assert value(app, "mod_event_pusher_http_sent_response_time_count") == 0


async def test_metrics_on_the_web_endpoint(
    start_app: StartApp, sinks: Callable[[], Awaitable[Sink]], connect: ConnectClient
) -> None:
    sink = await sinks()
    app = await start_app({"http_pool": pool(sink)}, [{"path": "/n"}])
    alice = await connect("alice")
    alice.say(ECHO, "x")
    await alice.next_message()
    await sink.wait_for(1)
    await asyncio.sleep(0.1)
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{app.web_port}/metrics") as r:
        text = await r.text()
    assert f'mod_event_pusher_http_sent_count_total{{host_type="{COMPONENT}"}} 1.0' in text
    assert f'mod_event_pusher_http_sent_failure_count_total{{host_type="{COMPONENT}"}} 0.0' in text
    assert f'mod_event_pusher_http_sent_response_time_count{{host_type="{COMPONENT}"}} 1.0' in text


async def test_shutdown_flushes_the_queue(
    start_app: StartApp, sinks: Callable[[], Awaitable[Sink]], connect: ConnectClient, caplog: pytest.LogCaptureFixture
) -> None:
    sink = await sinks()
    sink.delay = 0.2
    app = await start_app({"http_pool": pool(sink, workers=1)}, [{"path": "/n"}])
    alice = await connect("alice")
    for i in range(4):
        alice.say(ECHO, str(i))
    for _ in range(4):
        await alice.next_message()
    caplog.set_level(logging.WARNING)
    await app.stop()  # four notifications at 0.2 s each, one at a time: well within the flush bound
    assert [b.rpartition("=")[2] for b in sink.bodies("/n")] == ["0", "1", "2", "3"]
    assert value(app, "mod_event_pusher_http_sent_count_total") == 4
    assert not any("gave up" in r.getMessage() for r in caplog.records)
