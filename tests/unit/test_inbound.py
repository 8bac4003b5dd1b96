"""Every received stanza: counted, offered as an event, then to the iq waiter, dropped (type=error), to the bot,
or answered locally; with fakes for the bot, the outbox and the waiter."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection
from types import SimpleNamespace

import pytest

from component import __version__, local
from component import inbound as inbound_module
from component.inbound import Inbound
from component.metrics import Metrics
from component.notify.events import Event
from component.stanza import Stanza, as_kind, from_element, parse

USER = "alice@localhost/phone"


class Answers:
    """The send API's iq waiter: takes the stanzas whose id it was told."""

    def __init__(self, ids: Collection[str] = ()) -> None:
        self.ids = set(ids)
        self.offered: list[str | None] = []

    def take(self, stanza: Stanza) -> bool:
        self.offered.append(stanza.id)
        return stanza.id in self.ids


class Flow:
    """An Inbound with recording fakes around it."""

    def __init__(
        self,
        to_bot: Collection[str] = ("message",),
        answers: Answers | None = None,
        emit: bool = False,
        resource: str = "default",
        send: Callable[[Stanza], None] | None = None,
        submit: Callable[[Stanza], None] | None = None,
    ) -> None:
        self.submitted: list[Stanza] = []
        self.sent: list[str] = []
        self.events: list[Event] = []
        self.answers = answers if answers is not None else Answers()
        self.metrics = Metrics()
        self.inbound = Inbound(
            [kind for name in to_bot if (kind := as_kind(name)) is not None],
            submit if submit is not None else self.submitted.append,
            send if send is not None else (lambda stanza: self.sent.append(stanza.xml)),
            self.answers,
            self.metrics,
            resource,
            "bot.localhost",
            self.events.append if emit else None,
        )

    def receive(self, text: str) -> Stanza:
        elem, kind = parse(text)
        stanza = from_element(elem, kind)
        self.inbound.receive(stanza, elem)
        return stanza

    def count(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        assert value is not None, name
        return value


def received(flow: Flow) -> dict[str, float]:
    return {kind: flow.count("xmpp_stanzas_received_total", kind=kind) for kind in ("message", "presence", "iq")}


CHAT = f'<message to="echo@bot.localhost" from="{USER}" type="chat" id="m1"><body>hi</body></message>'
AVAILABLE = f'<presence to="echo@bot.localhost" from="{USER}"/>'
SUBSCRIBE = f'<presence to="echo@bot.localhost" from="{USER}" type="subscribe"/>'
PING = f'<iq to="bot.localhost" from="{USER}" type="get" id="q1"><ping xmlns="urn:xmpp:ping"/></iq>'
PONG = f'<iq to="bot.localhost" from="{USER}" type="result" id="q1"/>'
IQ_ERROR = (
    f'<iq to="bot.localhost" from="{USER}" type="error" id="q1"><error type="cancel">'
    '<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>'
)


# -- counting and events ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(CHAT, {"message": 1.0, "presence": 0.0, "iq": 0.0}, id="message"),
        pytest.param(AVAILABLE, {"message": 0.0, "presence": 1.0, "iq": 0.0}, id="presence"),
        pytest.param(PING, {"message": 0.0, "presence": 0.0, "iq": 1.0}, id="iq"),
        pytest.param(IQ_ERROR, {"message": 0.0, "presence": 0.0, "iq": 1.0}, id="errors-count-too"),
    ],
)
def test_counts_received_by_kind(text: str, expected: dict[str, float]) -> None:
    flow = Flow()
    flow.receive(text)
    assert received(flow) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            CHAT,
            Event(
                "in",
                "message",
                "chat",
                USER,
                "echo@bot.localhost",
                "hi",
                '<message xmlns="jabber:client" to="echo@bot.localhost" from="alice@localhost/phone" type="chat" '
                'id="m1"><body>hi</body></message>',
                "bot.localhost",
            ),
            id="message",
        ),
        pytest.param(
            AVAILABLE,
            Event(
                "in",
                "presence",
                "available",
                USER,
                "echo@bot.localhost",
                None,
                '<presence xmlns="jabber:client" to="echo@bot.localhost" from="alice@localhost/phone"/>',
                "bot.localhost",
            ),
            id="presence-without-type-is-available",
        ),
        pytest.param(
            PONG,
            Event(
                "in",
                "iq",
                "result",
                USER,
                "bot.localhost",
                None,
                '<iq xmlns="jabber:client" to="bot.localhost" from="alice@localhost/phone" type="result" id="q1"/>',
                "bot.localhost",
            ),
            id="iq-result-even-when-taken",
        ),
    ],
)
def test_one_in_event_per_stanza(text: str, expected: Event) -> None:
    flow = Flow(emit=True, answers=Answers({"q1"}))
    flow.receive(text)
    assert flow.events == [expected]


def test_no_event_is_built_without_an_emit_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object) -> Event:
        raise AssertionError("an Event was built")

    monkeypatch.setattr(inbound_module, "Event", SimpleNamespace(of=refuse))
    flow = Flow()
    flow.receive(CHAT)
    assert [stanza.id for stanza in flow.submitted] == ["m1"]


# -- the iq waiter ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [pytest.param(PONG, id="result"), pytest.param(IQ_ERROR, id="error")],
)
def test_an_answer_taken_by_the_waiter_goes_nowhere_else(text: str) -> None:
    flow = Flow(to_bot=("message", "presence", "iq"), answers=Answers({"q1"}))
    flow.receive(text)
    assert flow.answers.offered == ["q1"]
    assert (flow.submitted, flow.sent) == ([], [])
    assert flow.count("xmpp_errors_received_total") == 0.0


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(PING, id="iq-get"),
        pytest.param(f'<iq to="bot.localhost" from="{USER}" type="set" id="q1"/>', id="iq-set"),
        pytest.param(CHAT, id="message"),
        pytest.param(
            f'<message to="echo@bot.localhost" from="{USER}" type="error" id="q1"/>', id="message-error-with-same-id"
        ),
    ],
)
def test_only_iq_results_and_errors_are_offered_to_the_waiter(text: str) -> None:
    flow = Flow(answers=Answers({"q1", "m1"}))
    flow.receive(text)
    assert flow.answers.offered == []


def test_an_iq_result_not_taken_goes_on_to_the_bot() -> None:
    flow = Flow(to_bot=("iq",), answers=Answers({"other"}))
    flow.receive(PONG)
    assert flow.answers.offered == ["q1"]
    assert [stanza.xml for stanza in flow.submitted] == [
        '<iq xmlns="jabber:client" to="bot.localhost" from="alice@localhost/phone" type="result" id="q1"/>'
    ]


# -- type=error ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        pytest.param(f'<message to="echo@bot.localhost" from="{USER}" type="error"/>', id="message"),
        pytest.param(f'<presence to="echo@bot.localhost" from="{USER}" type="error"/>', id="presence"),
        pytest.param(IQ_ERROR, id="iq-not-taken"),
    ],
)
@pytest.mark.parametrize(
    "to_bot",
    [pytest.param(("message", "presence", "iq"), id="to-bot"), pytest.param((), id="local")],
)
def test_errors_are_dropped_and_counted(text: str, to_bot: tuple[str, ...]) -> None:
    flow = Flow(to_bot=to_bot)
    flow.receive(text)
    assert (flow.submitted, flow.sent) == ([], [])
    assert flow.count("xmpp_errors_received_total") == 1.0


# -- to the bot, or answered locally ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("to_bot", "text"),
    [
        pytest.param(("message",), CHAT, id="message"),
        pytest.param(("message", "presence"), SUBSCRIBE, id="presence"),
        pytest.param(("iq",), PING, id="iq"),
    ],
)
def test_kinds_for_the_bot_are_submitted(to_bot: tuple[str, ...], text: str) -> None:
    flow = Flow(to_bot=to_bot)
    stanza = flow.receive(text)
    assert (flow.submitted, flow.sent) == ([stanza], [])


@pytest.mark.parametrize(
    ("text", "resource", "expected"),
    [
        pytest.param(
            SUBSCRIBE,
            "default",
            [
                '<presence to="alice@localhost" from="echo@bot.localhost" type="subscribed"/>',
                '<presence to="alice@localhost" from="echo@bot.localhost/default"/>',
            ],
            id="presence-subscribe",
        ),
        pytest.param(
            f'<presence to="echo@bot.localhost" from="{USER}" type="probe"/>',
            "res",
            ['<presence to="alice@localhost/phone" from="echo@bot.localhost/res"/>'],
            id="presence-probe-with-the-configured-resource",
        ),
        pytest.param(AVAILABLE, "default", [], id="presence-available-silent"),
        pytest.param(
            PING,
            "default",
            ['<iq to="alice@localhost/phone" from="bot.localhost" type="result" id="q1"/>'],
            id="iq-ping",
        ),
        pytest.param(
            f'<iq to="bot.localhost" from="{USER}" type="set" id="q2"><query xmlns="jabber:iq:roster"/></iq>',
            "default",
            [
                '<iq to="alice@localhost/phone" from="bot.localhost" type="error" id="q2"><error type="cancel">'
                '<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>'
            ],
            id="iq-unknown-set",
        ),
        pytest.param(PONG, "default", [], id="iq-result-not-taken-silent"),
    ],
)
def test_other_presence_and_iq_are_answered_locally(text: str, resource: str, expected: list[str]) -> None:
    flow = Flow(to_bot=("message",), resource=resource)
    flow.receive(text)
    assert (flow.submitted, flow.sent) == ([], expected)


def test_a_message_not_for_the_bot_is_ignored() -> None:
    flow = Flow(to_bot=("presence", "iq"))
    flow.receive(CHAT)
    assert (flow.submitted, flow.sent) == ([], [])
    assert received(flow)["message"] == 1.0


# -- the error boundary ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "text", "kind", "answers"),
    [
        pytest.param(
            "answer_presence",
            SUBSCRIBE,
            "presence",
            [
                '<presence to="alice@localhost" from="echo@bot.localhost" type="subscribed"/>',
                '<presence to="alice@localhost" from="echo@bot.localhost/default"/>',
            ],
            id="presence",
        ),
        pytest.param(
            "answer_iq",
            PING,
            "iq",
            ['<iq to="alice@localhost/phone" from="bot.localhost" type="result" id="q1"/>'],
            id="iq",
        ),
    ],
)
def test_an_exception_in_a_local_answer_is_caught_counted_and_the_next_stanza_handled(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    target: str,
    text: str,
    kind: str,
    answers: list[str],
) -> None:
    original = getattr(local, target)
    calls = 0

    def fail_once(*args: object) -> list[Stanza]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        result: list[Stanza] = original(*args)
        return result

    monkeypatch.setattr(local, target, fail_once)
    flow = Flow(to_bot=("message",))
    with caplog.at_level(logging.ERROR, logger="component.inbound"):
        flow.receive(text)
    assert (flow.sent, flow.count("internal_errors_total")) == ([], 1.0)
    assert [record.getMessage() for record in caplog.records] == [
        f"internal error while handling a {kind} from alice@localhost/phone"
    ]
    flow.receive(text)
    assert (flow.sent, flow.count("internal_errors_total")) == (answers, 1.0)


def test_an_exception_in_send_is_caught_and_counted() -> None:
    attempts: list[str] = []

    def send(stanza: Stanza) -> None:
        attempts.append(stanza.xml)
        raise ConnectionError("gone")

    flow = Flow(to_bot=(), send=send)
    flow.receive(SUBSCRIBE)
    assert attempts == ['<presence to="alice@localhost" from="echo@bot.localhost" type="subscribed"/>']
    assert flow.count("internal_errors_total") == 1.0


def test_an_exception_in_submit_is_caught_and_counted() -> None:
    def submit(_stanza: Stanza) -> None:
        raise RuntimeError("queue broken")

    flow = Flow(to_bot=("message",), submit=submit)
    flow.receive(CHAT)
    assert flow.count("internal_errors_total") == 1.0
    flow.receive(PING)  # still answering
    assert flow.sent == ['<iq to="alice@localhost/phone" from="bot.localhost" type="result" id="q1"/>']


def test_the_local_answer_reads_the_element_given() -> None:
    flow = Flow(to_bot=())
    elem, kind = parse(PING)
    version = ET.fromstring('<iq xmlns="jabber:client"><query xmlns="jabber:iq:version"/></iq>')
    flow.inbound.receive(from_element(elem, kind), version)
    assert flow.sent == [
        '<iq to="alice@localhost/phone" from="bot.localhost" type="result" id="q1"><query xmlns="jabber:iq:version">'
        f"<name>xmpp-http-component</name><version>{__version__}</version></query></iq>"
    ]
