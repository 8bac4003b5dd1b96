"""The default callbacks, as MongooseIM's mod_event_pusher_http_defaults: one form-encoded POST for each
incoming chat message with a non-empty body (author, server, receiver, message)."""

from __future__ import annotations

from urllib.parse import urlencode

from slixmpp.jid import JID, InvalidJID

from component.notify.events import Event
from component.stanza import split_jid


def should_make_req(event: Event) -> bool:
    return event.direction == "in" and event.kind == "message" and event.type == "chat" and bool(event.body)


def prepare_headers(event: Event) -> dict[str, str]:
    return {"Content-Type": "application/x-www-form-urlencoded"}


def _parts(jid: str) -> tuple[str, str]:
    """(local part, domain), stringprep-normalised (so lower case)."""
    try:
        parsed = JID(jid)
    except InvalidJID:
        local, domain = split_jid(jid)
        return local.lower(), domain.lower()
    return parsed.user, parsed.domain


def prepare_body(event: Event) -> str:
    author, server = _parts(event.from_)
    receiver, _ = _parts(event.to)
    return urlencode({"author": author, "server": server, "receiver": receiver, "message": event.body or ""})
