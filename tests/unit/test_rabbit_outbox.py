"""The rabbit backend's outbox without a broker: `emit` only appends, bounded (the oldest dropped and counted), and
the reconnect delays double up to a cap, each shortened by a random jitter."""

from __future__ import annotations

import asyncio
import itertools
import random
import re
from types import SimpleNamespace

import pamqp.frame
import pytest
from pamqp.commands import Basic

from component.config import from_dict
from component.metrics import Metrics
from component.notify.events import Event
from component.notify.rabbit import Backoff, Observations, RabbitPublisher, _Link
from component.notify.rabbit_events import body_frame, content_header

BASE = {"component": {"jid": "bot.localhost", "secret": "s"}, "bot": {"url": "http://127.0.0.1:8080/"}}
LABELS = {"host_type": "bot.localhost", "pool_tag": "event_pusher"}


def publisher(max_queued: int = 3) -> tuple[RabbitPublisher, Metrics]:
    raw = {
        **BASE,
        "outgoing_pools": {"rabbit": {"event_pusher": {"connection": {"host": "127.0.0.1", "port": 1}}}},
        "event_pusher": {"rabbit": {"chat_msg_exchange": {}, "max_queued": max_queued}},
    }
    rabbit = from_dict(raw, env={}).rabbit
    assert rabbit is not None
    metrics = Metrics()
    return RabbitPublisher(rabbit, metrics, "bot.localhost"), metrics


def chat(body: str | None = "hi", to: str = "echo@bot.localhost", type_: str = "chat") -> Event:
    return Event("in", "message", type_, "alice@localhost/a", to, body, "<message/>", "bot.localhost")


def sample(metrics: Metrics, name: str) -> float:
    return metrics.registry.get_sample_value(name, LABELS) or 0.0


def test_emit_appends_and_a_full_outbox_drops_the_oldest(caplog: pytest.LogCaptureFixture) -> None:
    outbox, metrics = publisher(max_queued=3)
    for i in range(5):
        outbox.emit(chat(f"m{i}"))
    assert outbox.outstanding == 3
    assert sample(metrics, "mod_event_pusher_rabbit_queued") == 3
    assert sample(metrics, "mod_event_pusher_rabbit_dropped_count_total") == 2
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        "the outbox is full: dropped the oldest waiting event (1 dropped so far)",
        "the outbox is full: dropped the oldest waiting event (2 dropped so far)",
    ]


def test_what_publishes_nothing_takes_no_room() -> None:
    outbox, _ = publisher()
    outbox.emit(chat(body=None))
    outbox.emit(chat(type_="headline"))
    outbox.emit(chat(type_="groupchat"))  # its exchange is off
    assert outbox.outstanding == 0


def test_a_routing_key_over_255_bytes_is_dropped_and_counted() -> None:
    outbox, metrics = publisher()
    outbox.emit(chat(to="é" * 120 + "@bot.localhost"))  # 240 bytes of local part, + the domain and topic
    assert outbox.outstanding == 0
    assert sample(metrics, "mod_event_pusher_rabbit_dropped_count_total") == 1


async def test_after_stop_emit_does_nothing() -> None:
    outbox, _ = publisher()
    await outbox.stop(0.1)  # never started: nothing to flush, returns at once
    outbox.emit(chat())
    assert outbox.outstanding == 0


@pytest.mark.parametrize(
    ("failures", "draw", "delay"),
    [
        pytest.param(1, 0.0, 0.5, id="first"),
        pytest.param(2, 0.0, 1.0, id="doubles"),
        pytest.param(4, 0.0, 4.0, id="doubles-again"),
        pytest.param(10, 0.0, 30.0, id="capped"),
        pytest.param(10_000, 0.0, 30.0, id="no-overflow"),
        pytest.param(1, 1.0, 0.25, id="jitter-takes-at-most-half"),
        pytest.param(10, 0.5, 22.5, id="jitter-on-the-cap"),
    ],
)
def test_backoff(failures: int, draw: float, delay: float) -> None:
    assert Backoff().after(failures, lambda: draw) == delay


def test_backoff_jitter_spreads_the_delays() -> None:
    rng = random.Random(7)
    delays = {Backoff().after(3, rng.random) for _ in range(100)}
    assert len(delays) > 90 and min(delays) >= 1.0 and max(delays) <= 2.0


# --- The broker's answers, without a broker: what an ack or a nack takes out of the outbox ------------------------


class Written:
    """A publisher whose outbox has `count` events written on a link (tags 1..count), none acked yet."""

    def __init__(self, count: int) -> None:
        self.outbox, self.metrics = publisher(max_queued=100_000)
        channel = SimpleNamespace(closing=asyncio.get_running_loop().create_future())
        self.link = _Link(None, channel, None, None)  # type: ignore[arg-type]
        self.outbox._link = self.link
        for i in range(count):
            self.outbox.emit(chat(f"m{i + 1}"))
        while self.outbox._waiting:
            item = self.outbox._waiting.popleft()
            self.link.tag += 1
            self.link.unconfirmed[self.link.tag] = item

    def answer(self, tag: int, multiple: bool = False, ack: bool = True) -> None:
        self.outbox._confirmed(self.link, [(tag, multiple, ack)])

    def left(self) -> list[int]:
        return list(self.link.unconfirmed)

    def waiting(self) -> list[str]:
        return [str(int(item.message_id.rsplit("-", 1)[1], 16)) for item in self.outbox._waiting]


async def test_acks_one_by_one_and_many_at_once() -> None:
    w = Written(10)
    w.answer(2)
    w.answer(1)
    w.answer(2)  # again: nothing more
    assert w.left() == [3, 4, 5, 6, 7, 8, 9, 10]
    w.answer(5, multiple=True)
    assert w.left() == [6, 7, 8, 9, 10]
    w.answer(8)
    w.answer(9, multiple=True)
    assert w.left() == [10]
    assert sample(w.metrics, "wpool_rabbit_messages_published_count_total") == 9
    assert sample(w.metrics, "wpool_rabbit_messages_published_time_count") == 9
    assert not w.outbox._idle.is_set()
    w.answer(10)
    assert w.outbox._idle.is_set()


async def test_a_multiple_ack_after_many_single_ones_settles_only_what_is_left() -> None:
    w = Written(3000)
    for tag in range(1, 2990):
        w.answer(tag)
    w.answer(2995, multiple=True)  # from the first unconfirmed tag, not from 1
    assert w.left() == [2996, 2997, 2998, 2999, 3000]
    assert sample(w.metrics, "wpool_rabbit_messages_published_count_total") == 2995


async def test_a_nack_puts_the_events_back_first_in_order() -> None:
    w = Written(6)
    w.answer(1)
    w.answer(3, multiple=True, ack=False)
    w.answer(5, ack=False)
    assert w.left() == [4, 6]
    assert w.waiting() == ["5", "2", "3"]  # each nack's events back at the head, in their order
    assert sample(w.metrics, "wpool_rabbit_messages_published_failed_total") == 3


async def test_the_answers_of_one_read_count_once_and_in_order() -> None:
    w = Written(6)
    w.answer(1)
    w.outbox._confirmed(w.link, [(2, False, True), (4, True, False), (5, False, True)])
    assert w.left() == [6]
    assert w.waiting() == ["3", "4"]
    assert sample(w.metrics, "wpool_rabbit_messages_published_count_total") == 3
    assert sample(w.metrics, "wpool_rabbit_messages_published_time_count") == 3


@pytest.mark.parametrize(
    "values",
    [
        pytest.param([0.0004] * 5 + [0.003, 0.003, 0.2, 11.0], id="runs"),
        pytest.param([0.0005, 0.001, 0.0025, 10.0], id="on-the-bounds"),
        pytest.param([], id="none"),
    ],
)
def test_observations_added_at_once_read_as_observed_one_by_one(values: list[float]) -> None:
    one, many = Metrics(), Metrics()
    observed = one.rabbit_confirm_time.labels("h", "p")
    for value in values:
        observed.observe(value)
    added = Observations(many.rabbit_confirm_time.labels("h", "p"))
    assert added._counters is not None  # this prometheus_client's internals: added at once, not one by one
    for value, group in itertools.groupby(values):
        added.add(value, len(list(group)))

    def samples(metrics: Metrics) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for family in metrics.registry.collect()
            if family.name == "wpool_rabbit_messages_published_time"
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    assert samples(one) == samples(many) != []


def test_observations_fall_back_to_observe() -> None:
    seen: list[float] = []
    added = Observations(SimpleNamespace(observe=seen.append))
    added.add(0.5, 3)
    assert seen == [0.5, 0.5, 0.5]


class Writer:
    def __init__(self) -> None:
        self.written = b""

    def write(self, data: bytes) -> None:
        self.written += data


async def test_a_write_is_each_publish_frame_content_header_and_body() -> None:
    w = Written(0)
    w.outbox.emit(chat("short"))
    w.outbox.emit(chat("x" * 300))  # over the frame size: its body in three frames
    w.link.channel = SimpleNamespace(number=3, max_content_size=128)  # type: ignore[assignment]
    w.link.writer = Writer()  # type: ignore[assignment]
    items = list(w.outbox._waiting)
    w.outbox._write(w.link, 2)
    expected = b""
    for item in items:
        found = item.publication
        body, mid, timestamp = found.body, item.message_id, int(item.timestamp)
        expected += pamqp.frame.marshal(Basic.Publish(exchange=found.exchange, routing_key=found.routing_key), 3)
        expected += content_header(3, len(body), mid, timestamp)
        expected += b"".join(body_frame(3, body[i : i + 128]) for i in range(0, len(body), 128))
    assert w.link.writer.written == expected  # type: ignore[attr-defined]
    assert list(w.link.unconfirmed) == [1, 2] and w.link.tag == 2
    ids = [item.message_id for item in items]  # <16 random hex digits>-<12 hex digits counting>
    assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{12}", i) for i in ids) and [int(i[-12:], 16) for i in ids] == [1, 2]
