"""Benchmark: the component path against the server's own floor, in one run, on loopback.

    .venv/bin/python -m bench.bench [--server prosody|ejabberd] [--bot lean|example] [-n 3000]
                                    [--window 1 --window 50] [--repeat 5] [--soak 100000]
                                    [--out bench/results/prosody.json]

Run it from the repository's root, as a module: it imports the tests' server harness (tests/harness/).

Starts a private XMPP server, an echo bot (bench/lean_bot.py or examples/echo_bot.py), the component
(`python -m component`) and two XMPP echo clients (bench/echo_client.py), each in its own process. A slixmpp
client then sends N chat messages with W in flight and waits for every reply, (a) to echo@bot.localhost: the
component path, and (b) to an echo client: client-to-client routing through the same server, the floor, twice:
with a lean peer that echoes at the XML level (bob) and with slixmpp's textbook echo client (carol). It prints
msgs/s and p50/p90/p99 latency for each, the ratios, CPU time per message of every process, and the
component's peak RSS; with --soak M it then sends M more messages through the component and reports its RSS
growth after a warm-up. With --repeat K the three paths run K times in turn and the medians are reported, with
each round's ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from statistics import median
from typing import Any

from tests.harness.clients import USERS, PlainClient, login
from tests.harness.servers import XmppServer, free_port, start_ejabberd, start_prosody

REPO = Path(__file__).resolve().parent.parent
NS = "{jabber:client}"
COMPONENT = "bot.localhost"
SECRET = "bench-secret"


class Driver(PlainClient):
    """Sends numbered messages, `window` at a time, and times each reply (matched by its body)."""

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.sent_at: dict[str, float] = {}
        self.latencies: list[float] = []
        self.errors = 0
        self._target = ""
        self._next = 0
        self._total = 0
        self._done: asyncio.Future[None] | None = None

    def _spawn_event(self, xml: ET.Element) -> None:
        if xml.tag == NS + "message":
            body = xml.find(NS + "body")
            key = (body.text or "") if body is not None else ""
            if xml.get("type") == "error":
                key, self.errors = xml.get("id") or "", self.errors + 1
            key = key.removeprefix("Did you say ").removesuffix("?")
            started = self.sent_at.pop(key, None)
            if started is not None:
                self.latencies.append(time.perf_counter() - started)
                self._send_next()
                if not self.sent_at and self._next >= self._total and self._done and not self._done.done():
                    self._done.set_result(None)
            return
        super()._spawn_event(xml)

    def _send_next(self) -> None:
        if self._next >= self._total:
            return
        key = f"m{self._next}"
        self._next += 1
        self.sent_at[key] = time.perf_counter()
        self.send_raw(f'<message to="{self._target}" type="chat" id="{key}"><body>{key}</body></message>')

    async def run(self, target: str, n: int, window: int) -> tuple[float, list[float]]:
        self._target, self._next, self._total = target, 0, n
        self.latencies, self.errors = [], 0
        self._done = asyncio.get_running_loop().create_future()
        started = time.perf_counter()
        for _ in range(min(window, n)):
            self._send_next()
        await asyncio.wait_for(self._done, 600)
        return time.perf_counter() - started, self.latencies

    def stop(self) -> None:
        """Send no more: a `run` under way returns once the messages already sent are answered."""
        self._total = self._next
        if not self.sent_at and self._done is not None and not self._done.done():
            self._done.set_result(None)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(seconds: float, latencies: list[float], errors: int) -> dict[str, float]:
    return {
        "msgs_per_s": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 2),
        "p90_ms": round(percentile(latencies, 90) * 1000, 2),
        "p99_ms": round(percentile(latencies, 99) * 1000, 2),
        "errors": errors,
    }


def combine(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of {component, floor, floor_plain} -> the median of every figure, and the median of the ratios
    taken round by round (with each round's ratio listed)."""
    out: dict[str, Any] = {}
    for name in ("component", "floor", "floor_plain"):
        runs = [r[name] for r in rounds]
        out[name] = {key: median([run[key] for run in runs]) for key in runs[0] if key != "cpu_us_per_msg"}
        out[name]["errors"] = sum(run["errors"] for run in runs)
        out[name]["cpu_us_per_msg"] = {
            proc: median([run["cpu_us_per_msg"][proc] for run in runs]) for proc in runs[0]["cpu_us_per_msg"]
        }
    for key, figure, floor in (
        ("ratio", "msgs_per_s", "floor"),
        ("ratio_plain", "msgs_per_s", "floor_plain"),
        ("p99_vs_floor", "p99_ms", "floor"),
        ("p99_vs_floor_plain", "p99_ms", "floor_plain"),
    ):
        each = [round(r["component"][figure] / r[floor][figure], 3) for r in rounds]
        out[key] = median(each)
        if len(rounds) > 1:
            out[key + "_each"] = each
    return out


def rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def machine_busy() -> float:
    """CPU seconds every core spent busy since boot, from /proc/stat (everything but idle and iowait)."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def scrape(port: int) -> dict[str, float]:
    """A component's /metrics as {sample line without value: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            out[name] = float(number)
    return out


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").iterdir():
            children = [int(child) for child in (task / "children").read_text().split()]
            found += children
            todo += children
    return found


def server_process(pid: int) -> int:
    """The process doing the server's work: ejabberdctl's Erlang VM (beam.smp) rather than the wrapper."""
    for child in descendants(pid):
        if Path(f"/proc/{child}/comm").read_text().strip().startswith("beam"):
            return child
    return pid


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on port {port}")


BOTS = {"example": "examples/echo_bot.py", "lean": "bench/lean_bot.py"}


def py_spy() -> str:
    """py-spy from the venv (the `bench` extra) or from PATH."""
    local = Path(sys.executable).with_name("py-spy")
    found = str(local) if local.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("BENCH_PROFILE needs py-spy: .venv/bin/pip install -e '.[bench]'")
    return found


def child_pid(pid: int, timeout: float = 10) -> int:
    """The one child of `pid` (the component under py-spy)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.05)
    raise RuntimeError("py-spy did not start the component")


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            args,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )


async def measure(
    server: XmppServer, pids: dict[str, int], n: int, windows: list[int], soak: int, repeat: int
) -> dict[str, Any]:
    """`pids`: the processes whose CPU time per message is reported (the component's must be there)."""
    component_pid = pids["component"]
    pids = {**pids, "driver": os.getpid()}
    alice = await login(server, "alice", "bench", make=Driver, timeout=20)
    bob_jid = f"bob@{server.domain}/echo"
    carol_jid = f"carol@{server.domain}/echo"
    results: dict[str, Any] = {"n": n, "windows": {}}
    await alice.run(f"echo@{COMPONENT}", min(n, 500), 10)  # warm-up: connections, caches
    await alice.run(bob_jid, min(n, 500), 10)
    await alice.run(carol_jid, min(n, 500), 10)
    for window in windows:
        rounds = []
        for _ in range(repeat):  # the three paths in turn, so that a drift in the machine's speed hits all three
            runs = {}
            for name, target in (("component", f"echo@{COMPONENT}"), ("floor", bob_jid), ("floor_plain", carol_jid)):
                cpu = {proc: cpu_seconds(pid) for proc, pid in pids.items()}
                seconds, lat = await alice.run(target, n, window)
                runs[name] = summary(seconds, lat, alice.errors)
                runs[name]["cpu_us_per_msg"] = {  # type: ignore[assignment]
                    proc: round((cpu_seconds(pid) - cpu[proc]) / n * 1e6) for proc, pid in pids.items()
                }
            rounds.append(runs)
        results["windows"][str(window)] = combine(rounds)
    results["component_peak_rss_mb"] = round(rss_kb(component_pid, "VmHWM") / 1024, 1)
    if soak:
        await alice.run(f"echo@{COMPONENT}", 5000, 50)
        before = rss_kb(component_pid)
        seconds, lat = await alice.run(f"echo@{COMPONENT}", soak, 50)
        after = rss_kb(component_pid)
        results["soak"] = {
            "messages": soak,
            "rss_before_mb": round(before / 1024, 1),
            "rss_after_mb": round(after / 1024, 1),
            "rss_growth_mb": round((after - before) / 1024, 1),
            **summary(seconds, lat, alice.errors),
        }
    alice.disconnect()
    return results


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every process, then wait up to 10 s each (killed after that)."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def report(results: dict[str, Any], out: Path | None) -> None:
    """Print the results, and write them to `out` when given."""
    print(json.dumps(results, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("prosody", "ejabberd"), default="prosody")
    parser.add_argument("-n", type=int, default=3000, help="messages per measurement (default 3000)")
    parser.add_argument("--window", type=int, action="append", help="messages in flight (default: 1 and 50)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of the three paths per window; medians are reported"
    )
    parser.add_argument("--soak", type=int, default=0, help="then send this many more and report RSS growth")
    parser.add_argument(
        "--bot",
        choices=sorted(BOTS),
        default="example",
        help="the echo bot: examples/echo_bot.py (aiohttp; default) or bench/lean_bot.py (a bare asyncio protocol)",
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON here too")
    args = parser.parse_args()
    windows = args.window or [1, 50]
    start = {"prosody": start_prosody, "ejabberd": start_ejabberd}[args.server]
    procs: list[subprocess.Popen[bytes]] = []
    profiled: list[tuple[int, subprocess.Popen[bytes]]] = []
    with tempfile.TemporaryDirectory(prefix="xhc-bench-") as tmp:
        work = Path(tmp)
        server = start(work / args.server, component_secret=SECRET, component_domains=(COMPONENT,))
        try:
            for user, password in USERS.items():
                server.register(user, password)
            bot_port = free_port()
            bot = spawn([sys.executable, BOTS[args.bot], "--port", str(bot_port)], work / "bot.log")
            procs.append(bot)
            wait_port(bot_port, bot, "the echo bot")
            web_port = free_port()
            config = work / "config.toml"
            config.write_text(
                f'[component]\njid = "{COMPONENT}"\nsecret = "{SECRET}"\nport = {server.component_port}\n'
                f'[bot]\nurl = "http://127.0.0.1:{bot_port}/"\nmax_queued = 10000\n'
                f'[web]\nlisten = "127.0.0.1:{web_port}"\n'
            )
            command = [sys.executable, "-m", "component", "--config", str(config), "--log-level", "WARNING"]
            profile = os.environ.get("BENCH_PROFILE")
            if profile and profile.endswith(".prof"):  # cProfile: exact call counts, inflated Python costs
                command = [sys.executable, "-m", "cProfile", "-o", profile, *command[1:]]
                profile = ""
            elif profile:  # py-spy starts the component (attaching to a running process needs ptrace rights)
                fmt = "speedscope" if profile.endswith(".json") else "raw"
                command = [py_spy(), "record", "-r", "1000", "-o", profile, "-f", fmt, "--", *command]
            component = spawn(command, work / "component.log", {"XMPP_COMPONENT_SECRET": SECRET})
            procs.append(component)
            wait_port(web_port, component, "the component")
            component_pid = child_pid(component.pid) if profile else component.pid
            if profile:
                profiled.append((component_pid, component))
            echo = spawn(
                [
                    sys.executable,
                    "-m",
                    "bench.echo_client",
                    f"bob@{server.domain}/echo",
                    USERS["bob"],
                    str(server.c2s_port),
                ],
                work / "echo.log",
            )
            procs.append(echo)
            plain = spawn(
                [
                    sys.executable,
                    "-m",
                    "bench.echo_client",
                    f"carol@{server.domain}/echo",
                    USERS["carol"],
                    str(server.c2s_port),
                    "--plain",
                ],
                work / "plain.log",
            )
            procs.append(plain)
            time.sleep(1.0)  # the component and the echo clients log in
            server_pid = server_process(server._proc.pid) if server._proc is not None else 0
            pids = {
                "component": component_pid,
                "bot": bot.pid,
                "echo_client": echo.pid,
                "plain_client": plain.pid,
                "server": server_pid,
            }
            results = asyncio.run(measure(server, pids, args.n, windows, args.soak, args.repeat))
        finally:
            for pid, wrapper in profiled:  # the component under py-spy: stop it, and py-spy then writes
                os.kill(pid, signal.SIGTERM)
                wrapper.wait(30)
            stop_all(procs)
            server.stop()
    results = {"server": args.server, "bot": args.bot, "python": sys.version.split()[0], **results}
    report(results, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
