"""Pure: stanza <-> JSON, with Prosody mod_rest's field names and shapes (its jsonmap and schema), as one table.

Each row of FIELDS is one JSON field: the stanza kinds it belongs to, the child element it maps (namespace and
name), and its two converters. Requests to the bots, bot replies, the send API and the REST API all use it.
Beside the table: `lang` is the stanza's xml:lang; `join: true` (presence) is mod_rest's older spelling of
`muc: {}`; `oob_url` is the short form of `oob` (given both, they must agree). What the table does not know is
left out of the JSON (it stays in `stanza`), and refused in a reply (`unknown`).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from component.stanza import KINDS, Kind
from component.xml import NS_CLIENT, NS_STANZAS, NS_XML, STANZA_NAMESPACES, XmlError, has_invalid_chars, parse_one
from component.xml import serialize as serialize_xml

NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"
NS_XHTML = "http://www.w3.org/1999/xhtml"
NS_OOB = "jabber:x:oob"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_CORRECT = "urn:xmpp:message-correct:0"
NS_REACTIONS = "urn:xmpp:reactions:0"
NS_REPLY = "urn:xmpp:reply:0"
NS_MARKERS = "urn:xmpp:chat-markers:0"
NS_NICK = "http://jabber.org/protocol/nick"
NS_DELAY = "urn:xmpp:delay"
NS_MUC = "http://jabber.org/protocol/muc"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
NS_RECEIPTS = "urn:xmpp:receipts"
CHAT_STATES = ("active", "inactive", "gone", "composing", "paused")
SHOWS = ("away", "chat", "dnd", "xa")
ERROR_TYPES = ("auth", "cancel", "continue", "modify", "wait")
CONDITIONS = (  # RFC 6120 8.3.3
    "bad-request", "conflict", "feature-not-implemented", "forbidden", "gone", "internal-server-error",
    "item-not-found", "jid-malformed", "not-acceptable", "not-allowed", "not-authorized", "policy-violation",
    "recipient-unavailable", "redirect", "registration-required", "remote-server-not-found",
    "remote-server-timeout", "resource-constraint", "service-unavailable", "subscription-required",
    "undefined-condition", "unexpected-request",
)  # fmt: skip
TOP = ("to", "from", "kind", "type", "id", "stanza")  # the stanza's own attributes, and the raw XML
KIND_OF_TYPE: dict[str, Kind] = {  # mod_rest: a JSON object without `kind` is of the kind its `type` implies
    **dict.fromkeys(("get", "set", "result"), "iq"),
    **dict.fromkeys(("chat", "normal", "headline", "groupchat"), "message"),
    **dict.fromkeys(("available", "unavailable", "probe", "subscribe", "subscribed"), "presence"),
    **dict.fromkeys(("unsubscribe", "unsubscribed"), "presence"),
}

ToJson = Callable[[ET.Element], Any]  # the child element -> its JSON value (None: left out)
FromJson = Callable[[Any, str], "ET.Element | None"]  # (JSON value, field name) -> the element (None: nothing)


class MappingError(ValueError):
    """A JSON value the mapping cannot turn into XML; `field` names the top-level field."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class Field:
    """One JSON field: its kinds, its element ({ns}tag; tag None: any element of ns) and its converters."""

    name: str
    kinds: tuple[Kind, ...]
    ns: str
    tag: str | None
    to_json: ToJson
    from_json: FromJson


# -- checking JSON values -----------------------------------------------------------------------------------------
def shown(name: str, limit: int = 60) -> str:
    """A name taken from the input, safe in an error text: characters XML does not allow escaped, long names cut."""
    out = "".join(c if not has_invalid_chars(c) else f"\\u{ord(c):04x}" for c in name[:limit])
    return out + ("..." if len(name) > limit else "")


def _fail(where: str, message: str) -> MappingError:
    return MappingError(f"'{shown(where, 80)}' {message}", where.partition(".")[0].partition("[")[0])


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, f"must be a string, got {_type_name(value)}")
    if has_invalid_chars(value):
        raise _fail(where, "contains characters that XML does not allow")
    return value


def _object(value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _fail(where, f"must be an object, got {_type_name(value)}")
    for key in value:
        if key not in keys:
            raise _fail(f"{where}.{key}", f"is not known (known: {', '.join(keys)})")
    return {k: v for k, v in value.items() if v is not None}


def _array(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(where, f"must be an array, got {_type_name(value)}")
    return value


def _integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():  # form-encoded REST input is all strings
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(where, f"must be an integer from {low} to {high}, got {value!r}"[:200])
    return value


def _choice(value: Any, where: str, choices: tuple[str, ...]) -> str:
    if _string(value, where) not in choices:
        raise _fail(where, f"must be one of {', '.join(choices)}, got {value!r}"[:200])
    return value  # type: ignore[no-any-return]


def _true(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, f"must be true or false, got {_type_name(value)}")
    return value


# -- building and reading elements ---------------------------------------------------------------------------------
def element(ns: str, tag: str, attrib: Mapping[str, Any] | None = None, text: str | None = None) -> ET.Element:
    """An element; attributes whose value is None are left out."""
    elem = ET.Element(f"{{{ns}}}{tag}", {k: str(v) for k, v in (attrib or {}).items() if v is not None})
    elem.text = text or None
    return elem


def _sub(
    parent: ET.Element, ns: str, tag: str, attrib: Mapping[str, Any] | None = None, text: str | None = None
) -> None:
    parent.append(element(ns, tag, attrib, text))


def text_of(elem: ET.Element) -> str:
    """An element's text as clients show it (markup inside counts by its text)."""
    return (elem.text or "") if len(elem) == 0 else "".join(elem.itertext())


def _children(elem: ET.Element, ns: str, tag: str) -> list[ET.Element]:
    name = f"{{{ns}}}{tag}"
    return [child for child in elem if child.tag == name]


def _child_text(elem: ET.Element, ns: str, tag: str) -> str | None:
    found = elem.find(f"{{{ns}}}{tag}")
    return None if found is None else text_of(found)


def _attrs(obj: Mapping[str, Any], where: str, keys: tuple[str, ...]) -> dict[str, str]:
    """The strings of `obj` under `keys`, in that order (attributes are written in the table's order)."""
    return {key: _string(obj[key], f"{where}.{key}") for key in keys if key in obj}


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# -- converter families (each returns the pair of converters for a row) ---------------------------------------------
Pair = tuple[ToJson, FromJson]


def text(ns: str, tag: str, choices: tuple[str, ...] = ()) -> Pair:
    """A string: the element's text."""

    def from_json(value: Any, where: str) -> ET.Element:
        return element(ns, tag, text=_choice(value, where, choices) if choices else _string(value, where))

    return text_of, from_json


def integer(ns: str, tag: str, low: int, high: int) -> Pair:
    """An integer: the element's text."""

    def to_json(elem: ET.Element) -> int | None:
        try:
            return int((elem.text or "").strip())
        except ValueError:
            return None

    return to_json, lambda value, where: element(ns, tag, text=str(_integer(value, where, low, high)))


def attribute(ns: str, tag: str, name: str) -> Pair:
    """A string: one attribute of an empty element (mod_rest's x_single_attribute)."""
    return (lambda elem: elem.get(name)), (lambda value, where: element(ns, tag, {name: _string(value, where)}))


def flag(ns: str, tag: str) -> Pair:
    """true: the element is there (mod_rest's x_name_is_value); false: nothing."""
    return (lambda _elem: True), (lambda value, where: element(ns, tag) if _true(value, where) else None)


def named(ns: str, names: tuple[str, ...]) -> Pair:
    """A string: the name of the element, one of `names`."""

    def to_json(elem: ET.Element) -> str | None:
        name = elem.tag.rpartition("}")[2]
        return name if name in names else None

    return to_json, lambda value, where: element(ns, _choice(value, where, names))


def attributes(ns: str, tag: str, **types: type) -> Pair:
    """An object: the attributes of an empty element, strings or non-negative integers."""

    def to_json(elem: ET.Element) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, kind in types.items():
            value = elem.get(key)
            if value is not None and kind is int:
                out[key] = int(value) if value.isdigit() else None
            else:
                out[key] = value
        return _drop_none(out)

    def from_json(value: Any, where: str) -> ET.Element:
        obj = _object(value, where, tuple(types))  # written in the table's order, whatever the JSON's
        return element(ns, tag, {k: _attr_value(obj[k], f"{where}.{k}", kind) for k, kind in types.items() if k in obj})

    return to_json, from_json


def _attr_value(value: Any, where: str, kind: type) -> str:
    return str(_integer(value, where, 0, 2**31)) if kind is int else _string(value, where)


def fields_of(ns: str, tag: str, *keys: str, allow_true: bool = False) -> Pair:
    """An object of strings: the texts of the element's children (true, when allowed: the empty element)."""

    def to_json(elem: ET.Element) -> dict[str, str]:
        return _drop_none({key: _child_text(elem, ns, key) for key in keys})

    def from_json(value: Any, where: str) -> ET.Element:
        parent = element(ns, tag)
        if allow_true and value is True:
            return parent
        obj = _object(value, where, keys)
        for key in keys:  # in the table's order, whatever the JSON's
            if key in obj:
                _sub(parent, ns, key, text=_string(obj[key], f"{where}.{key}"))
        return parent

    return to_json, from_json


# -- the fields that need their own code -----------------------------------------------------------------------------
def _thread_json(elem: ET.Element) -> dict[str, str]:
    return _drop_none({"id": elem.text or None, "parent": elem.get("parent")})


def _thread_xml(value: Any, where: str) -> ET.Element:
    obj = _object(value, where, ("id", "parent"))
    parent = _string(obj["parent"], f"{where}.parent") if "parent" in obj else None
    return element(NS_CLIENT, "thread", {"parent": parent}, _string(obj["id"], f"{where}.id") if "id" in obj else None)


def _html_json(elem: ET.Element) -> str | None:
    body = elem.find(f"{{{NS_XHTML}}}body")
    return None if body is None else serialize_xml(body, parent_ns=NS_XHTML)


def _html_xml(value: Any, where: str) -> ET.Element:
    try:
        body = parse_one(_string(value, where), NS_XHTML)
    except XmlError as exc:
        raise _fail(where, f"must be one XHTML <body> element: {exc}") from None
    if body.tag != f"{{{NS_XHTML}}}body":
        raise _fail(where, "must be one XHTML <body> element")
    html = element(NS_XHTML_IM, "html")
    html.append(body)
    return html


def _oob_url_json(elem: ET.Element) -> str | None:
    return _child_text(elem, NS_OOB, "url")


def _oob_url_xml(value: Any, where: str) -> ET.Element:
    oob = element(NS_OOB, "x")
    _sub(oob, NS_OOB, "url", text=_string(value, where))
    return oob


def _reactions_json(elem: ET.Element) -> dict[str, Any]:
    reactions = [text_of(r) for r in _children(elem, NS_REACTIONS, "reaction")]
    return _drop_none({"id": elem.get("id"), "reactions": reactions})


def _reactions_xml(value: Any, where: str) -> ET.Element:
    obj = _object(value, where, ("id", "reactions"))
    out = element(NS_REACTIONS, "reactions", {"id": _string(obj["id"], f"{where}.id") if "id" in obj else None})
    for i, reaction in enumerate(_array(obj.get("reactions", []), f"{where}.reactions")):
        _sub(out, NS_REACTIONS, "reaction", text=_string(reaction, f"{where}.reactions[{i}]"))
    return out


HISTORY = {"maxchars": int, "maxstanzas": int, "seconds": int, "since": str}


def _muc_json(elem: ET.Element) -> dict[str, Any]:
    history = elem.find(f"{{{NS_MUC}}}history")
    return {} if history is None else {"history": attributes(NS_MUC, "history", **HISTORY)[0](history)}


def _muc_xml(value: Any, where: str) -> ET.Element:
    obj = _object(value, where, ("history",))
    muc = element(NS_MUC, "x")
    if "history" in obj:
        history = attributes(NS_MUC, "history", **HISTORY)[1](obj["history"], f"{where}.history")
        assert history is not None
        muc.append(history)
    return muc


def _error_json(elem: ET.Element) -> dict[str, str]:
    conditions = (c.tag.rpartition("}")[2] for c in elem if c.tag.startswith(f"{{{NS_STANZAS}}}"))
    condition = next((name for name in conditions if name != "text"), None)
    text_ = _child_text(elem, NS_STANZAS, "text")
    return _drop_none({"type": elem.get("type"), "condition": condition, "text": text_, "by": elem.get("by")})


def _error_xml(value: Any, where: str) -> ET.Element:
    obj = _object(value, where, ("type", "condition", "text", "by"))
    kind = _choice(obj.get("type", "cancel"), f"{where}.type", ERROR_TYPES)
    by = _string(obj["by"], f"{where}.by") if "by" in obj else None
    error = element(NS_CLIENT, "error", {"type": kind, "by": by})
    _sub(error, NS_STANZAS, _choice(obj.get("condition", "undefined-condition"), f"{where}.condition", CONDITIONS))
    if obj.get("text"):
        _sub(error, NS_STANZAS, "text", text=_string(obj["text"], f"{where}.text"))
    return error


# XEP-0004 data forms, whole (command forms) and as a map of values (disco extensions, command data).
MULTI = ("jid-multi", "list-multi")
FIELD_KEYS = ("var", "type", "label", "desc", "required", "value", "options")


def form_json(x: ET.Element) -> dict[str, Any]:
    fields = []
    for f in _children(x, NS_DATA, "field"):
        values = [v.text or "" for v in _children(f, NS_DATA, "value")]
        kind = f.get("type")
        value: Any = (
            values if kind in MULTI else "\n".join(values) if kind == "text-multi" else next(iter(values), None)
        )
        options = None
        if kind in ("list-single", "list-multi"):
            options = [
                _drop_none({"label": o.get("label"), "value": _child_text(o, NS_DATA, "value")})
                for o in _children(f, NS_DATA, "option")
            ]
        required = True if f.find(f"{{{NS_DATA}}}required") is not None else None
        desc = _child_text(f, NS_DATA, "desc")
        item = {"var": f.get("var"), "type": kind, "label": f.get("label"), "desc": desc, "required": required}
        fields.append(_drop_none({**item, "value": value, "options": options}))
    head = {"type": x.get("type"), "title": _child_text(x, NS_DATA, "title")}
    return _drop_none({**head, "instructions": _child_text(x, NS_DATA, "instructions"), "fields": fields})


def form_xml(value: Any, where: str) -> ET.Element:
    obj = _object(value, where, ("type", "title", "instructions", "fields"))
    x = element(NS_DATA, "x", {"type": _string(obj["type"], f"{where}.type") if "type" in obj else None})
    for key in ("title", "instructions"):
        if key in obj:
            _sub(x, NS_DATA, key, text=_string(obj[key], f"{where}.{key}"))
    for i, item in enumerate(_array(obj.get("fields", []), f"{where}.fields")):
        at = f"{where}.fields[{i}]"
        f = _object(item, at, FIELD_KEYS)
        field = element(NS_DATA, "field", _attrs(f, at, ("var", "type", "label")))
        if "desc" in f:
            _sub(field, NS_DATA, "desc", text=_string(f["desc"], f"{at}.desc"))
        if _true(f.get("required", False), f"{at}.required"):
            _sub(field, NS_DATA, "required")
        value = f.get("value", [])
        values = value.split("\n") if isinstance(value, str) and f.get("type") == "text-multi" else value
        for j, v in enumerate(values if isinstance(values, list) else [values]):
            _sub(field, NS_DATA, "value", text=_string(v, f"{at}.value[{j}]"))
        for j, option in enumerate(_array(f.get("options", []), f"{at}.options")):
            o = _object(option, f"{at}.options[{j}]", ("label", "value"))
            label = _string(o["label"], f"{at}.options[{j}].label") if "label" in o else None
            opt = element(NS_DATA, "option", {"label": label})
            if "value" in o:
                _sub(opt, NS_DATA, "value", text=_string(o["value"], f"{at}.options[{j}].value"))
            field.append(opt)
        x.append(field)
    return x


def formdata_json(x: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in _children(x, NS_DATA, "field"):
        var, kind = f.get("var"), f.get("type")
        if var is None:
            continue
        values = [v.text or "" for v in _children(f, NS_DATA, "value")]
        if kind in ("list-single", "list-multi") or kind is None:  # untyped: one value or many, who knows
            out[var] = values
        elif kind == "text-multi":
            out[var] = "\n".join(values)
        elif kind == "boolean":
            out[var] = next(iter(values), "") in ("1", "true")
        else:
            out[var] = next(iter(values), None)
    return out


def formdata_xml(value: Any, where: str, form_type: str | None, x_type: str) -> ET.Element:
    """A map of values -> a form: strings as text-single, booleans as boolean, arrays untyped (so that the form
    reads back as the same map); FORM_TYPE hidden."""
    if not isinstance(value, dict):
        raise _fail(where, f"must be an object, got {_type_name(value)}")
    x = element(NS_DATA, "x", {"type": x_type})
    items = ([("FORM_TYPE", form_type)] if form_type is not None else []) + list(value.items())
    for var, v in items:
        at = f"{where}.{var}"
        kind = "hidden" if var == "FORM_TYPE" and form_type is not None else None
        if isinstance(v, bool):
            kind, values = "boolean", ["1" if v else "0"]
        elif isinstance(v, str) or v is None:
            kind, values = kind or "text-single", [] if v is None else [v]
        else:
            values = _array(v, at)
        field = element(NS_DATA, "field", {"var": _string(var, at), "type": kind})
        for j, item in enumerate(values):
            _sub(field, NS_DATA, "value", text=_string(item, f"{at}[{j}]"))
        x.append(field)
    return x


def _disco_json(elem: ET.Element) -> Any:
    if len(elem) == 0:
        return elem.get("node") or True
    identities = [
        _drop_none({"category": i.get("category"), "type": i.get("type"), "name": i.get("name")})
        for i in _children(elem, NS_DISCO_INFO, "identity")
        if i.get("category") is not None and i.get("type") is not None
    ]
    features = [f.get("var") for f in _children(elem, NS_DISCO_INFO, "feature") if f.get("var") is not None]
    extensions = {}
    for x in _children(elem, NS_DATA, "x"):
        form = formdata_json(x)
        form_type = form.pop("FORM_TYPE", None)
        if isinstance(form_type, str):
            extensions[form_type] = form
    out = {"node": elem.get("node"), "identities": identities, "features": features}
    return _drop_none({**out, "extensions": extensions or None})


def _disco_xml(value: Any, where: str) -> ET.Element:
    if value is True or isinstance(value, str):
        return element(NS_DISCO_INFO, "query", {"node": None if value is True else _string(value, where)})
    obj = _object(value, where, ("node", "identities", "features", "extensions"))
    query = element(NS_DISCO_INFO, "query", {"node": _string(obj["node"], f"{where}.node") if "node" in obj else None})
    for i, item in enumerate(_array(obj.get("identities", []), f"{where}.identities")):
        at = f"{where}.identities[{i}]"
        identity = _object(item, at, ("category", "type", "name"))
        _sub(query, NS_DISCO_INFO, "identity", _attrs(identity, at, ("category", "type", "name")))
    for i, feature in enumerate(_array(obj.get("features", []), f"{where}.features")):
        _sub(query, NS_DISCO_INFO, "feature", {"var": _string(feature, f"{where}.features[{i}]")})
    extensions = obj.get("extensions", {})
    if not isinstance(extensions, dict):
        raise _fail(f"{where}.extensions", f"must be an object, got {_type_name(extensions)}")
    for form_type, ext in extensions.items():
        query.append(formdata_xml(ext, f"{where}.extensions.{form_type}", _string(form_type, where), "result"))
    return query


def _items_json(elem: ET.Element) -> Any:
    if len(elem) == 0:
        return elem.get("node") or True
    items = _children(elem, NS_DISCO_ITEMS, "item")
    return [_drop_none({"jid": i.get("jid"), "node": i.get("node"), "name": i.get("name")}) for i in items]


def _items_xml(value: Any, where: str) -> ET.Element:
    if value is True or isinstance(value, str):
        return element(NS_DISCO_ITEMS, "query", {"node": None if value is True else _string(value, where)})
    if isinstance(value, dict):  # {"node": ...}: a query of that node
        obj = _object(value, where, ("node",))
        return element(NS_DISCO_ITEMS, "query", {"node": _string(obj["node"], f"{where}.node") if obj else None})
    query = element(NS_DISCO_ITEMS, "query")
    for i, item in enumerate(_array(value, where)):
        at = f"{where}[{i}]"
        attrs = {"jid": item} if isinstance(item, str) else _object(item, at, ("jid", "node", "name"))
        _sub(query, NS_DISCO_ITEMS, "item", _attrs(attrs, at, ("jid", "node", "name")))
    return query


COMMAND_ACTIONS = ("next", "prev", "complete")


def _command_json(elem: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {k: elem.get(k) for k in ("action", "node", "sessionid", "status")}
    actions = elem.find(f"{{{NS_COMMANDS}}}actions")
    if actions is not None:
        out["actions"] = _drop_none({"execute": actions.get("execute")}) | {
            a.tag.rpartition("}")[2]: True for a in actions
        }
    note = elem.find(f"{{{NS_COMMANDS}}}note")
    if note is not None:
        out["note"] = _drop_none({"type": note.get("type"), "text": note.text or ""})
    form = elem.find(f"{{{NS_DATA}}}x")
    if form is not None:
        out["form"] = form_json(form)
    return _drop_none(out)


def _command_xml(value: Any, where: str) -> ET.Element:
    if isinstance(value, str):  # the node alone
        return element(NS_COMMANDS, "command", {"node": _string(value, where)})
    keys = ("action", "node", "sessionid", "status", "actions", "note", "form", "data")
    obj = _object(value, where, keys)
    command = element(NS_COMMANDS, "command", _attrs(obj, where, keys[:4]))
    if "actions" in obj:
        actions = _object(obj["actions"], f"{where}.actions", ("execute", *COMMAND_ACTIONS))
        execute = _string(actions["execute"], f"{where}.actions.execute") if "execute" in actions else None
        out = element(NS_COMMANDS, "actions", {"execute": execute})
        for action in COMMAND_ACTIONS:
            if _true(actions.get(action, False), f"{where}.actions.{action}"):
                _sub(out, NS_COMMANDS, action)
        command.append(out)
    if "note" in obj:
        note = _object(obj["note"], f"{where}.note", ("type", "text"))
        kind = _string(note["type"], f"{where}.note.type") if "type" in note else None
        _sub(command, NS_COMMANDS, "note", {"type": kind}, _string(note.get("text", ""), f"{where}.note.text"))
    if "form" in obj:
        command.append(form_xml(obj["form"], f"{where}.form"))
    elif "data" in obj:
        command.append(formdata_xml(obj["data"], f"{where}.data", None, "submit"))
    return command


# -- the table -------------------------------------------------------------------------------------------------------
M: tuple[Kind, ...] = ("message",)
P: tuple[Kind, ...] = ("presence",)
IQ: tuple[Kind, ...] = ("iq",)
FIELDS = (  # in this order in the XML we write
    Field("body", M, NS_CLIENT, "body", *text(NS_CLIENT, "body")),
    Field("subject", M, NS_CLIENT, "subject", *text(NS_CLIENT, "subject")),
    Field("thread", M, NS_CLIENT, "thread", _thread_json, _thread_xml),  # XEP-0201: {id, parent}
    Field("html", M, NS_XHTML_IM, "html", _html_json, _html_xml),  # XEP-0071: "<body>...</body>"
    Field("oob", M, NS_OOB, "x", *fields_of(NS_OOB, "x", "url", "desc")),  # XEP-0066
    Field("oob_url", M, NS_OOB, "x", _oob_url_json, _oob_url_xml),
    Field("state", M, NS_CHATSTATES, None, *named(NS_CHATSTATES, CHAT_STATES)),  # XEP-0085
    Field("replace", M, NS_CORRECT, "replace", *attribute(NS_CORRECT, "replace", "id")),  # XEP-0308
    Field("reactions", M, NS_REACTIONS, "reactions", _reactions_json, _reactions_xml),  # XEP-0444
    Field("reply", M, NS_REPLY, "reply", *attributes(NS_REPLY, "reply", id=str, to=str)),  # XEP-0461
    Field("markable", M, NS_MARKERS, "markable", *flag(NS_MARKERS, "markable")),  # XEP-0333
    Field("displayed", M, NS_MARKERS, "displayed", *attribute(NS_MARKERS, "displayed", "id")),
    Field("show", P, NS_CLIENT, "show", *text(NS_CLIENT, "show", SHOWS)),
    Field("status", P, NS_CLIENT, "status", *text(NS_CLIENT, "status")),
    Field("priority", P, NS_CLIENT, "priority", *integer(NS_CLIENT, "priority", -128, 127)),
    Field("muc", P, NS_MUC, "x", _muc_json, _muc_xml),  # XEP-0045 join: {} or {history: {...}}
    Field("ping", IQ, NS_PING, "ping", *flag(NS_PING, "ping")),  # XEP-0199
    Field(
        "version", IQ, NS_VERSION, "query", *fields_of(NS_VERSION, "query", "name", "version", "os", allow_true=True)
    ),
    Field("disco", IQ, NS_DISCO_INFO, "query", _disco_json, _disco_xml),  # XEP-0030 (+ XEP-0128 extensions)
    Field("items", IQ, NS_DISCO_ITEMS, "query", _items_json, _items_xml),
    Field("command", IQ, NS_COMMANDS, "command", _command_json, _command_xml),  # XEP-0050
    Field("nick", KINDS, NS_NICK, "nick", *text(NS_NICK, "nick")),  # XEP-0172
    Field("delay", KINDS, NS_DELAY, "delay", *attribute(NS_DELAY, "delay", "stamp")),  # XEP-0203
    Field("error", KINDS, NS_CLIENT, "error", _error_json, _error_xml),  # {type, condition, text, by}
)
BY_NAME = {field.name: field for field in FIELDS}
NAMES = frozenset((*TOP, *BY_NAME, "lang", "join"))  # every name a JSON object may use
_BY_ELEMENT: dict[tuple[str, str, str], list[Field]] = {}
for _field in FIELDS:
    for _kind in _field.kinds:
        _BY_ELEMENT.setdefault((_kind, _field.ns, _field.tag or "*"), []).append(_field)
IMPLIED_KIND: dict[str, Kind] = {f.name: f.kinds[0] for f in FIELDS if len(f.kinds) == 1} | {"join": "presence"}
LANG = f"{{{NS_XML}}}lang"


# -- stanza -> JSON --------------------------------------------------------------------------------------------------
def fields_json(elem: ET.Element, kind: Kind) -> dict[str, Any]:
    """The mapped fields of a stanza (not its to, from, kind, type or id), in table order; unknown children are
    left out. The first element of a field counts."""
    found: dict[str, Any] = {}
    for child in elem:
        if not isinstance(child.tag, str):
            continue
        ns, _, tag = child.tag[1:].rpartition("}") if child.tag[:1] == "{" else ("", "", child.tag)
        if ns in STANZA_NAMESPACES:
            ns = NS_CLIENT
        for field in _BY_ELEMENT.get((kind, ns, tag)) or _BY_ELEMENT.get((kind, ns, "*")) or ():
            if field.name not in found and (value := field.to_json(child)) is not None:
                found[field.name] = value
    out = {name: found[name] for name in BY_NAME if name in found}
    if (lang := elem.get(LANG)) is not None:
        out["lang"] = lang
    return out


def stanza_json(elem: ET.Element, kind: Kind) -> dict[str, Any]:
    """A whole stanza as mod_rest writes it: kind, type (`available` for a presence without one), id, to, from
    and the mapped fields."""
    stanza_type = elem.get("type") or ("available" if kind == "presence" else None)
    head = {"kind": kind, "type": stanza_type, "id": elem.get("id"), "to": elem.get("to"), "from": elem.get("from")}
    return _drop_none(head) | fields_json(elem, kind)


# -- JSON -> stanza --------------------------------------------------------------------------------------------------
def unknown(obj: Mapping[str, Any]) -> str | None:
    """The first name of `obj` that is not a field we know, or None."""
    return next((name for name in obj if name not in NAMES), None)


def implied_kind(obj: Mapping[str, Any]) -> Kind | None:
    """mod_rest's rule for an object without `kind`: the kind its `type` implies, else the kind of its first field
    (in table order) that belongs to one kind only."""
    stanza_type = obj.get("type")
    if isinstance(stanza_type, str) and stanza_type in KIND_OF_TYPE:
        return KIND_OF_TYPE[stanza_type]
    return next((kind for name, kind in IMPLIED_KIND.items() if obj.get(name) is not None), None)


def children_xml(kind: Kind, obj: Mapping[str, Any]) -> list[ET.Element]:
    """The child elements for the mapped fields of `obj` (the names of TOP and `lang` are the caller's), in table
    order. MappingError names the field that cannot be written or does not belong to `kind`."""
    values = {name: value for name, value in obj.items() if value is not None and name not in TOP}
    values.pop("lang", None)
    if "join" in values:
        if kind != "presence":
            raise MappingError(f"'join' is not a field of {a_kind(kind)}", "join")
        if _true(values.pop("join"), "join") and "muc" not in values:
            values["muc"] = {}
    if "oob_url" in values and "oob" in values:
        url = values["oob"].get("url") if isinstance(values["oob"], dict) else None
        if url != values.pop("oob_url"):
            raise MappingError("'oob_url' and 'oob.url' differ (oob_url is the short form of oob: give one)", "oob_url")
    out = []
    for field in FIELDS:
        if field.name in values:
            if kind not in field.kinds:
                raise MappingError(f"'{field.name}' is not a field of {a_kind(kind)}", field.name)
            child = field.from_json(values[field.name], field.name)
            if child is not None:
                out.append(child)
    return out


def a_kind(kind: Kind) -> str:
    return f"an {kind}" if kind == "iq" else f"a {kind}"


def lang_of(obj: Mapping[str, Any]) -> str | None:
    value = obj.get("lang")
    return None if value is None else _string(value, "lang")
