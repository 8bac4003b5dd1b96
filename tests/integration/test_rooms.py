"""Bots in group chats (XEP-0045) on real Prosody (its built-in MUC component) and ejabberd (mod_muc): a bot
configured in a room answers there, is not fed its own messages nor the room's history, is kept in the room (kick,
destruction, silent drop, nick conflict) with backoff, reports a wrong password, hears private messages, subject
changes and invitations, and joins on an invitation when it accepts them."""

from __future__ import annotations

import asyncio
import logging
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from component.app import App
from tests.harness import muc
from tests.harness.clients import WAIT
from tests.harness.parts import COMPONENT, Bot, ConnectClient, StartComponent, echo, metric
from tests.harness.servers import XmppServer

# short timings: a kicked bot is back within half a second, a silent drop found within a second
ROOMS: dict[str, Any] = {"ping_interval": 30.0, "timeout": 5.0, "retry_first": 0.5, "retry_most": 2.0}


def new_room(server: XmppServer, tag: str = "dev") -> str:
    return f"{tag}-{secrets.token_hex(3)}@{server.muc_domain}"


def status(app: App, room: str, bot: str = "echo") -> dict[str, Any]:
    found = [r for r in app.rooms.listing() if r["room"] == room and r["bot"] == bot]
    assert found, f"{bot} is not listed in {room}: {app.rooms.listing()}"
    return found[0]


async def until(check: Callable[[], bool], what: str, timeout: float = WAIT) -> float:
    """Wait until `check()` holds; the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        if loop.time() - start > timeout:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)
    return loop.time() - start


async def joined(app: App, room: str, bot: str = "echo", timeout: float = WAIT) -> float:
    def now() -> bool:
        return any(r["room"] == room and r["bot"] == bot and r["joined"] for r in app.rooms.listing())

    return await until(now, f"{bot} joined {room}", timeout)


def in_room(room: str, bot: str = "echo", nick: str = "Echo", **more: Any) -> dict[str, Any]:
    return {**ROOMS, "join": [{"jid": room, "bot": bot, "nick": nick, **more}]}


async def test_a_bot_answers_in_its_room(
    start_component: StartComponent, connect: ConnectClient, bot: Bot, server: XmppServer
) -> None:
    room = new_room(server)
    app = await start_component(rooms=in_room(room))
    await joined(app, room)  # the bot created the room: it is its owner, and sees the occupants' real JIDs
    alice = await connect("alice")
    await muc.enter(alice, room, "alice")
    await muc.messages(alice, 0.3)  # the subject sent on joining
    alice.say(room, "hello", mtype="groupchat")
    got = await muc.messages(alice, 1.5, type="groupchat")
    assert [(str(m["from"]), m["body"]) for m in got] == [
        (f"{room}/alice", "hello"),  # her own, reflected
        (f"{room}/Echo", "Did you say hello?"),  # one reply, from the bot's nick
    ]
    # the bot heard alice once, and never its own reply (reflected to it too)
    assert len(bot.requests) == 1
    request = bot.requests[0]
    assert request["type"] == "groupchat"
    assert (request["event"], request["room"], request["nick"]) == ("groupchat", room, "alice")
    assert request["real_jid"] == "alice@localhost/test"
    assert request["to"] == f"echo@{COMPONENT}/Echo"
    assert metric(app, "xmpp_room_stanzas_dropped_total", reason="own") == 1


async def test_private_messages_subjects_and_replies_to_another_room(
    start_component: StartComponent, connect: ConnectClient, bot: Bot, server: XmppServer
) -> None:
    room, other = new_room(server), new_room(server, "ops")
    rooms = {**ROOMS, "join": [{"jid": room, "bot": "echo", "nick": "Echo"}, {"jid": other, "bot": "echo"}]}

    async def answer(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        if data.get("event") == "subject":
            return web.Response(status=204)
        if data.get("body") == "relay":  # one reply here, one in the other room
            return web.json_response([{"body": "ok"}, {"room": other, "body": "relayed"}])
        return await echo(request)

    bot.handler = answer
    alice = await connect("alice")
    await muc.create(alice, room)  # alice owns the rooms: a moderator may change the subject
    await muc.create(alice, other)
    app = await start_component(rooms=rooms)
    await joined(app, room)
    await joined(app, other)
    await muc.messages(alice, 0.3)
    # a private message from an occupant is answered privately, from the bot's occupant JID
    alice.say(f"{room}/Echo", "psst")
    reply = await muc.message_from(alice, f"{room}/Echo")
    assert (reply["type"], reply["body"]) == ("chat", "Did you say psst?")
    assert (bot.requests[-1]["event"], bot.requests[-1]["nick"], bot.requests[-1]["type"]) == (
        "private",
        "alice",
        "chat",
    )
    # a subject change is forwarded as such (the one sent on joining was not)
    muc.set_subject(alice, room, "Release day")
    await until(lambda: bot.requests[-1].get("event") == "subject", "the subject change reached the bot")
    assert bot.requests[-1]["subject"] == "Release day"
    assert sum(r.get("event") == "subject" for r in bot.requests) == 1
    # a reply naming another room the bot sits in goes there, from its nick in that room
    alice.say(room, "relay", mtype="groupchat")
    got = await muc.messages(alice, 1.5, type="groupchat")
    assert {(str(m["from"]), m["body"]) for m in got} == {
        (f"{room}/alice", "relay"),
        (f"{room}/Echo", "ok"),
        (f"{other}/echo", "relayed"),
    }


async def test_a_taken_nick_gets_a_suffix(
    start_component: StartComponent, connect: ConnectClient, bot: Bot, server: XmppServer
) -> None:
    room = new_room(server)
    alice = await connect("alice")
    await muc.create(alice, room, nick="Echo")  # alice took the bot's nick
    app = await start_component(rooms=in_room(room))
    await joined(app, room)
    seen = status(app, room)
    assert (seen["nick"], seen["wanted_nick"], seen["last_error"]["condition"]) == ("Echo_2", "Echo", "conflict")
    await muc.messages(alice, 0.3)
    alice.say(room, "hi", mtype="groupchat")  # from the nick Echo: not the bot's own message
    await muc.message_from(alice, f"{room}/Echo_2", body="Did you say hi?")
    assert [r["nick"] for r in bot.requests] == ["Echo"]


async def test_a_kicked_bot_comes_back_with_backoff(
    start_component: StartComponent, connect: ConnectClient, bot: Bot, server: XmppServer
) -> None:
    room = new_room(server)
    alice = await connect("alice")
    await muc.create(alice, room)  # alice owns the room and may kick
    app = await start_component(rooms=in_room(room))
    await joined(app, room)
    waits = []
    for _ in range(2):
        await muc.kick(alice, room, "Echo", "go away")
        await until(lambda: status(app, room)["condition"] == "kicked", "the kick noticed")
        assert "kicked" in status(app, room)["reason"] and "go away" in status(app, room)["reason"]
        waits.append(await joined(app, room))
    # the first rejoin after retry_first, the next after twice that: a bot kicked again and again backs off
    assert ROOMS["retry_first"] * 0.8 <= waits[0] < ROOMS["retry_first"] * 2 + 1
    assert waits[1] >= ROOMS["retry_first"] * 2 * 0.8
    assert metric(app, "xmpp_room_failures_total", condition="kicked") == 2
    await muc.messages(alice, 0.3)
    alice.say(room, "back?", mtype="groupchat")
    await muc.message_from(alice, f"{room}/Echo", body="Did you say back??")


async def test_a_destroyed_room_is_joined_again_and_recreated(
    start_component: StartComponent, connect: ConnectClient, bot: Bot, server: XmppServer
) -> None:
    room = new_room(server)
    alice = await connect("alice")
    await muc.create(alice, room)
    app = await start_component(rooms=in_room(room))
    await joined(app, room)
    await muc.destroy(alice, room, "moving")
    await until(lambda: status(app, room)["condition"] == "destroyed", "the destruction noticed")
    assert "moving" in status(app, room)["reason"]
    await joined(app, room)  # after the backoff: the bot recreates the room, as an instant room others may enter
    # the room is locked from the bot's self-presence until the server has taken the bot's instant configuration,
    # sent right after it on another stream than alice's: she may come a moment early, never 2 s late
    async with asyncio.timeout(2):
        while True:
            try:
                await muc.enter(alice, room, "alice")
                break
            except muc.Refused as refused:
                assert refused.condition == "item-not-found", refused.condition
                await asyncio.sleep(0.05)
    await muc.messages(alice, 0.3)
    alice.say(room, "again", mtype="groupchat")
    await muc.message_from(alice, f"{room}/Echo", body="Did you say again?")


async def test_a_wrong_password_is_reported_and_not_retried_in_a_loop(
    start_component: StartComponent,
    connect: ConnectClient,
    bot: Bot,
    server: XmppServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    room = new_room(server)
    alice = await connect("alice")
    await muc.create(alice, room, **{"muc#roomconfig_passwordprotectedroom": "1", "muc#roomconfig_roomsecret": "right"})
    caplog.set_level(logging.WARNING, logger="component.rooms.manager")
    app = await start_component(rooms=in_room(room, password="wrong"), api={"listen": "127.0.0.1:0", "token": TOKEN})
    await asyncio.sleep(3.6)
    rooms = await api_call(app, "GET", "/v1/rooms")
    [seen] = [r for r in rooms["rooms"] if r["room"] == room]
    assert (seen["joined"], seen["state"], seen["condition"]) == (False, "waiting", "not-authorized")
    assert "password" in seen["reason"] and seen["retry_in"] is not None
    # 0.5, 1, 2, 2 s apart: at most 4 attempts in 3.6 s, not a hot loop
    assert 3 <= seen["attempts"] <= 4, seen
    said = [r.getMessage() for r in caplog.records if room in r.getMessage()]
    assert any("wrong or missing password" in line for line in said), said
    assert seen["attempts"] - 1 <= len(said) <= seen["attempts"]  # one line per refusal (the last may be on its way)


async def test_a_silent_drop_is_found_by_the_self_ping(
    start_component: StartComponent, connect: ConnectClient, bot: Bot, server: XmppServer
) -> None:
    room = new_room(server)
    alice = await connect("alice")
    await muc.create(alice, room)
    app = await start_component(rooms={**in_room(room), "ping_interval": 0.5})
    await joined(app, room)
    await asyncio.sleep(1.2)  # pings answered: still joined, nothing lost
    assert metric(app, "xmpp_room_lost_total") == 0 and status(app, room)["attempts"] == 1
    presence = app.rooms.presence

    def deaf(stanza: Any, element: ET.Element) -> bool:  # the kick never reaches the manager
        if stanza.type == "unavailable" and stanza.from_ == f"{room}/Echo":
            return True
        return presence(stanza, element)

    app.rooms.presence = deaf  # type: ignore[method-assign]
    await muc.kick(alice, room, "Echo")
    await until(lambda: metric(app, "xmpp_room_lost_total") == 1, "the self-ping found the bot gone", 5)
    await until(lambda: status(app, room)["attempts"] == 2, "joined again")
    await joined(app, room)
    await muc.messages(alice, 0.3)
    alice.say(room, "there?", mtype="groupchat")
    await muc.message_from(alice, f"{room}/Echo", body="Did you say there??")


TOKEN = "rooms-token-0123"


async def api_call(app: App, method: str, path: str, body: Any = None, status_: int = 200) -> Any:
    import aiohttp

    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, f"http://127.0.0.1:{app.api_port}{path}", json=body, headers=headers) as response,
    ):
        data = await response.json()
        assert response.status == status_, data
        return data


async def test_rooms_added_through_the_api_survive_a_restart(
    start_component: StartComponent, connect: ConnectClient, bot: Bot, server: XmppServer, tmp_path: Any
) -> None:
    room = new_room(server)
    api, state = {"listen": "127.0.0.1:0", "token": TOKEN}, {"dir": str(tmp_path)}
    app = await start_component(rooms=ROOMS, api=api, state=state)
    added = await api_call(app, "PUT", f"/v1/rooms/{room}", {"bot": "echo", "nick": "Echo"}, 201)
    assert added == {"room": room, "bot": "echo", "kept": True}
    await api_call(app, "PUT", f"/v1/rooms/{room}", {"bot": "echo", "nick": "Echo"}, 200)  # the same again
    await joined(app, room)
    alice = await connect("alice")
    await muc.enter(alice, room, "alice")
    await muc.messages(alice, 0.3)
    alice.say(room, "one", mtype="groupchat")
    await muc.message_from(alice, f"{room}/Echo", body="Did you say one?")
    await app.stop()
    await muc.messages(alice, 0.5)  # the bot left
    # a new process, the same state dir: the room is joined again, and its history (alice's "one", the bot's
    # answer) is not fed to the bot again
    again = await start_component(rooms=ROOMS, api=api, state=state)
    await joined(again, room)
    [listed] = (await api_call(again, "GET", "/v1/rooms"))["rooms"]
    assert (listed["room"], listed["bot"], listed["source"], listed["joined"]) == (room, "echo", "api", True)
    await muc.messages(alice, 0.3)
    alice.say(room, "two", mtype="groupchat")
    await muc.message_from(alice, f"{room}/Echo", body="Did you say two?")
    assert [r["body"] for r in bot.requests] == ["one", "two"]
    assert metric(again, "xmpp_room_stanzas_dropped_total", reason="history") == 0  # none was even sent
    # removed: the bot leaves, and is not back after the next restart
    left = await api_call(again, "DELETE", f"/v1/rooms/{room}?bot=echo")
    assert left == {"room": room, "left": ["echo"]}
    await until(lambda: not again.rooms.listing(), "the room removed")
    await again.stop()
    third = await start_component(rooms=ROOMS, api=api, state=state)
    assert (await api_call(third, "GET", "/v1/rooms"))["rooms"] == []


async def test_the_api_refuses_what_it_cannot_do(start_component: StartComponent, server: XmppServer) -> None:
    room = new_room(server)
    app = await start_component(rooms=in_room(room), api={"listen": "127.0.0.1:0", "token": TOKEN})
    conflict = await api_call(app, "PUT", f"/v1/rooms/{room}", {"bot": "echo"}, 409)
    assert "config file" in conflict["error"]
    await api_call(app, "DELETE", f"/v1/rooms/{room}?bot=echo", status_=409)
    await api_call(app, "PUT", f"/v1/rooms/{room}", {"nick": "x"}, 400)
    await api_call(app, "PUT", f"/v1/rooms/{room}", {"bot": "echo", "colour": "red"}, 400)
    await api_call(app, "PUT", "/v1/rooms/not a jid@", {"bot": "echo"}, 400)
    await api_call(app, "PUT", f"/v1/rooms/{room}/nick", {"bot": "echo"}, 404)  # no such route
    await api_call(app, "PUT", f"/v1/rooms/x@{COMPONENT}", {"bot": "echo"}, 400)
    await api_call(app, "DELETE", f"/v1/rooms/{new_room(server)}?bot=echo", status_=404)
    created = await api_call(app, "PUT", f"/v1/rooms/{room}", {"bot": "helper", "history": 2}, 201)
    assert created["kept"] is False  # no state dir: kept in memory only
    await joined(app, room, "helper")


async def test_invitations_reach_the_bot_and_it_joins_when_it_accepts_them(
    start_component: StartComponent, connect: ConnectClient, bot: Bot, server: XmppServer
) -> None:
    async def answer(request: web.Request) -> web.StreamResponse:
        data = await request.json()
        return web.Response(status=204) if data.get("event") == "invite" else await echo(request)

    bot.handler = answer
    app = await start_component(rooms={**ROOMS, "accept_invites": ["echo"]})
    alice = await connect("alice")
    direct, mediated, declined = new_room(server), new_room(server, "med"), new_room(server, "no")
    for room in (direct, mediated, declined):
        await muc.create(alice, room)
    muc.invite_direct(alice, f"echo@{COMPONENT}", direct, reason="come in")
    await joined(app, direct)
    muc.invite_mediated(alice, f"echo@{COMPONENT}", mediated, reason="this way")
    await joined(app, mediated)
    muc.invite_mediated(alice, f"helper@{COMPONENT}", declined)  # helper does not accept invitations
    await until(lambda: len(bot.requests) == 3, "three invitations")
    by_room = {r["room"]: r for r in bot.requests}
    assert by_room[direct]["event"] == by_room[mediated]["event"] == by_room[declined]["event"] == "invite"
    assert (by_room[direct]["invite"], by_room[direct]["reason"], by_room[direct]["joining"]) == (
        "direct",
        "come in",
        True,
    )
    assert by_room[direct]["inviter"] == "alice@localhost/test"
    # the room names the inviter by real JID (ejabberd) or occupant JID (Prosody, the room being semi-anonymous)
    assert by_room[mediated]["inviter"] in ("alice@localhost/test", f"{mediated}/alice")
    assert (by_room[mediated]["invite"], by_room[mediated]["joining"]) == ("mediated", True)
    assert by_room[declined]["joining"] is False
    assert [r["room"] for r in app.rooms.listing()] == [direct, mediated]
    assert status(app, direct)["source"] == "invite" and status(app, direct)["nick"] == "echo"
    await muc.messages(alice, 0.3)
    alice.say(mediated, "thanks", mtype="groupchat")
    await muc.message_from(alice, f"{mediated}/echo", body="Did you say thanks?")
