"""The examples work: the demo end to end, and both echo bots (PHP and Python) behind the real component."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import COMPONENT, REPO, ConnectClient, StartComponent
from xmpp_servers import free_port

EXAMPLES = REPO / "examples"


def test_demo_prints_the_echo_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Did you say hello?" in result.stdout.splitlines()


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


@pytest.fixture(params=["php", "python"])
def example_bot(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """One of the example echo bots, run as a subprocess on a free loopback port; yields its URL."""
    port = free_port()
    if request.param == "php":
        command = [_php(), "-S", f"127.0.0.1:{port}", str(EXAMPLES / "echo_bot.php")]
    else:
        command = [sys.executable, str(EXAMPLES / "echo_bot.py"), "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "bot.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(proc, port, log)
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.kill()
        proc.wait(5)


async def test_example_bot_answers_a_real_user(
    example_bot: str, start_component: StartComponent, connect: ConnectClient
) -> None:
    await start_component(bot={"url": example_bot})
    alice = await connect("alice")
    alice.say(f"echo@{COMPONENT}", "hello")
    reply = await alice.next_message()
    assert reply["type"] == "chat"
    assert reply["from"] == f"echo@{COMPONENT}"
    assert reply["body"] == "Did you say hello?"
