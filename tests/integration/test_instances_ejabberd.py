"""Several active instances on ejabberd: `domain_balancing` with `type: bare_source` and `component_number: 3` (what
ejabberd 23.01 needs) spreads the component domain over three connections, each sender's bare JID on one of them.
Three real component processes and 20 real clients talking to a bot: every client gets every reply, each
conversation in order, each sender served by one instance only, and the stanzas spread over the three.

With `[instance] slots` and a private RabbitMQ broker (component/cluster.py): the slots are exclusive consumers on
the broker; three active instances and a spare under load, one killed with SIGKILL, the spare taking its slot (the
test prints, per client, what was sent, answered, answered with an error and never answered, and the window in which
ejabberd dropped stanzas); every lock dropped by the broker at once, and each slot served again; `POST /v1/iq` on one
instance answered through the instance that owns the target's bare JID."""

from __future__ import annotations

import asyncio
import re
import secrets
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from component.cluster import Slots
from component.config.sections import InstanceSection
from component.metrics import Metrics
from tests.harness import muc
from tests.harness.clients import WAIT, Client, log_out, login
from tests.harness.parts import COMPONENT, SECRET, Bot, echo
from tests.harness.processes import ComponentProcess, write_config
from tests.harness.rabbit import RabbitServer, start_rabbit
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


async def register_users(server: EjabberdServer, prefix: str = "user", count: int = CLIENTS) -> dict[str, str]:
    users = {f"{prefix}{i:02}": f"pw{i:02}" for i in range(count)}
    limit = asyncio.Semaphore(4)  # ejabberdctl starts a node each time: a few at once

    async def register(user: str, password: str) -> None:
        async with limit:
            await asyncio.to_thread(server.register, user, password)

    await asyncio.gather(*(register(u, p) for u, p in users.items()))
    return users


API_TOKEN = "instances-token"


def processes(
    server: EjabberdServer,
    bot: Bot,
    tmp_path: Path,
    count: int,
    prefix: str,
    api: bool = False,
    **sections: dict[str, Any],
) -> list[ComponentProcess]:
    """`count` component processes (not started) on `server`, ids `<prefix><n>`; each POSTs to its own path of the
    bot (`/<n>`), which tells the instance that served a sender. With `api`, each has its send API (API_TOKEN).
    `sections` go to every configuration."""
    procs = []
    for n in range(count):
        web_port, api_port = free_port(), free_port() if api else 0
        instance = {"id": f"{prefix}{n}", **sections.get("instance", {})}
        more = {"api": {"listen": f"127.0.0.1:{api_port}", "token": API_TOKEN}} if api else {}
        config = write_config(
            tmp_path / f"{n}.toml",
            server.component_port,
            f"{bot.url}/{n}",
            web_port,
            **{**sections, **more, "instance": instance},
        )
        procs.append(ComponentProcess(config, web_port, tmp_path / f"{n}.log", api_port, API_TOKEN if api else ""))
    return procs


@pytest.fixture
async def instances(balanced: EjabberdServer, tmp_path: Path) -> AsyncIterator[tuple[list[ComponentProcess], Bot]]:
    """Three instances, up, each POSTing to its own path of one bot (so that the bot sees which one asked)."""
    bot = Bot()
    await bot.start()
    procs = processes(balanced, bot, tmp_path, INSTANCES, "i")
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
        await log_out(clients)

    assert set(served) == {f"{user}@{balanced.domain}" for user in users}
    assert all(len(by) == 1 for by in served.values()), served  # each sender on one instance only
    received = [await proc.metric("xmpp_stanzas_received_total", kind="message") for proc in procs]
    replied = [await proc.metric("bot_requests_total", outcome="replied") for proc in procs]
    print(f"\nmessages received per instance: {received}; bot replies per instance: {replied}")
    assert sum(received) == sum(replied) == CLIENTS * MESSAGES
    assert all(count > 0 for count in received), received  # spread over the three
    senders = [sum(1 for by in served.values() if by == {str(n)}) for n in range(INSTANCES)]
    assert [count * MESSAGES for count in senders] == received


# -- a spare, with the slots' locks on a RabbitMQ broker (component/cluster.py) -------------------------------------

HEARTBEAT = 1  # seconds: short, so that a test of a lost broker is short too
ROUNDS = 60  # of the load: each round, every client sends one message
ROUND_SECONDS = 0.1
KILL_AT = 20  # the round after which an active instance is killed
QUIET = 3.0  # seconds without a reply after the last send: what is still missing then is never answered


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitServer]:
    server = start_rabbit(tmp_path_factory.mktemp("rabbitmq"))
    try:
        yield server
    finally:
        server.stop()


def slots_of(broker: RabbitServer, slots: int = INSTANCES) -> dict[str, Any]:
    return {
        "slots": slots,
        "broker_host": "127.0.0.1",
        "broker_port": broker.port,
        "broker_password": "guest",
        "heartbeat": HEARTBEAT,
        "lock_retry": 0.2,
    }


async def test_the_slots_are_locks_on_the_broker(broker: RabbitServer) -> None:
    section = InstanceSection(**slots_of(broker, slots=2))
    domain = "locks.example"  # queues of their own: xhc.slot.locks.example.<i>
    metrics = [Metrics() for _ in range(3)]
    a, b, c = (Slots(section, domain, f"i{n}", metrics[n]) for n in range(3))
    stop = asyncio.Event()
    try:
        assert await a.take(stop) == 0
        assert await b.take(stop) == 1
        spare = asyncio.create_task(c.take(stop))
        await asyncio.sleep(1.0)  # five tries
        assert not spare.done()  # both held: a spare
        assert metrics[2].registry.get_sample_value("component_instance_slot") == -1
        await b.release()
        assert await asyncio.wait_for(spare, WAIT) == 1  # the freed slot, taken
        assert metrics[2].registry.get_sample_value("component_instance_slot") == 1
        holds = [asyncio.create_task(a.hold(stop)), asyncio.create_task(c.hold(stop))]
        await asyncio.to_thread(broker.ctl, "close_all_connections", "test: the broker lets go")
        assert await asyncio.wait_for(asyncio.gather(*holds), WAIT) == [False, False]  # each knows it let go
        assert [m.registry.get_sample_value("component_instance_slot") for m in metrics] == [-1, -1, -1]
        assert await asyncio.wait_for(b.take(stop), WAIT) == 0  # all free again: the first is taken
        stop.set()
        assert await b.hold(stop) is True  # a stop is not a loss
    finally:
        for slots in (a, b, c):
            await slots.release()


async def wait_for_log(proc: ComponentProcess, text: str) -> None:
    async with asyncio.timeout(WAIT):
        while text not in proc.log.read_text(errors="replace"):
            await asyncio.sleep(0.05)


async def test_a_spare_takes_the_slot_of_a_killed_instance_under_load(
    balanced: EjabberdServer, broker: RabbitServer, tmp_path: Path
) -> None:
    bot = Bot()
    served: dict[str, set[str]] = {}  # sender's bare JID -> the instances (bot URL paths) that POSTed its stanzas

    async def handler(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        served.setdefault(data["from"].split("/")[0], set()).add(request.path.rsplit("/", 1)[1])
        return await echo(request)

    bot.handler = handler
    await bot.start()
    procs = processes(balanced, bot, tmp_path, INSTANCES + 1, "i", instance=slots_of(broker))
    spare, victim = procs[INSTANCES], procs[0]
    clients: list[Client] = []
    try:
        for proc in procs[:INSTANCES]:
            await proc.start()
        await spare.start(wait=False)
        await wait_for_log(spare, f"spare: all {INSTANCES} slots are held")
        assert await spare.get("/healthz", spare.web_port) == 503  # no XMPP connection
        slots = [await proc.metric("component_instance_slot") for proc in procs]
        assert sorted(slots[:INSTANCES]) == list(range(INSTANCES)) and slots[INSTANCES] == -1

        users = await register_users(balanced, prefix="load")
        clients = await asyncio.gather(*(login(balanced, user, password=pw) for user, pw in users.items()))
        loop = asyncio.get_running_loop()
        sent_at: dict[str, list[float]] = {c.boundjid.user: [] for c in clients}
        answered: dict[str, list[int]] = {c.boundjid.user: [] for c in clients}
        errors: dict[str, list[int]] = {c.boundjid.user: [] for c in clients}
        last_reply = [loop.time()]

        async def collect(client: Client) -> None:
            user = client.boundjid.user
            while True:
                msg = await client.messages.get()
                last_reply[0] = loop.time()
                if msg["type"] == "error":
                    errors[user].append(int(str(msg["id"]).rsplit("-", 1)[1]))
                else:
                    said = REPLY.fullmatch(msg["body"])
                    assert said is not None, str(msg)
                    answered[user].append(int(said[1].rsplit(" ", 1)[1]))

        async def takeover() -> float:
            while await spare.metric("component_instance_slot") != victim_slot:
                await asyncio.sleep(0.02)
            return loop.time()

        collectors = [asyncio.create_task(collect(client)) for client in clients]
        victim_slot = slots[0]
        killed_at, taken = 0.0, None
        for i in range(ROUNDS):  # the sends spread evenly over each round: the drops are timed to a few ms
            for n, client in enumerate(clients):
                user = client.boundjid.user
                sent_at[user].append(loop.time())
                client.say(f"echo@{COMPONENT}", f"{user} {i}", id=f"{user}-{i}")
                if i == KILL_AT and n == CLIENTS // 2:
                    killed_at = loop.time()
                    victim.proc.kill()  # type: ignore[union-attr]  # kill -9
                    taken = asyncio.create_task(takeover())
                await asyncio.sleep(ROUND_SECONDS / CLIENTS)
        async with asyncio.timeout(WAIT):
            while loop.time() - last_reply[0] < QUIET and any(
                len(answered[u]) + len(errors[u]) < ROUNDS for u in sent_at
            ):
                await asyncio.sleep(0.1)
        for task in collectors:
            task.cancel()
        assert taken is not None
        taken_at = await asyncio.wait_for(taken, WAIT)
    finally:
        await log_out(clients)
        for proc in procs:
            await proc.close()
        await bot.stop()

    lost = {u: sorted(set(range(ROUNDS)) - set(answered[u]) - set(errors[u])) for u in sent_at}
    print(f"\nkilled i0 (slot {victim_slot:g}); the spare i{INSTANCES} held it {taken_at - killed_at:.3f} s later")
    print("client   sent answered errors never-answered")
    for user in sent_at:
        print(f"{user:8} {ROUNDS:4} {len(answered[user]):8} {len(errors[user]):6} {len(lost[user]):6}")
    times = [sent_at[u][i] - killed_at for u in lost for i in lost[u]]
    if times:
        print(f"dropped: {len(times)} stanzas sent from {min(times):+.3f} s to {max(times):+.3f} s after the kill "
              f"(window {max(times) - min(times):.3f} s)")  # fmt: skip
    else:
        print("dropped: none")
    victims = {u for u in sent_at if "0" in served[f"{u}@{balanced.domain}"]}
    assert victims, served  # the killed instance served some
    for user in sent_at:
        assert answered[user] == sorted(answered[user]), user  # each conversation in order, across the takeover
        assert len(set(answered[user])) == len(answered[user]), user  # nothing answered twice
        if user not in victims:
            assert lost[user] == [] and errors[user] == [], user  # the other instances lost nothing
            assert served[f"{user}@{balanced.domain}"] in ({"1"}, {"2"}), user
        else:
            assert served[f"{user}@{balanced.domain}"] == {"0", str(INSTANCES)}, user  # then the spare
            if lost[user]:  # one run of drops: before it and after it, every stanza answered
                assert lost[user] == list(range(lost[user][0], lost[user][-1] + 1)), (user, lost[user])
            assert ROUNDS - 1 in answered[user]  # the last of them, answered by the spare


async def test_an_iq_sent_on_one_instance_gets_its_answer_through_another(
    balanced: EjabberdServer, broker: RabbitServer, tmp_path: Path
) -> None:
    bot = Bot()
    served: dict[str, set[str]] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        served.setdefault(data["from"].split("/")[0], set()).add(request.path.rsplit("/", 1)[1])
        return await echo(request)

    bot.handler = handler
    await bot.start()
    api_port, token = free_port(), "iq-token"
    procs = []
    for n in range(INSTANCES):
        web_port = free_port()
        more: dict[str, Any] = {"api": {"listen": f"127.0.0.1:{api_port}", "token": token}} if n == 0 else {}
        config = write_config(
            tmp_path / f"{n}.toml",
            balanced.component_port,
            f"{bot.url}/{n}",
            web_port,
            instance={"id": f"q{n}", **slots_of(broker)},
            **more,
        )
        procs.append(ComponentProcess(config, web_port, tmp_path / f"{n}.log"))
    clients: list[Client] = []
    try:
        for proc in procs:
            await proc.start()
        users = await register_users(balanced, prefix="iq", count=8)
        clients = await asyncio.gather(*(login(balanced, user, password=pw) for user, pw in users.items()))
        for client in clients:  # one message each: the bot's URL path tells which instance owns the sender
            client.say(f"echo@{COMPONENT}", "hello")
            await client.next_message()
        owner = {c: next(iter(served[c.boundjid.bare])) for c in clients}
        elsewhere = [c for c in clients if owner[c] != "0"]
        assert elsewhere, served  # 8 users on 3 instances: some are owned by another than the API's
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            for n, client in enumerate(clients):
                ping = f"<iq type='get' id='ping-{n}' to='{client.boundjid}'><ping xmlns='urn:xmpp:ping'/></iq>"
                async with session.post(f"http://127.0.0.1:{api_port}/v1/iq", json={"stanza": ping}) as resp:
                    answer = await resp.json()
                assert (resp.status, answer.get("type")) == (200, "result"), (owner[client], answer)
                assert f'id="ping-{n}"' in answer["stanza"] and str(client.boundjid) in answer["stanza"]
        iqs = [await proc.metric("xmpp_stanzas_received_total", kind="iq") for proc in procs]
        print(f"\niq answers received per instance: {iqs}; owners: {sorted(owner.values())}")
        for n in range(INSTANCES):  # each answer reached the instance owning its sender, not the one that asked
            assert iqs[n] == sum(1 for o in owner.values() if o == str(n))
    finally:
        await log_out(clients)
        for proc in procs:
            await proc.close()
        await bot.stop()


async def test_after_the_broker_drops_every_lock_each_slot_is_served_again(
    balanced: EjabberdServer, broker: RabbitServer, tmp_path: Path
) -> None:
    bot = Bot()
    await bot.start()
    procs = processes(balanced, bot, tmp_path, INSTANCES + 1, "d", instance=slots_of(broker))
    clients: list[Client] = []

    async def everyone_answered(body: str) -> None:
        for client in clients:
            client.say(f"echo@{COMPONENT}", body)
        for client in clients:
            msg = await client.next_message()
            assert msg["body"] == f"Did you say {body}?", (client.boundjid.bare, str(msg))

    try:
        for proc in procs[:INSTANCES]:
            await proc.start()
        await procs[INSTANCES].start(wait=False)
        await wait_for_log(procs[INSTANCES], f"spare: all {INSTANCES} slots are held")
        users = await register_users(balanced, prefix="drop", count=9)
        clients = await asyncio.gather(*(login(balanced, user, password=pw) for user, pw in users.items()))
        await everyone_answered("before")
        await asyncio.to_thread(broker.ctl, "close_all_connections", "test: every lock frees at once")
        async with asyncio.timeout(WAIT):  # each former holder let go, and three instances took a slot again
            while sum([await proc.metric("component_slot_takeovers_total") for proc in procs]) < 2 * INSTANCES:
                await asyncio.sleep(0.1)
        holders = [proc for proc in procs if await proc.metric("component_instance_slot") >= 0]
        assert len(holders) == INSTANCES
        for proc in holders:
            await proc.wait_up()
        await everyone_answered("after")  # each former holder closed its stream, then took a slot and reconnected
    finally:
        await log_out(clients)
        for proc in procs:
            await proc.close()
        await bot.stop()


async def test_a_spare_serves_the_slot_of_a_hung_instance_once_ejabberd_lets_it_go(
    balanced: EjabberdServer, broker: RabbitServer, tmp_path: Path
) -> None:
    """An active instance stops (SIGSTOP: a hung process, or a network that drops its packets): the broker frees its
    lock after two missed heartbeats and the spare takes it, but ejabberd still routes the slot to the hung
    connection, so the spare's fresh connection gets nothing. Its probes find that out (`component_xmpp_routed` 0,
    /healthz 503, one warning), and it connects again until the slot frees. When the hung instance runs again, it
    finds its lock gone and closes its stream; the spare's next connection takes the slot and serves its senders,
    and the former holder is a spare."""
    bot = Bot()
    served: dict[str, set[str]] = {}
    asked: list[str] = []  # the sender of every request the bot got

    async def handler(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        asked.append(data["from"])
        served.setdefault(data["from"].split("/")[0], set()).add(request.path.rsplit("/", 1)[1])
        return await echo(request)

    bot.handler = handler
    await bot.start()
    checks = {"probe_interval": 1.0, "probe_timeout": 1.0}  # a second: no false alarm on a loaded machine
    procs = processes(balanced, bot, tmp_path, INSTANCES + 1, "h", instance={**slots_of(broker), **checks})
    spare, victim = procs[INSTANCES], procs[0]
    assert victim.proc is None
    clients: list[Client] = []
    loop = asyncio.get_running_loop()

    async def answered(of: list[Client], body: str) -> None:
        for client in of:
            client.say(f"echo@{COMPONENT}", body)
        for client in of:
            msg = await client.next_message()
            assert msg["body"] == f"Did you say {body}?", (client.boundjid.bare, str(msg))

    async def metric_is(proc: ComponentProcess, name: str, value: float) -> float:
        async with asyncio.timeout(WAIT):
            while await proc.metric(name) != value:
                await asyncio.sleep(0.02)
        return loop.time()

    try:
        for proc in procs[:INSTANCES]:
            await proc.start()
        await spare.start(wait=False)
        await wait_for_log(spare, f"spare: all {INSTANCES} slots are held")
        assert [await proc.metric("component_xmpp_routed") for proc in procs] == [1, 1, 1, 0]
        victim_slot = await victim.metric("component_instance_slot")
        users = await register_users(balanced, prefix="hung", count=12)
        clients = await asyncio.gather(*(login(balanced, user, password=pw) for user, pw in users.items()))
        await answered(clients, "before")
        victims = [c for c in clients if served[c.boundjid.bare] == {"0"}]
        others = [c for c in clients if c not in victims]
        assert victims and others, served

        assert victim.proc is not None
        victim.proc.send_signal(signal.SIGSTOP)
        stopped_at = loop.time()
        taken_at = await metric_is(spare, "component_instance_slot", victim_slot)  # the broker let the lock go
        await wait_for_log(spare, "the XMPP server routes nothing to this connection")
        unrouted_at = loop.time()
        assert await spare.metric("component_xmpp_routed") == 0
        assert await spare.get("/healthz", spare.web_port) == 503  # connected, but serving no one
        await answered(others, "while it hangs")  # the other slots lose nothing
        await asyncio.sleep(2.0)  # the spare keeps connecting again, quietly
        log_text = spare.log.read_text(errors="replace")
        assert log_text.count("routes nothing to this connection") == 1, log_text
        reconnects = await spare.metric("component_unrouted_reconnects_total")
        assert reconnects >= 2

        victim.proc.send_signal(signal.SIGCONT)
        continued_at = loop.time()
        routed_at = await metric_is(spare, "component_xmpp_routed", 1)  # the hung one let go; the spare took it
        await spare.wait_up()
        await answered(clients, "after")
        assert all(served[c.boundjid.bare] == {"0", str(INSTANCES)} for c in victims), served  # then the spare
        assert all(len(served[c.boundjid.bare]) == 1 for c in others), served
        await metric_is(victim, "component_instance_slot", -1)
        await wait_for_log(victim, f"spare: all {INSTANCES} slots are held")  # the former holder is the spare now
        assert await victim.get("/healthz", victim.web_port) == 503
        assert all(sender.split("@")[0].startswith("hung") for sender in asked)  # no probe ever reached the bot
    finally:
        if victim.proc is not None and victim.proc.returncode is None:
            victim.proc.send_signal(signal.SIGCONT)
        await log_out(clients)
        for proc in procs:
            await proc.close()
        await bot.stop()
    print(
        f"\nSIGSTOP of h0 (slot {victim_slot:g}): the spare held its lock {taken_at - stopped_at:.2f} s later and "
        f"knew its connection unrouted {unrouted_at - taken_at:.2f} s after that ({reconnects:g} connections made "
        f"again while it hung); SIGCONT: the spare served the slot {routed_at - continued_at:.2f} s later"
    )


async def rooms_of(proc: ComponentProcess) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {API_TOKEN}"}) as session,
        session.get(f"http://127.0.0.1:{proc.api_port}/v1/rooms") as resp,
    ):
        assert resp.status == 200
        return list((await resp.json())["rooms"])


async def test_a_room_is_held_by_the_instance_that_gets_its_stanzas_and_the_others_stand_by(
    balanced: EjabberdServer, broker: RabbitServer, tmp_path: Path
) -> None:
    """With bare_source, every stanza from a room reaches the instance whose slot the room's bare JID falls in,
    whichever instance joined. Three active instances and a spare, one room in the configuration of all: every
    instance joins (as the same occupant), the one the room's stanzas reach holds it and tells the others, which
    stand by ("elsewhere", naming it). The bot answers each message in the room once. When the holder is killed,
    the spare takes its slot, joins, gets the room's stanzas and holds the room; the others now name the spare."""
    bot = Bot()
    served: list[str] = []  # the instance (bot URL path) of every request

    async def handler(request: web.Request) -> web.StreamResponse:
        served.append(request.path.rsplit("/", 1)[1])
        return await echo(request)

    bot.handler = handler
    await bot.start()
    room = f"multi-{secrets.token_hex(3)}@{balanced.muc_domain}"
    rooms = {"ping_interval": 30.0, "timeout": 5.0, "retry_first": 0.5, "retry_most": 2.0,
             "join": [{"jid": room, "bot": "echo", "nick": "Echo"}]}  # fmt: skip
    procs = processes(balanced, bot, tmp_path, INSTANCES + 1, "r", api=True, instance=slots_of(broker), rooms=rooms)
    spare = procs[INSTANCES]
    alice: Client | None = None

    async def states(names: set[str]) -> dict[str, tuple[str, str | None]]:
        """The state in the room of each instance named, and the instance it names."""
        out = {}
        for name in names:
            listed = [r for r in await rooms_of(procs[int(name[1:])]) if r["room"] == room]
            out[name] = (listed[0]["state"], listed[0]["via"])
        return out

    async def settled(holder: str, running: set[str]) -> dict[str, tuple[str, str | None]]:
        """Wait until `holder` holds the room and every other running instance names it."""
        want = {name: ("joined", None) if name == holder else ("elsewhere", holder) for name in running}
        async with asyncio.timeout(WAIT):
            while (now := await states(running)) != want:
                await asyncio.sleep(0.1)
        return now

    async def said_once(body: str) -> None:
        assert alice is not None
        alice.say(room, body, mtype="groupchat")
        got = await muc.messages(alice, 1.5, type="groupchat")
        assert [(str(m["from"]), m["body"]) for m in got] == [
            (f"{room}/alice", body),
            (f"{room}/Echo", f"Did you say {body}?"),  # once: one instance got it, and the bot answered once
        ]

    try:
        for proc in procs[:INSTANCES]:
            await proc.start()
        await spare.start(wait=False)
        await wait_for_log(spare, f"spare: all {INSTANCES} slots are held")
        async with asyncio.timeout(WAIT):
            while sum([await proc.metric("xmpp_rooms_joined") for proc in procs]) != 1:
                await asyncio.sleep(0.1)
        joined = [await proc.metric("xmpp_rooms_joined") for proc in procs]
        holder = f"r{joined.index(1)}"
        print(f"\n{room} held by {holder}: {await settled(holder, {'r0', 'r1', 'r2'})}")
        await register_users(balanced, prefix="room", count=1)
        alice = await login(balanced, "room00", password="pw00")
        await muc.enter(alice, room, "alice")
        await muc.messages(alice, 0.5)  # the subject, the occupants' presences
        for i in range(3):
            await said_once(f"hello {i}")
        assert served == [holder[1:]] * 3, bot.requests  # only the holder's bot requests

        victim = procs[int(holder[1:])]
        assert victim.proc is not None
        victim.proc.kill()  # kill -9: the occupant stays in the room; the spare takes the slot and the room
        running = {f"r{n}" for n in range(INSTANCES + 1)} - {holder}
        after = await settled(f"r{INSTANCES}", running)
        print(f"after kill -9 of {holder}: {after}")
        await said_once("after")
        assert served[-1] == str(INSTANCES)
        assert served.count(str(INSTANCES)) == 1
    finally:
        if alice is not None:
            await log_out([alice])
        for proc in procs:
            await proc.close()
        await bot.stop()
