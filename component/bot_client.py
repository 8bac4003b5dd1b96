"""One POST to the bot: a total timeout, a cap on the reply size, and failures sorted into outcomes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from component import error_map, http1
from component.error_map import XmppError


@dataclass(slots=True)  # not frozen: a frozen dataclass is built five times slower, on every stanza
class HttpReply:
    status: int
    content_type: str | None
    body: bytes


class BotFailure(Exception):
    """The bot could not be asked or did not answer usably; `error` is what the sender is told."""

    def __init__(self, outcome: str, error: XmppError, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
        self.error = error
        self.reason = reason


async def post(
    client: http1.Client, url: str, body: bytes, headers: dict[str, str], timeout: float, max_bytes: int
) -> HttpReply:
    """POST `body`; the reply body is read only for status 200, and only up to `max_bytes`."""
    # asyncio.timeout's work, at a fifth of its cost per request: one timer that cancels this task.
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    timer = loop.call_at(loop.time() + timeout, expire)
    try:
        reply = await client.post(url, body, headers, max_bytes)
    except asyncio.CancelledError:
        if expired and task.uncancel() == 0:  # ours alone, not also a cancellation from outside
            raise BotFailure("timeout", error_map.TIMEOUT, f"no complete reply within {timeout:g} s") from None
        raise
    except http1.TooLarge:
        reason = f"the reply is larger than bot.max_reply_bytes ({max_bytes} bytes)"
        raise BotFailure("unusable", error_map.unusable_reply(reason), reason) from None
    except (http1.HttpError, OSError) as exc:
        raise BotFailure("connection_error", error_map.CONNECTION_FAILURE, str(exc) or type(exc).__name__) from None
    finally:
        timer.cancel()
    return HttpReply(reply.status, reply.headers.get("content-type"), reply.body)


def new_client() -> http1.Client:
    """The one client for all bot requests: keep-alive connections, our User-Agent."""
    return http1.Client({"User-Agent": "xmpp-http-component"})
