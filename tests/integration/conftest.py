"""Fixtures for real parts on loopback: a private Prosody or ejabberd, a real aiohttp bot, the component in the
test's loop, logged-in users. The parts themselves are in tests/harness/."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from component.app import App
from component.metrics import Metrics
from component.xmpp import Backoff
from tests.harness.clients import WAIT, Client, log_out, login
from tests.harness.parts import (
    FAST,
    SERVERS,
    Bot,
    ConnectClient,
    StartComponent,
    component_config,
    start_server,
)
from tests.harness.servers import XmppServer


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
    found = request.getfixturevalue(request.param)
    assert isinstance(found, XmppServer)
    return found


@pytest.fixture
async def bot() -> AsyncIterator[Bot]:
    b = Bot()
    await b.start()
    yield b
    await b.stop()


@pytest.fixture
async def start_component(server: XmppServer, bot: Bot) -> AsyncIterator[StartComponent]:
    """Start the component in this loop (`**sections` override config sections); stopped after the test."""
    apps: list[App] = []

    async def start(*, wait: bool = True, backoff: Backoff = FAST, **sections: dict[str, Any]) -> App:
        app = App(component_config(server, bot.url, **sections), Metrics(), backoff)
        apps.append(app)
        await app.start()
        if wait:
            await asyncio.wait_for(app.connected.wait(), WAIT)
        return app

    yield start
    for app in apps:
        await app.stop()


@pytest.fixture
async def connect(server: XmppServer) -> AsyncIterator[ConnectClient]:
    """Log a user in with `login` (roster fetched and initial presence sent, as a real client does); every client
    is disconnected after the test."""
    clients: list[Client] = []

    async def connect_(user: str, resource: str = "test") -> Client:
        client = await login(server, user, resource)
        clients.append(client)
        return client

    yield connect_
    await log_out(clients)
