"""Bad input through a real server: bots replying garbage, hostile XML, spoofed or injected addresses, huge or
deep replies, and users sending deep or wide stanzas.

For every case: the sender gets a clear error (or, where the input is legitimately deliverable, the delivery),
the process keeps serving (a following message gets its echo), and the component's stream is never dropped
(`xmpp_connects_total` stays 1). A generated suite (hypothesis) throws hundreds of replies at one running
component per server, each built valid or broken in a known way, so that the generator itself says what alice
must get; the codec alone gets thousands of the same, and arbitrary bytes for its invariants.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

import pytest
from aiohttp import web
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from slixmpp.jid import JID
from slixmpp.stanza import Message

from component import mapping
from component.app import App
from component.codec import ReplyError, reply_stanzas
from component.error_map import unusable_reply
from component.stanza import Stanza
from component.xml import NS_COMPONENT, has_invalid_chars
from tests.harness.clients import USERS, Client
from tests.harness.parts import COMPONENT, SECRET, Bot, ConnectClient, StartComponent, echo, metric
from tests.harness.servers import EjabberdServer, ProsodyServer, XmppServer

ECHO = f"echo@{COMPONENT}"
JSON = "application/json"
XMPP_XML = "application/xmpp+xml"
UNUSABLE = "The bot's reply was unusable: "
PWNED = "pwned"


# -- the named cases -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A bot reply and what alice must get for it (one of the two): `error`, an internal-server-error whose text
    holds this; `body`, a message with exactly this body, from `sender`. Whatever alice gets is from the bot and
    carries no injected content."""

    reply: bytes
    content_type: str = JSON
    error: str | None = None
    body: str | None = None
    sender: str = ECHO

    def __post_init__(self) -> None:
        assert (self.error is None) != (self.body is None), "a case expects an error or a body"


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
    # a resource alice does not have: RFC 6121 8.5.3.2.1 lets the server treat it as her bare JID or refuse it;
    # Prosody 0.12 and ejabberd 23.01 both deliver it to her session
    "to-injection-in-resource": Case(obj({"to": 'alice@localhost/x" from="mallory@localhost', "body": "r"}), body="r"),
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
    assert len(got) == 1, [str(m) for m in got]
    if case.error is not None:
        error = error_of(got[0])
        assert error[:2] == ("cancel", "internal-server-error"), error
        assert error[2].startswith(UNUSABLE) and case.error in error[2], error
    else:
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


FORWARDED = ("chat", "Did you say odd?")  # what the bot answers
TOO_DEEP_ERROR = ("error", "modify", "not-acceptable", "The stanza is nested too deeply")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # wide or moderately deep, but readable: the bot gets it (the depth limit of 64 is for bot replies, which
        # the component writes; what a user sends has passed the server's own parser already)
        pytest.param(
            "<x xmlns='urn:x' " + " ".join(f"a{i}='v'" for i in range(5000)) + "/>", FORWARDED, id="5000-attributes"
        ),
        pytest.param("<x xmlns='urn:x'>" * 200 + "</x>" * 200, FORWARDED, id="nested-200"),
        # deeper than Python's recursion limit: the component cannot read it, and says so to the sender
        pytest.param("<x xmlns='urn:x'>" * DEEP + "</x>" * DEEP, TOO_DEEP_ERROR, id=f"nested-{DEEP}"),
    ],
)
async def test_odd_stanza_from_a_user_is_answered(
    server: XmppServer,
    bot: Bot,
    start_component: StartComponent,
    connect: ConnectClient,
    extra: str,
    expected: tuple[str, ...],
) -> None:
    if server.name == "ejabberd" and extra.count("<x") > 1000:
        # Not the component's to handle: ejabberd 23.01 itself dies (segfault) parsing this from a client.
        pytest.skip("ejabberd 23.01 segfaults on a client stanza nested this deep; it never reaches the component")
    app = await start_component()
    alice = await connect("alice")
    alice.send_raw(f"<message to='{ECHO}' type='chat' id='odd'><body>odd</body>{extra}</message>")
    alice.say(ECHO, "after")
    got = await until_echo(alice, "after")
    assert len(got) == 1, got
    if expected == FORWARDED:
        assert (got[0]["type"], got[0]["body"]) == FORWARDED
        assert bot.requests[0]["body"] == "odd"
    else:
        assert (got[0]["type"], *error_of(got[0])) == expected
        assert [r["body"] for r in bot.requests] == ["after"]  # the deep one never reached the bot
    assert_stream_kept(app)
    assert metric(app, "internal_errors_total") == 0


# -- stanza size limits: the servers' stock limits ------------------------------------------------------------
#
# The shared test servers have generous limits (tests/harness/servers.py); here each runs with the stock ones of a
# fresh install, and a bot replies with a body of `size` bytes:
# - Prosody 0.12 (Debian's 0.12.3, mod_component.lua): component_stanza_size_limit defaults to 512 KiB (524288
#   bytes); a component that writes a bigger stanza has its stream closed. (c2s_stanza_size_limit, 256 KiB, caps
#   what a client sends, not what it is sent: alice receives more.)
# - ejabberd 23.01: max_stanza_size defaults to infinity on every listener, ejabberd_service included.
# - The component refuses any stanza over component.max_stanza_bytes itself (500000 by default: under Prosody's
#   512 KiB), answering the sender with an internal-server-error, so that no server closes the stream on it.

DELIVERED = "delivered"  # alice gets the message
REFUSED = "refused"  # by the component: alice gets an error saying why; nothing is written
CLOSED = "closed"  # by the server: it drops the stanza and closes the component's stream, which reconnects


class StockLimitsProsody(ProsodyServer):
    def _write_config(self) -> None:
        super()._write_config()
        lines = self.config_path.read_text().splitlines()
        keep = [line for line in lines if not line.startswith(("component_stanza_size_limit", "c2s_stanza_size"))]
        self.config_path.write_text("\n".join(keep) + "\n")


class StockLimitsEjabberd(EjabberdServer):
    def _write_config(self) -> None:
        super()._write_config()
        lines = self.config_path.read_text().splitlines()
        keep = [line for line in lines if not line.strip().startswith("max_stanza_size:")]
        self.config_path.write_text("\n".join(keep) + "\n")


STOCK_LIMITS: dict[str, type[StockLimitsProsody | StockLimitsEjabberd]] = {
    "prosody": StockLimitsProsody,
    "ejabberd": StockLimitsEjabberd,
}


class TestStockSizeLimits:
    @pytest.fixture(scope="class")
    @classmethod
    def server(cls, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppServer]:
        """The server of the case (`indirect`), with its stock limits; one per kind for the class."""
        kind = request.param
        srv = STOCK_LIMITS[kind](workdir=tmp_path_factory.mktemp(kind), component_secret=SECRET)
        srv.start()
        try:
            for user, password in USERS.items():
                srv.register(user, password)
            yield srv
        finally:
            srv.stop()

    @pytest.mark.parametrize(
        ("server", "size", "limit", "outcome"),
        [
            # under both limits
            pytest.param("prosody", 400_000, 500_000, DELIVERED, id="prosody-400kb"),
            pytest.param("ejabberd", 400_000, 500_000, DELIVERED, id="ejabberd-400kb"),
            # over the component's own limit, whatever the server's
            pytest.param("prosody", 900_000, 500_000, REFUSED, id="prosody-900kb"),
            pytest.param("ejabberd", 900_000, 500_000, REFUSED, id="ejabberd-900kb"),
            # why the default is under 512 KiB: with the component's limit raised, Prosody closes the stream
            pytest.param("prosody", 600_000, 1_000_000, CLOSED, id="prosody-600kb-limit-raised"),
            pytest.param("ejabberd", 600_000, 1_000_000, DELIVERED, id="ejabberd-600kb-limit-raised"),
        ],
        indirect=["server"],
    )
    async def test_big_reply(
        self,
        server: XmppServer,
        bot: Bot,
        start_component: StartComponent,
        connect: ConnectClient,
        size: int,
        limit: int,
        outcome: str,
    ) -> None:
        async def handler(request: web.Request) -> web.Response:
            if (await request.json())["body"] == "big":
                return web.json_response({"body": "x" * size})
            return await echo(request)

        bot.handler = handler
        app = await start_component(component={"max_stanza_bytes": limit})
        alice = await connect("alice")
        alice.say(ECHO, "big")
        if outcome == CLOSED:
            await alice.no_message(2)
            for _ in range(100):  # the component reconnects (FAST backoff: first retry after 0.1 s)
                if metric(app, "xmpp_connects_total") == 2 and app.connected.is_set():
                    break
                await asyncio.sleep(0.05)
            log = server.log_text()
            assert metric(app, "xmpp_connects_total") == 2, f"the stream was not closed:\n{log[-3000:]}"
            assert "Disconnecting component, <stream:error> is:" in log, log[-3000:]  # Prosody's words for it
        else:
            got = await alice.next_message()
            if outcome == DELIVERED:
                assert (got["type"], got["from"]) == ("chat", JID(ECHO)), got
                assert got["body"] == "x" * size, f"a body of {len(got['body'])} characters"
            else:
                error = error_of(got)
                assert error[:2] == ("cancel", "internal-server-error"), error
                assert error[2].startswith(UNUSABLE) and f"over component.max_stanza_bytes ({limit})" in error[2]
                assert metric(app, "bot_requests_total", outcome="unusable") == 1
        alice.say(ECHO, "after")
        assert (await alice.next_message())["body"] == "Did you say after?"
        if outcome != CLOSED:
            assert_stream_kept(app)


# -- generated replies (hypothesis), each with what alice must get --------------------------------------------
#
# The generator knows what it built: a valid reply and the messages it asks for, or a reply broken in one known way
# and the reason the component must give (README, "Writing a bot": the reply's shape and what makes it unusable).
# The expectations never come from the code under test.

FUZZ_BOT = f"fuzz@{COMPONENT}"  # the bot JID alice writes to: a reply's default `from`
FUZZ_USER = "alice@localhost/fuzz"  # alice's session: a reply's default `to`
REPLY_FIELDS = ("to", "from", "kind", "stanza", "body", "type", "id")
NOT_XML = "".join(map(chr, [*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])) + "\ufffe\uffff"  # outside XML's Char
xml_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters=NOT_XML), max_size=24)
any_text = st.text(st.characters(exclude_categories=()), max_size=8)  # surrogates and controls included
json_leaf = st.none() | st.booleans() | st.integers() | st.floats() | any_text
json_value = st.recursive(
    json_leaf, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3), max_leaves=8
)
bad_char = st.sampled_from([*NOT_XML, "\ud800", "\udbff", "\udc00"])  # controls, non-characters, lone surrogates
VALID = {"to": FUZZ_USER, "from": FUZZ_BOT, "kind": "message", "type": "chat", "id": "i", "body": "b"}
unknown_field = any_text.filter(lambda k: k not in mapping.NAMES)  # refused, naming it (never silently dropped)
# addresses a valid reply may use (None: the field is left out), all reaching alice's session from our domain
TO_ALICE = [None, FUZZ_USER, "alice@localhost", "Alice@LocalHost/fuzz"]
FROM_US = [None, FUZZ_BOT, f"x@{COMPONENT}/r", COMPONENT, "Other@BOT.LocalHost"]
MESSAGE_TYPES = [None, "chat", "normal", "headline"]
JSON_TYPES = [JSON, "application/json; charset=utf-8", "Application/JSON"]

Delivery = tuple[str, str]  # (body, sender JID) of a message alice must get


@dataclass(frozen=True)
class Generated:
    """A bot reply and what alice must get: these messages in this order, or (`error`) an internal-server-error
    whose text holds every fragment of `error`, and nothing else."""

    body: bytes
    content_type: str
    how: str  # what the generator built, for the failure report
    messages: tuple[Delivery, ...] = ()
    error: tuple[str, ...] = ()


def encode(value: Any, ascii_only: bool) -> bytes:
    """JSON as a bot writes it, escaped to ASCII or not (lone surrogates always as escapes: valid JSON, and what
    a bot's JSON library writes for them)."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        return text.encode()
    except UnicodeEncodeError:
        return json.dumps(value).encode()


@st.composite
def valid_object(draw: st.DrawFn) -> tuple[dict[str, Any], Delivery]:
    """A JSON object asking for one message to alice, and that message."""
    body = draw(xml_text)
    obj: dict[str, Any] = {"body": body}
    for name, choices in (("to", TO_ALICE), ("from", FROM_US), ("type", MESSAGE_TYPES), ("kind", [None, "message"])):
        if (value := draw(st.sampled_from(choices))) is not None:
            obj[name] = value
    if draw(st.booleans()):
        obj["id"] = draw(xml_text)
    return obj, (body, obj.get("from", FUZZ_BOT))


@st.composite
def valid_stanza(draw: st.DrawFn) -> tuple[str, Delivery]:
    """A raw <message/> for alice (missing to/from filled in by the component), and that message."""
    body = draw(xml_text)
    attrs, sender = "", FUZZ_BOT
    for name, choices in (("to", TO_ALICE), ("from", FROM_US), ("type", MESSAGE_TYPES)):
        if (value := draw(st.sampled_from(choices))) is not None:
            attrs += f" {name}={quoteattr(value)}"
            sender = value if name == "from" else sender
    nesting = draw(st.sampled_from([0, 0, 0, 1, 63]))  # the message itself and 63 more: the deepest allowed
    extra = "<x xmlns='urn:x'>" * nesting + "</x>" * nesting
    return f"<message{attrs}><body>{xml_escape(body)}</body>{extra}</message>", (body, sender)


@st.composite
def broken_stanza(draw: st.DrawFn) -> tuple[str, str, str]:
    """Stanza text broken in one way: (text, how, a fragment of the reason)."""
    valid, _ = draw(valid_stanza())
    how = draw(
        st.sampled_from(["dtd", "truncated", "unknown-root", "two", "markup-in-body", "deep", "namespace", "entity"])
    )
    if how == "dtd":
        doctype = draw(st.sampled_from(['<!DOCTYPE message [<!ENTITY a "b">]>', "<!-- c --><!doctype message>"]))
        return doctype + valid, how, "a DTD or entity declaration is not allowed"
    if how == "truncated":
        return valid[: draw(st.integers(1, len(valid) - 1))], how, "not well-formed"
    if how == "unknown-root":
        root = draw(st.sampled_from(["foo", "Message", "body", "stream"]))
        return f"<{root}><body>x</body></{root}>", how, f"<{root}> is not a message, presence or iq"
    if how == "two":
        return valid + valid, how, "it must hold exactly one element"
    if how == "markup-in-body":
        return "<message><body>a<b/>c</body></message>", how, "holds elements; they hold text only"
    if how == "deep":
        n = draw(st.integers(64, 80))  # the message and n more levels: over 64
        return "<message><body>d</body>" + "<x>" * n + "</x>" * n + "</message>", how, "nested more than 64 levels"
    if how == "namespace":
        return "<message xmlns='urn:evil'><body>x</body></message>", how, "is not a message, presence or iq"
    return "<message><body>&bogus;</body></message>", how, "not well-formed"


@st.composite
def broken_object(draw: st.DrawFn) -> tuple[dict[str, Any], str, str]:
    """A JSON object broken in one way: (object, how, a fragment of the reason)."""
    obj, _ = draw(valid_object())
    how = draw(
        st.sampled_from(
            ["not-a-string", "bad-char", "foreign-from", "to-us", "not-a-jid", "kind", "type", "other-kind", "unknown"]
        )
    )
    if how == "not-a-string":
        field = draw(st.sampled_from(REPLY_FIELDS))
        obj[field] = draw(st.booleans() | st.integers() | st.floats() | st.lists(json_value, max_size=2))
        return obj, how, f"'{field}' must be a string"
    if how == "bad-char":
        field = draw(st.sampled_from(list(VALID)))
        value = obj.get(field, VALID[field])
        at = draw(st.integers(0, len(value)))
        obj[field] = value[:at] + draw(bad_char) + value[at:]
        return obj, how, f"'{field}' contains characters that XML does not allow"
    if how == "foreign-from":
        obj["from"] = draw(
            st.sampled_from(["mallory@localhost", "localhost", f"e@{COMPONENT}.evil", f"e@x.{COMPONENT}"])
        )
        return obj, how, f"'from' must be a JID of {COMPONENT}"
    if how == "to-us":  # it would come straight back to the bots
        obj["to"] = draw(st.sampled_from([f"x@{COMPONENT}", COMPONENT, f"Echo@{COMPONENT.upper()}/r", f"{COMPONENT}."]))
        return obj, how, f"'to' must not be a JID of {COMPONENT}"
    if how == "not-a-jid":
        field = draw(st.sampled_from(["to", "from"]))
        obj[field] = draw(st.sampled_from(["a@b@c", "@localhost", "alice@", "alice@local host", "a" * 1100 + "@x"]))
        return obj, how, f"'{field}' is not a valid JID"
    if how == "kind":
        obj["kind"] = draw(st.sampled_from(["mesage", "MESSAGE", "foo"]))
        return obj, how, "'kind' must be message, presence or iq"
    if how == "other-kind":  # without `kind`, the type implies one (mod_rest), where a body has no place
        obj.pop("kind", None)
        obj["type"] = draw(st.sampled_from(["get", "subscribe"]))
        return obj, how, "'body' is not a field of " + ("an iq" if obj["type"] == "get" else "a presence")
    if how == "unknown":
        name = draw(unknown_field)
        obj[name] = draw(json_value)
        return obj, how, f"unknown field '{mapping.shown(name)}'"
    obj["type"] = draw(st.sampled_from(["bogus", "Chat"]))
    return obj, how, "is not a message type"


@st.composite
def valid_reply(draw: st.DrawFn) -> Generated:
    shape = draw(st.sampled_from(["object", "array", "stanza", "xmpp+xml", "nothing", "text", "ignored"]))
    ascii_only = draw(st.booleans())
    if shape == "object":
        obj, message = draw(valid_object())
        return Generated(encode(obj, ascii_only), draw(st.sampled_from(JSON_TYPES)), shape, (message,))
    if shape == "array":
        items = draw(st.lists(valid_object(), max_size=4))
        return Generated(encode([o for o, _ in items], ascii_only), JSON, shape, tuple(m for _, m in items))
    if shape == "text":  # mod_rest: the body of a message to the sender
        text = draw(xml_text)
        return Generated(text.encode(), "text/plain", shape, ((text, FUZZ_BOT),) if text.encode().strip() else ())
    if shape == "ignored":  # neither JSON, XML nor text: nothing sent, and not an error
        ignored = draw(st.sampled_from(["text/html", "text/html; charset=UTF-8", "application/octet-stream"]))
        return Generated(draw(st.binary(max_size=32)), ignored, shape)
    text, message = draw(valid_stanza())
    if shape == "stanza":
        return Generated(encode({"stanza": text}, ascii_only), JSON, shape, (message,))
    if shape == "xmpp+xml":
        return Generated(text.encode(), XMPP_XML, shape, (message,))
    return Generated(draw(st.sampled_from([b"", b" \n", b"null", b"[]"])), JSON, "nothing")


@st.composite
def broken_reply(draw: st.DrawFn) -> Generated:
    """A reply broken in one known way: refused as a whole, with the reason."""
    valid = draw(valid_reply().filter(lambda g: g.content_type in JSON_TYPES and g.body.strip() not in (b"", b"null")))
    how = draw(
        st.sampled_from(
            [
                "object",
                "item",
                "not-an-object",
                "stanza",
                "xmpp+xml",
                "truncated",
                "trailing",
                "not-utf8",
                "type",
                "101",
            ]
        )
    )
    ascii_only = draw(st.booleans())
    if how == "object":
        obj, defect, reason = draw(broken_object())
        return Generated(encode(obj, ascii_only), JSON, f"object: {defect}", error=(reason,))
    if how in ("item", "not-an-object"):
        items: list[Any] = [o for o, _ in draw(st.lists(valid_object(), max_size=3))]
        at = draw(st.integers(0, len(items)))
        if how == "item":
            bad, defect, reason = draw(broken_object())
            items.insert(at, bad)
        else:
            items.insert(at, draw(st.one_of(st.booleans(), st.integers(), any_text, st.lists(json_leaf, max_size=2))))
            defect, reason = how, "expected a JSON object"
        return Generated(encode(items, ascii_only), JSON, f"item {at}: {defect}", error=(f"item {at}: ", reason))
    if how == "stanza":
        text, defect, reason = draw(broken_stanza())
        return Generated(encode({"stanza": text}, ascii_only), JSON, f"stanza: {defect}", error=(reason,))
    if how == "xmpp+xml":
        text, defect, reason = draw(broken_stanza())
        return Generated(text.encode(), XMPP_XML, f"xmpp+xml: {defect}", error=(reason,))
    if how == "truncated":  # a proper prefix of a JSON object or array is never JSON
        text = valid.body.decode()
        return Generated(text[: draw(st.integers(1, len(text) - 1))].encode(), JSON, how, error=("not valid JSON",))
    if how == "trailing":
        junk = draw(st.sampled_from([b" x", b"}", b"<x/>", b"[]"]))
        return Generated(valid.body + junk, JSON, how, error=("not valid JSON",))
    if how == "not-utf8":  # 0xFF is never UTF-8
        at = draw(st.integers(0, len(valid.body)))
        return Generated(valid.body[:at] + b"\xff" + valid.body[at:], JSON, how, error=("not valid UTF-8",))
    if how == "type":
        content_type = draw(st.sampled_from(["application/xml", "text/json", "text/xml"]))  # meant, but not ours
        return Generated(valid.body, content_type, how, error=("Content-Type",))
    obj, _ = draw(valid_object())
    return Generated(encode([obj] * draw(st.integers(101, 103)), ascii_only), JSON, how, error=("at most 100",))


JUNK = st.builds(lambda tail: b"x" + tail, st.binary(max_size=32))  # no JSON text starts with x
GENERATED = st.one_of(  # about half valid, half refused
    valid_reply(),
    valid_reply(),
    valid_reply(),
    broken_reply(),
    broken_reply(),
    JUNK.map(
        lambda body: Generated(body, JSON, "junk", error=("not valid JSON" if is_utf8(body) else "not valid UTF-8",))
    ),
)
T = TypeVar("T")


def is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


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


def expected_messages(case: Generated) -> list[tuple[str, JID]]:
    return [(normalized(body), JID(sender)) for body, sender in case.messages]


async def test_generated_bot_replies(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    """Hundreds of generated replies, valid or broken in a known way, through one running component: alice gets
    the messages the generator asked for, in order, or one error with the reason it broke the reply; the stream
    is never dropped, and a following message always gets its echo."""
    cases = generated_cases()
    asked: set[int] = set()

    async def handler(request: web.Request) -> web.Response:
        data = await request.json()
        word, _, number = data.get("body", "").partition(" ")
        if word == "case":
            asked.add(int(number))
            case = cases[int(number)]
            return web.Response(body=case.body, headers={"Content-Type": case.content_type})
        return await echo(request)

    bot.handler = handler
    app = await start_component()
    alice = await connect("alice", resource="fuzz")
    failures: list[str] = []
    kinds: dict[str, int] = {}
    for i, case in enumerate(cases):
        unusable = metric(app, "bot_requests_total", outcome="unusable")
        alice.say(FUZZ_BOT, f"case {i}")
        alice.say(FUZZ_BOT, f"sync {i}")
        got = await until_echo(alice, f"sync {i}")
        kinds[case.how.partition(":")[0]] = kinds.get(case.how.partition(":")[0], 0) + 1
        try:
            assert i in asked, "the bot was never asked"
            if case.error:
                assert len(got) == 1, "expected one error"
                condition = error_of(got[0])
                assert condition[:2] == ("cancel", "internal-server-error"), condition
                assert condition[2].startswith(UNUSABLE), condition
                assert all(part in condition[2] for part in case.error), f"expected {case.error} in {condition[2]!r}"
            else:
                assert all(m["type"] != "error" for m in got), "an error for a valid reply"
                assert [(normalized(m["body"]), m["from"]) for m in got] == expected_messages(case)
            assert metric(app, "bot_requests_total", outcome="unusable") == unusable + bool(case.error)
            assert_stream_kept(app)
        except AssertionError as exc:
            failures.append(
                f"case {i} ({case.how}) {case.body[:200]!r} {case.content_type}: "
                f"got {[str(m)[:300] for m in got]}: {exc}"
            )
            if not app.connected.is_set():
                break
    broken = sum(bool(c.error) for c in cases)
    print(f"bad-input cases tried: {len(asked)} generated bot replies, {broken} broken; by shape: {kinds}")
    assert metric(app, "internal_errors_total") == 0
    assert not failures, f"{len(failures)} of {len(cases)} generated cases failed:\n" + "\n".join(failures[:10])
    assert len(asked) == len(cases) >= 300, f"bad-input cases tried: {len(asked)}"


# -- the codec alone, property-based -------------------------------------------------------------------------

ORIGINAL = Stanza("message", FUZZ_BOT, FUZZ_USER, "chat", "m1", "hi", "")
ANY_REPLY = st.builds(  # arbitrary bytes, JSON values and XML text, under any of the content types
    Generated,
    st.binary(max_size=64)
    | st.builds(encode, json_value, st.booleans())
    | st.builds(str.encode, any_text | xml_text, st.just("utf-8"), st.just("surrogatepass")),
    st.sampled_from([JSON, XMPP_XML, "text/plain"]),
    st.just("arbitrary"),
)


def test_codec_gives_what_the_generator_expects() -> None:
    """The same generated replies, thousands of them, through the codec alone."""
    tried = 0

    @settings(max_examples=3000, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(GENERATED)
    def check(case: Generated) -> None:
        nonlocal tried
        tried += 1
        try:
            stanzas = reply_stanzas(ORIGINAL, COMPONENT, 200, case.content_type, case.body, 500_000)
        except ReplyError as exc:
            assert case.error, f"{case.how}: refused: {exc}"
            assert all(part in str(exc) for part in case.error), f"{case.how}: expected {case.error} in {exc}"
            return
        assert not case.error, f"{case.how}: accepted, expected {case.error}"
        assert all(s.kind == "message" and JID(s.to).bare == "alice@localhost" for s in stanzas), stanzas
        assert [(normalized(s.body or ""), JID(s.from_)) for s in stanzas] == expected_messages(case), case.how

    check()
    print(f"bad-input cases tried: {tried} generated codec replies")
    assert tried >= 1000, f"bad-input cases tried: {tried}"


def test_codec_turns_any_reply_into_writable_stanzas_or_a_reply_error() -> None:
    """Whatever the bot replies (arbitrary bytes included), the codec gives stanzas that can be written on the
    component stream (well-formed, only characters XML allows, from our domain), or a ReplyError whose text can
    itself be sent."""
    tried = 0

    @settings(max_examples=2000, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(GENERATED | ANY_REPLY)
    def check(case: Generated) -> None:
        nonlocal tried
        tried += 1
        try:
            stanzas = reply_stanzas(ORIGINAL, COMPONENT, 200, case.content_type, case.body, 500_000)
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
