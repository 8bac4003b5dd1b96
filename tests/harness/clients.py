"""XMPP users for the tests, the benchmark and the demo: slixmpp clients for the private servers, and `login`, the
one way to log a user in. Needs slixmpp only (not the component), so the benchmark's echo clients can use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import suppress
from typing import NamedTuple, Protocol, TypeVar, overload

from slixmpp import ClientXMPP
from slixmpp.stanza import Message, Presence
from slixmpp.types import MessageTypes

USERS = {"alice": "alicepw", "bob": "bobpw", "carol": "carolpw"}  # registered on the servers the tests start
WAIT = 10.0  # seconds a test waits for what must come


class LoginFailed(RuntimeError):
    """The server refused the user's credentials."""


class PlainClient(ClientXMPP):
    """A slixmpp client for the private servers: they offer SASL PLAIN without TLS (loopback only), which slixmpp
    needs allowed explicitly."""

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password, plugin_config={"feature_mechanisms": {"unencrypted_plain": True}})
        self.enable_plaintext = True
        self.enable_starttls = False
        self.enable_direct_tls = False


class Client(PlainClient):
    """A real XMPP user: what it receives lands in queues the test reads."""

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.messages: asyncio.Queue[Message] = asyncio.Queue()
        self.presences: asyncio.Queue[Presence] = asyncio.Queue()
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092")
        self.register_plugin("xep_0199")
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("message_error", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)

    async def next_message(self, timeout: float = WAIT) -> Message:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def no_message(self, within: float = 0.5) -> None:
        with suppress(TimeoutError):
            msg = await asyncio.wait_for(self.messages.get(), within)
            raise AssertionError(f"unexpected message: {msg}")

    def say(self, to: str, body: str, mtype: MessageTypes = "chat", **attrs: str) -> Message:
        """Send a message of type `mtype` to `to`; `attrs` set further attributes (e.g. `id`)."""
        msg = self.make_message(mto=to, mbody=body, mtype=mtype)
        for name, value in attrs.items():
            msg[name] = value
        msg.send()
        return msg


class Reachable(Protocol):
    """Where a user logs in: an XmppServer, or an `Endpoint`."""

    @property
    def domain(self) -> str: ...

    @property
    def c2s_port(self) -> int: ...


class Endpoint(NamedTuple):
    """A server known only by its user domain and c2s port on 127.0.0.1 (in a process that did not start it)."""

    domain: str
    c2s_port: int


C = TypeVar("C", bound=PlainClient)


@overload
async def login(
    server: Reachable,
    user: str,
    resource: str = "test",
    *,
    password: str | None = None,
    announce: bool = True,
    timeout: float = WAIT,
) -> Client: ...


@overload
async def login(
    server: Reachable,
    user: str,
    resource: str = "test",
    *,
    make: Callable[[str, str], C],
    password: str | None = None,
    announce: bool = True,
    timeout: float = WAIT,
) -> C: ...


async def login(
    server: Reachable,
    user: str,
    resource: str = "test",
    *,
    make: Callable[[str, str], PlainClient] = Client,
    password: str | None = None,
    announce: bool = True,
    timeout: float = WAIT,
) -> PlainClient:
    """Log `user@domain/resource` in over plain TCP on 127.0.0.1 and return its client once the session started.

    `make(jid, password)` builds the client (a `Client` unless given); the password is `USERS[user]` unless given.
    With `announce` (the default) the roster is then fetched and initial presence sent, as a real client does, and
    `login` returns once the server has made the user available.
    Raises `LoginFailed` when the server refuses the credentials, TimeoutError when all this takes more than
    `timeout` seconds; a login that fails leaves no connection behind.
    """
    jid = f"{user}@{server.domain}/{resource}"
    client = make(jid, USERS[user] if password is None else password)
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(error: Exception | None) -> None:
        if started.done():
            return
        if error is None:
            started.set_result(None)
        else:
            started.set_exception(error)

    client.add_event_handler("session_start", lambda _event: settle(None))
    client.add_event_handler("failed_auth", lambda _event: settle(LoginFailed(f"{jid}: the server refused the login")))
    client.connect(host="127.0.0.1", port=server.c2s_port)
    try:
        async with asyncio.timeout(timeout):
            await started
            if announce:
                await client.get_roster()
                await _become_available(client)
    except BaseException:
        client.abort()
        raise
    return client


async def log_out(clients: Iterable[ClientXMPP]) -> None:
    """Disconnect every client, and wait (a little) for each to be gone."""
    clients = list(clients)
    # slixmpp replaces `disconnected` with a new future once a disconnect completes: take them first
    waits = [client.disconnected for client in clients]
    for client in clients:
        client.disconnect(wait=0.5)
    for waiting in waits:
        with suppress(TimeoutError):
            await asyncio.wait_for(waiting, 2)


async def _become_available(client: PlainClient) -> None:
    """Send initial presence and wait until the server has processed it: it echoes it back to the resource that
    sent it (RFC 6121 4.2.2). Until then, a message to the user's bare JID may find no available resource."""
    echoed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def on_presence(presence: Presence) -> None:
        if presence["from"] == client.boundjid and not echoed.done():
            echoed.set_result(None)

    client.add_event_handler("presence_available", on_presence)
    try:
        client.send_presence()
        await echoed
    finally:
        client.del_event_handler("presence_available", on_presence)
