"""Pure: the wire format of the bot flow and the send API. A received stanza -> the JSON POSTed to the bot; a
bot's 2xx reply (or a send API request) -> the stanzas to send, checked and completed.

The request is mod_component_http's (to, from, kind, stanza, body), plus type and id.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from component import error_map
from component.stanza import TYPES, Stanza, as_kind, build, child_text, error_reply, new_id, normalise_jid
from component.stanza import parse as parse_stanza
from component.xml import NS_COMPONENT, XmlError, has_invalid_chars, serialize, split_tag

JSON = "application/json"
XMPP_XML = "application/xmpp+xml"
REPLY_FIELDS = ("to", "from", "kind", "stanza", "body", "type", "id")
MAX_STANZAS = 100  # per bot reply or send API request
_json_str = json.encoder.encode_basestring  # the C string encoder; non-ASCII kept as is, like ensure_ascii=False


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


def request_json(stanza: Stanza) -> bytes:
    """The JSON object POSTed to the bot for a received stanza (written by hand: it is on every stanza's path)."""
    parts = [f'{{"to":{_json_str(stanza.to)},"from":{_json_str(stanza.from_)},"kind":"{stanza.kind}"']
    if stanza.body is not None:
        parts.append(f',"body":{_json_str(stanza.body)}')
    if stanza.type is not None:
        parts.append(f',"type":{_json_str(stanza.type)}')
    if stanza.id is not None:
        parts.append(f',"id":{_json_str(stanza.id)}')
    parts.append(f',"stanza":{_json_str(stanza.xml)}}}')
    return "".join(parts).encode()


def media_type(content_type: str | None) -> str:
    """'Application/JSON; charset=utf-8' -> 'application/json'."""
    return (content_type or "").partition(";")[0].strip().lower()


def reply_stanzas(
    original: Stanza, domain: str, status: int, content_type: str | None, body: bytes, max_stanza_bytes: int
) -> list[Stanza]:
    """The stanzas to send for a bot's 2xx reply to `original`, in order; `ReplyError` when it is unusable.

    Only a 200 carries stanzas (an empty body, JSON null and an empty array ask for nothing); an iq get/set the
    reply leaves unanswered gets an error, since an iq must never go unanswered.
    """
    replies = _parse_200(original, domain, content_type, body) if status == 200 else []
    _check_sizes(replies, max_stanza_bytes)
    if _asks_answer(original) and not any(
        r.kind == "iq" and r.type in ("result", "error") and r.id == original.id for r in replies
    ):
        replies.append(error_reply(original, error_map.IQ_UNANSWERED))
    return replies


def api_stanzas(domain: str, media: str, body: bytes, max_stanza_bytes: int) -> list[Stanza]:
    """The stanzas a send API request asks for: JSON objects in the shape of a bot reply (`to` required, `from`
    defaulting to the domain), or one raw stanza when `media` is application/xmpp+xml."""
    origin = Stanza("message", domain, "", None, None, None, "")
    if media == XMPP_XML:
        stanzas = [_raw_reply(origin, domain, _decode(body))]
    else:
        value = _json(body, "the")
        if value == []:
            raise ReplyError("the array is empty")
        stanzas = _objects(origin, domain, value, require_to=True)
    _check_sizes(stanzas, max_stanza_bytes)
    return stanzas


def _parse_200(original: Stanza, domain: str, content_type: str | None, body: bytes) -> list[Stanza]:
    if not body.strip():
        return []
    media = media_type(content_type)
    if media == XMPP_XML:
        return [_raw_reply(original, domain, _decode(body))]
    if media != JSON:
        shown = content_type or "none"
        raise ReplyError(f"its Content-Type is {shown!r}; expected {JSON} or {XMPP_XML}")
    value = _json(body, "its")
    if value is None:
        return []
    return _objects(original, domain, value, require_to=False)


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
        if require_to and item.get("stanza") is None and not item.get("to"):
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


def _object_reply(original: Stanza, domain: str, obj: dict[str, Any]) -> Stanza:
    fields = dict.fromkeys(REPLY_FIELDS)
    for name in obj.keys() & fields.keys():  # only the fields present are checked (most replies carry one)
        fields[name] = _string_field(obj, name)
    if fields["stanza"] is not None:
        return _raw_reply(original, domain, fields["stanza"])
    kind = as_kind(fields["kind"] or "message")
    if kind is None:
        raise ReplyError(f"'kind' must be message, presence or iq, got {fields['kind']!r}", "kind")
    to = check_to(fields["to"] or original.from_, domain)
    from_ = check_jid("from", fields["from"] or original.to, domain)
    stanza_type, stanza_id, body = fields["type"], fields["id"], fields["body"]
    if kind != "iq" and stanza_type not in TYPES[kind]:
        raise ReplyError(f"'type' {stanza_type!r} is not a {kind} type", "type")
    if kind == "message":
        stanza_type = stanza_type or "chat"
    elif kind == "iq":
        if _asks_answer(original):
            stanza_type = stanza_type or "result"
            stanza_id = stanza_id or original.id
        if stanza_type not in ("get", "set", "result", "error"):
            raise ReplyError("an iq needs 'type' get, set, result or error", "type")
        stanza_id = stanza_id or new_id()
    return build(kind, to, from_, stanza_type, stanza_id, body if kind == "message" else None)


def _raw_reply(original: Stanza, domain: str, text: str) -> Stanza:
    """A `stanza` reply (or an application/xmpp+xml body): checked, completed, rewritten for the stream."""
    try:
        elem, kind = parse_stanza(text)
    except XmlError as exc:
        raise ReplyError(f"'stanza' is unusable: {exc}", "stanza", exc.forbidden) from None
    attrib = elem.attrib
    attrib["to"] = check_to(attrib.get("to") or original.from_, domain)
    attrib["from"] = check_jid("from", attrib.get("from") or original.to, domain)
    if kind == "iq" and _asks_answer(original):
        attrib.setdefault("type", "result")
        attrib.setdefault("id", original.id or "")
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
