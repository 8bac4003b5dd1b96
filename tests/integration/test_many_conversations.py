"""1,000 conversations at once: 1,000 distinct sender full JIDs (real c2s sessions), each sending K messages to a
bot whose latency varies at random; every message gets its reply, and each conversation's replies arrive in the
order its messages were sent."""

from __future__ import annotations

import asyncio
import random
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import suppress

import pytest
from aiohttp import web
from slixmpp import JID
from slixmpp.stanza import Message

from tests.harness.clients import PlainClient, login
from tests.harness.parts import COMPONENT, Bot, StartComponent, metric
from tests.harness.servers import XmppServer

SENDERS = 1000
USERS = 10  # ejabberd allows 100 sessions per account in the test config: 10 accounts x 100 resources
K = 3  # messages per conversation
BOTS = 7  # bot JIDs: a conversation is (sender full JID, bot JID)
SEED = 20240601
REPLY = re.compile(r"Did you say (\d+):(\d+)\?")


class Sender(PlainClient):
    """A bare-bones user session: no plugins, no roster, no presence (1,000 of them must log in quickly; with
    presence, every resource of an account would hear about every other one)."""

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.replies: list[tuple[int, int]] = []
        self.errors: list[Message] = []
        self.got_all = asyncio.Event()
        self.add_event_handler("message", self._on_message)
        self.add_event_handler("message_error", self.errors.append)

    def _on_message(self, msg: Message) -> None:
        if m := REPLY.fullmatch(msg["body"]):
            self.replies.append((int(m[1]), int(m[2])))
            if len(self.replies) == K:
                self.got_all.set()


@pytest.fixture
async def senders(server: XmppServer, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[Sender]]:
    """SENDERS logged-in sessions: accounts many0..many9 with resources r0..r99."""
    # These sessions never use TLS, yet each slixmpp stream loads the system CA store twice when it is created:
    # 50 ms of a login's 52. Skip that while the senders are created.
    monkeypatch.setattr(ssl.SSLContext, "set_default_verify_paths", lambda _self: None)
    accounts = [(f"many{u}", f"pw{u}") for u in range(USERS)]
    for user, password in accounts:
        with suppress(RuntimeError):  # already registered by an earlier test on this server
            server.register(user, password)
    clients: list[Sender] = []
    try:
        for batch in range(0, SENDERS, 100):
            logins = []
            for i in range(batch, batch + 100):
                user, password = accounts[i % USERS]
                logins.append(
                    login(server, user, f"r{i // USERS}", make=Sender, password=password, announce=False, timeout=30)
                )
            clients += await asyncio.gather(*logins)
        monkeypatch.undo()
        yield clients
    finally:
        for client in clients:
            client.disconnect(wait=0)
        await asyncio.sleep(0.5)


async def test_a_thousand_conversations_in_order(
    server: XmppServer, bot: Bot, start_component: StartComponent, senders: list[Sender]
) -> None:
    rng = random.Random(SEED)
    finished: dict[int, list[int]] = {}  # sender -> its message numbers in the order the bot finished them

    async def jittery_echo(request: web.Request) -> web.Response:
        body = (await request.json())["body"]
        await asyncio.sleep(rng.uniform(0, 0.05))  # later messages often finish first
        i, k = map(int, body.split(":"))
        finished.setdefault(i, []).append(k)
        return web.json_response({"body": f"Did you say {body}?"})

    bot.handler = jittery_echo
    app = await start_component(bot={"max_in_flight": 200, "max_queued": SENDERS * K})
    assert len({str(s.boundjid) for s in senders}) == SENDERS
    for i, sender in enumerate(senders):
        for k in range(K):  # back to back, so that the bot often finishes a later one first
            sender.send_message(mto=JID(f"echo{i % BOTS}@{COMPONENT}"), mbody=f"{i}:{k}", mtype="chat")
        if i % 100 == 99:
            await asyncio.sleep(0)
    await asyncio.wait_for(asyncio.gather(*(s.got_all.wait() for s in senders)), 60)
    out_of_order = {i: s.replies for i, s in enumerate(senders) if s.replies != [(i, k) for k in range(K)]}
    assert not out_of_order, (
        f"{len(out_of_order)} conversations got replies out of order: {list(out_of_order.items())[:5]}"
    )
    assert not any(s.errors for s in senders)
    overtaken = sum(ks != sorted(ks) for ks in finished.values())
    assert overtaken > SENDERS // 4, f"the bot finished out of order in only {overtaken} conversations: no test"
    assert metric(app, "bot_requests_total", outcome="replied") == SENDERS * K
    assert metric(app, "xmpp_connects_total") == 1
    print(
        f"{SENDERS} conversations x {K} messages: every reply in order ({overtaken} answered out of order by the bot)"
    )
