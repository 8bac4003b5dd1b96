"""Our HTTP servers against hostile clients: real servers (component.http_server.serve) on loopback, raw sockets.

Slow or silent connections are closed, the connection cap holds while the first connections are served, a
flood under a low descriptor limit leaves the process working with a few log lines, and a refused upload is
not read.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest
from aiohttp import web

from component.api import server as api_server
from component.api.iq import IqWaiter
from component.api.server import make_app as api_app
from component.config import from_dict
from component.http_server import API_LIMITS, Served, ServerLimits, serve
from component.metrics import Metrics
from component.stanza import Stanza

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "api-token-0123"


def trivial_app() -> web.Application:
    async def ok(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/", ok)
    return app


@asynccontextmanager
async def serving(limits: ServerLimits, app: web.Application | None = None) -> AsyncIterator[Served]:
    served = await serve(app or trivial_app(), "test.listen", "127.0.0.1", 0, limits)
    try:
        yield served
    finally:
        await served.close()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Connect = Callable[[int], Awaitable[Connection]]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Opens raw client connections; closes them after the test."""
    writers: list[asyncio.StreamWriter] = []

    async def connect_(port: int) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writers.append(writer)
        return reader, writer

    yield connect_
    for writer in writers:
        writer.close()


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> float:
    """Seconds until the server closed the connection (EOF or reset); fails after `seconds`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(seconds):
        with suppress(ConnectionError):
            while await reader.read(65536):
                pass
    return loop.time() - start


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str = "/") -> tuple[bytes, bytes]:
    """One GET on an open connection: (status line, body)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.split(b"\r\n")
    length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
    return lines[0], await reader.readexactly(length)


async def fresh_get(port: int, path: str = "/") -> tuple[bytes, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        return await get(reader, writer, path)
    finally:
        writer.close()


async def wait_until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.01)


# -- slow and idle connections ----------------------------------------------------------------------------------


async def test_a_slow_request_head_is_closed_after_the_header_timeout(connect: Connect) -> None:
    async with serving(ServerLimits(header_timeout=0.5, keepalive_timeout=30)) as served:
        silent, _w1 = await connect(served.port)  # sends nothing
        slow, slow_writer = await connect(served.port)  # a header line every 0.1 s, never the blank line
        slow_writer.write(b"GET / HTTP/1.1\r\nHost: test\r\n")

        async def trickle() -> None:
            with suppress(ConnectionError):
                for n in range(100):
                    await asyncio.sleep(0.1)
                    slow_writer.write(f"X-Slow-{n}: 1\r\n".encode())
                    await slow_writer.drain()

        trickling = asyncio.create_task(trickle())
        good = await fresh_get(served.port)  # meanwhile a real request is answered
        waited = await asyncio.gather(closed_within(silent, 3), closed_within(slow, 3))
        trickling.cancel()
        assert good == (b"HTTP/1.1 200 OK", b"ok")
        assert all(0.3 < w < 1.5 for w in waited), waited  # not 3630 s (aiohttp's default keep-alive)
        assert served.head_timeouts == 2
        await wait_until(lambda: served.open_connections == 0)


async def test_an_idle_keep_alive_connection_is_closed(connect: Connect) -> None:
    async with serving(ServerLimits(header_timeout=30, keepalive_timeout=0.5)) as served:
        reader, writer = await connect(served.port)
        assert await get(reader, writer) == (b"HTTP/1.1 200 OK", b"ok")
        await asyncio.sleep(0.2)
        assert await get(reader, writer) == (b"HTTP/1.1 200 OK", b"ok")  # kept alive within the timeout
        assert 0.3 < await closed_within(reader, 3) < 1.5
        # A later request head that is never finished is bounded by the keep-alive timeout too.
        reader, writer = await connect(served.port)
        assert await get(reader, writer) == (b"HTTP/1.1 200 OK", b"ok")
        writer.write(b"GET / HTTP/1.1\r\nHost: te")
        assert await closed_within(reader, 3) < 1.5
        assert served.head_timeouts == 0


# -- the connection cap -----------------------------------------------------------------------------------------


async def test_past_the_cap_new_connections_are_closed_at_once_and_the_first_are_served(connect: Connect) -> None:
    async with serving(ServerLimits(max_connections=3, header_timeout=30)) as served:
        first = [await connect(served.port) for _ in range(3)]
        await wait_until(lambda: served.open_connections == 3)
        extra, _ = await connect(served.port)
        assert await closed_within(extra, 1) < 0.5
        assert served.refused == 1
        for reader, writer in first:
            assert await get(reader, writer) == (b"HTTP/1.1 200 OK", b"ok")
        first[0][1].close()  # one leaves: a new one gets in
        await wait_until(lambda: served.open_connections == 2)
        assert await fresh_get(served.port) == (b"HTTP/1.1 200 OK", b"ok")


async def test_the_cap_is_lowered_to_leave_descriptors_to_the_process(caplog: pytest.LogCaptureFixture) -> None:
    import resource

    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    reserve = max(0, soft - 10)  # leaves room for 10 connections, whatever the limit here is
    async with serving(ServerLimits(max_connections=100, fd_reserve=reserve)) as one:
        assert one.max_connections == min(100, soft - reserve)
        async with serving(ServerLimits(max_connections=100, fd_reserve=reserve)) as other:
            assert other.max_connections == 0  # the first server took the room: together they stay under
    assert sum("at most" in r.getMessage() for r in caplog.records) == 2


# -- a flood under a low descriptor limit, in a process of its own -------------------------------------------------

SERVER = r"""
import asyncio, json, logging, resource, socket, sys, tempfile
resource.setrlimit(resource.RLIMIT_NOFILE, (200, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
from aiohttp import web
from component.http_server import ServerLimits, serve

mode, loop_name = sys.argv[1], sys.argv[2]

async def ok(_request):
    return web.Response(text="ok")

async def probe(_request):  # what the rest of the process needs: a new file and a new socket
    with tempfile.TemporaryFile(), socket.socket():
        return web.Response(text="fds ok")

def app():
    app = web.Application()
    app.router.add_get("/", ok)
    app.router.add_get("/probe", probe)
    return app

async def main():
    if mode == "reserve":  # the default reserve of 128 under a limit of 200: 8 for one, 64 (not 256) for the other
        other = await serve(app(), "web.listen", "127.0.0.1", 0, ServerLimits(max_connections=8, header_timeout=2))
        flooded = await serve(app(), "api.listen", "127.0.0.1", 0, ServerLimits(header_timeout=2))
    else:  # no reserve: accept() itself runs out of descriptors
        other = None
        flooded = await serve(app(), "api.listen", "127.0.0.1", 0,
                              ServerLimits(max_connections=1000, fd_reserve=0, header_timeout=2))
    print(flooded.port, other.port if other else 0, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    stats = {"cap": flooded.max_connections, "refused": flooded.refused,
             "head_timeouts": flooded.head_timeouts, "accept_failures": flooded.accept_failures}
    for served in (flooded, other):
        if served is not None:
            await served.close()
    print(json.dumps(stats), flush=True)

if loop_name == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
"""


def flood(port: int, count: int) -> list[socket.socket]:
    """`count` connections that send nothing."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        with suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        sockets.append(sock)
    return sockets


async def until_answered(port: int, path: str, seconds: float) -> tuple[bytes, bytes]:
    async with asyncio.timeout(seconds):
        while True:
            with suppress(ConnectionError, asyncio.IncompleteReadError, TimeoutError):
                return await fresh_get(port, path)
            await asyncio.sleep(0.1)


@asynccontextmanager
async def server_process(mode: str, loop: str, log: Path) -> AsyncIterator[tuple[int, int, dict[str, int]]]:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with log.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVER, mode, loop, cwd=ROOT, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ports = (await asyncio.wait_for(proc.stdout.readline(), 10)).split()
        stats: dict[str, int] = {}
        yield int(ports[0]), int(ports[1]), stats
        proc.stdin.write(b"stop\n")
        stats.update(json.loads(await asyncio.wait_for(proc.stdout.readline(), 10)))
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def log_lines(log: Path) -> list[str]:
    return log.read_text().splitlines()


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_a_flood_under_a_low_fd_limit_leaves_the_process_working(loop: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    async with server_process("reserve", loop, log) as (port, other_port, stats):
        sockets = flood(port, 400)
        try:
            await asyncio.sleep(0.5)
            # During the flood the process still opens files and sockets, and its other server answers.
            assert await fresh_get(other_port, "/probe") == (b"HTTP/1.1 200 OK", b"fds ok")
            # Once the header timeout has closed the silent connections, a fresh one is served again.
            assert await until_answered(port, "/", 6) == (b"HTTP/1.1 200 OK", b"ok")
        finally:
            for sock in sockets:
                sock.close()
    lines = log_lines(log)
    assert stats["cap"] == 64 and stats["accept_failures"] == 0
    assert stats["refused"] >= 200 and stats["head_timeouts"] >= 60, stats  # the rest of the 400 still in SYN retry
    assert sum("at most 64 open connections instead of 256" in line for line in lines) == 1
    assert not any("Traceback" in line for line in lines)
    assert len(lines) < 12, lines  # the first refusal, the first header timeout, their counts: not a line each


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_accept_failures_pause_and_are_logged_once(loop: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    async with server_process("emfile", loop, log) as (port, _, stats):
        sockets = flood(port, 400)
        try:
            await asyncio.sleep(1.5)
        finally:
            for sock in sockets:
                sock.close()
        assert await until_answered(port, "/", 8) == (b"HTTP/1.1 200 OK", b"ok")
    lines = log_lines(log)
    assert stats["accept_failures"] >= 1, stats
    assert 1 <= sum("accept() failed" in line for line in lines) <= 3, lines
    assert not any("Traceback" in line for line in lines)
    assert len(lines) < 12, lines


# -- a refused upload is not read -------------------------------------------------------------------------------

BIG = 50 * 1024 * 1024


async def start_api() -> Served:
    config = from_dict(
        {
            "component": {"jid": "bot.localhost", "secret": "s3cret"},
            "bot": {"url": "http://127.0.0.1:9/"},
            "api": {"listen": "127.0.0.1:0", "token": TOKEN},
        },
        env={},
    )
    app = api_app(config, Metrics(), lambda: True, lambda _stanzas: True, IqWaiter())
    return await serve(app, "api.listen", "127.0.0.1", 0, API_LIMITS)


@pytest.mark.parametrize(
    ("status", "headers", "chunked"),
    [
        (413, f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n", False),
        (401, "Authorization: Bearer wrong\r\nContent-Type: application/json\r\n", True),
        (415, f"Authorization: Bearer {TOKEN}\r\nContent-Type: text/plain\r\n", True),
    ],
)
async def test_a_refused_upload_is_closed_at_once(status: int, headers: str, chunked: bool, connect: Connect) -> None:
    served = await start_api()
    try:
        reader, writer = await connect(served.port)
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {BIG}"
        writer.write(f"POST /v1/stanzas HTTP/1.1\r\nHost: test\r\n{framing}\r\n{headers}\r\n".encode())
        piece = b"x" * 65536
        if chunked:
            piece = b"10000\r\n" + piece + b"\r\n"
        written = 0

        async def upload() -> str:  # about 3 MiB/s: today's server would read it for 10 s (aiohttp's lingering)
            nonlocal written
            try:
                while written < BIG:
                    writer.write(piece)
                    written += 65536
                    await writer.drain()
                    await asyncio.sleep(0.02)
            except ConnectionError:
                return "closed by the server"
            return "all written"

        uploading = asyncio.create_task(upload())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        loop = asyncio.get_running_loop()
        refused_at, written_then = loop.time(), written
        assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
        assert b"\r\nConnection: close\r\n" in head
        assert await asyncio.wait_for(uploading, 5) == "closed by the server"
        assert loop.time() - refused_at < 1.0  # today: 10 s
        assert written - written_then < 4 * 1024 * 1024  # what was in flight, not 30 MiB
    finally:
        await served.close()


async def test_a_trickled_body_is_cut_off(connect: Connect, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_server, "BODY_SECONDS", 0.5)
    served = await start_api()
    try:
        reader, writer = await connect(served.port)
        writer.write(
            f"POST /v1/stanzas HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
        )

        async def trickle() -> None:
            with suppress(ConnectionError):
                for _ in range(50):  # a byte every 0.1 s: the whole body would take 10 s
                    writer.write(b" ")
                    await writer.drain()
                    await asyncio.sleep(0.1)

        trickling = asyncio.create_task(trickle())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert await closed_within(reader, 3) < 3
        trickling.cancel()
    finally:
        await served.close()


# -- the send API's iq waiting ----------------------------------------------------------------------------------


def iq(type_: str, to: str, from_: str, id_: str = "q1") -> Stanza:
    return Stanza("iq", to, from_, type_, id_, None, f"<iq type='{type_}' id='{id_}'/>")


async def test_only_the_account_asked_answers_an_iq_and_an_error_may_come_from_its_server() -> None:
    waiter = IqWaiter()
    sent: list[Stanza] = []

    def send_all(stanzas: list[Stanza]) -> bool:
        sent.extend(stanzas)
        return True

    asking = asyncio.create_task(waiter.ask(iq("get", "alice@localhost/phone", "bot.localhost"), 5, send_all))
    await wait_until(lambda: bool(sent))
    with pytest.raises(ValueError, match="already waiting"):
        await waiter.ask(iq("get", "bob@localhost", "bot.localhost"), 5, send_all)
    assert waiter.take(iq("result", "bot.localhost", "mallory@localhost/x"))  # consumed, but not the answer
    assert not waiter.take(iq("result", "bot.localhost", "alice@localhost/phone", "other-id"))
    assert not waiter.take(iq("get", "bot.localhost", "alice@localhost/phone"))
    answer = iq("result", "bot.localhost", "alice@localhost/phone")
    assert waiter.take(answer)
    assert await asking is answer
    assert not waiter.take(answer)  # nothing waits any more

    from_server = iq("error", "bot.localhost", "localhost")
    asking = asyncio.create_task(waiter.ask(iq("get", "alice@localhost", "bot.localhost"), 5, send_all))
    await wait_until(lambda: len(sent) == 2)
    assert waiter.take(from_server)
    assert await asking is from_server


async def test_an_iq_that_cannot_be_sent_or_is_not_answered_gives_none() -> None:
    waiter = IqWaiter()
    assert await waiter.ask(iq("get", "alice@localhost", "bot.localhost"), 5, lambda _s: False) is None
    assert await waiter.ask(iq("get", "alice@localhost", "bot.localhost"), 0.05, lambda _s: True) is None
    assert not waiter.take(iq("result", "bot.localhost", "alice@localhost"))
