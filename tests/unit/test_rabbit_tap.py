"""The rabbit backend's reading of the broker's acks (component/notify/rabbit.py, `_ConfirmTap`): whatever the
reads' sizes, aiormq gets every byte of the stream in order except the publishing channel's Basic.Ack and
Basic.Nack frames, which go to the backend, in order; one still goes through aiormq every FORWARD_EVERY seconds;
a stream out of step, or a failing handler, hands everything to aiormq from then on."""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import pamqp.frame
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands
from pamqp.body import ContentBody
from pamqp.heartbeat import Heartbeat

import component.notify.rabbit as rabbit
from component.notify.rabbit import _ConfirmTap

CHANNEL = 1


class Inner:
    """aiormq's side: what reaches its StreamReaderProtocol."""

    def __init__(self) -> None:
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data


def tap(attached: bool = True) -> tuple[_ConfirmTap, Inner, list[tuple[int, bool, bool]]]:
    inner = Inner()
    confirms: list[tuple[int, bool, bool]] = []
    tapped = _ConfirmTap(inner, "test")  # type: ignore[arg-type]
    if attached:
        tapped.attach(CHANNEL, confirms.extend)
    return tapped, inner, confirms


def frame(value: Any, channel: int = CHANNEL) -> bytes:
    return pamqp.frame.marshal(value, channel)


# (frame, taken by the tap as (tag, multiple, ack), or None: passed on)
FRAMES: list[tuple[bytes, tuple[int, bool, bool] | None]] = [
    (frame(commands.Basic.Ack(delivery_tag=1)), (1, False, True)),
    (frame(commands.Basic.Ack(delivery_tag=7, multiple=True)), (7, True, True)),
    (frame(commands.Basic.Nack(delivery_tag=2**40, multiple=True)), (2**40, True, False)),
    (frame(commands.Basic.Nack(delivery_tag=9, requeue=False)), (9, False, False)),
    (frame(Heartbeat(), 0), None),
    (frame(commands.Basic.Ack(delivery_tag=3), 2), None),  # another channel's
    (frame(commands.Basic.Reject(delivery_tag=4)), None),  # the same size as an ack, not one
    (frame(commands.Channel.Close(reply_code=406, reply_text="PRECONDITION_FAILED", class_id=60, method_id=40)), None),
    (frame(commands.Connection.Blocked(reason="low on memory"), 0), None),
    (frame(ContentBody(b"x" * 300)), None),
    (frame(ContentBody(b"")), None),
]


def chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=300)
@given(
    order=st.lists(st.sampled_from(range(len(FRAMES))), min_size=1, max_size=40),
    cuts=st.lists(st.integers(0, 10_000), max_size=30),
)
def test_acks_are_taken_and_every_other_byte_passed_on_in_order(order: list[int], cuts: list[int]) -> None:
    tapped, inner, confirms = tap()
    stream = b"".join(FRAMES[i][0] for i in order)
    for chunk in chunks(stream, cuts):
        tapped.data_received(chunk)
    assert bytes(inner.received) == b"".join(FRAMES[i][0] for i in order if FRAMES[i][1] is None)
    assert confirms == [FRAMES[i][1] for i in order if FRAMES[i][1] is not None]


def test_one_byte_at_a_time() -> None:
    tapped, inner, confirms = tap()
    stream = b"".join(f for f, _ in FRAMES)
    for i in range(len(stream)):
        tapped.data_received(stream[i : i + 1])
    assert bytes(inner.received) == b"".join(f for f, taken in FRAMES if taken is None)
    assert confirms == [taken for _, taken in FRAMES if taken is not None]


def test_before_attach_everything_is_passed_on() -> None:
    tapped, inner, _ = tap(attached=False)
    stream = b"".join(f for f, _ in FRAMES)
    tapped.data_received(stream[:10])
    tapped.data_received(stream[10:])
    assert bytes(inner.received) == stream


def test_an_ack_goes_through_aiormq_every_forward_every_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    tapped, inner, confirms = tap()
    ack = [frame(commands.Basic.Ack(delivery_tag=tag)) for tag in range(1, 5)]
    tapped.data_received(ack[0])
    now[0] += rabbit.FORWARD_EVERY  # aiormq has seen no frame for that long: the next ack is its
    tapped.data_received(ack[1] + ack[2])
    now[0] += 1
    tapped.data_received(ack[3])
    assert bytes(inner.received) == ack[1]
    assert confirms == [(1, False, True), (3, False, True), (4, False, True)]


def test_a_stream_out_of_step_goes_to_aiormq(caplog: pytest.LogCaptureFixture) -> None:
    tapped, inner, confirms = tap()
    ack = frame(commands.Basic.Ack(delivery_tag=1))
    broken = ack[:-1] + b"\x00"  # no frame-end octet
    tapped.data_received(ack + broken + ack)
    tapped.data_received(ack)
    assert confirms == [(1, False, True)]
    assert bytes(inner.received) == broken + ack + ack
    assert [r.levelno for r in caplog.records] == [logging.ERROR]


def test_acks_are_handed_over_once_per_read() -> None:
    tapped, _, _ = tap(attached=False)
    reads: list[list[tuple[int, bool, bool]]] = []
    tapped.attach(CHANNEL, reads.append)
    acks = [frame(commands.Basic.Ack(delivery_tag=tag)) for tag in (1, 2, 3)]
    tapped.data_received(acks[0] + acks[1] + acks[2][:5])
    tapped.data_received(acks[2][5:])
    tapped.data_received(frame(Heartbeat(), 0))  # no ack in it: no call
    assert reads == [[(1, False, True), (2, False, True)], [(3, False, True)]]


class Transport:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_failing_handler_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    tapped, inner, _ = tap(attached=False)
    transport = Transport()
    inner.connection_made = lambda _: None  # type: ignore[attr-defined]
    tapped.connection_made(transport)  # type: ignore[arg-type]

    def failing(confirms: list[tuple[int, bool, bool]]) -> None:
        raise ValueError("a bug")

    tapped.attach(CHANNEL, failing)
    ack = frame(commands.Basic.Ack(delivery_tag=1))
    tapped.data_received(ack)
    assert transport.closed  # what it took and did not settle is published again after the reconnect
    tapped.data_received(ack)  # from then on, aiormq's
    assert bytes(inner.received) == ack
    assert len(caplog.records) == 1
