"""Queued delivery on the send API (bearer token required, as on every route):

    GET  /v1/status            per bot URL: pending stanzas, the oldest's age, the last error and success
    GET  /v1/dead              the dead letters, oldest first (?limit=, at most 1000; ?after=<id>: next page)
    POST /v1/dead/{id}/retry   queue a dead letter again

Present only with `bot.delivery = "queued"`. Times are Unix seconds.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from component.api.server import AddRoutes, json_error, unauthorized
from component.delivery.sender import Delivery
from component.delivery.store import DeadLetter

DEAD_PAGE = 100
DEAD_PAGE_MAX = 1000


def _number(request: web.Request, name: str, default: int, low: int, high: int) -> int | web.Response:
    text = request.query.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        return json_error(400, f"{name} must be an integer from {low} to {high}", name)
    return int(text)


def dead_letter_json(dead: DeadLetter) -> dict[str, Any]:
    entry, stanza = dead.entry, dead.entry.stanza
    return {
        "id": entry.seq,
        "webhook_id": entry.webhook_id,
        "url": entry.url,
        "kind": stanza.kind,
        "from": stanza.from_,
        "to": stanza.to,
        "type": stanza.type,
        "body": stanza.body,
        "stanza": stanza.xml,
        "accepted_at": entry.accepted,
        "died_at": dead.died,
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "last_error_at": entry.last_error_at,
    }


def add_routes(delivery: Delivery, token: str) -> AddRoutes:
    """The routes, for api.server's `more`."""
    secret = token.encode()

    async def status(request: web.Request) -> web.Response:
        if (refused := unauthorized(request, secret)) is not None:
            return refused
        return web.json_response(delivery.status())

    async def dead(request: web.Request) -> web.Response:
        if (refused := unauthorized(request, secret)) is not None:
            return refused
        limit = _number(request, "limit", DEAD_PAGE, 1, DEAD_PAGE_MAX)
        if isinstance(limit, web.Response):
            return limit
        after = _number(request, "after", 0, 0, 2**63 - 1)
        if isinstance(after, web.Response):
            return after
        letters = delivery.dead(limit, after)
        more = letters[-1].entry.seq if len(letters) == limit else None
        return web.json_response({"dead": [dead_letter_json(d) for d in letters], "next_after": more})

    async def retry(request: web.Request) -> web.Response:
        if (refused := unauthorized(request, secret)) is not None:
            return refused
        text = request.match_info["id"]
        entry = delivery.retry(int(text)) if text.isdigit() and len(text) < 19 else None
        if entry is None:
            return json_error(404, f"no dead letter {text}", "id")
        return web.json_response({"queued": entry.seq, "webhook_id": entry.webhook_id})

    def add(app: web.Application) -> None:
        app.router.add_get("/v1/status", status)
        app.router.add_get("/v1/dead", dead)
        app.router.add_post("/v1/dead/{id}/retry", retry)

    return add
