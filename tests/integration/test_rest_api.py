"""mod_rest's REST API on the send API (component/api/rest.py).

Its HTTP behaviour (paths, content types, credentials, errors in mod_rest's shape, the iq wait, the hostile-caller
protections) against the real server with a stand-in stream, once; then the same requests through real Prosody and
ejabberd to real users: Basic auth, messages in every input format, and the iq queries answered by the user's
client and by the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from component.api import rest
from component.api import server as api_server
from component.api.iq import IqWaiter
from component.api.server import make_app
from component.config import from_dict
from component.http_server import API_LIMITS, Served, serve
from component.metrics import Metrics
from component.stanza import Stanza
from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, SECRET, ConnectClient, StartComponent, metric

TOKEN = "rest-token-0123"
BASIC = "Basic " + base64.b64encode(f"{COMPONENT}:{SECRET}".encode()).decode()
BEARER = f"Bearer {TOKEN}"
JSON = "application/json"
XML = "application/xmpp+xml"
ALICE = "alice@localhost/phone"


@dataclass
class StandIn:
    """The XMPP side of the send API: records what is sent; answers an iq with `answer` (None: never)."""

    up: bool = True
    sent: list[Stanza] = field(default_factory=list)
    answer: str | None = "result"
    waiter: IqWaiter = field(default_factory=IqWaiter)

    def send_all(self, stanzas: list[Stanza]) -> bool:
        if not self.up:
            return False
        self.sent.extend(stanzas)
        for s in stanzas:
            if s.kind == "iq" and self.answer is not None:
                xml = (
                    f'<iq xmlns="jabber:client" type="{self.answer}" id="{s.id}" from="{s.to}" to="{s.from_}">'
                    '<query xmlns="jabber:iq:version"><name>Stand-in</name><version>1</version></query></iq>'
                )
                answer = Stanza("iq", s.from_, s.to, self.answer, s.id, None, xml)
                asyncio.get_running_loop().call_soon(self.waiter.take, answer)
        return True


@dataclass
class Api:
    served: Served
    stand_in: StandIn

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.served.port}"

    async def call(
        self,
        method: str,
        path: str,
        body: bytes | str | None = None,
        content_type: str | None = JSON,
        auth: str | None = BASIC,
        **headers: str,
    ) -> tuple[int, dict[str, str], bytes]:
        sent = {k.replace("_", "-"): v for k, v in headers.items()}
        if auth is not None:
            sent["Authorization"] = auth
        if content_type is not None:
            sent["Content-Type"] = content_type
        data = body.encode() if isinstance(body, str) else body
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.base + path, data=data, headers=sent) as r,
        ):
            return r.status, dict(r.headers), await r.read()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    config = from_dict(
        {
            "component": {"jid": COMPONENT, "secret": SECRET},
            "bot": {"url": "http://127.0.0.1:9/", "max_reply_bytes": 4096},
            "api": {"listen": "127.0.0.1:0", "token": TOKEN},
        },
        env={},
    )
    stand_in = StandIn()
    app = make_app(config, Metrics(), lambda: stand_in.up, stand_in.send_all, stand_in.waiter)
    served = await serve(app, "api.listen", "127.0.0.1", 0, API_LIMITS)
    yield Api(served, stand_in)
    await served.close()


def xml_of(stanza: Stanza) -> str:
    return re.sub(r' id="[0-9a-f]{32}"', ' id="*"', stanza.xml)


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "sent"),
    [
        pytest.param(
            "POST",
            "/rest",
            json.dumps({"kind": "message", "type": "chat", "to": ALICE, "body": "Hello!"}),
            JSON,
            f'<message to="{ALICE}" from="{COMPONENT}" type="chat"><body>Hello!</body></message>',
            id="json",
        ),
        pytest.param(
            "POST",
            "/rest",
            f'<message type="chat" to="{ALICE}"><body>Hello!</body></message>',
            XML,
            f'<message type="chat" to="{ALICE}" from="{COMPONENT}"><body>Hello!</body></message>',
            id="xml",
        ),
        pytest.param(
            "POST",
            f"/rest/message/chat/{ALICE}",
            "Hello John!",
            "text/plain",
            f'<message to="{ALICE}" from="{COMPONENT}" type="chat"><body>Hello John!</body></message>',
            id="text-with-path",
        ),
        pytest.param(
            "POST",
            "/rest/message/groupchat/room@muc.localhost",
            "body=beep+boop&nick=Botty",
            "application/x-www-form-urlencoded",
            f'<message to="room@muc.localhost" from="{COMPONENT}" type="groupchat"><body>beep boop</body>'
            '<nick xmlns="http://jabber.org/protocol/nick">Botty</nick></message>',
            id="form-with-path",
        ),
        pytest.param(
            "POST",
            f"/rest/presence/unavailable/{ALICE}",
            json.dumps({"status": "gone fishing"}),
            JSON,
            f'<presence to="{ALICE}" from="{COMPONENT}" type="unavailable"><status>gone fishing</status></presence>',
            id="json-with-path",
        ),
        pytest.param(
            "POST",
            f"/rest/presence/available/{ALICE}",
            "dnd",
            "text/plain",
            f'<presence to="{ALICE}" from="{COMPONENT}"><show>dnd</show></presence>',
            id="presence-text-is-show",
        ),
    ],
)
async def test_stanzas_are_sent_and_answered_202(
    api: Api, method: str, path: str, body: str, content_type: str, sent: str
) -> None:
    status, _, answer = await api.call(method, path, body, content_type)
    assert (status, answer) == (202, b"")
    assert [xml_of(s) for s in api.stand_in.sent] == [sent]


@pytest.mark.parametrize(
    ("path", "sent"),
    [
        pytest.param("/rest/ping/localhost", '<ping xmlns="urn:xmpp:ping"/>', id="ping"),
        pytest.param("/rest/version/localhost", '<query xmlns="jabber:iq:version"/>', id="version"),
        pytest.param(
            "/rest/disco/localhost?node=urn%3Ax",
            '<query xmlns="http://jabber.org/protocol/disco#info" node="urn:x"/>',
            id="disco-with-a-node",
        ),
        pytest.param("/rest/items/localhost", '<query xmlns="http://jabber.org/protocol/disco#items"/>', id="items"),
    ],
)
async def test_get_queries_send_an_iq_get(api: Api, path: str, sent: str) -> None:
    status, headers, _ = await api.call("GET", path, content_type=None, Accept=JSON)
    assert (status, headers["Content-Type"]) == (200, JSON)
    assert [xml_of(s) for s in api.stand_in.sent] == [
        f'<iq to="localhost" from="{COMPONENT}" type="get" id="*">{sent}</iq>'
    ]


@pytest.mark.parametrize(
    ("headers", "content_type", "expected"),
    [
        pytest.param({}, None, "application/xmpp+xml", id="xml-by-default"),
        pytest.param({"Accept": "application/json"}, None, "application/json", id="accept-json"),
        pytest.param({"Accept": "text/html, application/json;q=0.9, */*"}, None, "application/json", id="browser-like"),
        pytest.param({}, "application/json", "application/json", id="as-the-request-came"),
        pytest.param(
            {"Accept": "application/x-www-form-urlencoded"}, None, "application/x-www-form-urlencoded", id="form"
        ),
    ],
)
async def test_an_iq_waits_for_its_answer_in_the_format_asked(
    api: Api, headers: dict[str, str], content_type: str | None, expected: str
) -> None:
    body = json.dumps({"kind": "iq", "type": "get", "to": ALICE, "version": {}}) if content_type else None
    method, path = ("POST", "/rest") if content_type else ("GET", f"/rest/version/{ALICE}")
    status, got, answer = await api.call(method, path, body, content_type, **headers)
    assert (status, got["Content-Type"]) == (200, expected)
    [iq] = api.stand_in.sent
    if expected == JSON:
        assert json.loads(answer) == {
            "kind": "iq",
            "type": "result",
            "id": iq.id,
            "from": ALICE,
            "to": COMPONENT,
            "version": {"name": "Stand-in", "version": "1"},
        }
    elif expected == XML:
        assert answer.startswith(b'<iq xmlns="jabber:client" type="result"') and b"<name>Stand-in</name>" in answer
    else:
        assert answer == f"kind=iq&type=result&id={iq.id}&to=bot.localhost&from=alice%40localhost%2Fphone".encode()


async def test_an_iq_error_answer_is_returned_as_json(api: Api) -> None:
    api.stand_in.answer = "error"
    status, _, answer = await api.call("GET", f"/rest/ping/{ALICE}", content_type=None, Accept=JSON)
    assert status == 200 and json.loads(answer)["type"] == "error"


async def test_prosody_rest_timeout_is_honoured(api: Api) -> None:
    api.stand_in.answer = None
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _, answer = await api.call("GET", f"/rest/ping/{ALICE}", content_type=None, Prosody_Rest_Timeout="0.3")
    assert status == 504 and json.loads(answer)["error"]["condition"] == "remote-server-timeout"
    assert 0.3 <= loop.time() - started < 2


def test_the_wait_is_bounded() -> None:
    def timeout(value: str | None) -> float:
        from aiohttp.test_utils import make_mocked_request

        headers = {} if value is None else {"Prosody-Rest-Timeout": value}
        return rest.timeout_of(make_mocked_request("GET", "/", headers=headers))

    assert [timeout(v) for v in (None, "5", "1e9", "-1", "soon", "nan")] == [120, 5, 300, 0, 120, 120]


def error(status: int, kind: str, condition: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "condition": condition, "text": text}, "code": status}


NOT_AUTHORIZED = ("auth", "not-authorized")


@pytest.mark.parametrize(
    ("call", "status", "expected", "text"),
    [
        pytest.param({"auth": None}, 401, NOT_AUTHORIZED, "No credentials provided", id="no-credentials"),
        pytest.param({"auth": "Digest x"}, 401, NOT_AUTHORIZED, "No credentials provided", id="other-scheme"),
        pytest.param(
            {"auth": "Basic " + base64.b64encode(f"{COMPONENT}:wrong".encode()).decode()},
            403,
            NOT_AUTHORIZED,
            "Credentials not accepted",
            id="wrong-secret",
        ),
        pytest.param({"auth": "Basic !!!"}, 403, NOT_AUTHORIZED, "Credentials malformed", id="basic-not-base64"),
        pytest.param({"auth": "Bearer nope"}, 403, NOT_AUTHORIZED, "Credentials not accepted", id="wrong-token"),
        pytest.param(
            {"content_type": "text/html"}, 415, ("cancel", "bad-format"), "Unsupported media type", id="media"
        ),
        pytest.param({"body": "{nope"}, 400, ("modify", "not-well-formed"), "Failed to parse payload", id="bad-json"),
        pytest.param({"body": "[1]"}, 400, ("modify", "not-well-formed"), "expected a JSON object", id="json-array"),
        pytest.param({"body": '{"body": "x"}'}, 422, ("modify", "improper-addressing"), "'to' is required", id="no-to"),
        pytest.param(
            {"body": '{"to": "a@b@c"}'}, 422, ("modify", "improper-addressing"), "not a valid JID", id="invalid-to"
        ),
        pytest.param(
            {"body": json.dumps({"to": ALICE, "from": "mallory@localhost"})},
            403,
            NOT_AUTHORIZED,
            "Not authorized to send stanza with requested 'from'",
            id="foreign-from",
        ),
        pytest.param(
            {"body": json.dumps({"to": ALICE, "kind": "fax"})},
            422,
            ("modify", "unsupported-stanza-type"),
            "Invalid stanza",
            id="bad-kind",
        ),
        pytest.param(
            {"body": f'<iq type="result" id="1" to="{ALICE}"/>', "content_type": XML},
            422,
            ("modify", "invalid-xml"),
            "'iq' stanza must be of type 'get' or 'set'",
            id="iq-result",
        ),
        pytest.param(
            {
                "body": f'<iq type="get" id="1" to="{ALICE}"><a xmlns="urn:a"/><b xmlns="urn:b"/></iq>',
                "content_type": XML,
            },
            422,
            ("modify", "bad-format"),
            "'iq' stanza must have exactly one child tag",
            id="iq-two-children",
        ),
        pytest.param(
            {"body": json.dumps({"to": ALICE, "archive": {}})},
            400,
            ("modify", "not-well-formed"),
            "unknown field 'archive'",
            id="unmapped-field",
        ),
        pytest.param({"body": "x" * 5000}, 413, ("modify", "resource-constraint"), "Payload too large", id="too-large"),
        pytest.param(
            {"method": "GET", "path": "/rest/archive/localhost", "content_type": None},
            422,
            ("modify", "bad-format"),
            "no query 'archive' here",
            id="unknown-query",
        ),
        pytest.param(
            {"path": "/rest/fax/send/localhost", "body": "{}"},
            400,
            ("modify", "not-well-formed"),
            "the path names no stanza kind",
            id="bad-path",
        ),
        pytest.param(
            {"path": "/rest/iq/get/localhost", "body": "hello", "content_type": "text/plain"},
            400,
            ("modify", "not-well-formed"),
            "not an iq",
            id="text-for-an-iq",
        ),
    ],
)
async def test_errors_in_mod_rest_shape(
    api: Api, call: dict[str, Any], status: int, expected: tuple[str, str], text: str
) -> None:
    call = {"method": "POST", "path": "/rest", "body": json.dumps({"to": ALICE, "body": "x"}), **call}
    got, headers, answer = await api.call(call.pop("method"), call.pop("path"), **call)
    body = json.loads(answer)
    assert got == status, body
    assert body == error(status, *expected, body["error"]["text"])
    assert text in body["error"]["text"]
    if status == 401:
        assert headers["WWW-Authenticate"] == f'Basic realm="{COMPONENT}/rest", Bearer realm="{COMPONENT}/rest"'
    assert api.stand_in.sent == []


async def test_the_stream_down_is_503_and_nothing_is_sent(api: Api) -> None:
    api.stand_in.up = False
    status, _, answer = await api.call("POST", f"/rest/message/chat/{ALICE}", "hi", "text/plain")
    assert (status, json.loads(answer)["error"]["condition"]) == (503, "remote-server-timeout")


async def test_a_waiting_iq_is_answered_at_shutdown(api: Api) -> None:
    api.stand_in.answer = None
    asking = asyncio.create_task(api.call("GET", f"/rest/ping/{ALICE}", content_type=None))
    async with asyncio.timeout(5):
        while not api.stand_in.sent:
            await asyncio.sleep(0.01)
    await api.served.close()  # no request waits out its 120 s
    status, _, answer = await asyncio.wait_for(asking, 5)
    assert (status, json.loads(answer)["error"]["condition"]) == (503, "service-unavailable")


# -- the hostile-caller protections hold on /rest ----------------------------------------------------------------


async def raw_post(port: int, path: str, head: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: test\r\n{head}\r\n".encode())
    return reader, writer


@pytest.mark.parametrize(
    ("status", "head"),
    [
        (401, "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n"),
        (403, "Transfer-Encoding: chunked\r\nAuthorization: Bearer wrong\r\nContent-Type: application/json\r\n"),
        (415, f"Transfer-Encoding: chunked\r\nAuthorization: {BASIC}\r\nContent-Type: text/html\r\n"),
        (413, f"Content-Length: 50000000\r\nAuthorization: {BASIC}\r\nContent-Type: application/json\r\n"),
    ],
)
async def test_a_refusal_closes_the_connection_without_reading_the_body(api: Api, status: int, head: str) -> None:
    reader, writer = await raw_post(api.served.port, f"/rest/message/chat/{ALICE}", head)
    try:
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert answer.startswith(f"HTTP/1.1 {status} ".encode()) and b"\r\nConnection: close\r\n" in answer
        writer.write(b"10000\r\n" + b"x" * 65536 + b"\r\n" if "chunked" in head else b"x" * 65536)
        async with asyncio.timeout(2):  # closed at once, the body never read
            with suppress(ConnectionError):
                while await reader.read(65536):
                    pass
    finally:
        writer.close()


async def test_a_trickled_body_is_cut_off(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_server, "BODY_SECONDS", 0.3)
    head = f"Content-Length: 100\r\nAuthorization: {BASIC}\r\nContent-Type: text/plain\r\n"
    reader, writer = await raw_post(api.served.port, f"/rest/message/chat/{ALICE}", head)
    try:
        writer.write(b"x")
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"\r\nConnection: close\r\n" in answer
    finally:
        writer.close()


# -- through real Prosody and ejabberd -----------------------------------------------------------------------------


async def test_rest_through_a_real_server(start_component: StartComponent, connect: ConnectClient) -> None:
    app = await start_component(api={"listen": "127.0.0.1:0", "token": TOKEN})
    alice = await connect("alice")
    me = str(alice.boundjid)
    base = f"http://127.0.0.1:{app.api_port}"
    async with aiohttp.ClientSession(headers={"Authorization": BASIC}) as http:
        # a message in each input format, from the component's domain or one of its JIDs
        sends = [
            ("/rest", {"json": {"kind": "message", "type": "chat", "to": me, "body": "json"}}),
            (
                "/rest",
                {
                    "data": f"<message type='chat' to='{me}'><body>xml</body></message>",
                    "headers": {"Content-Type": XML},
                },
            ),
            (f"/rest/message/chat/{me}", {"data": "text", "headers": {"Content-Type": "text/plain"}}),
            ("/rest", {"json": {"to": me, "from": f"echo@{COMPONENT}", "body": "as echo", "state": "active"}}),
        ]
        for path, kwargs in sends:
            async with http.post(base + path, **kwargs) as r:  # type: ignore[arg-type]
                assert r.status == 202, await r.text()
        got = [await alice.next_message() for _ in sends]
        assert [(m["body"], str(m["from"])) for m in got] == [
            ("json", COMPONENT),
            ("xml", COMPONENT),
            ("text", COMPONENT),
            ("as echo", f"echo@{COMPONENT}"),
        ]
        assert got[3].xml.find("{http://jabber.org/protocol/chatstates}active") is not None

        # iq queries, answered by alice's client and by the server
        accept = {"Accept": JSON}
        async with http.get(f"{base}/rest/ping/{me}", headers=accept) as r:
            pong = await r.json()
        assert (r.status, pong["kind"], pong["type"], pong["from"]) == (200, "iq", "result", me)
        async with http.get(f"{base}/rest/version/{me}", headers=accept) as r:
            version = (await r.json())["version"]
        assert version["name"] == "Slixmpp"
        async with http.get(f"{base}/rest/disco/{me}", headers=accept) as r:
            disco = (await r.json())["disco"]
        assert "urn:xmpp:ping" in disco["features"]
        async with http.get(f"{base}/rest/version/localhost", headers=accept) as r:
            assert (await r.json())["version"]["name"].lower() in ("prosody", "ejabberd")
        async with http.get(f"{base}/rest/items/localhost", headers=accept) as r:
            assert r.status == 200 and "items" in await r.json()
        # an iq to no one: the server's error, returned as JSON
        async with http.get(f"{base}/rest/ping/alice@localhost/nowhere", headers=accept) as r:
            answer = await r.json()
        assert (r.status, answer["type"], answer["error"]["condition"]) == (200, "error", "service-unavailable")
        # an iq the client never answers: the Prosody-Rest-Timeout header bounds the wait
        alice.register_handler(
            Callback("swallow", MatchXPath("{jabber:client}iq/{urn:example:silent}q"), lambda _i: None)
        )
        silent = f"<iq type='get' to='{me}'><q xmlns='urn:example:silent'/></iq>"
        headers = {"Content-Type": XML, "Prosody-Rest-Timeout": "0.5"}
        async with http.post(f"{base}/rest", data=silent, headers=headers) as r:
            assert r.status == 504
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/rest/ping/{me}", headers={"Authorization": BEARER}) as r,
    ):
        assert r.status == 200 and (await r.text()).startswith('<iq xmlns="jabber:client"')  # the bearer token, XML
    assert metric(app, "api_requests_total", path="/rest", status="202") == 3
    assert metric(app, "api_requests_total", path="/rest/{query}/{to}", status="200") == 7
    assert WAIT  # the client waits are bounded by the harness
