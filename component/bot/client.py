"""The bot flow's HTTP/1.1 client: one POST per stanza, on asyncio protocols with keep-alive connections per
origin, replies framed by llhttp (httptools): Content-Length, chunked, or the connection's end; 1xx skipped.

A connection goes back to the pool only when its reply ended cleanly, the bot allowed keep-alive and nothing more
came after the reply: bytes on an idle connection close it at once, so a request never gets a reply meant for
another one (bytes a bot sends on a new connection before the request cannot be told from its reply; the
connection is dropped when more follow). Idle connections older than `idle_seconds` are closed, and at most
`max_idle_per_origin` are kept. Any status's body is read (past 64 KiB, a non-200's is dropped with its
connection), so a bot answering 202 or 500 keeps its connection.

Retries: a POST is not idempotent, so the request is written once, on one connection. A pooled connection that
is found closed, closing or too old when taken (it saw EOF, a reset or stray bytes while idle) never got the
request: it is dropped and another one (pooled or new) is used. Once the request is written nothing is retried:
a bot that closes after reading it, or after part of its reply, saw the POST exactly once, and the caller gets
ConnectionFailed (no byte of a reply came) or BadReply (part of one did). The rare cost: a server that closes an
idle connection just as we write on it makes that one request fail instead of being sent twice.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, urlsplit

from httptools import HttpParserError, HttpParserUpgrade, HttpResponseParser

MAX_HEAD = 65536  # bytes of a reply's header section
MAX_OTHER_BODY = 65536  # bytes read of a reply body whose status is not 200; past it the body is dropped


class ClientError(Exception):
    """The bot could not be asked or its reply could not be read."""


class ConnectionFailed(ClientError):
    """No connection to the bot, or the connection ended before any byte of the reply."""


class BadReply(ClientError):
    """The reply is not valid HTTP/1.x, or the connection ended in the middle of it."""


class TooLarge(ClientError):
    """The body of a 200 reply is larger than allowed."""


class TimedOut(ClientError):
    """No complete reply before the deadline."""


@dataclass(slots=True)  # not frozen: built on every stanza, and a frozen dataclass is built five times slower
class HttpReply:
    status: int
    headers: dict[str, str]  # names in lower case; a repeated header keeps its last value
    body: bytes

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points: the origin (scheme, ASCII host, port), the request-target and the Host header."""

    scheme: str
    host: str
    port: int
    target: str
    host_header: str


_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_SAFE = "/%:@!$&'()*+,;=-._~"  # left as they are in a path; anything else is percent-encoded as UTF-8


def _encode(text: str, safe: str) -> str:
    return quote(_LONE_PERCENT.sub("%25", text), safe=safe)


@lru_cache(maxsize=4096)
def parse_url(url: str) -> Target:
    """The Target of an http(s) URL; ValueError saying why for one that cannot be used."""
    if any(c < " " or c == "\x7f" for c in url):
        raise ValueError(f"the URL {url!r} contains control characters")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"the URL {url!r} cannot be read: {exc}") from None
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"the URL {url!r} is not http or https")
    if not parts.hostname:
        raise ValueError(f"the URL {url!r} has no host")
    if "@" in parts.netloc:
        raise ValueError("the URL holds credentials (user:password@), which are not sent: use a header instead")
    default = 443 if parts.scheme == "https" else 80
    if port == 0:
        raise ValueError(f"the URL {url!r} has a bad port: it must be a number from 1 to 65535")
    port = port or default
    name = parts.hostname
    if ":" in name:
        try:
            host = str(ipaddress.IPv6Address(name))
        except ValueError:
            raise ValueError(f"the URL {url!r} has a bad IPv6 address") from None
        shown = f"[{host}]"
    else:
        try:
            host = name.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise ValueError(f"the URL's host {name!r} is not a valid domain name") from None
        if not _HOST_NAME.fullmatch(host):
            raise ValueError(f"the URL's host {name!r} is not a valid host name")
        shown = host
    target = _encode(parts.path or "/", _SAFE) + (f"?{_encode(parts.query, _SAFE + '?')}" if parts.query else "")
    return Target(parts.scheme, host, port, target, shown if port == default else f"{shown}:{port}")


class _Stop(Exception):
    """Raised in a parser callback to stop llhttp: the outcome is already in the waiter."""


class _Connection(asyncio.Protocol):
    """One connection; `ask` writes a request and returns the future of its reply, which llhttp completes."""

    __slots__ = (
        "body", "got", "head_done", "head_seen", "head_size", "headers", "idle_since", "keep", "limit", "max_bytes",
        "parser", "size", "status", "transport", "waiter",
    )  # fmt: skip

    def __init__(self) -> None:
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set by connection_made
        self.parser = HttpResponseParser(self)
        self.waiter: asyncio.Future[HttpReply] | None = None  # set while a reply is awaited
        self.idle_since = 0.0
        self.keep = self.got = self.head_done = False
        self.max_bytes = self.limit = self.status = self.head_seen = self.head_size = self.size = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []

    def ask(self, loop: asyncio.AbstractEventLoop, request: bytes, max_bytes: int) -> asyncio.Future[HttpReply]:
        self.waiter = waiter = loop.create_future()
        self.max_bytes, self.keep, self.got, self.head_done, self.head_seen = max_bytes, False, False, False, 0
        self.transport.write(request)
        return waiter

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():  # idle, or more than the reply: never reuse this connection
            self.keep = False
            self.transport.abort()
            return
        self.got = True
        if not self.head_done:
            self.head_seen += len(data)
        try:
            self.parser.feed_data(data)
        except HttpParserUpgrade:
            self._fail(BadReply("the bot's reply switches to another protocol"))
        except HttpParserError as exc:
            reason = str(exc) or "bad framing"
            self._fail(BadReply(f"the bot's reply is not valid HTTP ({reason[0].lower()}{reason[1:]})"))
        else:
            if not self.head_done and self.head_seen > MAX_HEAD:
                self._fail(BadReply(f"the bot's reply has a header section over {MAX_HEAD} bytes"))

    def _fail(self, exc: ClientError) -> None:
        self.keep = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(exc)

    def _ended(self, exc: Exception | None) -> None:
        """The connection ended: llhttp has no finish(), so a reply framed by the connection's end ends here."""
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        how = f" ({exc})" if exc else ""
        if not self.got:
            self._fail(ConnectionFailed(f"the bot closed the connection without replying{how}"))
        elif self.head_done and not (
            "content-length" in self.headers or self.headers.get("transfer-encoding", "").lower().endswith("chunked")
        ):  # framed by the connection's end, as llhttp read it
            self.keep = False
            waiter.set_result(HttpReply(self.status, self.headers, b"".join(self.body)))
        else:
            self._fail(BadReply(f"the bot closed the connection in the middle of its reply{how}"))

    # llhttp's callbacks, for each message (a 1xx interim reply is one too)

    def on_message_begin(self) -> None:
        if self.waiter is None or self.waiter.done():  # a second reply after ours
            self.keep = False
            raise _Stop
        self.headers, self.body, self.head_size, self.size = {}, [], 0, 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        if self.head_size > MAX_HEAD:
            self._fail(BadReply(f"the bot's reply has a header section over {MAX_HEAD} bytes"))
            raise _Stop
        self.status = status = self.parser.get_status_code()
        if status < 200:  # 100 Continue, 103 Early Hints (and 101, which llhttp then refuses): the reply follows
            return
        self.head_done = True
        self.limit = self.max_bytes if status == 200 else MAX_OTHER_BODY
        length = self.headers.get("content-length")
        if length is not None and int(length) > self.limit:
            self._too_large()

    def on_body(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self._too_large()
        self.body.append(data)

    def _too_large(self) -> None:
        if self.status == 200:
            self._fail(TooLarge(f"the bot's reply is larger than {self.max_bytes} bytes"))
        else:  # an error page too long to be worth reading: the status is what matters
            self.keep = False
            if self.waiter is not None:
                self.waiter.set_result(HttpReply(self.status, self.headers, b""))
        raise _Stop

    def on_message_complete(self) -> None:
        if self.status < 200:
            return
        self.keep = self.parser.should_keep_alive()
        if self.waiter is not None:
            self.waiter.set_result(HttpReply(self.status, self.headers, b"".join(self.body)))


class Client:
    """Keep-alive connections per origin, one request at a time on each."""

    def __init__(self, headers: Mapping[str, str], max_idle_per_origin: int = 32, idle_seconds: float = 4.0) -> None:
        self._fixed = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._urls: dict[str, tuple[tuple[str, str, int], Target, bytes]] = {}
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._max_idle = max_idle_per_origin
        self._idle_seconds = idle_seconds
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    def _prepare(self, url: str) -> tuple[tuple[str, str, int], Target, bytes]:
        try:
            t = parse_url(url)
        except ValueError as exc:
            raise ConnectionFailed(str(exc)) from None
        head = f"POST {t.target} HTTP/1.1\r\nHost: {t.host_header}\r\n{self._fixed}".encode("latin-1")
        if len(self._urls) >= 4096:
            self._urls.clear()
        entry = self._urls[url] = ((t.scheme, t.host, t.port), t, head)
        return entry

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], max_bytes: int, deadline: float
    ) -> HttpReply:
        """POST `body` to `url` and read the reply: a 200's body up to `max_bytes` (else TooLarge), another
        status's up to 64 KiB (else an empty body). `deadline` is in the loop's time (loop.time())."""
        key, t, head = self._urls.get(url) or self._prepare(url)
        tail = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
        if tail.count("\n") != len(headers) or tail.count("\r") != len(headers):
            raise ValueError("a request header holds a line break")
        request = b"".join((head, f"{tail}Content-Length: {len(body)}\r\n\r\n".encode("latin-1"), body))
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Client.post must run in a task")
        expired = False

        def expire() -> None:  # asyncio.timeout's work, at a fifth of its cost: one timer that cancels the task
            nonlocal expired
            expired = True
            task.cancel()

        start = loop.time()
        if deadline <= start:
            raise TimedOut("the deadline had passed before the request was sent")
        timer = loop.call_at(deadline, expire)
        conn = None
        try:
            conn = self._take(key, start)
            if conn is None:
                conn = await self._open(t)
            reply = await conn.ask(loop, request, max_bytes)
        except BaseException as exc:  # the connection's state is unknown: close it at once
            if conn is not None:
                conn.transport.abort()
            # a cancellation by our timer alone (not also from outside) is a timeout
            if isinstance(exc, asyncio.CancelledError) and expired and task.uncancel() == 0:
                raise TimedOut(f"the bot did not reply within {deadline - start:.3g} s") from None
            raise
        finally:
            timer.cancel()
        if conn.keep and not self._closed and not conn.transport.is_closing():
            self._put(key, conn, loop.time())
        else:
            conn.transport.close()
        return reply

    def _take(self, key: tuple[str, str, int], now: float) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to have been dropped by the server
            if not conn.transport.is_closing() and now - conn.idle_since < self._idle_seconds:
                return conn
            conn.transport.abort()  # closed by the server, stray bytes, or too old: the request was not sent
        return None

    def _put(self, key: tuple[str, str, int], conn: _Connection, now: float) -> None:
        conn.waiter = None
        conn.idle_since = now
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = deque()
        while idle and (len(idle) >= self._max_idle or now - idle[0].idle_since >= self._idle_seconds):
            idle.popleft().transport.close()
        if self._max_idle > 0:
            idle.append(conn)
        else:
            conn.transport.close()

    async def _open(self, t: Target) -> _Connection:
        context = None
        if t.scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        try:
            _, conn = await asyncio.get_running_loop().create_connection(
                _Connection, t.host, t.port, ssl=context, server_hostname=t.host if context else None
            )
        except OSError as exc:
            where = f"[{t.host}]" if ":" in t.host else t.host
            errno = exc.errno or 0  # asyncio's text for errno is "Connect call failed": say what the errno means
            plain = errno > 0 and not isinstance(exc, ssl.SSLError)
            reason = os.strerror(errno) if plain else exc.strerror or str(exc) or type(exc).__name__
            raise ConnectionFailed(f"cannot connect to {where}:{t.port}: {reason}") from None
        return conn

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.transport.close()
        self._idle.clear()
