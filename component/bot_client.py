"""One POST to the bot: a total timeout, a cap on the reply size, and failures sorted into outcomes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from yarl import URL

from component import error_map
from component.error_map import XmppError


@dataclass(frozen=True, slots=True)
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
    session: aiohttp.ClientSession,
    url: URL,
    body: bytes,
    headers: Mapping[str, str],
    timeout: float,
    max_bytes: int,
) -> HttpReply:
    """POST `body`; the reply body is read only for status 200, and only up to `max_bytes`."""
    try:
        async with asyncio.timeout(timeout):
            async with session.post(url, data=body, headers=headers) as resp:
                content_type = resp.headers.get("Content-Type")
                if resp.status != 200:
                    return HttpReply(resp.status, content_type, b"")
                length = resp.content_length
                if length is not None:
                    if length > max_bytes:
                        raise _too_large(max_bytes)
                    return HttpReply(200, content_type, await resp.read())
                data = bytearray()
                async for chunk in resp.content.iter_any():
                    data += chunk
                    if len(data) > max_bytes:
                        raise _too_large(max_bytes)
                return HttpReply(200, content_type, bytes(data))
    except TimeoutError:
        raise BotFailure("timeout", error_map.TIMEOUT, f"no complete reply within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise BotFailure("connection_error", error_map.CONNECTION_FAILURE, reason) from None


def new_session(max_in_flight: int) -> aiohttp.ClientSession:
    """The one keep-alive session for all bot requests: no cookies, no proxy lookups, few automatic headers."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=0),
        timeout=aiohttp.ClientTimeout(total=None),
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=("User-Agent", "Accept"),
        headers={"User-Agent": "xmpp-http-component"},
    )


def _too_large(max_bytes: int) -> BotFailure:
    reason = f"the reply is larger than bot.max_reply_bytes ({max_bytes} bytes)"
    return BotFailure("unusable", error_map.unusable_reply(reason), reason)
