"""Several active instances on ejabberd: `domain_balancing` with `type: bare_source` and `component_number: 3` (what
ejabberd 23.01 needs) spreads the component domain over three connections, each sender's bare JID on one of them.
Three real component processes and 20 real clients talking to a bot: every client gets every reply, each
conversation in order, each sender served by one instance only, and the stanzas spread over the three."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from pathlib import Path

import pytest
from aiohttp import web

from tests.harness.clients import WAIT, Client, login
from tests.harness.parts import COMPONENT, SECRET, Bot, echo
from tests.harness.processes import ComponentProcess, write_config
from tests.harness.servers import EjabberdServer, free_port, start_ejabberd

INSTANCES = 3
CLIENTS = 20
MESSAGES = 10  # per client, to one bot: one conversation each
REPLY = re.compile(r"Did you say (.*)\?")


@pytest.fixture(scope="module")
def balanced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EjabberdServer]:
    """A private ejabberd balancing the component domain over three connections, with CLIENTS users."""
    server = start_ejabberd(
        tmp_path_factory.mktemp("ejabberd-balanced"), component_secret=SECRET, component_number=INSTANCES
    )
    try:
        yield server
    finally:
        server.stop()


async def register_users(server: EjabberdServer) -> dict[str, str]:
    users = {f"user{i:02}": f"pw{i:02}" for i in range(CLIENTS)}
    limit = asyncio.Semaphore(4)  # ejabberdctl starts a node each time: a few at once

    async def register(user: str, password: str) -> None:
        async with limit:
            await asyncio.to_thread(server.register, user, password)

    await asyncio.gather(*(register(u, p) for u, p in users.items()))
    return users


@pytest.fixture
async def instances(balanced: EjabberdServer, tmp_path: Path) -> AsyncIterator[tuple[list[ComponentProcess], Bot]]:
    """Three instances, up, each POSTing to its own path of one bot (so that the bot sees which one asked)."""
    bot = Bot()
    await bot.start()
    procs = []
    for n in range(INSTANCES):
        web_port = free_port()
        config = write_config(
            tmp_path / f"{n}.toml", balanced.component_port, f"{bot.url}/{n}", web_port, instance={"id": f"i{n}"}
        )
        procs.append(ComponentProcess(config, web_port, tmp_path / f"{n}.log"))
    try:
        await asyncio.gather(*(proc.start() for proc in procs))
        yield procs, bot
    finally:
        for proc in procs:
            await proc.close()
        await bot.stop()


async def test_three_instances_share_the_domain_and_keep_each_conversation_in_order(
    balanced: EjabberdServer, instances: tuple[list[ComponentProcess], Bot]
) -> None:
    procs, bot = instances
    served: dict[str, set[str]] = {}  # sender's bare JID -> the instances (bot URL paths) that POSTed its stanzas

    async def handler(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        served.setdefault(data["from"].split("/")[0], set()).add(request.path.rsplit("/", 1)[1])
        return await echo(request)

    bot.handler = handler
    users = await register_users(balanced)
    clients: list[Client] = await asyncio.gather(
        *(login(balanced, user, password=password) for user, password in users.items())
    )
    try:
        for i in range(MESSAGES):  # interleaved: every client has a message under way at once
            for client in clients:
                client.say(f"echo@{COMPONENT}", f"{client.boundjid.user} {i}")
        for client in clients:
            got: list[str] = []
            async with asyncio.timeout(WAIT):
                while len(got) < MESSAGES:
                    msg = await client.messages.get()
                    assert msg["type"] == "chat", str(msg)
                    got.append(REPLY.fullmatch(msg["body"])[1])  # type: ignore[index]
            assert got == [f"{client.boundjid.user} {i}" for i in range(MESSAGES)]  # every reply, in order
    finally:
        waits = [client.disconnected for client in clients]
        for client in clients:
            client.disconnect(wait=0.5)
        for waiting in waits:
            with suppress(TimeoutError):
                await asyncio.wait_for(waiting, 2)

    assert set(served) == {f"{user}@{balanced.domain}" for user in users}
    assert all(len(by) == 1 for by in served.values()), served  # each sender on one instance only
    received = [await proc.metric("xmpp_stanzas_received_total", kind="message") for proc in procs]
    replied = [await proc.metric("bot_requests_total", outcome="replied") for proc in procs]
    print(f"\nmessages received per instance: {received}; bot replies per instance: {replied}")
    assert sum(received) == sum(replied) == CLIENTS * MESSAGES
    assert all(count > 0 for count in received), received  # spread over the three
    senders = [sum(1 for by in served.values() if by == {str(n)}) for n in range(INSTANCES)]
    assert [count * MESSAGES for count in senders] == received
