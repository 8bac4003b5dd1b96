"""Events to RabbitMQ end to end: a private RabbitMQ (tests/harness/rabbit.py), real Prosody and ejabberd, real
clients and bots, and consumers bound the way MongooseIM's users bind theirs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aio_pika
import aio_pika.abc
import aiohttp
import pytest
from aiohttp import web

from component.app import App
from component.metrics import Metrics
from component.notify.rabbit import Backoff
from tests.harness.clients import WAIT, Client
from tests.harness.parts import COMPONENT, FAST, REPO, Bot, ConnectClient, component_config, echo, serve_posts
from tests.harness.rabbit import RabbitServer, start_rabbit
from tests.harness.servers import XmppServer

ECHO = f"echo@{COMPONENT}"
ROOM = f"room@{COMPONENT}"
FAST_RABBIT = Backoff(first=0.1, most=0.5)
LABELS = {"host_type": COMPONENT, "pool_tag": "event_pusher"}
StartApp = Callable[..., Awaitable[App]]


@pytest.fixture(scope="session")
def rabbit_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    broker = start_rabbit(tmp_path_factory.mktemp("rabbitmq"))
    yield broker
    broker.stop()


@pytest.fixture
def broker(rabbit_server: RabbitServer) -> Iterator[RabbitServer]:
    """The session's broker, running again after the test whatever the test did to it."""
    yield rabbit_server
    if not rabbit_server.running:
        rabbit_server.start()


@contextlib.asynccontextmanager
async def consumer(broker: RabbitServer) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    connection = await aio_pika.connect(broker.url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def bound(
    channel: aio_pika.abc.AbstractChannel, exchange: aio_pika.abc.AbstractExchange, key: str, name: str = ""
) -> aio_pika.abc.AbstractQueue:
    """A queue bound to `exchange` with `key`: server-named and exclusive, or durable and emptied when named."""
    queue = await channel.declare_queue(name, durable=bool(name), exclusive=not name)
    await queue.purge()
    await queue.bind(exchange, key)
    return queue


async def take(queue: aio_pika.abc.AbstractQueue, count: int) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """The next `count` messages of `queue` (acked), within WAIT seconds."""
    got: list[aio_pika.abc.AbstractIncomingMessage] = []
    async with asyncio.timeout(WAIT):
        while len(got) < count:
            message = await queue.get(no_ack=True, fail=False)
            if message is None:
                await asyncio.sleep(0.05)
            else:
                got.append(message)
    return got


def routed(messages: list[aio_pika.abc.AbstractIncomingMessage]) -> list[tuple[str | None, bytes]]:
    return [(m.routing_key, m.body) for m in messages]


def chat(sender: str, recipient: str, text: str) -> bytes:
    """A chat or groupchat event's body, byte for byte as the component publishes it."""
    return json.dumps(
        {"from_user_id": sender, "to_user_id": recipient, "message": text}, separators=(",", ":")
    ).encode()


async def until(done: Callable[[], bool], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


def value(app: App, name: str) -> float:
    return app.metrics.registry.get_sample_value(name, LABELS) or 0.0


@pytest.fixture
async def start_app(server: XmppServer, bot: Bot) -> AsyncIterator[StartApp]:
    """Start the component with the rabbit backend on `broker` and the given [event_pusher.rabbit] keys (and
    `sections` beside); stopped after the test."""
    apps: list[App] = []

    async def start(
        broker: RabbitServer, *, confirms: bool = True, sections: dict[str, Any] | None = None, **rabbit: Any
    ) -> App:
        connection = {"host": "127.0.0.1", "port": broker.port, "confirms_enabled": confirms}
        extra = sections or {}
        raw = {
            "outgoing_pools": {
                "rabbit": {"event_pusher": {"connection": connection}},
                **extra.get("outgoing_pools", {}),
            },
            "event_pusher": {"rabbit": rabbit, **extra.get("event_pusher", {})},
        }
        app = App(
            component_config(server, bot.url, **raw), Metrics(), FAST, flush_seconds=2, rabbit_backoff=FAST_RABBIT
        )
        apps.append(app)
        await app.start()
        await asyncio.wait_for(app.connected.wait(), WAIT)
        return app

    yield start
    for app in apps:
        await app.stop()


async def talk(alice: Client, first: int, count: int) -> None:
    """Messages m<first>... to the echo bot, one at a time, each answered."""
    for i in range(first, first + count):
        alice.say(ECHO, f"m{i}")
        assert (await alice.next_message())["body"] == f"Did you say m{i}?"


def events(first: int, count: int, me: str) -> list[tuple[str, bytes]]:
    """The chat events of `talk`: each message the bot gets, then its answer."""
    out = []
    for i in range(first, first + count):
        out.append((f"{ECHO}.chat_msg_recv", chat(me, ECHO, f"m{i}")))
        out.append((f"{ECHO}.chat_msg_sent", chat(ECHO, me, f"Did you say m{i}?")))
    return out


# --- 2. A MongooseIM consumer gets MongooseIM's payloads, through Prosody and through ejabberd ----------------------


async def room_or_echo(request: web.Request) -> web.StreamResponse:
    data = await request.json()
    if data.get("type") == "groupchat":
        return web.json_response({"type": "groupchat", "to": data["from"], "body": f"The room heard {data['body']}"})
    return await echo(request)


async def test_a_consumer_written_for_mongooseim_gets_its_payloads(
    broker: RabbitServer, bot: Bot, start_app: StartApp, connect: ConnectClient
) -> None:
    bot.handler = room_or_echo
    posted: list[str] = []

    async def sink(request: web.Request) -> web.Response:
        posted.append(await request.text())
        return web.Response()

    runner, sink_url = await serve_posts(sink, shutdown_timeout=0.1)
    async with consumer(broker) as channel:
        # declared as the component declares them (MongooseIM's defaults), so that the queues are bound first
        chat_x = await channel.declare_exchange("chat_msg", aio_pika.ExchangeType.TOPIC)
        presence_x = await channel.declare_exchange("presence", aio_pika.ExchangeType.TOPIC)
        group_x = await channel.declare_exchange("groupchat_msg", aio_pika.ExchangeType.TOPIC)
        recv = await bound(channel, chat_x, "#.chat_msg_recv")
        sent = await bound(channel, chat_x, "#.chat_msg_sent")
        star = await bound(channel, chat_x, "*.chat_msg_recv")  # the seed's binding: one word before the topic
        presences = await bound(channel, presence_x, "#")
        rooms = await bound(channel, group_x, "#")
        http = {"outgoing_pools": {"http": {"http_pool": {"connection": {"host": sink_url}}}}}
        app = await start_app(
            broker,
            presence_exchange={},
            chat_msg_exchange={},
            groupchat_msg_exchange={},
            sections={**http, "event_pusher": {"http": {"handlers": [{"path": "/notifications"}]}}},
        )
        alice = await connect("alice")
        me = str(alice.boundjid)
        alice.send_presence(pto=ECHO)
        alice.say(f"Echo@{COMPONENT}", "Hi, Bob!")
        assert (await alice.next_message())["body"] == "Did you say Hi, Bob!?"
        alice.say(ROOM, "Hello, room", mtype="groupchat")
        assert (await alice.next_message())["body"] == "The room heard Hello, room"
        alice.send_presence(pto=ECHO, ptype="unavailable")

        got = await take(recv, 1)
        assert routed(got) == [(f"{ECHO}.chat_msg_recv", chat(me, ECHO, "Hi, Bob!"))]
        assert routed(await take(sent, 1)) == [(f"{ECHO}.chat_msg_sent", chat(ECHO, me, "Did you say Hi, Bob!?"))]
        assert routed(await take(rooms, 2)) == [
            (f"{ROOM}.groupchat_msg_recv", chat(me, ROOM, "Hello, room")),
            (f"{ROOM}.groupchat_msg_sent", chat(ROOM, me, "The room heard Hello, room")),
        ]
        assert routed(await take(presences, 2)) == [
            ("alice@localhost", b'{"user_id":"%s","present":true}' % me.encode()),
            ("alice@localhost", b'{"user_id":"%s","present":false}' % me.encode()),
        ]
        await asyncio.sleep(0.2)
        assert await star.get(fail=False) is None  # "bot.localhost" has a dot: `*` matches one word, `#` any
        message = got[0]
        assert (message.content_type, message.delivery_mode) == ("application/json", aio_pika.DeliveryMode.PERSISTENT)
        assert message.message_id and message.timestamp is not None
        assert abs(message.timestamp.timestamp() - time.time()) < 60
    await until(lambda: len(posted) == 1, "the HTTP handler's notification")
    assert posted == ["author=alice&server=localhost&receiver=echo&message=Hi%2C+Bob%21"]  # side by side
    await until(lambda: value(app, "wpool_rabbit_messages_published_count_total") == 6, "6 acked")
    assert value(app, "wpool_rabbit_messages_published_time_count") == 6
    assert value(app, "wpool_rabbit_connections_active") == 1
    await runner.cleanup()


@pytest.mark.parametrize("server", ["prosody"], indirect=True)
async def test_with_confirms_off_events_count_once_written(
    broker: RabbitServer, start_app: StartApp, connect: ConnectClient
) -> None:
    async with consumer(broker) as channel:
        exchange = await channel.declare_exchange("chat_unconfirmed", aio_pika.ExchangeType.TOPIC)
        queue = await bound(channel, exchange, "#")
        app = await start_app(broker, confirms=False, chat_msg_exchange={"name": "chat_unconfirmed"})
        alice = await connect("alice")
        await talk(alice, 0, 3)
        assert routed(await take(queue, 6)) == events(0, 3, str(alice.boundjid))
    await until(lambda: value(app, "wpool_rabbit_messages_published_count_total") == 6, "6 counted as published")
    assert value(app, "wpool_rabbit_messages_published_time_count") == 0  # no ack to time


@pytest.mark.parametrize("server", ["prosody"], indirect=True)
async def test_nacked_publishes_are_published_again(
    broker: RabbitServer, start_app: StartApp, connect: ConnectClient, caplog: pytest.LogCaptureFixture
) -> None:
    async with consumer(broker) as channel:
        exchange = await channel.declare_exchange("chat_nacked", aio_pika.ExchangeType.TOPIC)
        # a full queue makes the broker nack what it cannot take (reject-publish), instead of dropping its oldest
        queue = await channel.declare_queue(
            exclusive=True, arguments={"x-max-length": 2, "x-overflow": "reject-publish"}
        )
        await queue.bind(exchange, "#")
        app = await start_app(broker, chat_msg_exchange={"name": "chat_nacked"})
        alice = await connect("alice")
        await talk(alice, 0, 3)  # six events for a queue of two
        await until(lambda: value(app, "wpool_rabbit_messages_published_failed_total") >= 1, "a nack")
        got = routed(await take(queue, 6))  # the consumer makes room; the nacked events come again
        await asyncio.sleep(0.3)
        assert await queue.get(fail=False) is None
        assert sorted(got) == sorted(events(0, 3, str(alice.boundjid)))  # all of them, once each
    assert "nacked" in caplog.text
    assert value(app, "wpool_rabbit_messages_published_count_total") == 6


# --- 3. The broker restarts while a user talks to a bot: every answer, and every event, in order ------------------


@pytest.mark.parametrize("server", ["prosody"], indirect=True)
async def test_a_broker_restart_loses_no_event(
    broker: RabbitServer, start_app: StartApp, connect: ConnectClient, capsys: pytest.CaptureFixture[str]
) -> None:
    async with consumer(broker) as channel:
        exchange = await channel.declare_exchange("chat_restart", aio_pika.ExchangeType.TOPIC, durable=True)
        await bound(channel, exchange, "#", name="restart-events")
    app = await start_app(
        broker,
        chat_msg_exchange={"name": "chat_restart", "durable": True},
        presence_exchange={"name": "presence_gap"},
        max_queued=100_000,  # room for every event of the gap, however fast this machine is
    )
    publisher = app.notifier.rabbit
    assert publisher is not None
    await until(lambda: publisher.connected, "connected to the broker")
    alice = await connect("alice")
    sent = 10
    await talk(alice, 0, sent)
    for change in (broker.stop, broker.start):  # while the broker goes down and comes back, alice keeps talking
        changing = asyncio.ensure_future(asyncio.to_thread(change))
        while not changing.done():  # as fast as the bot answers: publishes are in flight when the broker stops
            await talk(alice, sent, 1)
            sent += 1
        await changing
        if change == broker.stop:
            await talk(alice, sent, 10)  # the gap: the broker is down
            sent += 10
            assert not publisher.connected
    await talk(alice, sent, 10)
    sent += 10
    await until(lambda: publisher.connected and publisher.outstanding == 0, "every event confirmed")

    async with consumer(broker) as channel:
        queue = await channel.declare_queue("restart-events", durable=True)
        got = await take(queue, 2 * sent)
        await asyncio.sleep(0.3)
        while (late := await queue.get(no_ack=True, fail=False)) is not None:
            got.append(late)  # duplicates, if any
        await channel.declare_exchange("presence_gap", passive=True)  # declared again by the component
        await queue.delete(if_unused=False, if_empty=False)
    first: dict[str | None, tuple[str | None, bytes]] = {}
    for message in got:
        first.setdefault(message.message_id, (message.routing_key, message.body))
    duplicates = len(got) - len(first)
    again = value(app, "wpool_rabbit_messages_published_timeout_total")
    with capsys.disabled():
        print(
            f"\n[rabbit restart] {sent} messages, {2 * sent} events; the consumer got {len(got)} messages, "
            f"{len(first)} distinct message_ids, {duplicates} duplicates; {again:g} publishes were unconfirmed when "
            "the connection dropped and were published again"
        )
    assert list(first.values()) == events(0, sent, str(alice.boundjid))  # none lost, in order
    assert duplicates <= again  # a duplicate is a publish made again after the drop, nothing else
    assert value(app, "wpool_rabbit_connections_opened_total") == 2


# --- 4. The broker is not there when the component starts --------------------------------------------------------


@pytest.mark.parametrize("server", ["prosody"], indirect=True)
async def test_a_broker_unreachable_at_start(
    broker: RabbitServer, start_app: StartApp, connect: ConnectClient, caplog: pytest.LogCaptureFixture
) -> None:
    async with consumer(broker) as channel:
        exchange = await channel.declare_exchange("chat_late", aio_pika.ExchangeType.TOPIC, durable=True)
        await bound(channel, exchange, "#", name="late-events")
    await asyncio.to_thread(broker.stop)
    caplog.set_level(logging.INFO, logger="component.notify.rabbit")
    app = await start_app(broker, chat_msg_exchange={"name": "chat_late", "durable": True}, max_queued=6)
    publisher = app.notifier.rabbit
    assert publisher is not None
    alice = await connect("alice")
    await talk(alice, 0, 5)  # the bot serves: ten events, the four oldest pushed out of the outbox
    where = f"RabbitMQ at 127.0.0.1:{broker.port} (virtual host '/')"
    assert f"cannot reach {where} (attempt 1)" in caplog.text
    assert "the outbox is full: dropped the oldest waiting event" in caplog.text
    assert (
        value(app, "mod_event_pusher_rabbit_queued"),
        value(app, "mod_event_pusher_rabbit_dropped_count_total"),
    ) == (6, 4)
    assert value(app, "wpool_rabbit_connections_failed_total") >= 1
    base = f"http://127.0.0.1:{app.web_port}"
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/healthz") as resp:
            assert resp.status == 200  # about the XMPP stream, not the broker
        async with session.get(f"{base}/metrics") as resp:
            text = await resp.text()
    assert f'wpool_rabbit_connections_active{{host_type="{COMPONENT}",pool_tag="event_pusher"}} 0.0' in text

    await asyncio.to_thread(broker.start)
    await until(lambda: publisher.connected and publisher.outstanding == 0, "connected, the outbox published")
    assert f"connected to {where} after " in caplog.text
    async with consumer(broker) as channel:
        queue = await channel.declare_queue("late-events", durable=True)
        assert routed(await take(queue, 6)) == events(0, 5, str(alice.boundjid))[4:]
        await queue.delete(if_unused=False, if_empty=False)


# --- 5. The benchmark keeps working (its figures are in docs/benchmarks.md) --------------------------------------


def test_the_benchmark_runs_its_four_paths() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.rabbit", "-n", "200", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    figures = json.loads(result.stdout[result.stdout.index("{") :])
    for path in ("off", "routed", "stored", "frozen"):
        assert figures[path]["errors"] == 0 and figures[path]["msgs_per_s"] > 0, (path, figures[path])
    assert figures["stored"]["events_in_queue"] == figures["stored"]["events_expected"] == 400
    assert figures["routed"]["publish_rate_per_s"] > 0 and figures["routed"]["confirm_latency_mean_ms"] > 0


@pytest.mark.parametrize("server", ["prosody"], indirect=True)
async def test_at_shutdown_what_the_broker_did_not_take_is_counted_and_logged(
    broker: RabbitServer, start_app: StartApp, connect: ConnectClient, caplog: pytest.LogCaptureFixture
) -> None:
    await asyncio.to_thread(broker.stop)
    app = await start_app(broker, chat_msg_exchange={"name": "chat_shutdown"})
    alice = await connect("alice")
    await talk(alice, 0, 2)
    started = time.monotonic()
    await app.stop()  # flushes for up to flush_seconds (2 here), then gives up
    assert 1.9 < time.monotonic() - started < 5
    assert f"gave up on 4 events not confirmed by RabbitMQ at 127.0.0.1:{broker.port}" in caplog.text
    assert value(app, "mod_event_pusher_rabbit_dropped_count_total") == 4
