"""The parts around the component in a test: constants, the servers with the test users, bots (real aiohttp
servers on loopback), the component's config and its metrics. No pytest in here: the fixtures that use these
live in tests/integration/conftest.py.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from component.app import App
from component.config import Config, from_dict
from component.xmpp import Backoff
from tests.harness.clients import USERS, Client
from tests.harness.servers import XmppServer, start_ejabberd, start_prosody

REPO = Path(__file__).resolve().parents[2]
COMPONENT = "bot.localhost"
SECRET = "s3cret"
FAST = Backoff(first=0.1, most=1.0, refused=3.0, handshake_timeout=5.0)
SERVERS = ("prosody", "ejabberd")
STARTERS: dict[str, Callable[..., XmppServer]] = {"prosody": start_prosody, "ejabberd": start_ejabberd}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class StartComponent(Protocol):
    """The `start_component` fixture: starts the component in the test's loop (`**sections` override config
    sections) and, with `wait`, returns once its stream is up."""

    def __call__(self, *, wait: bool = ..., backoff: Backoff = ..., **sections: dict[str, Any]) -> Awaitable[App]: ...


class ConnectClient(Protocol):
    """The `connect` fixture: `login` on the test's server, the client disconnected after the test."""

    def __call__(self, user: str, resource: str = ...) -> Awaitable[Client]: ...


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


async def serve_posts(handler: Handler, shutdown_timeout: float = 60.0) -> tuple[web.AppRunner, str]:
    """An aiohttp server on a free loopback port answering every POST with `handler`: (runner, base URL)."""
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def echo(request: web.Request) -> web.Response:
    """The example bot's answer: "Did you say <body>?"."""
    data = await request.json()
    return web.json_response({"body": f"Did you say {data.get('body')}?"})


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


def json_reply(obj: Any, status: int = 200, content_type: str = "application/json") -> Handler:
    """A bot handler answering every request with `obj` as JSON, under this status and content type."""

    async def handler(_request: web.Request) -> web.Response:
        return web.Response(
            status=status, body=json.dumps(obj).encode(), content_type=None, headers={"Content-Type": content_type}
        )

    return handler


def component_config(server: XmppServer, bot_url: str, **sections: dict[str, Any]) -> Config:
    """The component's config for `server` and the bot at `bot_url`; `sections` add to or override sections."""
    raw: dict[str, dict[str, Any]] = {
        "component": {"jid": COMPONENT, "secret": SECRET, "host": "127.0.0.1", "port": server.component_port},
        "bot": {"url": bot_url, "timeout": 5},
        "web": {"listen": "127.0.0.1:0"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return from_dict(raw, env={})


def metric(app: App, name: str, **labels: str) -> float:
    """A sample of the app's metrics registry; 0 when it has not been recorded."""
    value = app.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
