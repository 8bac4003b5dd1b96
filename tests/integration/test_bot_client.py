"""The bot flow's HTTP/1.1 client against real servers on loopback: aiohttp's, and raw ones playing hostile bots."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from component.bot.client import (
    BadReply,
    Client,
    ClientError,
    ConnectionFailed,
    TimedOut,
    TooLarge,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Script = Callable[["RawBot", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Outcome = tuple[int, bytes] | type[ClientError]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def deadline(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


# A raw TCP bot: `script` runs for each connection it accepts, with the bot to count requests and connections.


@dataclass
class RawBot:
    script: Script
    requests: int = 0
    connections: int = 0
    seen: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    tasks: set[asyncio.Task[object]] = field(default_factory=set)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/bot"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.writers.append(writer)
        self.connections += 1
        try:
            await self.script(self, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def request(self, reader: asyncio.StreamReader) -> int | None:
        """Read one request; its number (1, 2, ... over all connections), or None at the connection's end."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        self.seen.append(head + await reader.readexactly(length))
        self.requests += 1
        return self.requests

    def open_sockets(self) -> int:
        """The bot's own sockets still open: its listening one and the connections it has not closed."""
        return 1 + sum(int(writer.get_extra_info("socket").fileno() >= 0) for writer in self.writers)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.server.wait_closed()


def reply(status: str, body: bytes = b"", *headers: str, length: bool = True, version: str = "1.1") -> bytes:
    lines = [f"HTTP/{version} {status}", *headers] + ([f"Content-Length: {len(body)}"] if length else [])
    return "".join(f"{line}\r\n" for line in lines).encode() + b"\r\n" + body


def answers(
    respond: Callable[[int], bytes], then: Callable[[int], bytes] | None = None, pause: float = 0.0, close: bool = False
) -> Script:
    """A keep-alive bot: request n gets respond(n), and `pause` s later then(n) if given; `close`: then it closes."""

    async def script(bot: RawBot, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while (n := await bot.request(reader)) is not None:
            writer.write(respond(n))
            if then or close:
                await asyncio.sleep(pause)
            if then:
                writer.write(then(n))
            if close:
                return

    return script


def once(answer: bytes, hang: bool = False) -> Script:
    """Read one request, write `answer`, then close (or hang)."""

    async def script(bot: RawBot, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await bot.request(reader)
        writer.write(answer)
        await writer.drain()
        if hang:
            await asyncio.sleep(3600)

    return script


async def first_ok_then_close(bot: RawBot, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer the connection's first request; on the second, read it and close without a word."""
    writer.write(reply("200 OK", str(await bot.request(reader)).encode()))
    await bot.request(reader)


async def greets_first(bot: RawBot, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(reply("200 OK", b"hello"))  # before any request
    await answers(ok)(bot, reader, writer)


async def ten_ok(bot: RawBot, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while (n := await bot.request(reader)) is not None:
        writer.write(reply("200 OK", str(n).encode(), "Connection: keep-alive", version="1.0"))


def ok(n: int) -> bytes:
    return reply("200 OK", str(n).encode())


def chunked(chunks: bytes, trailer: bytes = b"") -> bytes:
    return reply("200 OK", chunks + b"0\r\n" + trailer + b"\r\n", "Transfer-Encoding: chunked", length=False)


CONTINUE = reply("100 Continue", length=False)
EARLY_HINTS = reply("103 Early Hints", b"", "Link: </a>", length=False)
BIG_HEAD = "".join(f"X-Pad-{i}: {'p' * 1000}\r\n" for i in range(70)).rstrip("\r\n")


@dataclass
class Case:
    script: Script
    outcomes: list[Outcome]  # of the calls, made one after the other
    requests: int  # that the bot saw
    connections: int | None = None  # that the bot accepted
    pause: float = 0.0  # between calls
    seconds: float = 3.0  # each call's deadline
    max_bytes: int = 1000


CASES = {
    "status-superscript-two": Case(once("HTTP/1.1 ²00 OK\r\nContent-Length: 0\r\n\r\n".encode()), [BadReply], 1),
    "status-2000": Case(once(b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n"), [BadReply], 1),
    "two-content-lengths": Case(
        once(reply("200 OK", b"ab", "Content-Length: 1", "Content-Length: 2", length=False)), [BadReply], 1
    ),
    "content-length-minus-3": Case(once(reply("200 OK", b"abc", "Content-Length: -3", length=False)), [BadReply], 1),
    "content-length-minus-1": Case(once(reply("200 OK", b"", "Content-Length: -1", length=False)), [BadReply], 1),
    "content-length-1_0": Case(once(reply("200 OK", b"x" * 10, "Content-Length: 1_0", length=False)), [BadReply], 1),
    "chunk-size-0x2": Case(
        once(reply("200 OK", b"0x2\r\nok\r\n0\r\n\r\n", "Transfer-Encoding: chunked", length=False)), [BadReply], 1
    ),
    "header-section-over-64k": Case(once(reply("200 OK", b"ok", BIG_HEAD)), [BadReply], 1),
    "header-line-never-ends": Case(once(b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * 200_000, hang=True), [BadReply], 1),
    "reply-never-completes": Case(
        once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab", hang=True), [TimedOut], 1, seconds=0.3
    ),
    "switching-protocols": Case(once(reply("101 Switching Protocols", b"", "Upgrade: x", length=False)), [BadReply], 1),
    "headers-then-close": Case(once(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), [BadReply], 1),
    "close-after-reading-request": Case(once(b""), [ConnectionFailed], 1),
    "close-after-request-on-reused-connection": Case(first_ok_then_close, [(200, b"1"), ConnectionFailed], 2, 1),
    "answers-twice-on-idle-connection": Case(
        answers(ok, then=ok, pause=0.05), [(200, b"1"), (200, b"2")], 2, 2, pause=0.3
    ),
    "extra-response-in-the-same-write": Case(
        answers(lambda n: ok(n) + ok(n)), [(200, b"1"), (200, b"2"), (200, b"3")], 3, 3
    ),
    "reply-and-the-start-of-another-in-the-same-write": Case(
        answers(lambda n: ok(n) + b"HTTP/1.1 200 OK\r\nContent-Le"), [(200, b"1"), (200, b"2")], 2, 2
    ),
    "speaks-before-the-next-request": Case(
        answers(ok, then=lambda n: reply("200 OK", b"unasked"), pause=0.05), [(200, b"1"), (200, b"2")], 2, 2, pause=0.3
    ),
    "greets-on-connect": Case(greets_first, [(200, b"hello"), (200, b"hello")], 2, 2, pause=0.1),
    "204-then-stray-body-bytes": Case(
        answers(
            lambda n: reply("204 No Content", length=False) if n == 1 else ok(n), then=lambda n: b"stray", pause=0.1
        ),
        [(204, b""), (200, b"2")],
        2,
        2,
        pause=0.3,
    ),
    "202-with-body-keeps-its-connection": Case(
        answers(lambda n: reply("202 Accepted", b"queued %d" % n)), [(202, b"queued 1"), (202, b"queued 2")], 2, 1
    ),
    "500-keeps-its-connection": Case(
        answers(lambda n: reply("500 Oops", b"oops %d" % n)), [(500, b"oops 1"), (500, b"oops 2")], 2, 1
    ),
    "500-body-over-64k-is-dropped-with-its-connection": Case(
        answers(lambda n: reply("500 Oops", b"x" * 70_000)), [(500, b""), (500, b"")], 2, 2
    ),
    "200-over-max-bytes": Case(answers(lambda n: reply("200 OK", b"x" * 2000)), [TooLarge, TooLarge], 2, 2),
    "chunked-200-over-max-bytes": Case(answers(lambda n: chunked(b"7d0\r\n" + b"x" * 2000 + b"\r\n")), [TooLarge], 1),
    "chunked-keeps-its-connection": Case(
        answers(lambda n: chunked(b"2;x=y\r\nok\r\n", b"T: 1\r\n")), [(200, b"ok"), (200, b"ok")], 2, 1
    ),
    "http-1.0-keep-alive": Case(ten_ok, [(200, b"1"), (200, b"2")], 2, 1),
    "http-1.0-without-keep-alive": Case(
        answers(lambda n: reply("200 OK", str(n).encode(), version="1.0")), [(200, b"1"), (200, b"2")], 2, 2
    ),
    "connection-close": Case(
        answers(lambda n: reply("200 OK", str(n).encode(), "Connection: close")), [(200, b"1"), (200, b"2")], 2, 2
    ),
    "body-framed-by-close": Case(once(reply("200 OK", b'{"a": 1}', length=False)), [(200, b'{"a": 1}')], 1),
    "body-framed-by-close-too-large": Case(once(reply("200 OK", b"x" * 2000, length=False)), [TooLarge], 1),
    "100-continue-and-103-first": Case(
        answers(lambda n: CONTINUE + EARLY_HINTS + ok(n)), [(200, b"1"), (200, b"2")], 2, 1
    ),
    "stale-idle-connection-closed-by-the-bot": Case(
        answers(ok, pause=0.05, close=True), [(200, b"1"), (200, b"2")], 2, 2, pause=0.3
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
async def test_hostile_bots(case: Case) -> None:
    before = open_fds()
    bot = RawBot(case.script)
    url = await bot.start()
    client = Client({"User-Agent": "t"})
    try:
        for i, expected in enumerate(case.outcomes):
            if i:
                await asyncio.sleep(case.pause)
            if isinstance(expected, tuple):
                got = await client.post(url, b"{}", {}, case.max_bytes, deadline(case.seconds))
                assert (got.status, got.body) == expected, f"call {i + 1}"
            else:
                with pytest.raises(expected) as info:
                    await client.post(url, b"{}", {}, case.max_bytes, deadline(case.seconds))
                assert str(info.value)
        await asyncio.sleep(0.05)  # what the bot does after its reply
        assert bot.requests == case.requests
        if case.connections is not None:
            assert bot.connections == case.connections
    finally:
        client.close()
        await asyncio.sleep(0.05)
        client_sockets = open_fds() - before - bot.open_sockets()  # measured while the bot still holds its end
        await bot.stop()
    await asyncio.sleep(0.05)
    assert (client_sockets, open_fds()) == (0, before)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ("HTTP/1.1 ²00 OK\r\n\r\n", "the bot's reply is not valid HTTP (invalid status code)"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n", "not valid HTTP (invalid character in Content-Length)"),
        ("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", "closed the connection in the middle of its reply"),
        ("", "the bot closed the connection without replying"),
    ],
    ids=["bad-status", "bad-length", "cut-short", "nothing"],
)
async def test_error_messages_say_what_happened(answer: str, message: str) -> None:
    bot = RawBot(once(answer.encode()))
    url = await bot.start()
    client = Client({})
    try:
        with pytest.raises(ClientError, match=re.escape(message)):
            await client.post(url, b"", {}, 100, deadline())
    finally:
        client.close()
        await bot.stop()


async def test_the_request_as_written() -> None:
    bot = RawBot(answers(ok))
    url = await bot.start()
    client = Client({"User-Agent": "t", "Accept": "application/json"})
    try:
        await client.post(url + "/é x?q=ü&a=%41", b"hello", {"Content-Type": "application/json"}, 100, deadline())
        port = url.split(":")[2].split("/")[0]
        assert bot.seen == [
            b"POST /bot/%C3%A9%20x?q=%C3%BC&a=%41 HTTP/1.1\r\nHost: 127.0.0.1:" + port.encode() + b"\r\n"
            b"User-Agent: t\r\nAccept: application/json\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5\r\n\r\nhello"
        ]
        with pytest.raises(ValueError, match="line break"):
            await client.post(url, b"", {"X-A": "b\r\nX-Injected: 1"}, 100, deadline())
        with pytest.raises(ConnectionFailed, match="not http or https"):
            await client.post("ftp://127.0.0.1/", b"", {}, 100, deadline())
    finally:
        client.close()
        await bot.stop()


async def test_an_outside_cancellation_propagates_and_leaks_nothing() -> None:
    before = open_fds()
    bot = RawBot(once(b"", hang=True))
    url = await bot.start()
    client = Client({})
    task = asyncio.create_task(client.post(url, b"", {}, 100, deadline()))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    client.close()
    await bot.stop()
    await asyncio.sleep(0.05)
    assert open_fds() == before


async def test_idle_connections_expire_and_the_pool_is_capped() -> None:
    before = open_fds()
    bot = RawBot(answers(ok))
    url = await bot.start()
    client = Client({}, max_idle_per_origin=2, idle_seconds=0.2)

    async def client_sockets() -> int:
        await asyncio.sleep(0.05)
        return open_fds() - before - bot.open_sockets()

    try:
        replies = await asyncio.gather(*(client.post(url, b"", {}, 100, deadline()) for _ in range(5)))
        assert sorted(r.body for r in replies) == [b"1", b"2", b"3", b"4", b"5"]
        assert (bot.connections, await client_sockets()) == (5, 2)  # three closed: two idle ones at most
        await asyncio.gather(*(client.post(url, b"", {}, 100, deadline()) for _ in range(3)))
        assert (bot.connections, await client_sockets()) == (6, 2)  # two reused, one new
        await asyncio.sleep(0.3)
        await client.post(url, b"", {}, 100, deadline())
        assert (bot.connections, await client_sockets()) == (7, 1)  # the idle ones were too old, and closed
    finally:
        client.close()
        await bot.stop()


async def test_a_timeout_while_connecting_leaks_nothing() -> None:
    """A TLS handshake that never ends: TimedOut at the deadline, and the socket is closed."""
    before = open_fds()
    bot = RawBot(lambda _bot, _reader, _writer: asyncio.sleep(3600))
    url = (await bot.start()).replace("http:", "https:")
    client = Client({})
    with pytest.raises(TimedOut, match=r"did not reply within 0\.2 s"):
        await client.post(url, b"", {}, 100, deadline(0.2))
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0  # the timer's cancellation was taken back
    with pytest.raises(TimedOut, match="deadline had passed"):
        await client.post(url, b"", {}, 100, deadline(-1))
    assert bot.connections == 1
    client.close()
    await bot.stop()
    await asyncio.sleep(0.05)
    assert open_fds() == before


async def test_connection_refused() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(ConnectionFailed, match=f"cannot connect to 127.0.0.1:{port}: Connection refused"):
        await Client({}).post(f"http://127.0.0.1:{port}/", b"", {}, 100, deadline())


# Against aiohttp's server


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[tuple[str, list[object]]]]]:
    """An aiohttp server with one handler; yields (base URL, the peers that connected, one per request)."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> tuple[str, list[object]]:
        peers: list[object] = []

        async def wrapped(request: web.Request) -> web.StreamResponse:
            peers.append(request.transport.get_extra_info("peername") if request.transport else None)
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", wrapped)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}", peers

    yield start
    for runner in runners:
        await runner.cleanup()


Serve = Callable[[Handler], Awaitable[tuple[str, list[object]]]]


async def test_aiohttp_content_length_and_keep_alive(serve: Serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Host"] == f"{request.url.host}:{request.url.port}"
        assert request.query_string == "a=1"
        return web.json_response({"got": (await request.read()).decode()})

    base, peers = await serve(handler)
    client = Client({"User-Agent": "t"})
    for i in range(3):
        got = await client.post(
            f"{base}/bot?a=1", b"body%d" % i, {"Content-Type": "application/json"}, 1000, deadline()
        )
        assert (got.status, got.content_type, got.body) == (
            200,
            "application/json; charset=utf-8",
            b'{"got": "body%d"}' % i,
        )
    assert len(set(peers)) == 1  # one connection, kept alive
    client.close()


async def test_aiohttp_chunked(serve: Serve) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"he", b"llo", b" world"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    base, peers = await serve(handler)
    client = Client({})
    assert (await client.post(base, b"x", {}, 1000, deadline())).body == b"hello world"
    assert (await client.post(base, b"x", {}, 1000, deadline())).body == b"hello world"
    assert len(set(peers)) == 1
    with pytest.raises(TooLarge):
        await client.post(base, b"x", {}, 5, deadline())
    client.close()


async def test_aiohttp_other_statuses_keep_their_body_and_connection(serve: Serve) -> None:
    async def handler(request: web.Request) -> web.Response:
        status = int(request.query["s"])
        return web.Response(status=status, body=None if status == 204 else b"x" * 10000)

    base, peers = await serve(handler)
    client = Client({})
    got = await client.post(f"{base}/?s=500", b"", {}, 100, deadline())  # a 10 kB error page is not "too large"
    assert (got.status, len(got.body)) == (500, 10000)
    got = await client.post(f"{base}/?s=204", b"", {}, 100, deadline())
    assert (got.status, got.body) == (204, b"")
    assert (await client.post(f"{base}/?s=202", b"", {}, 100, deadline())).status == 202
    assert len(set(peers)) == 1
    client.close()


async def test_aiohttp_oversized_content_length_is_refused_before_reading(serve: Serve) -> None:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1_000_000)

    base, _ = await serve(handler)
    client = Client({})
    with pytest.raises(TooLarge, match="larger than 1000 bytes"):
        await client.post(base, b"", {}, 1000, deadline())
    client.close()


async def test_https_with_the_system_trust_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """https bot URLs: TLS with certificate and host checks; SSL_CERT_FILE names the trusted roots, as for curl."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    peers: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({"secure": request.secure})

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        with pytest.raises(ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted yet
            await Client({}).post(url, b"", {}, 100, deadline())
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        client = Client({})
        for _ in range(2):
            assert (await client.post(url, b"", {}, 100, deadline())).body == b'{"secure": true}'
        assert len(set(peers)) == 1
        client.close()
    finally:
        await runner.cleanup()
