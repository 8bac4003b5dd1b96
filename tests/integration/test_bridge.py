"""The bot flow end to end: a real Prosody or ejabberd, real clients, real aiohttp bots, the component in-process."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from slixmpp.exceptions import IqError

from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, Bot, ConnectClient, StartComponent, echo, json_reply, metric
from tests.harness.servers import free_port


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


async def test_array_reply_sends_several_stanzas_in_order(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    bot.handler = json_reply([{"body": "one"}, {"body": "two"}, {"body": "three"}])
    await start_component()
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "count")
    assert [(await alice.next_message())["body"] for _ in range(3)] == ["one", "two", "three"]


async def test_stanza_reply_gets_to_and_from_filled_in(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    bot.handler = json_reply({"stanza": "<message type='headline'><body>news</body></message>"})
    await start_component()
    alice = await connect("alice")
    alice.say(f"news@{COMPONENT}", "subscribe me")
    reply = await alice.next_message()
    assert (reply["body"], reply["type"], str(reply["from"])) == ("news", "headline", f"news@{COMPONENT}")


async def test_built_reply_may_come_from_another_bot_jid_and_go_to_another_user(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    bot.handler = json_reply({"from": f"relay@{COMPONENT}/x", "to": "bob@localhost", "body": "from alice"})
    await start_component()
    alice, bob = await connect("alice"), await connect("bob")
    alice.say(f"echo@{COMPONENT}", "pass it on")
    reply = await bob.next_message()
    assert (reply["body"], str(reply["from"])) == ("from alice", f"relay@{COMPONENT}/x")
    await alice.no_message()


@pytest.mark.parametrize(
    ("obj", "text"),
    [
        pytest.param(
            {"stanza": "<message from='mallory@localhost'><body>x</body></message>"},
            "'from' must be a JID of bot.localhost",
            id="stanza-from-outside-the-domain",
        ),
        pytest.param(
            {"from": "alice@localhost", "body": "spoofed"},
            "'from' must be a JID of bot.localhost",
            id="built-from-outside-the-domain",
        ),
        pytest.param({"stanza": "<message><body>unclosed</message>"}, "not well-formed", id="malformed-stanza"),
        pytest.param({"body": "\u0000"}, "'body' contains characters that XML does not allow", id="nul-character"),
    ],
)
async def test_forbidden_or_broken_replies_get_an_error_that_says_why(
    bot: Bot, start_component: StartComponent, connect: ConnectClient, obj: dict[str, str], text: str
) -> None:
    bot.handler = json_reply(obj)
    app = await start_component()
    alice, bob = await connect("alice"), await connect("bob")
    alice.say(f"echo@{COMPONENT}", "hi")
    reply = await alice.next_message()
    assert reply["type"] == "error"
    assert (reply["error"]["type"], reply["error"]["condition"]) == ("cancel", "internal-server-error")
    assert text in reply["error"]["text"]
    await bob.no_message(0.2)
    # the stream survived: the next message is served
    bot.handler = echo
    alice.say(f"echo@{COMPONENT}", "again")
    assert (await alice.next_message())["body"] == "Did you say again?"
    assert metric(app, "bot_requests_total", outcome="unusable") == 1


@pytest.mark.parametrize(
    ("body", "content_type", "text"),
    [
        pytest.param(b"{not json", "application/json", "not valid JSON", id="invalid-json"),
        pytest.param(b'{"body": "\xff"}', "application/json", "not valid UTF-8", id="not-utf8"),
        pytest.param(b'{"body": "hi"}', "application/xml", "Content-Type is 'application/xml'", id="xml-not-xmpp"),
        pytest.param(b"x" * 5000, "application/json", "larger than bot.max_reply_bytes", id="over-max-reply-bytes"),
    ],
)
async def test_unusable_replies(
    bot: Bot, start_component: StartComponent, connect: ConnectClient, body: bytes, content_type: str, text: str
) -> None:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    bot.handler = handler
    await start_component(bot={"max_reply_bytes": 4096})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "hi")
    reply = await alice.next_message()
    assert reply["type"] == "error"
    assert reply["error"]["condition"] == "internal-server-error"
    assert text in reply["error"]["text"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(200, b"", id="200-empty"),
        pytest.param(204, b"", id="204"),
        pytest.param(202, b'{"body": "ignored"}', id="202-with-a-body"),
        pytest.param(200, b"null", id="200-json-null"),
    ],
)
async def test_no_reply_when_the_bot_chooses_silence(
    bot: Bot, start_component: StartComponent, connect: ConnectClient, status: int, body: bytes
) -> None:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(status=status, body=body or None, headers={"Content-Type": "application/json"})

    bot.handler = handler
    app = await start_component()
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "hi")
    await alice.no_message()
    assert len(bot.requests) == 1
    assert metric(app, "bot_requests_total", outcome="silent") == 1


async def test_text_is_a_body_and_other_types_are_ignored(
    bot: Bot, start_component: StartComponent, connect: ConnectClient, caplog: pytest.LogCaptureFixture
) -> None:
    """mod_rest's rules: a 200 text/plain is the body of the reply; a 200 of a type that is neither JSON, XML nor
    text (a PHP script's text/html) sends nothing, is counted each time and logged once for the bot."""

    async def handler(request: web.Request) -> web.Response:
        if (await request.json())["body"] == "text":
            return web.Response(text="plain answer", content_type="text/plain")
        return web.Response(text="<b>Notice</b>: undefined index", content_type="text/html")

    bot.handler = handler
    app = await start_component()
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "html")
    alice.say(f"echo@{COMPONENT}", "html")
    alice.say(f"echo@{COMPONENT}", "text")
    reply = await alice.next_message()
    assert (reply["type"], reply["body"]) == ("chat", "plain answer")
    await alice.no_message(0.2)
    assert metric(app, "bot_requests_total", outcome="ignored") == 2
    assert metric(app, "bot_requests_total", outcome="replied") == 1
    said = [r.getMessage() for r in caplog.records if "Content-Type text/html" in r.getMessage()]
    assert len(said) == 1 and "nothing is sent" in said[0]


ERROR_TABLE = [
    (400, "modify", "bad-request", ""),
    (401, "auth", "not-authorized", ""),
    (402, "auth", "forbidden", "Payment required"),
    (403, "auth", "forbidden", ""),
    (404, "cancel", "item-not-found", ""),
    (410, "cancel", "gone", ""),
    (500, "cancel", "internal-server-error", ""),
    (501, "cancel", "feature-not-implemented", ""),
    (502, "cancel", "remote-server-timeout", "Bad gateway"),
    (503, "wait", "remote-server-timeout", "Service temporarily unavailable"),
    (504, "wait", "remote-server-timeout", "Gateway timeout"),
    (418, "cancel", "service-unavailable", ""),
    (302, "cancel", "service-unavailable", ""),
]


async def test_http_errors_become_xmpp_errors(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    async def handler(request: web.Request) -> web.Response:
        status = int((await request.json())["body"])
        return web.Response(status=status, headers={"Location": "/elsewhere"} if status == 302 else None)

    bot.handler = handler
    app = await start_component()
    alice = await connect("alice")
    for status, error_type, condition, text in ERROR_TABLE:
        sent = alice.say(f"echo@{COMPONENT}", str(status))
        reply = await alice.next_message()
        assert reply["type"] == "error", status
        assert reply["id"] == sent["id"]
        got = (reply["error"]["type"], reply["error"]["condition"], reply["error"]["text"])
        assert got == (error_type, condition, text), status
    assert metric(app, "bot_requests_total", outcome="http_error") == len(ERROR_TABLE)


async def test_connection_failure(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    closed = free_port()
    app = await start_component(bot={"url": f"http://127.0.0.1:{closed}/"})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "anyone?")
    reply = await alice.next_message()
    got = (reply["error"]["type"], reply["error"]["condition"], reply["error"]["text"])
    assert got == ("cancel", "remote-server-timeout", "Connection failure")
    assert metric(app, "bot_requests_total", outcome="connection_error") == 1


async def test_our_own_timeout(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    gate = asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        await gate.wait()  # released at the end, so the bot's teardown need not wait for this handler
        return web.json_response({"body": "too late"})

    bot.handler = slow
    app = await start_component(bot={"timeout": 0.3})
    try:
        alice = await connect("alice")
        alice.say(f"echo@{COMPONENT}", "slow?")
        reply = await alice.next_message()
        got = (reply["error"]["type"], reply["error"]["condition"], reply["error"]["text"])
        assert got == ("wait", "remote-server-timeout", "Gateway timeout")
        assert metric(app, "bot_requests_total", outcome="timeout") == 1
        await alice.no_message(0.2)  # the late answer is not sent after the error
    finally:
        gate.set()


async def test_error_stanzas_are_neither_posted_nor_answered(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    await start_component()
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "bounced", mtype="error")
    alice.say(f"echo@{COMPONENT}", "after")
    assert (await alice.next_message())["body"] == "Did you say after?"
    assert [r["body"] for r in bot.requests] == ["after"]


async def test_iq_to_the_bot_gets_the_request_id_and_type_result(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    bot.handler = json_reply({"kind": "iq"})
    await start_component(bot={"stanzas": ["message", "iq"]})
    alice = await connect("alice")
    iq = alice.make_iq_get(queryxmlns="urn:example:weather", ito=f"weather@{COMPONENT}")
    result = await iq.send(timeout=WAIT)  # type: ignore[no-untyped-call]
    assert (result["type"], result["id"]) == ("result", iq["id"])
    assert bot.requests[0]["kind"] == "iq" and bot.requests[0]["id"] == iq["id"]


async def test_iq_the_bot_does_not_answer_still_gets_an_answer(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    answers = iter([json_reply(None), json_reply(None, status=204)])

    async def handler(request: web.Request) -> web.StreamResponse:
        return await next(answers)(request)

    bot.handler = handler
    await start_component(bot={"stanzas": ["message", "iq"]})
    alice = await connect("alice")
    iq = alice.make_iq_get(queryxmlns="urn:example:weather", ito=f"weather@{COMPONENT}")
    with pytest.raises(IqError) as info:  # 200 with nothing in it: the bot did not answer
        await iq.send(timeout=WAIT)  # type: ignore[no-untyped-call]
    assert info.value.iq["error"]["condition"] == "service-unavailable"
    iq = alice.make_iq_get(queryxmlns="urn:example:weather", ito=f"weather@{COMPONENT}")
    result = await iq.send(timeout=WAIT)  # type: ignore[no-untyped-call]
    assert (result["type"], result["id"]) == ("result", iq["id"])  # 204 (mod_rest): accepted, an empty result
