"""The wire format and the reply rules, one case per rule."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from component.codec import ReplyError, StanzaTooLarge, api_stanzas, reply_stanzas, request_json
from component.stanza import Stanza, from_element
from component.xml import NS_COMPONENT

DOMAIN = "bot.localhost"
MSG = Stanza(
    "message", "echo@bot.localhost", "alice@localhost/phone", "chat", "m1", "hello", '<message xmlns="jabber:client"/>'
)
IQ = Stanza("iq", "echo@bot.localhost", "alice@localhost/phone", "get", "q1", None, '<iq xmlns="jabber:client"/>')
JSON = "application/json"
LIMIT = 500_000


def parse_reply(
    original: Stanza, domain: str, content_type: str | None, body: bytes, limit: int = LIMIT
) -> list[Stanza]:
    """The stanzas of a 200 reply."""
    return reply_stanzas(original, domain, 200, content_type, body, limit)


def reply(obj: object, original: Stanza = MSG, content_type: str | None = JSON) -> list[Stanza]:
    body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return parse_reply(original, DOMAIN, content_type, body)


def test_request_json_has_every_field() -> None:
    assert json.loads(request_json(MSG)) == {
        "to": "echo@bot.localhost",
        "from": "alice@localhost/phone",
        "kind": "message",
        "stanza": '<message xmlns="jabber:client"/>',
        "body": "hello",
        "type": "chat",
        "id": "m1",
    }


def test_request_json_leaves_out_absent_fields() -> None:
    presence = Stanza("presence", "echo@bot.localhost", "alice@localhost/phone", None, None, None, "<presence/>")
    assert set(json.loads(request_json(presence))) == {"to", "from", "kind", "stanza"}


def test_from_element_reads_a_received_message() -> None:
    elem = ET.fromstring(
        f'<message xmlns="{NS_COMPONENT}" to="echo@bot.localhost" from="a@localhost/r" type="chat" id="7">'
        '<body>Hi &amp; &lt;bye&gt;</body><x xmlns="urn:other">t</x></message>'
    )
    stanza = from_element(elem, "message")
    assert (stanza.kind, stanza.to, stanza.from_, stanza.type, stanza.id, stanza.body) == (
        "message",
        "echo@bot.localhost",
        "a@localhost/r",
        "chat",
        "7",
        "Hi & <bye>",
    )
    assert stanza.xml == (
        '<message xmlns="jabber:client" to="echo@bot.localhost" from="a@localhost/r" type="chat" id="7">'
        '<body>Hi &amp; &lt;bye&gt;</body><x xmlns="urn:other">t</x></message>'
    )


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {"body": "hi"},
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat"><body>hi</body></message>',
            id="body-only-swaps-to-and-from-and-defaults-to-chat",
        ),
        pytest.param(
            {"body": 'a<b>&"c"', "type": "normal", "to": "bob@localhost", "from": "x@bot.localhost"},
            '<message to="bob@localhost" from="x@bot.localhost" type="normal">'
            '<body>a&lt;b&gt;&amp;"c"</body></message>',
            id="explicit-fields-and-escaping",
        ),
        pytest.param(
            {},
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat"/>',
            id="empty-object-is-an-empty-message-like-the-reference",
        ),
        pytest.param(
            {"kind": "presence"},
            '<presence to="alice@localhost/phone" from="echo@bot.localhost"/>',
            id="presence-without-type",
        ),
        pytest.param(
            {"body": "x", "unknown": 1},
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat"><body>x</body></message>',
            id="unknown-fields-ignored",
        ),
        pytest.param(
            {"body": "x", "id": None},
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat"><body>x</body></message>',
            id="null-is-absent",
        ),
    ],
)
def test_built_replies(obj: dict[str, object], expected: str) -> None:
    [out] = reply(obj)
    assert out.xml == expected


def test_array_sends_several_in_order() -> None:
    out = reply([{"body": "one"}, {"body": "two"}, {"kind": "presence", "type": "unavailable"}])
    assert [(s.kind, s.body, s.type) for s in out] == [
        ("message", "one", "chat"),
        ("message", "two", "chat"),
        ("presence", None, "unavailable"),
    ]


@pytest.mark.parametrize(
    "body", [b"", b"  \n", b"null", b"[]"], ids=["empty", "whitespace", "json-null", "empty-array"]
)
def test_nothing_to_send(body: bytes) -> None:
    assert parse_reply(MSG, DOMAIN, JSON, body) == []


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"],
    ids=["exact", "charset-parameter", "case-insensitive"],
)
def test_json_media_type_parameters_accepted(content_type: str) -> None:
    assert reply({"body": "ok"}, content_type=content_type)[0].body == "ok"


def test_stanza_reply_fills_missing_to_and_from() -> None:
    [out] = reply({"stanza": "<message type='headline'><body>news</body></message>"})
    assert out.xml == (
        '<message type="headline" to="alice@localhost/phone" from="echo@bot.localhost"><body>news</body></message>'
    )
    assert (out.to, out.from_, out.body) == ("alice@localhost/phone", "echo@bot.localhost", "news")


def test_stanza_reply_in_jabber_client_namespace_is_rewritten_for_the_component_stream() -> None:
    [out] = reply(
        {
            "stanza": '<?xml version="1.0"?><message xmlns="jabber:client" to="bob@localhost">'
            '<body>x</body><active xmlns="http://jabber.org/protocol/chatstates"/></message>'
        }
    )
    assert out.xml == (
        '<message to="bob@localhost" from="echo@bot.localhost"><body>x</body>'
        '<active xmlns="http://jabber.org/protocol/chatstates"/></message>'
    )


def test_xmpp_xml_reply_is_one_raw_stanza() -> None:
    [out] = reply(b"<presence type='unavailable'/>", content_type="application/xmpp+xml")
    assert out.xml == '<presence type="unavailable" to="alice@localhost/phone" from="echo@bot.localhost"/>'


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {},
            '<iq to="alice@localhost/phone" from="echo@bot.localhost" type="result" id="q1"/>',
            id="built-iq-answer-gets-result-and-id",
        ),
        pytest.param(
            {"kind": "iq", "type": "error"},
            '<iq to="alice@localhost/phone" from="echo@bot.localhost" type="error" id="q1"/>',
            id="built-iq-keeps-given-type",
        ),
        pytest.param(
            {"stanza": "<iq><query xmlns='jabber:iq:version'/></iq>"},
            '<iq to="alice@localhost/phone" from="echo@bot.localhost" type="result" id="q1">'
            '<query xmlns="jabber:iq:version"/></iq>',
            id="stanza-iq-answer-gets-result-and-id",
        ),
    ],
)
def test_iq_replies_answer_the_request(obj: dict[str, object], expected: str) -> None:
    if "stanza" not in obj:
        obj = {"kind": "iq", **obj}
    [out] = reply(obj, original=IQ)  # no error appended: the reply answers the iq
    assert out.xml == expected


UNANSWERED = (
    '<iq to="alice@localhost/phone" from="echo@bot.localhost" type="error" id="q1"><error type="cancel">'
    '<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
    '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">The bot did not answer this request</text></error></iq>'
)


@pytest.mark.parametrize("status", [200, 202, 204])
def test_an_iq_left_unanswered_gets_an_error(status: int) -> None:
    body = json.dumps({"body": "not an iq"}).encode()
    out = reply_stanzas(IQ, DOMAIN, status, JSON, body, LIMIT)
    assert out[-1].xml == UNANSWERED
    assert len(out) == (2 if status == 200 else 1)


def test_a_message_left_unanswered_needs_nothing() -> None:
    assert reply_stanzas(MSG, DOMAIN, 204, None, b"", LIMIT) == []


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        pytest.param(b"{nope", JSON, "not valid JSON", id="invalid-json"),
        pytest.param(b"[" * 100000 + b"]" * 100000, JSON, "nested too deeply", id="deeply-nested-json"),
        pytest.param(b'{"body": "\xff\xfe"}', JSON, "UTF-8", id="not-utf8"),
        pytest.param(b'"a string"', JSON, "expected a JSON object, got str", id="json-string"),
        pytest.param(b"[1]", JSON, "item 0: expected a JSON object, got int", id="array-of-numbers"),
        pytest.param(b'{"body": 5}', JSON, "'body' must be a string, got int", id="body-not-string"),
        pytest.param(b'{"body": "\\u0000"}', JSON, "'body' contains characters", id="nul-in-body"),
        pytest.param(b'{"body": "\\ud800"}', JSON, "'body' contains characters", id="lone-surrogate"),
        pytest.param(b'{"kind": "carrier-pigeon"}', JSON, "'kind' must be message, presence or iq", id="bad-kind"),
        pytest.param(b'{"from": "evil@localhost"}', JSON, "'from' must be a JID of bot.localhost", id="foreign-from"),
        pytest.param(b'{"to": "a@b@c"}', JSON, "'to' is not a valid JID", id="invalid-to"),
        pytest.param(b'{"body": "hi"}', "text/html", "Content-Type is 'text/html'", id="wrong-content-type"),
        pytest.param(b'{"body": "hi"}', None, "Content-Type is 'none'", id="no-content-type"),
        pytest.param(b'{"stanza": "<message"}', JSON, "not well-formed", id="malformed-stanza"),
        pytest.param(b'{"stanza": "<message/><message/>"}', JSON, "exactly one element", id="two-stanzas"),
        pytest.param(b'{"stanza": "<foo/>"}', JSON, "not a message, presence or iq", id="not-a-stanza"),
        pytest.param(b'{"stanza": "<message xmlns=\'urn:x\'/>"}', JSON, "not a message", id="foreign-namespace"),
        pytest.param(
            b'{"stanza": "<message from=\'x@evil.example\'/>"}',
            JSON,
            "'from' must be a JID of",
            id="stanza-foreign-from",
        ),
        pytest.param(
            b'{"stanza": "<!DOCTYPE m [<!ENTITY a \'aaaa\'>]><message>&a;</message>"}', JSON, "DTD or entity", id="dtd"
        ),
        pytest.param(b'{"stanza": "<message>&lol9;</message>"}', JSON, "not well-formed", id="undefined-entity"),
        pytest.param(b'{"kind": "iq", "type": "chat"}', JSON, "an iq needs", id="iq-bad-type"),
        pytest.param(b'{"stanza": "<iq type=\'result\'/>"}', JSON, "an iq needs", id="stanza-iq-result-without-id"),
        pytest.param(b"<message", "application/xmpp+xml", "not well-formed", id="xml-reply-malformed"),
    ],
)
def test_unusable_replies_say_why(body: bytes, content_type: str | None, reason: str) -> None:
    with pytest.raises(ReplyError, match=None) as info:
        parse_reply(MSG, DOMAIN, content_type, body)
    assert reason in str(info.value)


def test_billion_laughs_is_refused_without_expansion() -> None:
    entities = "".join(f"<!ENTITY l{i} '{'&l' + str(i - 1) + ';' * 10 if i else 'lol'}'>" for i in range(10))
    stanza = f"<!DOCTYPE m [{entities}]><message><body>&l9;</body></message>"
    with pytest.raises(ReplyError, match="DTD or entity"):
        reply({"stanza": stanza})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param('{"body": "x"}'.encode("utf-16"), "not valid UTF-8", id="utf-16-json"),
        pytest.param(
            b'{"to": "bob@bot.localhost", "body": "x"}',
            "must not be a JID of bot.localhost itself",
            id="to-own-domain-loops",
        ),
        pytest.param(
            b'{"to": "echo@bot.localhost.", "body": "x"}',
            "must not be a JID of bot.localhost itself",
            id="to-own-domain-trailing-dot-loops",
        ),
        pytest.param(
            b'{"to": "echo@BOT.LocalHost.", "body": "x"}',
            "must not be a JID of bot.localhost itself",
            id="to-own-domain-case-and-dot-loops",
        ),
        pytest.param(
            b'{"stanza": "<message to=\'x@bot.localhost./r\'/>"}',
            "must not be a JID of bot.localhost",
            id="stanza-to-own-domain-trailing-dot",
        ),
        pytest.param(
            b'{"from": "echo@other.example.", "body": "x"}',
            "'from' must be a JID of bot.localhost",
            id="from-outside-domain-trailing-dot",
        ),
        pytest.param(
            b'{"stanza": "<message to=\'x@Bot.LocalHost/r\'/>"}',
            "must not be a JID of bot.localhost",
            id="stanza-to-own-domain",
        ),
        pytest.param(b'{"type": "get"}', "'type' 'get' is not a message type", id="message-with-iq-type"),
        pytest.param(b'{"kind": "presence", "type": "chat"}', "is not a presence type", id="presence-bad-type"),
        pytest.param(b'{"stanza": "<message type=\'set\'/>"}', "is not a message type", id="stanza-bad-type"),
        pytest.param(b"[" + b",".join([b"{}"] * 101) + b"]", "at most 100 at once", id="too-many-stanzas"),
        pytest.param(
            json.dumps({"stanza": "<message>" + "<a>" * 64 + "</a>" * 64 + "</message>"}).encode(),
            "nested more than 64 levels",
            id="too-deep",
        ),
    ],
)
def test_more_unusable_replies(body: bytes, reason: str) -> None:
    with pytest.raises(ReplyError) as info:
        parse_reply(MSG, DOMAIN, JSON, body)
    assert reason in str(info.value)


def test_utf8_bom_is_tolerated() -> None:
    assert parse_reply(MSG, DOMAIN, JSON, b'\xef\xbb\xbf{"body": "bom"}')[0].body == "bom"


def test_nesting_up_to_the_limit_is_fine() -> None:
    stanza = "<message>" + "<a>" * 63 + "</a>" * 63 + "</message>"
    assert len(reply({"stanza": stanza})) == 1


def test_the_size_limit_counts_utf8_bytes() -> None:
    body = json.dumps({"body": "é" * 100}).encode()  # 100 characters, 200 bytes
    assert len(parse_reply(MSG, DOMAIN, JSON, body, limit=1000)) == 1
    with pytest.raises(ReplyError, match=r"a message of \d+ bytes is over component.max_stanza_bytes \(250\)"):
        parse_reply(MSG, DOMAIN, JSON, body, limit=250)


def test_markup_inside_a_body_is_refused() -> None:
    with pytest.raises(ReplyError, match="hold text only"):
        reply({"stanza": "<message><body>a<b/>c</body></message>"})


@pytest.mark.parametrize(
    ("media", "body", "reason"),
    [
        pytest.param(JSON, b'{"to": "echo@bot.localhost.", "body": "x"}', "loop back", id="json-to-own-domain-dot"),
        pytest.param(JSON, b'{"to": "Echo@BOT.localhost", "body": "x"}', "loop back", id="json-to-own-domain-case"),
        pytest.param(
            "application/xmpp+xml",
            b"<message to='echo@bot.localhost.'><body>x</body></message>",
            "loop back",
            id="xml-to-own-domain-dot",
        ),
        pytest.param(JSON, b'{"body": "x"}', "'to' is required", id="json-to-missing"),
        pytest.param(JSON, b"[]", "the array is empty", id="json-empty-array"),
    ],
)
def test_api_requests_are_refused_the_same_way(media: str, body: bytes, reason: str) -> None:
    with pytest.raises(ReplyError, match=reason):
        api_stanzas(DOMAIN, media, body, LIMIT)


def test_an_api_send_from_defaults_to_the_domain_and_may_use_a_trailing_dot() -> None:
    [out] = api_stanzas(DOMAIN, JSON, b'{"to": "alice@localhost", "from": "echo@bot.localhost.", "body": "hi"}', LIMIT)
    assert out.xml == '<message to="alice@localhost" from="echo@bot.localhost" type="chat"><body>hi</body></message>'
    [out] = api_stanzas(DOMAIN, JSON, b'{"to": "alice@localhost", "body": "hi"}', LIMIT)
    assert out.from_ == "bot.localhost"


def test_an_api_stanza_over_the_limit_is_its_own_error() -> None:
    body = json.dumps({"to": "alice@localhost", "body": "x" * 1000}).encode()
    with pytest.raises(StanzaTooLarge, match=r"over component.max_stanza_bytes \(500\)"):
        api_stanzas(DOMAIN, JSON, body, 500)
