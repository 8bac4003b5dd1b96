"""The room manager against scripted rooms: joining (history suppressed, instant room on 201), nick conflicts,
refusals and exits with backoff, self-pings, what is forwarded to the bot and what is kept, invitations, the
addressing of what the bots send, the kept rooms; the room fields of the bot's JSON and of its replies; the
[rooms] configuration."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from component import codec
from component.codec import ReplyError, RoomStanza
from component.config import ConfigError, RoomsSection, from_dict
from component.inbound import Inbound
from component.metrics import Metrics
from component.notify.config import Rabbit
from component.notify.events import Event
from component.notify.rabbit_events import publication
from component.rooms import protocol
from component.rooms.manager import TAKEN, RoomError, RoomManager, with_from
from component.rooms.store import Store, Wanted
from component.stanza import Stanza, build, from_element

DOMAIN = "bot.localhost"
ROOM = "dev@conference.localhost"
ME = f"echo@{DOMAIN}/Echo"
FAST = {"ping_interval": 30.0, "timeout": 5.0, "retry_first": 0.05, "retry_most": 0.2}
MUC_USER = protocol.NS_MUC_USER


def settings(**more: Any) -> RoomsSection:
    raw = {"component": {"jid": DOMAIN, "secret": "s"}, "bot": {"url": "http://127.0.0.1:1/"}}
    rooms = {**FAST, "join": [{"jid": ROOM, "bot": "echo", "nick": "Echo"}], **more}
    return from_dict({**raw, "rooms": rooms}, env={}).rooms


def received(xml: str) -> tuple[Stanza, ET.Element]:
    """A stanza as the stream hands it over."""
    elem = ET.fromstring(
        xml.replace("<presence ", '<presence xmlns="jabber:client" ', 1)
        .replace("<message ", '<message xmlns="jabber:client" ', 1)
        .replace("<iq ", '<iq xmlns="jabber:client" ', 1)
    )
    kind = elem.tag.rpartition("}")[2]
    return from_element(elem, kind), elem  # type: ignore[arg-type]


def self_presence(nick: str = "Echo", *codes: str, type_: str = "", extra: str = "") -> str:
    statuses = "".join(f'<status code="{c}"/>' for c in ("110", *codes))
    kind = f' type="{type_}"' if type_ else ""
    return (
        f'<presence from="{ROOM}/{nick}" to="{ME}"{kind}><x xmlns="{MUC_USER}">'
        f'<item jid="{ME}" affiliation="owner" role="moderator"/>{extra}{statuses}</x></presence>'
    )


def error_presence(condition: str, nick: str = "Echo") -> str:
    return (
        f'<presence from="{ROOM}/{nick}" to="{ME}" type="error"><error type="cancel">'
        f'<{condition} xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></presence>'
    )


class Rooms:
    """A manager with a recording send, its stream up."""

    def __init__(self, **more: Any) -> None:
        self.sent: list[Stanza] = []
        self.metrics = Metrics()
        self.manager = RoomManager(settings(**more), DOMAIN, self.sent.append, self.metrics)

    def up(self) -> None:
        self.manager.stream_up()

    def feed(self, xml: str) -> Any:
        stanza, elem = received(xml)
        if stanza.kind == "presence":
            return self.manager.presence(stanza, elem)
        if stanza.kind == "iq":
            return self.manager.take_iq(stanza, elem)
        return self.manager.message(stanza, elem)

    def state(self, room: str = ROOM, bot: str = "echo") -> dict[str, Any]:
        return next(r for r in self.manager.listing() if r["room"] == room and r["bot"] == bot)

    def last(self) -> Stanza:
        return self.sent[-1]


async def test_a_join_suppresses_history_and_a_new_room_is_made_instant() -> None:
    rooms = Rooms()
    rooms.up()
    join = rooms.last()
    assert (join.kind, join.to, join.from_) == ("presence", f"{ROOM}/Echo", ME)
    assert '<x xmlns="http://jabber.org/protocol/muc"><history maxchars="0"/></x>' in join.xml
    assert rooms.state()["state"] == "joining"
    assert rooms.feed(self_presence("Echo", "201")) is True
    assert rooms.state()["joined"] is True
    config = rooms.last()
    assert (config.kind, config.type, config.to, config.from_) == ("iq", "set", ROOM, ME)
    assert '<x xmlns="jabber:x:data" type="submit"/>' in config.xml
    assert rooms.feed(f'<iq type="result" id="{config.id}" from="{ROOM}" to="{ME}"/>') is True


async def test_a_password_and_history_go_in_the_join() -> None:
    rooms = Rooms(join=[{"jid": ROOM, "bot": "echo", "nick": "Echo", "password": "s<3", "history": 5}])
    rooms.up()
    assert '<history maxstanzas="5"/><password>s&lt;3</password>' in rooms.last().xml


async def test_a_taken_nick_is_retried_with_a_suffix_then_backs_off() -> None:
    rooms = Rooms()
    rooms.up()
    rooms.feed(error_presence("conflict"))
    assert rooms.last().to == f"{ROOM}/Echo_2"
    for n in range(3, 10):
        rooms.feed(error_presence("conflict", f"Echo_{n - 1}"))
        assert rooms.last().to == f"{ROOM}/Echo_{n}"
    rooms.feed(error_presence("conflict", "Echo_9"))
    state = rooms.state()
    assert (state["state"], state["condition"]) == ("waiting", "conflict")
    assert "all taken" in state["reason"]
    await asyncio.sleep(0.1)  # after the backoff: the nick it wants, again
    assert rooms.last().to == f"{ROOM}/Echo" and rooms.state()["state"] == "joining"


@pytest.mark.parametrize(
    ("condition", "said"),
    [
        ("not-authorized", "wrong or missing password"),
        ("forbidden", "banned"),
        ("registration-required", "members-only"),
        ("item-not-found", "does not exist"),
        ("service-unavailable", "full"),
        ("undefined-condition", "refused the bot (undefined-condition)"),
    ],
)
async def test_a_refused_join_says_why_and_backs_off(condition: str, said: str) -> None:
    rooms = Rooms()
    rooms.up()
    delays = []
    for _ in range(4):
        rooms.feed(error_presence(condition))
        state = rooms.state()
        assert (state["joined"], state["condition"]) == (False, condition)
        assert said in state["reason"]
        delays.append(state["retry_in"])
        await asyncio.sleep(state["retry_in"] + 0.03)
        assert rooms.state()["state"] == "joining"
    assert delays == pytest.approx([0.05, 0.1, 0.2, 0.2], abs=0.02)  # doubling, up to retry_most
    assert rooms.state()["attempts"] == 5
    label = "other" if condition == "undefined-condition" else condition  # a bounded set of labels
    assert rooms.metrics.registry.get_sample_value("xmpp_room_failures_total", {"condition": label}) == 4


@pytest.mark.parametrize(
    ("extra", "codes", "condition", "said"),
    [
        ("", ("307",), "kicked", "kicked"),
        ("", ("301",), "banned", "banned"),
        ("", ("332",), "shutdown", "shutting down"),
        ("", ("321",), "left", "members-only"),
        (f'<destroy xmlns="{MUC_USER}"><reason>moving</reason></destroy>', (), "destroyed", "destroyed (moving)"),
        ("", (), "left", "out of the room"),
    ],
)
async def test_an_exit_is_followed_by_a_join_after_the_backoff(
    extra: str, codes: tuple[str, ...], condition: str, said: str
) -> None:
    rooms = Rooms()
    rooms.up()
    rooms.feed(self_presence())
    rooms.feed(self_presence("Echo", *codes, type_="unavailable", extra=extra))
    state = rooms.state()
    assert (state["state"], state["condition"]) == ("waiting", condition)
    assert said in state["reason"]
    await asyncio.sleep(0.08)
    assert rooms.state()["state"] == "joining" and rooms.last().to == f"{ROOM}/Echo"


async def test_a_nick_change_is_no_exit() -> None:
    rooms = Rooms()
    rooms.up()
    rooms.feed(self_presence())
    item = f'<item nick="Echo2" jid="{ME}"/>'
    rooms.feed(
        f'<presence from="{ROOM}/Echo" to="{ME}" type="unavailable"><x xmlns="{MUC_USER}">{item}'
        '<status code="303"/><status code="110"/></x></presence>'
    )
    assert rooms.state()["nick"] == "Echo2" and rooms.state()["joined"]


async def test_the_self_ping_keeps_or_rejoins() -> None:
    rooms = Rooms(ping_interval=0.05, timeout=0.1)
    rooms.up()
    rooms.feed(self_presence())
    await asyncio.sleep(0.07)
    ping = rooms.last()
    assert (ping.kind, ping.type, ping.to, ping.from_) == ("iq", "get", f"{ROOM}/Echo", ME)
    assert '<ping xmlns="urn:xmpp:ping"/>' in ping.xml
    rooms.feed(f'<iq type="result" id="{ping.id}" from="{ROOM}/Echo" to="{ME}"/>')
    await asyncio.sleep(0.07)
    ping = rooms.last()
    assert ping.kind == "iq"  # pinged again
    # an occupant that does not answer pings is still there (XEP-0410)
    rooms.feed(
        f'<iq type="error" id="{ping.id}" from="{ROOM}/Echo" to="{ME}"><error type="cancel">'
        '<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>'
    )
    await asyncio.sleep(0.07)
    ping = rooms.last()
    rooms.feed(
        f'<iq type="error" id="{ping.id}" from="{ROOM}" to="{ME}"><error type="cancel">'
        '<not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>'
    )
    assert rooms.last().kind == "presence" and rooms.state()["state"] == "joining"  # joined again, at once
    assert rooms.metrics.registry.get_sample_value("xmpp_room_lost_total") == 1
    rooms.feed(self_presence())
    await asyncio.sleep(0.07)
    assert rooms.last().kind == "iq"
    await asyncio.sleep(0.12)  # no answer at all
    assert rooms.last().kind == "presence" and rooms.metrics.registry.get_sample_value("xmpp_room_lost_total") == 2


async def test_the_stream_going_down_and_up_joins_again() -> None:
    rooms = Rooms()
    rooms.up()
    rooms.feed(self_presence())
    rooms.manager.stream_down()
    assert (rooms.state()["state"], rooms.state()["reason"]) == ("waiting", "the XMPP stream is down")
    count = len(rooms.sent)
    rooms.up()
    assert len(rooms.sent) == count + 1 and rooms.last().kind == "presence"
    rooms.feed(self_presence())
    rooms.manager.stop()
    leave = rooms.last()
    assert (leave.kind, leave.type, leave.to) == ("presence", "unavailable", f"{ROOM}/Echo")


def groupchat(nick: str, body: str = "hi", extra: str = "", room: str = ROOM) -> str:
    sender = f"{room}/{nick}" if nick else room
    return f'<message type="groupchat" from="{sender}" to="{ME}"><body>{body}</body>{extra}</message>'


async def test_what_goes_to_the_bot_and_what_stops_here() -> None:
    rooms = Rooms()
    rooms.up()
    rooms.feed(self_presence())
    rooms.feed(
        f'<presence from="{ROOM}/alice" to="{ME}"><x xmlns="{MUC_USER}">'
        '<item jid="alice@localhost/phone" role="participant"/></x></presence>'
    )
    forwarded = rooms.feed(groupchat("alice"))
    assert isinstance(forwarded, RoomStanza)
    assert (forwarded.event, forwarded.room, forwarded.nick, forwarded.real_jid) == (
        "groupchat",
        ROOM,
        "alice",
        "alice@localhost/phone",
    )
    assert rooms.feed(groupchat("Echo")) is TAKEN  # its own, reflected
    delay = '<delay xmlns="urn:xmpp:delay" stamp="2024-01-01T00:00:00Z"/>'
    assert rooms.feed(groupchat("alice", extra=delay)) is TAKEN  # history
    assert rooms.feed(groupchat("", "This room is not anonymous")) is TAKEN  # the room's notice
    subject = f'<message type="groupchat" from="{ROOM}/alice" to="{ME}"><subject>Plans</subject></message>'
    assert rooms.feed(subject) is TAKEN  # the subject sent on joining
    changed = rooms.feed(subject)
    assert isinstance(changed, RoomStanza) and changed.event == "subject"
    private = rooms.feed(
        f'<message type="chat" from="{ROOM}/alice" to="{ME}"><body>psst</body><x xmlns="{MUC_USER}"/></message>'
    )
    assert isinstance(private, RoomStanza) and (private.event, private.nick) == ("private", "alice")
    error = f'<message type="error" from="{ROOM}" to="{ME}"><error type="cancel"/></message>'
    assert rooms.feed(error) is TAKEN and rooms.last().kind == "iq"  # a refusal: pinged at once
    other = f'<message type="chat" from="bob@localhost/pc" to="{ME}"><body>hi</body></message>'
    assert rooms.feed(other) is None  # no room's: the normal flow
    dropped = rooms.metrics.registry.get_sample_value
    assert [dropped("xmpp_room_stanzas_dropped_total", {"reason": r}) for r in ("own", "history", "room_notice")] == [
        1,
        1,
        1,
    ]


async def test_history_asked_for_is_forwarded() -> None:
    rooms = Rooms(join=[{"jid": ROOM, "bot": "echo", "nick": "Echo", "history": 3}])
    rooms.up()
    rooms.feed(self_presence())
    delay = '<delay xmlns="urn:xmpp:delay" stamp="2024-01-01T00:00:00Z"/>'
    assert isinstance(rooms.feed(groupchat("alice", extra=delay)), RoomStanza)


async def test_a_room_message_before_the_join_stops_here() -> None:
    rooms = Rooms()
    rooms.up()
    assert rooms.feed(groupchat("alice")) is TAKEN


def direct_invite(room: str, to: str = f"echo@{DOMAIN}") -> str:
    return (
        f'<message from="alice@localhost/phone" to="{to}"><x xmlns="jabber:x:conference" jid="{room}" '
        'reason="join us" password="pw"/></message>'
    )


async def test_invitations_are_forwarded_and_accepted_when_the_bot_accepts_them() -> None:
    rooms = Rooms(accept_invites=["echo"])
    rooms.up()
    other = "ops@conference.localhost"
    invite = rooms.feed(direct_invite(other))
    assert isinstance(invite, RoomStanza) and invite.event == "invite" and invite.joining
    assert invite.invite == protocol.Invite(other, "alice@localhost/phone", "direct", "join us", "pw")
    join = rooms.last()
    assert join.to == f"{other}/echo" and "<password>pw</password>" in join.xml
    assert rooms.state(other)["source"] == "invite"
    mediated = rooms.feed(
        f'<message from="lab@conference.localhost" to="helper@{DOMAIN}"><x xmlns="{MUC_USER}">'
        '<invite from="alice@localhost/phone"><reason>hi</reason></invite></x>'
        '<x xmlns="jabber:x:conference" jid="lab@conference.localhost"/></message>'
    )
    assert isinstance(mediated, RoomStanza)
    assert (mediated.invite.how, mediated.invite.inviter, mediated.joining) == (  # type: ignore[union-attr]
        "mediated",
        "alice@localhost/phone",
        False,  # helper does not accept invitations
    )
    assert [r["room"] for r in rooms.manager.listing()] == [ROOM, other]


async def test_what_the_bots_send_to_a_room_is_addressed_held_or_dropped() -> None:
    rooms = Rooms()
    rooms.up()
    reply = build("message", ROOM, f"echo@{DOMAIN}", "groupchat", None, "hi")
    assert rooms.manager.outgoing(reply) is None  # not in the room yet: held
    count = len(rooms.sent)
    rooms.feed(self_presence())
    flushed = rooms.sent[count:]
    assert [(s.to, s.from_, s.body) for s in flushed if s.kind == "message"] == [(ROOM, ME, "hi")]
    assert f'from="{ME}"' in flushed[0].xml
    out = rooms.manager.outgoing(build("message", f"{ROOM}/alice", f"echo@{DOMAIN}/x", "chat", None, "psst"))
    assert out is not None and out.from_ == ME and f'from="{ME}"' in out.xml
    failed = build("message", f"{ROOM}/alice", ME, "error", "m1", payload="<error/>")
    assert rooms.manager.outgoing(failed) is None  # Prosody would kick the bot for it
    elsewhere = build("message", "bob@localhost", f"echo@{DOMAIN}", "chat", None, "hi")
    assert rooms.manager.outgoing(elsewhere) is elsewhere


def test_with_from_rewrites_only_the_root() -> None:
    stanza = build("message", ROOM, "echo@bot.localhost", "groupchat", None, 'from="echo@bot.localhost"')
    moved = with_from(stanza, ME)
    assert moved.xml == stanza.xml.replace('from="echo@bot.localhost"', f'from="{ME}"', 1)
    assert moved.body == stanza.body
    odd = Stanza(
        "message", ROOM, "echo@bot.localhost", None, None, None, f"<message from='echo@bot.localhost' to='{ROOM}'/>"
    )
    assert f'from="{ME}"' in with_from(odd, ME).xml


async def test_the_api_adds_keeps_and_removes_rooms(tmp_path: Path) -> None:
    sent: list[Stanza] = []
    manager = RoomManager(settings(), DOMAIN, sent.append, Metrics(), str(tmp_path))
    manager.open()
    manager.stream_up()
    assert manager.add("Ops@Conference.Localhost", "Helper", "H", "pw", 2) is True
    assert sent[-1].to == "ops@conference.localhost/H"
    assert manager.add("ops@conference.localhost", "helper", "H", "pw", 2) is False  # the same: nothing to do
    with pytest.raises(RoomError) as refused:
        manager.add(ROOM, "echo")
    assert refused.value.status == 409
    for room, bot in (("no-at-sign", "x"), (f"{ROOM}/nick", "x"), (f"a@{DOMAIN}", "x"), (ROOM, "a@b")):
        with pytest.raises(RoomError):
            manager.add(room, bot)
    manager.stop()
    again = RoomManager(settings(), DOMAIN, sent.append, Metrics(), str(tmp_path))
    again.open()
    assert [(r["room"], r["bot"], r["nick"], r["source"]) for r in again.listing()] == [
        (ROOM, "echo", "Echo", "config"),
        ("ops@conference.localhost", "helper", "H", "api"),
    ]
    assert again.remove("ops@conference.localhost", None) == ["helper"]
    with pytest.raises(RoomError):
        again.remove(ROOM, "echo")  # the config file's
    with pytest.raises(RoomError):
        again.remove("ops@conference.localhost", "helper")  # gone
    assert Store(str(tmp_path)).load() == []
    assert (tmp_path / "rooms.sqlite3").stat().st_mode & 0o077 == 0  # it may hold passwords


def test_the_store_without_a_folder_keeps_nothing() -> None:
    store = Store("")
    store.put(Wanted(ROOM, "echo", "Echo"), 0)
    assert (store.kept, store.load()) == (False, [])


# -- the bot's JSON, its replies ---------------------------------------------------------------------------------------
def request(stanza: Stanza) -> dict[str, Any]:
    return json.loads(codec.request_json(stanza))  # type: ignore[no-any-return]


def test_the_json_of_a_room_message() -> None:
    stanza, _ = received(groupchat("alice", "hi", '<nick xmlns="http://jabber.org/protocol/nick">Ali</nick>'))
    data = request(codec.room_stanza(stanza, "groupchat", ROOM, "alice", "alice@localhost/phone"))
    assert {k: data[k] for k in ("type", "event", "room", "nick", "real_jid", "body")} == {
        "type": "groupchat",
        "event": "groupchat",
        "room": ROOM,
        "nick": "alice",  # the occupant's nick, not XEP-0172's
        "real_jid": "alice@localhost/phone",
        "body": "hi",
    }
    plain = request(stanza)  # without the manager's context (e.g. read back from a queue): what the XML tells
    assert (plain["event"], plain["room"], plain["nick"]) == ("groupchat", ROOM, "alice") and "real_jid" not in plain
    chat, _ = received('<message type="chat" from="bob@localhost/pc" to="echo@bot.localhost"><body>x</body></message>')
    assert "room" not in request(chat) and "event" not in request(chat)


def test_the_json_of_an_invitation() -> None:
    stanza, _ = received(direct_invite("ops@conference.localhost"))
    data = request(stanza)
    assert {k: data.get(k) for k in ("event", "room", "inviter", "invite", "reason", "password", "joining")} == {
        "event": "invite",
        "room": "ops@conference.localhost",
        "inviter": "alice@localhost/phone",
        "invite": "direct",
        "reason": "join us",
        "password": "pw",
        "joining": False,
    }
    # a reply to an invitation goes to whoever invited
    [reply] = codec.reply_stanzas(stanza, DOMAIN, 200, "application/json", b'{"body": "thanks"}', 100000)
    assert (reply.to, reply.type) == ("alice@localhost/phone", "chat")


def test_a_reply_may_name_a_room() -> None:
    stanza, _ = received(groupchat("alice"))
    body = json.dumps([{"body": "here"}, {"room": "ops@conference.localhost", "body": "there"}]).encode()
    here, there = codec.reply_stanzas(stanza, DOMAIN, 200, "application/json", body, 100000)
    assert (here.to, here.type, here.from_) == (ROOM, "groupchat", ME)
    assert (there.to, there.type, there.body) == ("ops@conference.localhost", "groupchat", "there")
    for bad in ({"room": "ops@conference.localhost", "to": "x@y"}, {"room": "ops@conf/nick"}, {"room": 5}):
        with pytest.raises(ReplyError) as refused:
            codec.reply_stanzas(stanza, DOMAIN, 200, "application/json", json.dumps(bad).encode(), 100000)
        assert refused.value.field == "room"
    [sent] = codec.api_stanzas(DOMAIN, "application/json", b'{"room": "ops@c.localhost", "body": "x"}', 100000)
    assert (sent.to, sent.from_, sent.type) == ("ops@c.localhost", DOMAIN, "groupchat")


# -- inbound, and the events -----------------------------------------------------------------------------------------
async def test_inbound_hands_room_stanzas_to_the_manager_and_the_rest_on() -> None:
    rooms = Rooms()
    rooms.up()
    submitted: list[Stanza] = []
    events: list[Event] = []
    waiter = type("Waiter", (), {"take": lambda self, s: False})()
    inbound = Inbound(
        ["message"],
        submitted.append,
        rooms.sent.append,
        waiter,
        Metrics(),
        "default",
        DOMAIN,
        events.append,
        rooms.manager,
    )
    for xml in (self_presence(), groupchat("alice"), groupchat("Echo"), error_presence("conflict", "other")):
        inbound.receive(*received(xml))
    assert [type(s).__name__ for s in submitted] == ["RoomStanza"]
    # the groupchat message is an event of type groupchat, as MongooseIM's: the rabbit backend publishes it
    raw = {"component": {"jid": DOMAIN, "secret": "s"}, "bot": {"url": "http://127.0.0.1:1/"}}
    pools: dict[str, Any] = {
        "outgoing_pools": {"rabbit": {"event_pusher": {}}},
        "event_pusher": {"rabbit": {"groupchat_msg_exchange": {}}},
    }
    rabbit = from_dict({**raw, **pools}, env={}).rabbit
    assert isinstance(rabbit, Rabbit)
    published = publication(events[1], rabbit)
    assert events[1].type == "groupchat" and published is not None
    assert (published.exchange, published.routing_key) == ("groupchat_msg", "echo@bot.localhost.groupchat_msg_recv")


# -- the configuration -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rooms", "message"),
    [
        ({"join": [{"jid": ROOM, "bot": "echo", "nik": "x"}]}, "rooms.join[0].nik: unknown key"),
        ({"join": [{"jid": f"{ROOM}/x", "bot": "echo"}]}, "rooms.join[0].jid: expected a room's bare JID"),
        ({"join": [{"bot": "echo"}]}, "rooms.join[0].jid: required"),
        ({"join": [{"jid": ROOM, "bot": "a@b"}]}, "rooms.join[0].bot: expected the local part"),
        ({"join": [{"jid": ROOM, "bot": "e", "history": -1}]}, "rooms.join[0].history: expected 0 or more"),
        ({"join": [{"jid": ROOM, "bot": "e"}, {"jid": ROOM.upper(), "bot": "E"}]}, "rooms.join[1]: bot 'e' is already"),
        ({"join": [{"jid": f"x@{DOMAIN}", "bot": "e"}]}, "rooms.join[0].jid: a room of bot.localhost"),
        ({"join": {"jid": ROOM}}, "rooms.join: expected an array of tables"),
        ({"accept_invites": "echo"}, "rooms.accept_invites: expected an array of strings"),
        ({"ping_interval": 0}, "rooms.ping_interval: expected a number greater than 0"),
        ({"pings": 1}, "rooms.pings: unknown key"),
    ],
)
def test_the_rooms_configuration_refuses_mistakes(rooms: dict[str, Any], message: str) -> None:
    raw = {"component": {"jid": DOMAIN, "secret": "s"}, "bot": {"url": "http://127.0.0.1:1/"}, "rooms": rooms}
    with pytest.raises(ConfigError, match="^" + message.replace("[", r"\[").replace("]", r"\]")):
        from_dict(raw, env={})


def test_the_rooms_configuration() -> None:
    section = settings(accept_invites=["Echo"], join=[{"jid": "Dev@Conference.Localhost", "bot": "Echo"}])
    assert section.accept_invites == ("echo",)
    [entry] = section.join
    assert (entry.jid, entry.bot, entry.nick, entry.password, entry.history) == (
        "dev@conference.localhost",
        "echo",
        "",
        "",
        0,
    )


# -- several active instances (component/cluster.py, Peers, carries the notes) -----------------------------------------
class Shared(Rooms):
    """A manager with the notes it tells the other instances recorded."""

    def __init__(self, **more: Any) -> None:
        super().__init__(**more)
        self.told: list[dict[str, Any]] = []
        self.manager.share = self.told.append


async def test_the_instance_that_gets_the_self_presence_holds_the_room_and_says_so() -> None:
    rooms = Shared()
    rooms.up()
    rooms.feed(self_presence())
    assert rooms.told == [{"t": "held", "room": ROOM, "bot": "echo", "joined": True}]
    ping = rooms.manager._iqs  # after a good self-ping it says so again
    rooms.manager._ping(rooms.manager.find(ROOM, "echo"))  # type: ignore[arg-type]
    (ping_id,) = ping
    rooms.feed(f'<iq type="result" id="{ping_id}" from="{ROOM}/Echo" to="{ME}"/>')
    assert rooms.told[-1] == {"t": "held", "room": ROOM, "bot": "echo", "joined": True} and len(rooms.told) == 2
    rooms.manager.stop()  # it leaves the room, and says so
    assert rooms.last().type == "unavailable"
    assert rooms.told[-1] == {"t": "held", "room": ROOM, "bot": "echo", "joined": False}


async def test_another_instance_holding_the_room_is_waited_on_and_its_leaving_starts_a_join() -> None:
    rooms = Shared()
    rooms.up()
    joins = len(rooms.sent)
    rooms.manager.peer("i1", {"t": "held", "room": ROOM, "bot": "echo", "joined": True})
    state = rooms.state()
    assert (state["state"], state["via"], state["joined"]) == ("elsewhere", "i1", True)
    assert "through instance i1" in state["reason"]
    m = rooms.manager.find(ROOM, "echo")
    # no join timer: it waits on i1, and joins only if i1 says nothing for three ping intervals
    assert m is not None and m.timer is not None and m.timer.when() - asyncio.get_running_loop().time() > 60
    # what the bot sends to the room goes out at once: the occupant is in the room
    reply = build("message", ROOM, f"echo@{DOMAIN}", "groupchat", body="hi")
    out = rooms.manager.outgoing(reply)
    assert out is not None and out.from_ == ME
    rooms.manager.peer("i2", {"t": "held", "room": ROOM, "bot": "echo", "joined": False})  # not the holder
    assert rooms.state()["state"] == "elsewhere" and len(rooms.sent) == joins
    rooms.manager.peer("i1", {"t": "held", "room": ROOM, "bot": "echo", "joined": False})
    assert rooms.state()["state"] == "joining" and rooms.last().to == f"{ROOM}/Echo"
    rooms.manager.stop()  # never the one that holds it: it does not take the shared occupant out of the room
    assert rooms.last().type != "unavailable"


async def test_at_stop_an_instance_alone_leaves_a_room_it_is_joining_and_one_of_several_does_not() -> None:
    alone, shared = Rooms(), Shared()
    for rooms in (alone, shared):
        rooms.up()
        assert rooms.state()["state"] == "joining"
        rooms.manager.stop()
    assert alone.last().type == "unavailable"
    assert shared.last().type != "unavailable"  # the occupant may be the one another instance holds


async def test_a_note_for_a_room_held_here_changes_nothing() -> None:
    rooms = Shared()
    rooms.up()
    rooms.feed(self_presence())
    rooms.manager.peer("i1", {"t": "held", "room": ROOM, "bot": "echo", "joined": True})
    assert rooms.state()["state"] == "joined"


async def test_another_instances_join_answered_here_brings_no_history_nor_subject_to_the_bot() -> None:
    rooms = Shared(join=[{"jid": ROOM, "bot": "echo", "nick": "Echo", "history": 3}])
    rooms.up()
    rooms.feed(self_presence())
    delay = '<delay xmlns="urn:xmpp:delay" stamp="2024-01-01T00:00:00Z"/>'
    subject = f'<message type="groupchat" from="{ROOM}/alice" to="{ME}"><subject>Plans</subject></message>'
    assert isinstance(rooms.feed(groupchat("alice", extra=delay)), RoomStanza)  # its own join: the history asked
    assert rooms.feed(subject) is TAKEN
    rooms.feed(self_presence())  # another instance joined as the same occupant: the room answers here again
    assert rooms.feed(groupchat("alice", extra=delay)) is TAKEN
    assert rooms.feed(subject) is TAKEN
    assert isinstance(rooms.feed(groupchat("alice")), RoomStanza)
    assert isinstance(rooms.feed(subject), RoomStanza)  # a real change now
    assert rooms.told.count({"t": "held", "room": ROOM, "bot": "echo", "joined": True}) == 2


async def test_rooms_added_or_removed_on_one_instance_are_passed_on(tmp_path: Path) -> None:
    a, b = Shared(), Shared()
    b.manager._state_dir = str(tmp_path)
    b.manager.open()
    a.up()
    b.up()
    other = "ops@conference.localhost"
    a.manager.add(other, "echo", nick="Ops", history=2)
    (put,) = [note for note in a.told if note["t"] == "put"]
    b.manager.peer("a", put)
    assert b.state(other)["wanted_nick"] == "Ops" and b.state(other)["source"] == "api"
    assert b.last().to == f"{other}/Ops"  # it joins too: whichever gets the self-presence holds it
    assert Store(str(tmp_path)).load()[0].room == other  # and keeps it
    b.manager.peer("a", put)  # the same again: nothing new
    a.manager.remove(other, "echo")
    b.manager.peer("a", a.told[-1])
    assert [r["room"] for r in b.manager.listing()] == [ROOM]
    assert Store(str(tmp_path)).load() == []
    # a room of the config file is never changed by a note
    b.manager.peer("a", {**put, "room": ROOM, "nick": "Other"})
    b.manager.peer("a", {"t": "delete", "room": ROOM, "bot": "echo"})
    assert b.state(ROOM)["wanted_nick"] == "Echo" and b.state(ROOM)["source"] == "config"


async def test_a_new_instance_is_told_the_rooms_held_and_added() -> None:
    rooms = Shared()
    rooms.up()
    rooms.feed(self_presence())
    rooms.manager.add("ops@conference.localhost", "echo")
    rooms.told.clear()
    rooms.manager.peer("new", {"t": "hello"})
    assert {(n["t"], n["room"]) for n in rooms.told} == {("held", ROOM), ("put", "ops@conference.localhost")}


@pytest.mark.parametrize(
    "note",
    [
        {},
        {"t": "held"},
        {"t": "held", "room": "not a room", "bot": "echo", "joined": True},
        {"t": "put", "room": ROOM, "bot": "a/b", "nick": "", "password": "", "history": 0, "source": "api"},
        {"t": "put", "room": "x@conference.localhost", "bot": "echo", "history": "many", "source": "api",
         "nick": "", "password": ""},
    ],
)  # fmt: skip
async def test_a_note_that_is_not_one_raises_and_changes_nothing(note: dict[str, Any]) -> None:
    rooms = Shared()
    rooms.up()
    before = rooms.manager.listing()
    with pytest.raises((KeyError, ValueError, TypeError)):
        rooms.manager.peer("i1", note)
    assert rooms.manager.listing() == before


# -- the README --------------------------------------------------------------------------------------------------------
def test_the_readme_documents_group_chats() -> None:
    import re

    import tomlkit

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Group chats\n", 1)[1].split("\n## ", 1)[0]
    # its configuration example is a valid [rooms] section, with every key
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    raw = tomlkit.parse(example.group(1)).unwrap()
    rooms = from_dict(
        {"component": {"jid": DOMAIN, "secret": "s"}, "bot": {"url": "http://x.example/"}, **raw}, env={}
    ).rooms
    assert rooms.join[0].nick == "Echo" and rooms.accept_invites == ("echo",)
    assert set(raw["rooms"]) == {f.name for f in RoomsSection.__dataclass_fields__.values()}
    assert set(raw["rooms"]["join"][0]) == {"jid", "bot", "nick", "password", "history"}
    # the JSON the bot receives, and what it may answer
    for said in ('"event"', '"room"', '"nick"', '"real_jid"', "`inviter`", "`joining`", '{"room": "ops@'):
        assert said in section, said
    for route in ("PUT", "DELETE", "GET /v1/rooms"):
        assert route in section
