"""A small HTTP/1.1 client for the bot requests, on asyncio protocols: keep-alive connections per origin, one
request at a time on each, replies framed by Content-Length, chunked encoding or the connection's end, and a
cap on what is read. It does what the bot flow needs and nothing else (no redirects, cookies, proxies or
compression), at a fraction of a general client's cost per request: see docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

MAX_HEAD = 65536  # bytes of status line and headers
IDLE_SECONDS = 4.0  # an idle connection older than this is closed, not reused (servers drop theirs at ~5 s)


class HttpError(Exception):
    """The request could not be made or its reply could not be read (connection refused, reset, bad framing)."""


class TooLarge(Exception):
    """The reply body is larger than allowed."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points: origin (scheme, host, port) and the request target."""

    scheme: str
    host: str
    port: int
    target: str
    host_header: str


@lru_cache(maxsize=4096)
def target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpError(f"not an http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    default = port == (443 if parts.scheme == "https" else 80)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return Target(parts.scheme, parts.hostname, port, path, host if default else f"{host}:{port}")


@dataclass(slots=True)  # not frozen: a frozen dataclass is built five times slower, on every stanza
class Reply:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection; `read` parses one reply from what has arrived."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.closed = False
        self.idle_since = 0.0
        self._waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.closed = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _more(self) -> None:
        """Wait for more bytes; HttpError when the connection ends instead."""
        if self.closed:
            raise HttpError("the server closed the connection before the reply was complete")
        self._waiter = asyncio.get_running_loop().create_future()
        await self._waiter
        self._waiter = None

    async def _until(self, marker: bytes, start: int, limit: int) -> int:
        while (end := self.buffer.find(marker, start)) < 0:
            if len(self.buffer) > limit:
                raise HttpError("the reply's header section is too large")
            await self._more()
        return end

    async def read(self, max_bytes: int) -> tuple[Reply, bool]:
        """One reply, and whether the connection may be reused. Only a 200's body is read (any other status says
        all there is to say); the connection of such a reply is not reused."""
        while True:
            end = await self._until(b"\r\n\r\n", 0, MAX_HEAD)
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            status_line, _, header_text = head.partition("\r\n")
            version, _, rest = status_line.partition(" ")
            code = rest[:3]
            if not version.startswith("HTTP/1.") or not code.isdigit():
                raise HttpError(f"not an HTTP/1.x reply: {status_line[:80]!r}")
            status = int(code)
            headers = {}
            for line in header_text.split("\r\n"):
                name, sep, value = line.partition(":")
                if sep:
                    headers[name.strip().lower()] = value.strip()
            if status >= 200:
                break  # 1xx (100 Continue, 103 Early Hints) precede the real reply
        keep = headers.get("connection", "").lower() != "close" and (
            version != "HTTP/1.0" or headers.get("connection", "").lower() == "keep-alive"
        )
        if status in (204, 304):
            return Reply(status, headers, b""), keep
        if status != 200:
            return Reply(status, headers, b""), False
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return Reply(status, headers, await self._chunked(max_bytes)), keep
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise HttpError("the reply's Content-Length is not a number") from None
            if length > max_bytes:
                raise TooLarge
            while len(self.buffer) < length:
                await self._more()
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
            return Reply(status, headers, body), keep
        while not self.closed:  # framed by the end of the connection
            if len(self.buffer) > max_bytes:
                raise TooLarge
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if len(self.buffer) > max_bytes:
            raise TooLarge
        return Reply(status, headers, bytes(self.buffer)), False

    async def _chunked(self, max_bytes: int) -> bytes:
        body = bytearray()
        while True:
            end = await self._until(b"\r\n", 0, 4096)
            size_text = bytes(self.buffer[:end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError("bad chunk size in the reply") from None
            del self.buffer[: end + 2]
            if size == 0:
                await self._until(b"\r\n", 0, MAX_HEAD)  # trailers end with an empty line
                while not self.buffer.startswith(b"\r\n"):
                    end = await self._until(b"\r\n", 0, MAX_HEAD)
                    del self.buffer[: end + 2]
                del self.buffer[:2]
                return bytes(body)
            if len(body) + size > max_bytes:
                raise TooLarge
            while len(self.buffer) < size + 2:
                await self._more()
            body += self.buffer[:size]
            del self.buffer[: size + 2]


class Client:
    """Keep-alive connections per origin; at most one request on each at a time."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str], max_bytes: int) -> Reply:
        """POST `body`; the reply body is read for status 200 only, and only up to `max_bytes` (else TooLarge)."""
        t = target(url)
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {t.target} HTTP/1.1\r\nHost: {t.host_header}\r\n{self._fixed}{extra}"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1") + body
        key = (t.scheme, t.host, t.port)
        conn, reused = self._take(key), True
        if conn is None:
            conn, reused = await self._open(t), False
        try:
            assert conn.transport is not None
            conn.transport.write(request)
            reply, keep = await conn.read(max_bytes)
        except HttpError:
            conn.transport.close()  # type: ignore[union-attr]
            if reused and not conn.buffer and conn.closed:
                # The server closed an idle connection as we reused it (nothing of a reply came): once more.
                return await self.post(url, body, headers, max_bytes)
            raise
        except BaseException:  # timeout, cancellation, TooLarge: the connection's state is unknown
            conn.transport.close()  # type: ignore[union-attr]
            raise
        if keep and not conn.closed and not conn.buffer:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(key, deque()).append(conn)
        else:
            conn.transport.close()
        return reply

    def _take(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been dropped by the server
            if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                return conn
            assert conn.transport is not None
            conn.transport.close()
        return None

    async def _open(self, t: Target) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if t.scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        try:
            _, conn = await loop.create_connection(
                _Connection, t.host, t.port, ssl=context, server_hostname=t.host if context else None
            )
        except OSError as exc:
            raise HttpError(f"cannot connect to {t.host}:{t.port}: {exc.strerror or exc}") from None
        return conn

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                if conn.transport is not None:
                    conn.transport.close()
        self._idle.clear()
