"""ComponentStream without a server: batched writes through a fake transport, elements handed over as values,
unreadable stanzas refused with exact XML; and the reconnect backoff schedule."""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from slixmpp import ComponentXMPP

from component import error_map
from component import xmpp as xmpp_module
from component.stanza import Stanza
from component.xmpp import DEFAULT_BACKOFF, Backoff, ComponentStream

ACCEPT = "{jabber:component:accept}"
USER = "alice@localhost/phone"


class FakeTransport(asyncio.Transport):
    """Records every write; never closes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))


class Harness:
    """A ComponentStream built inside the running loop, with recording callbacks and a fake transport."""

    def __init__(self, up: bool = True) -> None:
        self.stanzas: list[tuple[Stanza, ET.Element]] = []
        self.refused: list[Stanza] = []
        self.stream = ComponentStream(
            "bot.localhost",
            "secret",
            "127.0.0.1",
            9,
            lambda stanza, elem: self.stanzas.append((stanza, elem)),
            self.refused.append,
        )
        self.transport = FakeTransport()
        self.stream.transport = self.transport
        self.stream.up = up


def element(kind: str, attrs: dict[str, str], body: str | None = None) -> ET.Element:
    elem = ET.Element(ACCEPT + kind, attrs)
    if body is not None:
        ET.SubElement(elem, ACCEPT + "body").text = body
    return elem


CHAT = {"to": "echo@bot.localhost", "from": USER, "type": "chat", "id": "m1"}


# -- sending ---------------------------------------------------------------------------------------------------
async def test_sends_of_one_loop_turn_leave_in_one_write_in_order() -> None:
    h = Harness()
    assert h.stream.send_text('<message to="a@x" from="echo@bot.localhost"><body>1</body></message>') is True
    assert h.stream.send_text('<presence to="a@x" from="echo@bot.localhost"/>') is True
    assert h.stream.send_text('<message to="a@x" from="echo@bot.localhost"><body>caf\u00e9</body></message>') is True
    assert h.transport.writes == []  # nothing before the loop turns
    await asyncio.sleep(0)
    assert h.transport.writes == [
        b'<message to="a@x" from="echo@bot.localhost"><body>1</body></message>'
        b'<presence to="a@x" from="echo@bot.localhost"/>'
        b'<message to="a@x" from="echo@bot.localhost"><body>caf\xc3\xa9</body></message>'
    ]


async def test_each_loop_turn_is_its_own_write() -> None:
    h = Harness()
    h.stream.send_text("<presence/>")
    await asyncio.sleep(0)
    h.stream.send_text("<message/>")
    h.stream.send_text("<iq/>")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert h.transport.writes == [b"<presence/>", b"<message/><iq/>"]


async def test_send_text_returns_false_when_down_and_writes_nothing() -> None:
    h = Harness(up=False)
    assert h.stream.send_text("<message/>") is False
    await asyncio.sleep(0)
    assert h.transport.writes == []


async def test_a_write_after_the_transport_is_gone_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    h.stream.send_text("<message/>")
    h.stream.transport = None
    with caplog.at_level(logging.WARNING, logger="component.xmpp"):
        await asyncio.sleep(0)
    assert [record.getMessage() for record in caplog.records] == [
        "the stream closed before 10 characters of stanzas could be written"
    ]
    h.stream.transport = h.transport
    h.stream.send_text("<iq/>")
    await asyncio.sleep(0)
    assert h.transport.writes == [b"<iq/>"]  # what was lost is not written again


# -- receiving -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("elem", "expected"),
    [
        pytest.param(
            element("message", CHAT, "hi & bye"),
            Stanza(
                "message",
                "echo@bot.localhost",
                USER,
                "chat",
                "m1",
                "hi & bye",
                '<message xmlns="jabber:client" to="echo@bot.localhost" from="alice@localhost/phone" type="chat" '
                'id="m1"><body>hi &amp; bye</body></message>',
            ),
            id="message",
        ),
        pytest.param(
            element("presence", {"to": "echo@bot.localhost", "from": USER, "type": "subscribe"}),
            Stanza(
                "presence",
                "echo@bot.localhost",
                USER,
                "subscribe",
                None,
                None,
                '<presence xmlns="jabber:client" to="echo@bot.localhost" from="alice@localhost/phone" '
                'type="subscribe"/>',
            ),
            id="presence",
        ),
        pytest.param(
            element("iq", {"to": "bot.localhost", "from": USER, "type": "get", "id": "q1"}),
            Stanza(
                "iq",
                "bot.localhost",
                USER,
                "get",
                "q1",
                None,
                '<iq xmlns="jabber:client" to="bot.localhost" from="alice@localhost/phone" type="get" id="q1"/>',
            ),
            id="iq",
        ),
    ],
)
async def test_a_stanza_reaches_on_stanza_as_a_value(elem: ET.Element, expected: Stanza) -> None:
    h = Harness()
    h.stream._spawn_event(elem)
    assert h.stanzas == [(expected, elem)]
    assert h.stanzas[0][1] is elem
    assert h.refused == []


@pytest.mark.parametrize(
    "tag",
    [
        pytest.param(ACCEPT + "handshake", id="handshake"),
        pytest.param("{http://etherx.jabber.org/streams}error", id="stream-error"),
        pytest.param("{urn:other}message", id="message-of-a-foreign-namespace"),
    ],
)
async def test_other_elements_go_to_slixmpp(monkeypatch: pytest.MonkeyPatch, tag: str) -> None:
    seen: list[ET.Element] = []

    def record(_self: object, xml: ET.Element) -> None:
        seen.append(xml)

    monkeypatch.setattr(ComponentXMPP, "_spawn_event", record)
    h = Harness()
    elem = ET.Element(tag)
    h.stream._spawn_event(elem)
    assert seen == [elem]
    assert (h.stanzas, h.refused) == ([], [])


def raising(exc: BaseException) -> Callable[..., Any]:
    def from_element(*_args: object) -> Stanza:
        raise exc

    return from_element


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        pytest.param(RecursionError(), "The stanza is nested too deeply", id="recursion-error-too-deep"),
        pytest.param(ValueError("odd"), "The stanza could not be read", id="other-error-unreadable"),
    ],
)
async def test_an_unreadable_stanza_is_refused(monkeypatch: pytest.MonkeyPatch, exc: BaseException, text: str) -> None:
    monkeypatch.setattr(xmpp_module, "from_element", raising(exc))
    h = Harness()
    h.stream._spawn_event(element("message", CHAT, "hi"))
    assert h.stanzas == []
    assert [stanza.xml for stanza in h.refused] == [
        '<message to="alice@localhost/phone" from="echo@bot.localhost" type="error" id="m1">'
        '<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
        f'<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">{text}</text></error></message>'
    ]


def test_the_refusal_texts_are_the_error_maps() -> None:
    assert (error_map.TOO_DEEP.text, error_map.UNREADABLE.text) == (
        "The stanza is nested too deeply",
        "The stanza could not be read",
    )


async def test_an_unreadable_stanza_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(xmpp_module, "from_element", raising(ValueError("odd")))
    h = Harness()
    with caplog.at_level(logging.ERROR, logger="component.xmpp"):
        h.stream._spawn_event(element("message", CHAT))
    assert [(record.getMessage(), record.exc_info is not None) for record in caplog.records] == [
        ("could not read a stanza from the server", True)
    ]


async def test_a_refused_iq_without_id_is_answered_without_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(xmpp_module, "from_element", raising(ValueError("odd")))
    h = Harness()
    h.stream._spawn_event(element("iq", {"to": "bot.localhost", "from": USER, "type": "get"}))
    assert [stanza.xml for stanza in h.refused] == [
        '<iq to="alice@localhost/phone" from="bot.localhost" type="error">'
        '<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
        '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">The stanza could not be read</text></error></iq>'
    ]


async def test_a_really_deep_stanza_is_refused_as_too_deep() -> None:
    h = Harness()
    elem = element("message", CHAT)
    node = elem
    for _ in range(5000):
        node = ET.SubElement(node, "{urn:deep}x")
    h.stream._spawn_event(elem)
    assert h.stanzas == []
    assert [stanza.xml for stanza in h.refused] == [
        '<message to="alice@localhost/phone" from="echo@bot.localhost" type="error" id="m1">'
        '<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
        '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">The stanza is nested too deeply</text></error></message>'
    ]


@pytest.mark.parametrize(
    "attrs",
    [
        pytest.param({"to": "echo@bot.localhost", "from": USER, "type": "error", "id": "m1"}, id="type-error"),
        pytest.param({"from": USER, "type": "chat"}, id="no-to"),
        pytest.param({"to": "echo@bot.localhost", "type": "chat"}, id="no-from"),
        pytest.param({"to": "", "from": USER}, id="empty-to"),
        pytest.param({"to": "echo@bot.localhost", "from": ""}, id="empty-from"),
    ],
)
@pytest.mark.parametrize(
    "exc",
    [pytest.param(RecursionError(), id="too-deep"), pytest.param(ValueError("odd"), id="unreadable")],
)
async def test_an_unreadable_stanza_is_not_answered(
    monkeypatch: pytest.MonkeyPatch, attrs: dict[str, str], exc: BaseException
) -> None:
    monkeypatch.setattr(xmpp_module, "from_element", raising(exc))
    h = Harness()
    h.stream._spawn_event(element("message", attrs))
    assert (h.stanzas, h.refused) == ([], [])


# -- backoff ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("failures", "delay"),
    [
        pytest.param(0, 0.5, id="0"),
        pytest.param(1, 0.5, id="1-first"),
        pytest.param(2, 1.0, id="2-doubles"),
        pytest.param(3, 2.0, id="3"),
        pytest.param(4, 4.0, id="4"),
        pytest.param(5, 8.0, id="5"),
        pytest.param(6, 16.0, id="6"),
        pytest.param(7, 30.0, id="7-capped-at-most"),
        pytest.param(8, 30.0, id="8-stays-at-most"),
        pytest.param(100, 30.0, id="100"),
        pytest.param(1025, 30.0, id="1025-after-8-hours-of-failures"),
        pytest.param(100_000, 30.0, id="100000"),
    ],
)
def test_default_backoff_schedule(failures: int, delay: float) -> None:
    assert DEFAULT_BACKOFF.after(failures) == delay


@pytest.mark.parametrize(
    ("failures", "delay"),
    [
        pytest.param(1, 1.0, id="1"),
        pytest.param(2, 2.0, id="2"),
        pytest.param(4, 8.0, id="4"),
        pytest.param(5, 10.0, id="5-capped"),
    ],
)
def test_custom_backoff_schedule(failures: int, delay: float) -> None:
    assert Backoff(first=1.0, most=10.0).after(failures) == delay


def test_zero_backoff_for_tests() -> None:
    assert Backoff(first=0.0, most=0.0).after(50) == 0.0


def test_default_backoff_values() -> None:
    assert (
        DEFAULT_BACKOFF.first,
        DEFAULT_BACKOFF.most,
        DEFAULT_BACKOFF.refused,
        DEFAULT_BACKOFF.handshake_timeout,
    ) == (
        0.5,
        30.0,
        60.0,
        30.0,
    )
