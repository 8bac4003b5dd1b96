"""What each event publishes to RabbitMQ, as MongooseIM 6.5's mod_event_pusher_rabbit publishes it, the bots
playing its local users: the exchange, the routing key and the JSON body; and the bytes of a publish's content
(its properties and body), as AMQP frames. Pure: no I/O."""

from __future__ import annotations

import json.encoder
import struct
from typing import NamedTuple

from component.notify.config import Rabbit
from component.notify.events import Event
from component.stanza import bare, normalise_jid


class Publication(NamedTuple):
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

# Per JID as written: (its folded form as a JSON string, its folded bare JID), what every event of a user or bot
# needs; one dict look-up instead of folding, quoting and splitting for every event.
_USERS: dict[str, tuple[str, str]] = {}


def _user(jid: str) -> tuple[str, str]:
    found = _USERS.get(jid)
    if found is None:
        lowered = to_lower(jid)
        if len(_USERS) >= 4096:
            _USERS.clear()
        found = _USERS[jid] = (_quoted(lowered), bare(lowered))
    return found


def _chat(sender: str, recipient: str, message: str) -> bytes:
    """{"from_user_id": ..., "to_user_id": ..., "message": ...} as compact JSON (UTF-8, as MongooseIM's jiffy);
    `sender` and `recipient` already JSON strings."""
    return f'{{"from_user_id":{sender},"to_user_id":{recipient},"message":{_quoted(message)}}}'.encode()


class Mapping:
    """`publication` for one configuration: its exchanges, names and routing-key suffixes looked up once."""

    __slots__ = ("_chat", "_groupchat", "_presence")

    def __init__(self, rabbit: Rabbit) -> None:
        # (exchange name, routing key suffix of an event in, of an event out) per message type that is on
        self._chat = (c.name, f".{c.recv_topic}", f".{c.sent_topic}") if (c := rabbit.chat) else None
        self._groupchat = (g.name, f".{g.recv_topic}", f".{g.sent_topic}") if (g := rabbit.groupchat) else None
        self._presence = rabbit.presence.name if rabbit.presence is not None else None

    def __call__(self, event: Event) -> Publication | None:
        kind = event.kind
        if kind == "message":
            type_ = event.type
            exchange = self._chat if type_ == "chat" else self._groupchat if type_ == "groupchat" else None
            body = event.body
            if exchange is None or not body:
                return None
            sender, sender_bare = _user(event.from_)
            recipient, recipient_bare = _user(event.to)
            # in: a message a bot gets (MongooseIM's "received" for its user); out: one a bot sends
            key = recipient_bare + exchange[1] if event.direction == "in" else sender_bare + exchange[2]
            return Publication(exchange[0], key, _chat(sender, recipient, body))
        if kind == "presence" and event.direction == "in" and self._presence is not None:
            type_ = event.type
            if type_ not in ("available", "unavailable"):
                return None
            user, user_bare = _user(event.from_)
            present = "true" if type_ == "available" else "false"
            return Publication(self._presence, user_bare, f'{{"user_id":{user},"present":{present}}}'.encode())
        return None


def publication(event: Event, rabbit: Rabbit) -> Publication | None:
    """What MongooseIM's mod_event_pusher_rabbit publishes for `event`, the bots playing its local users: a chat or
    groupchat message with a body, to or from a bot, and a user's presence (available, unavailable) toward one.
    None for the rest (no body, other message types, other presence, iq) and for an exchange that is off.
    (`Mapping(rabbit)` is the same, for every event of one configuration.)"""
    return Mapping(rabbit)(event)


# The frames of a publish's content, written here rather than by pamqp: they have one fixed shape, and pamqp's
# general marshalling of the properties costs 5.5 µs per event where this costs 0.6 (test_rabbit_mapping.py checks
# them against pamqp's, byte for byte). The method frame (Basic.Publish) is pamqp's, marshalled once per key.
FRAME_HEADER, FRAME_BODY, FRAME_END = 2, 3, b"\xce"
_FRAME = struct.Struct(">BHI")  # frame type, channel, payload size
_HEADER = struct.Struct(">HHQH")  # class (60: basic), weight, body size, property flags
_TIMESTAMP = struct.Struct(">Q")
FLAGS = 0x8000 | 0x1000 | 0x0080 | 0x0040  # content_type, delivery_mode, message_id, timestamp
JSON = "application/json"
PERSISTENT = 2  # delivery_mode: a durable queue keeps the message across a broker restart
FIXED_PROPERTIES = bytes((len(JSON),)) + JSON.encode() + bytes((PERSISTENT,))  # content_type, delivery_mode


def content_header(channel: int, body_size: int, message_id: str, timestamp: int) -> bytes:
    """The content header frame: content_type application/json, delivery_mode 2, message_id, timestamp (s)."""
    mid = message_id.encode()
    payload = b"".join(
        (_HEADER.pack(60, 0, body_size, FLAGS), FIXED_PROPERTIES, bytes((len(mid),)), mid, _TIMESTAMP.pack(timestamp))
    )
    return _FRAME.pack(FRAME_HEADER, channel, len(payload)) + payload + FRAME_END


def body_frame(channel: int, chunk: bytes) -> bytes:
    """A content body frame (at most the connection's frame size, less 8 bytes)."""
    return _FRAME.pack(FRAME_BODY, channel, len(chunk)) + chunk + FRAME_END


# What the backend writes for a publish whose body fits in one frame (RabbitPublisher._write, tested to give the
# bytes of content_header + body_frame): the header frame up to its properties, packed with CONTENT_HEAD; the fixed
# properties; the message id (a short string); then, packed with CONTENT_TAIL, the timestamp and the frame end, and
# the body frame up to its payload; the body; the frame end.
CONTENT_HEAD = struct.Struct(">BHIHHQH")  # the header frame's: type, channel, size; class, weight, body size, flags
CONTENT_TAIL = struct.Struct(">QBBHI")  # its timestamp and frame end; the body frame's type, channel, size
HEADER_SIZE = _HEADER.size + len(FIXED_PROPERTIES) + _TIMESTAMP.size  # the header frame's payload, less the message id
