"""The echo bot: a tiny aiohttp server that answers every message with "Did you say <body>?".

Run it, then point the component's `bot.url` at it:

    python examples/echo_bot.py [--host 127.0.0.1] [--port 8080]

It reads the JSON the component POSTs (`to`, `from`, `kind`, `stanza`, `body`, ...), replies
`{"body": "Did you say <body>?"}` to a message that has a body, and 204 No Content (no reply) to anything else.
"""

from __future__ import annotations

import argparse
from typing import Any

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    try:
        data: Any = await request.json()
    except ValueError:
        return web.Response(status=400, text="expected a JSON object\n")
    if isinstance(data, dict) and data.get("kind") == "message" and isinstance(data.get("body"), str):
        return web.json_response({"body": f"Did you say {data['body']}?"})
    return web.Response(status=204)


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Echo bot for xmpp-http-component.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on (default: 8080)")
    args = parser.parse_args(argv)
    web.run_app(make_app(), host=args.host, port=args.port, access_log=None)


if __name__ == "__main__":
    main()
