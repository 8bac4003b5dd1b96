"""Per-handler pushers: each offers events to its callbacks, queues the wanted ones (bounded: the oldest is
dropped), and sends them through its pool's keep-alive session with up to `workers` requests at once. The
`Notifier` runs them beside the rabbit backend (notify/rabbit.py), either or both as configured.

Nothing here blocks the caller: `Notifier.emit` only runs `should_make_req` and appends to queues.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import aiohttp

from component.config import Config
from component.metrics import Metrics
from component.notify.callbacks import Callbacks
from component.notify.config import HttpPool, PushHandler
from component.notify.events import Event

if TYPE_CHECKING:
    from component.notify.rabbit import Backoff, RabbitPublisher

log = logging.getLogger(__name__)


def join_url(host: str, path_prefix: str, path: str) -> str:
    """host + prefix + path with exactly one slash at each join."""
    parts = [p.strip("/") for p in (path_prefix, path) if p.strip("/")]
    return "/".join([host.rstrip("/"), *parts]) if parts else host.rstrip("/") + "/"


class Pusher:
    def __init__(
        self, handler: PushHandler, pool: HttpPool, session: aiohttp.ClientSession, metrics: Metrics, host_type: str
    ) -> None:
        self.url = join_url(pool.connection.host, pool.connection.path_prefix, handler.path)
        self._callbacks: Callbacks = handler.callbacks
        self._module = handler.callback_module
        self._max_queued = handler.max_queued
        self._timeout = pool.connection.request_timeout / 1000
        self._session = session
        self._workers_wanted = pool.workers
        self._queue: deque[Event] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._busy = 0
        self._workers: list[asyncio.Task[None]] = []
        self._failing = False
        self._dropped = 0
        m = metrics
        self._sent = m.push_sent.labels(host_type)
        self._failed = m.push_failed.labels(host_type)
        self._response_time = m.push_response_time.labels(host_type)
        self._dropped_metric = m.push_dropped.labels(host_type)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work()) for _ in range(self._workers_wanted)]

    def offer(self, event: Event) -> None:
        try:
            wanted = self._callbacks.should_make_req(event)
        except Exception:
            self._failed.inc()
            log.exception("%s.should_make_req failed", self._module)
            return
        if not wanted:
            return
        if len(self._queue) >= self._max_queued:
            self._queue.popleft()
            self._dropped += 1
            self._dropped_metric.inc()
            if self._dropped & (self._dropped - 1) == 0:  # 1, 2, 4, 8...: visible, never a flood
                log.warning(
                    "notification queue for %s is full: dropped the oldest (%d so far)", self.url, self._dropped
                )
        self._queue.append(event)
        self._idle.clear()
        self._wakeup.set()

    async def _work(self) -> None:
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            event = self._queue.popleft()
            self._busy += 1
            try:
                await self._send(event)
            finally:
                self._busy -= 1
                if not self._queue and self._busy == 0:
                    self._idle.set()

    async def _send(self, event: Event) -> None:
        try:
            headers = self._callbacks.prepare_headers(event)
            body = self._callbacks.prepare_body(event)
        except Exception:
            self._failed.inc()
            log.exception("%s could not prepare a notification", self._module)
            return
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                async with self._session.post(self.url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
        except TimeoutError:
            self._failure(f"no answer within {self._timeout * 1000:g} ms")
            return
        except aiohttp.ClientError as exc:
            self._failure(f"{type(exc).__name__}: {exc}")
            return
        if not 200 <= status < 300:
            self._failure(f"HTTP {status}")
            return
        self._sent.inc()
        self._response_time.observe(time.perf_counter() - started)
        if self._failing:
            self._failing = False
            log.info("notifications to %s are delivered again", self.url)

    def _failure(self, reason: str) -> None:
        self._failed.inc()
        if not self._failing:  # one line when it starts failing, one when it recovers
            self._failing = True
            log.warning("notifications to %s are failing: %s", self.url, reason)

    async def flush(self, timeout: float) -> None:
        """Send what is queued, for up to `timeout` seconds; then stop the workers."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            log.warning("gave up on %d notifications to %s at shutdown", len(self._queue) + self._busy, self.url)
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)


class Notifier:
    """Every configured handler and the rabbit backend; `emit` hands each event to all of them."""

    def __init__(self, config: Config, metrics: Metrics, rabbit_backoff: Backoff | None = None) -> None:
        self._config = config
        self._metrics = metrics
        self._rabbit_backoff = rabbit_backoff
        self._sessions: list[aiohttp.ClientSession] = []
        self.pushers: list[Pusher] = []
        self.rabbit: RabbitPublisher | None = None

    @property
    def active(self) -> bool:
        return bool(self.pushers) or self.rabbit is not None

    def start(self) -> None:
        host_type = self._config.component.jid
        if self._config.rabbit is not None:
            # imported when configured: aio-pika and its parts take 50 ms to load, for nothing otherwise
            from component.notify.rabbit import DEFAULT_BACKOFF, RabbitPublisher

            backoff = self._rabbit_backoff or DEFAULT_BACKOFF
            self.rabbit = RabbitPublisher(self._config.rabbit, self._metrics, host_type, backoff)
            self.rabbit.start()
        sessions: dict[str, aiohttp.ClientSession] = {}
        for handler in self._config.handlers:
            pool = self._config.pools[handler.pool_name]
            if handler.pool_name not in sessions:
                sessions[handler.pool_name] = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=pool.workers), timeout=aiohttp.ClientTimeout(total=None)
                )
            pusher = Pusher(handler, pool, sessions[handler.pool_name], self._metrics, host_type)
            pusher.start()
            self.pushers.append(pusher)
        self._sessions = list(sessions.values())

    def emit(self, event: Event) -> None:
        for pusher in self.pushers:
            pusher.offer(event)
        if self.rabbit is not None:
            self.rabbit.emit(event)

    async def stop(self, timeout: float) -> None:
        """Flush every backend at once, each for up to `timeout` seconds."""
        flushes = [p.flush(timeout) for p in self.pushers]
        if self.rabbit is not None:
            flushes.append(self.rabbit.stop(timeout))
        await asyncio.gather(*flushes)
        for session in self._sessions:
            await session.close()
