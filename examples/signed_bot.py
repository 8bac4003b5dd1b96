"""An echo bot that accepts only requests signed by the component (bot.signing_secret).

    WEBHOOK_SECRET=whsec_... python examples/signed_bot.py [--port 8080]

The component signs each request the Standard Webhooks way: headers `webhook-id`, `webhook-timestamp` and
`webhook-signature` ("v1," + base64 of HMAC-SHA256 over "{id}.{timestamp}.{body}", keyed with the base64-decoded
part of the secret after "whsec_"). Any Standard Webhooks library verifies them (in Python:
`standardwebhooks.webhooks.Webhook(secret).verify(body, headers)`); this bot does it with the standard library.
A request that fails verification gets 401, so the sender hears `not-authorized`.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import time

from aiohttp import web

TOLERANCE = 300  # seconds: older (or newer) timestamps are refused, so a captured request cannot be replayed later


def verified(secret: bytes, headers: dict[str, str], body: bytes, now: float | None = None) -> bool:
    msg_id, timestamp = headers.get("webhook-id", ""), headers.get("webhook-timestamp", "")
    if not msg_id or not timestamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(timestamp)) > TOLERANCE:
        return False
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    return any(hmac.compare_digest(expected, given) for given in headers.get("webhook-signature", "").split())


def make_app(whsec: str) -> web.Application:
    secret = base64.b64decode(whsec.removeprefix("whsec_"))

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        if not verified(secret, {k.lower(): v for k, v in request.headers.items()}, body):
            return web.Response(status=401, text="bad signature\n")
        data = json.loads(body)
        if data.get("kind") == "message" and isinstance(data.get("body"), str):
            return web.json_response({"body": f"Verified: {data['body']}"})
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="Signed-request echo bot for xmpp-http-component.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    web.run_app(make_app(os.environ["WEBHOOK_SECRET"]), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
