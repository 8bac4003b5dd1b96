"""Queued delivery with a real SQLite queue in a temp folder and a stand-in HTTP client: written before POSTed, one
transaction per loop turn, order per conversation, what is retried (same webhook-id, signed afresh), give-up, dead
letters, Retry-After, restarts and shutdown."""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from component import error_map
from component.bot import client
from component.bot.bridge import Bridge
from component.bot.client import HttpReply
from component.config import Config, ConfigError, from_dict
from component.delivery.sender import Delivery
from component.metrics import Metrics, Outcome
from component.stanza import Stanza, error_reply

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OK = HttpReply(200, {"content-type": "application/json"}, b"")


@dataclass
class Call:
    url: str
    body: bytes
    headers: dict[str, str]
    at: float  # time.monotonic()
    reply: asyncio.Future[HttpReply] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def text(self) -> str:
        return str(json.loads(self.body)["body"])


Answer = Callable[[Call], HttpReply | Exception | None]  # None: held until the test answers


def echo(call: Call) -> HttpReply:
    return HttpReply(200, {"content-type": "application/json"}, json.dumps({"body": f"re {call.text}"}).encode())


class StandInClient:
    """Answers each POST with `answer(call)`: a reply, an exception to raise, or None to hold it until the test sets
    `call.reply`."""

    def __init__(self, answer: Answer = echo) -> None:
        self.answer = answer
        self.calls: list[Call] = []
        self.before: Callable[[Call], None] | None = None  # looks at the world as the POST starts

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], max_bytes: int, deadline: float
    ) -> HttpReply:
        call = Call(url, body, dict(headers), time.monotonic())
        self.calls.append(call)
        if self.before is not None:
            self.before(call)
        outcome = self.answer(call)
        if isinstance(outcome, Exception):
            raise outcome
        if outcome is not None:
            return outcome
        return await call.reply

    def held(self) -> list[Call]:
        return [call for call in self.calls if not call.reply.done() and self.answer(call) is None]


def status(code: int, headers: dict[str, str] | None = None) -> HttpReply:
    return HttpReply(code, headers or {}, b"")


def failing_first(n: int, failure: HttpReply | Exception) -> Answer:
    """Each stanza's first `n` attempts fail with `failure`; then it is echoed."""
    seen: dict[str, int] = {}

    def answer(call: Call) -> HttpReply | Exception:
        key = call.headers["webhook-id"]
        seen[key] = seen.get(key, 0) + 1
        return failure if seen[key] <= n else echo(call)

    return answer


def configure(folder: Path, **bot: Any) -> Config:
    raw = {
        "component": {"jid": "bot.localhost", "secret": "s"},
        "bot": {"url": "http://127.0.0.1:9/{local}", "delivery": "queued", "retry_first": 0.01, **bot},
        "state": {"dir": str(folder)},
    }
    return from_dict(raw, env={})


Clock = Callable[[], float]


def make(
    cfg: Config, stand_in: StandInClient, sent: list[Stanza], metrics: Metrics | None = None, clock: Clock = time.time
) -> Delivery:
    d = Delivery(
        cfg.bot,
        "bot.localhost",
        stand_in,  # type: ignore[arg-type]
        sent.append,
        metrics or Metrics(),
        500000,
        cfg.state.dir,
        asyncio.Semaphore(cfg.bot.max_in_flight),
        clock=clock,
        draw=lambda: 0.0,  # no jitter: each wait is the full doubling
    )
    d.open()
    return d


def message(body: str, sender: str = "alice@localhost/r", to: str = "echo@bot.localhost") -> Stanza:
    xml = f'<message xmlns="jabber:client" to="{to}" from="{sender}" type="chat"><body>{body}</body></message>'
    return Stanza("message", to, sender, "chat", None, body, xml)


async def settle(turns: int = 30) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.005)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def rows(folder: Path, table: str = "pending") -> list[tuple[Any, ...]]:
    with sqlite3.connect(folder / "queue.sqlite3") as db:
        return list(db.execute(f"SELECT seq, webhook_id, body FROM {table} ORDER BY seq"))


def error_of(stanza: Stanza) -> str:
    return stanza.xml.partition("<error")[2]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "state"


# -- accepted = on disk ---------------------------------------------------------------------------------------------


async def test_a_stanza_is_on_disk_before_it_is_posted(folder: Path) -> None:
    stand_in, sent = StandInClient(), list[Stanza]()
    on_disk_at_post: list[bool] = []
    stand_in.before = lambda call: on_disk_at_post.append(call.headers["webhook-id"] in {r[1] for r in rows(folder)})
    d = make(configure(folder), stand_in, sent)
    d.submit(message("one"))
    assert stand_in.calls == [] and rows(folder) == []  # accepted: written at the end of this turn, then POSTed
    await until(lambda: len(sent) == 1)
    assert on_disk_at_post == [True]
    assert sent[0].body == "re one"
    await settle()
    assert rows(folder) == [] and d.pending == 0  # delivered: gone from the queue
    d.close()


async def test_one_transaction_per_loop_turn(folder: Path) -> None:
    stand_in, sent, metrics = StandInClient(lambda call: None), list[Stanza](), Metrics()
    d = make(configure(folder), stand_in, sent, metrics)
    for n in range(30):  # one turn: 30 stanzas in 3 conversations
        d.submit(message(str(n), sender=f"user{n % 3}@localhost/r"))
    await settle()
    assert sample(metrics, "bot_delivery_commits_total") == 1
    assert len(rows(folder)) == 30
    held = stand_in.held()
    assert [call.text for call in held] == ["0", "1", "2"]  # one request per conversation
    for call in held:  # answered in one turn: the three deletions in one transaction
        call.reply.set_result(echo(call))
    await settle()
    assert sample(metrics, "bot_delivery_commits_total") == 2
    assert len(rows(folder)) == 27 and [s.body for s in sent] == ["re 0", "re 1", "re 2"]
    d.close()


# -- order --------------------------------------------------------------------------------------------------------


async def test_a_conversation_waits_for_its_head_and_others_do_not(folder: Path) -> None:
    stand_in, sent = StandInClient(lambda call: None), list[Stanza]()
    d = make(configure(folder), stand_in, sent)
    for n in range(3):
        d.submit(message(f"a{n}", sender="alice@localhost/r"))
        d.submit(message(f"b{n}", sender="bob@localhost/r"))
    await settle()
    assert [c.text for c in stand_in.held()] == ["a0", "b0"]
    b0 = stand_in.held()[1]
    b0.reply.set_result(echo(b0))
    await settle()
    assert [c.text for c in stand_in.held()] == ["a0", "b1"]  # bob goes on; alice's a1 waits for a0
    for _ in range(5):
        for call in stand_in.held():
            call.reply.set_result(echo(call))
        await settle()
    assert [s.body for s in sent if s.to == "alice@localhost/r"] == ["re a0", "re a1", "re a2"]
    assert [s.body for s in sent if s.to == "bob@localhost/r"] == ["re b0", "re b1", "re b2"]
    assert [c.text for c in stand_in.calls if c.text.startswith("a")] == ["a0", "a1", "a2"]
    d.close()


async def test_a_retried_stanza_holds_back_the_rest_of_its_conversation(folder: Path) -> None:
    answer = failing_first(3, client.ConnectionFailed("refused"))
    stand_in, sent = StandInClient(lambda call: answer(call) if call.text == "0" else echo(call)), list[Stanza]()
    d = make(configure(folder), stand_in, sent)
    for n in range(3):
        d.submit(message(str(n)))
    await until(lambda: len(sent) == 3)
    assert [c.text for c in stand_in.calls] == ["0", "0", "0", "0", "1", "2"]
    assert [s.body for s in sent] == ["re 0", "re 1", "re 2"]
    d.close()


# -- what is retried ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        pytest.param(
            client.ConnectionFailed("cannot connect to 127.0.0.1:9: Connection refused"), "refused", id="conn"
        ),
        pytest.param(client.TimedOut("late"), "no reply within 10 s", id="timeout"),
        pytest.param(client.BadReply("the bot closed the connection in the middle"), "middle", id="cut-short"),
        pytest.param(status(500), "HTTP 500", id="500"),
        pytest.param(status(502), "HTTP 502", id="502"),
        pytest.param(status(503), "HTTP 503", id="503"),
        pytest.param(status(408), "HTTP 408", id="408"),
        pytest.param(status(429), "HTTP 429", id="429"),
    ],
)
async def test_retried_with_the_same_webhook_id(folder: Path, failure: HttpReply | Exception, reason: str) -> None:
    stand_in, sent, metrics = StandInClient(failing_first(2, failure)), list[Stanza](), Metrics()
    d = make(configure(folder), stand_in, sent, metrics)
    d.submit(message("hi"))
    await until(lambda: len(sent) == 1)
    assert [s.body for s in sent] == ["re hi"]  # the sender hears nothing of the failures
    assert len(stand_in.calls) == 3
    assert len({call.headers["webhook-id"] for call in stand_in.calls}) == 1
    assert sample(metrics, "bot_delivery_retries_total") == 2
    assert sample(metrics, "bot_requests_total", outcome="replied") == 1
    [bot] = d.status()["bots"]
    assert reason in bot["last_error"] and bot["last_success_at"] >= bot["last_error_at"]
    d.close()


@pytest.mark.parametrize(
    ("answer", "error", "outcome"),
    [
        pytest.param(status(404), error_map.HTTP_STATUS[404], Outcome.HTTP_ERROR, id="404"),
        pytest.param(status(400), error_map.HTTP_STATUS[400], Outcome.HTTP_ERROR, id="400"),
        pytest.param(status(403), error_map.HTTP_STATUS[403], Outcome.HTTP_ERROR, id="403"),
        pytest.param(status(301), error_map.OTHER_STATUS, Outcome.HTTP_ERROR, id="301"),
        pytest.param(client.TooLarge("big"), None, Outcome.UNUSABLE, id="too-large"),
        pytest.param(HttpReply(200, {"content-type": "application/json"}, b"{"), None, Outcome.UNUSABLE, id="bad-json"),
    ],
)
async def test_final_outcomes_are_answered_at_once_and_not_retried(
    folder: Path, answer: HttpReply | Exception, error: Any, outcome: Outcome
) -> None:
    stand_in, sent, metrics = StandInClient(lambda call: answer), list[Stanza](), Metrics()
    d = make(configure(folder), stand_in, sent, metrics)
    stanza = message("hi")
    d.submit(stanza)
    await until(lambda: len(sent) == 1)
    await settle()
    assert len(stand_in.calls) == 1
    if error is not None:
        assert sent == [error_reply(stanza, error)]
    else:
        assert "internal-server-error" in error_of(sent[0]) and "unusable" in error_of(sent[0])
    assert sample(metrics, "bot_requests_total", outcome=outcome.value) == 1
    assert (d.pending, rows(folder), rows(folder, "dead")) == (0, [], [])
    d.close()


class FakeClock:
    """Unix time that the test moves on, from a whole second near now (signatures are checked against now)."""

    def __init__(self) -> None:
        self.start = self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


async def test_each_attempt_is_signed_afresh_under_the_same_id(folder: Path) -> None:
    clock = FakeClock()
    answer = failing_first(2, status(503))

    def moving(call: Call) -> HttpReply | Exception | None:
        clock.now += 7  # every attempt a few seconds after the one before
        return answer(call)

    stand_in, sent = StandInClient(moving), list[Stanza]()
    d = make(configure(folder, signing_secret=WHSEC), stand_in, sent, clock=clock)
    d.submit(message("signed"))
    await until(lambda: len(sent) == 1)
    assert len(stand_in.calls) == 3
    assert len({c.headers["webhook-id"] for c in stand_in.calls}) == 1
    stamps = [int(c.headers["webhook-timestamp"]) for c in stand_in.calls]
    assert stamps == [clock.start, clock.start + 7, clock.start + 14]
    assert len({c.headers["webhook-signature"] for c in stand_in.calls}) == 3
    hook = Webhook(WHSEC)
    for call in stand_in.calls:  # each verifies with a third party's code
        hook.verify(call.body, call.headers)
    d.close()


async def test_unsigned_requests_carry_the_webhook_id_too(folder: Path) -> None:
    stand_in, sent = StandInClient(failing_first(1, status(500))), list[Stanza]()
    d = make(configure(folder), stand_in, sent)
    d.submit(message("a"))
    d.submit(message("b"))
    await until(lambda: len(sent) == 2)
    ids = [c.headers["webhook-id"] for c in stand_in.calls]
    assert len(ids) == 4 and ids[0] == ids[1] != ids[2] == ids[3] and ids[0].startswith("msg_")
    assert not any("webhook-signature" in c.headers for c in stand_in.calls)
    d.close()


async def test_retry_after_is_waited_for(folder: Path) -> None:
    stand_in, sent = StandInClient(failing_first(1, status(429, {"retry-after": "1"}))), list[Stanza]()
    d = make(configure(folder, retry_first=0.01), stand_in, sent)
    d.submit(message("slow down"))
    await until(lambda: len(sent) == 1)
    first, second = stand_in.calls
    assert second.at - first.at >= 1.0
    d.close()


# -- giving up, dead letters ----------------------------------------------------------------------------------------


async def test_given_up_after_retry_for_then_retried_from_the_dead_letters(folder: Path) -> None:
    bot_ok = False
    stand_in = StandInClient(lambda call: echo(call) if bot_ok else status(500))
    sent, metrics = list[Stanza](), Metrics()
    d = make(configure(folder, retry_for=0.6, retry_first=0.04), stand_in, sent, metrics)
    stanza = message("doomed")
    started = time.monotonic()
    d.submit(stanza)
    await until(lambda: len(sent) == 1)
    given_up = time.monotonic() - started
    assert sent == [error_reply(stanza, error_map.TIMEOUT)]  # the sender hears "Gateway timeout", once
    assert 0.6 <= given_up < 1.0
    gaps = [b.at - a.at for a, b in itertools.pairwise(stand_in.calls)]
    assert len(gaps) >= 3 and gaps[:-1] == sorted(gaps[:-1]), gaps  # growing: 0.04, 0.08, 0.16 (no jitter)...
    assert stand_in.calls[-1].at - started >= 0.6  # ...and the last attempt when retry_for ends
    assert sample(metrics, "bot_requests_total", outcome="gave_up") == 1
    await settle()
    [dead] = d.dead(10)
    assert (dead.entry.last_error, dead.entry.attempts, dead.entry.stanza) == ("HTTP 500", len(stand_in.calls), stanza)
    assert sample(metrics, "bot_delivery_dead_letters") == 1 and d.pending == 0
    assert rows(folder) == [] and [r[2] for r in rows(folder, "dead")] == ["doomed"]
    webhook_id = stand_in.calls[0].headers["webhook-id"]

    bot_ok = True
    entry = d.retry(dead.entry.seq)
    assert entry is not None and entry.webhook_id == webhook_id
    assert d.retry(dead.entry.seq) is None  # once
    await until(lambda: len(sent) == 2)
    assert sent[1].body == "re doomed" and stand_in.calls[-1].headers["webhook-id"] == webhook_id
    await settle()
    assert (d.dead(10), rows(folder, "dead"), rows(folder)) == ([], [], [])
    assert sample(metrics, "bot_delivery_dead_letters") == 0
    assert d.retry(12345) is None
    d.close()


# -- restarts, shutdown -------------------------------------------------------------------------------------------


async def test_a_restart_delivers_what_was_queued_in_order_with_the_same_ids(folder: Path) -> None:
    down = StandInClient(lambda call: client.ConnectionFailed("cannot connect: Connection refused"))
    first = make(configure(folder, retry_first=0.05), down, [])
    for n in range(6):
        first.submit(message(str(n), sender=f"user{n % 2}@localhost/r"))
    await until(lambda: len(down.calls) >= 4)
    await first.drain(1.0)
    first.close()
    ids = {json.loads(c.body)["body"]: c.headers["webhook-id"] for c in down.calls}
    assert len(rows(folder)) == 6

    up, sent = StandInClient(), list[Stanza]()
    second = make(configure(folder), up, sent)  # the next start
    assert second.pending == 6
    await until(lambda: len(sent) == 6)
    for user in ("user0", "user1"):
        bodies = [str(s.body) for s in sent if s.to.startswith(user)]
        assert bodies == sorted(bodies)
    assert {c.text: c.headers["webhook-id"] for c in up.calls if c.text in ids} == ids
    await settle()
    assert rows(folder) == []
    second.close()


async def test_shutdown_wakes_the_waiting_and_keeps_what_arrives(folder: Path) -> None:
    stand_in = StandInClient(lambda call: status(503))
    d = make(configure(folder, retry_first=30), stand_in, [])
    d.submit(message("waiting"))
    await until(lambda: len(stand_in.calls) == 1)
    started = time.monotonic()
    await d.drain(5.0)
    assert time.monotonic() - started < 1.0  # its 30 s wait ended at once
    d.submit(message("late"))  # still taken while the stream is up: written, delivered after the next start
    await settle()
    assert len(stand_in.calls) == 1
    d.close()
    assert [r[2] for r in rows(folder)] == ["waiting", "late"]
    sent: list[Stanza] = []
    d.submit(message("after close"))
    with sqlite3.connect(folder / "queue.sqlite3") as db:
        assert db.execute("SELECT attempts, last_error FROM pending ORDER BY seq").fetchall() == [
            (1, "HTTP 503"),
            (0, ""),
        ]
    again = make(configure(folder), StandInClient(), sent)
    await until(lambda: len(sent) == 2)
    assert [s.body for s in sent] == ["re waiting", "re late"]
    again.close()


async def test_no_new_attempt_while_the_stream_is_down(folder: Path) -> None:
    stand_in, sent = StandInClient(lambda call: None), list[Stanza]()
    d = make(configure(folder, retry_first=0.01), stand_in, sent)
    d.submit(message("under way", sender="alice@localhost/r"))
    await settle()
    under_way = stand_in.held()
    assert [c.text for c in under_way] == ["under way"]
    d.stream_changed(False)
    d.submit(message("next", sender="alice@localhost/r"))  # behind it in its conversation
    d.submit(message("other", sender="bob@localhost/r"))  # a conversation of its own
    await settle()
    under_way[0].reply.set_result(echo(under_way[0]))  # the attempt under way finishes; its reply is sent
    await until(lambda: len(sent) == 1)
    await asyncio.sleep(0.05)  # many retry_first waits: still nothing new
    assert [c.text for c in stand_in.calls] == ["under way"] and [s.body for s in sent] == ["re under way"]
    assert d.pending == 2 and len(rows(folder)) == 2  # taken and kept on disk
    d.stream_changed(True)
    await until(lambda: len(stand_in.held()) == 2)
    assert sorted(c.text for c in stand_in.held()) == ["next", "other"]
    for call in stand_in.held():
        call.reply.set_result(echo(call))
    await until(lambda: len(sent) == 3)
    d.close()


async def test_a_queue_left_by_the_last_run_waits_for_the_stream_and_a_stop_ends_the_wait(folder: Path) -> None:
    first = make(configure(folder), StandInClient(lambda call: None), [])
    first.stream_changed(False)
    first.submit(message("left"))
    await settle()
    await first.drain(1.0)
    first.close()
    stand_in, sent = StandInClient(), list[Stanza]()
    second = Delivery(
        configure(folder).bot, "bot.localhost", stand_in, sent.append, Metrics(), 500000, str(folder),  # type: ignore[arg-type]
        asyncio.Semaphore(1),
    )  # fmt: skip
    second.stream_changed(False)  # as the app starts it: the stream is not up yet
    second.open()
    await asyncio.sleep(0.05)
    assert stand_in.calls == [] and second.pending == 1
    await asyncio.wait_for(second.drain(5.0), 1.0)  # the waiting worker ends with the stop
    second.close()
    assert [r[2] for r in rows(folder)] == ["left"]


async def test_a_stanza_whose_time_ran_out_while_stopped_still_gets_one_attempt(folder: Path) -> None:
    clock = FakeClock()
    first = make(configure(folder, retry_for=60), StandInClient(lambda call: status(503)), [], clock=clock)
    first.submit(message("old"))
    first.submit(message("older", sender="bob@localhost/r"))
    await settle()
    await first.drain(1.0)
    first.close()
    clock.now += 3600  # the component was stopped for an hour
    bot_up = StandInClient(lambda call: echo(call) if call.text == "old" else status(503))
    sent: list[Stanza] = []
    again = make(configure(folder, retry_for=60), bot_up, sent, clock=clock)
    await until(lambda: len(sent) == 2)
    assert sorted(c.text for c in bot_up.calls) == ["old", "older"]  # one attempt each
    assert sorted(str(s.body) for s in sent if s.body) == ["re old"]  # delivered, though late
    [given_up] = [s for s in sent if s.type == "error"]
    assert given_up == error_reply(message("older", sender="bob@localhost/r"), error_map.TIMEOUT)
    again.close()


async def test_a_retry_after_past_retry_for_gives_up_when_retry_for_ends(folder: Path) -> None:
    stand_in, sent = StandInClient(lambda call: status(503, {"retry-after": "3600"})), list[Stanza]()
    d = make(configure(folder, retry_for=0.5), stand_in, sent)
    started = time.monotonic()
    d.submit(message("busy"))
    await until(lambda: len(sent) == 1)
    assert 0.5 <= time.monotonic() - started < 0.9
    assert len(stand_in.calls) == 1  # not asked again against its wish
    assert sent[0].type == "error"
    d.close()


async def test_after_close_a_stanza_is_refused(folder: Path) -> None:
    sent: list[Stanza] = []
    d = make(configure(folder), StandInClient(), sent)
    d.close()
    stanza = message("too late")
    d.submit(stanza)
    assert sent == [error_reply(stanza, error_map.SHUTTING_DOWN)]


# -- refusals -----------------------------------------------------------------------------------------------------


async def test_refused_when_max_queued_are_pending(folder: Path) -> None:
    sent, metrics = list[Stanza](), Metrics()
    d = make(configure(folder, max_queued=2), StandInClient(lambda call: None), sent, metrics)
    for n in range(3):
        d.submit(message(str(n)))
    assert sent == [error_reply(message("2"), error_map.QUEUE_FULL)]
    assert sample(metrics, "bot_requests_total", outcome="queue_full") == 1
    assert d.pending == 2
    d.close()


async def test_no_route_is_answered_at_once(folder: Path) -> None:
    sent: list[Stanza] = []
    d = make(configure(folder, url="", routes={"weather": "http://127.0.0.1:9/w"}), StandInClient(), sent)
    stanza = message("hi", to="nobody@bot.localhost")
    d.submit(stanza)
    assert sent == [error_reply(stanza, error_map.NO_ROUTE)]
    assert d.pending == 0
    d.close()


async def test_a_failed_write_refuses_the_stanzas_it_held(folder: Path) -> None:
    sent, metrics = list[Stanza](), Metrics()
    d = make(configure(folder), StandInClient(), sent, metrics)
    with sqlite3.connect(folder / "queue.sqlite3") as db:
        db.execute("DROP TABLE pending")
    stanza = message("lost")
    d.submit(stanza)
    await settle()
    assert sent == [error_reply(stanza, error_map.INTERNAL)]
    assert d.pending == 0 and sample(metrics, "internal_errors_total") == 1
    d.close()


# -- status ---------------------------------------------------------------------------------------------------------


async def test_status_per_bot_url(folder: Path) -> None:
    clock = FakeClock()
    stand_in = StandInClient(lambda call: status(500) if "down" in call.url else echo(call))
    d = make(configure(folder, retry_first=100), stand_in, [], clock=clock)
    d.submit(message("x", to="down@bot.localhost"))
    clock.now += 5
    d.submit(message("y", to="down@bot.localhost"))
    d.submit(message("z", to="up@bot.localhost", sender="bob@localhost/r"))
    await until(lambda: len(stand_in.calls) == 2)
    await settle()
    clock.now += 10
    shown = d.status()
    assert (shown["pending"], shown["oldest_age_seconds"], shown["dead_letters"]) == (2, 15.0, 0)
    assert shown["bots"] == [
        {
            "url": "http://127.0.0.1:9/down",
            "pending": 2,
            "oldest_age_seconds": 15.0,
            "last_error": "HTTP 500",
            "last_error_at": clock.start + 5,
            "last_success_at": None,
        },
        {
            "url": "http://127.0.0.1:9/up",
            "pending": 0,
            "oldest_age_seconds": None,
            "last_error": None,
            "last_error_at": None,
            "last_success_at": clock.start + 5,
        },
    ]
    d.close()


# -- in the bridge, and in the configuration ------------------------------------------------------------------------


async def test_the_bridge_queues_messages_and_keeps_iqs_direct(folder: Path) -> None:
    cfg = configure(folder, stanzas=["message", "iq"])
    stand_in, sent = StandInClient(lambda call: None), list[Stanza]()
    bridge = Bridge(cfg.bot, "bot.localhost", stand_in, sent.append, Metrics(), 500000, cfg.state.dir)  # type: ignore[arg-type]
    assert bridge.delivery is not None
    bridge.delivery.open()
    iq_xml = (
        '<iq xmlns="jabber:client" to="echo@bot.localhost" from="alice@localhost/r" type="get" id="q1">'
        '<ping xmlns="urn:xmpp:ping"/></iq>'
    )
    bridge.submit(Stanza("iq", "echo@bot.localhost", "alice@localhost/r", "get", "q1", None, iq_xml))
    bridge.submit(message("queued"))
    assert (bridge.queued, bridge.delivery.pending) == (1, 1)  # the iq on the direct path, the message queued
    await settle()
    assert {"webhook-id" in c.headers for c in stand_in.calls} == {True, False}
    await bridge.drain(0.1)
    bridge.delivery.close()


def test_queued_delivery_needs_a_state_folder() -> None:
    raw = {"component": {"jid": "bot.localhost", "secret": "s"}, "bot": {"url": "http://a/", "delivery": "queued"}}
    with pytest.raises(ConfigError, match=r"^state\.dir: required when bot\.delivery = 'queued'"):
        from_dict(raw, env={})
    with pytest.raises(ConfigError, match=r"^bot\.delivery: expected 'direct' or 'queued', got 'later'"):
        from_dict({**raw, "bot": {"url": "http://a/", "delivery": "later"}}, env={})
    with pytest.raises(ConfigError, match=r"^bot\.retry_for: expected a number greater than 0"):
        from_dict({**raw, "bot": {"url": "http://a/", "retry_for": 0}}, env={})
    assert from_dict(raw | {"state": {"dir": "state"}}, env={}).bot.retry_for == 86400.0


def test_a_queue_that_cannot_be_opened_stops_start_up_naming_state_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from component import cli

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    path = tmp_path / "c.toml"
    path.write_text(
        '[component]\njid = "bot.localhost"\nsecret = "s"\nport = 9\n'
        '[bot]\nurl = "http://127.0.0.1:9/"\ndelivery = "queued"\n'
        f'[web]\nlisten = ""\n[state]\ndir = "{blocker}"\n'
    )
    assert cli.main(["--config", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("xmpp-http-component: configuration error: state.dir: cannot open") and "\n" not in err


async def test_the_dead_letters_page_by_page_on_the_send_api(folder: Path) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from component.api.status import add_routes

    sent: list[Stanza] = []
    d = make(configure(folder, retry_for=0.01), StandInClient(lambda call: status(500)), sent)
    for n in range(3):
        d.submit(message(str(n), sender=f"user{n}@localhost/r"))
    await until(lambda: len(sent) == 3)
    await settle()
    app = web.Application()
    add_routes(d, "t0ken")(app)
    auth = {"Authorization": "Bearer t0ken"}
    async with TestClient(TestServer(app)) as http:
        first = await (await http.get("/v1/dead?limit=2", headers=auth)).json()
        assert [x["body"] for x in first["dead"]] == ["0", "1"] and first["next_after"] == first["dead"][1]["id"]
        rest = await (await http.get(f"/v1/dead?after={first['next_after']}", headers=auth)).json()
        assert [x["body"] for x in rest["dead"]] == ["2"] and rest["next_after"] is None
        assert (
            rest["dead"][0]["last_error"] == "HTTP 500" and rest["dead"][0]["died_at"] >= rest["dead"][0]["accepted_at"]
        )
        for query in ("limit=0", "limit=1001", "limit=x", "after=-1"):
            bad = await http.get(f"/v1/dead?{query}", headers=auth)
            assert (bad.status, (await bad.json())["field"]) == (400, query.partition("=")[0])
        for method, path in (("GET", "/v1/status"), ("GET", "/v1/dead"), ("POST", "/v1/dead/1/retry")):
            refused = await http.request(method, path, headers={"Authorization": "Bearer nope"})
            assert refused.status == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await http.post("/v1/dead/x/retry", headers=auth)).status == 404
        assert (await http.post("/v1/dead/99999999999999999999/retry", headers=auth)).status == 404
        shown = await (await http.get("/v1/status", headers=auth)).json()
        assert (shown["pending"], shown["dead_letters"]) == (0, 3)
    d.close()
