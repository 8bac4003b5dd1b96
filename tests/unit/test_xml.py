"""Pure XML: escaping, invalid characters, the serializer and the safe one-element parser, one case per rule.

Every expected value is written out by hand.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable

import pytest

from component.xml import (
    MAX_DEPTH,
    NS_CLIENT,
    NS_COMPONENT,
    XmlError,
    depth,
    escape_attr,
    escape_text,
    has_invalid_chars,
    parse_one,
    serialize,
    split_tag,
)

ACCEPT = "{jabber:component:accept}"
CLIENT = "{jabber:client}"


def with_comments(text: str) -> ET.Element:
    """Parse keeping comments and processing instructions (slixmpp's parser and ours drop them; other
    producers of elements may not)."""
    parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
    parser.feed(text)
    return parser.close()


def nested(levels: int) -> str:
    """`levels` elements, each inside the previous one."""
    return "<a>" * levels + "</a>" * levels


# -- escaping --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a & b", "a &amp; b", id="ampersand"),
        pytest.param("a < b", "a &lt; b", id="less-than"),
        pytest.param("a > b", "a &gt; b", id="greater-than"),
        pytest.param("&lt;", "&amp;lt;", id="an-entity-is-escaped-again-not-kept"),
        pytest.param("<&>", "&lt;&amp;&gt;", id="all-three-together"),
        pytest.param('say "hi"', 'say "hi"', id="quote-kept-in-text"),
        pytest.param("it's", "it's", id="apostrophe-kept-in-text"),
        pytest.param("a\nb\tc", "a\nb\tc", id="newline-and-tab-kept-in-text"),
        pytest.param("c\rd", "c&#13;d", id="carriage-return-kept-as-a-reference"),
        pytest.param("", "", id="empty"),
    ],
)
def test_escape_text(text: str, expected: str) -> None:
    assert escape_text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("a & b", "a &amp; b", id="ampersand"),
        pytest.param("a < b", "a &lt; b", id="less-than"),
        pytest.param("a > b", "a &gt; b", id="greater-than"),
        pytest.param('say "hi"', "say &quot;hi&quot;", id="double-quote"),
        pytest.param("it's", "it's", id="apostrophe-kept-attributes-use-double-quotes"),
        pytest.param("a\nb", "a&#10;b", id="newline-as-character-reference"),
        pytest.param("a\rb", "a&#13;b", id="carriage-return-as-character-reference"),
        pytest.param("a\tb", "a&#9;b", id="tab-as-character-reference"),
        pytest.param('&"\n', "&amp;&quot;&#10;", id="mixed"),
        pytest.param("", "", id="empty"),
    ],
)
def test_escape_attr(text: str, expected: str) -> None:
    assert escape_attr(text) == expected


@pytest.mark.parametrize("escape", [escape_text, escape_attr], ids=["text", "attr"])
def test_escaping_plain_text_returns_the_same_string(escape: Callable[[str], str]) -> None:
    plain = "echo@bot.localhost/phone 12"
    assert escape(plain) is plain  # the fast path: no copy


# -- invalid characters ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "invalid"),
    [
        pytest.param("hello", False, id="ascii"),
        pytest.param("", False, id="empty"),
        pytest.param("a\tb\nc\rd", False, id="tab-newline-carriage-return-allowed"),
        pytest.param("caf\u00e9 \u4e2d", False, id="bmp-letters"),
        pytest.param("\x7f", False, id="delete-allowed-in-xml-1.0"),
        pytest.param("\ufffd", False, id="replacement-char-allowed"),
        pytest.param("\ue000", False, id="private-use-allowed"),
        pytest.param("\U0001f600", False, id="astral-emoji-allowed"),
        pytest.param("\U0010ffff", False, id="last-code-point-allowed"),
        pytest.param("a\x00b", True, id="nul"),
        pytest.param("\x01", True, id="control-char"),
        pytest.param("\x0b", True, id="vertical-tab"),
        pytest.param("\x1f", True, id="unit-separator"),
        pytest.param("ok \ud800", True, id="lone-high-surrogate"),
        pytest.param("\udfff ok", True, id="lone-low-surrogate"),
        pytest.param("\ufffe", True, id="u-fffe"),
        pytest.param("\uffff", True, id="u-ffff"),
        pytest.param("caf\u00e9\x00", True, id="nul-after-non-ascii"),
    ],
)
def test_has_invalid_chars(text: str, invalid: bool) -> None:
    assert has_invalid_chars(text) is invalid


# -- split_tag and depth ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        pytest.param("{jabber:client}message", ("jabber:client", "message"), id="namespaced"),
        pytest.param("message", ("", "message"), id="no-namespace"),
        pytest.param("{}message", ("", "message"), id="empty-namespace"),
    ],
)
def test_split_tag(tag: str, expected: tuple[str, str]) -> None:
    assert split_tag(tag) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("<a/>", 1, id="leaf"),
        pytest.param("<a><b/><c><d/></c></a>", 3, id="deepest-branch-counts"),
        pytest.param(nested(200), 200, id="deep-without-recursion"),
    ],
)
def test_depth(text: str, expected: int) -> None:
    assert depth(ET.fromstring(text)) == expected


# -- serialize -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '<message xmlns="jabber:client" to="a@x"/>',
            '<message xmlns="jabber:client" to="a@x"/>',
            id="root-declares-its-namespace",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body>hi</body><thread>t</thread></message>',
            '<message xmlns="jabber:client"><body>hi</body><thread>t</thread></message>',
            id="children-inherit-the-namespace",
        ),
        pytest.param(
            '<message xmlns="jabber:component:accept"><body>hi</body></message>',
            '<message xmlns="jabber:client"><body>hi</body></message>',
            id="component-namespace-written-as-client",
        ),
        pytest.param(
            "<message><body>hi</body></message>",
            '<message xmlns="jabber:client"><body>hi</body></message>',
            id="no-namespace-written-as-client",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><x xmlns="urn:other"><y>1</y></x><body>b</body></message>',
            '<message xmlns="jabber:client"><x xmlns="urn:other"><y>1</y></x><body>b</body></message>',
            id="foreign-child-declares-its-namespace-and-its-children-inherit-it",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><forwarded xmlns="urn:xmpp:forward:0">'
            '<message xmlns="jabber:component:accept" to="b@y"/></forwarded></message>',
            '<message xmlns="jabber:client"><forwarded xmlns="urn:xmpp:forward:0">'
            '<message xmlns="jabber:client" to="b@y"/></forwarded></message>',
            id="stanza-inside-a-foreign-element-declares-the-stanza-namespace",
        ),
        pytest.param(
            '<iq xmlns="jabber:client" xmlns:p="urn:a" xmlns:q="urn:b" p:one="1" q:two="2"/>',
            '<iq xmlns="jabber:client" xmlns:a1="urn:a" a1:one="1" xmlns:a2="urn:b" a2:two="2"/>',
            id="prefixed-attributes-get-a1-a2",
        ),
        pytest.param(
            '<iq xmlns="jabber:client" xmlns:p="urn:a"><query xmlns="urn:q" p:x="1"/></iq>',
            '<iq xmlns="jabber:client"><query xmlns="urn:q" xmlns:a1="urn:a" a1:x="1"/></iq>',
            id="prefixes-numbered-per-element",
        ),
        pytest.param(
            '<message xmlns="jabber:client" xml:lang="en"><body xml:lang="fr">salut</body></message>',
            '<message xmlns="jabber:client" xml:lang="en"><body xml:lang="fr">salut</body></message>',
            id="xml-lang-kept-as-xml-lang",
        ),
        pytest.param(
            '<message xmlns="jabber:client" to="a&amp;b" id="&quot;&lt;&gt;&#10;&#9;&#13;"/>',
            '<message xmlns="jabber:client" to="a&amp;b" id="&quot;&lt;&gt;&#10;&#9;&#13;"/>',
            id="attribute-values-escaped",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body>a &amp; b &lt; c &gt; d "e" \'f\'</body></message>',
            '<message xmlns="jabber:client"><body>a &amp; b &lt; c &gt; d "e" \'f\'</body></message>',
            id="text-escaped-quotes-kept",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body><![CDATA[<b>&</b>]]></body></message>',
            '<message xmlns="jabber:client"><body>&lt;b&gt;&amp;&lt;/b&gt;</body></message>',
            id="cdata-written-as-escaped-text",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body>a<b xmlns="urn:x">bold</b>c</body></message>',
            '<message xmlns="jabber:client"><body>a<b xmlns="urn:x">bold</b>c</body></message>',
            id="mixed-content-tails-kept",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body></body></message>',
            '<message xmlns="jabber:client"><body/></message>',
            id="empty-element-self-closing",
        ),
    ],
)
def test_serialize_standalone(text: str, expected: str) -> None:
    assert serialize(ET.fromstring(text)) == expected


def test_serialize_writes_no_tail_after_the_root() -> None:
    root = ET.fromstring('<w><message xmlns="jabber:client"/>tail</w>')[0]
    assert serialize(root) == '<message xmlns="jabber:client"/>'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '<message xmlns="jabber:client"><body>a<!-- note -->b</body></message>',
            '<message xmlns="jabber:client"><body>ab</body></message>',
            id="comment-dropped-tail-kept",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body>a<?pi data?>b</body></message>',
            '<message xmlns="jabber:client"><body>ab</body></message>',
            id="processing-instruction-dropped-tail-kept",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><!-- c --><body>x</body></message>',
            '<message xmlns="jabber:client"><body>x</body></message>',
            id="comment-without-tail",
        ),
        pytest.param(
            '<message xmlns="jabber:client"><body>x</body><!-- c -->a &amp; b</message>',
            '<message xmlns="jabber:client"><body>x</body>a &amp; b</message>',
            id="tail-of-a-comment-escaped",
        ),
    ],
)
def test_serialize_drops_comments_and_processing_instructions(text: str, expected: str) -> None:
    assert serialize(with_comments(text)) == expected


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        pytest.param(f"{CLIENT}message", "<message><body>hi</body></message>", id="client-to-component"),
        pytest.param(f"{ACCEPT}message", "<message><body>hi</body></message>", id="component-stays-component"),
        pytest.param("message", "<message><body>hi</body></message>", id="none-to-component"),
        pytest.param(
            "{urn:other}message",
            '<message xmlns="urn:other"><body xmlns="jabber:component:accept">hi</body></message>',
            id="foreign-root-declared-stanza-child-redeclared",
        ),
    ],
)
def test_serialize_for_the_component_stream(tag: str, expected: str) -> None:
    elem = ET.Element(tag)
    ET.SubElement(elem, f"{CLIENT}body").text = "hi"
    assert serialize(elem, stanza_ns=NS_COMPONENT, parent_ns=NS_COMPONENT) == expected


# -- parse_one -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "tag"),
    [
        pytest.param("<message/>", f"{ACCEPT}message", id="default-namespace-is-the-component-one"),
        pytest.param('<message xmlns="jabber:client"/>', f"{CLIENT}message", id="declared-namespace-kept"),
        pytest.param("  \n<message/>\n  ", f"{ACCEPT}message", id="whitespace-around-allowed"),
        pytest.param('<?xml version="1.0"?><message/>', f"{ACCEPT}message", id="xml-declaration-tolerated"),
        pytest.param(
            "\n<?xml version='1.0' encoding='UTF-8'?>\n<message/>",
            f"{ACCEPT}message",
            id="xml-declaration-after-whitespace-tolerated",
        ),
        pytest.param(
            '<?xml version="1.0" encoding="UTF-16"?><message/>', f"{ACCEPT}message", id="declared-encoding-ignored"
        ),
    ],
)
def test_parse_one_accepts(text: str, tag: str) -> None:
    assert parse_one(text).tag == tag


def test_parse_one_other_default_namespace() -> None:
    assert parse_one("<message/>", default_ns=NS_CLIENT).tag == f"{CLIENT}message"


def test_parse_one_reads_attributes_text_and_predefined_entities() -> None:
    elem = parse_one('<message to="a@x" id="&quot;1&quot;"><body>&amp;&lt;&gt;&apos;&#65;&#x42;</body></message>')
    assert elem.attrib == {"to": "a@x", "id": '"1"'}
    body = elem.find(f"{ACCEPT}body")
    assert body is not None
    assert body.text == "&<>'AB"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "it must hold exactly one element", id="empty"),
        pytest.param("   ", "it must hold exactly one element", id="only-whitespace"),
        pytest.param("hello", "it must hold exactly one element", id="only-text"),
        pytest.param("hi <message/>", "it must hold exactly one element", id="text-before"),
        pytest.param("<message/> bye", "it must hold exactly one element", id="text-after"),
        pytest.param("<message/><message/>", "it must hold exactly one element", id="two-elements"),
        pytest.param("<message>", "it is not well-formed XML (mismatched tag)", id="unclosed-closed-by-the-wrapper"),
        pytest.param("<message></presence>", "it is not well-formed XML (mismatched tag)", id="mismatched-tag"),
        pytest.param(
            "<message/></w><w>",
            "it is not well-formed XML (junk after document element)",
            id="closing-the-wrapper-refused",
        ),
        pytest.param(
            "<message><body>&nbsp;</body></message>",
            "it is not well-formed XML (undefined entity)",
            id="undefined-entity",
        ),
        pytest.param(
            "<message><body>&#0;</body></message>",
            "it is not well-formed XML (reference to invalid character number)",
            id="reference-to-nul",
        ),
        pytest.param(
            "<message><body>\x00</body></message>", "it contains characters that XML does not allow", id="nul"
        ),
        pytest.param(
            "<message>\ud800</message>", "it contains characters that XML does not allow", id="lone-surrogate"
        ),
        pytest.param('<?xml version="1.0"<message/>', "the XML declaration is not closed", id="declaration-unclosed"),
        pytest.param(
            '<?xml version="1.0"?><?xml version="1.0"?><message/>',
            "it is not well-formed XML (XML or text declaration not at start of entity)",
            id="second-declaration",
        ),
        pytest.param(
            nested(MAX_DEPTH + 1), "it is nested more than 64 levels deep", id="one-level-over-the-depth-limit"
        ),
        pytest.param(nested(5000), "it is nested more than 64 levels deep", id="far-over-the-depth-limit"),
    ],
)
def test_parse_one_refuses(text: str, message: str) -> None:
    with pytest.raises(XmlError) as caught:
        parse_one(text)
    assert str(caught.value) == message
    assert caught.value.forbidden is False


def test_parse_one_accepts_exactly_the_depth_limit() -> None:
    assert MAX_DEPTH == 64
    assert depth(parse_one(nested(64))) == 64


def test_xml_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="exactly one element"):
        parse_one("")


BILLION_LAUGHS = (
    '<?xml version="1.0"?>'
    '<!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">'
    '<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">'
    '<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">'
    '<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">'
    '<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">'
    '<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">'
    "]><message><body>&lol9;</body></message>"
)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("<!DOCTYPE message><message/>", id="doctype"),
        pytest.param("<!doctype message><message/>", id="doctype-lower-case"),
        pytest.param('<!DOCTYPE m [<!ENTITY e "x">]><message>&e;</message>', id="internal-entity"),
        pytest.param('<!DOCTYPE m SYSTEM "file:///etc/passwd"><message/>', id="external-dtd"),
        pytest.param(
            '<!DOCTYPE m [<!ENTITY e SYSTEM "file:///etc/passwd">]><message>&e;</message>', id="external-entity"
        ),
        pytest.param('<?xml version="1.0"?><!DOCTYPE message><message/>', id="doctype-after-declaration"),
        pytest.param('<!ENTITY e "x"><message/>', id="entity-without-doctype"),
        pytest.param("<message><!DOCTYPE x></message>", id="doctype-inside-the-element"),
        pytest.param(BILLION_LAUGHS, id="billion-laughs"),
    ],
)
def test_parse_one_refuses_dtds_on_principle(text: str) -> None:
    with pytest.raises(XmlError) as caught:
        parse_one(text)
    assert str(caught.value) == "a DTD or entity declaration is not allowed"
    assert caught.value.forbidden is True
