"""Rich messages through real Prosody and ejabberd, with a real slixmpp client: what the client puts in a message
reaches the bot as mod_rest's JSON fields, and what the bot answers in those fields reaches the client as exactly
those elements. (The mapping's logic, field by field, is tested in tests/unit/test_mapping.py.)"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

from aiohttp import web
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, Bot, ConnectClient, StartComponent, metric

ECHO = f"echo@{COMPONENT}"
RECEIPTS = "urn:xmpp:receipts"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
REPLIES: list[dict[str, Any]] = [
    {"body": "I meant this", "replace": "bot-message-1"},
    {"reactions": {"id": "alice-message-1", "reactions": ["\U0001f44d"]}},
    {"body": "here is the cat", "oob": {"url": "https://media.example/cat.png", "desc": "a cat"}},
    {"error": {"type": "modify", "condition": "not-acceptable", "text": "one message at a time"}},
]


def children(stanza: ET.Element) -> list[tuple[str, dict[str, str], str | None]]:
    """Each child of a received stanza, in tag order (ejabberd writes them in an order of its own): (tag,
    attributes, text), nested children written out."""
    out = []
    for child in stanza:
        text = child.text if len(child) == 0 else "".join(ET.tostring(c, encoding="unicode") for c in child)
        out.append((child.tag, dict(child.attrib), text))
    return sorted(out, key=lambda c: c[0])


async def test_rich_message_both_ways(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    async def answer(_request: web.Request) -> web.Response:
        return web.json_response(REPLIES)

    bot.handler = answer
    app = await start_component()
    alice = await connect("alice")
    for plugin in ("xep_0085", "xep_0066", "xep_0184"):
        alice.register_plugin(plugin)
    every: asyncio.Queue[StanzaBase] = asyncio.Queue()  # slixmpp's `message` event skips messages without a body
    alice.register_handler(Callback("every message", MatchXPath("{jabber:client}message"), every.put_nowait))
    msg = alice.make_message(mto=ECHO, mbody="look", mtype="chat")
    msg["id"] = "alice-message-1"
    msg["chat_state"] = "composing"
    msg["thread"] = "thread-1"
    msg["oob"]["url"] = "https://media.example/dog.png"
    msg["request_receipt"] = True
    msg.send()

    got = [await asyncio.wait_for(every.get(), WAIT) for _ in range(5)]
    [request] = bot.requests
    assert (request["state"], request["thread"]) == ("composing", {"id": "thread-1"})
    assert (request["oob"], request["oob_url"]) == (
        {"url": "https://media.example/dog.png"},
        "https://media.example/dog.png",
    )
    assert f'<request xmlns="{RECEIPTS}"/>' in request["stanza"]  # not a field of the mapping: kept in `stanza`
    assert request["body"] == "look" and request["id"] == "alice-message-1"

    # the receipt first (the component's, since the bot sent none), then the four replies in order
    assert [(m["type"], str(m["from"])) for m in got] == [("chat", ECHO)] * 4 + [("error", ECHO)]
    receipt, correction, reaction, oob, error = (children(m.xml) for m in got)
    assert receipt == [(f"{{{RECEIPTS}}}received", {"id": "alice-message-1"}, None)]
    assert correction == [
        ("{jabber:client}body", {}, "I meant this"),
        ("{urn:xmpp:message-correct:0}replace", {"id": "bot-message-1"}, None),
    ]
    assert reaction == [
        (
            "{urn:xmpp:reactions:0}reactions",
            {"id": "alice-message-1"},
            '<ns0:reaction xmlns:ns0="urn:xmpp:reactions:0">\U0001f44d</ns0:reaction>',
        )
    ]
    assert oob == [
        ("{jabber:client}body", {}, "here is the cat"),
        (
            "{jabber:x:oob}x",
            {},
            '<ns0:url xmlns:ns0="jabber:x:oob">https://media.example/cat.png</ns0:url>'
            '<ns0:desc xmlns:ns0="jabber:x:oob">a cat</ns0:desc>',
        ),
    ]
    assert got[4]["id"] == "alice-message-1"  # an error carries the id of what it answers
    assert error == [
        (
            "{jabber:client}error",
            {"type": "modify"},
            f'<ns0:not-acceptable xmlns:ns0="{STANZAS}" />'
            f'<ns0:text xmlns:ns0="{STANZAS}">one message at a time</ns0:text>',
        )
    ]
    assert metric(app, "bot_requests_total", outcome="replied") == 1
    await asyncio.sleep(0.3)
    assert every.empty(), "more than the receipt and the four replies"
