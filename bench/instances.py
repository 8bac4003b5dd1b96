"""Benchmark: aggregate throughput of 1, 2 and 3 component instances serving one domain on ejabberd, with each
instance's CPU time per message, so that the scaling on a machine with a core per instance can be computed.

    .venv/bin/python -m bench.instances [--instances 1,2,3] [--clients 24] [--window 50] [--warmup 3]
                                        [--duration 20] [--out bench/results/instances.json]

Run it from the repository's root, as a module (it imports bench/bench.py and the tests' harness).

Starts a private ejabberd, the lean echo bot (bench/lean_bot.py) and, for each k, k component processes on one domain
(`domain_balancing` with `type: bare_source` and `component_number: k`; ejabberd 23.01 takes 2 to 1000, so k = 1 runs
without balancing: one connection gets everything either way). ejabberd restarts between two k: it reads
component_number at its start. M slixmpp clients (M users, so M bare JIDs, which ejabberd spreads over the k
connections) send chat messages to echo@bot.localhost in a closed loop, W in flight in total (W/M each), and wait for
every reply: a warm-up, then a measured period. For that period it reports, per k: the aggregate rate and latency;
per instance the messages it received (its `xmpp_stanzas_received_total`) and its CPU seconds per message (utime +
stime from /proc); the CPU time per message of ejabberd, the bot and this load generator; the cores busy meanwhile
and how many of them were other work on the machine. On a machine whose cores are all busy the rate cannot grow
with k; the projection computes what it would be with a core per instance, from the CPU time per message.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench import (
    BOTS,
    Driver,
    cpu_seconds,
    machine_busy,
    percentile,
    report,
    server_process,
    spawn,
    stop_all,
    wait_port,
)
from tests.harness.clients import log_out, login
from tests.harness.parts import COMPONENT, SECRET
from tests.harness.processes import ComponentProcess, write_config
from tests.harness.servers import EjabberdServer, free_port, start_ejabberd

OUT = Path(__file__).resolve().parent / "results" / "instances.json"
RECEIVED = "xmpp_stanzas_received_total"


@dataclass(frozen=True)
class Snapshot:
    """The counters at one instant of a run: read at the start and at the end of the measured period."""

    at: float
    answered: list[int]  # replies each client has had
    errors: int  # error replies, all clients
    cpu: dict[str, float]  # CPU seconds of each process
    received: list[float]  # messages each instance has received
    busy: float  # CPU seconds of every core, since boot


async def snapshot(drivers: list[Driver], pids: dict[str, int], instances: list[ComponentProcess]) -> Snapshot:
    received = await asyncio.gather(*(proc.metric(RECEIVED, kind="message") for proc in instances))
    return Snapshot(
        at=time.perf_counter(),
        answered=[len(driver.latencies) for driver in drivers],
        errors=sum(driver.errors for driver in drivers),
        cpu={name: cpu_seconds(pid) for name, pid in pids.items()},
        received=list(received),
        busy=machine_busy(),
    )


def windows(total: int, clients: int) -> list[int]:
    """`total` messages in flight over `clients` clients, as evenly as can be."""
    return [total // clients + (1 if i < total % clients else 0) for i in range(clients)]


def projection(per_instance: list[dict[str, Any]]) -> dict[str, float]:
    """The rate k instances would carry with a core each (the rest of the path having cores enough): `even`, the
    senders spread evenly (many senders), k over the mean CPU time per message; `as_spread`, this run's spread, where
    the instance with the largest share of the work times its cost fills its core first."""
    costs = [one["cpu_us_per_msg"] for one in per_instance]
    return {
        "even_msgs_per_s": round(len(costs) * 1e6 / (sum(costs) / len(costs))),
        "as_spread_msgs_per_s": round(1e6 / max(one["share"] * one["cpu_us_per_msg"] for one in per_instance)),
    }


def period(
    k: int, before: Snapshot, after: Snapshot, drivers: list[Driver], ids: list[str], others: list[str]
) -> dict[str, Any]:
    """The figures of one measured period, from its two snapshots."""
    seconds = after.at - before.at
    answered = sum(after.answered) - sum(before.answered)
    latencies = [lat for i, d in enumerate(drivers) for lat in d.latencies[before.answered[i] : after.answered[i]]]
    used = {name: after.cpu[name] - before.cpu[name] for name in after.cpu}
    received = [a - b for a, b in zip(after.received, before.received, strict=True)]
    per_instance = [
        {
            "id": ids[i],
            "messages": round(received[i]),
            "share": round(received[i] / sum(received), 3),
            "cpu_us_per_msg": round(used[ids[i]] / received[i] * 1e6, 1) if received[i] else None,
            "cores_busy": round(used[ids[i]] / seconds, 2),
        }
        for i in range(k)
    ]
    busy = after.busy - before.busy
    result: dict[str, Any] = {
        "instances": k,
        "seconds": round(seconds, 2),
        "answered": answered,
        "msgs_per_s": round(answered / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "errors": after.errors - before.errors,
        "per_instance": per_instance,
        # per message answered: the components together, and each other process of the path
        "cpu_us_per_msg": {
            "components": round(sum(used[i] for i in ids) / answered * 1e6, 1),
            **{name: round(used[name] / answered * 1e6, 1) for name in others},
        },
        # the cores busy while the messages ran, and how many of them were not this benchmark's processes
        "cores_busy": round(busy / seconds, 2),
        "cores_busy_others": round(max(0.0, busy - sum(used.values())) / seconds, 2),
    }
    if all(one["messages"] for one in per_instance):
        result["projected"] = projection(per_instance)
        rest = sum(result["cpu_us_per_msg"][name] for name in others)
        result["projected"]["other_cores_at_even_rate"] = round(result["projected"]["even_msgs_per_s"] * rest / 1e6, 2)
    return result


async def one_k(
    k: int, server: EjabberdServer, users: dict[str, str], bot: tuple[str, int], work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """k instances on `server` (already balancing over k connections), the load, the figures."""
    ids = [f"i{n}" for n in range(k)]
    instances = []
    for name in ids:
        web_port = free_port()
        config = write_config(work / f"{name}.toml", server.component_port, bot[0], web_port, instance={"id": name})
        instances.append(ComponentProcess(config, web_port, work / f"k{k}-{name}.log"))
    drivers: list[Driver] = []
    try:
        await asyncio.gather(*(proc.start() for proc in instances))
        drivers = list(
            await asyncio.gather(
                *(login(server, user, "bench", make=Driver, password=pw, timeout=30) for user, pw in users.items())
            )
        )
        assert server._proc is not None
        pids = {name: proc.proc.pid for name, proc in zip(ids, instances, strict=True) if proc.proc is not None}
        pids |= {"ejabberd": server_process(server._proc.pid), "bot": bot[1], "load": os.getpid()}
        load = os.getloadavg()[0]
        runs = [
            asyncio.ensure_future(driver.run(f"echo@{COMPONENT}", 10**9, window))
            for driver, window in zip(drivers, windows(args.window, len(drivers)), strict=True)
        ]
        await asyncio.sleep(args.warmup)
        before = await snapshot(drivers, pids, instances)
        await asyncio.sleep(args.duration)
        after = await snapshot(drivers, pids, instances)
        for driver in drivers:
            driver.stop()
        await asyncio.gather(*runs)
        result = period(k, before, after, drivers, ids, ["ejabberd", "bot", "load"])
        result["load_average_before"] = round(load, 2)
        return result
    finally:
        await log_out(drivers)
        for proc in instances:
            if proc.proc is not None and proc.proc.returncode is None:
                await proc.stop(signal.SIGTERM)
            await proc.close()


def register(server: EjabberdServer, users: dict[str, str]) -> None:
    """ejabberdctl starts an Erlang node per user: a few at once."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(server.register, users, users.values()))


def line(result: dict[str, Any]) -> str:
    """One k, for the terminal."""
    each = ", ".join(f"{one['messages']} ({one['cpu_us_per_msg']} µs)" for one in result["per_instance"])
    cpu = result["cpu_us_per_msg"]
    text = (
        f"k={result['instances']}: {result['msgs_per_s']:.0f} msg/s, p50 {result['p50_ms']} ms; per instance: {each}; "
        f"ejabberd {cpu['ejabberd']} µs, bot {cpu['bot']} µs, load {cpu['load']} µs per message; cores busy "
        f"{result['cores_busy']} (others {result['cores_busy_others']})"
    )
    if "projected" in result:
        text += f"; projected, a core per instance: {result['projected']['even_msgs_per_s']} msg/s"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--instances", type=lambda text: [int(k) for k in text.split(",")], default=[1, 2, 3], help="(default 1,2,3)"
    )
    parser.add_argument("--clients", type=int, default=24, help="client connections, one user each (default 24)")
    parser.add_argument("--window", type=int, default=50, help="messages in flight, all clients (default 50)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before the measure (default 3)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per k (default 20)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"write the results as JSON here too (default {OUT})")
    args = parser.parse_args()
    if not 0 < args.clients <= args.window:
        parser.error("--clients must be between 1 and --window (each client has a message in flight at least)")
    if args.warmup + args.duration > 500:
        parser.error("--warmup and --duration: 500 s at most together (a client's run waits 600 s at most)")
    if any(k < 1 for k in args.instances):
        parser.error("--instances: each count must be 1 or more")
    users = {f"load{i:02}": f"pw{i:02}" for i in range(args.clients)}
    procs: list[subprocess.Popen[bytes]] = []
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="xhc-bench-instances-") as tmp:
        work = Path(tmp)
        server = start_ejabberd(work / "ejabberd", component_secret=SECRET)
        try:
            register(server, users)
            bot_port = free_port()
            bot = spawn([sys.executable, BOTS["lean"], "--port", str(bot_port)], work / "bot.log")
            procs.append(bot)
            wait_port(bot_port, bot, "the echo bot")
            for k in args.instances:
                number = k if k > 1 else 0  # component_number 1 is refused; one connection needs no balancing
                if server.component_number != number:
                    server.component_number = number
                    server.restart()
                bot_at = (f"http://127.0.0.1:{bot_port}/", bot.pid)
                runs.append(asyncio.run(one_k(k, server, users, bot_at, work, args)))
                print(line(runs[-1]), file=sys.stderr)
        finally:
            stop_all(procs)
            server.stop()
    base = runs[0].get("projected") if runs[0]["instances"] == 1 else None
    for run in runs:
        if base and "projected" in run:
            run["projected"]["scaling_even"] = round(run["projected"]["even_msgs_per_s"] / base["even_msgs_per_s"], 2)
            run["projected"]["scaling_as_spread"] = round(
                run["projected"]["as_spread_msgs_per_s"] / base["as_spread_msgs_per_s"], 2
            )
            print(
                f"k={run['instances']}: a core per instance would carry {run['projected']['even_msgs_per_s']} msg/s, "
                f"{run['projected']['scaling_even']}x one instance ({run['projected']['scaling_as_spread']}x with this "
                f"run's spread of senders); the rest of the path would need "
                f"{run['projected']['other_cores_at_even_rate']} cores more",
                file=sys.stderr,
            )
    results = {
        "server": "ejabberd",
        "bot": "lean",
        "python": sys.version.split()[0],
        "cores": os.cpu_count(),
        "clients": args.clients,
        "window": args.window,
        "warmup_s": args.warmup,
        "duration_s": args.duration,
        "runs": runs,
    }
    report(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
