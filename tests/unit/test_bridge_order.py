"""Reply order within a conversation, with a stand-in HTTP client whose replies the test releases one by one."""

from __future__ import annotations

import asyncio
import json

from component import http1
from component.bridge import Bridge
from component.codec import Stanza
from component.config import BotSection
from component.metrics import Metrics


class HeldClient:
    """Answers each POST when the test says so: `release(i)` answers the i-th request."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[http1.Reply]] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str], max_bytes: int) -> http1.Reply:
        future: asyncio.Future[http1.Reply] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        return await future

    def release(self, index: int, text: str) -> None:
        body = json.dumps({"body": text}).encode()
        self.pending[index].set_result(http1.Reply(200, {"content-type": "application/json"}, body))


def message(n: int, sender: str = "alice@localhost/r") -> Stanza:
    xml = f"<message xmlns='jabber:client' to='echo@bot.localhost' from='{sender}' type='chat'><body>{n}</body>"
    return Stanza("message", "echo@bot.localhost", sender, "chat", None, str(n), xml + "</message>")


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def bridge(client: HeldClient, sent: list[Stanza]) -> Bridge:
    bot = BotSection(url="http://127.0.0.1:9/")
    return Bridge(bot, "bot.localhost", client, sent.append, Metrics(), 500000)  # type: ignore[arg-type]


async def test_replies_leave_in_arrival_order_when_the_bot_answers_backwards() -> None:
    client, sent = HeldClient(), []
    b = bridge(client, sent)
    for n in range(3):
        b.submit(message(n))
    await settle()
    assert len(client.pending) == 3  # the three requests run at once
    client.release(2, "two")
    client.release(1, "one")
    await settle()
    assert sent == []  # held back behind the first
    client.release(0, "zero")
    await settle()
    assert [s.body for s in sent] == ["zero", "one", "two"]
    assert b.queued == 0


async def test_other_conversations_do_not_wait() -> None:
    client, sent = HeldClient(), []
    b = bridge(client, sent)
    b.submit(message(0))
    b.submit(message(1, sender="bob@localhost/r"))
    await settle()
    client.release(1, "for bob")
    await settle()
    assert [(s.to, s.body) for s in sent] == [("bob@localhost/r", "for bob")]


async def test_a_stanza_cancelled_before_it_ran_does_not_hold_back_its_successors() -> None:
    client, sent = HeldClient(), []
    b = bridge(client, sent)
    b.submit(message(0))
    first = next(iter(b._tasks))
    first.cancel()  # before its first step: its coroutine never starts
    b.submit(message(1))
    await settle()
    assert len(client.pending) == 1
    client.release(0, "one")
    await settle()
    assert [s.body for s in sent] == ["one"]
    assert b.queued == 0


async def test_drain_cancels_what_is_left_and_sends_what_was_answered() -> None:
    client, sent = HeldClient(), []
    b = bridge(client, sent)
    for n in range(2):
        b.submit(message(n))
    await settle()
    client.release(1, "one")  # answered, but behind the first, which never is
    await b.drain(0.05)
    assert [s.body for s in sent] == ["one"]
    assert b.queued == 0
