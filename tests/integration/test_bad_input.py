"""Bad input through a real server: bots replying garbage, hostile XML, spoofed or injected addresses, huge or
deep replies, and users sending deep or wide stanzas.

For every case: the sender gets a clear error (or, where the input is legitimately deliverable, the delivery),
the process keeps serving (a following message gets its echo), and the component's stream is never dropped
(`xmpp_connects_total` stays 1). A generated suite (hypothesis) throws hundreds of arbitrary replies at one
running component per server, with `codec.parse_reply` as the oracle; a pure property test checks the codec.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from conftest import (
    COMPONENT,
    SECRET,
    USERS,
    Bot,
    Client,
    ConnectClient,
    StartComponent,
    echo,
    metric,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from slixmpp.jid import JID
from slixmpp.stanza import Message
from xmpp_servers import ProsodyServer, XmppServer

from component.app import App
from component.codec import ReplyError, Stanza, parse_reply
from component.error_map import unusable_reply
from component.stanza import NS_COMPONENT, has_invalid_chars

ECHO = f"echo@{COMPONENT}"
JSON = "application/json"
XMPP_XML = "application/xmpp+xml"
UNUSABLE = "The bot's reply was unusable: "
PWNED = "pwned"


# -- the named cases -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A bot reply and what alice must get for it.

    `error`: an internal-server-error whose text holds this; `body`: a message with exactly this body (from
    `sender`); neither: the input is legitimate but the server may drop it, so nothing is required of the
    answer, only that whatever alice gets is from the bot and carries no injected content.
    """

    reply: bytes
    content_type: str = JSON
    error: str | None = None
    body: str | None = None
    sender: str = ECHO


def obj(value: Any) -> bytes:
    return json.dumps(value).encode()


def stanza(xml: str) -> bytes:
    return obj({"stanza": xml})


LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE message [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + "]><message><body>&lol9;</body></message>"
)
XXE = '<!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><message><body>&x;</body></message>'
NOT_ALLOWED = "contains characters that XML does not allow"
NOT_A_JID = "is not a valid JID"
FOREIGN_FROM = f"'from' must be a JID of {COMPONENT}"
DTD = "a DTD or entity declaration is not allowed"
TOO_BIG = "over component.max_stanza_bytes"
DEEP = 5000  # deeper than Python's recursion limit: a recursive serializer cannot write it


def deep_stanza(depth: int) -> str:
    return "<message><body>deep</body>" + '<x xmlns="urn:x">' * depth + "</x>" * depth + "</message>"


CASES: dict[str, Case] = {
    # not JSON, or JSON the component must not choke on
    "invalid-json": Case(b"{not json", error="not valid JSON"),
    "truncated-json": Case(b'{"body": "abc', error="not valid JSON"),
    "trailing-garbage": Case(b'{"body": "a"} <x/>', error="not valid JSON"),
    "huge-integer": Case(b'{"body": ' + b"9" * 5000 + b"}", error="not valid JSON"),
    "nan": Case(b"NaN", error="expected a JSON object, got float"),
    "a-string": Case(b'"hello"', error="expected a JSON object, got str"),
    "array-of-numbers": Case(b"[1, 2]", error="item 0: expected a JSON object, got int"),
    "body-not-a-string": Case(obj({"body": {"a": [1]}}), error="'body' must be a string, got dict"),
    "nested-arrays-100000": Case(b"[" * 100_000 + b"]" * 100_000, error="its JSON is nested too deeply"),
    "nested-objects-100000": Case(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, error="its JSON is nested too deeply"),
    "deep-unknown-field": Case(
        b'{"body": "hi", "extra": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", error="its JSON is nested too deeply"
    ),
    # encodings and characters
    "not-utf8": Case(b'{"body": "\xff\xfe"}', error="its body is not valid UTF-8"),
    "utf8-encoded-surrogate": Case(b'{"body": "\xed\xa0\x80"}', error="not valid UTF-8"),  # strict UTF-8
    "xml-not-utf8": Case(b"<message><body>\xe9</body></message>", XMPP_XML, error="its body is not valid UTF-8"),
    "lone-surrogate-body": Case(b'{"body": "a\\ud800b"}', error=f"'body' {NOT_ALLOWED}"),
    "lone-surrogate-to": Case(b'{"to": "alice@localhost/\\udfff"}', error=f"'to' {NOT_ALLOWED}"),
    "lone-surrogate-id": Case(b'{"body": "x", "id": "\\ud83d"}', error=f"'id' {NOT_ALLOWED}"),
    "lone-surrogate-stanza": Case(b'{"stanza": "<message><body>\\udc00</body></message>"}', error=NOT_ALLOWED),
    "nul": Case(obj({"body": "a\u0000b"}), error=f"'body' {NOT_ALLOWED}"),
    "control-characters": Case(obj({"body": "\u0001\u0008\u000b\u000c\u001b[31m"}), error=f"'body' {NOT_ALLOWED}"),
    "non-characters": Case(obj({"body": "\ufffe\uffff"}), error=f"'body' {NOT_ALLOWED}"),
    "control-char-in-type": Case(obj({"body": "x", "type": "chat\u0007"}), error=f"'type' {NOT_ALLOWED}"),
    "escaped-control-char-in-stanza": Case(stanza("<message><body>&#1;</body></message>"), error="not well-formed"),
    "del-and-c1-are-allowed": Case(obj({"body": "a\u007f\u0085\u009fb"}), body="a\u007f\u0085\u009fb"),
    "emoji-and-rtl": Case(obj({"body": "\U0001f600 \u202eabc \u200d"}), body="\U0001f600 \u202eabc \u200d"),
    "tabs-and-newlines": Case(obj({"body": "a\tb\nc"}), body="a\tb\nc"),
    # hostile XML in a stanza reply
    "billion-laughs": Case(stanza(LAUGHS), error=DTD),
    "billion-laughs-as-xmpp-xml": Case(LAUGHS.encode(), XMPP_XML, error=DTD),
    "external-entity": Case(stanza(XXE), error=DTD),
    "lowercase-doctype-after-comment": Case(
        stanza('<!-- hi --><!doctype message [<!ENTITY a "b">]><message><body>&a;</body></message>'), error=DTD
    ),
    "undefined-entity": Case(stanza("<message><body>&lol9;</body></message>"), error="not well-formed"),
    "processing-instruction-is-dropped": Case(stanza('<message><?php echo "x" ?><body>pi</body></message>'), body="pi"),
    "cdata-is-text": Case(
        stanza("<message><body><![CDATA[</body></message><message to='bob@localhost'>]]></body></message>"),
        body="</body></message><message to='bob@localhost'>",
    ),
    "two-stanzas": Case(
        stanza("<message><body>a</body></message><message><body>b</body></message>"),
        error="it must hold exactly one element",
    ),
    "escape-the-wrapper": Case(stanza("<message><body>a</body></message></w><w>"), error="not well-formed"),
    "stream-element": Case(
        stanza("<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>"), error="is not a message"
    ),
    "unbound-prefix": Case(stanza("<message><p:x/></message>"), error="not well-formed"),
    "a-stanza-of-another-namespace": Case(stanza("<message xmlns='urn:evil'><body>x</body></message>"), error="not a"),
    # addresses: spoofed, invalid, injected
    "from-another-user": Case(stanza("<message from='mallory@localhost'><body>x</body></message>"), error=FOREIGN_FROM),
    "from-the-server": Case(obj({"from": "localhost", "body": "x"}), error=FOREIGN_FROM),
    "from-a-lookalike-domain": Case(obj({"from": f"echo@{COMPONENT}.evil", "body": "x"}), error=FOREIGN_FROM),
    "from-a-subdomain": Case(obj({"from": f"echo@x.{COMPONENT}", "body": "x"}), error=FOREIGN_FROM),
    "from-in-upper-case-is-ours": Case(obj({"from": "Echo@BOT.LOCALHOST", "body": "case"}), body="case"),
    "from-injection": Case(
        obj({"from": f'echo@{COMPONENT}/r"><body>{PWNED}</body><x a="', "body": "safe"}),
        body="safe",
        sender=f'echo@{COMPONENT}/r"><body>{PWNED}</body><x a="',
    ),
    "to-two-ats": Case(obj({"to": "a@b@c", "body": "x"}), error=f"'to' {NOT_A_JID}"),
    "to-empty-local": Case(obj({"to": "@localhost", "body": "x"}), error=f"'to' {NOT_A_JID}"),
    "to-empty-domain": Case(obj({"to": "alice@", "body": "x"}), error=f"'to' {NOT_A_JID}"),
    "to-with-space": Case(obj({"to": "alice@local host", "body": "x"}), error=f"'to' {NOT_A_JID}"),
    "to-local-too-long": Case(obj({"to": "a" * 1100 + "@localhost", "body": "x"}), error=f"'to' {NOT_A_JID}"),
    "to-injection-in-domain": Case(
        obj({"to": 'alice@localhost" from="mallory@localhost', "body": "x"}), error=f"'to' {NOT_A_JID}"
    ),
    "to-injection-in-resource": Case(obj({"to": 'alice@localhost/x" from="mallory@localhost', "body": "r"})),
    "type-injection": Case(
        obj({"type": f'chat" from="mallory@localhost"><body>{PWNED}</body', "body": "t"}), error="not a message type"
    ),
    "id-injection": Case(
        obj({"id": f"\"/><message to='bob@localhost'><body>{PWNED}</body></message><x a='", "body": "i"}), body="i"
    ),
    "body-injection": Case(
        obj({"body": f"</body></message><message to='bob@localhost'><body>{PWNED}"}),
        body=f"</body></message><message to='bob@localhost'><body>{PWNED}",
    ),
    "stanza-attribute-injection": Case(
        stanza("<message id='&quot;/&gt;&lt;x' type='chat'><body>q</body></message>"), body="q"
    ),
    "unknown-kind": Case(obj({"kind": "mesage", "body": "x"}), error="'kind' must be message, presence or iq"),
    "kind-in-capitals": Case(obj({"kind": "MESSAGE", "body": "x"}), error="'kind' must be message, presence or iq"),
    "unknown-root": Case(stanza("<foo><body>x</body></foo>"), error="<foo> is not a message, presence or iq"),
    "iq-without-type": Case(obj({"kind": "iq"}), error="an iq needs 'type'"),
    # big and wide
    # over component.max_stanza_bytes (500000 by default, under Prosody's 512 KiB): refused, not written
    "body-900kb": Case(obj({"body": "x" * 900_000}), error=TOO_BIG),
    "body-escapes-to-2mb": Case(obj({"body": "<&" * 250_000}), error=TOO_BIG),
    "stanza-50000-attributes": Case(
        stanza("<message " + " ".join(f"a{i}='v'" for i in range(50_000)) + "><body>wide</body></message>"),
        error=TOO_BIG,
    ),
    "stanza-20000-namespaced-attributes": Case(
        stanza(
            "<message><body>ns</body><x xmlns='urn:x' "
            + " ".join(f"xmlns:p{i}='urn:p{i}' p{i}:a='v'" for i in range(20_000))
            + "/></message>"
        ),
        error=TOO_BIG,
    ),
    "stanza-100000-children": Case(stanza("<message><body>many</body>" + "<x/>" * 100_000 + "</message>"), body="many"),
    "stanza-nested-500": Case(stanza(deep_stanza(500)), error="nested more than 64 levels"),
    "stanza-nested-60": Case(stanza(deep_stanza(60)), body="deep"),
}


async def test_bad_bot_replies(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    """Every named case in turn, through one running component: alice asks, the bot answers the case's reply."""

    async def handler(request: web.Request) -> web.Response:
        words = (await request.json())["body"].split(" ")
        if words[0] == "bad":
            case = CASES[words[1]]
            return web.Response(body=case.reply, headers={"Content-Type": case.content_type})
        return await echo(request)

    bot.handler = handler
    app = await start_component()
    alice, bob = await connect("alice"), await connect("bob")
    failures: list[str] = []
    for name, case in CASES.items():
        unusable = metric(app, "bot_requests_total", outcome="unusable")
        alice.say(ECHO, f"bad {name}")
        alice.say(ECHO, f"after {name}")  # same conversation: its echo follows whatever the bad reply produced
        got = await until_echo(alice, f"after {name}")
        try:
            check_case(case, got)
            assert metric(app, "bot_requests_total", outcome="unusable") == unusable + (case.error is not None)
            assert_stream_kept(app)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
            if not app.connected.is_set():
                break
    await bob.no_message(0.2)  # nothing injected reached bob
    assert metric(app, "internal_errors_total") == 0
    print(f"bad-reply cases tried: {len(CASES)}")
    assert not failures, f"{len(failures)} of {len(CASES)} cases failed:\n" + "\n".join(failures)


def check_case(case: Case, got: list[Message]) -> None:
    if case.error is not None:
        assert len(got) == 1, [str(m) for m in got]
        error = error_of(got[0])
        assert error[:2] == ("cancel", "internal-server-error"), error
        assert error[2].startswith(UNUSABLE) and case.error in error[2], error
    elif case.body is not None:
        assert len(got) == 1, [str(m) for m in got]
        assert got[0]["type"] != "error", got[0]
        assert (got[0]["body"], got[0]["from"]) == (case.body, JID(case.sender)), (got[0]["body"][:80], got[0]["from"])
    for msg in got:
        assert msg["from"].bare == ECHO and msg["body"] != PWNED, msg


async def until_echo(client: Client, body: str) -> list[Message]:
    """What `client` receives before the echo of `body` (which must come)."""
    got = []
    while (msg := await client.next_message()).get("body") != f"Did you say {body}?":
        got.append(msg)
    return got


def error_of(msg: Message) -> tuple[str, str, str]:
    assert msg["type"] == "error", msg
    return msg["error"]["type"], msg["error"]["condition"], msg["error"]["text"]


def assert_stream_kept(app: App) -> None:
    assert metric(app, "xmpp_connects_total") == 1, "the component's stream was dropped and reconnected"
    assert app.connected.is_set()


async def test_deep_reply_counts_as_unusable_not_internal(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    """A reply nested deeper than Python's recursion limit is refused as unusable, with a reason, no traceback."""
    bot.handler = json_handler({"stanza": deep_stanza(DEEP)})
    app = await start_component()
    alice = await connect("alice")
    alice.say(ECHO, "deep")
    error = error_of(await alice.next_message())
    assert error[:2] == ("cancel", "internal-server-error")
    assert "nested more than 64 levels" in error[2]
    assert_stream_kept(app)
    assert (metric(app, "internal_errors_total"), metric(app, "bot_requests_total", outcome="unusable")) == (0, 1)


def json_handler(value: Any) -> Callable[[web.Request], Any]:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=obj(value), headers={"Content-Type": JSON})

    return handler


# -- users sending odd stanzas -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param("<x xmlns='urn:x' " + " ".join(f"a{i}='v'" for i in range(5000)) + "/>", id="5000-attributes"),
        pytest.param("<x xmlns='urn:x'>" * 200 + "</x>" * 200, id="nested-200"),
        pytest.param("<x xmlns='urn:x'>" * DEEP + "</x>" * DEEP, id=f"nested-{DEEP}"),  # answered not-acceptable
    ],
)
async def test_odd_stanza_from_a_user_is_answered(
    server: XmppServer, bot: Bot, start_component: StartComponent, connect: ConnectClient, extra: str
) -> None:
    if server.name == "ejabberd" and extra.count("<x") > 1000:
        # Not the component's to handle: ejabberd 23.01 itself dies (segfault) parsing this from a client.
        pytest.skip("ejabberd 23.01 segfaults on a client stanza nested this deep; it never reaches the component")
    app = await start_component()
    alice = await connect("alice")
    alice.send_raw(f"<message to='{ECHO}' type='chat' id='odd'><body>odd</body>{extra}</message>")
    alice.say(ECHO, "after")
    got = await until_echo(alice, "after")
    assert len(got) == 1 and (got[0]["type"] == "error" or got[0]["body"] == "Did you say odd?"), got
    assert_stream_kept(app)
    assert metric(app, "internal_errors_total") == 0


# -- stanza size limits: the server's own defaults -----------------------------------------------------------


class DefaultLimitsProsody(ProsodyServer):
    """Prosody with its stock stanza size limits (component_stanza_size_limit: 512 KiB in 0.12), unlike the
    generous ones of the shared test servers."""

    def _write_config(self) -> None:
        super()._write_config()
        lines = self.config_path.read_text().splitlines()
        keep = [line for line in lines if not line.startswith(("component_stanza_size_limit", "c2s_stanza_size"))]
        self.config_path.write_text("\n".join(keep) + "\n")


class TestProsodyDefaultLimits:
    @pytest.fixture
    def server(self, tmp_path: Path) -> Iterator[XmppServer]:
        srv = DefaultLimitsProsody(workdir=tmp_path / "prosody", component_secret=SECRET)
        srv.start()
        try:
            for user, password in USERS.items():
                srv.register(user, password)
            yield srv
        finally:
            srv.stop()

    @pytest.mark.parametrize("size", [pytest.param(400_000, id="400kb"), pytest.param(900_000, id="900kb")])
    async def test_big_reply_gets_an_answer_and_keeps_the_stream(
        self, bot: Bot, start_component: StartComponent, connect: ConnectClient, size: int
    ) -> None:
        async def handler(request: web.Request) -> web.Response:
            if (await request.json())["body"] == "big":
                return web.json_response({"body": "x" * size})
            return await echo(request)

        bot.handler = handler
        app = await start_component()
        alice = await connect("alice")
        alice.say(ECHO, "big")
        first = await alice.next_message(5)  # when it comes at all, it comes within milliseconds
        assert first["type"] == "error" or first["body"] == "x" * size
        alice.say(ECHO, "after")
        assert (await alice.next_message())["body"] == "Did you say after?"
        assert_stream_kept(app)


# -- generated replies (hypothesis) --------------------------------------------------------------------------

FUZZ_USER = "alice@localhost/fuzz"
any_text = st.text(st.characters(exclude_categories=()), max_size=24)  # surrogates and controls included
junk_jid = any_text.filter(lambda t: COMPONENT not in t.lower())  # a reply to our own domain would loop back
json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | any_text
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3), max_leaves=8
)
xml_body = any_text | st.sampled_from(["a<b/>c", "&amp;&lt;", "&bogus;", "<![CDATA[<x>]]>", "\r\n", "]]>", "<"])
stanza_text = (
    st.builds(
        "<{0}{1}><body>{2}</body></{0}>".format,
        st.sampled_from(["message", "presence", "iq", "foo", "message xmlns='urn:x'"]),
        st.sampled_from(["", " type='chat'", f" to='{FUZZ_USER}'", " from='mallory@localhost'", " type='get'"]),
        xml_body,
    )
    | any_text
)
reply_object = st.fixed_dictionaries(
    {},
    optional={
        "to": st.sampled_from([FUZZ_USER, "alice@localhost", "Alice@LocalHost/fuzz"]) | junk_jid | json_value,
        "from": st.sampled_from([ECHO, f"x@{COMPONENT}/r", COMPONENT, "mallory@localhost", f"e@{COMPONENT}.evil"])
        | any_text,
        "kind": st.sampled_from(["message", "presence", "iq", "foo"]) | json_value,
        "type": st.sampled_from(["chat", "normal", "headline", "get", "result"]),
        "id": any_text,
        "body": any_text | json_value,
        "stanza": stanza_text,
        "extra": json_value,
    },
)


@dataclass(frozen=True)
class Generated:
    body: bytes
    content_type: str = JSON


def encode(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


GENERATED = (
    st.builds(Generated, st.builds(encode, reply_object | st.lists(reply_object, max_size=3), st.booleans()))
    | st.builds(Generated, st.builds(encode, json_value, st.booleans()))
    | st.builds(Generated, st.binary(max_size=64), st.sampled_from([JSON, XMPP_XML, "text/plain"]))
    | st.builds(
        Generated, st.builds(str.encode, stanza_text, st.just("utf-8"), st.just("surrogatepass")), st.just(XMPP_XML)
    )
)
T = TypeVar("T")


def draw(strategy: st.SearchStrategy[T], n: int) -> list[T]:
    """`n` examples of `strategy`, the same on every run (derandomized, no example database)."""
    found: list[T] = []

    @settings(
        max_examples=n,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        found.append(value)

    collect()
    return found


_generated: list[Generated] = []


def generated_cases() -> list[Generated]:
    if not _generated:
        _generated.extend(draw(GENERATED, 400))
    return _generated


def normalized(text: str) -> str:
    """XML end-of-line handling: a raw CR reaches the receiver as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


Expected = tuple[str | None, list[tuple[str, bool]]]  # (error text, or None and [(body, must arrive)])


def expected_for(case: Generated, request: dict[str, Any]) -> Expected:
    """What alice must get, by the codec's rules: the error text, or the bodies of the messages to her. A message of
    a type RFC 6121 does not define (the codec lets a bot's `type` through) may or may not be delivered: servers
    differ."""
    original = Stanza(
        request["kind"], request["to"], request["from"], request.get("type"), request.get("id"), request.get("body"), ""
    )
    try:
        stanzas = parse_reply(original, COMPONENT, case.content_type, case.body)
    except ReplyError as exc:
        return unusable_reply(str(exc)).text, []
    bodies = []
    for s in stanzas:
        if s.kind == "message" and s.body is not None and JID(s.to).bare == "alice@localhost":
            bodies.append((normalized(s.body), s.type in (None, "chat", "normal", "headline")))
    return None, bodies


def matches(got: list[str], expected: list[tuple[str, bool]]) -> bool:
    """`got` is `expected` in order, where entries not marked as required may be missing."""
    rest = list(expected)
    for body in got:
        while rest and rest[0][0] != body and not rest[0][1]:
            rest.pop(0)
        if not rest or rest[0][0] != body:
            return False
        rest.pop(0)
    return all(not required for _, required in rest)


async def test_generated_bot_replies(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    """Hundreds of generated replies (JSON objects in the reply's shape, arbitrary JSON, arbitrary bytes, XML text)
    through one running component: alice gets what the codec says (the error it explains, or the messages),
    the stream is never dropped, and a following message always gets its echo."""
    cases = generated_cases()
    expected: dict[int, Expected] = {}

    async def handler(request: web.Request) -> web.Response:
        data = await request.json()
        word, _, number = data.get("body", "").partition(" ")
        if word == "case":
            case = cases[int(number)]
            expected[int(number)] = expected_for(case, data)
            return web.Response(body=case.body, headers={"Content-Type": case.content_type})
        if word == "sync":
            return await echo(request)
        return web.Response(status=204)  # anything else (a generated message sent back into our domain): silence

    bot.handler = handler
    app = await start_component()
    alice = await connect("alice", resource="fuzz")
    failures: list[str] = []
    for i, case in enumerate(cases):
        alice.say(f"fuzz@{COMPONENT}", f"case {i}")
        alice.say(f"fuzz@{COMPONENT}", f"sync {i}")
        got = await until_echo(alice, f"sync {i}")
        try:
            assert i in expected, "the bot was never asked"
            error, bodies = expected[i]
            if error is not None:
                assert len(got) == 1 and error_of(got[0]) == ("cancel", "internal-server-error", normalized(error))
            else:
                assert all(m["type"] != "error" for m in got)
                assert matches([normalized(m["body"]) for m in got], bodies), bodies
            assert_stream_kept(app)
        except AssertionError as exc:
            failures.append(f"case {i} {case!r}: got {[str(m)[:300] for m in got]}: {exc}")
            if not app.connected.is_set():
                break
    tried = len(expected)
    print(f"bad-input cases tried: {tried} generated bot replies")
    assert metric(app, "internal_errors_total") == 0
    assert not failures, f"{len(failures)} of {tried} generated cases failed:\n" + "\n".join(failures[:10])
    assert tried == len(cases) >= 300, f"bad-input cases tried: {tried}"


# -- the codec alone, property-based -------------------------------------------------------------------------

ORIGINAL = Stanza("message", ECHO, FUZZ_USER, "chat", "m1", "hi", "")


def test_codec_turns_any_reply_into_writable_stanzas_or_a_reply_error() -> None:
    """Whatever the bot replies, parse_reply gives stanzas that can be written on the component stream (well-formed,
    only characters XML allows, from our domain), or a ReplyError whose text can itself be sent."""
    tried = 0

    @settings(max_examples=2000, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(GENERATED)
    def check(case: Generated) -> None:
        nonlocal tried
        tried += 1
        try:
            stanzas = parse_reply(ORIGINAL, COMPONENT, case.content_type, case.body)
        except ReplyError as exc:
            assert not has_invalid_chars(unusable_reply(str(exc)).text)
            return
        for s in stanzas:
            ET.fromstring(f'<w xmlns="{NS_COMPONENT}">{s.xml}</w>')
            assert not has_invalid_chars(s.xml)
            assert JID(s.from_).domain == COMPONENT
            assert s.kind in ("message", "presence", "iq")
            assert not (s.kind == "iq" and s.type in ("get", "set") and not s.id)

    check()
    print(f"bad-input cases tried: {tried} codec replies")
    assert tried >= 1000, f"bad-input cases tried: {tried}"
