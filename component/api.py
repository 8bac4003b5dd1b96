"""The send API: programs (bots first) send stanzas and iqs through the component. Off unless [api] listen.

Every request is treated as hostile and checked in this order: size, then the bearer token (compared in
constant time), then the content type, then the stream, then the body.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from component import codec
from component.codec import ReplyError, Stanza
from component.config import Config
from component.metrics import Metrics

SendAll = Callable[[list[Stanza]], bool]
AskIq = Callable[[Stanza, float], Awaitable[Stanza | None]]
MEDIA = (codec.JSON, codec.XMPP_XML)


def _error(status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)


def make_app(
    config: Config, metrics: Metrics, is_up: Callable[[], bool], send_all: SendAll, ask_iq: AskIq
) -> web.Application:
    domain = config.component.jid
    limit = config.bot.max_reply_bytes
    token = config.api.token.encode()
    timeout = config.bot.timeout

    async def read_stanzas(request: web.Request) -> list[Stanza] | web.Response:
        if request.content_length is not None and request.content_length > limit:
            return _error(413, f"the body is larger than bot.max_reply_bytes ({limit} bytes)")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            return _error(
                401,
                "a valid 'Authorization: Bearer <api.token>' header is required",
                headers={"WWW-Authenticate": 'Bearer realm="xmpp-http-component"'},
            )
        media = codec.media_type(request.content_type)
        if media not in MEDIA:
            return _error(415, f"Content-Type must be {codec.JSON} or {codec.XMPP_XML}, got {media or 'none'!r}")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the body is larger than bot.max_reply_bytes ({limit} bytes)")
        if not is_up():
            return _error(503, "the XMPP stream is down; nothing was sent, try again later")
        try:
            stanzas = codec.api_stanzas(domain, media, body)
        except ReplyError as exc:
            return _error(403 if exc.forbidden else 400, str(exc), exc.field)
        too_large = codec.size_error(stanzas, config.component.max_stanza_bytes)
        return _error(413, too_large) if too_large is not None else stanzas

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = _error(exc.status, exc.reason)
        metrics.api_requests.labels(request.path if request.path in PATHS else "other", str(response.status)).inc()
        return response

    async def stanzas(request: web.Request) -> web.Response:
        result = await read_stanzas(request)
        if isinstance(result, web.Response):
            return result
        if not send_all(result):
            return _error(503, "the XMPP stream went down; nothing was sent, try again later")
        return web.json_response({"sent": len(result)})

    async def iq(request: web.Request) -> web.Response:
        result = await read_stanzas(request)
        if isinstance(result, web.Response):
            return result
        if len(result) != 1 or result[0].kind != "iq" or result[0].type not in ("get", "set"):
            return _error(400, "expected exactly one iq of type get or set", "kind")
        try:
            answer = await ask_iq(result[0], timeout)
        except ValueError as exc:
            return _error(400, str(exc), "id")
        if answer is None:
            return _error(504, f"no answer within {timeout:g} s (bot.timeout)")
        return web.json_response({"type": answer.type, "stanza": answer.xml})

    app = web.Application(middlewares=[count], client_max_size=limit)
    app.router.add_post("/v1/stanzas", stanzas)
    app.router.add_post("/v1/iq", iq)
    return app


PATHS = ("/v1/stanzas", "/v1/iq")
