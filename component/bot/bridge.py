"""The bot flow: each forwarded stanza is POSTed to the bot, and its reply (or an error) is sent back.

Requests run concurrently up to `bot.max_in_flight`; at most `bot.max_queued` stanzas wait at once (past
that the sender hears resource-constraint at once); replies within one conversation (sender full JID,
component JID) leave in the order the stanzas arrived, and conversations never wait on each other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from component import bot_client, codec, error_map, http1, signing
from component.codec import ReplyError, Stanza, error_reply
from component.config import BotSection, decode_signing_secret
from component.error_map import XmppError
from component.metrics import Metrics
from component.routes import Router

log = logging.getLogger(__name__)

Send = Callable[[Stanza], None]


class _Turn:
    """A stanza's place in its conversation; `replies` is set once its bot has answered (or failed)."""

    __slots__ = ("replies",)

    def __init__(self) -> None:
        self.replies: list[Stanza] | None = None


class Bridge:
    def __init__(
        self,
        bot: BotSection,
        domain: str,
        client: http1.Client,
        send: Send,
        metrics: Metrics,
        max_stanza_bytes: int,
    ) -> None:
        self._bot = bot
        self._max_stanza_bytes = max_stanza_bytes
        self._domain = domain
        self._client = client
        self._send = send
        self._metrics = metrics
        media = codec.XMPP_XML if bot.format == "xml" else "application/json; charset=utf-8"
        self._headers = {"Content-Type": media, **bot.headers}
        self._router = Router(bot)
        self._secret = decode_signing_secret("bot.signing_secret", bot.signing_secret) if bot.signing_secret else None
        self._slots = asyncio.Semaphore(bot.max_in_flight)
        self._turns: dict[tuple[str, str], deque[_Turn]] = {}  # per conversation, in arrival order
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True
        self._in_flight = 0
        # read when scraped, not set on every stanza
        metrics.bot_queued.set_function(lambda: len(self._tasks))
        metrics.bot_in_flight.set_function(lambda: self._in_flight)

    @property
    def queued(self) -> int:
        return len(self._tasks)

    def submit(self, stanza: Stanza) -> None:
        """Take a stanza for the bot; never blocks. Stanzas of type error must not reach here."""
        if not self._accepting:
            self._send(error_reply(stanza, error_map.SHUTTING_DOWN))
            return
        if len(self._tasks) >= self._bot.max_queued:
            self._metrics.outcomes["queue_full"].inc()
            log.warning(
                "bot queue full (%d stanzas waiting): refused a %s from %s", len(self._tasks), stanza.kind, stanza.from_
            )
            self._send(error_reply(stanza, error_map.QUEUE_FULL))
            return
        key = (stanza.from_, stanza.to)
        turn = _Turn()
        waiting = self._turns.get(key)
        if waiting is None:
            waiting = self._turns[key] = deque()
        waiting.append(turn)
        task = asyncio.create_task(self._run(stanza, key, turn))
        self._tasks.add(task)
        task.add_done_callback(lambda task: self._done(task, key, turn))

    def _done(self, task: asyncio.Task[None], key: tuple[str, str], turn: _Turn) -> None:
        self._tasks.discard(task)
        if turn.replies is None:  # cancelled before it ever ran: its successors must not wait forever
            turn.replies = []
            self._release(key)

    async def _run(self, stanza: Stanza, key: tuple[str, str], turn: _Turn) -> None:
        try:
            turn.replies = await self._ask(stanza)
        except Exception:  # the error boundary of the bot flow: log once, answer, keep serving
            self._metrics.internal_errors.inc()
            log.exception("internal error while handling a %s from %s", stanza.kind, stanza.from_)
            turn.replies = [error_reply(stanza, XmppError("cancel", "internal-server-error"))]
        finally:
            if turn.replies is None:  # cancelled (shutdown): nothing to send, but the successors go on
                turn.replies = []
            self._release(key)

    def _release(self, key: tuple[str, str]) -> None:
        """Send the answered stanzas at the head of a conversation, in arrival order; a stanza still waiting
        for its bot holds back the ones behind it."""
        waiting = self._turns[key]
        while waiting and (replies := waiting[0].replies) is not None:
            waiting.popleft()
            for reply in replies:
                try:
                    self._send(reply)
                except Exception:
                    self._metrics.internal_errors.inc()
                    log.exception("internal error while sending a %s to %s", reply.kind, reply.to)
        if not waiting:
            del self._turns[key]

    async def _ask(self, stanza: Stanza) -> list[Stanza]:
        """POST one stanza and turn the outcome into the stanzas to send."""
        bot = self._bot
        url = self._router.url_for(stanza)
        if url is None:
            return self._failed(stanza, "no_route", error_map.NO_ROUTE, "no bot.url and no route", url="-")
        body = stanza.xml.encode() if bot.format == "xml" else codec.request_json(stanza)
        headers = self._headers if self._secret is None else {**self._headers, **signing.headers(self._secret, body)}
        async with self._slots:
            self._in_flight += 1
            started = time.perf_counter()
            try:
                reply = await bot_client.post(self._client, url, body, headers, bot.timeout, bot.max_reply_bytes)
            except bot_client.BotFailure as failure:
                return self._failed(stanza, failure.outcome, failure.error, failure.reason, url)
            finally:
                self._in_flight -= 1
        self._metrics.bot_latency.observe(time.perf_counter() - started)
        if not 200 <= reply.status < 300:
            error = error_map.for_status(reply.status)
            return self._failed(stanza, "http_error", error, f"HTTP {reply.status}", url)
        try:
            replies = (
                codec.parse_reply(stanza, self._domain, reply.content_type, reply.body) if reply.status == 200 else []
            )
        except ReplyError as exc:
            return self._failed(stanza, "unusable", error_map.unusable_reply(str(exc)), str(exc), url)
        too_large = codec.size_error(replies, self._max_stanza_bytes)
        if too_large is not None:
            return self._failed(stanza, "unusable", error_map.unusable_reply(too_large), too_large, url)
        if not codec.answers_iq(stanza, replies):
            replies.append(error_reply(stanza, error_map.IQ_UNANSWERED))
        self._metrics.outcomes["replied" if replies else "silent"].inc()
        return replies

    def _failed(self, stanza: Stanza, outcome: str, error: XmppError, reason: str, url: object) -> list[Stanza]:
        self._metrics.outcomes[outcome].inc()
        log.warning("bot %s failed for a %s from %s to %s: %s", url, stanza.kind, stanza.from_, stanza.to, reason)
        return [error_reply(stanza, error)]

    async def drain(self, timeout: float) -> None:
        """Refuse new stanzas, give those in flight up to `timeout` seconds, then cancel the rest."""
        self._accepting = False
        if not self._tasks:
            return
        log.info("waiting up to %g s for %d bot requests", timeout, len(self._tasks))
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("gave up on %d bot requests at shutdown", len(pending))
            await asyncio.wait(pending)
