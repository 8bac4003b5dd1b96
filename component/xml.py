"""Pure XML: escaping, a namespace-aware serializer, and a safe parser for one element of untrusted text.

Stanzas cross this process as ElementTree elements (from slixmpp's parser or ours) and leave it as text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

NS_CLIENT = "jabber:client"
NS_COMPONENT = "jabber:component:accept"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_XML = "http://www.w3.org/XML/1998/namespace"
STANZA_NAMESPACES = (NS_COMPONENT, NS_CLIENT, "")
MAX_DEPTH = 64

# Characters XML 1.0 forbids; JSON can carry them ("\u0000"), and one of them on the stream would make the
# server close it as not-well-formed.
_INVALID_CHARS = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ATTR_SPECIAL = re.compile('[&<>"\n\r\t]')
_DTD = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


class XmlError(ValueError):
    """Text that is not one acceptable element; the message says why. `forbidden`: refused on principle (a
    DTD), not for a mistake."""

    def __init__(self, message: str, forbidden: bool = False) -> None:
        super().__init__(message)
        self.forbidden = forbidden


# Escaping runs on every attribute and text of every stanza: chained str.replace, each skipped when its character
# is absent, costs a fifth of str.translate with a table (which looks up every character).
def escape_text(text: str) -> str:
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:  # a parser turns a raw CR into LF (XML 1.0, 2.11): keep it as a reference
        text = text.replace("\r", "&#13;")
    return text


def escape_attr(text: str) -> str:
    if _ATTR_SPECIAL.search(text) is None:
        return text
    text = escape_text(text).replace('"', "&quot;")
    return text.replace("\n", "&#10;").replace("\r", "&#13;").replace("\t", "&#9;")


def has_invalid_chars(text: str) -> bool:
    if text.isascii() and text.isprintable():  # the common case, without the regular expression
        return False
    return _INVALID_CHARS.search(text) is not None


def split_tag(tag: str) -> tuple[str, str]:
    """'{ns}local' -> ('ns', 'local'); 'local' -> ('', 'local')."""
    if tag[:1] == "{":
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def serialize(elem: ET.Element, stanza_ns: str = NS_CLIENT, parent_ns: str | None = None) -> str:
    """Serialize an element; the stanza namespaces (client, component, none) are written as `stanza_ns`.

    With parent_ns=None the root declares its namespace, so the text stands alone (what bots receive);
    with parent_ns=NS_COMPONENT it inherits the component stream's default namespace (what the server gets).
    """
    out: list[str] = []
    _write(elem, stanza_ns, parent_ns, out, True)
    return "".join(out)


def _write(elem: ET.Element, stanza_ns: str, parent_ns: str | None, out: list[str], root: bool) -> None:
    tag = elem.tag
    if not isinstance(tag, str):  # comments and processing instructions are dropped
        if elem.tail and not root:
            out.append(escape_text(elem.tail))
        return
    ns, local = split_tag(tag)
    if ns in STANZA_NAMESPACES:
        ns = stanza_ns
    out.append("<" + local)
    if ns != parent_ns:
        out.append(f' xmlns="{escape_attr(ns)}"')
    prefixes = 0
    for name, value in elem.attrib.items():
        if name[:1] == "{":
            attr_ns, attr_local = split_tag(name)
            if attr_ns == NS_XML:
                name = "xml:" + attr_local
            else:
                prefixes += 1
                out.append(f' xmlns:a{prefixes}="{escape_attr(attr_ns)}"')
                name = f"a{prefixes}:{attr_local}"
        out.append(f' {name}="{escape_attr(value)}"')
    if elem.text is None and len(elem) == 0:
        out.append("/>")
    else:
        out.append(">")
        if elem.text:
            out.append(escape_text(elem.text))
        for child in elem:
            _write(child, stanza_ns, ns, out, False)
        out.append(f"</{local}>")
    if elem.tail and not root:
        out.append(escape_text(elem.tail))


def parse_one(text: str, default_ns: str = NS_COMPONENT) -> ET.Element:
    """Parse untrusted text that must be exactly one element (no namespace declared: `default_ns`), at most
    MAX_DEPTH levels deep.

    DTDs are refused before parsing; the text is then parsed inside a wrapper element, where a DOCTYPE (hence
    any entity declaration) would be a syntax error anyway and undefined entities are refused by expat; a
    leading XML declaration is tolerated.
    """
    if has_invalid_chars(text):
        raise XmlError("it contains characters that XML does not allow")
    body = text.lstrip()
    if body.startswith("<?xml"):
        end = body.find("?>")
        if end < 0:
            raise XmlError("the XML declaration is not closed")
        body = body[end + 2 :]
    if _DTD.search(body):
        raise XmlError("a DTD or entity declaration is not allowed", forbidden=True)
    parser = ET.XMLParser()
    try:
        parser.feed(f'<w xmlns="{default_ns}">')
        parser.feed(body)
        parser.feed("</w>")
        wrapper = parser.close()
    except ET.ParseError as exc:
        # expat counts from our wrapper; the column is close enough, the line is exact for one-line stanzas.
        raise XmlError(f"it is not well-formed XML ({str(exc).split(':')[0]})") from None
    children = list(wrapper)
    if len(children) != 1 or (wrapper.text or "").strip() or (children[0].tail or "").strip():
        raise XmlError("it must hold exactly one element")
    elem = children[0]
    if depth(elem) > MAX_DEPTH:
        # real stanzas nest a few levels; deep ones crash some servers' parsers (ejabberd 23.01 on 5000)
        raise XmlError(f"it is nested more than {MAX_DEPTH} levels deep")
    return elem


def depth(elem: ET.Element) -> int:
    """How many levels `elem` nests (itself included), without recursion."""
    deepest, level = 0, [(elem, 1)]
    while level:
        node, d = level.pop()
        deepest = max(deepest, d)
        level.extend((child, d + 1) for child in node)
    return deepest
