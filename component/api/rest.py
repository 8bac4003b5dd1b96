"""mod_rest's REST API, on the send API's server: a program written for Prosody's mod_rest works against us.

    POST /rest                      a stanza: JSON (mod_rest's mapping), application/xmpp+xml, form or text
    POST /rest/{kind}/{type}/{to}   the same, with kind, type and to taken from the path
    GET  /rest/{query}/{to}         an iq get (ping, version, disco, items); the query string fills it in

An iq waits for its answer (mod_rest's Prosody-Rest-Timeout header honoured, bounded) and returns it, as XML or
JSON as the Accept header asks; any other stanza is sent and answered 202. Authentication: the send API's bearer
token, or HTTP Basic with the component's JID and secret. Errors have mod_rest's JSON shape. Checked in the send
API's order (size, credentials, content type, stream, body); a refusal before the body is read closes the
connection.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

from component import codec
from component.api.iq import Closed, IqWaiter, SendAll
from component.codec import ReplyError, StanzaTooLarge
from component.config import Config
from component.stanza import Stanza
from component.xml import NS_COMPONENT

FORM = "application/x-www-form-urlencoded"
INPUTS = (codec.XMPP_XML, codec.JSON, FORM, codec.TEXT)
OUTPUTS = (codec.XMPP_XML, codec.JSON, FORM)  # mod_rest's order: XML unless the Accept header prefers another
QUERIES = ("ping", "version", "disco", "items")  # GET /rest/{query}/{to}
IQ_TIMEOUT = 120.0  # mod_rest's rest_iq_timeout
IQ_MAX_TIMEOUT = 300.0  # mod_rest's rest_iq_max_timeout: the most a Prosody-Rest-Timeout header gets
ROUTES = ("/rest", "/rest/{kind}/{type}/{to}", "/rest/{query}/{to}")

ReadBody = Callable[[web.Request], Awaitable[bytes | None]]  # the body, None when it did not arrive in time


@dataclass(frozen=True, slots=True)
class RestError:
    """One of mod_rest's errors: the HTTP status, and the XMPP-style error it carries."""

    status: int
    type: str
    condition: str
    text: str


NO_CREDENTIALS = RestError(401, "auth", "not-authorized", "No credentials provided")
NOT_ACCEPTED = RestError(403, "auth", "not-authorized", "Credentials not accepted")
MALFORMED = RestError(403, "auth", "not-authorized", "Credentials malformed")
PARSE = RestError(400, "modify", "not-well-formed", "Failed to parse payload")
KIND = RestError(422, "modify", "unsupported-stanza-type", "Invalid stanza, must be 'message', 'presence' or 'iq'.")
TO = RestError(422, "modify", "improper-addressing", "Invalid destination JID")
FROM = RestError(422, "modify", "invalid-from", "Invalid source JID")
FROM_AUTH = RestError(403, "auth", "not-authorized", "Not authorized to send stanza with requested 'from'")
IQ_TYPE = RestError(422, "modify", "invalid-xml", "'iq' stanza must be of type 'get' or 'set'")
IQ_TAGS = RestError(422, "modify", "bad-format", "'iq' stanza must have exactly one child tag")
MEDIA = RestError(415, "cancel", "bad-format", "Unsupported media type")
SIZE = RestError(413, "modify", "resource-constraint", "Payload too large")
SLOW = RestError(408, "wait", "resource-constraint", "The body did not arrive in time")
DOWN = RestError(503, "wait", "remote-server-timeout", "The XMPP stream is down; nothing was sent, try again later")
STOPPING = RestError(503, "cancel", "service-unavailable", "The component is shutting down")
IQ_TIMED_OUT = RestError(504, "wait", "remote-server-timeout", "IQ stanza timed out")
BY_FIELD = {"to": TO, "kind": KIND, "type": IQ_TYPE}


def error_response(error: RestError, reason: str = "", close: bool = False, realm: str = "") -> web.Response:
    """mod_rest's error JSON, `reason` (ours, more precise) after its text."""
    text = f"{error.text}: {reason}" if reason else error.text
    body: dict[str, Any] = {"type": "error", "error": {"type": error.type, "condition": error.condition, "text": text}}
    body["code"] = error.status
    headers = {"WWW-Authenticate": f'Basic realm="{realm}", Bearer realm="{realm}"'} if error.status == 401 else None
    response = web.json_response(body, status=error.status, headers=headers)
    if close:  # refused before its body was read: close the connection once answered
        response.force_close()
    return response


def _refusal(exc: ReplyError) -> RestError:
    if isinstance(exc, StanzaTooLarge):
        return SIZE
    if exc.field == "from":
        return FROM_AUTH if exc.forbidden else FROM
    return BY_FIELD.get(exc.field or "", PARSE)


def timeout_of(request: web.Request) -> float:
    """mod_rest's wait for an iq answer: Prosody-Rest-Timeout seconds if given and a number, bounded."""
    try:
        asked = float(request.headers.get("Prosody-Rest-Timeout", IQ_TIMEOUT))
    except ValueError:
        asked = IQ_TIMEOUT
    return IQ_TIMEOUT if math.isnan(asked) else min(max(asked, 0.0), IQ_MAX_TIMEOUT)


def output_type(request: web.Request) -> str:
    """mod_rest's choice of answer format: whichever of OUTPUTS comes first in Accept, then Content-Type."""
    wanted = f"{request.headers.get('Accept', '')},{request.headers.get('Content-Type', '')}"
    return min(OUTPUTS, key=lambda media: (at if (at := wanted.find(media)) >= 0 else 1000, OUTPUTS.index(media)))


def encode(media: str, stanza: Stanza) -> bytes:
    """An answer as mod_rest writes it in `media`."""
    if media == codec.XMPP_XML:
        return stanza.xml.encode()
    mapped = codec.answer_json(stanza)
    if media == codec.JSON:
        return json.dumps(mapped, ensure_ascii=False).encode()
    flat = {k: "" if v is True else str(v) for k, v in mapped.items() if v is True or _flat(v)}
    return urlencode(flat).encode()  # only string, number and true values can be form-encoded


def _flat(value: Any) -> bool:
    return isinstance(value, str | int | float) and not isinstance(value, bool)


def amend(data: dict[str, Any], kind: str, stanza_type: str, to: str) -> dict[str, Any]:
    """mod_rest's reading of the path: /{kind}/{type}/{to}, where an iq's `type` may name its query instead."""
    if kind == "iq" and stanza_type not in ("get", "set"):
        data = {"kind": "iq", stanza_type: True if stanza_type == "ping" else (data or {})}
    else:
        data = {**data, "kind": kind, "type": stanza_type}
    if to:
        data["to"] = to
    return data


def parse(media: str, body: bytes, path: tuple[str, str, str] | None) -> dict[str, Any] | str:
    """The request as a JSON object or XML text (ValueError: unreadable, with the reason)."""
    if path is not None and path[0] not in ("message", "presence", "iq"):
        raise ValueError(f"the path names no stanza kind: {path[0]!r}")
    if media == codec.XMPP_XML:
        return body.decode()
    text = body.decode()
    data: dict[str, Any]
    if media == codec.JSON:
        value = json.loads(text)
        if not isinstance(value, dict):
            raise ValueError("expected a JSON object")
        data = value
    elif media == FORM and ("=" in text or not text):
        data = dict(parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)))
    elif media == FORM and path is not None:
        raise ValueError("expected form fields")
    elif media in (codec.TEXT, FORM):  # a form without fields is text, as in mod_rest
        kind = path[0] if path is not None else "message"
        if kind == "iq":
            raise ValueError("text is a message body or a presence show, not an iq")
        data = {"body" if kind == "message" else "show": text} | ({} if path else {"type": "chat"})
    else:
        data = {}
    return data if path is None else amend(data, *path)


def add_routes(
    app: web.Application, config: Config, is_up: Callable[[], bool], send_all: SendAll, waiter: IqWaiter, read: ReadBody
) -> None:
    domain = config.component.jid
    limit = config.bot.max_reply_bytes
    token = config.api.token.encode()
    basic = f"{domain}:{config.component.secret}".encode()
    realm = f"{domain}/rest"

    def credentials(request: web.Request) -> RestError | None:
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        given = given.strip()
        if scheme.lower() == "bearer" and given:
            return None if hmac.compare_digest(given.encode(), token) else NOT_ACCEPTED
        if scheme.lower() == "basic" and given:
            try:
                decoded = base64.b64decode(given, validate=True)
            except binascii.Error:
                return MALFORMED
            return None if hmac.compare_digest(decoded, basic) else NOT_ACCEPTED
        return NO_CREDENTIALS

    async def send(request: web.Request, stanza: Stanza) -> web.Response:
        if stanza.kind != "iq":
            if not send_all([stanza]):
                return error_response(DOWN)
            return web.Response(status=202)
        if stanza.type not in ("get", "set"):
            return error_response(IQ_TYPE)
        if len(ET.fromstring(f'<w xmlns="{NS_COMPONENT}">{stanza.xml}</w>')[0]) != 1:
            return error_response(IQ_TAGS)
        media = output_type(request)
        try:
            answer = await waiter.ask(stanza, timeout_of(request), send_all)
        except ValueError as exc:
            return error_response(PARSE, str(exc))
        except Closed:
            return error_response(STOPPING)
        if answer is None:
            return error_response(IQ_TIMED_OUT if is_up() else DOWN)
        return web.Response(body=encode(media, answer), headers={"Content-Type": media})

    async def handle(request: web.Request, path: tuple[str, str, str] | None, query: bool) -> web.Response:
        if request.content_length is not None and request.content_length > limit:
            return error_response(SIZE, f"over bot.max_reply_bytes ({limit} bytes)", close=True)
        if (refused := credentials(request)) is not None:
            return error_response(refused, close=True, realm=realm)
        media = codec.media_type(request.headers.get("Content-Type")) if request.method == "POST" else FORM
        bodiless = request.method == "GET" or (path is not None and not request.can_read_body)
        if media not in INPUTS and not (media == "" and bodiless):
            return error_response(MEDIA, f"{media or 'none'}; expected one of {', '.join(INPUTS)}", close=True)
        if not is_up():
            return error_response(DOWN)
        if query:
            body = request.query_string.encode()
        else:
            try:
                found = await read(request)
            except web.HTTPRequestEntityTooLarge:
                return error_response(SIZE, f"over bot.max_reply_bytes ({limit} bytes)", close=True)
            if found is None:
                return error_response(SLOW, close=True)
            body = found
        try:
            value = parse(media, body, path)
            stanza = codec.send_stanza(domain, value, config.component.max_stanza_bytes)
        except ReplyError as exc:
            return error_response(_refusal(exc), str(exc))
        except ValueError as exc:  # JSON, UTF-8 or form errors are ValueErrors too
            return error_response(PARSE, str(exc)[:300])
        return await send(request, stanza)

    async def post(request: web.Request) -> web.Response:
        return await handle(request, None, False)

    async def post_path(request: web.Request) -> web.Response:
        info = request.match_info
        return await handle(request, (info["kind"], info["type"], info["to"]), False)

    async def get_query(request: web.Request) -> web.Response:
        name = request.match_info["query"]
        if name not in QUERIES:
            return error_response(IQ_TAGS, f"no query {name!r} here; known: {', '.join(QUERIES)}"[:300])
        if request.query_string and "=" not in request.query_string:
            return error_response(PARSE, "the query string holds no fields")
        return await handle(request, ("iq", name, request.match_info["to"]), True)

    app.router.add_post("/rest", post)
    app.router.add_post("/rest/{kind}/{type}/{to:.+}", post_path)
    app.router.add_get("/rest/{query}/{to:.+}", get_query)
