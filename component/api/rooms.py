"""Group chats on the send API (bearer token required, as on every route):

    GET    /v1/rooms                 every room a bot sits in (or should): joined or not, and why not
    PUT    /v1/rooms/{room}          {"bot": "echo", "nick": "Echo", "password": "...", "history": 0}: join it
    DELETE /v1/rooms/{room}?bot=echo leave it

Rooms added here are kept in `[state] dir` and joined again after a restart; rooms of the config file
([[rooms.join]]) are listed, but changed there only (409).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from component.api.server import BODY_SECONDS, AddRoutes, json_error, unauthorized
from component.rooms.manager import RoomError, RoomManager

MAX_BODY = 16384
MAX_HISTORY = 1000


def _settings(body: bytes) -> dict[str, Any] | web.Response:
    """The PUT body: a JSON object with `bot` (required), `nick`, `password` and `history`."""
    try:
        value = json.loads(body or b"null")
    except (ValueError, RecursionError):
        return json_error(400, "the body is not valid JSON")
    if not isinstance(value, dict):
        return json_error(400, 'expected a JSON object such as {"bot": "echo", "nick": "Echo"}')
    for key in value:
        if key not in ("bot", "nick", "password", "history"):
            return json_error(400, f"unknown field {key[:60]!r} (known: bot, nick, password, history)", key[:60])
    for key in ("bot", "nick", "password"):
        if key in value and not isinstance(value[key], str):
            return json_error(400, f"'{key}' must be a string", key)
    if not value.get("bot"):
        return json_error(400, "'bot' is required: the local part of the bot JID that sits in the room", "bot")
    history = value.get("history", 0)
    if not isinstance(history, int) or isinstance(history, bool) or not 0 <= history <= MAX_HISTORY:
        return json_error(400, f"'history' must be an integer from 0 to {MAX_HISTORY}", "history")
    return value


def add_routes(rooms: RoomManager, token: str) -> AddRoutes:
    """The routes, for api.server's `more`."""
    secret = token.encode()

    async def listing(request: web.Request) -> web.Response:
        if (refused := unauthorized(request, secret)) is not None:
            return refused
        return web.json_response({"rooms": rooms.listing(), "kept": rooms.kept})

    async def put(request: web.Request) -> web.Response:
        if (refused := unauthorized(request, secret)) is not None:
            return refused
        if request.content_length is not None and request.content_length > MAX_BODY:
            return json_error(413, f"the body is larger than {MAX_BODY} bytes")
        try:
            async with asyncio.timeout(BODY_SECONDS):  # a trickled body would hold a connection slot forever
                body = await request.read()
        except TimeoutError:
            return json_error(408, f"the body did not arrive within {BODY_SECONDS:g} s")
        except web.HTTPRequestEntityTooLarge:
            return json_error(413, f"the body is larger than {MAX_BODY} bytes")
        if len(body) > MAX_BODY:
            return json_error(413, f"the body is larger than {MAX_BODY} bytes")
        settings = _settings(body)
        if isinstance(settings, web.Response):
            return settings
        room = request.match_info["room"]
        try:
            get = settings.get
            created = rooms.add(room, settings["bot"], get("nick", ""), get("password", ""), get("history", 0))
            room, bot = rooms.check_room(room), rooms.check_bot(settings["bot"])
        except RoomError as exc:
            return json_error(exc.status, str(exc), exc.field)
        return web.json_response({"room": room, "bot": bot, "kept": rooms.kept}, status=201 if created else 200)

    async def delete(request: web.Request) -> web.Response:
        if (refused := unauthorized(request, secret)) is not None:
            return refused
        try:
            left = rooms.remove(request.match_info["room"], request.query.get("bot"))
        except RoomError as exc:
            return json_error(exc.status, str(exc), exc.field)
        return web.json_response({"room": rooms.check_room(request.match_info["room"]), "left": left})

    def add(app: web.Application) -> None:
        app.router.add_get("/v1/rooms", listing)
        app.router.add_put("/v1/rooms/{room}", put)
        app.router.add_delete("/v1/rooms/{room}", delete)

    return add
