"""The bot flow's HTTP/1.1 client against real servers on loopback: aiohttp's, and raw ones for odd framing."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from xmpp_servers import free_port

from component.http1 import Client, HttpError, TooLarge

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


@pytest.fixture
async def raw() -> AsyncIterator[Callable[[bytes], Awaitable[tuple[str, list[bytes]]]]]:
    """A raw TCP server that answers every request with the given bytes, then closes; yields (URL, requests)."""
    servers: list[asyncio.Server] = []

    async def start(answer: bytes) -> tuple[str, list[bytes]]:
        seen: list[bytes] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            seen.append(head + await reader.readexactly(length))
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", seen

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def test_content_length_reply_and_keep_alive(serve: Callable[..., Awaitable[tuple[str, list[object]]]]) -> None:
    async def handler(request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/json"
        assert request.headers["Host"] == request.url.host + f":{request.url.port}"
        assert request.query_string == "a=1"
        return web.json_response({"got": (await request.read()).decode()})

    base, peers = await serve(handler)
    client = Client({"User-Agent": "t"})
    for i in range(3):
        reply = await client.post(f"{base}/bot?a=1", f"body{i}".encode(), {"Content-Type": "application/json"}, 1000)
        assert (reply.status, reply.headers["content-type"], reply.body) == (
            200,
            "application/json; charset=utf-8",
            f'{{"got": "body{i}"}}'.encode(),
        )
    assert len(set(peers)) == 1  # one connection, kept alive
    client.close()


async def test_chunked_reply(serve: Callable[..., Awaitable[tuple[str, list[object]]]]) -> None:
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
    assert (await client.post(base, b"x", {}, 1000)).body == b"hello world"
    assert (await client.post(base, b"x", {}, 1000)).body == b"hello world"
    assert len(set(peers)) == 1
    with pytest.raises(TooLarge):
        await client.post(base, b"x", {}, 5)
    client.close()


async def test_other_statuses_are_read_without_their_body(
    serve: Callable[..., Awaitable[tuple[str, list[object]]]],
) -> None:
    async def handler(request: web.Request) -> web.Response:
        status = int(request.query["s"])
        return web.Response(status=status, body=None if status == 204 else b"x" * 10000)

    base, peers = await serve(handler)
    client = Client({})
    assert (await client.post(f"{base}/?s=500", b"", {}, 100)).status == 500  # a big error page is not "too large"
    assert (await client.post(f"{base}/?s=204", b"", {}, 100)).status == 204
    assert (await client.post(f"{base}/?s=204", b"", {}, 100)).status == 204
    assert len(set(peers)) == 2  # the 500's connection was dropped; the 204s shared one
    client.close()


async def test_oversized_content_length_is_refused_before_reading(
    serve: Callable[..., Awaitable[tuple[str, list[object]]]],
) -> None:
    async def handler(_request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 1_000_000)

    base, _ = await serve(handler)
    client = Client({})
    with pytest.raises(TooLarge):
        await client.post(base, b"", {}, 1000)
    client.close()


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        pytest.param(
            b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{"a": 1}', b'{"a": 1}', id="framed-by-close"
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            b"ok",
            id="100-continue-first",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nok\r\n0\r\nT: 1\r\n\r\n",
            b"ok",
            id="chunk-extension-and-trailer",
        ),
    ],
)
async def test_raw_framings(
    raw: Callable[[bytes], Awaitable[tuple[str, list[bytes]]]], answer: bytes, body: bytes
) -> None:
    url, seen = await raw(answer)
    client = Client({"User-Agent": "t"})
    assert (await client.post(url + "/p", b"hello", {"X-A": "b"}, 1000)).body == body
    assert seen[0].startswith(b"POST /p HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nUser-Agent: t\r\nX-A: b\r\nContent-Length: 5\r\n\r\nhello" in seen[0]
    client.close()


async def test_a_keep_alive_connection_found_dead_is_retried_once_on_a_new_one() -> None:
    """The server keeps each connection for one request only, without saying so: the second request on it
    meets the connection's end before any reply, and goes out again on a fresh connection."""
    requests: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            for turn in range(2):
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
                requests.append(turn)
                if turn == 1:
                    break  # the second request on a connection: close without a word
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
    client = Client({})
    try:
        assert (await client.post(url, b"1", {}, 100)).body == b"ok"
        assert (await client.post(url, b"2", {}, 100)).body == b"ok"
        assert requests == [0, 1, 0]  # the dead connection saw the request, the new one answered it
    finally:
        client.close()
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["not-http", "bad-length", "cut-short", "bad-chunk"],
)
async def test_broken_replies_are_http_errors(
    raw: Callable[[bytes], Awaitable[tuple[str, list[bytes]]]], answer: bytes
) -> None:
    url, _ = await raw(answer)
    client = Client({})
    with pytest.raises(HttpError):
        await client.post(url, b"", {}, 100)
    client.close()


async def test_connection_refused() -> None:
    with pytest.raises(HttpError, match="cannot connect"):
        await Client({}).post(f"http://127.0.0.1:{free_port()}/", b"", {}, 100)


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

    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"secure": request.secure})

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        with pytest.raises(HttpError, match="CERTIFICATE_VERIFY_FAILED"):  # not trusted yet
            await Client({}).post(url, b"", {}, 100)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        client = Client({})
        assert (await client.post(url, b"", {}, 100)).body == b'{"secure": true}'
        client.close()
    finally:
        await runner.cleanup()
