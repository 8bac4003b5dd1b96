"""The wire format and the reply rules, one case per rule."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from component.codec import Replies, ReplyError, StanzaTooLarge, api_stanzas, reply_stanzas, request_json, send_stanza
from component.stanza import Stanza, from_element
from component.xml import NS_COMPONENT

DOMAIN = "bot.localhost"
MSG = Stanza(
    "message", "echo@bot.localhost", "alice@localhost/phone", "chat", "m1", "hello", '<message xmlns="jabber:client"/>'
)
IQ = Stanza("iq", "echo@bot.localhost", "alice@localhost/phone", "get", "q1", None, '<iq xmlns="jabber:client"/>')
JSON = "application/json"
LIMIT = 500_000


def parse_reply(original: Stanza, domain: str, content_type: str | None, body: bytes, limit: int = LIMIT) -> Replies:
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


def test_request_json_leaves_out_absent_fields_and_names_a_presence_without_type_available() -> None:
    presence = Stanza("presence", "echo@bot.localhost", "alice@localhost/phone", None, None, None, "<presence/>")
    request = json.loads(request_json(presence))
    assert set(request) == {"to", "from", "kind", "stanza", "type"}
    assert request["type"] == "available"  # mod_rest's name for it


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


@pytest.mark.parametrize("status", [200, 201, 203])
def test_an_iq_left_unanswered_gets_an_error(status: int) -> None:
    body = json.dumps({"body": "not an iq"}).encode()
    out = reply_stanzas(IQ, DOMAIN, status, JSON, body, LIMIT)
    assert out[-1].xml == UNANSWERED
    assert len(out) == (2 if status == 200 else 1)


@pytest.mark.parametrize("status", [202, 204])
def test_an_iq_answered_202_or_204_gets_an_empty_result(status: int) -> None:
    """mod_rest: 202 and 204 mean "accepted, nothing to say"; an iq then gets its empty result, not an error."""
    [out] = reply_stanzas(IQ, DOMAIN, status, JSON, b'{"body": "a 202 body is not read"}', LIMIT)
    assert out.xml == '<iq to="alice@localhost/phone" from="echo@bot.localhost" type="result" id="q1"/>'


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
        pytest.param(b'{"body": "hi"}', "application/xml", "Content-Type is 'application/xml'", id="xml-not-xmpp"),
        pytest.param(b'{"body": "hi"}', "text/json", "Content-Type is 'text/json'", id="json-not-application"),
        pytest.param(b'{"body": "x", "unknown": 1}', JSON, "unknown field 'unknown'", id="unknown-field"),
        pytest.param(b'{"body": "x", "archive": {}}', JSON, "unknown field 'archive'", id="mod-rest-field-not-mapped"),
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
        pytest.param(b'{"type": "get", "body": "x"}', "'body' is not a field of an iq", id="iq-type-with-a-body"),
        pytest.param(b'{"kind": "message", "type": "get"}', "'type' 'get' is not a message type", id="message-iq-type"),
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


# -- mod_rest's reply rules and mapping, where they differ from mod_component_http's ------------------------------
def received(xml: str) -> Stanza:
    elem = ET.fromstring(xml)
    return from_element(elem, elem.tag.rpartition("}")[2])  # type: ignore[arg-type]


ASKS_RECEIPT = received(
    '<message xmlns="jabber:client" to="echo@bot.localhost" from="alice@localhost/phone" type="chat" id="m1">'
    '<body>hi</body><request xmlns="urn:xmpp:receipts"/></message>'
)
IN_ROOM = received(
    '<message xmlns="jabber:client" to="echo@bot.localhost/bot" from="room@muc.localhost/alice" type="groupchat" '
    'id="g1"><body>hi all</body></message>'
)
RECEIPT = (
    '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat" id="*">'
    '<received xmlns="urn:xmpp:receipts" id="m1"/></message>'
)


def without_ids(stanzas: list[Stanza]) -> list[str]:
    """The stanzas' XML, with the ids the component makes up written as *."""
    return [re.sub(r' id="[0-9a-f]{32}"', ' id="*"', s.xml) for s in stanzas]


def test_request_json_has_the_mapped_fields_and_keeps_the_rest_in_stanza() -> None:
    stanza = received(
        '<message xmlns="jabber:client" to="echo@bot.localhost" from="alice@localhost/phone" type="chat" id="m1" '
        'xml:lang="en"><body>hi</body><composing xmlns="http://jabber.org/protocol/chatstates"/>'
        '<thread parent="t0">t1</thread><x xmlns="jabber:x:oob"><url>https://m/a.png</url></x>'
        '<request xmlns="urn:xmpp:receipts"/></message>'
    )
    request = json.loads(request_json(stanza))
    assert request == {
        "to": "echo@bot.localhost",
        "from": "alice@localhost/phone",
        "kind": "message",
        "type": "chat",
        "id": "m1",
        "lang": "en",
        "body": "hi",
        "state": "composing",
        "thread": {"id": "t1", "parent": "t0"},
        "oob": {"url": "https://m/a.png"},
        "oob_url": "https://m/a.png",
        "stanza": stanza.xml,
    }
    assert '<request xmlns="urn:xmpp:receipts"/>' in request["stanza"]  # unknown to the mapping: only in `stanza`


def test_a_plain_message_skips_the_table_but_not_its_lang() -> None:
    stanza = received(
        '<message xmlns="jabber:client" to="e@bot.localhost" from="a@localhost/r" xml:lang="a&amp;&quot;b">'
        "<body>hi</body></message>"
    )
    assert json.loads(request_json(stanza))["lang"] == 'a&"b'


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        pytest.param(b"Hello\n", "text/plain", "Hello\n", id="utf-8-by-default"),
        pytest.param("caf\u00e9".encode("latin-1"), "text/plain; charset=ISO-8859-1", "caf\u00e9", id="charset"),
        pytest.param("\u00e9t\u00e9".encode(), "Text/Plain;charset=utf-8", "\u00e9t\u00e9", id="case-and-parameter"),
    ],
)
def test_text_plain_is_the_body_of_a_message_to_the_sender(body: bytes, content_type: str, expected: str) -> None:
    [out] = parse_reply(MSG, DOMAIN, content_type, body)
    head = '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat">'
    assert out.xml == f"{head}<body>{expected}</body></message>"


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        pytest.param(b"\xff", "text/plain", "its body is not valid utf-8", id="not-utf8"),
        pytest.param(b"x", "text/plain; charset=klingon", "its charset 'klingon' is unknown", id="unknown-charset"),
        pytest.param(b"a\x00b", "text/plain", "'body' contains characters that XML does not allow", id="nul"),
    ],
)
def test_unusable_text_says_why(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(ReplyError, match=reason):
        parse_reply(MSG, DOMAIN, content_type, body)


@pytest.mark.parametrize("content_type", ["text/html; charset=UTF-8", "application/octet-stream", "image/png"])
def test_other_content_types_are_ignored_not_refused(content_type: str) -> None:
    out = parse_reply(MSG, DOMAIN, content_type, b"<html><body>Warning: something</body></html>")
    assert (out, out.ignored) == ([], content_type.partition(";")[0])
    out = parse_reply(IQ, DOMAIN, content_type, b"<html/>")  # an iq is still answered
    assert ([s.xml for s in out], out.ignored) == ([UNANSWERED], content_type.partition(";")[0])


@pytest.mark.parametrize(
    ("status", "content_type", "body", "expected"),
    [
        pytest.param(
            200,
            JSON,
            b'{"body": "hello"}',
            [
                RECEIPT,
                '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat">'
                "<body>hello</body></message>",
            ],
            id="200-reply",
        ),
        pytest.param(204, None, b"", [RECEIPT], id="204"),
        pytest.param(202, JSON, b'{"body": "not read"}', [RECEIPT], id="202"),
        pytest.param(200, "text/html", b"<p>printed</p>", [RECEIPT], id="200-ignored"),
        pytest.param(
            200,
            JSON,
            b"""{"stanza": "<message><received xmlns='urn:xmpp:receipts' id='m1'/></message>"}""",
            [
                '<message to="alice@localhost/phone" from="echo@bot.localhost">'
                '<received xmlns="urn:xmpp:receipts" id="m1"/></message>'
            ],
            id="the-bot-sends-its-own",
        ),
    ],
)
def test_a_message_that_asks_for_a_receipt_gets_one(
    status: int, content_type: str | None, body: bytes, expected: list[str]
) -> None:
    assert without_ids(reply_stanzas(ASKS_RECEIPT, DOMAIN, status, content_type, body, LIMIT)) == expected


@pytest.mark.parametrize(
    "xml",
    [
        pytest.param(
            '<message xmlns="jabber:client" to="e@bot.localhost" from="a@localhost/r" type="chat">'
            '<request xmlns="urn:xmpp:receipts"/></message>',
            id="no-id",
        ),
        pytest.param(
            '<message xmlns="jabber:client" to="e@bot.localhost" from="r@muc.localhost/a" type="groupchat" id="1">'
            '<request xmlns="urn:xmpp:receipts"/></message>',
            id="groupchat",
        ),
        pytest.param(
            '<message xmlns="jabber:client" to="e@bot.localhost" from="a@localhost/r" id="1">'
            "<body>urn:xmpp:receipts</body></message>",
            id="no-request",
        ),
    ],
)
def test_no_receipt_without_a_request_an_id_or_in_a_room(xml: str) -> None:
    assert reply_stanzas(received(xml), DOMAIN, 204, None, b"", LIMIT) == []


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            {"body": "hello room"},
            '<message to="room@muc.localhost" from="echo@bot.localhost/bot" type="groupchat">'
            "<body>hello room</body></message>",
            id="to-the-room",
        ),
        pytest.param(
            {"body": "psst", "type": "chat"},
            '<message to="room@muc.localhost/alice" from="echo@bot.localhost/bot" type="chat">'
            "<body>psst</body></message>",
            id="a-private-message-to-the-occupant",
        ),
        pytest.param(
            {"stanza": "<message type='groupchat'><body>raw</body></message>"},
            '<message type="groupchat" to="room@muc.localhost" from="echo@bot.localhost/bot">'
            "<body>raw</body></message>",
            id="raw-groupchat",
        ),
    ],
)
def test_a_reply_to_a_groupchat_message_goes_to_the_room(obj: dict[str, object], expected: str) -> None:
    [out] = reply(obj, original=IN_ROOM)
    assert out.xml == expected


ERROR = (
    '<error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
    '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">say it again</text></error>'
)


@pytest.mark.parametrize(
    ("obj", "original", "expected"),
    [
        pytest.param(
            {"error": {"type": "modify", "condition": "bad-request", "text": "say it again"}},
            MSG,
            f'<message to="alice@localhost/phone" from="echo@bot.localhost" type="error" id="m1">{ERROR}</message>',
            id="message",
        ),
        pytest.param(
            {"error": {"type": "modify", "condition": "bad-request", "text": "say it again"}},
            IQ,
            f'<iq to="alice@localhost/phone" from="echo@bot.localhost" type="error" id="q1">{ERROR}</iq>',
            id="iq-kind-of-the-original",
        ),
    ],
)
def test_a_bot_may_answer_with_an_error(obj: dict[str, object], original: Stanza, expected: str) -> None:
    assert [s.xml for s in reply(obj, original=original)] == [expected]


@pytest.mark.parametrize(
    ("obj", "original", "expected"),
    [
        pytest.param(
            {"version": {"name": "bot", "version": "1.0"}},
            IQ,
            '<iq to="alice@localhost/phone" from="echo@bot.localhost" type="result" id="q1">'
            '<query xmlns="jabber:iq:version"><name>bot</name><version>1.0</version></query></iq>',
            id="iq-from-a-field",
        ),
        pytest.param(
            {"show": "away", "status": "at lunch"},
            MSG,
            '<presence to="alice@localhost/phone" from="echo@bot.localhost">'
            "<show>away</show><status>at lunch</status></presence>",
            id="presence-from-a-field",
        ),
        pytest.param(
            {"type": "unavailable"},
            MSG,
            '<presence to="alice@localhost/phone" from="echo@bot.localhost" type="unavailable"/>',
            id="presence-from-the-type",
        ),
        pytest.param(
            {"kind": "presence", "type": "available"},
            MSG,
            '<presence to="alice@localhost/phone" from="echo@bot.localhost"/>',
            id="available-is-no-type",
        ),
        pytest.param(
            {"body": "fixed", "replace": "m0", "lang": "en", "reactions": {"id": "m0", "reactions": ["\u2705"]}},
            MSG,
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat" xml:lang="en"><body>fixed</body>'
            '<replace xmlns="urn:xmpp:message-correct:0" id="m0"/>'
            '<reactions xmlns="urn:xmpp:reactions:0" id="m0"><reaction>\u2705</reaction></reactions></message>',
            id="rich-message",
        ),
    ],
)
def test_mod_rest_replies(obj: dict[str, object], original: Stanza, expected: str) -> None:
    [out] = reply(obj, original=original)
    assert out.xml == expected


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        pytest.param({"error": {}, "type": "chat"}, "'error' goes with 'type' error", id="error-with-another-type"),
        pytest.param({"kind": "presence", "body": "x"}, "'body' is not a field of a presence", id="body-never-dropped"),
        pytest.param({"state": "typing"}, "'state' must be one of", id="bad-value"),
        pytest.param({"kind": "iq", "to": "alice@localhost"}, "an iq needs 'type'", id="iq-without-query-or-type"),
    ],
)
def test_mod_rest_replies_refused(obj: dict[str, object], reason: str) -> None:
    with pytest.raises(ReplyError, match=reason):
        reply(obj)


def test_an_api_query_is_an_iq_get_with_an_id() -> None:
    out = send_stanza(DOMAIN, {"to": "alice@localhost/phone", "ping": True}, LIMIT)
    assert without_ids([out]) == [
        '<iq to="alice@localhost/phone" from="bot.localhost" type="get" id="*"><ping xmlns="urn:xmpp:ping"/></iq>'
    ]
    out = send_stanza(DOMAIN, {"to": "bot2.localhost", "command": {"node": "uptime"}}, LIMIT)
    assert out.type == "set"  # mod_rest: a command is a set
