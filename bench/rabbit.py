"""Benchmark: the bot path with the rabbit backend on, against the same path with it off, in one interleaved run.

    .venv/bin/python -m bench.rabbit [--server prosody|ejabberd] [-n 3000] [--window 50] [--repeat 3]
                                     [--broker-nice 0] [--out bench/results/rabbit.json]

Run it from the repository's root, as a module: it imports bench/bench.py and the tests' harness (tests/harness/).

Starts a private XMPP server, a private RabbitMQ (tests/harness/rabbit.py), the lean echo bot (bench/lean_bot.py)
and two component processes on the same server and bot: `plain.localhost` without event notifications and
`rabbit.localhost` with the rabbit backend (presence and chat exchanges, publisher confirms on). A slixmpp client
sends N chat messages with W in flight and waits for every reply, through three paths in turn, in one run:

- off: echo@plain.localhost;
- routed: echo@rabbit.localhost, each event published, routed by the broker and confirmed (no queue is bound:
  the broker drops it after routing, as it does for events nobody subscribed to);
- stored: the same with a queue bound to `#`, so that the broker also stores every event (and they are counted);
- frozen: the broker stopped (SIGSTOP) for the whole run, so that it takes no CPU and answers nothing: the events
  wait in the outbox and are published once it runs again (SIGCONT). The bot flow never waits on the broker.

Each message makes two events (the message the bot gets, the answer it sends). It reports msgs/s and each path's
ratio to `off`, round by round; the events' publish rate (to the broker's last ack, from the round's start) and the
confirm latency (from the component's histogram); and the CPU time per message of the components, the bot, the
XMPP server and the broker. Everything shares the machine's cores, the broker included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from statistics import median
from typing import Any

import aio_pika

from bench.bench import (
    BOTS,
    SECRET,
    Driver,
    cpu_seconds,
    descendants,
    report,
    server_process,
    spawn,
    stop_all,
    summary,
    wait_port,
)
from tests.harness.clients import USERS, login
from tests.harness.rabbit import RabbitServer
from tests.harness.servers import XmppServer, free_port, start_ejabberd, start_prosody

PLAIN, RABBIT = "plain.localhost", "rabbit.localhost"
LABELS = 'host_type="rabbit.localhost",pool_tag="event_pusher"'


def scrape(port: int) -> dict[str, float]:
    """The component's /metrics as {sample line without value: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            out[name] = float(number)
    return out


def published(metrics: dict[str, float]) -> float:
    return metrics.get(f"wpool_rabbit_messages_published_count_total{{{LABELS}}}", 0.0)


def latency(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Confirm latency over a round, from the histogram's deltas: mean, and p50/p99 as bucket upper bounds (ms)."""
    name = "wpool_rabbit_messages_published_time"
    count = after[f"{name}_count{{{LABELS}}}"] - before[f"{name}_count{{{LABELS}}}"]
    total = after[f"{name}_sum{{{LABELS}}}"] - before[f"{name}_sum{{{LABELS}}}"]
    buckets = sorted(
        (float(key.split('le="')[1].split('"')[0]), after[key] - before.get(key, 0.0))
        for key in after
        if key.startswith(f"{name}_bucket{{") and 'le="+Inf"' not in key
    )

    def bound(p: float) -> float:
        return next((le * 1000 for le, seen in buckets if seen >= p * count), float("inf"))

    return {
        "confirmed": count,
        "mean_ms": round(total / count * 1000, 2),
        "p50_le_ms": bound(0.5),
        "p99_le_ms": bound(0.99),
    }


class Consumer:
    """The consumer side of the stored path: a queue bound to `#` on the chat exchange while that path runs, so
    that each of its events is routed to the queue and stored there, and counted."""

    def __init__(self, broker: RabbitServer) -> None:
        self.broker = broker
        self._queue: aio_pika.abc.AbstractQueue | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._connection: aio_pika.abc.AbstractConnection | None = None

    async def open(self) -> None:
        self._connection = await aio_pika.connect(self.broker.url)
        channel = await self._connection.channel()
        self._exchange = await channel.declare_exchange("chat_msg", aio_pika.ExchangeType.TOPIC)
        self._queue = await channel.declare_queue("bench-events")

    async def bind(self) -> None:
        assert self._queue is not None and self._exchange is not None
        await self._queue.bind(self._exchange, "#")

    async def unbind_and_count(self) -> int:
        """Unbind; the events the queue got since it was bound (then emptied)."""
        assert self._queue is not None and self._exchange is not None
        await self._queue.unbind(self._exchange, "#")
        purged = await self._queue.purge()
        return int(purged.message_count or 0)

    async def close(self) -> None:
        if self._connection is not None:
            if self._queue is not None:
                await self._queue.delete(if_unused=False, if_empty=False)
            await self._connection.close()


PATHS = {"off": PLAIN, "routed": RABBIT, "stored": RABBIT, "frozen": RABBIT}


async def run(
    server: XmppServer, broker: RabbitServer, pids: dict[str, int], web: dict[str, int], args: argparse.Namespace
) -> dict[str, Any]:
    alice = await login(server, "alice", "bench", make=Driver, timeout=20)
    consumer = Consumer(broker)
    await consumer.open()
    n, window = args.n, args.window
    for domain in (PLAIN, RABBIT):  # warm-up: connections, caches, the broker's first routes
        await alice.run(f"echo@{domain}", min(n, 500), 10)
    deadline = time.monotonic() + 30
    while published(scrape(web["on"])) < 2 * min(n, 500) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the warm-up's events, acked
    rounds: list[dict[str, Any]] = []
    order = list(PATHS)
    for _ in range(args.repeat):
        runs: dict[str, Any] = {}
        for name in order:  # off, routed, stored, frozen, then the other way round: a drift hits all alike
            if name == "stored":
                await consumer.bind()
            if name == "frozen":  # the broker stops answering (SIGSTOP) for the whole run: events wait
                os.kill(pids["broker"], signal.SIGSTOP)
            metrics_before = scrape(web["on"])
            cpu = {proc: cpu_seconds(pid) for proc, pid in pids.items()}
            started = time.perf_counter()
            seconds, lat = await alice.run(f"echo@{PATHS[name]}", n, window)
            runs[name] = summary(seconds, lat, alice.errors)
            if name == "frozen":
                os.kill(pids["broker"], signal.SIGCONT)
            if name != "off":
                metrics_end = scrape(web["on"])
                target = published(metrics_before) + 2 * n
                while published(metrics_after := scrape(web["on"])) < target:
                    if time.perf_counter() - started > seconds + 60:
                        raise RuntimeError("the events were not all confirmed within 60 s")
                    await asyncio.sleep(0.02)
                to_last_ack = time.perf_counter() - started
                runs[name]["events"] = 2 * n
                runs[name]["events_published_during_run"] = published(metrics_end) - published(metrics_before)
                runs[name]["publish_rate_per_s"] = round(2 * n / to_last_ack)
                runs[name]["last_ack_after_s"] = round(to_last_ack, 3)
                runs[name]["confirm_latency"] = latency(metrics_before, metrics_after)
            runs[name]["cpu_us_per_msg"] = {
                proc: round((cpu_seconds(pid) - cpu[proc]) / n * 1e6) for proc, pid in pids.items()
            }
            if name == "stored":
                runs[name]["events_in_queue"] = await consumer.unbind_and_count()
        for name in ("routed", "stored", "frozen"):
            runs[f"ratio_{name}"] = round(runs[name]["msgs_per_s"] / runs["off"]["msgs_per_s"], 3)
        rounds.append(runs)
        order.reverse()
    alice.disconnect()
    await consumer.close()
    out: dict[str, Any] = {"n": n, "window": window, "repeat": args.repeat, "broker_nice": args.broker_nice}
    for name in ("routed", "stored", "frozen"):
        out[f"ratio_{name}"] = median(r[f"ratio_{name}"] for r in rounds)
        out[f"ratio_{name}_each"] = [r[f"ratio_{name}"] for r in rounds]
    for name in PATHS:
        runs_of = [r[name] for r in rounds]
        out[name] = {
            "msgs_per_s": median(r["msgs_per_s"] for r in runs_of),
            "p99_ms": median(r["p99_ms"] for r in runs_of),
            "errors": sum(r["errors"] for r in runs_of),
            "cpu_us_per_msg": {p: median(r["cpu_us_per_msg"][p] for r in runs_of) for p in pids},
        }
        if name != "off":
            out[name] |= {
                "publish_rate_per_s": median(r["publish_rate_per_s"] for r in runs_of),
                "confirm_latency_mean_ms": median(r["confirm_latency"]["mean_ms"] for r in runs_of),
                "confirm_latency_p50_le_ms": median(r["confirm_latency"]["p50_le_ms"] for r in runs_of),
                "confirm_latency_p99_le_ms": median(r["confirm_latency"]["p99_le_ms"] for r in runs_of),
            }
    out["stored"]["events_in_queue"] = sum(r["stored"]["events_in_queue"] for r in rounds)
    out["stored"]["events_expected"] = 2 * n * args.repeat
    out["rounds"] = rounds
    return out


def component_config(
    work: Path, name: str, domain: str, server: XmppServer, bot_port: int, web_port: int, broker_port: int
) -> Path:
    path = work / f"{name}.toml"
    text = (
        f'[component]\njid = "{domain}"\nsecret = "{SECRET}"\nport = {server.component_port}\n'
        f'[bot]\nurl = "http://127.0.0.1:{bot_port}/"\nmax_queued = 10000\n'
        f'[web]\nlisten = "127.0.0.1:{web_port}"\n'
    )
    if name == "on":
        text += "[outgoing_pools.rabbit.event_pusher.connection]\n"
        text += f'host = "127.0.0.1"\nport = {broker_port}\n'
        text += "[event_pusher.rabbit]\npresence_exchange = {}\nchat_msg_exchange = {}\n"
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("prosody", "ejabberd"), default="prosody")
    parser.add_argument("-n", type=int, default=3000, help="messages per measurement (default 3000)")
    parser.add_argument("--window", type=int, default=50, help="messages in flight (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of off and on (default 3)")
    parser.add_argument(
        "--broker-nice", type=int, default=0, help="run the broker at this nice level (default 0: as the rest)"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    start = {"prosody": start_prosody, "ejabberd": start_ejabberd}[args.server]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="xhc-bench-rabbit-") as tmp:
        work = Path(tmp)
        broker = RabbitServer(work / "rabbitmq")
        server = start(work / args.server, component_secret=SECRET, component_domains=(PLAIN, RABBIT))
        try:
            broker.start()
            assert broker._proc is not None
            beam = next(
                p for p in descendants(broker._proc.pid) if Path(f"/proc/{p}/comm").read_text().startswith("beam")
            )
            if args.broker_nice:  # every thread: on Linux a nice value belongs to a thread, not to its process
                for pid in [broker._proc.pid, *descendants(broker._proc.pid)]:
                    for thread in Path(f"/proc/{pid}/task").iterdir():
                        os.setpriority(os.PRIO_PROCESS, int(thread.name), args.broker_nice)
            for user, password in USERS.items():
                server.register(user, password)
            bot_port = free_port()
            bot = spawn([sys.executable, BOTS["lean"], "--port", str(bot_port)], work / "bot.log")
            procs.append(bot)
            wait_port(bot_port, bot, "the echo bot")
            web: dict[str, int] = {}
            pids: dict[str, int] = {}
            for name, domain in (("off", PLAIN), ("on", RABBIT)):
                web[name] = free_port()
                config = component_config(work, name, domain, server, bot_port, web[name], broker.port)
                command = [sys.executable, "-m", "component", "--config", str(config), "--log-level", "WARNING"]
                proc = spawn(command, work / f"component-{name}.log")
                procs.append(proc)
                wait_port(web[name], proc, f"the component ({name})")
                pids[f"component_{name}"] = proc.pid
            time.sleep(1.0)  # the components log in, the rabbit one connects to the broker
            assert server._proc is not None
            pids |= {"bot": bot.pid, "server": server_process(server._proc.pid), "broker": beam}
            results = asyncio.run(run(server, broker, pids, web, args))
        finally:
            stop_all(procs)
            server.stop()
            broker.stop()
    results = {"server": args.server, "bot": "lean", "python": sys.version.split()[0], **results}
    report(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
