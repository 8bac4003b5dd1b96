"""A lean echo bot for the benchmark: the same answers as examples/echo_bot.py, from a bare asyncio protocol.

It stands for a bot written where HTTP is cheap (Go's net/http, a C server): the benchmark then measures the
component and the XMPP server rather than aiohttp's server. HTTP/1.1 with keep-alive and Content-Length bodies
only, which is what the component sends; anything else closes the connection.

    python bench/lean_bot.py --port 8080
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

NO_REPLY = b"HTTP/1.1 204 No Content\r\n\r\n"


def answer(body: bytes) -> bytes:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    if isinstance(data, dict) and data.get("kind") == "message" and isinstance(data.get("body"), str):
        reply = json.dumps({"body": f"Did you say {data['body']}?"}, ensure_ascii=False).encode()
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(reply)
        return head + reply
    return NO_REPLY


class Bot(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        out = []
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                break
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            out.append(answer(body))
        if out:
            self.transport.write(b"".join(out))


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Bot, host, port)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port))
    else:
        uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
