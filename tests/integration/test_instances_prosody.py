"""Several instances on Prosody: active/standby. Prosody lets one connection serve a component domain and refuses a
second with a `conflict` stream error; the second instance stands by (logged once, at INFO), tries again every
`component.standby_retry` seconds, and takes over once the active one is gone. Two real component processes; the
active one is killed with SIGKILL while a real client keeps talking to a bot; what arrives while no instance is
connected, Prosody bounces to the client with an error. Nothing goes unanswered."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness.clients import WAIT, Client
from tests.harness.parts import COMPONENT, Bot, ConnectClient
from tests.harness.processes import ComponentProcess, write_config
from tests.harness.servers import XmppServer, free_port

STANDBY_RETRY = 1.0  # seconds between the standby's attempts
PACE = 0.02  # seconds between two messages of the client
AFTER = 20  # messages sent once the standby answers
REPLY = re.compile(r"Did you say (m\d+)\?")
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) ")
STANDING_BY = "standing by: the XMPP server"
REFUSAL = "Second component attempted to connect, denying connection"  # Prosody's log line for each refusal


@pytest.fixture
def server(prosody: XmppServer) -> XmppServer:
    return prosody


@pytest.fixture
async def pair(server: XmppServer, bot: Bot, tmp_path: Path) -> AsyncIterator[tuple[ComponentProcess, ...]]:
    """Two instances of the component, `instance-a` and `instance-b`, same domain and bot; not started."""
    procs = []
    for name in ("a", "b"):
        web_port = free_port()
        config = write_config(
            tmp_path / f"{name}.toml",
            server.component_port,
            bot.url,
            web_port,
            component={"standby_retry": STANDBY_RETRY},
            instance={"id": f"instance-{name}"},
        )
        procs.append(ComponentProcess(config, web_port, tmp_path / f"{name}.log"))
    yield tuple(procs)
    for proc in procs:
        await proc.close()


def log_lines(proc: ComponentProcess) -> list[tuple[str, str, str]]:
    """(level, instance, line) of each line the process logged."""
    out = []
    for line in proc.log.read_text().splitlines():
        if m := LOG_LINE.match(line):
            out.append((m[1], m[2], line))
    return out


class Tally:
    """What one client sent (by stanza id) and how each was answered: a reply from the bot, or an error."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.sent: list[str] = []
        self.answered: dict[str, float] = {}  # id -> when (time.monotonic())
        self.errors: dict[str, str] = {}  # id -> the error's condition
        self._reader = asyncio.create_task(self._read())

    def send(self) -> str:
        text = f"m{len(self.sent)}"
        self.client.say(f"echo@{COMPONENT}", text, id=text)
        self.sent.append(text)
        return text

    async def _read(self) -> None:
        while True:
            msg = await self.client.messages.get()
            if msg["type"] == "error":
                self.errors[msg["id"]] = msg["error"]["condition"]
            elif m := REPLY.fullmatch(msg["body"]):
                self.answered[m[1]] = time.monotonic()

    @property
    def never(self) -> list[str]:
        return [s for s in self.sent if s not in self.answered and s not in self.errors]

    async def settled(self, timeout: float) -> None:
        """Wait until every message sent is answered one way or the other (at most `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while self.never and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    def close(self) -> None:
        self._reader.cancel()


async def test_the_standby_takes_over_when_the_active_instance_is_killed(
    server: XmppServer, pair: tuple[ComponentProcess, ComponentProcess], connect: ConnectClient
) -> None:
    active, standby = pair
    await active.start()
    refusals_before = server.log_text().count(REFUSAL)
    await standby.start(wait=False)
    async with asyncio.timeout(WAIT):  # refused three times at least: standing by
        while server.log_text().count(REFUSAL) < refusals_before + 3:
            await asyncio.sleep(0.05)
    assert await standby.get("/healthz", standby.web_port) == 503
    assert await standby.metric("component_instance_info", instance_id="instance-b") == 1
    assert await active.metric("component_instance_info", instance_id="instance-a") == 1
    lines = log_lines(standby)
    standing_by = [(level, line) for level, _, line in lines if STANDING_BY in line]
    assert [level for level, _ in standing_by] == ["INFO"], standby.log.read_text()  # once, at INFO
    assert "conflict" in standing_by[0][1]
    assert not [line for level, _, line in lines if level not in ("DEBUG", "INFO")], standby.log.read_text()
    assert {instance for _, instance, _ in lines} == {"instance-b"}
    assert {instance for _, instance, _ in log_lines(active)} == {"instance-a"}

    alice = await connect("alice")
    tally = Tally(alice)
    try:
        for _ in range(20):  # the active instance answers
            tally.send()
            await asyncio.sleep(PACE)
        await tally.settled(WAIT)
        assert (len(tally.answered), tally.errors) == (20, {})

        # kill it just after one of the standby's refused attempts: the standby's next attempt is the furthest off,
        # the longest takeover (nothing is under way then: every message sent so far is answered)
        refusals = server.log_text().count(REFUSAL)
        async with asyncio.timeout(WAIT):
            while server.log_text().count(REFUSAL) == refusals:
                await asyncio.sleep(0.005)
        assert active.proc is not None
        active.proc.kill()
        killed = time.monotonic()
        await active.proc.wait()
        first_after = len(tally.sent)
        async with asyncio.timeout(WAIT):  # the client keeps talking until a reply comes through the standby
            while not any(f"m{i}" in tally.answered for i in range(first_after, len(tally.sent))):
                await asyncio.sleep(PACE)
                tally.send()
        took_over = min(
            tally.answered[f"m{i}"] for i in range(first_after, len(tally.sent)) if f"m{i}" in tally.answered
        )
        for _ in range(AFTER):
            await asyncio.sleep(PACE)
            tally.send()
        await tally.settled(5)  # the grace period
    finally:
        tally.close()

    bounced = sorted(set(tally.errors.values()))
    print(
        f"\ntakeover: {took_over - killed:.3f} s from the kill -9 to the first reply through the standby "
        f"(standby_retry = {STANDBY_RETRY} s); sent {len(tally.sent)}, answered {len(tally.answered)}, "
        f"answered with an error {len(tally.errors)} ({', '.join(bounced)}), never answered {len(tally.never)}"
    )
    assert tally.never == []
    assert tally.errors, "nothing was sent while no instance was connected: the test shows no bounce"
    assert all(int(i[1:]) >= first_after for i in tally.errors)  # only while no instance was connected
    assert all(f"m{i}" in tally.answered for i in range(len(tally.sent) - AFTER, len(tally.sent)))
    assert await standby.get("/healthz", standby.web_port) == 200
    took = [line for _, _, line in log_lines(standby) if "taking over" in line]
    assert len(took) == 1 and " INFO instance-b " in took[0], standby.log.read_text()
