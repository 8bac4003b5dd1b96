"""Queued delivery's sender: a stanza is accepted once the store has written it; then each conversation
(`stanza.conversation`) has one worker that POSTs its stanzas one after the other, so that a stanza is never POSTed
before the one ahead of it has been delivered or given up, while conversations never wait on each other.

An attempt that fails by a connection failure, a timeout, a reply cut short, a 5xx, a 408 or a 429 is tried again
after a growing wait (policy.Backoff; a Retry-After header lengthens it), with the same webhook-id (signed afresh when
signing is on), until `bot.retry_for` has passed since the stanza arrived: then the sender gets the timeout error and
the stanza goes to the dead letters. Any other outcome is final and answered as in direct delivery. At shutdown the
attempts under way get a bounded time to finish; whatever is not delivered stays on disk for the next start. While the
XMPP stream is down no new attempt starts (`stream_changed`): a standby instance holds its queue until it is active.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from component import codec, error_map
from component.bot import client, signing
from component.bot.routes import Router, fill
from component.codec import ReplyError
from component.config import BotSection
from component.delivery.policy import Backoff, retried_status, retry_after
from component.delivery.store import DeadLetter, Entry, Store
from component.metrics import Metrics, Outcome
from component.stanza import Stanza, XmppError, conversation, error_reply

log = logging.getLogger(__name__)

Send = Callable[[Stanza], None]
Key = tuple[str, str]
MAX_BOTS_KEPT = 1000  # bot URLs whose last error and success are remembered beyond their pending stanzas


class _Retry:
    """A failed attempt worth another: why, and the least wait the bot asked for (Retry-After)."""

    __slots__ = ("at_least", "reason")

    def __init__(self, reason: str, at_least: float = 0.0) -> None:
        self.reason = reason
        self.at_least = at_least


class BotState:
    """What /v1/status tells of one bot URL beside its pending stanzas."""

    __slots__ = ("failing", "last_error", "last_error_at", "last_success_at")

    def __init__(self) -> None:
        self.last_error = ""
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None
        self.failing = False  # its last attempt failed and will be retried: said once in the log, until it recovers


class Delivery:
    def __init__(
        self,
        bot: BotSection,
        domain: str,
        http: client.Client,
        send: Send,
        metrics: Metrics,
        max_stanza_bytes: int,
        folder: str,
        slots: asyncio.Semaphore,
        clock: Callable[[], float] = time.time,
        draw: Callable[[], float] = random.random,
    ) -> None:
        """`slots` bounds the requests under way (bot.max_in_flight, shared with the direct path); `clock` is Unix
        time (bot.retry_for survives restarts); `draw` the jitter's random numbers in [0, 1)."""
        self._bot = bot
        self._domain = domain
        self._http = http
        self._send = send
        self._metrics = metrics
        self._max_stanza_bytes = max_stanza_bytes
        self._slots = slots
        self._clock = clock
        self._draw = draw
        self._router = Router(bot)
        self._key = bot.signing_key
        media = codec.XMPP_XML if bot.format == "xml" else "application/json; charset=utf-8"
        self._headers = {"Content-Type": media, **bot.headers}
        self._backoff = Backoff(bot.retry_first, bot.retry_most)
        self._store = Store(folder, metrics, self._written, self._lost)
        self._entries: dict[int, Entry] = {}  # every stanza accepted and not finished, by seq: oldest first
        self._lines: dict[Key, deque[Entry]] = {}  # per conversation, the entries on disk, in order
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._bots: dict[str, BotState] = {}
        self._ignoring: set[str] = set()  # bot URLs whose ignored replies were logged
        self._stop = asyncio.Event()
        self._stream_up = asyncio.Event()  # no new attempt while the XMPP stream is down (see `stream_changed`)
        self._stream_up.set()
        self._closed = False
        self.in_flight = 0
        metrics.delivery_pending.set_function(lambda: len(self._entries))
        metrics.delivery_oldest.set_function(self.oldest_age)
        metrics.delivery_dead.set_function(lambda: self._store.dead_count)

    @property
    def pending(self) -> int:
        return len(self._entries)

    # -- life ----------------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Open the queue and start delivering what it holds (stanzas left by the last run). Raises ConfigError
        (naming state.dir) when the queue cannot be opened."""
        entries = self._store.open()
        for entry in entries:
            self._entries[entry.seq] = entry
            if entry.last_error_at is not None:
                state = self._bot_state(entry.url)
                if state.last_error_at is None or state.last_error_at < entry.last_error_at:
                    state.last_error, state.last_error_at = entry.last_error, entry.last_error_at
        if entries:
            log.info("queued delivery: %d stanzas left by the last run are delivered first", len(entries))
        self._written(entries)

    def stream_changed(self, up: bool) -> None:
        """The XMPP stream went up or down. While it is down no new attempt starts (its replies could not be sent,
        and the outbox holds replies only so long); the attempts under way finish, their replies held by the outbox.
        When it is up again, the waiting conversations go on. Up until told otherwise."""
        if up:
            self._stream_up.set()
        else:
            self._stream_up.clear()

    async def _ready(self) -> bool:
        """Wait for the stream to be up: True when it is, False when the component stops first."""
        while not self._stream_up.is_set() and not self._stop.is_set():
            waits = [asyncio.ensure_future(self._stream_up.wait()), asyncio.ensure_future(self._stop.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        return not self._stop.is_set()

    async def drain(self, timeout: float) -> None:
        """Start no new attempt; give those under way up to `timeout` seconds, then cancel them (their stanzas
        stay queued and are POSTed again, with the same webhook-id, after the next start). Stanzas that arrive
        meanwhile are still written to the queue, until `close`."""
        self._stop.set()
        workers = set(self._workers.values())
        if not workers:
            return
        _, pending = await asyncio.wait(workers, timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("queued delivery: cancelled %d attempts at shutdown; they are made again after a restart",
                        len(pending))  # fmt: skip
            await asyncio.wait(pending)

    def close(self) -> None:
        """Write what is left and close the queue: what is pending stays on disk for the next start."""
        self._stop.set()
        self._closed = True
        if self._store.is_open:
            self._store.close()
            if self._entries:
                log.info("queued delivery: %d stanzas stay queued for the next start", len(self._entries))

    # -- taking stanzas ------------------------------------------------------------------------------------------
    def submit(self, stanza: Stanza) -> None:
        """Take a stanza for the bot: written to the queue at the end of this loop turn, then delivered. Never
        blocks."""
        if self._closed or not self._store.is_open:
            self._refuse(stanza, Outcome.SHUTTING_DOWN, error_map.SHUTTING_DOWN)
            return
        if len(self._entries) >= self._bot.max_queued:
            log.warning("bot queue full (%d stanzas pending): refused a %s from %s", len(self._entries), stanza.kind,
                        stanza.from_)  # fmt: skip
            self._refuse(stanza, Outcome.QUEUE_FULL, error_map.QUEUE_FULL)
            return
        template = self._router.template_for(stanza)
        if template is None:
            log.warning("no bot.url and no route for a %s from %s to %s", stanza.kind, stanza.from_, stanza.to)
            self._refuse(stanza, Outcome.NO_ROUTE, error_map.NO_ROUTE)
            return
        entry = Entry(self._store.next_seq(), signing.new_id(), fill(template, stanza), self._clock(), stanza)
        self._entries[entry.seq] = entry
        self._store.add(entry)

    def _refuse(self, stanza: Stanza, outcome: Outcome, error: XmppError) -> None:
        self._metrics.outcomes[outcome].inc()
        self._reply([error_reply(stanza, error)])

    def _written(self, entries: list[Entry]) -> None:
        """Entries now on disk: each joins its conversation's line, whose worker starts if it is idle."""
        for entry in entries:
            key = conversation(entry.stanza)
            line = self._lines.get(key)
            if line is None:
                line = self._lines[key] = deque()
            line.append(entry)
            if key not in self._workers and not self._stop.is_set():
                self._workers[key] = asyncio.create_task(self._work(key, line))

    def _lost(self, entries: list[Entry], reason: str) -> None:
        """Entries the store could not write: not accepted after all; each sender is told."""
        for entry in entries:
            del self._entries[entry.seq]
            self._reply([error_reply(entry.stanza, error_map.INTERNAL)])

    # -- delivering ----------------------------------------------------------------------------------------------
    async def _work(self, key: Key, line: deque[Entry]) -> None:
        try:
            while line and not self._stop.is_set():
                if not await self._deliver(line[0]):
                    return
                line.popleft()
        finally:
            del self._workers[key]
            if not line:
                del self._lines[key]

    async def _deliver(self, entry: Entry) -> bool:
        """Attempt until delivered, final or given up (True), or until the component stops (False: the entry
        stays queued). Every entry gets one attempt at least, even one whose bot.retry_for ran out while it waited
        behind others or across a stop; the last is made when bot.retry_for ends, unless the bot's Retry-After
        asks for a later one."""
        retry_for = self._bot.retry_for
        try:
            while await self._ready():
                result = await self._attempt(entry)
                if not isinstance(result, _Retry):
                    self._finish(entry, result)
                    return True
                self._failed(entry, result.reason)
                left = entry.accepted + retry_for - self._clock()
                if left <= 0 or result.at_least >= left:
                    await self._nap(left)  # no attempt left before the end: given up when it comes
                    if self._stop.is_set():
                        return False
                    self._give_up(entry)
                    return True
                await self._nap(min(max(self._backoff.after(entry.attempts, self._draw), result.at_least), left))
            return False
        except Exception as exc:  # the error boundary of queued delivery: the stanza is buried, not retried forever
            self._metrics.internal_errors.inc()
            log.exception("internal error while delivering a %s from %s", entry.stanza.kind, entry.stanza.from_)
            if entry.seq in self._entries:  # not yet finished nor buried
                entry.last_error, entry.last_error_at = f"internal error: {exc!r}", self._clock()
                self._bury(entry)
                self._reply([error_reply(entry.stanza, error_map.INTERNAL)])
            return True

    async def _nap(self, seconds: float) -> None:
        """Sleep, but not past the start of the shutdown."""
        if seconds > 0:
            with suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), seconds)

    async def _attempt(self, entry: Entry) -> list[Stanza] | _Retry:
        """POST an entry once: the stanzas to send (its replies, or the error of a final failure), or a _Retry."""
        bot = self._bot
        stanza, url = entry.stanza, entry.url
        if entry.attempts:
            self._metrics.delivery_retries.inc()
        body = stanza.xml.encode() if bot.format == "xml" else codec.request_json(stanza)
        async with self._slots:  # the wait for a slot is not the bot's: the request's timeout starts after it
            if self._key is None:  # unsigned, the webhook-id is still the bot's idempotency key
                headers = {**self._headers, "webhook-id": entry.webhook_id}
            else:
                headers = {**self._headers, **signing.headers(self._key, body, self._clock(), entry.webhook_id)}
            self.in_flight += 1
            started = time.perf_counter()
            try:
                deadline = asyncio.get_running_loop().time() + bot.timeout
                reply = await self._http.post(url, body, headers, bot.max_reply_bytes, deadline)
            except client.TimedOut:
                return _Retry(f"no reply within {bot.timeout:g} s")
            except (client.ConnectionFailed, client.BadReply) as exc:  # a bot going down may cut a reply short
                return _Retry(str(exc))
            except client.TooLarge:
                reason = f"the reply is larger than bot.max_reply_bytes ({bot.max_reply_bytes} bytes)"
                return self._final(entry, Outcome.UNUSABLE, error_map.unusable_reply(reason), reason)
            finally:
                self.in_flight -= 1
        self._metrics.bot_latency.observe(time.perf_counter() - started)
        status = reply.status
        if not 200 <= status < 300:
            if retried_status(status):
                return _Retry(f"HTTP {status}", retry_after(reply.headers.get("retry-after")) or 0.0)
            return self._final(entry, Outcome.HTTP_ERROR, error_map.for_status(status), f"HTTP {status}")
        try:
            replies = codec.reply_stanzas(
                stanza, self._domain, status, reply.content_type, reply.body, self._max_stanza_bytes
            )
        except ReplyError as exc:
            return self._final(entry, Outcome.UNUSABLE, error_map.unusable_reply(str(exc)), str(exc))
        if replies.ignored:
            self._metrics.outcomes[Outcome.IGNORED].inc()
            if url not in self._ignoring and len(self._ignoring) < 1000:
                self._ignoring.add(url)
                log.warning("bot %s answered 200 with Content-Type %s: nothing is sent; said once for this bot",
                            url, replies.ignored)  # fmt: skip
        else:
            self._metrics.outcomes[Outcome.REPLIED if replies else Outcome.SILENT].inc()
        state = self._bot_state(url)
        state.last_success_at = now = self._clock()
        self._metrics.delivery_last_success.set(now)
        if state.failing:
            state.failing = False
            log.info("bot %s answers again (queued delivery)", url)
        return replies

    def _final(self, entry: Entry, outcome: Outcome, error: XmppError, reason: str) -> list[Stanza]:
        """An attempt whose failure another would not mend (a 4xx, an unusable reply): today's error."""
        self._metrics.outcomes[outcome].inc()
        stanza = entry.stanza
        log.warning("bot %s failed for a %s from %s to %s: %s", entry.url, stanza.kind, stanza.from_, stanza.to, reason)
        self._note_error(entry.url, reason)
        return [error_reply(stanza, error)]

    def _failed(self, entry: Entry, reason: str) -> None:
        """An attempt that will be tried again: counted on the entry, on disk, and for its bot."""
        entry.attempts += 1
        entry.last_error, entry.last_error_at = reason, self._clock()
        self._store.note(entry)
        state = self._note_error(entry.url, reason)
        if not state.failing:
            state.failing = True
            log.warning("bot %s failed: %s; its stanzas are retried for up to %g s from their arrival (bot.retry_for)",
                        entry.url, reason, self._bot.retry_for)  # fmt: skip

    def _note_error(self, url: str, reason: str) -> BotState:
        state = self._bot_state(url)
        state.last_error, state.last_error_at = reason, self._clock()
        self._metrics.delivery_last_error.set(state.last_error_at)
        return state

    def _finish(self, entry: Entry, replies: list[Stanza]) -> None:
        self._store.done(entry)
        del self._entries[entry.seq]
        self._reply(replies)

    def _give_up(self, entry: Entry) -> None:
        self._metrics.outcomes[Outcome.GAVE_UP].inc()
        stanza = entry.stanza
        log.warning(
            "gave up on a %s from %s to %s after %d attempts (bot.retry_for: %g s): dead letter %d; last error: %s",
            stanza.kind, stanza.from_, stanza.to, entry.attempts, self._bot.retry_for, entry.seq, entry.last_error,
        )  # fmt: skip
        self._bury(entry)
        self._reply([error_reply(stanza, error_map.TIMEOUT)])

    def _bury(self, entry: Entry) -> None:
        self._store.bury(entry, self._clock())
        del self._entries[entry.seq]

    def _reply(self, stanzas: list[Stanza]) -> None:
        for reply in stanzas:
            try:
                self._send(reply)
            except Exception:
                self._metrics.internal_errors.inc()
                log.exception("internal error while sending a %s to %s", reply.kind, reply.to)

    def _bot_state(self, url: str) -> BotState:
        state = self._bots.get(url)
        if state is None:
            if len(self._bots) >= MAX_BOTS_KEPT:  # forget the bots without pending stanzas
                urls = {entry.url for entry in self._entries.values()}
                self._bots = {u: s for u, s in self._bots.items() if u in urls}
            state = self._bots[url] = BotState()
        return state

    # -- what the send API shows ---------------------------------------------------------------------------------
    def oldest_age(self) -> float:
        """Seconds since the oldest pending stanza arrived; 0 when none is pending."""
        for entry in self._entries.values():  # the first is the oldest: seq follows arrival
            return max(0.0, self._clock() - entry.accepted)
        return 0.0

    def status(self) -> dict[str, Any]:
        """Per bot URL: the number pending, the age of the oldest, the last error and its time, the last success."""
        now = self._clock()
        bots: dict[str, dict[str, Any]] = {}
        for entry in self._entries.values():
            row = bots.get(entry.url)
            if row is None:
                row = bots[entry.url] = {"url": entry.url, "pending": 0, "oldest_age_seconds": now - entry.accepted}
            row["pending"] += 1
        for url, state in self._bots.items():
            row = bots.setdefault(url, {"url": url, "pending": 0, "oldest_age_seconds": None})
            row |= {
                "last_error": state.last_error or None,
                "last_error_at": state.last_error_at,
                "last_success_at": state.last_success_at,
            }
        for row in bots.values():
            row.setdefault("last_error", None)
            row.setdefault("last_error_at", None)
            row.setdefault("last_success_at", None)
            if row["oldest_age_seconds"] is not None:
                row["oldest_age_seconds"] = round(max(0.0, row["oldest_age_seconds"]), 3)
        return {
            "delivery": "queued",
            "pending": len(self._entries),
            "oldest_age_seconds": round(self.oldest_age(), 3) if self._entries else None,
            "dead_letters": self._store.dead_count,
            "retry_for": self._bot.retry_for,
            "bots": [bots[url] for url in sorted(bots)],
        }

    def dead(self, limit: int, after: int = 0) -> list[DeadLetter]:
        return self._store.dead(limit, after) if self._store.is_open else []

    def retry(self, seq: int) -> Entry | None:
        """Queue dead letter `seq` again (at the end of its conversation, its webhook-id kept, bot.retry_for
        counted afresh); None when there is no such dead letter."""
        if self._closed or not self._store.is_open:
            return None
        entry = self._store.unbury(seq, self._store.next_seq(), self._clock())
        if entry is not None:
            self._entries[entry.seq] = entry
            log.info("dead letter %d queued again as %d", seq, entry.seq)
        return entry
