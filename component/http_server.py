"""Our HTTP servers (/metrics + /healthz, and the send API), as opposed to the HTTP client that calls the bots.

Both are aiohttp applications, served here with limits that hold against hostile clients:

- a connection must send its first complete request head within `header_timeout` seconds, or it is closed;
  between requests a connection may stay idle (or send the next head) for `keepalive_timeout` seconds;
- at most `max_connections` are open per server: past it new connections are accepted and closed at once,
  counted, and logged once per `log_interval`;
- the servers together take at most RLIMIT_NOFILE's soft limit minus `fd_reserve` descriptors, so that the
  XMPP stream and the bot client keep working when a server is flooded: each server's cap is lowered to fit
  (and that is logged once, at start);
- a refused request body is not read: aiohttp's "lingering" (reading up to 10 s of a body nobody wants) is
  off, so a connection whose body was left unread is closed once its answer is written;
- accept() failures (out of descriptors or memory) pause this server's listening sockets for `accept_pause`
  seconds and are logged once per `log_interval` with a count, never a traceback per failed accept.

The listening sockets are ours: we accept() ourselves (loop.add_reader, then loop.connect_accepted_socket),
the same way on asyncio's loop and on uvloop, instead of loop.create_server. That is what lets us pause on
EMFILE and refuse past the cap without a transport. (asyncio's own accept loop logs a traceback for every
failed accept() and, with many failures in one wake-up, re-arms the listener once per failure; uvloop's
(libuv's) accepts and drops them silently.)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import resource
import socket
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger(__name__)

ACCEPT_BATCH = 64  # accept() calls per wake-up of a listening socket, so that a flood cannot starve the loop


class ListenError(Exception):
    """A server could not listen where the configuration says; the message names the key."""


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = 10.0  # seconds from accept to a complete first request head
    keepalive_timeout: float = 15.0  # seconds a connection may wait between requests (a later head included)
    max_connections: int = 256  # open connections of this server; more are closed at once
    fd_reserve: int = 128  # descriptors the servers leave to the rest of the process
    log_interval: float = 10.0  # at most one log line per interval for each kind of trouble
    accept_pause: float = 1.0  # seconds the listening sockets rest after accept() ran out of resources
    backlog: int = 128  # listen() backlog


API_LIMITS = ServerLimits()
WEB_LIMITS = ServerLimits(max_connections=64)


class _FdBudget:
    """Descriptors the servers of this process have claimed, so that together they stay under the limit."""

    def __init__(self) -> None:
        self.claimed = 0

    def claim(self, key: str, limits: ServerLimits) -> int:
        """This server's cap: the configured one, lowered to what RLIMIT_NOFILE leaves (logged when lowered)."""
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = limits.max_connections
        if soft != resource.RLIM_INFINITY:
            room = max(0, soft - limits.fd_reserve - self.claimed)
            if room < cap:
                log.warning(
                    "%s: at most %d open connections instead of %d: the descriptor limit (RLIMIT_NOFILE) is %d, "
                    "%d are kept for the rest of the process and %d are taken by the other servers",
                    key,
                    room,
                    cap,
                    soft,
                    limits.fd_reserve,
                    self.claimed,
                )
                cap = room
        self.claimed += cap
        return cap

    def release(self, cap: int) -> None:
        self.claimed -= cap


_budget = _FdBudget()


class _Tally:
    """Counts one kind of trouble and logs it at most once per interval: the first time at once, then how many
    more while it goes on."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float, level: int, what: str) -> None:
        self.total = 0
        self._loop = loop
        self._interval = interval
        self._level = level
        self._what = what
        self._since = 0
        self._detail = ""
        self._timer: asyncio.TimerHandle | None = None

    def note(self, detail: str = "") -> None:
        self.total += 1
        self._detail = f" ({detail})" if detail else ""
        if self._timer is None:
            log.log(self._level, "%s%s", self._what, self._detail)
            self._timer = self._loop.call_later(self._interval, self._flush)
        else:
            self._since += 1

    def _flush(self) -> None:
        self._timer = None
        if self._since:
            log.log(
                self._level, "%s: %d more in the last %g s%s", self._what, self._since, self._interval, self._detail
            )
            self._since = 0
            self._timer = self._loop.call_later(self._interval, self._flush)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._since:
            log.log(self._level, "%s: %d more%s", self._what, self._since, self._detail)
            self._since = 0


class _Connection(asyncio.Protocol):
    """Stands in front of aiohttp's RequestHandler for one connection: forwards every event, and closes the
    connection when its first request head is late; tells the server when the connection is gone."""

    __slots__ = ("_server", "_timer", "handler", "made")

    def __init__(self, server: Served, handler: web.RequestHandler) -> None:
        self._server = server
        self.handler = handler
        self._timer: asyncio.TimerHandle | None = None
        self.made = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.made = True
        self._timer = self._server.loop.call_later(self._server.limits.header_timeout, self._head_late)
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        self.handler.eof_received()
        return None  # as aiohttp's handler: let the transport close

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.head_done()
        self._server.gone(self.handler)
        self.handler.connection_lost(exc)

    def head_done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_late(self) -> None:
        self._timer = None
        self._server.head_timed_out()
        self.handler.force_close()


class Served:
    """One running server: the port it is bound to, its counters, and `close()`."""

    def __init__(
        self,
        runner: web.AppRunner,
        key: str,
        limits: ServerLimits,
        sockets: list[socket.socket],
        max_connections: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.key = key
        self.limits = limits
        self.max_connections = max_connections  # the cap in force (configured, or lowered to fit the fd limit)
        self.port: int = sockets[0].getsockname()[1]  # the real port when 0 was asked
        self._runner = runner
        self._sockets = sockets
        self._live = 0
        self._awaiting_head: dict[web.RequestHandler, _Connection] = {}
        self._connecting: set[asyncio.Task[object]] = set()
        self._resume: asyncio.TimerHandle | None = None
        self._closed = False
        interval = limits.log_interval
        self._refused = _Tally(
            self.loop,
            interval,
            logging.WARNING,
            f"{key}: closing new connections at once: {max_connections} are open, the most allowed",
        )
        self._accept_failures = _Tally(
            self.loop, interval, logging.ERROR, f"{key}: accept() failed, not accepting for {limits.accept_pause:g} s"
        )
        self._head_timeouts = _Tally(
            self.loop,
            interval,
            logging.INFO,
            f"{key}: closed a connection that sent no complete request head within {limits.header_timeout:g} s",
        )
        server = runner.server
        assert server is not None
        self._make_handler = server
        handle = server.request_handler

        async def head_seen(request: web.BaseRequest) -> web.StreamResponse:
            connection = self._awaiting_head.pop(request.protocol, None)
            if connection is not None:
                connection.head_done()
            return await handle(request)

        server.request_handler = head_seen  # handlers made from now on call it

    @property
    def open_connections(self) -> int:
        return self._live

    @property
    def refused(self) -> int:
        """Connections closed at once because `max_connections` were open."""
        return self._refused.total

    @property
    def head_timeouts(self) -> int:
        """Connections closed because their first request head took longer than `header_timeout`."""
        return self._head_timeouts.total

    @property
    def accept_failures(self) -> int:
        """accept() calls that failed (out of descriptors, mostly); each paused the listening sockets."""
        return self._accept_failures.total

    def start(self) -> None:
        for sock in self._sockets:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def _pause(self) -> None:
        for sock in self._sockets:
            self.loop.remove_reader(sock.fileno())
        self._resume = self.loop.call_later(self.limits.accept_pause, self._unpause)

    def _unpause(self) -> None:
        self._resume = None
        if not self._closed:
            self.start()

    def _accept(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                sock, _address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:  # EMFILE, ENFILE, ENOMEM...: rest, or the loop spins on a ready listener
                self._accept_failures.note(exc.strerror or str(exc))
                if self._resume is None:
                    self._pause()
                return
            if self._live >= self.max_connections:
                sock.close()
                self._refused.note()
                continue
            sock.setblocking(False)
            self._live += 1
            connection = _Connection(self, self._make_handler())
            self._awaiting_head[connection.handler] = connection
            task = self.loop.create_task(self.loop.connect_accepted_socket(functools.partial(_same, connection), sock))
            self._connecting.add(task)
            task.add_done_callback(functools.partial(self._connected, connection, sock))

    def _connected(self, connection: _Connection, sock: socket.socket, task: asyncio.Task[object]) -> None:
        self._connecting.discard(task)
        failed = task.cancelled() or task.exception() is not None
        if failed and not connection.made:  # no transport, so no connection_lost will come
            sock.close()
            self.gone(connection.handler)

    def head_timed_out(self) -> None:
        self._head_timeouts.note()

    def gone(self, handler: web.RequestHandler) -> None:
        self._awaiting_head.pop(handler, None)
        self._live -= 1

    async def close(self) -> None:
        """Stop listening, close the connections (a request under way gets aiohttp's shutdown timeout), run the
        application's cleanup. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._resume is not None:
            self._resume.cancel()
        else:
            for sock in self._sockets:
                self.loop.remove_reader(sock.fileno())
        for sock in self._sockets:
            sock.close()
        if self._connecting:
            await asyncio.gather(*self._connecting, return_exceptions=True)
        await self._runner.cleanup()
        for tally in (self._refused, self._accept_failures, self._head_timeouts):
            tally.close()
        _budget.release(self.max_connections)


async def _listen(host: str, port: int, backlog: int) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for host:port, as loop.create_server makes them."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(
        host or None, port, family=socket.AF_UNSPEC, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _name, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def serve(app: web.Application, key: str, host: str, port: int, limits: ServerLimits) -> Served:
    """Serve `app` on host:port (port 0 picks one) within `limits`. `key` names the configuration key in log
    lines and in the ListenError raised when it cannot listen."""
    try:
        sockets = await _listen(host, port, limits.backlog)
    except OSError as exc:
        raise ListenError(f"{key}: cannot listen on {host}:{port} ({exc.strerror or exc})") from None
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=limits.keepalive_timeout,
        lingering_time=0,  # never read a body nobody wants: close instead
    )
    try:
        await runner.setup()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    served = Served(runner, key, limits, sockets, _budget.claim(key, limits))
    served.start()
    return served


def _same(connection: _Connection) -> _Connection:
    return connection
