"""The server restarts under a bot sitting in a room: the component reconnects, the bot is back in the room within
seconds and answers again, and the room's history (the last messages, which Prosody even keeps across its restart)
is not fed to the bot again. On a private server of its own, so that the shared servers are not disturbed."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from component.app import App
from component.metrics import Metrics
from tests.harness import muc
from tests.harness.clients import login
from tests.harness.parts import FAST, SERVERS, Bot, component_config, metric, start_server
from tests.integration.test_rooms import ROOMS, joined, new_room, until


@pytest.mark.parametrize("kind", SERVERS)
async def test_after_a_server_restart_the_bot_is_back_in_its_room(kind: str, tmp_path: Path, bot: Bot) -> None:
    server = await asyncio.to_thread(start_server, kind, tmp_path / kind)
    app = None
    try:
        room = new_room(server)
        rooms = {**ROOMS, "join": [{"jid": room, "bot": "echo", "nick": "Echo"}]}
        app = App(component_config(server, bot.url, rooms=rooms), Metrics(), FAST)
        await app.start()
        await joined(app, room)
        alice = await login(server, "alice")
        await muc.enter(alice, room, "alice")
        await muc.messages(alice, 0.3)
        alice.say(room, "before", mtype="groupchat")
        await muc.message_from(alice, f"{room}/Echo", body="Did you say before?")
        alice.disconnect(wait=0.5)

        await asyncio.to_thread(server.restart)
        back = await until(
            lambda: metric(app, "xmpp_connects_total") == 2 and any(r["joined"] for r in app.rooms.listing()),
            "the bot back in its room",
            timeout=15,
        )
        assert back < 10, f"{back:.1f} s after the server came back"

        alice = await login(server, "alice")
        await muc.enter(alice, room, "alice", history=True)
        old = [m["body"] for m in await muc.messages(alice, 0.5, type="groupchat") if m["body"]]
        if kind == "prosody":  # it saved the room with its last message: there was history to suppress
            assert old == ["Did you say before?"]
        alice.say(room, "after", mtype="groupchat")
        await muc.message_from(alice, f"{room}/Echo", body="Did you say after?")
        alice.disconnect(wait=0.5)
        assert [r["body"] for r in bot.requests] == ["before", "after"]  # "before" was not fed again
        assert metric(app, "xmpp_room_stanzas_dropped_total", reason="history") == 0  # nor even sent
    finally:
        if app is not None:
            await app.stop()
        await asyncio.to_thread(server.stop)
