"""The bot platform: routes, signed requests, the send API, XML both ways (through a real server)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slixmpp import JID
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from component.bot import signing
from tests.harness.clients import WAIT, Client
from tests.harness.parts import COMPONENT, Bot, ConnectClient, StartComponent, metric, serve_posts
from tests.harness.servers import XmppServer

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
TOKEN = "test-token-0123456789"


class RawBot:
    """A bot that keeps each request's raw body and headers; `reply` makes its answer."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        self.reply: Callable[[bytes], web.Response] = lambda _body: web.Response(status=204)
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((request.path, dict(request.headers), body))
        return self.reply(body)

    async def start(self) -> None:
        self._runner, self.url = await serve_posts(self._handle)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def raw_bots() -> AsyncIterator[Callable[[], Awaitable[RawBot]]]:
    made: list[RawBot] = []

    async def make() -> RawBot:
        bot = RawBot()
        await bot.start()
        made.append(bot)
        return bot

    yield make
    for bot in made:
        await bot.stop()


def say(text: str) -> Callable[[bytes], web.Response]:
    return lambda _body: web.json_response({"body": text})


# -- routes ---------------------------------------------------------------------------------------------------
async def test_routes_send_each_bot_to_its_own_url(
    raw_bots: Callable[[], Awaitable[RawBot]], start_component: StartComponent, connect: ConnectClient
) -> None:
    default, weather = await raw_bots(), await raw_bots()
    default.reply, weather.reply = say("from the default bot"), say("sunny")
    await start_component(
        bot={"url": default.url + "/bots/{local}/{kind}", "routes": {"weather": weather.url + "/hook"}}
    )
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "hi")
    assert (await alice.next_message())["body"] == "from the default bot"
    alice.say(f"weather@{COMPONENT}", "today?")
    assert (await alice.next_message())["body"] == "sunny"
    assert [path for path, _, _ in default.seen] == ["/bots/echo/message"]
    assert [path for path, _, _ in weather.seen] == ["/hook"]


async def test_an_unrouted_bot_is_item_not_found(
    raw_bots: Callable[[], Awaitable[RawBot]], start_component: StartComponent, connect: ConnectClient
) -> None:
    weather = await raw_bots()
    app = await start_component(bot={"url": "", "routes": {"weather": weather.url}})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "anyone?")
    reply = await alice.next_message()
    assert (reply["type"], reply["error"]["type"], reply["error"]["condition"]) == ("error", "cancel", "item-not-found")
    assert metric(app, "bot_requests_total", outcome="no_route") == 1
    # presence and the local flow are unaffected
    await alice.plugin["xep_0199"].send_ping(JID(f"echo@{COMPONENT}"), timeout=WAIT)
    assert weather.seen == []


# -- signed requests ------------------------------------------------------------------------------------------
async def test_requests_are_signed_the_standard_webhooks_way(
    raw_bots: Callable[[], Awaitable[RawBot]], start_component: StartComponent, connect: ConnectClient
) -> None:
    bot = await raw_bots()
    bot.reply = say("verified")
    await start_component(bot={"url": bot.url, "signing_secret": SECRET})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "one")
    await alice.next_message()
    alice.say(f"echo@{COMPONENT}", "two")
    await alice.next_message()
    hook = Webhook(SECRET)
    (_, h1, body1), (_, h2, _body2) = bot.seen
    assert hook.verify(body1, h1)["body"] == "one"  # the library parses the verified JSON
    assert h1["webhook-id"] != h2["webhook-id"]
    assert abs(int(h1["webhook-timestamp"]) - time.time()) < 60
    with pytest.raises(WebhookVerificationError):
        hook.verify(body1.replace(b"one", b"eno"), h1)
    secret = base64.b64decode(SECRET.removeprefix("whsec_"))
    old = signing.headers(secret, body1, now=time.time() - 3600)
    with pytest.raises(WebhookVerificationError, match="too old"):
        hook.verify(body1, old)


async def test_signing_secret_from_the_environment(
    bot: Bot, server: XmppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from component.config import from_dict

    raw = {"component": {"jid": COMPONENT, "secret": "s"}, "bot": {"url": bot.url}}
    key = from_dict(raw, env={"XMPP_COMPONENT_SIGNING_SECRET": SECRET}).bot.signing_key
    assert key == base64.b64decode(SECRET.removeprefix("whsec_"))


# -- XML both ways --------------------------------------------------------------------------------------------
async def test_xml_format_posts_the_stanza_and_takes_a_raw_stanza_back(
    raw_bots: Callable[[], Awaitable[RawBot]], start_component: StartComponent, connect: ConnectClient
) -> None:
    bot = await raw_bots()
    bot.reply = lambda _body: web.Response(
        body=b"<message type='chat'><body>raw reply</body></message>", headers={"Content-Type": "application/xmpp+xml"}
    )
    await start_component(bot={"url": bot.url, "format": "xml"})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "as xml")
    reply = await alice.next_message()
    assert (reply["body"], str(reply["from"])) == ("raw reply", f"echo@{COMPONENT}")
    [(_, headers, body)] = bot.seen
    assert headers["Content-Type"] == "application/xmpp+xml"
    assert body.startswith(b'<message xmlns="jabber:client"') and b"<body>as xml</body>" in body


async def test_json_format_also_takes_a_raw_stanza_back(
    raw_bots: Callable[[], Awaitable[RawBot]], start_component: StartComponent, connect: ConnectClient
) -> None:
    bot = await raw_bots()
    bot.reply = lambda _body: web.Response(
        body=b"<message><body>xml from a json bot</body></message>",
        headers={"Content-Type": "application/xmpp+xml; charset=utf-8"},
    )
    await start_component(bot={"url": bot.url})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "hi")
    assert (await alice.next_message())["body"] == "xml from a json bot"
    assert bot.seen[0][1]["Content-Type"] == "application/json; charset=utf-8"


# -- the send API ---------------------------------------------------------------------------------------------
class Api:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    async def post(
        self,
        path: str,
        data: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None = TOKEN,
        content_type: str = "application/json",
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        import json

        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        body = raw if raw is not None else json.dumps(data).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.base + path, data=body, headers=headers) as resp,
        ):
            return resp.status, await resp.json(), dict(resp.headers)


StartApi = Callable[..., Awaitable[Api]]


@pytest.fixture
def start_api(start_component: StartComponent) -> StartApi:
    async def start(**sections: dict[str, Any]) -> Api:
        # mypy cannot tell that `sections` holds no `wait` or `backoff`
        app = await start_component(api={"listen": "127.0.0.1:0", "token": TOKEN}, **sections)  # type: ignore[arg-type]
        assert app.api_port is not None
        api = Api(app.api_port)
        api.app = app  # type: ignore[attr-defined]
        return api

    return start


async def test_send_api_delivers_objects_arrays_and_raw_stanzas(start_api: StartApi, connect: ConnectClient) -> None:
    api = await start_api()
    alice = await connect("alice")
    me = str(alice.boundjid)
    assert (await api.post("/v1/stanzas", {"to": me, "body": "hello from the app"}))[:2] == (200, {"sent": 1})
    msg = await alice.next_message()
    assert (msg["body"], str(msg["from"]), msg["type"]) == ("hello from the app", COMPONENT, "chat")
    status, answer, _ = await api.post(
        "/v1/stanzas",
        [
            {"to": me, "from": f"news@{COMPONENT}", "body": "one"},
            {"to": me, "from": f"news@{COMPONENT}/desk", "body": "two"},
        ],
    )
    assert (status, answer) == (200, {"sent": 2})
    got = [await alice.next_message() for _ in range(2)]
    assert [(m["body"], str(m["from"])) for m in got] == [
        ("one", f"news@{COMPONENT}"),
        ("two", f"news@{COMPONENT}/desk"),
    ]
    raw = f"<message to='{me}' from='raw@{COMPONENT}' type='headline'><body>raw</body></message>".encode()
    assert (await api.post("/v1/stanzas", raw=raw, content_type="application/xmpp+xml"))[:2] == (200, {"sent": 1})
    msg = await alice.next_message()
    assert (msg["body"], msg["type"], str(msg["from"])) == ("raw", "headline", f"raw@{COMPONENT}")
    app = api.app  # type: ignore[attr-defined]
    assert metric(app, "api_requests_total", path="/v1/stanzas", status="200") == 3


async def test_send_api_iq_returns_the_answer(start_api: StartApi, connect: ConnectClient) -> None:
    api = await start_api()
    alice = await connect("alice")
    ping = f"<iq type='get' to='{alice.boundjid}'><ping xmlns='urn:xmpp:ping'/></iq>"
    status, answer, _ = await api.post("/v1/iq", {"stanza": ping})
    assert (status, answer.get("type")) == (200, "result"), answer
    assert answer["stanza"].startswith('<iq xmlns="jabber:client"')
    disco = f"<iq type='get' to='{alice.boundjid}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    status, answer, _ = await api.post("/v1/iq", raw=disco.encode(), content_type="application/xmpp+xml")
    assert status == 200 and "urn:xmpp:ping" in answer["stanza"]


async def test_send_api_iq_times_out_with_504(start_api: StartApi, connect: ConnectClient) -> None:
    api = await start_api(bot={"timeout": 0.5})
    alice: Client = await connect("alice")
    alice.register_handler(
        Callback("swallow", MatchXPath("{jabber:client}iq/{urn:example:silent}query"), lambda _iq: None)
    )
    iq = f"<iq type='get' to='{alice.boundjid}'><query xmlns='urn:example:silent'/></iq>"
    status, answer, _ = await api.post("/v1/iq", {"stanza": iq})
    assert status == 504 and "no answer within 0.5 s" in answer["error"]


@pytest.mark.parametrize(
    ("kwargs", "status", "field", "text"),
    [
        pytest.param({"data": {"body": "no to"}}, 400, "to", "'to' is required", id="missing-to"),
        pytest.param({"data": {"to": "alice@localhost", "kind": "fax"}}, 400, "kind", "'kind' must be", id="bad-kind"),
        pytest.param(
            {"data": {"to": "alice@localhost", "body": 5}},
            400,
            "body",
            "'body' must be a string",
            id="body-not-a-string",
        ),
        pytest.param({"raw": b"{nope"}, 400, None, "not valid JSON", id="invalid-json"),
        pytest.param({"data": {"to": "a@b@c"}}, 400, "to", "not a valid JID", id="invalid-to"),
        pytest.param({"data": {"to": "alice@localhost"}, "token": None}, 401, None, "Bearer", id="no-token"),
        pytest.param({"data": {"to": "alice@localhost"}, "token": "wrong"}, 401, None, "Bearer", id="wrong-token"),
        pytest.param(
            {"data": {"to": "alice@localhost", "from": "bob@localhost", "body": "spoof"}},
            403,
            "from",
            "must be a JID of bot.localhost",
            id="foreign-from",
        ),
        pytest.param(
            {
                "raw": b"<!DOCTYPE x [<!ENTITY a 'b'>]><message to='alice@localhost'>&a;</message>",
                "content_type": "application/xmpp+xml",
            },
            403,
            "stanza",
            "DTD",
            id="dtd",
        ),
        pytest.param(
            {"raw": b'{"to": "alice@localhost", "body": "' + b"x" * 5000 + b'"}'},
            413,
            None,
            "larger than",
            id="too-large",
        ),
        pytest.param({"raw": b"hello", "content_type": "text/plain"}, 415, None, "Content-Type", id="wrong-type"),
    ],
)
async def test_send_api_errors(
    start_api: StartApi, kwargs: dict[str, Any], status: int, field: str | None, text: str
) -> None:
    api = await start_api(bot={"max_reply_bytes": 4096})
    kwargs = dict(kwargs)  # the parameter set is shared by both servers' runs: do not consume it
    got, answer, headers = await api.post("/v1/stanzas", kwargs.pop("data", None), **kwargs)
    assert got == status, answer
    assert text in answer["error"]
    assert answer.get("field") == field
    if status == 401:
        assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_send_api_iq_needs_one_iq_get_or_set(start_api: StartApi) -> None:
    api = await start_api()
    status, answer, _ = await api.post("/v1/iq", {"to": "alice@localhost", "body": "not an iq"})
    assert (status, answer["field"]) == (400, "kind")


async def test_send_api_is_off_by_default(start_component: StartComponent) -> None:
    app = await start_component()
    assert app.api_port is None


async def test_send_api_is_503_while_the_server_is_down(tmp_path: Any, bot: Bot) -> None:
    from component.app import App
    from component.metrics import Metrics
    from tests.harness.clients import USERS
    from tests.harness.parts import FAST, SECRET, component_config
    from tests.harness.servers import start_prosody

    server = start_prosody(tmp_path / "prosody", component_secret=SECRET)
    server.register("alice", USERS["alice"])
    app = App(component_config(server, bot.url, api={"listen": "127.0.0.1:0", "token": TOKEN}), Metrics(), FAST)
    await app.start()
    try:
        await asyncio.wait_for(app.connected.wait(), WAIT)
        assert app.api_port is not None
        api = Api(app.api_port)
        message = {"to": "alice@localhost", "body": "queued?"}
        assert (await api.post("/v1/stanzas", message))[0] == 200
        server.stop()
        for _ in range(100):
            if not app.connected.is_set():
                break
            await asyncio.sleep(0.05)
        status, answer, _ = await api.post("/v1/stanzas", message)
        assert status == 503 and "stream is down" in answer["error"]
        server.start()
        await asyncio.wait_for(app.connected.wait(), WAIT)
        assert (await api.post("/v1/stanzas", message))[0] == 200
        assert metric(app, "api_requests_total", path="/v1/stanzas", status="503") == 1
    finally:
        await app.stop()
        server.stop()


async def test_api_stanzas_are_out_events(
    start_component: StartComponent, connect: ConnectClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.integration.test_notify import Sink

    sink = Sink()
    await sink.start()
    try:
        app = await start_component(
            api={"listen": "127.0.0.1:0", "token": TOKEN},
            outgoing_pools={"http": {"http_pool": {"connection": {"host": sink.host}}}},
            event_pusher={"http": {"handlers": [{"path": "/all", "callback_module": "tests.notify_all"}]}},
        )
        alice = await connect("alice")
        assert app.api_port is not None
        await Api(app.api_port).post("/v1/stanzas", {"to": str(alice.boundjid), "body": "pushed"})
        await alice.next_message()
        await sink.wait_for(1)
        events = [json.loads(body) for body in sink.bodies("/all")]
        assert {
            "direction": "out",
            "kind": "message",
            "type": "chat",
            "from": COMPONENT,
            "to": str(alice.boundjid),
            "body": "pushed",
            "host_type": COMPONENT,
        } in events
    finally:
        await sink.stop()
