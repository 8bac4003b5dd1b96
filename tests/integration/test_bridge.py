"""The bot flow end to end: a real Prosody, real clients, real aiohttp bots, the component in-process."""

from __future__ import annotations

import asyncio

from conftest import COMPONENT, Bot, ConnectClient, StartComponent, json_reply, metric


async def test_echo_round_trip(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    app = await start_component()
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "hello")
    reply = await alice.next_message()
    assert reply["body"] == "Did you say hello?"
    assert reply["from"] == f"echo@{COMPONENT}"
    assert reply["type"] == "chat"
    [request] = bot.requests
    assert request["to"] == f"echo@{COMPONENT}"
    assert request["from"] == str(alice.boundjid)
    assert (request["kind"], request["body"], request["type"]) == ("message", "hello", "chat")
    assert request["stanza"].startswith('<message xmlns="jabber:client"')
    assert bot.headers[0]["Content-Type"] == "application/json; charset=utf-8"
    assert metric(app, "bot_requests_total", outcome="replied") == 1
    await asyncio.sleep(0)
