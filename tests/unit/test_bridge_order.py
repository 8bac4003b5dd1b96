"""Reply order within a conversation, with a stand-in HTTP client whose replies the test releases one by one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

from component.bot.bridge import Bridge
from component.bot.client import HttpReply, TimedOut
from component.config import from_dict
from component.metrics import Metrics, Outcome
from component.stanza import Stanza


class HeldClient:
    """Answers each POST when the test says so: `release(i)` answers the i-th request. Like the real client, it
    raises TimedOut at the deadline."""

    def __init__(self) -> None:
        self.pending: list[asyncio.Future[HttpReply]] = []

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], max_bytes: int, deadline: float
    ) -> HttpReply:
        future: asyncio.Future[HttpReply] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        try:
            return await asyncio.wait_for(future, deadline - asyncio.get_running_loop().time())
        except TimeoutError:
            raise TimedOut("deadline") from None

    def release(self, index: int, text: str) -> None:
        body = json.dumps({"body": text}).encode()
        self.pending[index].set_result(HttpReply(200, {"content-type": "application/json"}, body))


def message(n: int, sender: str = "alice@localhost/r") -> Stanza:
    xml = f"<message xmlns='jabber:client' to='echo@bot.localhost' from='{sender}' type='chat'><body>{n}</body>"
    return Stanza("message", "echo@bot.localhost", sender, "chat", None, str(n), xml + "</message>")


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def bridge(client: HeldClient, sent: list[Stanza], metrics: Metrics | None = None, **bot: Any) -> Bridge:
    raw = {"component": {"jid": "bot.localhost", "secret": "s"}, "bot": {"url": "http://127.0.0.1:9/", **bot}}
    config = from_dict(raw, env={})
    return Bridge(config.bot, "bot.localhost", client, sent.append, metrics or Metrics(), 500000)  # type: ignore[arg-type]


def count(metrics: Metrics, outcome: Outcome) -> float:
    return metrics.registry.get_sample_value("bot_requests_total", {"outcome": outcome.value}) or 0.0


def error_text(stanza: Stanza) -> str:
    return stanza.xml.partition("<text")[2].partition(">")[2].partition("</text>")[0]


async def test_replies_leave_in_arrival_order_when_the_bot_answers_backwards() -> None:
    client, sent = HeldClient(), list[Stanza]()
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
    client, sent = HeldClient(), list[Stanza]()
    b = bridge(client, sent)
    b.submit(message(0))
    b.submit(message(1, sender="bob@localhost/r"))
    await settle()
    client.release(1, "for bob")
    await settle()
    assert [(s.to, s.body) for s in sent] == [("bob@localhost/r", "for bob")]


async def test_a_stanza_cancelled_before_it_ran_does_not_hold_back_its_successors() -> None:
    client, sent = HeldClient(), list[Stanza]()
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
    client, sent = HeldClient(), list[Stanza]()
    b = bridge(client, sent)
    for n in range(2):
        b.submit(message(n))
    await settle()
    client.release(1, "one")  # answered, but behind the first, which never is
    await b.drain(0.05)
    # the one given up on is still answered, with an error, and first: the order holds
    assert [(s.type, s.body or error_text(s)) for s in sent] == [
        ("error", "The component is shutting down"),
        ("chat", "one"),
    ]
    assert b.queued == 0


async def test_after_drain_each_new_stanza_is_refused_at_once() -> None:
    client, sent, metrics = HeldClient(), list[Stanza](), Metrics()
    b = bridge(client, sent, metrics)
    await b.drain(0.05)
    b.submit(message(0))
    assert client.pending == []
    assert [error_text(s) for s in sent] == ["The component is shutting down"]
    assert count(metrics, Outcome.SHUTTING_DOWN) == 1


async def test_time_in_the_queue_counts_toward_the_timeout_and_no_late_post_follows() -> None:
    client, sent, metrics = HeldClient(), list[Stanza](), Metrics()
    b = bridge(client, sent, metrics, timeout=0.3, max_in_flight=1)
    b.submit(message(0))
    b.submit(message(1, sender="bob@localhost/r"))  # waits for the one slot, held by alice's request
    await settle()
    assert len(client.pending) == 1
    loop = asyncio.get_running_loop()
    started = loop.time()
    while len(sent) < 2 and loop.time() - started < 5:
        await asyncio.sleep(0.02)
    # both senders were told at the deadline, bob while still queued
    assert sorted((s.to, error_text(s)) for s in sent) == [
        ("alice@localhost/r", "Gateway timeout"),
        ("bob@localhost/r", "Gateway timeout"),
    ]
    await settle()
    assert len(client.pending) == 1  # bob's stanza was never POSTed after he had been answered
    assert count(metrics, Outcome.TIMEOUT) == 2
    assert b.queued == 0
