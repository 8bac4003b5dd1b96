"""Pure: the XEP-0045 (MUC), XEP-0249 (direct invitations) and XEP-0410 (self-ping) stanzas the room manager
writes and reads. No state, no I/O."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from component.stanza import Stanza, bare, build
from component.xml import NS_STANZAS, STANZA_NAMESPACES, escape_text, split_tag

NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_CONFERENCE = "jabber:x:conference"  # XEP-0249
NS_DATA = "jabber:x:data"
NS_PING = "urn:xmpp:ping"
NS_DELAY = "urn:xmpp:delay"
NS_LEGACY_DELAY = "jabber:x:delay"  # XEP-0091, still sent by some services beside XEP-0203's

# status codes (XEP-0045 15.6.2)
SELF = "110"
CREATED = "201"
NICK_ASSIGNED = "210"
NEW_NICK = "303"
BANNED = "301"
KICKED = "307"
AFFILIATION_CHANGED = "321"
MEMBERS_ONLY = "322"
SHUTDOWN = "332"
TECHNICAL = "333"


# -- writing ---------------------------------------------------------------------------------------------------
def join(room: str, nick: str, real_jid: str, password: str = "", history: int = 0) -> Stanza:
    """The join presence: history suppressed (maxchars='0') unless `history` old messages are wanted."""
    limit = 'maxchars="0"' if history <= 0 else f'maxstanzas="{history}"'
    secret = f"<password>{escape_text(password)}</password>" if password else ""
    return build("presence", f"{room}/{nick}", real_jid, payload=f'<x xmlns="{NS_MUC}"><history {limit}/>{secret}</x>')


def leave(room: str, nick: str, real_jid: str, status: str = "") -> Stanza:
    payload = f"<status>{escape_text(status)}</status>" if status else ""
    return build("presence", f"{room}/{nick}", real_jid, "unavailable", payload=payload)


def instant_config(room: str, real_jid: str, id_: str) -> Stanza:
    """Accept the default configuration of a room the bot has just created (XEP-0045 10.1.2, an instant room):
    until then the room is locked and nobody else may enter."""
    form = f'<query xmlns="{NS_MUC_OWNER}"><x xmlns="{NS_DATA}" type="submit"/></query>'
    return build("iq", room, real_jid, "set", id_, payload=form)


def self_ping(room: str, nick: str, real_jid: str, id_: str) -> Stanza:
    """XEP-0410: a ping from the occupant to itself; the room answers whether the occupant is still there."""
    return build("iq", f"{room}/{nick}", real_jid, "get", id_, payload=f'<ping xmlns="{NS_PING}"/>')


# -- reading ---------------------------------------------------------------------------------------------------
def resource(jid: str) -> str:
    """'room@muc/nick' -> 'nick'; '' without one."""
    return jid.partition("/")[2]


def local_part(jid: str) -> str:
    """'Echo@bot.example/r' -> 'echo': a bot's name, folded as the routes fold it."""
    address = bare(jid)
    return address.rpartition("@")[0].lower() if "@" in address else ""


def error_condition(elem: ET.Element) -> str:
    """The defined condition of a stanza's <error>, or '' when it has none."""
    for child in elem:
        if split_tag(child.tag) in ((ns, "error") for ns in STANZA_NAMESPACES):
            for condition in child:
                ns, name = split_tag(condition.tag)
                if ns == NS_STANZAS and name != "text":
                    return name
    return ""


def error_text(elem: ET.Element) -> str:
    for child in elem:
        if split_tag(child.tag)[1] == "error":
            found = child.find(f"{{{NS_STANZAS}}}text")
            return (found.text or "") if found is not None else ""
    return ""


@dataclass(frozen=True, slots=True)
class MucPresence:
    """What a presence from a room says about one occupant."""

    codes: frozenset[str]
    jid: str | None = None  # the occupant's real JID, when the room shows it
    affiliation: str | None = None
    role: str | None = None
    new_nick: str | None = None  # with 303: the nick the occupant now has
    actor: str | None = None  # who kicked or banned
    reason: str | None = None
    destroyed: bool = False
    destroy_reason: str | None = None
    is_muc: bool = False  # it carries <x xmlns='...muc#user'>


def read_presence(elem: ET.Element) -> MucPresence:
    x = elem.find(f"{{{NS_MUC_USER}}}x")
    if x is None:
        return MucPresence(frozenset())
    codes = frozenset(s.get("code", "") for s in x.findall(f"{{{NS_MUC_USER}}}status"))
    item = x.find(f"{{{NS_MUC_USER}}}item")
    jid = affiliation = role = new_nick = actor = reason = None
    if item is not None:
        jid, affiliation, role, new_nick = item.get("jid"), item.get("affiliation"), item.get("role"), item.get("nick")
        actor_elem = item.find(f"{{{NS_MUC_USER}}}actor")
        if actor_elem is not None:
            actor = actor_elem.get("nick") or actor_elem.get("jid")
        reason_elem = item.find(f"{{{NS_MUC_USER}}}reason")
        if reason_elem is not None:
            reason = reason_elem.text or None
    destroy = x.find(f"{{{NS_MUC_USER}}}destroy")
    destroy_reason = None
    if destroy is not None:
        found = destroy.find(f"{{{NS_MUC_USER}}}reason")
        destroy_reason = (found.text or None) if found is not None else None
    return MucPresence(
        codes, jid, affiliation, role, new_nick, actor, reason, destroy is not None, destroy_reason, is_muc=True
    )


@dataclass(frozen=True, slots=True)
class Invite:
    """An invitation to a room: XEP-0249 (`direct`, from the inviter) or XEP-0045 7.8.2 (`mediated`, through the
    room)."""

    room: str
    inviter: str
    how: str  # direct or mediated
    reason: str | None = None
    password: str | None = None


def read_invite(elem: ET.Element, from_: str) -> Invite | None:
    """The invitation a message carries, or None. A room that passes one on (mediated) often adds XEP-0249's
    element beside its own: the room's <invite from=...> names the inviter."""
    x = elem.find(f"{{{NS_MUC_USER}}}x")
    invite = x.find(f"{{{NS_MUC_USER}}}invite") if x is not None else None
    if x is not None and invite is not None:
        reason = invite.find(f"{{{NS_MUC_USER}}}reason")
        password = x.find(f"{{{NS_MUC_USER}}}password")
        return Invite(
            bare(from_),
            invite.get("from", ""),
            "mediated",
            (reason.text or None) if reason is not None else None,
            (password.text or None) if password is not None else None,
        )
    direct = elem.find(f"{{{NS_CONFERENCE}}}x")
    if direct is not None and direct.get("jid"):
        return Invite(
            bare(direct.get("jid", "")), from_, "direct", direct.get("reason") or None, direct.get("password") or None
        )
    return None


def is_delayed(elem: ET.Element) -> bool:
    """True for a message the room sends again (history): it carries a delay stamp."""
    return elem.find(f"{{{NS_DELAY}}}delay") is not None or elem.find(f"{{{NS_LEGACY_DELAY}}}x") is not None


def subject_only(elem: ET.Element) -> bool:
    """A subject change (or the subject sent on joining): a <subject> and no <body> (XEP-0045 8.1)."""
    names = {split_tag(child.tag) for child in elem}
    stanza_children = {name for ns, name in names if ns in STANZA_NAMESPACES}
    return "subject" in stanza_children and "body" not in stanza_children
