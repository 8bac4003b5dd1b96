"""Benchmark: queued delivery against direct delivery, in one interleaved run through Prosody, with the disk
writes per message.

    .venv/bin/python -m bench.queued [-n 3000] [--window 50] [--conversations 50] [--repeat 5]
                                     [--server prosody|ejabberd] [--out bench/results/queued.json]

Run it from the repository's root, as a module (it imports bench/bench.py and the tests' harness).

Starts a private XMPP server, the lean echo bot (bench/lean_bot.py) and two component processes on the same server
and bot: `direct.localhost` (bot.delivery = "direct") and `queued.localhost` (bot.delivery = "queued", its queue in a
folder of the run). A slixmpp client sends N chat messages with W in flight and waits for every reply, to each
component in turn (direct, queued, direct, queued...), `--repeat` rounds of the pair. The messages go round-robin to
`--conversations` bot JIDs (echo0@, echo1@...): queued delivery POSTs one stanza at a time per conversation, so W
messages in flight need W conversations to be W requests in flight, as they are in direct delivery (a bot serving
many users). Then one pair more with a single conversation shows the cost of that order.

It reports msgs/s and latency for both, the ratio queued/direct round by round, the CPU time per message of each
process, and for the queued component its writes per message: bytes written to the storage layer
(/proc/PID/io write_bytes: the SQLite WAL and its checkpoints into the database file), bytes passed to write calls
(wchar, sockets included), and SQLite transactions (bot_delivery_commits_total; one per loop turn).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench.bench import (
    BOTS,
    SECRET,
    Driver,
    cpu_seconds,
    report,
    scrape,
    server_process,
    spawn,
    stop_all,
    summary,
    wait_port,
)
from tests.harness.clients import USERS, login
from tests.harness.servers import XmppServer, free_port, start_ejabberd, start_prosody

DIRECT, QUEUED = "direct.localhost", "queued.localhost"
DOMAINS = {"direct": DIRECT, "queued": QUEUED}
OUT = Path(__file__).resolve().parent / "results" / "queued.json"


class SpreadDriver(Driver):
    """bench.bench's driver, each message to the next of several targets in turn (one conversation each)."""

    targets: list[str]

    def _send_next(self) -> None:
        if self._next >= self._total:
            return
        key = f"m{self._next}"
        target = self.targets[self._next % len(self.targets)]
        self._next += 1
        self.sent_at[key] = time.perf_counter()
        self.send_raw(f'<message to="{target}" type="chat" id="{key}"><body>{key}</body></message>')

    async def spread(self, domain: str, conversations: int, n: int, window: int) -> tuple[float, list[float]]:
        self.targets = [f"echo{k}@{domain}" for k in range(conversations)]
        return await self.run(self.targets[0], n, window)


def io_counters(pid: int) -> dict[str, int]:
    """/proc/PID/io: write_bytes (to the storage layer), wchar (to write calls), syscw."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {name: int(fields[name]) for name in ("write_bytes", "wchar", "syscw")}


COMMITS = "bot_delivery_commits_total"


async def one(
    alice: SpreadDriver, name: str, conversations: int, n: int, window: int, pids: dict[str, int], web: dict[str, int]
) -> dict[str, Any]:
    """One measured run of `name` (direct or queued)."""
    component = pids[f"component_{name}"]
    cpu = {proc: cpu_seconds(pid) for proc, pid in pids.items()}
    io, commits = io_counters(component), scrape(web[name]).get(COMMITS, 0.0)
    seconds, lat = await alice.spread(DOMAINS[name], conversations, n, window)
    result: dict[str, Any] = summary(seconds, lat, alice.errors)
    after = io_counters(component)
    result["cpu_us_per_msg"] = {proc: round((cpu_seconds(pid) - cpu[proc]) / n * 1e6) for proc, pid in pids.items()}
    result["component_writes_per_msg"] = {
        "disk_bytes": round((after["write_bytes"] - io["write_bytes"]) / n, 1),
        "write_call_bytes": round((after["wchar"] - io["wchar"]) / n, 1),
    }
    if name == "queued":
        result["component_writes_per_msg"]["sqlite_transactions"] = round(
            (scrape(web[name]).get(COMMITS, 0.0) - commits) / n, 3
        )
    return result


async def measure(server: XmppServer, pids: dict[str, int], web: dict[str, int], args: argparse.Namespace) -> Any:
    alice = await login(server, "alice", "bench", make=SpreadDriver, timeout=20)
    n, window, conversations = args.n, args.window, args.conversations
    for domain in (DIRECT, QUEUED):  # warm-up: connections, caches, the queue's first pages
        await alice.spread(domain, conversations, min(n, 500), window)
    rounds: list[dict[str, Any]] = []
    for _ in range(args.repeat):  # direct, queued, direct, queued...: a drift of the machine hits both alike
        runs = {name: await one(alice, name, conversations, n, window, pids, web) for name in ("direct", "queued")}
        runs["ratio"] = round(runs["queued"]["msgs_per_s"] / runs["direct"]["msgs_per_s"], 3)
        rounds.append(runs)
        print(
            f"round {len(rounds)}: direct {runs['direct']['msgs_per_s']:.0f} msg/s, "
            f"queued {runs['queued']['msgs_per_s']:.0f} msg/s, ratio {runs['ratio']}",
            file=sys.stderr,
        )
    single_n = max(1, n // 3)
    single = {name: await one(alice, name, 1, single_n, window, pids, web) for name in ("direct", "queued")}
    single["ratio"] = round(single["queued"]["msgs_per_s"] / single["direct"]["msgs_per_s"], 3)
    alice.disconnect()
    out: dict[str, Any] = {"n": n, "window": window, "conversations": conversations, "repeat": args.repeat}
    each = [r["ratio"] for r in rounds]
    out["ratio"], out["ratio_each"] = median(each), each
    for name in ("direct", "queued"):
        runs_of = [r[name] for r in rounds]
        out[name] = {key: median(r[key] for r in runs_of) for key in ("msgs_per_s", "p50_ms", "p90_ms", "p99_ms")} | {
            "msgs_per_s_each": [r["msgs_per_s"] for r in runs_of],
            "errors": sum(r["errors"] for r in runs_of),
            "cpu_us_per_msg": {p: median(r["cpu_us_per_msg"][p] for r in runs_of) for p in pids},
            "component_writes_per_msg": {
                key: median(r["component_writes_per_msg"][key] for r in runs_of)
                for key in runs_of[0]["component_writes_per_msg"]
            },
        }
    out["one_conversation"] = {"n": single_n, **single}
    out["rounds"] = rounds
    return out


def component_config(work: Path, name: str, server: XmppServer, bot_port: int, web_port: int) -> Path:
    path = work / f"{name}.toml"
    text = (
        f'[component]\njid = "{DOMAINS[name]}"\nsecret = "{SECRET}"\nport = {server.component_port}\n'
        f'[bot]\nurl = "http://127.0.0.1:{bot_port}/"\nmax_queued = 10000\n'
        f'[web]\nlisten = "127.0.0.1:{web_port}"\n'
    )
    if name == "queued":
        text = text.replace("max_queued = 10000\n", 'max_queued = 10000\ndelivery = "queued"\n')
        text += f'[state]\ndir = "{work / "state"}"\n'
    path.write_text(text)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("prosody", "ejabberd"), default="prosody")
    parser.add_argument("-n", type=int, default=3000, help="messages per measurement (default 3000)")
    parser.add_argument("--window", type=int, default=50, help="messages in flight (default 50)")
    parser.add_argument("--conversations", type=int, default=50, help="bot JIDs the messages go to (default 50)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of direct then queued (default 5)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"write the results as JSON here too (default {OUT})")
    args = parser.parse_args()
    start = {"prosody": start_prosody, "ejabberd": start_ejabberd}[args.server]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="xhc-bench-queued-") as tmp:
        work = Path(tmp)
        server = start(work / args.server, component_secret=SECRET, component_domains=(DIRECT, QUEUED))
        try:
            for user, password in USERS.items():
                server.register(user, password)
            bot_port = free_port()
            bot = spawn([sys.executable, BOTS["lean"], "--port", str(bot_port)], work / "bot.log")
            procs.append(bot)
            wait_port(bot_port, bot, "the echo bot")
            web: dict[str, int] = {}
            pids: dict[str, int] = {}
            for name in DOMAINS:
                web[name] = free_port()
                config = component_config(work, name, server, bot_port, web[name])
                command = [sys.executable, "-m", "component", "--config", str(config), "--log-level", "WARNING"]
                proc = spawn(command, work / f"component-{name}.log")
                procs.append(proc)
                wait_port(web[name], proc, f"the component ({name})")
                pids[f"component_{name}"] = proc.pid
            time.sleep(1.0)  # the components log in
            assert server._proc is not None
            pids |= {"bot": bot.pid, "server": server_process(server._proc.pid)}
            results = asyncio.run(measure(server, pids, web, args))
            results["queue_files_bytes"] = {p.name: p.stat().st_size for p in sorted((work / "state").iterdir())}
        finally:
            stop_all(procs)
            server.stop()
    results = {"server": args.server, "bot": "lean", "python": sys.version.split()[0], **results}
    report(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
