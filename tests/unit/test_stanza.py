"""The stanza model: the builder, error replies, JIDs, reading received elements, one case per rule.

Every expected value is written out by hand.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from component.stanza import (
    Kind,
    Stanza,
    XmppError,
    as_kind,
    bare,
    build,
    child_text,
    error_reply,
    from_element,
    kind_of,
    new_id,
    normalise_jid,
    parse,
    split_jid,
)
from component.xml import XmlError

USER = "alice@localhost/phone"
BOT = "echo@bot.localhost"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


# -- build -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stanza", "expected"),
    [
        pytest.param(
            build("presence", USER, BOT),
            '<presence to="alice@localhost/phone" from="echo@bot.localhost"/>',
            id="self-closing-when-empty",
        ),
        pytest.param(
            build("message", USER, BOT, "chat", "m1", "hi"),
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat" id="m1"><body>hi</body>'
            "</message>",
            id="attribute-order-to-from-type-id",
        ),
        pytest.param(
            build("message", USER, BOT, id_="m1"),
            '<message to="alice@localhost/phone" from="echo@bot.localhost" id="m1"/>',
            id="no-type",
        ),
        pytest.param(
            build("message", USER, BOT, "chat"),
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="chat"/>',
            id="no-id",
        ),
        pytest.param(
            build("message", USER, BOT, body="a & b < c > d \"e\" 'f'\n"),
            '<message to="alice@localhost/phone" from="echo@bot.localhost">'
            "<body>a &amp; b &lt; c &gt; d \"e\" 'f'\n</body></message>",
            id="body-escaped-as-text",
        ),
        pytest.param(
            build("message", USER, BOT, body=""),
            '<message to="alice@localhost/phone" from="echo@bot.localhost"><body></body></message>',
            id="empty-body-kept",
        ),
        pytest.param(
            build("iq", USER, BOT, "result", "q1", payload='<query xmlns="urn:q"/>'),
            '<iq to="alice@localhost/phone" from="echo@bot.localhost" type="result" id="q1">'
            '<query xmlns="urn:q"/></iq>',
            id="payload-written-as-is",
        ),
        pytest.param(
            build("message", USER, BOT, body="hi", payload='<x xmlns="urn:x"/>'),
            '<message to="alice@localhost/phone" from="echo@bot.localhost"><body>hi</body><x xmlns="urn:x"/></message>',
            id="body-before-payload",
        ),
        pytest.param(
            build("message", 'a"b@x/<r>', "c&d@y", 't"', "i\n\t"),
            '<message to="a&quot;b@x/&lt;r&gt;" from="c&amp;d@y" type="t&quot;" id="i&#10;&#9;"/>',
            id="attributes-escaped",
        ),
    ],
)
def test_build_xml(stanza: Stanza, expected: str) -> None:
    assert stanza.xml == expected


def test_build_keeps_the_values() -> None:
    stanza = build("message", USER, BOT, "chat", "m1", "hi & bye", '<x xmlns="urn:x"/>')
    assert (stanza.kind, stanza.to, stanza.from_, stanza.type, stanza.id, stanza.body) == (
        "message",
        "alice@localhost/phone",
        "echo@bot.localhost",
        "chat",
        "m1",
        "hi & bye",
    )


def test_new_id_is_unique_hex() -> None:
    first, second = new_id(), new_id()
    assert first != second
    assert len(first) == 32
    assert int(first, 16) >= 0


# -- error_reply -----------------------------------------------------------------------------------------------
MESSAGE = Stanza("message", BOT, USER, "chat", "m1", "hi", "<message/>")
IQ = Stanza("iq", "bot.localhost", USER, "get", "q1", None, "<iq/>")
NO_ID = Stanza("presence", BOT, USER, "subscribe", None, None, "<presence/>")


@pytest.mark.parametrize(
    ("original", "error", "expected"),
    [
        pytest.param(
            MESSAGE,
            XmppError("cancel", "item-not-found"),
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="error" id="m1">'
            '<error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></message>',
            id="message-without-text",
        ),
        pytest.param(
            MESSAGE,
            XmppError("wait", "remote-server-timeout", "Gateway timeout"),
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="error" id="m1">'
            '<error type="wait"><remote-server-timeout xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
            '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">Gateway timeout</text></error></message>',
            id="message-with-text",
        ),
        pytest.param(
            MESSAGE,
            XmppError("modify", "bad-request", "a < b & c"),
            '<message to="alice@localhost/phone" from="echo@bot.localhost" type="error" id="m1">'
            '<error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
            '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">a &lt; b &amp; c</text></error></message>',
            id="text-escaped",
        ),
        pytest.param(
            IQ,
            XmppError("cancel", "service-unavailable"),
            '<iq to="alice@localhost/phone" from="bot.localhost" type="error" id="q1">'
            '<error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>',
            id="iq",
        ),
        pytest.param(
            NO_ID,
            XmppError("auth", "forbidden", "Payment required"),
            '<presence to="alice@localhost/phone" from="echo@bot.localhost" type="error">'
            '<error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
            '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">Payment required</text></error></presence>',
            id="without-id",
        ),
    ],
)
def test_error_reply_xml(original: Stanza, error: XmppError, expected: str) -> None:
    assert error_reply(original, error).xml == expected


def test_error_reply_values_swap_to_and_from() -> None:
    reply = error_reply(MESSAGE, XmppError("cancel", "gone"))
    assert (reply.kind, reply.to, reply.from_, reply.type, reply.id, reply.body) == (
        "message",
        "alice@localhost/phone",
        "echo@bot.localhost",
        "error",
        "m1",
        None,
    )


# -- JIDs ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("jid", "expected"),
    [
        pytest.param("echo@bot.example", "echo@bot.example", id="canonical-unchanged"),
        pytest.param("Echo@bot.example", "echo@bot.example", id="local-part-case-folded"),
        pytest.param("echo@Bot.EXAMPLE", "echo@bot.example", id="domain-case-folded"),
        pytest.param("echo@bot.example.", "echo@bot.example", id="trailing-dot-removed"),
        pytest.param("Bot.Example.", "bot.example", id="domain-only-folded-and-dot-removed"),
        pytest.param("echo@bot.example/Phone", "echo@bot.example/Phone", id="resource-case-kept"),
        pytest.param("ECHO@BOT.EXAMPLE./Res", "echo@bot.example/Res", id="all-together"),
        pytest.param("\uff45\uff43\uff48\uff4f@bot.example", "echo@bot.example", id="local-part-width-folded"),
        pytest.param("echo@bot.example/a/b@c", "echo@bot.example/a/b@c", id="resource-may-hold-slash-and-at"),
        pytest.param("bot.example/r", "bot.example/r", id="domain-with-resource"),
    ],
)
def test_normalise_jid(jid: str, expected: str) -> None:
    assert normalise_jid(jid) == expected


@pytest.mark.parametrize(
    "jid",
    [
        pytest.param("", id="empty"),
        pytest.param("@bot.example", id="empty-local-part"),
        pytest.param("echo@", id="empty-domain"),
        pytest.param(".", id="only-a-dot"),
        pytest.param("bot.example/", id="empty-resource"),
        pytest.param("a@b@c", id="two-at-signs"),
        pytest.param("a b@bot.example", id="space-in-local-part"),
        pytest.param("echo@bot..example", id="empty-domain-label"),
        pytest.param("x" * 1024 + "@bot.example", id="local-part-too-long"),
    ],
)
def test_normalise_jid_refuses(jid: str) -> None:
    with pytest.raises(ValueError):
        normalise_jid(jid)


@pytest.mark.parametrize(
    ("jid", "expected"),
    [
        pytest.param("echo@bot.example/r", "echo@bot.example", id="full"),
        pytest.param("echo@bot.example", "echo@bot.example", id="bare"),
        pytest.param("bot.example/r/s", "bot.example", id="resource-with-slash"),
        pytest.param("Echo@Bot.Example/R", "Echo@Bot.Example", id="case-kept"),
    ],
)
def test_bare(jid: str, expected: str) -> None:
    assert bare(jid) == expected


@pytest.mark.parametrize(
    ("jid", "expected"),
    [
        pytest.param("Echo@bot.example/r", ("Echo", "bot.example"), id="full-as-written"),
        pytest.param("echo@bot.example", ("echo", "bot.example"), id="bare"),
        pytest.param("bot.example", ("", "bot.example"), id="domain-only"),
        pytest.param("bot.example/a@b", ("", "bot.example"), id="at-in-resource-ignored"),
    ],
)
def test_split_jid(jid: str, expected: tuple[str, str]) -> None:
    assert split_jid(jid) == expected


# -- reading ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("message", "message", id="message"),
        pytest.param("presence", "presence", id="presence"),
        pytest.param("iq", "iq", id="iq"),
        pytest.param("Message", None, id="case-matters"),
        pytest.param("body", None, id="other-name"),
        pytest.param("", None, id="empty"),
    ],
)
def test_as_kind(name: str, expected: Kind | None) -> None:
    assert as_kind(name) == expected


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        pytest.param("{jabber:component:accept}message", "message", id="component-namespace"),
        pytest.param("{jabber:client}presence", "presence", id="client-namespace"),
        pytest.param("iq", "iq", id="no-namespace"),
        pytest.param("{urn:other}message", None, id="foreign-namespace"),
        pytest.param("{jabber:component:accept}handshake", None, id="not-a-stanza"),
    ],
)
def test_kind_of(tag: str, expected: Kind | None) -> None:
    assert kind_of(ET.Element(tag)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('<message xmlns="jabber:client"><body>hi</body></message>', "hi", id="plain"),
        pytest.param('<message xmlns="jabber:client"><body/></message>', "", id="empty-body"),
        pytest.param('<message xmlns="jabber:client"><subject>s</subject></message>', None, id="no-body"),
        pytest.param(
            '<message xmlns="jabber:client"><body>a<b xmlns="urn:x">bold</b>c</body></message>',
            "aboldc",
            id="markup-inside-counts-by-its-text",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body xmlns="urn:x">no</body></message>', None, id="foreign-body-ignored"
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body xmlns="urn:x">no</body><body>yes</body></message>',
            "yes",
            id="first-stanza-namespace-body",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body>one</body><body>two</body></message>', "one", id="first-body-wins"
        ),
        pytest.param("<message><body>bare</body></message>", "bare", id="no-namespace-body"),
    ],
)
def test_child_text(text: str, expected: str | None) -> None:
    assert child_text(ET.fromstring(text), "body") == expected


@pytest.mark.parametrize(
    ("text", "kind", "expected"),
    [
        pytest.param(
            '<message xmlns="jabber:component:accept" to="echo@bot.localhost" from="alice@localhost/phone" '
            'type="chat" id="m1" xml:lang="en"><body>hi &amp; bye</body></message>',
            "message",
            Stanza(
                "message",
                "echo@bot.localhost",
                "alice@localhost/phone",
                "chat",
                "m1",
                "hi & bye",
                '<message xmlns="jabber:client" to="echo@bot.localhost" from="alice@localhost/phone" type="chat" '
                'id="m1" xml:lang="en"><body>hi &amp; bye</body></message>',
            ),
            id="message",
        ),
        pytest.param(
            '<presence xmlns="jabber:component:accept" to="echo@bot.localhost" from="alice@localhost/phone">'
            "<body>ignored</body></presence>",
            "presence",
            Stanza(
                "presence",
                "echo@bot.localhost",
                "alice@localhost/phone",
                None,
                None,
                None,
                '<presence xmlns="jabber:client" to="echo@bot.localhost" from="alice@localhost/phone">'
                "<body>ignored</body></presence>",
            ),
            id="presence-has-no-body",
        ),
        pytest.param(
            '<iq xmlns="jabber:component:accept" type="get" id="q1"><ping xmlns="urn:xmpp:ping"/></iq>',
            "iq",
            Stanza(
                "iq",
                "",
                "",
                "get",
                "q1",
                None,
                '<iq xmlns="jabber:client" type="get" id="q1"><ping xmlns="urn:xmpp:ping"/></iq>',
            ),
            id="missing-to-and-from-are-empty",
        ),
    ],
)
def test_from_element(text: str, kind: Kind, expected: Stanza) -> None:
    assert from_element(ET.fromstring(text), kind) == expected


@pytest.mark.parametrize(
    ("text", "kind", "tag"),
    [
        pytest.param('<message to="a@x"/>', "message", "{jabber:component:accept}message", id="message-default-ns"),
        pytest.param("<presence/>", "presence", "{jabber:component:accept}presence", id="presence-default-ns"),
        pytest.param('<iq type="get"/>', "iq", "{jabber:component:accept}iq", id="iq-default-ns"),
        pytest.param('<message xmlns="jabber:client"/>', "message", "{jabber:client}message", id="client-ns"),
        pytest.param(
            '<message xmlns="jabber:component:accept"/>',
            "message",
            "{jabber:component:accept}message",
            id="component-ns",
        ),
    ],
)
def test_parse(text: str, kind: Kind, tag: str) -> None:
    elem, parsed_kind = parse(text)
    assert (elem.tag, parsed_kind) == (tag, kind)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("<handshake/>", "<handshake> is not a message, presence or iq", id="not-a-stanza"),
        pytest.param(
            '<message xmlns="urn:other"/>', "<message> is not a message, presence or iq", id="foreign-namespace"
        ),
        pytest.param("<message/><message/>", "it must hold exactly one element", id="two-stanzas"),
    ],
)
def test_parse_refuses(text: str, message: str) -> None:
    with pytest.raises(XmlError) as caught:
        parse(text)
    assert str(caught.value) == message
    assert caught.value.forbidden is False


def test_parse_refuses_a_dtd_as_forbidden() -> None:
    with pytest.raises(XmlError) as caught:
        parse("<!DOCTYPE message><message/>")
    assert caught.value.forbidden is True
