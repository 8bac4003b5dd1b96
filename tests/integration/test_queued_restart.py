"""Queued delivery survives a crash: the component runs as its own process (`python -m component`), stanzas are
queued while the bot is down, the component is killed with SIGKILL, and after a restart with the bot back every
one of them is delivered (counted on disk before, at the bot and at the client after), in order per conversation.
A clean stop (SIGTERM) keeps the queue on disk as well."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, ConnectClient
from tests.harness.processes import ComponentProcess
from tests.harness.servers import XmppServer, free_port
from tests.integration.test_queued import REPLY, TOKEN, IdempotentBot, by_conversation, replies

N = 50
CONVERSATIONS = 5


@pytest.fixture
def server(prosody: XmppServer) -> XmppServer:
    return prosody


class Component(ComponentProcess):
    """The component process, with the send API's count of what is pending."""

    async def pending(self) -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.api_port}/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}
            ) as resp,
        ):
            return int((await resp.json())["pending"])


@pytest.fixture
async def component(server: XmppServer, tmp_path: Path) -> AsyncIterator[tuple[Component, IdempotentBot]]:
    """The component process, queued delivery on, and its bot, not started (down)."""
    bot = IdempotentBot(free_port())
    web_port, api_port = free_port(), free_port()
    config = tmp_path / "component.toml"
    config.write_text(
        f'[component]\njid = "{COMPONENT}"\nport = {server.component_port}\n'
        f'[bot]\nurl = "{bot.url}/{{local}}"\ndelivery = "queued"\nretry_first = 0.2\nretry_most = 0.5\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f'[web]\nlisten = "127.0.0.1:{web_port}"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\ntoken = "{TOKEN}"\n'
    )
    process = Component(config, web_port, tmp_path / "component.log", api_port, TOKEN)
    yield process, bot
    await process.close()
    await bot.stop()


def on_disk(state: Path) -> int:
    with sqlite3.connect(state / "queue.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM pending").fetchone()[0])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_stanzas_queued_before_a_stop_are_delivered_after_the_restart(
    component: tuple[Component, IdempotentBot],
    connect: ConnectClient,
    tmp_path: Path,
    sig: signal.Signals,
) -> None:
    process, bot = component
    await process.start()
    alice = await connect("alice")
    sent: list[tuple[str, str]] = []
    for i in range(N):  # the bot is down: every one is queued and retried
        to, text = f"echo{i % CONVERSATIONS}@{COMPONENT}", f"m{i}"
        alice.say(to, text)
        sent.append((to, text))
    async with asyncio.timeout(WAIT):
        while await process.pending() < N:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # a few retries under way
    code = await process.stop(sig)
    assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    assert on_disk(tmp_path / "state") == N  # none lost: every one is still queued
    assert alice.messages.empty()

    await bot.start()
    await process.start()
    got = await replies(alice, N, 30)
    assert all(m["type"] == "chat" for m in got), [str(m) for m in got if m["type"] != "chat"]
    heard = by_conversation([(m["from"].bare, REPLY.fullmatch(m["body"])[1]) for m in got])  # type: ignore[index]
    assert heard == by_conversation(sent)
    ids = [webhook_id for webhook_id, _ in bot.processed]
    assert len(ids) == len(set(ids)) == N
    assert by_conversation([(data["to"], data["body"]) for _, data in bot.processed]) == by_conversation(sent)
    async with asyncio.timeout(WAIT):
        while on_disk(tmp_path / "state"):
            await asyncio.sleep(0.05)
    assert await process.stop(signal.SIGTERM) == 0
    log = process.log.read_text()
    assert f"{N} stanzas left by the last run are delivered first" in log
    assert "Traceback" not in log
