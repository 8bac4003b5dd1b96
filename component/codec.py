"""Pure: the wire format of the bot flow and the send API. A received stanza -> the JSON POSTed to the bot; a
bot's 2xx reply (or a send API request) -> the stanzas to send, checked and completed.

The request is mod_component_http's (to, from, kind, stanza, body), plus type and id, plus the fields of
mod_rest's mapping (component/mapping.py) the stanza has. Replies follow mod_component_http's rules, with
mod_rest's where they differ (text/plain, 202/204, receipts, groupchat, errors).
"""

from __future__ import annotations

import codecs
import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import unescape

from component import error_map, mapping
from component.mapping import NS_RECEIPTS, TOP, MappingError
from component.rooms.protocol import NS_CONFERENCE, NS_MUC_USER, Invite, read_invite, resource, subject_only
from component.stanza import TYPES, Stanza, as_kind, bare, build, child_text, error_reply, new_id, normalise_jid
from component.stanza import parse as parse_stanza
from component.xml import (
    NS_COMPONENT,
    XmlError,
    escape_attr,
    has_invalid_chars,
    serialize,
    split_tag,
)

JSON = "application/json"
XMPP_XML = "application/xmpp+xml"
TEXT = "text/plain"
STRUCTURED = ("/json", "+json", "/xml", "+xml")  # media types a bot means to be read: refused, not ignored
TOP_NAMES = frozenset(TOP)
PLAIN = frozenset((*TOP, "body"))  # a reply with these names only is built the quick way
IQ_PAYLOADS = tuple(f.name for f in mapping.FIELDS if f.kinds == ("iq",))  # an iq with one of these is a query
MAX_STANZAS = 100  # per bot reply or send API request
_json_str = json.encoder.encode_basestring  # the C string encoder; non-ASCII kept as is, like ensure_ascii=False
_ATTR_ENTITIES = {"&quot;": '"', "&#10;": "\n", "&#13;": "\r", "&#9;": "\t"}


class ReplyError(ValueError):
    """A bot reply (or a send API request) that cannot be turned into stanzas; the message says why, for the
    sender and the log. `field` names the culprit when one does; `forbidden` marks what is refused on principle
    (a `from` outside the domain, a DTD) rather than malformed."""

    def __init__(self, message: str, field: str | None = None, forbidden: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.forbidden = forbidden


class StanzaTooLarge(ReplyError):
    """A stanza over component.max_stanza_bytes: the server would close the stream on it."""


@dataclass(slots=True)
class RoomStanza(Stanza):
    """A stanza from a room the bot sits in (or an invitation to one), with what the room manager knows beside it:
    `event` (groupchat, private, subject or invite), the room, the sender's nick and real JID (when the room shows
    it), and for an invitation whether the bot is joining. A stanza without this context (e.g. read back from a
    queue) is given what its own XML tells."""

    event: str = "groupchat"
    room: str = ""
    nick: str | None = None
    real_jid: str | None = None
    invite: Invite | None = None
    joining: bool = False


def room_stanza(
    stanza: Stanza,
    event: str,
    room: str,
    nick: str | None = None,
    real_jid: str | None = None,
    invite: Invite | None = None,
    joining: bool = False,
) -> RoomStanza:
    """`stanza` with its room context."""
    s = stanza
    return RoomStanza(s.kind, s.to, s.from_, s.type, s.id, s.body, s.xml, event, room, nick, real_jid, invite, joining)


def _room_context(stanza: Stanza) -> RoomStanza | None:
    """The room context of a stanza: its own, or what its XML tells (a groupchat message, a private message with
    MUC's <x/>, an invitation)."""
    if isinstance(stanza, RoomStanza):
        return stanza
    if stanza.kind != "message":
        return None
    if stanza.type == "groupchat":
        elem = _element(stanza) if "<subject" in stanza.xml else None
        event = "subject" if elem is not None and subject_only(elem) else "groupchat"
        return room_stanza(stanza, event, bare(stanza.from_), nick=resource(stanza.from_) or None)
    if NS_CONFERENCE in stanza.xml or NS_MUC_USER in stanza.xml:
        elem = _element(stanza)
        if elem is None:
            return None
        invite = read_invite(elem, stanza.from_)
        if invite is not None:
            return room_stanza(stanza, "invite", invite.room, invite=invite)
        if resource(stanza.from_) and elem.find(f"{{{NS_MUC_USER}}}x") is not None:
            return room_stanza(stanza, "private", bare(stanza.from_), nick=resource(stanza.from_))
    return None


def _room_json(room: RoomStanza) -> str:
    """The room fields of the JSON POSTed to the bot."""
    out = {"event": room.event, "room": room.room}
    if room.nick is not None:
        out["nick"] = room.nick
    if room.real_jid is not None:
        out["real_jid"] = room.real_jid
    invite = room.invite
    if invite is not None:
        out |= {"inviter": invite.inviter, "invite": invite.how}
        if invite.reason is not None:
            out["reason"] = invite.reason
        if invite.password is not None:
            out["password"] = invite.password
        out["joining"] = room.joining  # type: ignore[assignment]
    return "".join(f",{_json_str(name)}:{_json_value(value)}" for name, value in out.items())


class Replies(list[Stanza]):
    """The stanzas to send for a bot's 2xx reply, in order. `ignored` is the media type of a 200 whose content
    is not read (neither JSON, XML nor text, e.g. text/html), '' otherwise."""

    ignored = ""


def request_json(stanza: Stanza) -> bytes:
    """The JSON object POSTed to the bot for a received stanza (written by hand: it is on every stanza's path).

    A stanza with no child but a <body> (most chat messages) skips the mapping table: its text is scanned for
    children and xml:lang instead of parsed."""
    parts = [f'{{"to":{_json_str(stanza.to)},"from":{_json_str(stanza.from_)},"kind":"{stanza.kind}"']
    if stanza.body is not None:
        parts.append(f',"body":{_json_str(stanza.body)}')
    stanza_type = stanza.type
    if stanza_type is None and stanza.kind == "presence":
        stanza_type = "available"  # mod_rest's name for a presence without a type
    if stanza_type is not None:
        parts.append(f',"type":{_json_str(stanza_type)}')
    if stanza.id is not None:
        parts.append(f',"id":{_json_str(stanza.id)}')
    room = _room_context(stanza) if stanza.kind == "message" else None
    if room is not None:
        parts.append(_room_json(room))
    xml = stanza.xml
    tags = xml.count("<")
    if tags <= 2 or (tags == 4 and xml.endswith("</body></message>")):  # no child, or a lone <body>
        if "xml:lang" in xml and (lang := _lang_attribute(xml)) is not None:
            parts.append(f',"lang":{_json_str(lang)}')
    else:
        for name, value in _fields(stanza).items():
            if name != "body" and (room is None or name != "nick"):  # in a room, `nick` is the occupant's
                parts.append(f",{_json_str(name)}:{_json_value(value)}")
    parts.append(f',"stanza":{_json_str(xml)}}}')
    return "".join(parts).encode()


def _lang_attribute(xml: str) -> str | None:
    """The xml:lang of the root, from text our serializer wrote."""
    at = xml.find(' xml:lang="', 0, xml.find(">"))
    if at < 0:
        return None
    value = xml[at + 11 : xml.index('"', at + 11)]
    return unescape(value, _ATTR_ENTITIES) if "&" in value else value


def _json_value(value: Any) -> str:
    if isinstance(value, str):  # most fields: as cheap as the hand-written head
        return _json_str(value)
    if value is True:
        return "true"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _element(stanza: Stanza) -> ET.Element | None:
    """A received stanza's element again, from its XML text. That text is our serializer's, of an element the
    server sent (well-formed, no DTD, only characters XML allows): expat alone reads it, without parse_one's
    checks for untrusted text."""
    try:
        return ET.fromstring(stanza.xml)
    except ET.ParseError:  # not ours (a hand-made Stanza): nothing more to tell
        return None


def _fields(stanza: Stanza) -> dict[str, Any]:
    elem = _element(stanza)
    return {} if elem is None else mapping.fields_json(elem, stanza.kind)


def answer_json(stanza: Stanza) -> dict[str, Any]:
    """A received stanza (the answer to an iq of the REST API) as mod_rest's JSON object."""
    elem = _element(stanza)
    if elem is None:
        elem = ET.Element(stanza.kind, {k: v for k, v in (("to", stanza.to), ("from", stanza.from_)) if v})
    return mapping.stanza_json(elem, stanza.kind)


def media_type(content_type: str | None) -> str:
    """'Application/JSON; charset=utf-8' -> 'application/json'."""
    return (content_type or "").partition(";")[0].strip().lower()


def reply_stanzas(
    original: Stanza, domain: str, status: int, content_type: str | None, body: bytes, max_stanza_bytes: int
) -> Replies:
    """The stanzas to send for a bot's 2xx reply to `original`, in order; `ReplyError` when it is unusable.

    Only a 200 carries stanzas (an empty body, JSON null and an empty array ask for nothing). An iq get/set the
    reply leaves unanswered gets an empty result after 202 or 204 ("accepted, nothing to say"), an error
    otherwise, since an iq must never go unanswered. A message that asks for a receipt gets one, unless the
    reply carries one.
    """
    replies = _parse_200(original, domain, content_type, body) if status == 200 else Replies()
    if replies:
        _check_sizes(replies, max_stanza_bytes)
    if _asks_answer(original) and not any(
        r.kind == "iq" and r.type in ("result", "error") and r.id == original.id for r in replies
    ):
        if status in (202, 204):
            replies.append(build("iq", original.from_, original.to, "result", original.id))
        else:
            replies.append(error_reply(original, error_map.IQ_UNANSWERED))
    receipt = _receipt(original) if NS_RECEIPTS in original.xml else None  # rare: most are decided unparsed
    if receipt is not None and not any(f'<received xmlns="{NS_RECEIPTS}"' in r.xml for r in replies):
        replies.insert(0, receipt)
    return replies


def api_stanzas(domain: str, media: str, body: bytes, max_stanza_bytes: int) -> list[Stanza]:
    """The stanzas a send API request asks for: JSON objects in the shape of a bot reply (`to` required, `from`
    defaulting to the domain), or one raw stanza when `media` is application/xmpp+xml."""
    if media == XMPP_XML:
        return [send_stanza(domain, _decode(body), max_stanza_bytes)]
    value = _json(body, "the")
    if value == []:
        raise ReplyError("the array is empty")
    stanzas = _objects(_origin(domain), domain, value, require_to=True)
    _check_sizes(stanzas, max_stanza_bytes)
    return stanzas


def send_stanza(domain: str, value: dict[str, Any] | str, max_stanza_bytes: int) -> Stanza:
    """One stanza to send from the component's domain: a JSON object in the shape of a bot reply (`to`
    required), or raw XML text."""
    origin = _origin(domain)
    if isinstance(value, str):
        stanza = _raw_reply(origin, domain, value)
    else:
        [stanza] = _objects(origin, domain, value, require_to=True)
    _check_sizes([stanza], max_stanza_bytes)
    return stanza


def _origin(domain: str) -> Stanza:
    """What the send API's stanzas answer: nothing, from no one, to the domain (so `from` defaults to it)."""
    return Stanza("message", domain, "", None, None, None, "")


def _parse_200(original: Stanza, domain: str, content_type: str | None, body: bytes) -> Replies:
    if not body.strip():
        return Replies()
    media = media_type(content_type)
    if media == XMPP_XML:
        return Replies([_raw_reply(original, domain, _decode(body))])
    if media == TEXT:  # mod_rest: the text is the body of a message to the sender
        return Replies([_object_reply(original, domain, {"body": _decode_text(body, content_type or "")})])
    if media != JSON:
        if not media or media.endswith(STRUCTURED):
            shown = content_type or "none"
            raise ReplyError(f"its Content-Type is {shown!r}; expected {JSON}, {XMPP_XML} or {TEXT}")
        ignored = Replies()  # e.g. text/html from a script that printed something: nothing to send
        ignored.ignored = media
        return ignored
    value = _json(body, "its")
    if value is None:
        return Replies()
    return Replies(_objects(original, domain, value, require_to=False))


def _check_sizes(stanzas: Sequence[Stanza], limit: int) -> None:
    """A stanza over `limit` bytes would make the server close the stream: refuse it here."""
    for stanza in stanzas:
        if len(stanza.xml) * 4 > limit and len(size := stanza.xml.encode()) > limit:
            raise StanzaTooLarge(f"a {stanza.kind} of {len(size)} bytes is over component.max_stanza_bytes ({limit})")


def _objects(original: Stanza, domain: str, value: Any, require_to: bool) -> list[Stanza]:
    """A JSON object, or an array of them, in the shape of a bot reply -> stanzas."""
    items: Sequence[Any] = value if isinstance(value, list) else [value]
    if len(items) > MAX_STANZAS:
        raise ReplyError(f"it asks for {len(items)} stanzas; at most {MAX_STANZAS} at once")
    out = []
    for index, item in enumerate(items):
        where = f"item {index}: " if isinstance(value, list) else ""
        if not isinstance(item, dict):
            raise ReplyError(f"{where}expected a JSON object, got {type(item).__name__}")
        if require_to and item.get("stanza") is None and not item.get("to") and not item.get("room"):
            raise ReplyError(f"{where}'to' is required", "to")
        try:
            out.append(_object_reply(original, domain, item))
        except ReplyError as exc:
            raise ReplyError(f"{where}{exc}", exc.field, exc.forbidden) from None
    return out


def _json(body: bytes, whose: str) -> Any:
    """JSON from UTF-8 bytes only (RFC 8259), a byte-order mark tolerated."""
    try:
        return json.loads((body[3:] if body[:3] == b"\xef\xbb\xbf" else body).decode())
    except RecursionError:
        raise ReplyError(f"{whose} JSON is nested too deeply") from None
    except UnicodeDecodeError:
        raise ReplyError(f"{whose} body is not valid UTF-8") from None
    except ValueError as exc:
        raise ReplyError(f"{whose} body is not valid JSON ({exc})") from None


def _decode(body: bytes) -> str:
    try:
        return body.decode()
    except UnicodeDecodeError:
        raise ReplyError("its body is not valid UTF-8") from None


def _decode_text(body: bytes, content_type: str) -> str:
    """A text/plain body in its charset (UTF-8 unless the Content-Type names another)."""
    charset = "utf-8"
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"') or charset
    try:
        return body.decode(codecs.lookup(charset).name)
    except LookupError:
        raise ReplyError(f"its charset {mapping.shown(charset)!r} is unknown") from None
    except UnicodeDecodeError:
        raise ReplyError(f"its body is not valid {mapping.shown(charset)}") from None


def _string_field(obj: dict[str, Any], name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ReplyError(f"'{name}' must be a string, got {type(value).__name__}", name)
    if has_invalid_chars(value):
        raise ReplyError(f"'{name}' contains characters that XML does not allow", name)
    return value


def check_jid(name: str, value: str, domain: str | None = None) -> str:
    """A valid JID, in canonical form; with `domain`, one of that domain only."""
    if not value:
        raise ReplyError(f"'{name}' is required", name)
    try:
        jid = normalise_jid(value)
    except ValueError as exc:
        raise ReplyError(f"'{name}' is not a valid JID: {value!r} ({exc})", name) from None
    if domain is not None and jid.partition("/")[0].rpartition("@")[2] != domain:
        raise ReplyError(f"'{name}' must be a JID of {domain}, got {value!r}", name, forbidden=True)
    return jid


def check_to(value: str, domain: str) -> str:
    """A valid recipient outside the component's own domain: a stanza sent there would come straight back to
    the bots, and an echo bot would answer itself forever. Compared in canonical form ('Bot.Example.' is
    'bot.example' to the server)."""
    to = check_jid("to", value)
    if to.partition("/")[0].rpartition("@")[2] == domain:
        raise ReplyError(f"'to' must not be a JID of {domain} itself (it would loop back to the bots)", "to")
    return to


def _asks_answer(original: Stanza) -> bool:
    return original.kind == "iq" and original.type in ("get", "set")


def _receipt(original: Stanza) -> Stanza | None:
    """The XEP-0184 receipt for a message that requests one (never in a groupchat), or None."""
    if original.kind != "message" or not original.id or original.type in ("groupchat", "error"):
        return None
    elem = _element(original)
    if elem is None or elem.find(f"{{{NS_RECEIPTS}}}request") is None:
        return None
    payload = f'<received xmlns="{NS_RECEIPTS}" id="{escape_attr(original.id)}"/>'
    stanza_type = original.type if original.type in ("chat", "normal", "headline") else None
    return build("message", original.from_, original.to, stanza_type, new_id(), payload=payload)


def _room_reply(obj: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """A reply naming a room (`room`: a room's bare JID): the object without it, and the room."""
    if "room" not in obj:
        return obj, None
    rest = {name: value for name, value in obj.items() if name != "room"}
    room = _string_field(obj, "room")
    if room is None:
        return rest, None
    if rest.get("to") is not None or rest.get("stanza") is not None:
        raise ReplyError("'room' names the recipient: give 'room' or 'to' (or 'stanza'), not both", "room")
    if rest.get("kind") not in (None, "message") or rest.get("type") not in (None, "groupchat"):
        raise ReplyError("'room' sends a message of type groupchat: leave 'kind' and 'type' out", "room")
    jid = check_jid("room", room)
    if "/" in jid or "@" not in jid:
        raise ReplyError(f"'room' must be a room's bare JID, such as 'dev@conference.example.com': {room!r}", "room")
    return rest | {"to": jid, "type": "groupchat"}, jid


def _object_reply(original: Stanza, domain: str, obj: dict[str, Any]) -> Stanza:
    obj, _ = _room_reply(obj)
    keys = obj.keys()
    if not keys <= mapping.NAMES:
        shown = mapping.shown(mapping.unknown(obj) or "")
        raise ReplyError(f"unknown field '{shown}' (what the JSON mapping cannot say goes in 'stanza')", shown)
    top: dict[str, str | None] = dict.fromkeys(TOP)
    for name in keys & TOP_NAMES:  # only the names present are checked (most replies carry one or two)
        top[name] = _string_field(obj, name)
    if top["stanza"] is not None:
        return _raw_reply(original, domain, top["stanza"])
    plain = keys <= PLAIN
    error = None if plain else obj.get("error")
    stanza_type, stanza_id = top["type"], top["id"]
    if top["kind"] is not None:
        kind = as_kind(top["kind"])
        if kind is None:
            raise ReplyError(f"'kind' must be message, presence or iq, got {top['kind']!r}", "kind")
    elif plain:  # mod_rest: the kind the type implies; else a body's, a message
        kind = mapping.KIND_OF_TYPE.get(stanza_type or "", "message")
    else:  # mod_rest: implied by the type or the fields; an error answers in the kind it answers
        kind = mapping.implied_kind(obj) or (original.kind if error is not None else "message")
    if error is not None:  # an error stanza (mod_rest: it carries the id of what it answers)
        if stanza_type not in (None, "error"):
            raise ReplyError(f"'error' goes with 'type' error, got {stanza_type!r}", "type")
        stanza_type, stanza_id = "error", stanza_id or original.id
    if kind == "presence" and stanza_type == "available":
        stanza_type = None
    to_default = original.from_
    if original.kind == "message" and original.type != "groupchat":
        context = _room_context(original)  # two substring checks unless the message is MUC's
        if context is not None and context.invite is not None and context.invite.inviter:
            to_default = context.invite.inviter  # an invitation is answered to whoever invited, not to the room
    if kind == "message":
        stanza_type = stanza_type or ("groupchat" if original.type == "groupchat" else "chat")
        if stanza_type == "groupchat" and original.type == "groupchat":  # to the room, not to the occupant
            to_default = bare(original.from_)
    to = check_to(top["to"] or to_default, domain)
    from_ = check_jid("from", top["from"] or original.to, domain)
    if kind != "iq" and stanza_type not in TYPES[kind]:
        raise ReplyError(f"'type' {stanza_type!r} is not a {kind} type", "type")
    if kind == "iq":
        if _asks_answer(original):
            stanza_type = stanza_type or "result"
            stanza_id = stanza_id or original.id
        elif stanza_type is None and any(obj.get(n) is not None for n in IQ_PAYLOADS):
            stanza_type = "set" if obj.get("command") is not None else "get"  # mod_rest's defaults
        if stanza_type not in ("get", "set", "result", "error"):
            raise ReplyError("an iq needs 'type' get, set, result or error", "type")
        stanza_id = stanza_id or new_id()
    if plain:  # the common reply, {"body": ...}: no table walk, the builder's text as before
        body = _string_field(obj, "body")
        if body is not None and kind != "message":
            raise ReplyError(f"'body' is not a field of {mapping.a_kind(kind)}", "body")
        return build(kind, to, from_, stanza_type, stanza_id, body)
    try:
        children = mapping.children_xml(kind, obj)
        lang = mapping.lang_of(obj)
    except MappingError as exc:
        raise ReplyError(str(exc), exc.field) from None
    attrib = {"to": to, "from": from_}
    if stanza_type is not None:
        attrib["type"] = stanza_type
    if stanza_id is not None:
        attrib["id"] = stanza_id
    if lang is not None:
        attrib[mapping.LANG] = lang
    root = ET.Element(f"{{{NS_COMPONENT}}}{kind}", attrib)
    root.extend(children)
    body = obj.get("body") if kind == "message" else None
    return Stanza(kind, to, from_, stanza_type, stanza_id, body, serialize(root, NS_COMPONENT, NS_COMPONENT))


def _raw_reply(original: Stanza, domain: str, text: str) -> Stanza:
    """A `stanza` reply (or an application/xmpp+xml body): checked, completed, rewritten for the stream."""
    try:
        elem, kind = parse_stanza(text)
    except XmlError as exc:
        raise ReplyError(f"'stanza' is unusable: {exc}", "stanza", exc.forbidden) from None
    attrib = elem.attrib
    to_default = original.from_
    if kind == "message" and attrib.get("type") == "groupchat" and original.type == "groupchat":
        to_default = bare(original.from_)  # to the room, not to the occupant
    attrib["to"] = check_to(attrib.get("to") or to_default, domain)
    attrib["from"] = check_jid("from", attrib.get("from") or original.to, domain)
    if kind == "iq" and _asks_answer(original):
        attrib.setdefault("type", "result")
        attrib.setdefault("id", original.id or "")
    if attrib.get("type") == "error" and not attrib.get("id") and original.id:
        attrib["id"] = original.id  # an error carries the id of what it answers
    if kind == "iq" and attrib.get("type") in ("get", "set") and not attrib.get("id"):
        attrib["id"] = new_id()
    if kind != "iq" and attrib.get("type") not in TYPES[kind]:
        raise ReplyError(f"'type' {attrib.get('type')!r} is not a {kind} type", "type")
    if any(len(child) and split_tag(child.tag)[1] in ("body", "subject") for child in elem):
        # RFC 6121: text only; servers differ on what they do with markup in there (dropped or kept)
        raise ReplyError("'stanza' is unusable: a <body> or <subject> holds elements; they hold text only", "stanza")
    if kind == "iq" and (attrib.get("type") not in ("get", "set", "result", "error") or not attrib.get("id")):
        raise ReplyError("an iq needs 'type' get, set, result or error, and an 'id'", "stanza")
    return Stanza(
        kind=kind,
        to=attrib["to"],
        from_=attrib["from"],
        type=attrib.get("type"),
        id=attrib.get("id"),
        body=child_text(elem, "body") if kind == "message" else None,
        xml=serialize(elem, NS_COMPONENT, NS_COMPONENT),
    )
