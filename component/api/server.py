"""The send API's HTTP side: POST /v1/stanzas and POST /v1/iq, and mod_rest's REST API under /rest (rest.py).

Every request is treated as hostile and checked in this order: size, then the bearer token (compared in
constant time), then the content type, then the stream, then the body. A request refused before its body is
read (413, 401, 415) is answered with `Connection: close` and its connection closed: the body is never read.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from component import codec
from component.api import rest
from component.api.iq import Closed, IqWaiter, SendAll
from component.codec import ReplyError, StanzaTooLarge
from component.config import Config
from component.http_server import API_LIMITS, Served, ServerLimits, serve
from component.metrics import Metrics
from component.stanza import Stanza

MEDIA = (codec.JSON, codec.XMPP_XML)
BODY_SECONDS = 10.0


def json_error(
    status: int, message: str, field: str | None = None, headers: dict[str, str] | None = None, close: bool = False
) -> web.Response:
    """A JSON error answer, `{"error": message, "field": ...}`: the one shape of every refusal of the send API."""
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    response = web.json_response(body, status=status, headers=headers)
    if close:  # the body is left unread: say so, and close the connection once answered
        response.force_close()
    return response


def unauthorized(request: web.Request, token: bytes) -> web.Response | None:
    """None when the request carries `Authorization: Bearer <token>` (compared in constant time); else the 401."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token):
        return None
    return json_error(
        401,
        "a valid 'Authorization: Bearer <api.token>' header is required",
        headers={"WWW-Authenticate": 'Bearer realm="xmpp-http-component"'},
        close=True,
    )


AddRoutes = Callable[[web.Application], None]


def make_app(
    config: Config,
    metrics: Metrics,
    is_up: Callable[[], bool],
    send_all: SendAll,
    waiter: IqWaiter,
    more: Sequence[AddRoutes] = (),
) -> web.Application:
    """The send API; `more` adds the routes of other parts (each checks the token with `unauthorized`)."""
    domain = config.component.jid
    limit = config.bot.max_reply_bytes
    token = config.api.token.encode()
    timeout = config.bot.timeout
    too_big = f"the body is larger than bot.max_reply_bytes ({limit} bytes)"

    async def read_body(request: web.Request) -> bytes | None:
        """The body, or None when it did not arrive within BODY_SECONDS (raises HTTPRequestEntityTooLarge)."""
        try:
            async with asyncio.timeout(BODY_SECONDS):  # a trickled body would hold a connection slot forever
                return await request.read()
        except TimeoutError:
            return None

    async def read_stanzas(request: web.Request) -> list[Stanza] | web.Response:
        if request.content_length is not None and request.content_length > limit:
            return json_error(413, too_big, close=True)
        if (refused := unauthorized(request, token)) is not None:
            return refused
        media = codec.media_type(request.content_type)
        if media not in MEDIA:
            return json_error(
                415, f"Content-Type must be {codec.JSON} or {codec.XMPP_XML}, got {media or 'none'!r}", close=True
            )
        try:
            body = await read_body(request)
        except web.HTTPRequestEntityTooLarge:
            return json_error(413, too_big, close=True)
        if body is None:
            return json_error(408, f"the body did not arrive within {BODY_SECONDS:g} s", close=True)
        if not is_up():
            return json_error(503, "the XMPP stream is down; nothing was sent, try again later")
        try:
            return codec.api_stanzas(domain, media, body, config.component.max_stanza_bytes)
        except StanzaTooLarge as exc:
            return json_error(413, str(exc))
        except ReplyError as exc:
            return json_error(403 if exc.forbidden else 400, str(exc), exc.field)

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = json_error(exc.status, exc.reason)
        route = request.match_info.route.resource
        # a registered route's pattern (a bounded set, e.g. "/v1/rooms/{room}"), or "other": never the raw path
        path = route.canonical if route is not None else "other"
        metrics.api_requests.labels(path, str(response.status)).inc()
        return response

    async def stanzas(request: web.Request) -> web.Response:
        result = await read_stanzas(request)
        if isinstance(result, web.Response):
            return result
        if not send_all(result):
            return json_error(503, "the XMPP stream went down; nothing was sent, try again later")
        return web.json_response({"sent": len(result)})

    async def iq(request: web.Request) -> web.Response:
        result = await read_stanzas(request)
        if isinstance(result, web.Response):
            return result
        if len(result) != 1 or result[0].kind != "iq" or result[0].type not in ("get", "set"):
            return json_error(400, "expected exactly one iq of type get or set", "kind")
        try:
            answer = await waiter.ask(result[0], timeout, send_all)
        except ValueError as exc:
            return json_error(400, str(exc), "id")
        except Closed:
            return json_error(503, "the component is shutting down")
        if answer is None:
            return json_error(504, f"no answer within {timeout:g} s (bot.timeout)")
        return web.json_response({"type": answer.type, "stanza": answer.xml})

    app = web.Application(middlewares=[count], client_max_size=limit)
    app.router.add_post("/v1/stanzas", stanzas)
    app.router.add_post("/v1/iq", iq)
    rest.add_routes(app, config, is_up, send_all, waiter, read_body)
    for add_routes in more:
        add_routes(app)
    app.on_shutdown.append(lambda _app: _close(waiter))
    return app


async def _close(waiter: IqWaiter) -> None:
    waiter.close()


async def start(
    config: Config,
    metrics: Metrics,
    is_up: Callable[[], bool],
    send_all: SendAll,
    waiter: IqWaiter,
    more: Sequence[AddRoutes] = (),
    limits: ServerLimits = API_LIMITS,
) -> Served:
    """Serve the send API where `api.listen` says (call it only when that is set). Raises ListenError."""
    listen = config.api.listen
    if listen is None:
        raise ValueError("api.listen is off")
    return await serve(
        make_app(config, metrics, is_up, send_all, waiter, more), "api.listen", listen.host, listen.port, limits
    )
