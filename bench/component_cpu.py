"""The component's own cost per message, without an XMPP server: a stand-in server on loopback speaks the
component protocol (XEP-0114 handshake, then chat messages with W in flight) to a real component process, whose
bot is bench/lean_bot.py. It prints the component's CPU time per message (user + system, from /proc) and the
rate. Use it to compare two versions of the component: the figures do not depend on Prosody or ejabberd.

    .venv/bin/python -m bench.component_cpu -n 50000 --window 50
    .venv/bin/python -m bench.component_cpu --repo ../other-checkout   # the same, another checkout's component
    .venv/bin/python -m bench.component_cpu --rabbit-port 5672         # with the rabbit backend, to that broker

Run it from the repository's root, as a module (it imports bench/bench.py and the tests' harness).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench import cpu_seconds, wait_port
from tests.harness.servers import free_port

HERE = Path(__file__).resolve().parent
DOMAIN = "bot.localhost"
SECRET = "bench-secret"


class StandIn:
    """The server side of one component stream: handshake, then messages out and replies counted."""

    def __init__(self) -> None:
        self.errors = 0
        self.connected: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.get_running_loop().create_future()
        )

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header = await reader.readuntil(b">")
        if header.lstrip().startswith(b"<?xml"):
            await reader.readuntil(b">")  # the stream header
        writer.write(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
            b"xmlns:stream='http://etherx.jabber.org/streams' id='bench' from='" + DOMAIN.encode() + b"'>"
        )
        await reader.readuntil(b"</handshake>")
        writer.write(b"<handshake/>")
        await writer.drain()
        self.connected.set_result((reader, writer))

    @staticmethod
    def message(i: int) -> bytes:
        return (
            f"<message from='alice@localhost/bench' to='echo@{DOMAIN}' type='chat' id='m{i}'>"
            f"<body>hello number {i}</body></message>"
        ).encode()

    async def run(self, n: int, window: int) -> float:
        reader, writer = await self.connected
        sent = received = 0
        started = time.perf_counter()
        writer.write(b"".join(self.message(i) for i in range(min(window, n))))
        sent = min(window, n)
        while received < n:
            data = await reader.read(65536)
            if not data:
                raise RuntimeError("the component closed the stream")
            answered = data.count(b"</message>")
            self.errors += data.count(b'type="error"')
            received += answered
            more = min(answered, n - sent)
            if more:
                writer.write(b"".join(self.message(sent + i) for i in range(more)))
                sent += more
        return time.perf_counter() - started


async def measure(args: argparse.Namespace, work: Path) -> dict[str, float]:
    port = free_port()
    stand_in = StandIn()
    server = await asyncio.start_server(stand_in.accept, "127.0.0.1", port)
    bot_port, web_port = free_port(), free_port()
    bot = subprocess.Popen([sys.executable, str(HERE / "lean_bot.py"), "--port", str(bot_port)])
    config = work / "config.toml"
    config.write_text(
        f'[component]\njid = "{DOMAIN}"\nsecret = "{SECRET}"\nport = {port}\n'
        f'[bot]\nurl = "http://127.0.0.1:{bot_port}/"\nmax_queued = 100000\n'
        f'[web]\nlisten = "127.0.0.1:{web_port}"\n'
    )
    if args.rabbit_port:  # the rabbit backend on, publishing each message's two events to a broker on loopback
        with config.open("a") as out:
            out.write(
                f'[outgoing_pools.rabbit.event_pusher.connection]\nhost = "127.0.0.1"\nport = {args.rabbit_port}\n'
                "[event_pusher.rabbit]\nmax_queued = 200000\npresence_exchange = {}\nchat_msg_exchange = {}\n"
            )
    env = {**os.environ, "PYTHONPATH": str(args.repo)}
    command = [sys.executable, "-m", "component", "--config", str(config), "--log-level", "WARNING"]
    if args.cprofile:
        command[1:1] = ["-m", "cProfile", "-o", str(args.cprofile.resolve())]
    component = subprocess.Popen(command, cwd=args.repo, env=env)
    try:
        wait_port(bot_port, bot, "the lean bot")
        await asyncio.wait_for(asyncio.shield(stand_in.connected), 20)
        await stand_in.run(min(args.n, 2000), args.window)  # warm-up
        before = cpu_seconds(component.pid), cpu_seconds(bot.pid)
        seconds = await stand_in.run(args.n, args.window)
        after = cpu_seconds(component.pid), cpu_seconds(bot.pid)
    finally:
        component.terminate()
        bot.terminate()
        component.wait(10)
        bot.wait(10)
        server.close()
    return {
        "n": args.n,
        "window": args.window,
        "msgs_per_s": round(args.n / seconds, 1),
        "component_cpu_us_per_msg": round((after[0] - before[0]) / args.n * 1e6, 1),
        "bot_cpu_us_per_msg": round((after[1] - before[1]) / args.n * 1e6, 1),
        "errors": stand_in.errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50000, help="messages measured (default 50000)")
    parser.add_argument("--window", type=int, default=50, help="messages in flight (default 50)")
    parser.add_argument("--repo", type=Path, default=HERE.parent, help="the checkout whose component runs")
    parser.add_argument("--cprofile", type=Path, help="run the component under cProfile, its stats written here")
    parser.add_argument("--rabbit-port", type=int, help="turn the rabbit backend on, to a broker on this local port")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xhc-cpu-") as tmp:
        result = asyncio.run(measure(args, Path(tmp)))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
