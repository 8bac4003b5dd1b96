"""Per-conversation order, independent conversations, the in-flight bound and the bounded queue."""

from __future__ import annotations

import asyncio

from aiohttp import web

from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, Bot, ConnectClient, StartComponent, metric


async def test_replies_keep_arrival_order_when_the_bot_answers_out_of_order(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    n = 20

    async def reverse_latency(request: web.Request) -> web.Response:
        i = int((await request.json())["body"])
        await asyncio.sleep((n - i) * 0.02)  # the first message is answered last
        return web.json_response({"body": str(i)})

    bot.handler = reverse_latency
    await start_component()
    alice = await connect("alice")
    for i in range(n):
        alice.say(f"echo@{COMPONENT}", str(i))
    assert [(await alice.next_message())["body"] for _ in range(n)] == [str(i) for i in range(n)]


async def test_conversations_never_wait_on_each_other(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        data = await request.json()
        if data["to"].startswith("slow@"):
            await release.wait()
        return web.json_response({"body": data["body"]})

    bot.handler = handler
    await start_component()
    alice = await connect("alice")
    alice.say(f"slow@{COMPONENT}", "held")
    alice.say(f"fast@{COMPONENT}", "through")  # same sender, another bot JID: another conversation
    reply = await alice.next_message()
    assert (reply["body"], str(reply["from"])) == ("through", f"fast@{COMPONENT}")
    release.set()
    assert (await alice.next_message())["body"] == "held"


async def test_max_in_flight_bounds_concurrency(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    release = asyncio.Event()
    running = 0
    peak = 0
    two_running = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if running == 2:
            two_running.set()
        await release.wait()
        running -= 1
        return web.json_response({"body": (await request.json())["body"]})

    bot.handler = handler
    app = await start_component(bot={"max_in_flight": 2})
    alice = await connect("alice")
    for i in range(6):
        alice.say(f"bot{i}@{COMPONENT}", str(i))  # six conversations, so only the bound holds them back
    await asyncio.wait_for(two_running.wait(), WAIT)
    await asyncio.sleep(0.3)  # give a third request every chance to start
    assert (peak, len(bot.requests)) == (2, 2)
    assert metric(app, "bot_requests_in_flight") == 2
    release.set()
    bodies = sorted([(await alice.next_message())["body"] for _ in range(6)])
    assert bodies == [str(i) for i in range(6)]
    assert peak == 2


async def test_a_full_queue_answers_resource_constraint_at_once(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({"body": (await request.json())["body"]})

    bot.handler = handler
    app = await start_component(bot={"max_in_flight": 1, "max_queued": 2})
    alice = await connect("alice")
    for i in range(5):
        alice.say(f"echo@{COMPONENT}", str(i))
    refused = [await alice.next_message() for _ in range(3)]  # while the bot still holds the first two
    for msg in refused:
        assert msg["type"] == "error"
        assert (msg["error"]["type"], msg["error"]["condition"]) == ("wait", "resource-constraint")
    assert metric(app, "bot_requests_total", outcome="queue_full") == 3
    release.set()
    assert [(await alice.next_message())["body"] for _ in range(2)] == ["0", "1"]
