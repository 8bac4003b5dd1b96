"""What happens to stanzas around a stop and while the stream is down, through a real server.

- SIGTERM's path (App.stop): every message that reached the component is answered, by its bot when the bot
  finishes within the drain, else with "The component is shutting down"; those answers leave before the
  stream's end (nothing may follow our </stream:stream>).
- Replies produced while the stream is down are held and sent once it is back, not dropped.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from component.xmpp import Backoff
from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, Bot, ConnectClient, StartComponent, metric

ECHO = f"echo@{COMPONENT}"


async def test_stop_answers_every_message_that_arrived_during_the_drain(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    async def slow_echo(request: web.Request) -> web.Response:
        data = await request.json()
        await asyncio.sleep(0.6)
        return web.json_response({"body": f"Did you say {data['body']}?"})

    bot.handler = slow_echo
    app = await start_component()
    alice = await connect("alice")
    ids: dict[str, int] = {}
    for n in range(10):  # ten in flight at the bot when the stop begins
        ids[alice.say(ECHO, str(n))["id"]] = n
        await asyncio.sleep(0.02)
    while len(bot.requests) < 10:
        await asyncio.sleep(0.01)
    stopping = asyncio.create_task(app.stop())
    await asyncio.sleep(0.05)
    for n in range(10, 20):  # ten more while the drain runs (it lasts until the bot answers, ~0.5 s)
        ids[alice.say(ECHO, str(n))["id"]] = n
        await asyncio.sleep(0.02)
    await asyncio.wait_for(stopping, WAIT)
    answers: dict[int, str] = {}
    while len(answers) < 20:
        msg = await alice.next_message()
        if msg["type"] == "error":
            answers[ids[msg["id"]]] = msg["error"]["text"]
        elif m := re.fullmatch(r"Did you say (\d+)\?", msg["body"]):
            answers[int(m[1])] = "reply"
    assert [answers[n] for n in range(10)] == ["reply"] * 10
    assert [answers[n] for n in range(10, 20)] == ["The component is shutting down"] * 10
    assert len(bot.requests) == 10  # nothing that arrived during the drain reached the bot
    assert metric(app, "bot_requests_total", outcome="shutting_down") == 10
    assert metric(app, "xmpp_stanzas_dropped_total") == 0


async def test_replies_made_while_the_stream_is_down_are_sent_when_it_is_back(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    release = asyncio.Event()

    async def held_echo(request: web.Request) -> web.Response:
        data = await request.json()
        await release.wait()
        return web.json_response({"body": f"Did you say {data['body']}?"})

    bot.handler = held_echo
    # a slow first reconnect, so that the bot answers while the stream is down
    app = await start_component(backoff=Backoff(first=1.5, most=1.5, refused=3.0, handshake_timeout=5.0))
    alice = await connect("alice")
    for n in range(3):
        alice.say(ECHO, str(n))
    while len(bot.requests) < 3:
        await asyncio.sleep(0.01)
    app.stream.abort()  # the component's stream drops; the user's session does not
    while app.connected.is_set():
        await asyncio.sleep(0.01)
    release.set()
    while metric(app, "xmpp_stanzas_held") < 3:
        await asyncio.sleep(0.01)
    assert not app.connected.is_set(), "the replies should have been made while the stream was down"
    bodies = [(await alice.next_message(timeout=WAIT))["body"] for _ in range(3)]
    assert bodies == ["Did you say 0?", "Did you say 1?", "Did you say 2?"]
    assert metric(app, "xmpp_connects_total") == 2
    assert metric(app, "xmpp_stanzas_dropped_total") == 0
    assert metric(app, "xmpp_stanzas_held") == 0
