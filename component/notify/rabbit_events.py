"""What each event publishes to RabbitMQ, as MongooseIM 6.5's mod_event_pusher_rabbit publishes it, the bots
playing its local users: the exchange, the routing key and the JSON body; and the bytes of a publish's content
(its properties and body), as AMQP frames. Pure: no I/O."""

from __future__ import annotations

import json.encoder
import struct
from dataclasses import dataclass

from component.notify.config import Rabbit
from component.notify.events import Event
from component.stanza import bare, normalise_jid


@dataclass(frozen=True, slots=True)
class Publication:
    exchange: str
    routing_key: str
    body: bytes  # JSON, UTF-8


_LOWERED: dict[str, str] = {}  # the same few JIDs come back with every event: fold each once


def to_lower(jid: str) -> str:
    """MongooseIM's jid:to_lower: local part and domain case-folded (stringprep), the resource as it is."""
    found = _LOWERED.get(jid)
    if found is None:
        try:
            found = normalise_jid(jid)
        except ValueError:  # not a JID the server would route; fold what can be folded
            address, slash, resource = jid.partition("/")
            found = address.lower() + slash + resource
        if len(_LOWERED) >= 4096:
            _LOWERED.clear()
        _LOWERED[jid] = found
    return found


_quoted = json.encoder.encode_basestring  # a JSON string, non-ASCII as is: json.dumps's own, without its overhead


def _chat(sender: str, recipient: str, message: str) -> bytes:
    """{"from_user_id": ..., "to_user_id": ..., "message": ...} as compact JSON (UTF-8, as MongooseIM's jiffy)."""
    return (
        f'{{"from_user_id":{_quoted(sender)},"to_user_id":{_quoted(recipient)},"message":{_quoted(message)}}}'.encode()
    )


def _presence(user: str, present: bool) -> bytes:
    return f'{{"user_id":{_quoted(user)},"present":{"true" if present else "false"}}}'.encode()


def publication(event: Event, rabbit: Rabbit) -> Publication | None:
    """What MongooseIM's mod_event_pusher_rabbit publishes for `event`, the bots playing its local users: a chat or
    groupchat message with a body, to or from a bot, and a user's presence (available, unavailable) toward one.
    None for the rest (no body, other message types, other presence, iq) and for an exchange that is off."""
    if event.kind == "message":
        exchange = rabbit.chat if event.type == "chat" else rabbit.groupchat if event.type == "groupchat" else None
        if exchange is None or not event.body:
            return None
        sender, recipient = to_lower(event.from_), to_lower(event.to)
        # in: a message a bot gets (MongooseIM's "received" for its user); out: one a bot sends
        key = (
            f"{bare(recipient)}.{exchange.recv_topic}"
            if event.direction == "in"
            else f"{bare(sender)}.{exchange.sent_topic}"
        )
        return Publication(exchange.name, key, _chat(sender, recipient, event.body))
    if event.kind == "presence" and event.direction == "in" and rabbit.presence is not None:
        if event.type not in ("available", "unavailable"):
            return None
        user = to_lower(event.from_)
        return Publication(rabbit.presence.name, bare(user), _presence(user, event.type == "available"))
    return None


# The frames of a publish's content, written here rather than by pamqp: they have one fixed shape, and pamqp's
# general marshalling of the properties costs 5.5 µs per event where this costs 0.6 (test_rabbit_mapping.py checks
# them against pamqp's, byte for byte). The method frame (Basic.Publish) is pamqp's, marshalled once per key.
FRAME_HEADER, FRAME_BODY, FRAME_END = 2, 3, b"\xce"
_FRAME = struct.Struct(">BHI")  # frame type, channel, payload size
_HEADER = struct.Struct(">HHQH")  # class (60: basic), weight, body size, property flags
_TIMESTAMP = struct.Struct(">Q")
_FLAGS = 0x8000 | 0x1000 | 0x0080 | 0x0040  # content_type, delivery_mode, message_id, timestamp
JSON = "application/json"
PERSISTENT = 2  # delivery_mode: a durable queue keeps the message across a broker restart
_FIXED = bytes((len(JSON),)) + JSON.encode() + bytes((PERSISTENT,))  # content_type, delivery_mode


def content_header(channel: int, body_size: int, message_id: str, timestamp: int) -> bytes:
    """The content header frame: content_type application/json, delivery_mode 2, message_id, timestamp (s)."""
    mid = message_id.encode()
    payload = b"".join(
        (_HEADER.pack(60, 0, body_size, _FLAGS), _FIXED, bytes((len(mid),)), mid, _TIMESTAMP.pack(timestamp))
    )
    return _FRAME.pack(FRAME_HEADER, channel, len(payload)) + payload + FRAME_END


def body_frame(channel: int, chunk: bytes) -> bytes:
    """A content body frame (at most the connection's frame size, less 8 bytes)."""
    return _FRAME.pack(FRAME_BODY, channel, len(chunk)) + chunk + FRAME_END
