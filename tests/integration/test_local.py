"""The local flow: the component answers presence, disco, ping and version itself, as an always-online service."""

from __future__ import annotations

import asyncio

import pytest
from slixmpp import JID
from slixmpp.exceptions import IqError
from slixmpp.stanza import Presence

from tests.harness.clients import WAIT, Client
from tests.harness.parts import COMPONENT, Bot, ConnectClient, StartComponent

ECHO = f"echo@{COMPONENT}"


async def presence_from(client: Client, jid: str, ptype: str) -> Presence:
    while True:
        pres = await asyncio.wait_for(client.presences.get(), WAIT)
        if pres["from"].bare == jid and pres["type"] == ptype:
            return pres


async def wait_subscription(client: Client, jid: str, state: str) -> None:
    for _ in range(int(WAIT / 0.05)):
        if client.client_roster[jid]["subscription"] == state:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"roster item {jid} is {client.client_roster[jid]['subscription']}, not {state}")


async def test_subscribe_probe_unsubscribe(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    await start_component()
    carol = await connect("carol")
    carol.send_presence(pto=ECHO, ptype="subscribe")
    await wait_subscription(carol, ECHO, "to")  # the server saw <subscribed/> from the bare JID
    online = await presence_from(carol, ECHO, "available")
    assert str(online["from"]) == f"{ECHO}/default"

    # A new session of the same user makes the server probe the bot: it answers available.
    other = await connect("carol", resource="second")
    assert str((await presence_from(other, ECHO, "available"))["from"]) == f"{ECHO}/default"

    carol.send_presence(pto=ECHO, ptype="unsubscribe")
    await wait_subscription(carol, ECHO, "none")
    await presence_from(carol, ECHO, "unavailable")
    assert bot.requests == []  # presence stays local by default


async def test_presence_goes_to_the_bot_when_listed(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    await start_component(bot={"stanzas": ["message", "presence"]})
    alice = await connect("alice")
    alice.send_presence(pto=ECHO, ptype="subscribe")
    for _ in range(100):
        if bot.requests:
            break
        await asyncio.sleep(0.05)
    assert (bot.requests[0]["kind"], bot.requests[0]["type"]) == ("presence", "subscribe")


@pytest.mark.parametrize(
    ("jid", "identity"),
    [
        pytest.param(COMPONENT, ("component", "generic"), id="the-domain"),
        pytest.param(ECHO, ("client", "bot"), id="a-bot-jid"),
    ],
)
async def test_disco_info(
    bot: Bot, start_component: StartComponent, connect: ConnectClient, jid: str, identity: tuple[str, str]
) -> None:
    await start_component()
    alice = await connect("alice")
    info = await alice.plugin["xep_0030"].get_info(jid=JID(jid), timeout=WAIT)
    query = info["disco_info"]
    assert {(c, t) for c, t, _lang, _name in query["identities"]} == {identity}
    assert {"http://jabber.org/protocol/disco#info", "urn:xmpp:ping", "jabber:iq:version"} <= set(query["features"])


async def test_ping_and_version(bot: Bot, start_component: StartComponent, connect: ConnectClient) -> None:
    await start_component()
    alice = await connect("alice")
    await alice.plugin["xep_0199"].send_ping(JID(ECHO), timeout=WAIT)
    version = await alice.plugin["xep_0092"].get_version(JID(ECHO), timeout=WAIT)
    assert version["software_version"]["name"] == "xmpp-http-component"


async def test_other_iqs_get_service_unavailable(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    await start_component()
    alice = await connect("alice")
    for iq_type in ("get", "set"):
        iq = alice.make_iq_get(queryxmlns="jabber:iq:last", ito=ECHO)
        iq["type"] = iq_type
        with pytest.raises(IqError) as info:
            await iq.send(timeout=WAIT)  # type: ignore[no-untyped-call]
        assert (info.value.iq["error"]["type"], info.value.iq["error"]["condition"]) == (
            "cancel",
            "service-unavailable",
        )


async def test_iq_goes_to_the_bot_when_listed(
    bot: Bot, start_component: StartComponent, connect: ConnectClient
) -> None:
    await start_component(bot={"stanzas": ["message", "iq"]})
    alice = await connect("alice")
    with pytest.raises(IqError):  # the echo bot answers with a message, so the component answers the iq itself
        await alice.plugin["xep_0199"].send_ping(JID(ECHO), timeout=WAIT)
    assert bot.requests[0]["kind"] == "iq"
    assert "urn:xmpp:ping" in bot.requests[0]["stanza"]
