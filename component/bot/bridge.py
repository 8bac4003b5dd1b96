"""The bot flow: each forwarded stanza is POSTed to its bot, and the reply (or an error) is sent back.

Requests run concurrently up to `bot.max_in_flight`; at most `bot.max_queued` stanzas wait at once (past
that the sender hears resource-constraint at once). `bot.timeout` counts from the stanza's arrival, time in
the queue included: a sender told "Gateway timeout" is never POSTed for afterwards. Replies within one
conversation (`stanza.conversation`: sender full JID and component JID, or the room for a groupchat) leave in
the order the stanzas arrived, and conversations never wait on each other.

With `bot.delivery = "queued"`, every stanza but an iq goes to queued delivery instead (component/delivery/: written
to a durable queue, POSTed in order per conversation, retried); an iq needs its answer within the client's
patience, so it keeps this direct path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from component import codec, error_map
from component.bot import client, signing
from component.bot.routes import Router, fill
from component.codec import ReplyError
from component.config import BotSection
from component.delivery.sender import Delivery
from component.metrics import Metrics, Outcome
from component.stanza import Stanza, XmppError, conversation, error_reply

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
        http: client.Client,
        send: Send,
        metrics: Metrics,
        max_stanza_bytes: int,
        state_dir: str = "",
    ) -> None:
        self._bot = bot
        self._max_stanza_bytes = max_stanza_bytes
        self._domain = domain
        self._http = http
        self._send = send
        self._metrics = metrics
        media = codec.XMPP_XML if bot.format == "xml" else "application/json; charset=utf-8"
        self._headers = {"Content-Type": media, **bot.headers}
        self._router = Router(bot)
        self._key = bot.signing_key
        self._slots = asyncio.Semaphore(bot.max_in_flight)
        self._turns: dict[tuple[str, str], deque[_Turn]] = {}  # per conversation, in arrival order
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = True
        self._in_flight = 0
        self._ignoring: set[str] = set()  # the bots (URL templates) whose ignored replies were logged
        self.delivery: Delivery | None = None
        if bot.delivery == "queued":
            self.delivery = d = Delivery(bot, domain, http, send, metrics, max_stanza_bytes, state_dir, self._slots)
            metrics.bot_queued.set_function(lambda: len(self._tasks) + d.pending)
            metrics.bot_in_flight.set_function(lambda: self._in_flight + d.in_flight)
        else:  # read when scraped, not set on every stanza
            metrics.bot_queued.set_function(lambda: len(self._tasks))
            metrics.bot_in_flight.set_function(lambda: self._in_flight)

    @property
    def queued(self) -> int:
        return len(self._tasks)

    def submit(self, stanza: Stanza) -> None:
        """Take a stanza for the bot; never blocks. Stanzas of type error must not reach here."""
        if self.delivery is not None and stanza.kind != "iq":
            self.delivery.submit(stanza)
            return
        if not self._accepting:
            self._metrics.outcomes[Outcome.SHUTTING_DOWN].inc()
            self._send(error_reply(stanza, error_map.SHUTTING_DOWN))
            return
        if len(self._tasks) >= self._bot.max_queued:
            self._metrics.outcomes[Outcome.QUEUE_FULL].inc()
            log.warning(
                "bot queue full (%d stanzas waiting): refused a %s from %s", len(self._tasks), stanza.kind, stanza.from_
            )
            self._send(error_reply(stanza, error_map.QUEUE_FULL))
            return
        deadline = asyncio.get_running_loop().time() + self._bot.timeout
        key = conversation(stanza)
        turn = _Turn()
        waiting = self._turns.get(key)
        if waiting is None:
            waiting = self._turns[key] = deque()
        waiting.append(turn)
        task = asyncio.create_task(self._run(stanza, key, turn, deadline))
        self._tasks.add(task)
        task.add_done_callback(lambda task: self._done(task, key, turn))

    def _done(self, task: asyncio.Task[None], key: tuple[str, str], turn: _Turn) -> None:
        self._tasks.discard(task)
        if turn.replies is None:  # cancelled before it ever ran: its successors must not wait forever
            turn.replies = []
            self._release(key)

    async def _run(self, stanza: Stanza, key: tuple[str, str], turn: _Turn, deadline: float) -> None:
        try:
            turn.replies = await self._ask(stanza, deadline)
        except asyncio.CancelledError:
            if not self._accepting:  # given up at shutdown: the sender is still told
                self._metrics.outcomes[Outcome.SHUTTING_DOWN].inc()
                turn.replies = [error_reply(stanza, error_map.SHUTTING_DOWN)]
            raise
        except Exception:  # the error boundary of the bot flow: log once, answer, keep serving
            self._metrics.internal_errors.inc()
            log.exception("internal error while handling a %s from %s", stanza.kind, stanza.from_)
            turn.replies = [error_reply(stanza, error_map.INTERNAL)]
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

    async def _ask(self, stanza: Stanza, deadline: float) -> list[Stanza]:
        """POST one stanza and turn the outcome into the stanzas to send."""
        bot = self._bot
        template = self._router.template_for(stanza)
        if template is None:
            return self._failed(stanza, Outcome.NO_ROUTE, error_map.NO_ROUTE, "no bot.url and no route", "-")
        url = fill(template, stanza)
        if self._slots.locked():  # wait for a slot, but not past the deadline (the sender is told at it)
            try:
                await asyncio.wait_for(self._slots.acquire(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                reason = f"no reply within {bot.timeout:g} s (all of it spent waiting for one of bot.max_in_flight)"
                return self._failed(stanza, Outcome.TIMEOUT, error_map.TIMEOUT, reason, url)
        else:
            await self._slots.acquire()
        body = stanza.xml.encode() if bot.format == "xml" else codec.request_json(stanza)
        headers = self._headers if self._key is None else {**self._headers, **signing.headers(self._key, body)}
        self._in_flight += 1
        started = time.perf_counter()
        try:
            reply = await self._http.post(url, body, headers, bot.max_reply_bytes, deadline)
        except client.TimedOut:
            return self._failed(stanza, Outcome.TIMEOUT, error_map.TIMEOUT, f"no reply within {bot.timeout:g} s", url)
        except client.ConnectionFailed as exc:
            return self._failed(stanza, Outcome.CONNECTION_ERROR, error_map.CONNECTION_FAILURE, str(exc), url)
        except client.TooLarge:
            reason = f"the reply is larger than bot.max_reply_bytes ({bot.max_reply_bytes} bytes)"
            return self._failed(stanza, Outcome.UNUSABLE, error_map.unusable_reply(reason), reason, url)
        except client.BadReply as exc:
            return self._failed(stanza, Outcome.UNUSABLE, error_map.unusable_reply(str(exc)), str(exc), url)
        finally:
            self._in_flight -= 1
            self._slots.release()
        self._metrics.bot_latency.observe(time.perf_counter() - started)
        if not 200 <= reply.status < 300:
            error = error_map.for_status(reply.status)
            return self._failed(stanza, Outcome.HTTP_ERROR, error, f"HTTP {reply.status}", url)
        try:
            replies = codec.reply_stanzas(
                stanza, self._domain, reply.status, reply.content_type, reply.body, self._max_stanza_bytes
            )
        except ReplyError as exc:
            return self._failed(stanza, Outcome.UNUSABLE, error_map.unusable_reply(str(exc)), str(exc), url)
        if replies.ignored:
            self._ignored(template, url, replies.ignored)
        else:
            self._metrics.outcomes[Outcome.REPLIED if replies else Outcome.SILENT].inc()
        return replies

    def _ignored(self, template: str, url: str, media: str) -> None:
        """A 200 of a type we do not read: nothing is sent (as both Prosody modules do); counted each time,
        logged once per bot, since such a bot does it on every stanza."""
        self._metrics.outcomes[Outcome.IGNORED].inc()
        if template not in self._ignoring and len(self._ignoring) < 1000:
            self._ignoring.add(template)
            log.warning(
                "bot %s answered 200 with Content-Type %s: nothing is sent (a reply is read as application/json, "
                "application/xmpp+xml or text/plain); said once for this bot, counted in "
                'bot_requests_total{outcome="ignored"}',
                url,
                media,
            )

    def _failed(self, stanza: Stanza, outcome: Outcome, error: XmppError, reason: str, url: str) -> list[Stanza]:
        self._metrics.outcomes[outcome].inc()
        log.warning("bot %s failed for a %s from %s to %s: %s", url, stanza.kind, stanza.from_, stanza.to, reason)
        return [error_reply(stanza, error)]

    async def drain(self, timeout: float) -> None:
        """Refuse new stanzas (each sender is told), give those accepted up to `timeout` seconds, then cancel
        the rest. Queued delivery, meanwhile, starts no new attempt and still writes what arrives to its queue."""
        if self.delivery is not None:
            await asyncio.gather(self._drain(timeout), self.delivery.drain(timeout))
        else:
            await self._drain(timeout)

    async def _drain(self, timeout: float) -> None:
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
