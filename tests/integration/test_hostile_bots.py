"""Hostile bots end to end: each row plays one bot behaviour on a raw asyncio TCP server (not aiohttp, which would
refuse to write most of them), configured as the component's bot.url. Real users send through a real server to
echo@<component>; the test asserts the exact XMPP error or reply each one receives, that the bot saw every POST
exactly once, and then that the process is healthy: another user's message to a well-behaved bot (the `bot`
fixture, routed as good@<component>) gets its reply, no internal error, the stream was never dropped
(xmpp_connects_total is still 1), and no file descriptor leaked.

tests/integration/test_bot_client.py covers the HTTP client alone; this covers what a user sees of it. The table runs
against Prosody; the row where two senders could get each other's replies runs against ejabberd too.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass

import pytest
from slixmpp.stanza import Message

from component.app import App
from component.bot.client import parse_url
from component.config import from_dict
from tests.harness.clients import WAIT, Client, login
from tests.harness.parts import COMPONENT, Bot, StartComponent, metric
from tests.harness.servers import XmppServer

ECHO = f"echo@{COMPONENT}"
GOOD = f"good@{COMPONENT}"  # routed to the well-behaved `bot` fixture
HOSTILE = "hostile"  # the body of the stanza the raw bot misbehaves on; it answers every other one properly
USERS = ("alice", "bob", "carol")  # carol only checks the health at the end

Err = tuple[str, str, str]  # (type, condition, text) of the XMPP error the sender receives
Expect = str | Err | None  # the reply body ({alice} and {bob} stand for their full JIDs), an error, or nothing


def unusable(reason: str) -> Err:
    return ("cancel", "internal-server-error", f"The bot's reply was unusable: {reason}")


def not_http(reason: str) -> Err:
    return unusable(f"the bot's reply is not valid HTTP ({reason})")


CONNECTION_FAILURE: Err = ("cancel", "remote-server-timeout", "Connection failure")
GATEWAY_TIMEOUT: Err = ("wait", "remote-server-timeout", "Gateway timeout")


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what each is."""
    found = {}
    for name in os.listdir("/proc/self/fd"):
        with suppress(OSError):  # the directory's own descriptor, gone once listed
            found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return found


async def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


# -- the raw bot -------------------------------------------------------------------------------------------------


@dataclass
class Request:
    target: str  # the request-target, as written on the request line
    sender: str  # the POSTed JSON's "from"
    body: str


def response(status: str, body: bytes = b"", *headers: str, length: bool = True) -> bytes:
    lines = [f"HTTP/1.1 {status}", *headers, *([f"Content-Length: {len(body)}"] if length else [])]
    return "".join(f"{line}\r\n" for line in lines).encode() + b"\r\n" + body


def json_response(text: str) -> bytes:
    return response("200 OK", json.dumps({"body": text}).encode(), "Content-Type: application/json")


def echo(request: Request) -> bytes:
    """The well-behaved answer: who sent what, so that a reply reaching the wrong user shows."""
    return json_response(f"to {request.sender}: {request.body}")


class Connection:
    def __init__(self, bot: RawBot, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.bot, self.number, self.reader, self.writer = bot, number, reader, writer

    async def request(self) -> Request | None:
        """Read one request (and log it in the bot); None at the connection's end."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
        data = json.loads(await self.reader.readexactly(int(fields["content-length"])))
        method, target, _ = lines[0].split(" ")
        assert method == "POST"
        request = Request(target, data["from"], data["body"])
        self.bot.requests.append(request)
        return request

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def close(self) -> None:
        self.writer.close()
        with suppress(ConnectionError):
            await self.writer.wait_closed()


# What the bot does with the request whose body is HOSTILE: False to close the connection after it.
Hostile = Callable[[Connection, Request], Awaitable[bool]]


async def answer(connection: Connection, request: Request) -> bool:
    connection.write(echo(request))
    return True


def raw(data: bytes) -> Hostile:
    """Write `data` as the reply, then wait for the next request (the client closes the connection)."""

    async def hostile(connection: Connection, _request: Request) -> bool:
        connection.write(data)
        return True

    return hostile


def then_close(data: bytes) -> Hostile:
    """Write `data` (maybe nothing), then close the connection."""

    async def hostile(connection: Connection, _request: Request) -> bool:
        connection.write(data)
        return False

    return hostile


def answer_then(later: Callable[[Request], bytes], pause: float) -> Hostile:
    """Answer properly, then `pause` s later write `later(request)` on the connection, now idle."""

    async def hostile(connection: Connection, request: Request) -> bool:
        connection.write(echo(request))
        await asyncio.sleep(pause)
        connection.write(later(request))
        return True

    return hostile


async def no_content_then_stray(connection: Connection, _request: Request) -> bool:
    """A 204, then 100 ms later bytes no reply announced."""
    connection.write(response("204 No Content", length=False))
    await asyncio.sleep(0.1)
    connection.write(b"stray")
    return True


async def answer_then_close(connection: Connection, request: Request) -> bool:
    """Answer properly, then close the connection while the client keeps it idle for the next request."""
    connection.write(echo(request))
    return False


class RawBot:
    """A raw HTTP/1.1 bot on 127.0.0.1: every connection serves requests one after the other; the one with body
    HOSTILE gets `hostile`, the rest a proper answer. `greeting` is written on the first connection before it
    reads anything."""

    def __init__(self, hostile: Hostile, greeting: bytes = b"") -> None:
        self.hostile = hostile
        self.greeting = greeting
        self.requests: list[Request] = []
        self.handled = 0  # requests whose answer (and what the bot does after it) is done
        self.connections = 0
        self.errors: list[BaseException] = []  # what went wrong in the bot itself
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.append(writer)
        self.connections += 1
        connection = Connection(self, self.connections, reader, writer)
        try:
            if self.greeting and connection.number == 1:
                connection.write(self.greeting)
            while (request := await connection.request()) is not None:
                go_on = await (self.hostile if request.body == HOSTILE else answer)(connection, request)
                if not go_on:
                    await connection.close()
                self.handled += 1
                if not go_on:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:
            self.errors.append(exc)
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in self._writers:
            writer.close()  # each connection's task then reads the end of it, and returns
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=WAIT)
            assert not stuck, "the bot's connections did not end"
        await self._server.wait_closed()


# -- the table ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Say:
    user: str
    body: str
    expect: Expect


WARM_UP = Say("alice", "warm-up", "to {alice}: warm-up")  # so that HOSTILE comes on a connection used before
AFTER = Say("bob", "after", "to {bob}: after")  # the next, unrelated sender


@dataclass(frozen=True)
class Row:
    hostile: Hostile
    says: list[Say]  # in order, each one's outcome awaited before the next
    outcomes: dict[str, int]  # bot_requests_total by outcome for the says (the health check adds its own)
    connections: int  # that the raw bot accepted
    greeting: bytes = b""
    pause: float = 0.0  # after each say, once the bot is done with it: for what the bot writes later to arrive
    timeout: float = 5.0  # bot.timeout
    path: str = "/bot/{local}"  # of bot.url
    target: str = "/bot/echo"  # of every request the bot sees


def bad_reply(data: bytes, error: Err) -> Row:
    """A reply the client must refuse, after one good exchange on the same connection; the next sender's request
    goes on a new connection."""
    return Row(raw(data), [WARM_UP, Say("alice", HOSTILE, error), AFTER], {"replied": 2, "unusable": 1}, 2)


JSON = "Content-Type: application/json"
BODY = json.dumps({"body": "this reply must not get through"}).encode()
BIG_HEAD = [f"X-Pad-{i}: {'p' * 1000}" for i in range(70)]

ROWS: dict[str, Row] = {
    "status-superscript-two": bad_reply(response("²00 OK", BODY, JSON), not_http("invalid status code")),
    "status-2000": bad_reply(response("2000 OK", BODY, JSON), not_http("invalid response status")),
    "two-differing-content-lengths": bad_reply(
        response("200 OK", BODY, JSON, f"Content-Length: {len(BODY)}", "Content-Length: 2", length=False),
        not_http("duplicate Content-Length"),
    ),
    "content-length-minus-3": bad_reply(
        response("200 OK", BODY, JSON, "Content-Length: -3", length=False),
        not_http("invalid character in Content-Length"),
    ),
    "content-length-minus-1": bad_reply(
        response("200 OK", b"", JSON, "Content-Length: -1", length=False),
        not_http("invalid character in Content-Length"),
    ),
    "content-length-1_0": bad_reply(
        response("200 OK", b'{"a":"bc"}', JSON, "Content-Length: 1_0", length=False),
        not_http("invalid character in Content-Length"),
    ),
    "chunk-size-0x2": bad_reply(
        response("200 OK", b'0x2\r\n""\r\n0\r\n\r\n', JSON, "Transfer-Encoding: chunked", length=False),
        not_http("invalid character in chunk size"),
    ),
    "header-section-over-64k": bad_reply(
        response("200 OK", BODY, JSON, *BIG_HEAD), unusable("the bot's reply has a header section over 65536 bytes")
    ),
    "reply-never-completes": Row(
        raw(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"),
        [WARM_UP, Say("alice", HOSTILE, GATEWAY_TIMEOUT), AFTER],
        {"replied": 2, "timeout": 1},
        2,
        timeout=1.0,
    ),
    # The request was written once: nothing is retried after it, so the bot saw one POST, not two.
    "headers-then-close": Row(
        then_close(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"),
        [WARM_UP, Say("alice", HOSTILE, unusable("the bot closed the connection in the middle of its reply")), AFTER],
        {"replied": 2, "unusable": 1},
        2,
    ),
    "close-right-after-reading-the-request": Row(
        then_close(b""),
        [WARM_UP, Say("alice", HOSTILE, CONNECTION_FAILURE), AFTER],
        {"replied": 2, "connection_error": 1},
        2,
    ),
    # A 202 asks for nothing: alice gets no message (her next stanza's reply is the next thing she receives), and
    # its body is read, so the connection is kept for the stanzas after it.
    "202-with-a-body": Row(
        raw(response("202 Accepted", b"queued", "Content-Type: text/plain")),
        [Say("alice", HOSTILE, None), Say("alice", "again", "to {alice}: again"), AFTER],
        {"silent": 1, "replied": 2},
        1,
    ),
    # A second copy of alice's reply, written on the idle connection: bob must not get it as his.
    "extra-response-on-an-idle-connection": Row(
        answer_then(echo, 0.05),
        [Say("alice", HOSTILE, "to {alice}: hostile"), AFTER],
        {"replied": 2},
        2,
        pause=0.05,
    ),
    # A bot that answers before reading the request: that answer cannot be told from the reply, so alice gets it;
    # her real reply then arrives on the idle connection, which is dropped, so bob gets his own.
    "speaks-before-the-request": Row(
        answer,
        [Say("alice", HOSTILE, "good day"), AFTER],
        {"replied": 2},
        2,
        greeting=json_response("good day"),
        pause=0.05,
    ),
    # Stray bytes after a reply that has no body, on the idle connection: they must not become the next reply.
    "204-then-stray-body-bytes": Row(
        no_content_then_stray,
        [Say("alice", HOSTILE, None), AFTER],
        {"silent": 1, "replied": 1},
        2,
        pause=0.05,
    ),
    "stale-idle-connection-closed-by-the-bot": Row(
        answer_then_close,
        [Say("alice", HOSTILE, "to {alice}: hostile"), AFTER],
        {"replied": 2},
        2,
        pause=0.05,
    ),
    # The raw bot sees the request-target percent-encoded as UTF-8.
    "non-ascii-url-path": Row(
        answer,
        [Say("alice", "hi", "to {alice}: hi"), AFTER],
        {"replied": 2},
        1,
        path="/bøt/{local}",
        target="/b%C3%B8t/echo",
    ),
}

MIXED_UP = "extra-response-on-an-idle-connection"  # the row run on every server
CASES = [pytest.param("prosody", row, id=f"prosody-{name}") for name, row in ROWS.items()] + [
    pytest.param("ejabberd", ROWS[MIXED_UP], id=f"ejabberd-{MIXED_UP}")
]


def error_of(message: Message) -> Err:
    assert message["type"] == "error", message
    return message["error"]["type"], message["error"]["condition"], message["error"]["text"]


def outcomes(app: App) -> Counter[str]:
    """bot_requests_total by outcome, those recorded only."""
    found: Counter[str] = Counter()
    for family in app.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == "bot_requests_total" and sample.value:
                found[sample.labels["outcome"]] = int(sample.value)
    return found


async def log_out(clients: Iterable[Client]) -> None:
    clients = list(clients)
    waits = [client.disconnected for client in clients]  # slixmpp replaces the future once a disconnect completes
    for client in clients:
        client.disconnect(wait=0.5)
    for waiting in waits:
        with suppress(TimeoutError):
            await asyncio.wait_for(waiting, 2)


@pytest.mark.parametrize(("server", "row"), CASES, indirect=["server"])
async def test_hostile_bot(server: XmppServer, row: Row, bot: Bot, start_component: StartComponent) -> None:
    before = open_fds()
    raw_bot = RawBot(row.hostile, row.greeting)
    users: dict[str, Client] = {}
    started: App | None = None
    try:
        port = await raw_bot.start()
        url = f"http://127.0.0.1:{port}{row.path}"
        app = started = await start_component(bot={"url": url, "routes": {"good": bot.url}, "timeout": row.timeout})
        users = dict(zip(USERS, await asyncio.gather(*(login(server, user) for user in USERS)), strict=True))
        jids = {user: str(client.boundjid) for user, client in users.items()}

        for done, say in enumerate(row.says, 1):
            sender = users[say.user]
            sender.say(ECHO, say.body)
            if say.expect is not None:
                got = await sender.next_message()
                assert str(got["from"]) == ECHO
                if isinstance(say.expect, str):
                    assert (got["type"], got["body"]) == ("chat", say.expect.format(**jids)), f"{say.user}'s reply"
                else:
                    assert error_of(got) == say.expect, f"{say.user}'s error"
            await eventually(
                lambda: sum(outcomes(app).values()) == done and raw_bot.handled == len(raw_bot.requests),  # noqa: B023
                f"the end of {say.user}'s {say.body!r}",
            )
            await asyncio.sleep(row.pause)

        # every stanza was POSTed exactly once, where bot.url says
        assert Counter(request.body for request in raw_bot.requests) == Counter(say.body for say in row.says)
        assert {request.target for request in raw_bot.requests} == {row.target}
        assert (raw_bot.connections, raw_bot.errors) == (row.connections, [])

        # and the process is healthy: another user's message to a well-behaved bot gets its reply
        carol = users["carol"]
        carol.say(GOOD, "are you well")
        got = await carol.next_message()
        assert (got["type"], str(got["from"]), got["body"]) == ("chat", GOOD, "Did you say are you well?")
        assert {user: client.messages.qsize() for user, client in users.items()} == dict.fromkeys(USERS, 0)
        assert outcomes(app) == Counter(row.outcomes) + Counter(replied=1)
        assert metric(app, "internal_errors_total") == 0
        assert metric(app, "xmpp_connects_total") == 1  # the stream was never dropped
    finally:
        await log_out(users.values())
        if started is not None:
            await started.stop()
        await raw_bot.stop()

    # no descriptor leaked: the test's own sockets are closed, and the component is stopped
    with suppress(AssertionError):
        await eventually(lambda: len(open_fds()) == len(before), "the descriptors to close", timeout=2)
    after = open_fds()
    assert len(after) == len(before), {"opened": sorted(after.items() - before.items())}


def test_idn_bot_host() -> None:
    """An IDN host cannot be served on loopback: the config accepts one, and the client connects to its A-label."""
    config = from_dict({"component": {"jid": COMPONENT, "secret": "s"}, "bot": {"url": "http://café.example/"}}, env={})
    assert config.bot.url == "http://café.example/"
    target = parse_url(config.bot.url)
    assert (target.host, target.port, target.target, target.host_header) == (
        "xn--caf-dma.example",
        80,
        "/",
        "xn--caf-dma.example",
    )
