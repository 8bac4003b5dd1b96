"""The examples work: the demo end to end, and both echo bots (PHP and Python) behind the real component."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError

from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, REPO, ConnectClient, StartComponent
from tests.harness.servers import free_port


def test_demo_prints_the_echo_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "examples.demo"], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Did you say hello?" in result.stdout.splitlines()


async def test_the_readme_curl_example_works_against_the_demo() -> None:
    """README: `bash scripts/demo.sh --stay`, then the curl line it prints delivers a message to the user."""
    import asyncio
    import signal

    import aiohttp

    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "examples.demo", "--stay", cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []

    async def read_until(marker: str) -> None:
        assert proc.stdout is not None
        while marker not in (line := (await proc.stdout.readline()).decode()):
            assert line, "".join(seen)
            seen.append(line)

    try:
        await asyncio.wait_for(read_until("staying up"), 30)
        readme = (REPO / "README.md").read_text()
        assert "curl -H 'Authorization: Bearer demo-token'" in readme
        async with aiohttp.ClientSession() as session:  # what the README's curl line sends
            resp = await session.post(
                "http://127.0.0.1:8088/v1/stanzas",
                json={"to": "alice@localhost", "from": f"echo@{COMPONENT}", "body": "Hi from curl"},
                headers={"Authorization": "Bearer demo-token"},
            )
            assert (resp.status, await resp.json()) == (200, {"sent": 1})
        await asyncio.wait_for(read_until(f"alice received from echo@{COMPONENT}: Hi from curl"), 10)
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the demo and the component it started
            await proc.wait()


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the bot exited with code {proc.returncode}: {log.read_text(errors='replace')}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not listen on 127.0.0.1:{port} within {timeout} s") from None
            time.sleep(0.05)


def _php() -> str:
    php = shutil.which("php")
    if php is None:
        pytest.fail("php not found: install the Debian package php-cli")
    return php


SIGNING_SECRET = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
BOTS = {  # paths from the repository's root
    "php": ("examples/echo_bot.php", "Did you say hello?"),
    "python": ("examples/echo_bot.py", "Did you say hello?"),
    "php-signed": ("examples/signed_echo_bot.php", "Did you say hello?"),
    "python-signed": ("examples/signed_bot.py", "Verified: hello"),
    "bench-lean": ("bench/lean_bot.py", "Did you say hello?"),  # the benchmark's bot answers as the example does
    "php-rest": ("examples/rest_bot.php", "You said: hello"),  # written for mod_rest's callback mode
}


@pytest.fixture(params=list(BOTS))
def example_bot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, bool]]:
    """One example bot, run as a subprocess on a free loopback port: (its URL, its answer to hello, signed?)."""
    port = free_port()
    script, answer = BOTS[request.param]
    if script.endswith(".php"):
        command = [_php(), "-S", f"127.0.0.1:{port}", str(REPO / script)]
    else:
        command = [sys.executable, str(REPO / script), "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "bot.log"
    env = {**os.environ, "WEBHOOK_SECRET": SIGNING_SECRET}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_port(proc, port, log)
        yield f"http://127.0.0.1:{port}/", answer, request.param.endswith("signed")
    finally:
        proc.kill()
        proc.wait(5)


async def test_example_bot_answers_a_real_user(
    example_bot: tuple[str, str, bool], start_component: StartComponent, connect: ConnectClient
) -> None:
    url, answer, signed = example_bot
    await start_component(bot={"url": url, "signing_secret": SIGNING_SECRET if signed else ""})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "hello")
    reply = await alice.next_message()
    assert reply["type"] == "chat"
    assert reply["from"] == f"echo@{COMPONENT}"
    assert reply["body"] == answer


@pytest.mark.parametrize("example_bot", ["php-signed", "python-signed"], indirect=True)
async def test_signed_bots_refuse_a_wrong_signature(
    example_bot: tuple[str, str, bool], start_component: StartComponent, connect: ConnectClient
) -> None:
    url, _, _ = example_bot
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    await start_component(bot={"url": url, "signing_secret": other})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "hello")
    reply = await alice.next_message()
    assert (reply["type"], reply["error"]["condition"]) == ("error", "not-authorized")


@pytest.mark.parametrize("example_bot", ["php-rest"], indirect=True)
async def test_the_mod_rest_bot_works_unchanged(
    example_bot: tuple[str, str, bool], start_component: StartComponent, connect: ConnectClient
) -> None:
    """examples/rest_bot.php relies on mod_rest's documented callback behaviour: fields such as oob_url and
    version, 204 for "nothing to say" (an iq then gets its empty result), XML replies, 501 for the rest."""
    url, _, _ = example_bot
    await start_component(bot={"url": url, "stanzas": ["message", "iq"]})
    alice = await connect("alice")
    bot = JID(f"echo@{COMPONENT}")
    version = await alice.plugin["xep_0092"].get_version(bot, timeout=WAIT)
    assert (version["software_version"]["name"], version["software_version"]["version"]) == ("rest_bot.php", "1.0")
    pong = await alice.plugin["xep_0199"].send_ping(bot, timeout=WAIT)  # the bot answers 204: the empty result
    assert pong["type"] == "result"
    with pytest.raises(IqError) as info:
        await alice.plugin["xep_0030"].get_items(jid=bot, timeout=WAIT)
    assert info.value.iq["error"]["condition"] == "feature-not-implemented"
    alice.register_plugin("xep_0066")
    msg = alice.make_message(mto=bot, mbody="look", mtype="chat")
    msg["oob"]["url"] = "https://media.example/cat.png"
    msg.send()
    reply = await alice.next_message()
    assert (reply["body"], reply.xml.findtext("{jabber:x:oob}x/{jabber:x:oob}url")) == (
        "Nice picture",
        "https://media.example/cat.png",
    )
    alice.say(str(bot), "xml")
    assert (await alice.next_message())["body"] == "Yes, this is bot"
    alice.say(str(bot), "hi")
    reply = await alice.next_message()
    assert reply["body"] == "You said: hi"
    assert reply.xml.find("{http://jabber.org/protocol/chatstates}active") is not None
