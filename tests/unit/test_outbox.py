"""The one door out: size check, write, metrics, events, and the hold while the stream is down (a fake stream)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest

from component import outbox as outbox_module
from component.metrics import Metrics
from component.notify.events import Event
from component.outbox import Outbox
from component.stanza import Stanza, build

DOMAIN = "bot.localhost"
LIMIT = 10_000


class FakeStream:
    """The component stream: `up`, and `send_text` that records what it writes (False when down, or once
    `capacity` writes are used up, as when the stream closes during a flush)."""

    def __init__(self, up: bool = True, capacity: int | None = None) -> None:
        self.up = up
        self.capacity = capacity
        self.written: list[str] = []

    def send_text(self, xml: str) -> bool:
        if not self.up or (self.capacity is not None and len(self.written) >= self.capacity):
            return False
        self.written.append(xml)
        return True


class Clock:
    """Replaces `time` in component.outbox: monotonic() is what the test sets."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(outbox_module, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


def msg(n: int) -> Stanza:
    return build("message", "alice@localhost/phone", "echo@bot.localhost", "chat", f"m{n}", f"hi {n}")


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, name
    return value


def sent(metrics: Metrics, kind: str) -> float:
    return sample(metrics, "xmpp_stanzas_sent_total", kind=kind)


def dropped(metrics: Metrics) -> float:
    return sample(metrics, "xmpp_stanzas_dropped_total")


def held(metrics: Metrics) -> float:
    return sample(metrics, "xmpp_stanzas_held")


def make(
    stream: FakeStream, metrics: Metrics, limit: int = LIMIT, hold_max: int = 100, hold_seconds: float = 60.0
) -> Outbox:
    return Outbox(stream, metrics, DOMAIN, limit, hold_max=hold_max, hold_seconds=hold_seconds)


# -- sending ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stanza", "expected"),
    [
        pytest.param(msg(1), {"message": 1.0, "presence": 0.0, "iq": 0.0}, id="message"),
        pytest.param(
            build("presence", "alice@localhost", "echo@bot.localhost/default"),
            {"message": 0.0, "presence": 1.0, "iq": 0.0},
            id="presence",
        ),
        pytest.param(
            build("iq", "alice@localhost/phone", DOMAIN, "result", "q1"),
            {"message": 0.0, "presence": 0.0, "iq": 1.0},
            id="iq",
        ),
    ],
)
def test_sends_when_up_and_counts_by_kind(stanza: Stanza, expected: dict[str, float]) -> None:
    stream, metrics = FakeStream(), Metrics()
    make(stream, metrics).send(stanza)
    assert stream.written == [stanza.xml]
    assert {kind: sent(metrics, kind) for kind in ("message", "presence", "iq")} == expected
    assert (dropped(metrics), held(metrics)) == (0.0, 0.0)


def test_the_up_property_is_the_streams() -> None:
    stream = FakeStream(up=False)
    box = make(stream, Metrics())
    assert box.up is False
    stream.up = True
    assert box.up is True


def test_one_out_event_per_stanza_written() -> None:
    stream, events = FakeStream(), list[Event]()
    box = Outbox(stream, Metrics(), DOMAIN, LIMIT, emit=events.append)
    box.send(build("message", "alice@localhost/phone", "echo@bot.localhost", None, "m1", "hi"))
    assert events == [
        Event(
            direction="out",
            kind="message",
            type="normal",
            from_="echo@bot.localhost",
            to="alice@localhost/phone",
            body="hi",
            stanza='<message to="alice@localhost/phone" from="echo@bot.localhost" id="m1"><body>hi</body></message>',
            host_type="bot.localhost",
        )
    ]


def test_no_event_when_the_stanza_is_held() -> None:
    stream, events = FakeStream(up=False), list[Event]()
    box = Outbox(stream, Metrics(), DOMAIN, LIMIT, emit=events.append)
    box.send(msg(1))
    assert events == []
    stream.up = True
    box.stream_up()
    assert [event.stanza for event in events] == [msg(1).xml]


def test_no_event_is_built_without_an_emit_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> Event:
        raise AssertionError("an Event was built")

    monkeypatch.setattr(outbox_module, "Event", SimpleNamespace(of=refuse))
    stream = FakeStream()
    make(stream, Metrics()).send(msg(1))
    assert stream.written == [msg(1).xml]


# -- size limit ------------------------------------------------------------------------------------------------
def test_a_stanza_of_exactly_the_limit_is_sent() -> None:
    stanza = msg(1)
    stream, metrics = FakeStream(), Metrics()
    make(stream, metrics, limit=len(stanza.xml.encode())).send(stanza)
    assert stream.written == [stanza.xml]


@pytest.mark.parametrize(
    ("body", "extra"),
    [
        pytest.param("x" * 50, 1, id="ascii-one-byte-over"),
        pytest.param("\u00e9" * 50, 50, id="counted-in-utf8-bytes-not-characters"),
    ],
)
def test_an_over_size_stanza_is_dropped_and_counted(body: str, extra: int) -> None:
    stanza = build("message", "alice@localhost/phone", "echo@bot.localhost", body=body)
    stream, metrics = FakeStream(), Metrics()
    box = make(stream, metrics, limit=len(stanza.xml.encode()) - extra)
    box.send(stanza)
    assert stream.written == []
    assert (dropped(metrics), sent(metrics, "message")) == (1.0, 0.0)


def test_an_over_size_stanza_is_not_held_while_down() -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics, limit=10)
    box.send(msg(1))
    assert (dropped(metrics), held(metrics)) == (1.0, 0.0)


def test_drops_are_logged_1_2_4_8_times(caplog: pytest.LogCaptureFixture) -> None:
    stream, metrics = FakeStream(), Metrics()
    box = make(stream, metrics, limit=10)
    with caplog.at_level(logging.WARNING, logger="component.outbox"):
        for n in range(9):
            box.send(msg(n))
    assert dropped(metrics) == 9.0
    reason = "stanza not sent: a message to alice@localhost/phone is over component.max_stanza_bytes (10)"
    assert [record.getMessage() for record in caplog.records] == [
        f"{reason} (1 dropped so far)",
        f"{reason} (2 dropped so far)",
        f"{reason} (4 dropped so far)",
        f"{reason} (8 dropped so far)",
    ]


# -- holding while down ----------------------------------------------------------------------------------------
def test_held_while_down_and_sent_in_order_when_back() -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics)
    for n in range(3):
        box.send(msg(n))
    assert stream.written == []
    assert (held(metrics), sent(metrics, "message")) == (3.0, 0.0)
    stream.up = True
    box.stream_up()
    assert stream.written == [msg(0).xml, msg(1).xml, msg(2).xml]
    assert (held(metrics), sent(metrics, "message"), dropped(metrics)) == (0.0, 3.0, 0.0)


def test_new_sends_queue_behind_held_ones() -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics)
    box.send(msg(1))
    stream.up = True  # back, but the held stanzas are not written yet
    box.send(msg(2))
    assert stream.written == []
    box.stream_up()
    assert stream.written == [msg(1).xml, msg(2).xml]


def test_stream_up_with_nothing_held_writes_nothing() -> None:
    stream = FakeStream()
    make(stream, Metrics()).stream_up()
    assert stream.written == []


def test_stream_up_while_still_down_keeps_holding() -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics)
    box.send(msg(1))
    box.stream_up()
    assert (stream.written, held(metrics)) == ([], 1.0)


def test_a_write_refused_during_the_flush_keeps_the_rest_held_in_order() -> None:
    stream, metrics = FakeStream(up=False, capacity=1), Metrics()
    box = make(stream, metrics)
    for n in range(3):
        box.send(msg(n))
    stream.up = True
    box.stream_up()
    assert (stream.written, held(metrics)) == ([msg(0).xml], 2.0)
    stream.capacity = None
    box.stream_up()
    assert stream.written == [msg(0).xml, msg(1).xml, msg(2).xml]
    assert (held(metrics), dropped(metrics)) == (0.0, 0.0)


def test_stanzas_held_too_long_are_dropped_and_counted(clock: Clock) -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics, hold_seconds=10.0)
    box.send(msg(0))  # t = 1000
    clock.now = 1003.0
    box.send(msg(1))
    clock.now = 1006.0
    box.send(msg(2))
    clock.now = 1014.0  # msg 0 waited 14 s, msg 1 waited 11 s, msg 2 waited 8 s
    stream.up = True
    box.stream_up()
    assert stream.written == [msg(2).xml]
    assert (dropped(metrics), sent(metrics, "message"), held(metrics)) == (2.0, 1.0, 0.0)


def test_a_stanza_held_exactly_hold_seconds_is_still_sent(clock: Clock) -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics, hold_seconds=10.0)
    box.send(msg(0))
    clock.now += 10.0
    stream.up = True
    box.stream_up()
    assert (stream.written, dropped(metrics)) == ([msg(0).xml], 0.0)


def test_hold_max_overflow_drops_the_oldest() -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics, hold_max=2)
    for n in range(4):
        box.send(msg(n))
    assert (held(metrics), dropped(metrics)) == (2.0, 2.0)
    stream.up = True
    box.stream_up()
    assert stream.written == [msg(2).xml, msg(3).xml]


def test_discard_held_counts_what_is_lost(caplog: pytest.LogCaptureFixture) -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics)
    for n in range(3):
        box.send(msg(n))
    with caplog.at_level(logging.WARNING, logger="component.outbox"):
        box.discard_held()
    assert (dropped(metrics), held(metrics)) == (3.0, 0.0)
    assert [record.getMessage() for record in caplog.records] == [
        "exiting with 3 stanzas held for a stream that did not come back"
    ]
    stream.up = True
    box.stream_up()
    assert stream.written == []


def test_discard_held_with_nothing_held_counts_nothing(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    with caplog.at_level(logging.WARNING, logger="component.outbox"):
        make(FakeStream(), metrics).discard_held()
    assert (dropped(metrics), caplog.records) == (0.0, [])


# -- send_all --------------------------------------------------------------------------------------------------
def test_send_all_writes_every_stanza_when_up() -> None:
    stream, metrics = FakeStream(), Metrics()
    assert make(stream, metrics).send_all([msg(1), msg(2)]) is True
    assert stream.written == [msg(1).xml, msg(2).xml]
    assert sent(metrics, "message") == 2.0


def test_send_all_writes_and_holds_nothing_when_down() -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics)
    assert box.send_all([msg(1), msg(2)]) is False
    stream.up = True
    box.stream_up()
    assert (stream.written, held(metrics), dropped(metrics)) == ([], 0.0, 0.0)


def test_send_all_refuses_while_stanzas_are_held() -> None:
    stream, metrics = FakeStream(up=False), Metrics()
    box = make(stream, metrics)
    box.send(msg(1))
    stream.up = True
    assert box.send_all([msg(2)]) is False
    assert (stream.written, held(metrics)) == ([], 1.0)
    box.stream_up()
    assert stream.written == [msg(1).xml]


def test_send_all_of_nothing_is_true_when_up() -> None:
    stream = FakeStream()
    assert make(stream, Metrics()).send_all([]) is True
    assert stream.written == []
