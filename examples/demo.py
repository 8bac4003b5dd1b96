"""The whole chain on your machine, in a few seconds: XMPP user -> Prosody -> component -> HTTP echo bot -> back.

    .venv/bin/python -m examples.demo        (from the repository's root; or: bash scripts/demo.sh)

It starts a private Prosody on loopback in a temporary directory (Debian's `prosody` package must be installed),
registers a user, starts the example echo bot (examples/echo_bot.py) and the component (`python -m component`,
with a generated config.toml), logs the user in, sends "hello" to echo@bot.localhost and prints the reply.
Everything is stopped and removed at the end. Exit code 0 on success, 1 on failure or after 30 seconds.

With --stay it then keeps running, with the send API on 127.0.0.1:8088 (token `demo-token`), and prints every
message the user receives until Ctrl-C: try the README's curl example from another terminal.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

import aiohttp
from aiohttp import web
from slixmpp import JID

from examples import echo_bot
from tests.harness.clients import Client, LoginFailed, login
from tests.harness.servers import XmppServer, free_port, start_prosody

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0
COMPONENT = "bot.localhost"
SECRET = "demo-secret"
USER, PASSWORD = "alice", "alicepw"
BOT_JID = f"echo@{COMPONENT}"
API_PORT, API_TOKEN = 8088, "demo-token"


class DemoFailure(Exception):
    """A step of the demo failed; the message says which."""


steps: list[str] = []


def step(text: str) -> None:
    steps.append(text)
    print(f"demo: {text}", flush=True)


async def start_bot() -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(echo_bot.make_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/"


def write_config(path: Path, xmpp: XmppServer, bot_url: str, web_port: int, stay: bool) -> None:
    api = f'[api]\nlisten = "127.0.0.1:{API_PORT}"\ntoken = "{API_TOKEN}"\n' if stay else ""
    path.write_text(
        api + "[component]\n"
        f'jid = "{COMPONENT}"\n'
        f'secret = "{SECRET}"\n'
        'host = "127.0.0.1"\n'
        f"port = {xmpp.component_port}\n"
        "[bot]\n"
        f'url = "{bot_url}"\n'
        "[web]\n"
        f'listen = "127.0.0.1:{web_port}"\n',
        encoding="utf-8",
    )


async def wait_healthy(proc: asyncio.subprocess.Process, web_port: int) -> None:
    url = f"http://127.0.0.1:{web_port}/healthz"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while True:
            if proc.returncode is not None:
                raise DemoFailure(f"the component exited with code {proc.returncode} before connecting")
            with suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)


async def chat(xmpp: XmppServer, text: str, stay: bool) -> str:
    """Log the user in, send `text` to the echo bot, return the body of its answer; with `stay`, then print
    what the user receives until SIGINT or SIGTERM."""
    try:  # the private Prosody has no TLS: the client allows SASL PLAIN over plain TCP (loopback only)
        user = await login(xmpp, USER, "demo", password=PASSWORD, timeout=TIMEOUT)
    except LoginFailed as exc:
        raise DemoFailure(f"{USER} could not log in") from exc
    try:
        step(f"{USER}@{xmpp.domain} logged in; sending {text!r} to {BOT_JID}")
        user.send_message(mto=JID(BOT_JID), mbody=text, mtype="chat")
        reply = await user.messages.get()
        if reply["type"] == "error":
            raise DemoFailure(f"got an error back: {reply['error']['condition']} {reply['error']['text']}".strip())
        print(reply["body"], flush=True)
        if stay:
            await listen(user)
        return str(reply["body"])
    finally:
        user.disconnect(wait=0.5)
        with suppress(TimeoutError):
            await asyncio.wait_for(user.disconnected, 2)


async def listen(user: Client) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    step(f"staying up; send API on http://127.0.0.1:{API_PORT} (token {API_TOKEN}); Ctrl-C stops. Try:")
    print(
        f"  curl -H 'Authorization: Bearer {API_TOKEN}' -H 'Content-Type: application/json' \\\n"
        f'       -d \'{{"to": "{USER}@localhost", "from": "{BOT_JID}", "body": "Hi from curl"}}\' \\\n'
        f"       http://127.0.0.1:{API_PORT}/v1/stanzas",
        flush=True,
    )
    stopping = asyncio.ensure_future(stop.wait())
    while not stop.is_set():
        getting = asyncio.ensure_future(user.messages.get())
        await asyncio.wait((getting, stopping), return_when=asyncio.FIRST_COMPLETED)
        if getting.done():
            msg = getting.result()
            print(f"{USER} received from {msg['from']}: {msg['body']}", flush=True)
        else:
            getting.cancel()


async def run(workdir: Path, xmpp: XmppServer, stay: bool) -> None:
    bot_runner, bot_url = await start_bot()
    step(f"echo bot listening on {bot_url}")
    proc: asyncio.subprocess.Process | None = None
    log_path = workdir / "component.log"
    try:
        web_port = free_port()
        config_path = workdir / "config.toml"
        write_config(config_path, xmpp, bot_url, web_port, stay)
        env = dict(os.environ)
        env.pop("XMPP_COMPONENT_SECRET", None)  # the generated file holds the secret Prosody expects
        with log_path.open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "component", "--config", str(config_path),
                cwd=REPO, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        step(f"component started (pid {proc.pid}); waiting until it is connected to Prosody")
        await wait_healthy(proc, web_port)
        step(f"component connected as {COMPONENT}")
        await chat(xmpp, "hello", stay)
        step("stopping the component (SIGTERM)")
        with suppress(ProcessLookupError):  # after Ctrl-C in a terminal, the component has stopped already
            proc.send_signal(signal.SIGTERM)
        code = await proc.wait()
        if code != 0:
            raise DemoFailure(f"the component exited with code {code} after SIGTERM")
    except BaseException:
        if log_path.exists():
            print(f"demo: component log:\n{log_path.read_text(errors='replace')}", file=sys.stderr, flush=True)
        raise
    finally:
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await bot_runner.cleanup()


def main() -> int:
    stay = "--stay" in sys.argv[1:]
    deadline = time.monotonic() + (365 * 86400 if stay else TIMEOUT)
    with tempfile.TemporaryDirectory(prefix="xmpp-http-component-demo-") as tmp:
        workdir = Path(tmp)
        step("starting a private Prosody on 127.0.0.1")
        xmpp: XmppServer | None = None
        try:
            xmpp = start_prosody(workdir / "prosody", component_secret=SECRET, component_domains=(COMPONENT,))
            xmpp.register(USER, PASSWORD)
            step(f"Prosody up: c2s on port {xmpp.c2s_port}, components on port {xmpp.component_port}")
            asyncio.run(asyncio.wait_for(run(workdir, xmpp, stay), max(deadline - time.monotonic(), 1)))
        except TimeoutError:
            print(f"demo: FAILED: timed out after {TIMEOUT:.0f} s, at: {steps[-1]}", file=sys.stderr)
            return 1
        except (DemoFailure, RuntimeError, OSError) as exc:
            print(f"demo: FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            if xmpp is not None:
                step("stopping Prosody")
                xmpp.stop()
    step("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
