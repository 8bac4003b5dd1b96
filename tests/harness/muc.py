"""A real user in a group chat (XEP-0045), with raw stanzas over the harness's slixmpp client: enter a room, create
and configure one, kick, destroy, invite. No pytest in here."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

from slixmpp.stanza import Message, Presence

from tests.harness.clients import WAIT, Client

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"
NS_CONFERENCE = "jabber:x:conference"


class Refused(RuntimeError):
    """The room refused to let the user in; `condition` says why."""

    def __init__(self, condition: str) -> None:
        super().__init__(condition)
        self.condition = condition


def codes(presence: Presence) -> set[str]:
    x = presence.xml.find(f"{{{NS_MUC_USER}}}x")
    return set() if x is None else {s.get("code", "") for s in x.findall(f"{{{NS_MUC_USER}}}status")}


def condition(stanza: Presence | Message) -> str:
    return str(stanza["error"]["condition"])


async def enter(client: Client, room: str, nick: str, password: str = "", history: bool = False) -> set[str]:
    """Join `room` as `nick`; the status codes of the self-presence (201: the room is new). Raises Refused."""
    done: asyncio.Future[Presence] = asyncio.get_running_loop().create_future()
    occupant = f"{room}/{nick}"

    def on_presence(presence: Presence) -> None:
        answered = presence["type"] == "error" or "110" in codes(presence)
        if str(presence["from"]) == occupant and answered and not done.done():
            done.set_result(presence)

    client.add_event_handler("presence", on_presence)
    try:
        presence = client.make_presence(pto=occupant)
        x = ET.SubElement(presence.xml, f"{{{NS_MUC}}}x")
        if not history:
            ET.SubElement(x, f"{{{NS_MUC}}}history", {"maxchars": "0"})
        if password:
            ET.SubElement(x, f"{{{NS_MUC}}}password").text = password
        presence.send()
        answer = await asyncio.wait_for(done, WAIT)
    finally:
        client.del_event_handler("presence", on_presence)
    if answer["type"] == "error":
        raise Refused(condition(answer))
    return codes(answer)


def _form(**fields: str) -> ET.Element:
    x = ET.Element(f"{{{NS_DATA}}}x", {"type": "submit"})
    for var, value in {"FORM_TYPE": "http://jabber.org/protocol/muc#roomconfig", **fields}.items():
        field = ET.SubElement(x, f"{{{NS_DATA}}}field", {"var": var})
        ET.SubElement(field, f"{{{NS_DATA}}}value").text = value
    return x


async def _iq_set(client: Client, to: str, query: ET.Element) -> None:
    iq = client.make_iq_set(ito=to)
    iq.xml.append(query)
    await iq.send(timeout=WAIT)  # type: ignore[no-untyped-call]


async def configure(client: Client, room: str, **fields: str) -> None:
    """Submit the room's configuration: `fields` (muc#roomconfig_... = value), or none (an instant room)."""
    query = ET.Element(f"{{{NS_MUC_OWNER}}}query")
    query.append(_form(**fields) if fields else ET.Element(f"{{{NS_DATA}}}x", {"type": "submit"}))
    await _iq_set(client, room, query)


async def create(client: Client, room: str, nick: str = "alice", **fields: str) -> None:
    """Create `room` (the user is its owner), configured with `fields`, and stay in it."""
    made = await enter(client, room, nick)
    assert "201" in made, f"{room} already existed"
    await configure(client, room, **fields)


async def kick(client: Client, room: str, nick: str, reason: str = "out") -> None:
    query = ET.Element(f"{{{NS_MUC_ADMIN}}}query")
    item = ET.SubElement(query, f"{{{NS_MUC_ADMIN}}}item", {"nick": nick, "role": "none"})
    ET.SubElement(item, f"{{{NS_MUC_ADMIN}}}reason").text = reason
    await _iq_set(client, room, query)


async def destroy(client: Client, room: str, reason: str = "bye") -> None:
    query = ET.Element(f"{{{NS_MUC_OWNER}}}query")
    gone = ET.SubElement(query, f"{{{NS_MUC_OWNER}}}destroy")
    ET.SubElement(gone, f"{{{NS_MUC_OWNER}}}reason").text = reason
    await _iq_set(client, room, query)


def invite_direct(client: Client, to: str, room: str, reason: str = "", password: str = "") -> None:
    """XEP-0249: from the user to `to`."""
    message = client.make_message(mto=to)
    attrs = {"jid": room} | ({"reason": reason} if reason else {}) | ({"password": password} if password else {})
    ET.SubElement(message.xml, f"{{{NS_CONFERENCE}}}x", attrs)
    message.send()


def invite_mediated(client: Client, to: str, room: str, reason: str = "") -> None:
    """XEP-0045 7.8.2: through the room."""
    message = client.make_message(mto=room)
    x = ET.SubElement(message.xml, f"{{{NS_MUC_USER}}}x")
    invite = ET.SubElement(x, f"{{{NS_MUC_USER}}}invite", {"to": to})
    if reason:
        ET.SubElement(invite, f"{{{NS_MUC_USER}}}reason").text = reason
    message.send()


def set_subject(client: Client, room: str, subject: str) -> None:
    message = client.make_message(mto=room, mtype="groupchat")
    message["subject"] = subject
    message.send()


async def messages(client: Client, within: float, **match: Any) -> list[Message]:
    """The messages `client` receives in the next `within` seconds whose fields equal `match` (e.g. type=...)."""
    out: list[Message] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + within
    while (left := end - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(client.messages.get(), left)
        except TimeoutError:
            break
        if all(str(message[key]) == str(value) for key, value in match.items()):
            out.append(message)
    return out


async def message_from(client: Client, sender: str, timeout: float = WAIT, body: str | None = None) -> Message:
    """The next message from `sender` (with `body`, when given); the others are skipped."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        message = await asyncio.wait_for(client.messages.get(), max(0.01, end - loop.time()))
        if str(message["from"]) == sender and (body is None or message["body"] == body):
            return message
