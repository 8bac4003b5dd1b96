"""Real parts on loopback: a private Prosody or ejabberd, real aiohttp bots, the component in-process, slixmpp."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from slixmpp import ClientXMPP
from slixmpp.stanza import Message, Presence
from xmpp_servers import XmppServer, start_ejabberd, start_prosody

from component.app import App
from component.config import Config, from_dict
from component.metrics import Metrics
from component.xmpp import Backoff

USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"}
COMPONENT = "bot.localhost"
SECRET = "s3cret"
WAIT = 10.0
FAST = Backoff(first=0.1, most=1.0, refused=3.0, handshake_timeout=5.0)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


SERVERS = ("prosody", "ejabberd")
STARTERS: dict[str, Callable[..., XmppServer]] = {"prosody": start_prosody, "ejabberd": start_ejabberd}


def start_server(kind: str, workdir: Path) -> XmppServer:
    """Start a private `kind` server in `workdir` with the component secret and the USERS registered."""
    server = STARTERS[kind](workdir, component_secret=SECRET)
    try:
        for user, password in USERS.items():
            server.register(user, password)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppServer]:
    server = start_server("prosody", tmp_path_factory.mktemp("prosody"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ejabberd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppServer]:
    server = start_server("ejabberd", tmp_path_factory.mktemp("ejabberd"))
    yield server
    server.stop()


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> XmppServer:
    """The XMPP server a test runs against: every test using it runs once per server (ids `[prosody]`, `[ejabberd]`).

    Each session server starts on first use only.
    """
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


async def serve_posts(handler: Handler, shutdown_timeout: float = 60.0) -> tuple[web.AppRunner, str]:
    """An aiohttp server on a free loopback port answering every POST with `handler`: (runner, base URL)."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


class Bot:
    """A real aiohttp bot on loopback; `handler` decides each answer, `requests` keeps what was POSTed."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.handler: Handler = echo
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        self.requests.append(await request.json())
        return await self.handler(request)

    async def start(self) -> None:
        self._runner, base = await serve_posts(self._handle)
        self.url = f"{base}/bot"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def echo(request: web.Request) -> web.Response:
    data = await request.json()
    return web.json_response({"body": f"Did you say {data.get('body')}?"})


@pytest.fixture
async def bot() -> AsyncIterator[Bot]:
    b = Bot()
    await b.start()
    yield b
    await b.stop()


def component_config(server: XmppServer, bot_url: str, **sections: dict[str, Any]) -> Config:
    raw: dict[str, dict[str, Any]] = {
        "component": {"jid": COMPONENT, "secret": SECRET, "host": "127.0.0.1", "port": server.component_port},
        "bot": {"url": bot_url, "timeout": 5},
        "web": {"listen": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return from_dict(raw, env={})


StartComponent = Callable[..., Awaitable[App]]


@pytest.fixture
async def start_component(server: XmppServer, bot: Bot) -> AsyncIterator[StartComponent]:
    """Start the component in this loop (`**sections` override config sections); stopped after the test."""
    apps: list[App] = []

    async def start(wait: bool = True, backoff: Backoff = FAST, **sections: dict[str, Any]) -> App:
        app = App(component_config(server, bot.url, **sections), Metrics(), backoff)
        apps.append(app)
        await app.start()
        if wait:
            await asyncio.wait_for(app.connected.wait(), WAIT)
        return app

    yield start
    for app in apps:
        await app.stop()


class Client(ClientXMPP):  # type: ignore[misc]
    """A real XMPP user: what it receives lands in queues the test reads."""

    def __init__(self, jid: str, password: str) -> None:
        # The test server offers SASL PLAIN without TLS; slixmpp needs both allowed explicitly.
        super().__init__(jid, password, plugin_config={"feature_mechanisms": {"unencrypted_plain": True}})
        self.enable_plaintext = True
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.presences: asyncio.Queue[Presence] = asyncio.Queue()
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092")
        self.register_plugin("xep_0199")
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("message_error", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)

    async def next_message(self, timeout: float = WAIT) -> Message:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def no_message(self, within: float = 0.5) -> None:
        with suppress(TimeoutError):
            msg = await asyncio.wait_for(self.messages.get(), within)
            raise AssertionError(f"unexpected message: {msg}")

    def say(self, to: str, body: str, **attrs: str) -> Message:
        msg = self.make_message(mto=to, mbody=body, mtype=attrs.pop("mtype", "chat"))
        for name, value in attrs.items():
            msg[name] = value
        msg.send()
        return msg


ConnectClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def connect(server: XmppServer) -> AsyncIterator[ConnectClient]:
    """Log a user in (roster fetched and initial presence sent, as a real client does)."""
    clients: list[Client] = []

    async def connect_(user: str, resource: str = "test") -> Client:
        client = Client(f"{user}@{server.domain}/{resource}", USERS[user])
        clients.append(client)
        started = asyncio.get_running_loop().create_future()
        client.add_event_handler("session_start", lambda _e: started.done() or started.set_result(None))
        client.add_event_handler(
            "failed_auth", lambda _e: started.done() or started.set_exception(AssertionError("auth failed"))
        )
        client.connect(host="127.0.0.1", port=server.c2s_port)
        await asyncio.wait_for(started, WAIT)
        await client.get_roster(timeout=WAIT)
        client.send_presence()
        return client

    yield connect_
    # slixmpp replaces `disconnected` with a new future once a disconnect completes: take them first.
    waits = [client.disconnected for client in clients]
    for client in clients:
        client.disconnect(wait=0.5)
    for waiting in waits:
        with suppress(TimeoutError):
            await asyncio.wait_for(waiting, 2)


def json_reply(obj: Any, status: int = 200, content_type: str = "application/json") -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(
            status=status, body=json.dumps(obj).encode(), content_type=None, headers={"Content-Type": content_type}
        )

    return handler


def metric(app: App, name: str, **labels: str) -> float:
    value = app.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


REPO = Path(__file__).resolve().parents[2]
