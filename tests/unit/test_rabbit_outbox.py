"""The rabbit backend's outbox without a broker: `emit` only appends, bounded (the oldest dropped and counted), and
the reconnect delays double up to a cap, each shortened by a random jitter."""

from __future__ import annotations

import random

import pytest

from component.config import from_dict
from component.metrics import Metrics
from component.notify.events import Event
from component.notify.rabbit import Backoff, RabbitPublisher

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
