"""Benchmark: the bot path with the rabbit backend on, against the same path with it off, in one interleaved run.

    .venv/bin/python -m bench.rabbit [--server prosody|ejabberd] [-n 3000] [--window 50] [--repeat 9]
                                     [--paths routed,stored,frozen] [--broker-erl-args "..."]
                                     [--broker-sched normal|idle] [--broker-cpus 1] [--out bench/results/rabbit.json]

Run it from the repository's root, as a module: it imports bench/bench.py and the tests' harness (tests/harness/).

Starts a private XMPP server, a private RabbitMQ (tests/harness/rabbit.py), the lean echo bot (bench/lean_bot.py)
and two component processes on the same server and bot: `plain.localhost` without event notifications and
`rabbit.localhost` with the rabbit backend (presence and chat exchanges, publisher confirms on). A slixmpp client
sends N chat messages with W in flight and waits for every reply, through up to four paths in turn, in one run:

- off: echo@plain.localhost;
- routed: echo@rabbit.localhost, each event published, routed by the broker and confirmed (no queue is bound:
  the broker drops it after routing, as it does for events nobody subscribed to);
- stored: the same with a queue bound to `#`, so that the broker also stores every event (and they are counted);
- frozen: the broker stopped (SIGSTOP) for the whole run, so that it takes no CPU and answers nothing: the events
  wait in the outbox and are published once it runs again (SIGCONT). The bot flow never waits on the broker.

Each round runs them in turn (off, routed, stored, frozen, then the other way round), so that a drift of the
machine hits every path alike. Each message makes two events (the message the bot gets, the answer it sends).

It reports msgs/s and each path's ratio to `off`, round by round; the events' publish rate (to the broker's last
ack, from the path's start; for frozen, also from the thaw) and the confirm latency (from the component's
histogram); the CPU time per message of the components, the bot, the XMPP server, the broker and this driver while
the messages run, and the rabbit component's after the run (publishing what waited, and /metrics read every
20 ms); and the cores busy meanwhile, of which those not this benchmark's own (`cores_busy_others`: other work on
the machine, which lowers whichever path it meets). The ratios are also given over the quiet rounds only: those
during which other work took at most 0.1 core on every path.

Everything shares the machine's cores, the broker included. The broker runs with the Erlang flags of a broker that
shares its cores (tests/harness/rabbit.py, SHARED_CORES: one scheduler, no busy waiting; docs/deployment.md says
why); `--broker-erl-args ""` runs it with Erlang's defaults instead. `--broker-sched idle` runs it at SCHED_IDLE,
so that it takes a core only when the bot path leaves one idle (closer to a broker on a machine of its own).
`taskset -c 0 .venv/bin/python -m bench.rabbit --broker-cpus 1` gives the bot path (both components, the server,
the bot, the client) CPU 0 and the broker CPU 1, on both paths alike: a broker on a machine of its own.
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
    machine_busy,
    report,
    scrape,
    server_process,
    spawn,
    stop_all,
    summary,
    wait_port,
)
from tests.harness.clients import USERS, login
from tests.harness.rabbit import SHARED_CORES, RabbitServer
from tests.harness.servers import XmppServer, free_port, start_ejabberd, start_prosody

PLAIN, RABBIT = "plain.localhost", "rabbit.localhost"
LABELS = 'host_type="rabbit.localhost",pool_tag="event_pusher"'


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
SETTLE = 0.3  # seconds between paths: what the broker still does after one (a purge, a collection) is not the next's
POLL = 0.02  # seconds between two reads of /metrics while the events of a path are acked
QUIET = 0.1  # cores: a round is quiet when the machine's other work took at most this much on each of its paths


async def measure(
    name: str, alice: Driver, consumer: Consumer, pids: dict[str, int], web: dict[str, int], n: int, window: int
) -> dict[str, Any]:
    """One path: N messages, W in flight; then, with the backend on, until the broker has acked their events."""
    if name == "stored":
        await consumer.bind()
    if name == "frozen":  # the broker stops answering (SIGSTOP) for the whole run: events wait
        os.kill(pids["broker"], signal.SIGSTOP)
    metrics_before = scrape(web["on"])
    cpu = {proc: cpu_seconds(pid) for proc, pid in pids.items()}
    busy = machine_busy()
    started = time.perf_counter()
    seconds, lat = await alice.run(f"echo@{PATHS[name]}", n, window)
    ended = time.perf_counter()
    busy = machine_busy() - busy
    used = {proc: cpu_seconds(pid) - cpu[proc] for proc, pid in pids.items()}
    found: dict[str, Any] = summary(seconds, lat, alice.errors)
    # the cores in use while the messages ran, and how much of that was not this benchmark's processes: other work
    # on the machine (and the kernel's), which lowers the rate of whichever path it meets
    found["cores_busy"] = round(busy / seconds, 2)
    found["cores_busy_others"] = round(max(0.0, busy - sum(used.values())) / seconds, 2)
    found["cpu_us_per_msg"] = {proc: round(seconds_used / n * 1e6) for proc, seconds_used in used.items()}
    if name == "frozen":
        os.kill(pids["broker"], signal.SIGCONT)
    if name == "off":
        return found
    metrics_end = scrape(web["on"])
    target = published(metrics_before) + 2 * n
    while published(metrics_after := scrape(web["on"])) < target:
        if time.perf_counter() - ended > 60:
            raise RuntimeError("the events were not all confirmed within 60 s")
        await asyncio.sleep(POLL)
    last_ack = time.perf_counter()
    after_run = cpu_seconds(pids["component_on"]) - cpu["component_on"] - used["component_on"]
    found["component_on_after_run_us_per_msg"] = round(after_run / n * 1e6)
    found["events"] = 2 * n
    found["events_published_during_run"] = published(metrics_end) - published(metrics_before)
    found["publish_rate_per_s"] = round(2 * n / (last_ack - started))
    found["last_ack_after_run_s"] = round(last_ack - ended, 3)
    found["confirm_latency"] = latency(metrics_before, metrics_after)
    if name == "frozen":  # the events that waited, published from the thaw on: the backend's own pace
        waited = target - published(metrics_end)
        found["publish_rate_after_thaw_per_s"] = round(waited / (last_ack - ended))
    if name == "stored":
        found["events_in_queue"] = await consumer.unbind_and_count()
    return found


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
    order = ["off", *(name for name in PATHS if name in args.paths and name != "off")]
    measured = order[1:]
    for _ in range(args.repeat):
        runs: dict[str, Any] = {}
        for name in order:  # off, routed, stored, frozen, then the other way round: a drift hits all alike
            await asyncio.sleep(SETTLE)
            runs[name] = await measure(name, alice, consumer, pids, web, n, window)
        for name in measured:
            runs[f"ratio_{name}"] = round(runs[name]["msgs_per_s"] / runs["off"]["msgs_per_s"], 3)
        rounds.append(runs)
        order.reverse()
    alice.disconnect()
    await consumer.close()
    out: dict[str, Any] = {
        "n": n,
        "window": window,
        "repeat": args.repeat,
        "broker_erl_args": args.broker_erl_args,
        "broker_sched": args.broker_sched,
        "broker_nice": args.broker_nice,
        "broker_cpus": sorted(args.broker_cpus or os.sched_getaffinity(0)),
        "bot_path_cpus": sorted(os.sched_getaffinity(0)),
    }
    # the rounds during which nothing else on the machine took more than QUIET of a core on any path
    quiet = [r for r in rounds if all(r[name]["cores_busy_others"] <= QUIET for name in order)]
    out["quiet_rounds"] = len(quiet)
    for name in measured:
        out[f"ratio_{name}"] = median(r[f"ratio_{name}"] for r in rounds)
        out[f"ratio_{name}_each"] = [r[f"ratio_{name}"] for r in rounds]
        out[f"ratio_{name}_quiet"] = median(r[f"ratio_{name}"] for r in quiet) if quiet else None
    for name in ["off", *measured]:
        runs_of = [r[name] for r in rounds]
        out[name] = {
            key: median(r[key] for r in runs_of)
            for key in ("msgs_per_s", "p50_ms", "p99_ms", "cores_busy", "cores_busy_others")
        }
        out[name]["errors"] = sum(r["errors"] for r in runs_of)
        out[name]["cpu_us_per_msg"] = {p: median(r["cpu_us_per_msg"][p] for r in runs_of) for p in pids}
        if name != "off":
            out[name]["component_on_after_run_us_per_msg"] = median(
                r["component_on_after_run_us_per_msg"] for r in runs_of
            )
            out[name]["publish_rate_per_s"] = median(r["publish_rate_per_s"] for r in runs_of)
            for key in ("mean_ms", "p50_le_ms", "p99_le_ms"):
                out[name][f"confirm_latency_{key}"] = median(r["confirm_latency"][key] for r in runs_of)
        if name == "frozen":
            out[name]["publish_rate_after_thaw_per_s"] = median(r["publish_rate_after_thaw_per_s"] for r in runs_of)
    if "stored" in measured:
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
        # room for the 2N events of a frozen path (the default, 10,000, is 2N for N=5000)
        text += "[event_pusher.rabbit]\nmax_queued = 100000\npresence_exchange = {}\nchat_msg_exchange = {}\n"
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("prosody", "ejabberd"), default="prosody")
    parser.add_argument("-n", type=int, default=3000, help="messages per measurement (default 3000)")
    parser.add_argument("--window", type=int, default=50, help="messages in flight (default 50)")
    parser.add_argument("--repeat", type=int, default=9, help="rounds of the paths (default 9)")
    parser.add_argument(
        "--broker-sched",
        choices=("normal", "idle"),
        default="normal",
        help="the broker's scheduling policy: normal (the default: it competes with the bot path for the cores) or "
        "idle (SCHED_IDLE: it takes a core only when the bot path leaves it idle, more as on a machine of its own)",
    )
    parser.add_argument("--broker-nice", type=int, default=0, help="and this nice level (default 0: as the rest)")
    parser.add_argument(
        "--broker-cpus",
        type=lambda text: {int(cpu) for cpu in text.split(",")},
        default=None,
        help="keep the broker on these CPUs, e.g. 1 (default: the CPUs this command may use, as the rest); with "
        "`taskset -c 0` in front of the command, the bot path has CPU 0 and the broker CPU 1: a broker on a "
        "machine of its own",
    )
    parser.add_argument(
        "--broker-erl-args",
        default=SHARED_CORES,
        help=f'the broker\'s Erlang VM flags (default "{SHARED_CORES}"; "" for Erlang\'s defaults)',
    )
    parser.add_argument(
        "--paths",
        type=lambda text: text.split(","),
        default=["routed", "stored", "frozen"],
        help="the paths measured against off, comma-separated (default routed,stored,frozen)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    start = {"prosody": start_prosody, "ejabberd": start_ejabberd}[args.server]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="xhc-bench-rabbit-") as tmp:
        work = Path(tmp)
        broker = RabbitServer(work / "rabbitmq", erl_args=args.broker_erl_args)
        server = start(work / args.server, component_secret=SECRET, component_domains=(PLAIN, RABBIT))
        try:
            broker.start()
            assert broker._proc is not None
            beam = next(
                p for p in descendants(broker._proc.pid) if Path(f"/proc/{p}/comm").read_text().startswith("beam")
            )
            # every thread: on Linux a scheduling policy and a nice value belong to a thread, not to its process
            threads = [
                int(thread.name)
                for pid in [broker._proc.pid, *descendants(broker._proc.pid)]
                for thread in Path(f"/proc/{pid}/task").iterdir()
            ]
            for thread_id in threads:
                if args.broker_sched == "idle":
                    os.sched_setscheduler(thread_id, os.SCHED_IDLE, os.sched_param(0))
                if args.broker_nice:
                    os.setpriority(os.PRIO_PROCESS, thread_id, args.broker_nice)
                if args.broker_cpus:
                    os.sched_setaffinity(thread_id, args.broker_cpus)
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
            pids |= {"driver": os.getpid(), "bot": bot.pid, "server": server_process(server._proc.pid), "broker": beam}
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
