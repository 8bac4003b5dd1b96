"""What each event publishes to RabbitMQ (component/notify/rabbit_events.py): one case per rule, the exact JSON;
and the content frames, byte for byte as pamqp writes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pamqp.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp.body import ContentBody
from pamqp.commands import Basic
from pamqp.header import ContentHeader

from component.config import from_dict
from component.notify.config import Rabbit
from component.notify.events import Event
from component.notify.rabbit_events import Publication, body_frame, content_header, publication, to_lower

BASE = {"component": {"jid": "bot.example.com", "secret": "s"}, "bot": {"url": "http://127.0.0.1:8080/"}}
ALL: dict[str, Any] = {"presence_exchange": {}, "chat_msg_exchange": {}, "groupchat_msg_exchange": {}}


def rabbit(**exchanges: Any) -> Rabbit:
    raw = {
        **BASE,
        "outgoing_pools": {"rabbit": {"event_pusher": {}}},
        "event_pusher": {"rabbit": exchanges or ALL},
    }
    found = from_dict(raw, env={}).rabbit
    assert found is not None
    return found


def event(
    direction: str = "in",
    kind: str = "message",
    type_: str = "chat",
    body: str | None = "Hi, Bob!",
    from_: str = "Alice@Example.COM/Phone",
    to: str = "Echo@Bot.Example.com",
) -> Event:
    return Event(direction, kind, type_, from_, to, body, "<message/>", "bot.example.com")  # type: ignore[arg-type]


ALICE, ECHO = "alice@example.com/Phone", "echo@bot.example.com"  # as MongooseIM's jid:to_lower writes them


@pytest.mark.parametrize(
    ("given", "config", "expected"),
    [
        pytest.param(
            event(),
            rabbit(),
            Publication(
                "chat_msg",
                "echo@bot.example.com.chat_msg_recv",
                b'{"from_user_id":"alice@example.com/Phone","to_user_id":"echo@bot.example.com","message":"Hi, Bob!"}',
            ),
            id="chat-to-a-bot-is-recv-on-the-bot",
        ),
        pytest.param(
            event("out", from_="Echo@bot.example.com", to="alice@example.com/Phone", body="Did you say Hi?"),
            rabbit(),
            Publication(
                "chat_msg",
                "echo@bot.example.com.chat_msg_sent",
                b'{"from_user_id":"echo@bot.example.com","to_user_id":"alice@example.com/Phone",'
                b'"message":"Did you say Hi?"}',
            ),
            id="chat-from-a-bot-is-sent-on-the-bot",
        ),
        pytest.param(
            event(from_="echo@bot.example.com/r1", to="alice@example.com", direction="out"),
            rabbit(),
            Publication(
                "chat_msg",
                "echo@bot.example.com.chat_msg_sent",
                b'{"from_user_id":"echo@bot.example.com/r1","to_user_id":"alice@example.com","message":"Hi, Bob!"}',
            ),
            id="routing-key-is-the-bare-jid",
        ),
        pytest.param(
            event(type_="groupchat", to="Room@bot.example.com"),
            rabbit(),
            Publication(
                "groupchat_msg",
                "room@bot.example.com.groupchat_msg_recv",
                b'{"from_user_id":"alice@example.com/Phone","to_user_id":"room@bot.example.com","message":"Hi, Bob!"}',
            ),
            id="groupchat-to-a-bot",
        ),
        pytest.param(
            event("out", type_="groupchat", from_="room@bot.example.com", to="alice@example.com/Phone"),
            rabbit(),
            Publication(
                "groupchat_msg",
                "room@bot.example.com.groupchat_msg_sent",
                b'{"from_user_id":"room@bot.example.com","to_user_id":"alice@example.com/Phone","message":"Hi, Bob!"}',
            ),
            id="groupchat-from-a-bot",
        ),
        pytest.param(
            event(kind="presence", type_="available", body=None),
            rabbit(),
            Publication("presence", "alice@example.com", b'{"user_id":"alice@example.com/Phone","present":true}'),
            id="presence-available",
        ),
        pytest.param(
            event(kind="presence", type_="unavailable", body=None),
            rabbit(),
            Publication("presence", "alice@example.com", b'{"user_id":"alice@example.com/Phone","present":false}'),
            id="presence-unavailable",
        ),
        pytest.param(
            event(body='Grüße, "Bob" \u2603'),
            rabbit(),
            Publication(
                "chat_msg",
                "echo@bot.example.com.chat_msg_recv",
                '{"from_user_id":"alice@example.com/Phone","to_user_id":"echo@bot.example.com",'
                '"message":"Grüße, \\"Bob\\" \u2603"}'.encode(),
            ),
            id="utf-8-json-unescaped-as-jiffy",
        ),
        pytest.param(
            event(),
            rabbit(chat_msg_exchange={"name": "chats", "recv_topic": "in", "sent_topic": "out"}),
            Publication(
                "chats",
                "echo@bot.example.com.in",
                b'{"from_user_id":"alice@example.com/Phone","to_user_id":"echo@bot.example.com","message":"Hi, Bob!"}',
            ),
            id="names-and-topics-from-the-config",
        ),
        pytest.param(event(body=None), rabbit(), None, id="no-body-nothing"),
        pytest.param(event(body=""), rabbit(), None, id="empty-body-nothing"),
        pytest.param(event(type_="normal"), rabbit(), None, id="normal-nothing"),
        pytest.param(event(type_="headline"), rabbit(), None, id="headline-nothing"),
        pytest.param(event(type_="error"), rabbit(), None, id="error-nothing"),
        pytest.param(event(kind="iq", type_="get", body=None), rabbit(), None, id="iq-nothing"),
        pytest.param(event(kind="presence", type_="subscribe", body=None), rabbit(), None, id="subscribe-nothing"),
        pytest.param(event(kind="presence", type_="probe", body=None), rabbit(), None, id="probe-nothing"),
        pytest.param(
            event("out", kind="presence", type_="available", body=None), rabbit(), None, id="a-bots-presence-nothing"
        ),
        pytest.param(event(), rabbit(presence_exchange={}), None, id="chat-exchange-off"),
        pytest.param(event(type_="groupchat"), rabbit(chat_msg_exchange={}), None, id="groupchat-exchange-off"),
        pytest.param(
            event(kind="presence", type_="available", body=None),
            rabbit(chat_msg_exchange={}),
            None,
            id="presence-exchange-off",
        ),
    ],
)
def test_publication(given: Event, config: Rabbit, expected: Publication | None) -> None:
    assert publication(given, config) == expected


@pytest.mark.parametrize(
    ("jid", "lower"),
    [
        pytest.param("Alice@Example.COM/Phone", "alice@example.com/Phone", id="resource-kept"),
        pytest.param("ECHO@bot.example.com", "echo@bot.example.com", id="bare"),
        pytest.param("bot.example.com", "bot.example.com", id="domain"),
        pytest.param("\uff21lice@example.com", "alice@example.com", id="width-folded"),
        pytest.param("Bad Name@Example.com/R", "bad name@example.com/R", id="invalid-still-folded"),
    ],
)
def test_to_lower(jid: str, lower: str) -> None:
    assert to_lower(jid) == lower


# --- The content frames, against pamqp's ------------------------------------------------------------------------


@settings(max_examples=300)
@given(
    channel=st.integers(1, 65535),
    body_size=st.integers(0, 2**63 - 1),
    message_id=st.text(st.characters(codec="utf-8"), min_size=1, max_size=60),
    timestamp=st.integers(0, 253_402_300_799),  # up to the end of year 9999, what datetime can hold
)
def test_content_header_is_pamqps_byte_for_byte(channel: int, body_size: int, message_id: str, timestamp: int) -> None:
    properties = Basic.Properties(
        content_type="application/json",
        delivery_mode=2,
        message_id=message_id,
        timestamp=datetime.fromtimestamp(timestamp, UTC),
    )
    expected = pamqp.frame.marshal(ContentHeader(0, body_size, properties), channel)
    assert content_header(channel, body_size, message_id, timestamp) == expected


@given(channel=st.integers(1, 65535), chunk=st.binary(max_size=300))
def test_body_frame_is_pamqps_byte_for_byte(channel: int, chunk: bytes) -> None:
    assert body_frame(channel, chunk) == pamqp.frame.marshal(ContentBody(chunk), channel)
