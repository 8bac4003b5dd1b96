"""Queued delivery through a real Prosody, with real clients and real aiohttp bots: a bot that is down for a while
gets every stanza exactly once per webhook-id, in order per conversation, and the client every reply in order; a
bot that always fails is given up on (the sender told, a dead letter listed and re-queued); Retry-After is waited
for. The kill -9 restart is in test_queued_restart.py."""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slixmpp.stanza import Message
from standardwebhooks.webhooks import Webhook

from tests.harness.clients import WAIT, Client
from tests.harness.parts import COMPONENT, ConnectClient, StartComponent, metric
from tests.harness.servers import XmppServer, free_port

TOKEN = "queued-token-0123"
SECRET = "whsec_" + base64.b64encode(b"queued-delivery-signing-key-0123").decode()
OUTAGE = float(os.environ.get("XHC_TEST_OUTAGE", "5"))  # seconds the bot is down in the first test (the issue: 30)
REPLY = re.compile(r"Did you say (.*)\?")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
def server(prosody: XmppServer) -> XmppServer:
    """Prosody only: queued delivery does not depend on the XMPP server."""
    return prosody


class IdempotentBot:
    """A bot on a fixed loopback port that can stop and start again, and treats `webhook-id` as an idempotency
    key, as the README asks: a repeated id is answered as the first time and not processed again. `requests`
    keeps every request (retries included), `processed` each id's first one, in the order they came."""

    def __init__(self, port: int, secret: str | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.hook = Webhook(secret) if secret else None
        self.requests: list[tuple[str, dict[str, Any], float]] = []  # (webhook-id, JSON, time.monotonic())
        self.processed: list[tuple[str, dict[str, Any]]] = []
        self.answers: dict[str, dict[str, Any]] = {}
        self.fail_after_processing: Callable[[int], bool] = lambda _n: False  # the n-th processed (1, 2, ...)
        self.handler: Handler | None = None  # instead of all of the above
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.handler is not None:
            return await self.handler(request)
        if self.hook is not None:
            self.hook.verify(await request.read(), dict(request.headers))  # raises: a 500, and the test fails
        data = await request.json()
        webhook_id = request.headers["webhook-id"]
        self.requests.append((webhook_id, data, time.monotonic()))
        if webhook_id in self.answers:  # a retry of what was already done: the same answer, nothing done again
            return web.json_response(self.answers[webhook_id])
        self.processed.append((webhook_id, data))
        self.answers[webhook_id] = {"body": f"Did you say {data['body']}?"}
        if self.fail_after_processing(len(self.processed)):  # done, but the answer fails: the component retries
            return web.Response(status=503)
        return web.json_response(self.answers[webhook_id])

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
async def idempotent_bot() -> AsyncIterator[IdempotentBot]:
    bot = IdempotentBot(free_port(), SECRET)
    await bot.start()
    yield bot
    await bot.stop()


API = {"listen": "127.0.0.1:0", "token": TOKEN}


def queued(bot_url: str, **bot: Any) -> dict[str, Any]:
    """The [bot] section for start_component: queued delivery to `bot_url`."""
    return {"url": bot_url, "delivery": "queued", "max_queued": 10000, **bot}


async def api(method: str, port: int, path: str, token: str = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{port}{path}", headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def replies(client: Client, n: int, timeout: float) -> list[Message]:
    got = []
    async with asyncio.timeout(timeout):
        for _ in range(n):
            got.append(await client.messages.get())
    return got


def by_conversation(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, text in pairs:
        out.setdefault(key, []).append(text)
    return out


async def test_a_bot_down_for_a_while_gets_everything_once_in_order(
    idempotent_bot: IdempotentBot, start_component: StartComponent, connect: ConnectClient, tmp_path: Path
) -> None:
    bot = idempotent_bot
    bot.fail_after_processing = lambda n: n % 9 == 0  # some answers are lost after the work was done: retried
    section = queued(bot.url + "/{local}", signing_secret=SECRET, retry_first=0.2, retry_most=1)
    app = await start_component(bot=section, state={"dir": str(tmp_path / "state")}, api=API)
    assert app.api_port is not None
    alice = await connect("alice")
    await bot.stop()  # down, as for a deploy
    down_since = time.monotonic()
    sent: list[tuple[str, str]] = []
    for i in range(100):  # 5 conversations (one per bot JID), interleaved
        to, text = f"echo{i % 5}@{COMPONENT}", f"m{i}"
        alice.say(to, text)
        sent.append((to, text))
    async with asyncio.timeout(WAIT):
        while (await api("GET", app.api_port, "/v1/status"))[1]["pending"] < 100:
            await asyncio.sleep(0.05)
    await asyncio.sleep(max(0.0, OUTAGE - (time.monotonic() - down_since)))
    _, status = await api("GET", app.api_port, "/v1/status")
    assert status["pending"] == 100 and status["oldest_age_seconds"] >= OUTAGE - 1
    assert {b["url"] for b in status["bots"]} == {f"{bot.url}/echo{k}" for k in range(5)}
    assert all("Connection refused" in b["last_error"] for b in status["bots"]), status
    assert alice.messages.empty()  # accepted: the sender hears nothing of the outage
    await bot.start()

    got = await replies(alice, 100, 60)
    assert all(m["type"] == "chat" for m in got), [str(m) for m in got if m["type"] != "chat"]
    heard = by_conversation([(m["from"].bare, REPLY.fullmatch(m["body"])[1]) for m in got])  # type: ignore[index]
    assert heard == by_conversation(sent)  # every reply, each conversation's in order
    ids = [webhook_id for webhook_id, _ in bot.processed]
    assert len(ids) == len(set(ids)) == 100  # exactly once per webhook-id
    seen = by_conversation([(data["to"], data["body"]) for _, data in bot.processed])
    assert seen == by_conversation(sent)  # the bot saw each conversation in order
    retried = len(bot.requests) - len(bot.processed)
    assert retried >= 11, "no retried ids: the test proves nothing about duplicates"
    assert metric(app, "bot_requests_total", outcome="replied") == 100
    assert metric(app, "bot_delivery_retries_total") >= 5 + 11  # the outage's retries and the lost answers'
    await asyncio.sleep(0.1)
    _, status = await api("GET", app.api_port, "/v1/status")
    assert (status["pending"], status["dead_letters"]) == (0, 0)
    assert all(b["last_success_at"] >= b["last_error_at"] for b in status["bots"])
    print(f"bot down {time.monotonic() - down_since:.1f} s: 100 delivered once each ({retried} retried requests)")


async def test_a_bot_that_always_fails_is_given_up_then_retried_from_the_dead_letters(
    idempotent_bot: IdempotentBot, start_component: StartComponent, connect: ConnectClient, tmp_path: Path
) -> None:
    bot = idempotent_bot
    attempts: list[tuple[float, str]] = []
    healthy = False

    async def broken(request: web.Request) -> web.StreamResponse:
        attempts.append((time.monotonic(), request.headers["webhook-id"]))
        if healthy:
            return web.json_response({"body": f"at last: {(await request.json())['body']}"})
        return web.Response(status=500)

    bot.handler = broken
    section = queued(bot.url, retry_for=3, retry_first=0.2, retry_most=60)
    app = await start_component(bot=section, state={"dir": str(tmp_path / "state")}, api=API)
    assert app.api_port is not None
    alice = await connect("alice")
    started = time.monotonic()
    alice.say(f"echo@{COMPONENT}", "doomed", id="d1")
    error = await alice.next_message(timeout=10)
    given_up = time.monotonic() - started
    assert (error["type"], error["id"], error["error"]["type"]) == ("error", "d1", "wait")
    assert (error["error"]["condition"], error["error"]["text"]) == ("remote-server-timeout", "Gateway timeout")
    assert 3.0 <= given_up < 4.0
    times = [at for at, _ in attempts]
    waits = [b - a for a, b in itertools.pairwise(times)]
    assert len(waits) >= 4 and waits[:-1] == sorted(waits[:-1]), waits  # growing delays...
    assert waits[0] < 0.4 and waits[-2] > 0.6, waits
    assert 2.9 <= times[-1] - started < 3.5  # ...and a last attempt when retry_for ends
    assert len({webhook_id for _, webhook_id in attempts}) == 1
    assert metric(app, "bot_requests_total", outcome="gave_up") == 1
    assert metric(app, "bot_delivery_dead_letters") == 1

    status, body = await api("GET", app.api_port, "/v1/dead")
    [dead] = body["dead"]
    assert (dead["last_error"], dead["attempts"], dead["body"], dead["to"]) == (
        "HTTP 500",
        len(attempts),
        "doomed",
        f"echo@{COMPONENT}",
    )
    assert dead["webhook_id"] == attempts[0][1] and dead["from"] == str(alice.boundjid)
    assert (await api("GET", app.api_port, "/v1/dead", token="wrong"))[0] == 401
    assert (await api("POST", app.api_port, f"/v1/dead/{dead['id']}/retry", token="wrong"))[0] == 401
    assert (await api("POST", app.api_port, "/v1/dead/999999/retry"))[0] == 404

    healthy = True
    status, body = await api("POST", app.api_port, f"/v1/dead/{dead['id']}/retry")
    assert status == 200 and body["webhook_id"] == dead["webhook_id"]
    reply = await alice.next_message()
    assert reply["body"] == "at last: doomed"
    assert attempts[-1][1] == dead["webhook_id"]  # the same id: a bot that did the work can drop it
    assert (await api("GET", app.api_port, "/v1/dead"))[1] == {"dead": [], "next_after": None}
    assert metric(app, "bot_delivery_dead_letters") == 0


async def test_retry_after_is_waited_for(
    idempotent_bot: IdempotentBot, start_component: StartComponent, connect: ConnectClient, tmp_path: Path
) -> None:
    bot = idempotent_bot
    attempts: list[float] = []

    async def busy_once(request: web.Request) -> web.StreamResponse:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            return web.Response(status=429, headers={"Retry-After": "2"})
        return web.json_response({"body": "now then"})

    bot.handler = busy_once
    app = await start_component(bot=queued(bot.url, retry_first=0.05), state={"dir": str(tmp_path / "state")})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "hurry")
    assert (await alice.next_message())["body"] == "now then"
    assert len(attempts) == 2
    assert attempts[1] - attempts[0] >= 2.0  # not the 0.05 s of the backoff
    assert metric(app, "bot_delivery_retries_total") == 1


async def test_status_is_not_served_without_queued_delivery(start_component: StartComponent) -> None:
    app = await start_component(api=API)
    assert app.api_port is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{app.api_port}/v1/status", headers={"Authorization": f"Bearer {TOKEN}"}) as resp,
    ):
        assert resp.status == 404
