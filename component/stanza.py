"""Pure: the stanza model. Kinds and types, `Stanza` as plain values, JIDs, `XmppError`, and the one builder
that writes every stanza the component creates (bot replies, local answers, error replies).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal
from uuid import uuid4

from slixmpp.jid import JID, InvalidJID

from component.xml import (
    NS_STANZAS,
    STANZA_NAMESPACES,
    XmlError,
    escape_attr,
    escape_text,
    parse_one,
    serialize,
    split_tag,
)

Kind = Literal["message", "presence", "iq"]
KINDS: tuple[Kind, ...] = ("message", "presence", "iq")
# RFC 6120/6121 stanza types, per kind: anything else is not sent.
TYPES: dict[str, tuple[str | None, ...]] = {
    "message": (None, "chat", "error", "groupchat", "headline", "normal"),
    "presence": (None, "error", "probe", "subscribe", "subscribed", "unavailable", "unsubscribe", "unsubscribed"),
    "iq": ("error", "get", "result", "set"),
}
_KIND_OF: dict[str, Kind] = {kind: kind for kind in KINDS}
ErrorType = Literal["cancel", "modify", "auth", "wait"]


@dataclass(frozen=True, slots=True)
class XmppError:
    """An RFC 6120 stanza error: type, defined condition and optional human-readable text."""

    type: ErrorType
    condition: str
    text: str = ""


@dataclass(slots=True)  # not frozen: a frozen dataclass is built five times slower, on every stanza
class Stanza:
    """A stanza as plain values, and its XML text.

    Received stanzas carry `xml` as standalone text (jabber:client); stanzas to send carry it written for the
    component stream (its default namespace inherited).
    """

    kind: Kind
    to: str
    from_: str
    type: str | None
    id: str | None
    body: str | None
    xml: str


# -- JIDs ------------------------------------------------------------------------------------------------------
def bare(jid: str) -> str:
    """'echo@bot.example/r' -> 'echo@bot.example'."""
    return jid.partition("/")[0]


def conversation(stanza: Stanza) -> tuple[str, str]:
    """The conversation a stanza belongs to, within which replies keep the stanzas' order: (sender, receiver);
    a groupchat message's sender is its room (every occupant's message in one room is one conversation)."""
    if stanza.type == "groupchat":
        return (bare(stanza.from_), stanza.to)
    return (stanza.from_, stanza.to)


def split_jid(jid: str) -> tuple[str, str]:
    """(local part, domain) of a JID, as written: 'Echo@bot.example/r' -> ('Echo', 'bot.example')."""
    local, _, domain = bare(jid).rpartition("@")
    return local, domain


def normalise_jid(value: str) -> str:
    """A JID in its canonical form (RFC 7622: case and width folded, a trailing dot of the domain removed);
    ValueError saying why when it is not a valid JID. Domain checks compare canonical forms only: the server
    routes 'echo@Bot.Example.' to 'bot.example'."""
    try:
        jid = JID(value)
    except InvalidJID as exc:
        raise ValueError(str(exc)) from None
    domain = jid.domain.rstrip(".")  # slixmpp keeps the dot of some spellings (its cache): strip it ourselves
    if not domain:
        raise ValueError("it has no domain")
    local = f"{jid.user}@" if jid.user else ""
    resource = f"/{jid.resource}" if jid.resource else ""
    return f"{local}{domain}{resource}"


# -- building --------------------------------------------------------------------------------------------------
def new_id() -> str:
    """An unguessable stanza id (answers to it are matched by id)."""
    return uuid4().hex


def build(
    kind: Kind,
    to: str,
    from_: str,
    type_: str | None = None,
    id_: str | None = None,
    body: str | None = None,
    payload: str = "",
) -> Stanza:
    """A stanza to send, written for the component stream. `body` becomes a <body> (messages only);
    `payload` is child XML, already serialized."""
    head = f'<{kind} to="{escape_attr(to)}" from="{escape_attr(from_)}"'
    if type_ is not None:
        head += f' type="{escape_attr(type_)}"'
    if id_ is not None:
        head += f' id="{escape_attr(id_)}"'
    if body is not None:
        payload = f"<body>{escape_text(body)}</body>{payload}"
    xml = f"{head}>{payload}</{kind}>" if payload else head + "/>"
    return Stanza(kind, to, from_, type_, id_, body, xml)


def error_payload(error: XmppError) -> str:
    text = f'<text xmlns="{NS_STANZAS}">{escape_text(error.text)}</text>' if error.text else ""
    return f'<error type="{error.type}"><{error.condition} xmlns="{NS_STANZAS}"/>{text}</error>'


def error_reply(original: Stanza, error: XmppError) -> Stanza:
    """The error answer to `original`, from its recipient back to its sender."""
    return build(original.kind, original.from_, original.to, "error", original.id, payload=error_payload(error))


def as_kind(name: str) -> Kind | None:
    """'message' -> 'message' typed as a Kind; None for anything else."""
    return _KIND_OF.get(name)


# -- reading ---------------------------------------------------------------------------------------------------
def kind_of(elem: ET.Element) -> Kind | None:
    """The stanza kind of an element, or None when it is not a message, presence or iq of a stanza namespace."""
    ns, local = split_tag(elem.tag)
    return _KIND_OF.get(local) if ns in STANZA_NAMESPACES else None


def child_text(elem: ET.Element, name: str) -> str | None:
    """The text of the first child `name` in a stanza namespace (markup inside counts by its text, as clients
    show it), or None."""
    for child in elem:
        ns, local = split_tag(child.tag)
        if local == name and ns in STANZA_NAMESPACES:
            return (child.text or "") if len(child) == 0 else "".join(child.itertext())
    return None


def from_element(elem: ET.Element, kind: Kind) -> Stanza:
    """A received stanza as a `Stanza` with standalone XML."""
    get = elem.attrib.get
    return Stanza(
        kind=kind,
        to=get("to", ""),
        from_=get("from", ""),
        type=get("type"),
        id=get("id"),
        body=child_text(elem, "body") if kind == "message" else None,
        xml=serialize(elem),
    )


def parse(text: str) -> tuple[ET.Element, Kind]:
    """Untrusted text that must be exactly one message, presence or iq: its element and kind (XmlError)."""
    elem = parse_one(text)
    kind = kind_of(elem)
    if kind is None:
        raise XmlError(f"<{split_tag(elem.tag)[1]}> is not a message, presence or iq")
    return elem, kind
