"""Operation: /healthz and /metrics, reconnecting after a server restart, a wrong secret, the CLI, SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from component.xmpp import Backoff
from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, REPO, SECRET, SERVERS, Bot, ConnectClient, StartComponent, start_server
from tests.harness.servers import XmppServer, free_port


@pytest.fixture(params=SERVERS)
def own_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[XmppServer]:
    """A server of this test alone (Prosody or ejabberd), which it may stop and restart."""
    server = start_server(request.param, tmp_path / request.param)
    yield server
    server.stop()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_healthz_and_metrics(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    app = await start_component()
    base = f"http://127.0.0.1:{app.web_port}"
    assert (await get(f"{base}/healthz"))[0] == 200
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "count me")
    await alice.next_message()
    status, text = await get(f"{base}/metrics")
    assert status == 200
    for line in (
        'xmpp_stanzas_received_total{kind="message"} 1.0',
        'xmpp_stanzas_sent_total{kind="message"} 1.0',
        'bot_requests_total{outcome="replied"} 1.0',
        "bot_request_duration_seconds_count 1.0",
        "bot_requests_in_flight 0.0",
        "xmpp_connected 1.0",
    ):
        assert line in text, line


@pytest.fixture
def server(own_server: XmppServer) -> XmppServer:
    return own_server


async def test_reconnects_after_the_server_restarts(
    own_server: XmppServer,
    bot: Bot,
    start_component: StartComponent,
    connect: ConnectClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="component")
    app = await start_component()
    base = f"http://127.0.0.1:{app.web_port}"
    own_server.stop()
    for _ in range(100):
        if (await get(f"{base}/healthz"))[0] == 503:
            break
        await asyncio.sleep(0.05)
    assert (await get(f"{base}/healthz"))[0] == 503
    own_server.start()
    await asyncio.wait_for(app.connected.wait(), WAIT)
    assert (await get(f"{base}/healthz"))[0] == 200
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "back?")
    assert (await alice.next_message())["body"] == "Did you say back??"
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("component")]
    assert sum(m.startswith("connected to") for m in messages) == 2
    assert sum(m.startswith("disconnected from") for m in messages) == 1


async def test_wrong_secret_is_reported_and_retried_slowly(
    bot: Bot, server: XmppServer, caplog: pytest.LogCaptureFixture
) -> None:
    from component.app import App
    from component.metrics import Metrics
    from tests.harness.parts import component_config

    caplog.set_level(logging.INFO, logger="component")
    cfg = component_config(server, bot.url, component={"secret": "wrong"})
    app = App(cfg, Metrics(), Backoff(first=0.1, most=0.2, refused=30.0))
    await app.start()
    try:
        await asyncio.sleep(1.5)  # with a fast backoff, an eager retry loop would try ~10 times here
        refusals = [r for r in caplog.records if "refused component" in r.getMessage()]
        assert len(refusals) == 1
        assert refusals[0].levelno == logging.ERROR
        assert "not-authorized" in refusals[0].getMessage()
        assert "component.secret" in refusals[0].getMessage()
        assert "retrying in 30 s" in refusals[0].getMessage()
        assert not app.connected.is_set()
    finally:
        await app.stop()


def write_config(path: Path, server: XmppServer, bot_url: str, web_port: int, extra: str = "") -> Path:
    path.write_text(
        f'[component]\njid = "{COMPONENT}"\nhost = "127.0.0.1"\nport = {server.component_port}\n'
        f'[bot]\nurl = "{bot_url}"\ntimeout = 5\n{extra}'
        f'[web]\nlisten = "127.0.0.1:{web_port}"\n'
    )
    return path


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "component",
        *args,
        cwd=REPO,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            '[component]\njid = "bot.localhost"\nsecret = "s"\nport = "x"\n[bot]\nurl = "http://a/"\n',
            "component.port: expected an integer",
            id="wrong-type",
        ),
        pytest.param(
            '[component]\njid = "bot.localhost"\nsecret = "s"\n[bot]\nurl = "http://a/"\nurll = 1\n',
            "bot.urll: unknown key",
            id="unknown-key",
        ),
        pytest.param(
            '[component]\njid = "bot.localhost"\n[bot]\nurl = "http://a/"\n',
            "component.secret: required",
            id="missing-required",
        ),
        pytest.param("[component\n", "not valid TOML", id="not-toml"),
    ],
)
async def test_cli_config_errors_exit_2_with_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for args in (("--config", str(path)), ("--config", str(path), "--check-config")):
        code, _out, err = await run_cli(*args, env={"XMPP_COMPONENT_SECRET": ""})
        assert code == 2
        assert message in err
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err


async def test_cli_check_config_accepts_the_example() -> None:
    code, out, _ = await run_cli("--config", "config.toml", "--check-config")
    assert (code, out.strip().splitlines()[-1]) == (0, "config.toml: ok")


@pytest.fixture
async def slow_bot() -> AsyncIterator[tuple[str, asyncio.Event]]:
    started = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        started.set()
        await asyncio.sleep(1.0)
        return web.json_response({"body": "finished " + (await request.json())["body"]})

    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}/", started
    await runner.cleanup()


async def test_sigterm_drains_in_flight_requests_and_exits_0(
    tmp_path: Path, server: XmppServer, slow_bot: tuple[str, asyncio.Event], connect: ConnectClient
) -> None:
    url, started = slow_bot
    web_port = free_port()
    path = write_config(tmp_path / "c.toml", server, url, web_port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "component",
        "--config",
        str(path),
        cwd=REPO,
        env={**os.environ, "XMPP_COMPONENT_SECRET": SECRET},
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        for _ in range(200):
            try:
                if (await get(f"http://127.0.0.1:{web_port}/healthz"))[0] == 200:
                    break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        alice = await connect("alice")
        alice.say(f"echo@{COMPONENT}", "work")
        await asyncio.wait_for(started.wait(), WAIT)
        proc.send_signal(signal.SIGTERM)
        assert (await alice.next_message())["body"] == "finished work"
        assert await asyncio.wait_for(proc.wait(), WAIT) == 0
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert "connected to" in log and "stopping" in log
        assert "Traceback" not in log
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
