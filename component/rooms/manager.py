"""The room manager: the rooms each bot sits in (from [[rooms.join]], the send API and accepted invitations), and
keeping them joined.

A bot `echo` joins `room@conference.example/Nick` from `echo@<component domain>/Nick` (its occupant's real JID)
with history suppressed, and configures a room it creates as an instant room (status 201). It joins again after
every reconnect of the component stream, after a kick, a ban, the room's destruction or its service's shutdown
(with backoff: `rooms.retry_first`, doubling to `rooms.retry_most`), and when a self-ping (XEP-0410, every
`rooms.ping_interval`) finds it gone. A taken nick is retried with a suffix (Nick_2, Nick_3...) at once; every
other refusal (wrong password, banned, members only...) waits its backoff, and says why in the log and in
`GET /v1/rooms`.

Inbound hands it every presence, every message and every iq answer first (`presence`, `message`, `take_iq`): what
belongs to a room of ours stops here or goes to the bot as a `RoomStanza`. Outbound, `outgoing` addresses what
the bots send to a room from their occupant JID, holds it while the bot is not (yet) in the room, and drops the
error stanzas a failing bot would send to an occupant (Prosody kicks an occupant that sends one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

from component.codec import RoomStanza, room_stanza
from component.config import RoomsSection
from component.metrics import Metrics
from component.rooms import protocol
from component.rooms.protocol import MucPresence
from component.rooms.store import Store, Wanted
from component.stanza import Stanza, bare, child_text, new_id, normalise_jid
from component.xml import NS_COMPONENT, escape_attr, serialize

log = logging.getLogger(__name__)

Send = Callable[[Stanza], None]
State = Literal["waiting", "joining", "joined", "elsewhere"]
MAX_SUFFIX = 9  # Nick, Nick_2 ... Nick_9, then the backoff
MAX_ROOMS = 1000  # rooms added through the API or invitations, all bots together
HOLD_MAX = 100  # stanzas held for one room while the bot is not in it
HOLD_SECONDS = 60.0
TAKEN = object()  # what `message` returns for a stanza it consumed

# why a join is refused, by the error's condition (XEP-0045 7.2)
REFUSALS = {
    "not-authorized": "wrong or missing password",
    "forbidden": "the bot is banned from the room",
    "registration-required": "the room is members-only and the bot is not a member",
    "item-not-found": "the room does not exist (or is locked while its creator configures it)",
    "not-allowed": "the service does not let the bot create the room",
    "service-unavailable": "the room is full, or the service refuses the bot",
    "not-acceptable": "the room wants the bot's reserved nick",
    "remote-server-not-found": "the room's service cannot be reached",
    "remote-server-timeout": "the room's service cannot be reached",
    "jid-malformed": "the nick is not valid in this room",
    "gone": "the room was destroyed",
}
# bounded metric labels
CONDITIONS = frozenset((*REFUSALS, "conflict", "kicked", "banned", "destroyed", "shutdown", "left", "timeout"))
STILL_JOINED = ("", "service-unavailable", "feature-not-implemented")  # XEP-0410: the answers of a joined occupant
UNREACHABLE = ("remote-server-not-found", "remote-server-timeout")


class Membership:
    """One bot in one room: what was asked for, and where it stands."""

    __slots__ = (
        "attempts",
        "base_nick",
        "condition",
        "failures",
        "holder",
        "joined_at",
        "last_error",
        "nick",
        "occupants",
        "pending",
        "ping_id",
        "real_jid",
        "reason",
        "replaying",
        "retry_at",
        "state",
        "subject_seen",
        "suffix",
        "timer",
        "wanted",
    )

    def __init__(self, wanted: Wanted, domain: str) -> None:
        self.wanted = wanted
        self.base_nick = wanted.nick or wanted.bot
        self.real_jid = f"{wanted.bot}@{domain}/{self.base_nick}"
        self.nick = self.base_nick  # in use, or being tried
        self.suffix = 1
        self.state: State = "waiting"
        self.reason: str | None = "the XMPP stream is not up yet"
        self.condition: str | None = None
        self.last_error: dict[str, Any] | None = None
        self.failures = 0
        self.attempts = 0
        self.retry_at: float | None = None
        self.joined_at: float | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.holder: str | None = None  # state "elsewhere": the instance that receives the room's stanzas
        self.ping_id: str | None = None
        self.occupants: dict[str, str | None] = {}  # nick -> real JID (None: the room hides it)
        self.subject_seen = False
        self.replaying = False  # the room answers another instance's join here: its history is not news
        self.pending: deque[tuple[float, Stanza]] = deque()

    @property
    def room(self) -> str:
        return self.wanted.room

    @property
    def bot(self) -> str:
        return self.wanted.bot

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


class RoomError(ValueError):
    """A room the API cannot add or remove; `status` is the HTTP status that says so."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class RoomManager:
    def __init__(self, settings: RoomsSection, domain: str, send: Send, metrics: Metrics, state_dir: str = "") -> None:
        self._settings = settings
        self._domain = domain
        self._send = send
        self._metrics = metrics
        self._state_dir = state_dir
        self._store: Store | None = None
        self._rooms: dict[str, dict[str, Membership]] = {}  # room -> bot -> membership
        self._iqs: dict[str, tuple[Membership, str]] = {}  # our iqs waiting for their answer: id -> (who, what)
        self._up = False
        self._stopped = False
        # several active instances (component/cluster.py, Peers): what this one tells the others, as JSON values
        self.share: Callable[[dict[str, Any]], None] | None = None
        self.accept_invites = frozenset(settings.accept_invites)
        for entry in settings.join:
            self._add(Wanted(entry.jid, entry.bot, entry.nick or entry.bot, entry.password, entry.history, "config"))
        metrics.rooms_wanted.set_function(lambda: sum(len(bots) for bots in self._rooms.values()))
        metrics.rooms_joined.set_function(lambda: sum(m.state == "joined" for m in self.memberships()))

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def open(self) -> None:
        """Read the rooms kept by an earlier run (ConfigError when the state dir cannot be opened)."""
        self._store = Store(self._state_dir)
        for wanted in self._store.load():
            if self.find(wanted.room, wanted.bot) is None:  # the config file wins over what was kept
                self._add(wanted)

    def stream_up(self) -> None:
        """The component stream is (back) up: join every room now."""
        self._up = True
        for m in self.memberships():
            m.nick, m.suffix = m.base_nick, 1
            self._join(m)

    def stream_down(self) -> None:
        self._up = False
        self._iqs.clear()
        for m in self.memberships():
            m.cancel()
            m.state, m.reason, m.retry_at = "waiting", "the XMPP stream is down", None
            m.occupants.clear()

    def stop(self) -> None:
        """Leave every room (the presences go out before the stream closes) and stop every timer."""
        self._stopped = True
        for m in self.memberships():
            m.cancel()
            # alone, it leaves every room it is in or joining; with other instances, only those it holds: the
            # occupant of a room held through another one (or perhaps joining through it) is theirs too
            if self._up and (m.state == "joined" or (m.state == "joining" and self.share is None)):
                self._send(protocol.leave(m.room, m.nick, m.real_jid))
                self._tell(m, False)
            m.state, m.reason = "waiting", "the component stopped"
        if self._store is not None:
            self._store.close()

    def memberships(self) -> list[Membership]:
        return [m for bots in self._rooms.values() for m in bots.values()]

    def find(self, room: str, bot: str) -> Membership | None:
        bots = self._rooms.get(room)
        return None if bots is None else bots.get(bot)

    def _add(self, wanted: Wanted) -> Membership:
        m = Membership(wanted, self._domain)
        self._rooms.setdefault(wanted.room, {})[wanted.bot] = m
        return m

    # -- the API ----------------------------------------------------------------------------------------------------
    @property
    def kept(self) -> bool:
        return self._store is not None and self._store.kept

    def add(self, room: str, bot: str, nick: str = "", password: str = "", history: int = 0) -> bool:
        """Have `bot` sit in `room` (kept across restarts when there is a state dir); True when it is new.
        RoomError when the room or the bot cannot be, or the room is in the config file."""
        room, bot = self.check_room(room), self.check_bot(bot)
        wanted = Wanted(room, bot, nick or bot, password, history, "api")
        existing = self.find(room, bot)
        if self._adopt(wanted, "its settings changed"):
            self._share_put(wanted)
        return existing is None

    def _adopt(self, wanted: Wanted, why: str, leave: bool = True) -> bool:
        """Have `wanted` (added through the API or an invitation, here or on another instance) replace what this bot
        had in this room, leaving it for `why` when it changed; True unless it was there already. RoomError when
        the room is in the config file, or one room too many."""
        existing = self.find(wanted.room, wanted.bot)
        if existing is not None and existing.wanted.source == "config":
            raise RoomError(
                f"{wanted.bot} sits in {wanted.room} by the config file ([[rooms.join]]): change it there", 409
            )
        if existing is None and self._count_added() >= MAX_ROOMS:
            raise RoomError(f"already {MAX_ROOMS} rooms added through the API or invitations", 409)
        if existing is not None:
            if existing.wanted == wanted:
                return False
            self._remove(existing, why, leave)
        self._put(wanted)
        return True

    def remove(self, room: str, bot: str | None) -> list[str]:
        """Have the bots leave `room` (`bot`, or the only one there); the bots that left. RoomError when none is
        there or the room is in the config file."""
        room = self.check_room(room)
        bots = self._rooms.get(room, {})
        if bot is None:
            if len(bots) != 1:
                raise RoomError(f"name the bot to remove from {room} (?bot=...)", 400, "bot")
            bot = next(iter(bots))
        bot = self.check_bot(bot)
        m = bots.get(bot)
        if m is None:
            raise RoomError(f"{bot} is not in {room}", 404)
        if m.wanted.source == "config":
            raise RoomError(f"{bot} sits in {room} by the config file ([[rooms.join]]): remove it there", 409)
        self._forget(m, "removed through the API")
        if self.share is not None:
            self.share({"t": "delete", "room": room, "bot": bot})
        return [bot]

    def listing(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        wall = time.time()
        out = []
        for m in self.memberships():
            retry = None if m.retry_at is None or m.state != "waiting" else max(0.0, round(m.retry_at - now, 3))
            since = None if m.joined_at is None or m.state != "joined" else round(wall - (now - m.joined_at), 3)
            out.append(
                {
                    "room": m.room,
                    "bot": m.bot,
                    "nick": m.nick,
                    "wanted_nick": m.base_nick,
                    "source": m.wanted.source,
                    "joined": m.state in ("joined", "elsewhere"),
                    "state": m.state,
                    "via": m.holder if m.state == "elsewhere" else None,
                    "reason": None if m.state == "joined" else m.reason,
                    "condition": None if m.state == "joined" else m.condition,
                    "retry_in": retry,
                    "joined_since": since,
                    "attempts": m.attempts,
                    "last_error": m.last_error,
                }
            )
        return out

    def check_room(self, room: str) -> str:
        try:
            jid = normalise_jid(room)
        except ValueError as exc:
            raise RoomError(f"not a valid room JID: {room!r} ({exc})", 400, "room") from None
        if "/" in jid or "@" not in jid:
            raise RoomError(f"expected a room's bare JID such as 'dev@conference.example.com': {room!r}", 400, "room")
        if jid.rpartition("@")[2] == self._domain:
            raise RoomError(f"a room of {self._domain} itself is one of the bots", 400, "room")
        return jid

    def check_bot(self, bot: str) -> str:
        try:
            jid = normalise_jid(f"{bot}@{self._domain}")
        except ValueError as exc:
            raise RoomError(f"not a valid bot name: {bot!r} ({exc})", 400, "bot") from None
        if not bot or "/" in bot or "@" in bot:
            raise RoomError(f"expected the local part of a bot JID, such as 'echo', got {bot!r}", 400, "bot")
        return jid.rpartition("@")[0]

    def _count_added(self) -> int:
        return sum(m.wanted.source != "config" for m in self.memberships())

    def _put(self, wanted: Wanted) -> Membership:
        m = self._add(wanted)
        if self._store is not None:
            self._store.put(wanted, time.time())
        if not self._store or not self._store.kept:
            log.warning("%s in %s: kept in memory only (no state.dir): forgotten at exit", wanted.bot, wanted.room)
        if self._up and not self._stopped:
            self._join(m)
        return m

    def _forget(self, m: Membership, why: str, leave: bool = True) -> None:
        """`_remove`, and out of the kept rooms too."""
        self._remove(m, why, leave)
        if self._store is not None:
            self._store.delete(m.room, m.bot)

    def _remove(self, m: Membership, why: str, leave: bool = True) -> None:
        m.cancel()
        if leave and m.state != "waiting" and self._up:
            self._send(protocol.leave(m.room, m.nick, m.real_jid))
            if m.state == "joined":
                self._tell(m, False)
        log.info("%s leaves %s: %s", m.bot, m.room, why)
        bots = self._rooms[m.room]
        del bots[m.bot]
        if not bots:
            del self._rooms[m.room]

    # -- joining -------------------------------------------------------------------------------------------------
    def _join(self, m: Membership) -> None:
        m.cancel()
        m.retry_at = None
        if not self._up or self._stopped:
            m.state = "waiting"
            return
        m.state, m.holder = "joining", None
        m.subject_seen = m.replaying = False
        m.occupants.clear()
        m.attempts += 1
        self._metrics.room_joins.inc()
        self._send(protocol.join(m.room, m.nick, m.real_jid, m.wanted.password, m.wanted.history))
        m.timer = asyncio.get_running_loop().call_later(self._settings.timeout, self._join_timed_out, m)

    def _join_timed_out(self, m: Membership) -> None:
        m.timer = None
        self._failed(m, f"no answer to the join within {self._settings.timeout:g} s", "timeout")

    def _joined(self, m: Membership, nick: str, presence: MucPresence) -> None:
        m.nick = nick
        if m.state != "joined":
            m.cancel()
            m.state, m.reason, m.condition, m.retry_at = "joined", None, None, None
            m.joined_at = time.monotonic()
            note = "" if nick == m.base_nick else f" ({m.base_nick!r} is taken)"
            log.info("%s joined %s as %r%s", m.bot, m.room, nick, note)
            self._schedule_ping(m)
            self._flush(m)
        elif self.share is not None:
            # another instance's join of the same occupant, answered here: the room sends its history and subject
            # again, which are not news
            m.subject_seen, m.replaying = False, True
        self._tell(m, True)
        if protocol.CREATED in presence.codes:  # a new room, locked until configured: accept the defaults
            iq_id = new_id()
            self._iqs[iq_id] = (m, "config")
            self._send(protocol.instant_config(m.room, m.real_jid, iq_id))
            log.info("%s created %s: configured as an instant room", m.bot, m.room)

    def _failed(self, m: Membership, reason: str, condition: str, at_once: bool = False) -> None:
        """Not in the room, for `reason`: join again after the backoff (or at once)."""
        m.cancel()
        m.failures += 1
        s = self._settings
        delay = 0.0 if at_once else min(s.retry_most, s.retry_first * 2 ** min(m.failures - 1, 32))
        m.state, m.reason, m.condition = "waiting", reason, condition
        m.last_error = {"condition": condition, "reason": reason, "at": round(time.time(), 3)}
        m.occupants.clear()
        m.retry_at = time.monotonic() + delay
        self._metrics.room_failures.labels(condition if condition in CONDITIONS else "other").inc()
        log.warning("%s in %s: %s; joining again in %g s", m.bot, m.room, reason, delay)
        m.timer = asyncio.get_running_loop().call_later(delay, self._retry, m)

    def _retry(self, m: Membership) -> None:
        m.timer = None
        m.nick, m.suffix = m.base_nick, 1
        self._join(m)

    def _refused(self, m: Membership, condition: str, text: str) -> None:
        """A presence error from the room: the join was refused (or the bot is not in the room after all)."""
        if condition == "conflict" and m.suffix < MAX_SUFFIX:
            taken = m.nick
            m.suffix += 1
            m.nick = f"{m.base_nick}_{m.suffix}"
            m.last_error = {"condition": "conflict", "reason": f"nick {taken!r} is taken", "at": round(time.time(), 3)}
            self._metrics.room_failures.labels("conflict").inc()
            log.warning("%s in %s: the nick %r is taken; trying %r", m.bot, m.room, taken, m.nick)
            self._join(m)
            return
        if condition == "conflict":
            reason = f"the nicks {m.base_nick!r} to {m.nick!r} are all taken"
        else:
            reason = REFUSALS.get(condition, f"the room refused the bot ({condition or 'no condition given'})")
        self._failed(m, reason + (f": {text}" if text else ""), condition or "other")

    def _exited(self, m: Membership, presence: MucPresence, status: str) -> None:
        """The bot's own unavailable presence: it is out of the room (or only changed its nick)."""
        codes = presence.codes
        if protocol.NEW_NICK in codes and presence.new_nick:
            m.nick = presence.new_nick
            return
        why = f" ({presence.reason})" if presence.reason else ""
        by = f" by {presence.actor}" if presence.actor else ""
        if presence.destroyed:
            said = f" ({presence.destroy_reason})" if presence.destroy_reason else ""
            reason, condition = f"the room was destroyed{said}", "destroyed"
        elif protocol.BANNED in codes:
            reason, condition = f"banned{by}{why}", "banned"
        elif protocol.KICKED in codes:
            reason, condition = f"kicked{by}{why}", "kicked"
        elif protocol.SHUTDOWN in codes:
            reason, condition = "the room's service is shutting down", "shutdown"
        elif protocol.AFFILIATION_CHANGED in codes or protocol.MEMBERS_ONLY in codes:
            reason, condition = "removed: the room is members-only and the bot is not a member", "left"
        else:
            reason, condition = f"out of the room{f' ({status})' if status else ''}", "left"
        self._failed(m, reason, condition)

    # -- self-ping (XEP-0410) --------------------------------------------------------------------------------------
    def _schedule_ping(self, m: Membership) -> None:
        m.cancel()
        m.timer = asyncio.get_running_loop().call_later(self._settings.ping_interval, self._ping, m)

    def _ping(self, m: Membership) -> None:
        m.cancel()
        if m.state != "joined":
            return
        iq_id = new_id()
        self._iqs[iq_id] = (m, "ping")
        m.ping_id = iq_id
        self._send(protocol.self_ping(m.room, m.nick, m.real_jid, iq_id))
        m.timer = asyncio.get_running_loop().call_later(self._settings.timeout, self._ping_timed_out, m, iq_id)

    def _ping_timed_out(self, m: Membership, iq_id: str) -> None:
        m.timer = None
        self._iqs.pop(iq_id, None)
        self._lost(m, f"no answer to the self-ping within {self._settings.timeout:g} s", "timeout")

    def _pinged(self, m: Membership, stanza: Stanza, element: ET.Element) -> None:
        if m.state != "joined" or stanza.id != m.ping_id:
            return  # an answer to a ping of an earlier join
        m.ping_id = None
        condition = protocol.error_condition(element) if stanza.type == "error" else ""
        if condition in STILL_JOINED:
            m.failures = 0  # in the room a whole ping interval: the next refusal starts the backoff afresh
            self._schedule_ping(m)
            self._tell(m, True)
        elif condition in UNREACHABLE:
            log.warning("%s in %s: the self-ping says the room's service cannot be reached now", m.bot, m.room)
            self._schedule_ping(m)
        else:
            self._lost(m, f"the self-ping says the bot is no longer in the room ({condition})", condition)

    def _lost(self, m: Membership, reason: str, condition: str) -> None:
        """Found out of the room without being told (a silent drop): join again at once."""
        self._metrics.room_lost.inc()
        m.last_error = {"condition": condition, "reason": reason, "at": round(time.time(), 3)}
        log.warning("%s in %s: %s; joining again", m.bot, m.room, reason)
        self._join(m)

    # -- what inbound hands over ------------------------------------------------------------------------------------
    def take_iq(self, stanza: Stanza, element: ET.Element) -> bool:
        """True when `stanza` answers one of our iqs (a self-ping, an instant room's configuration)."""
        found = self._iqs.pop(stanza.id or "", None)
        if found is None:
            return False
        m, purpose = found
        if self.find(m.room, m.bot) is not m:
            return True  # the bot has left that room since
        if purpose == "ping":
            self._pinged(m, stanza, element)
        elif stanza.type == "error":
            condition = protocol.error_condition(element)
            log.warning("%s could not configure %s as an instant room (%s)", m.bot, m.room, condition)
        return True

    def _membership_of(self, stanza: Stanza) -> Membership | None:
        """The membership a stanza from a room to a bot belongs to."""
        if not self._rooms:  # no room at all (the usual case): no JID folded for every stanza
            return None
        bots = self._rooms.get(bare(stanza.from_).lower())
        if bots is None:
            return None
        return bots.get(protocol.local_part(stanza.to))

    def presence(self, stanza: Stanza, element: ET.Element) -> bool:
        """A presence from a room a bot sits in (or tries to): True when it was ours to handle."""
        m = self._membership_of(stanza)
        if m is None:
            return False
        nick = protocol.resource(stanza.from_)
        presence = protocol.read_presence(element)
        if stanza.type == "error":
            if m.state == "joining" or (m.state == "joined" and nick == m.nick):
                self._refused(m, protocol.error_condition(element), protocol.error_text(element))
            return True
        if not nick:
            return True
        # status 110 marks the bot's own presence; ejabberd leaves it out of some (a destruction's): no one else
        # can hold the bot's nick while it is in the room, or trying it
        own = protocol.SELF in presence.codes or nick == m.nick
        if stanza.type == "unavailable":
            if own and m.state != "waiting":
                self._exited(m, presence, child_text(element, "status") or "")
            else:
                real = m.occupants.pop(nick, None)
                if protocol.NEW_NICK in presence.codes and presence.new_nick:
                    m.occupants[presence.new_nick] = real
            return True
        if stanza.type is None:
            if own:
                self._joined(m, nick, presence)
            else:
                m.occupants[nick] = presence.jid
        return True

    def message(self, stanza: Stanza, element: ET.Element | None) -> RoomStanza | object | None:
        """A message, before it goes to the bot: a `RoomStanza` to forward, TAKEN when it stops here (the bot's own
        reflected message, history, the subject sent on joining, a message from a room the bot is not in), or None
        when it is no room's (the normal flow takes it)."""
        m = self._membership_of(stanza)
        if stanza.type == "error":
            if m is None:
                return None
            if m.state == "joined":  # our message was refused: are we still in the room? ask now
                self._ping(m)
            return TAKEN
        if m is None:
            return self._maybe_invite(stanza, element)
        if element is None:
            element = ET.fromstring(stanza.xml)
        nick = protocol.resource(stanza.from_)
        if stanza.type == "groupchat":
            if m.state != "joined":
                self._metrics.room_dropped.labels("not_joined").inc()
                return TAKEN
            if protocol.subject_only(element):
                if not m.subject_seen:  # the subject the room sends on joining, after the history: not a change
                    m.subject_seen, m.replaying = True, False
                    return TAKEN
                return room_stanza(stanza, "subject", m.room, nick=nick or None, real_jid=m.occupants.get(nick))
            if not nick:  # the room's own notices (configuration changes, "this room is not anonymous")
                self._metrics.room_dropped.labels("room_notice").inc()
                return TAKEN
            if self._ours(m.room, nick):
                self._metrics.room_dropped.labels("own").inc()
                return TAKEN
            if (m.wanted.history <= 0 or m.replaying) and protocol.is_delayed(element):
                self._metrics.room_dropped.labels("history").inc()
                return TAKEN
            return room_stanza(stanza, "groupchat", m.room, nick=nick, real_jid=m.occupants.get(nick))
        invite = self._maybe_invite(stanza, element)
        if invite is not None:
            return invite
        if not nick or self._ours(m.room, nick):  # from the room itself, or one of our bots: never a conversation
            self._metrics.room_dropped.labels("room_notice" if not nick else "own").inc()
            return TAKEN
        return room_stanza(stanza, "private", m.room, nick=nick, real_jid=m.occupants.get(nick))

    def _ours(self, room: str, nick: str) -> bool:
        """True when `nick` is one of our bots in `room` (their messages would loop between them)."""
        return any(m.nick == nick for m in self._rooms.get(room, {}).values())

    def _maybe_invite(self, stanza: Stanza, element: ET.Element | None) -> RoomStanza | None:
        xml = stanza.xml
        if protocol.NS_CONFERENCE not in xml and "<invite" not in xml:
            return None
        if element is None:
            element = ET.fromstring(xml)
        invite = protocol.read_invite(element, stanza.from_)
        if invite is None:
            return None
        bot = protocol.local_part(stanza.to)
        joining = self._invited(bot, invite)
        return room_stanza(stanza, "invite", invite.room, invite=invite, joining=joining)

    def _invited(self, bot: str, invite: protocol.Invite) -> bool:
        """Join on an invitation when the bot accepts them; True when it is (or already was) joining."""
        if bot not in self.accept_invites or self._stopped:
            log.info("%s is invited to %s by %s (not in rooms.accept_invites)", bot, invite.room, invite.inviter)
            return False
        try:
            room = self.check_room(invite.room)
        except RoomError as exc:
            log.warning("%s is invited by %s to a room it cannot join: %s", bot, invite.inviter, exc)
            return False
        m = self.find(room, bot)
        if m is not None:
            if m.state == "waiting" and self._up:
                self._join(m)
            return True
        if self._count_added() >= MAX_ROOMS:
            log.warning("%s is invited to %s: refused, already %d rooms", bot, room, MAX_ROOMS)
            return False
        log.info("%s accepts the invitation of %s to %s", bot, invite.inviter, room)
        wanted = Wanted(room, bot, bot, invite.password or "", 0, "invite")
        self._put(wanted)
        self._share_put(wanted)
        return True

    # -- several active instances ------------------------------------------------------------------------------
    # With ejabberd's bare_source balancing, every stanza from a room reaches the one instance whose slot the room's
    # bare JID falls in, whichever instance sent the join. Every instance joins (as the same occupant,
    # bot@domain/Nick); the one that gets the self-presence holds the room and tells the others through the broker
    # (on joining, after each good self-ping, when its join is answered again, and to an instance that says hello);
    # they stand by, in the state "elsewhere", and join again only when the holder leaves or has said nothing for
    # three ping intervals. Rooms added through the API or an invitation are passed on, so that every instance
    # wants the same rooms.
    def _tell(self, m: Membership, joined: bool) -> None:
        if self.share is not None:
            self.share({"t": "held", "room": m.room, "bot": m.bot, "joined": joined})

    def _share_put(self, wanted: Wanted) -> None:
        if self.share is not None:
            self.share({"t": "put", "room": wanted.room, "bot": wanted.bot, "nick": wanted.nick,
                        "password": wanted.password, "history": wanted.history, "source": wanted.source})  # fmt: skip

    def peer(self, instance: str, note: dict[str, Any]) -> None:
        """What instance `instance` told this one (ValueError, KeyError or TypeError for a note that is not one)."""
        kind = note["t"]
        if kind == "hello":  # a new instance: what it needs to know
            for each in self.memberships():
                if each.wanted.source != "config":
                    self._share_put(each.wanted)
                if each.state == "joined":
                    self._tell(each, True)
            return
        room, bot = self.check_room(str(note["room"])), self.check_bot(str(note["bot"]))
        m = self.find(room, bot)
        if kind == "held":
            if m is not None and self._up and not self._stopped:
                self._held_elsewhere(m, instance, bool(note["joined"]))
        elif kind == "put":
            source = str(note["source"])
            wanted = Wanted(room, bot, str(note["nick"]) or bot, str(note["password"]), int(note["history"]), source)
            if source not in ("api", "invite") or self._stopped:
                return
            with contextlib.suppress(RoomError):  # a room of the config file here, or one too many: left as it is
                if self._adopt(wanted, f"its settings changed on instance {instance}", leave=False):
                    log.info("%s in %s: added on instance %s", bot, room, instance)
        elif kind == "delete" and m is not None and m.wanted.source != "config":
            self._forget(m, f"removed on instance {instance}", leave=False)

    def _held_elsewhere(self, m: Membership, instance: str, joined: bool) -> None:
        if not joined:
            if m.state == "elsewhere" and m.holder == instance:
                log.info("%s in %s: instance %s left the room; joining", m.bot, m.room, instance)
                m.holder = None
                self._join(m)
            return
        if m.state == "joined":
            return  # the room's stanzas reach this instance: that is the evidence that counts
        m.cancel()
        if m.state != "elsewhere" or m.holder != instance:
            log.info("%s in %s: in the room through instance %s, which receives the room's stanzas", m.bot, m.room,
                     instance)  # fmt: skip
        m.state, m.holder, m.retry_at = "elsewhere", instance, None
        m.reason = f"in the room through instance {instance}, which receives the room's stanzas"
        m.condition, m.failures = None, 0
        silent = 3 * self._settings.ping_interval + self._settings.timeout
        m.timer = asyncio.get_running_loop().call_later(silent, self._holder_silent, m)
        self._flush(m)

    def _holder_silent(self, m: Membership) -> None:
        m.timer = None
        log.info("%s in %s: instance %s has not said it holds the room for a while; joining", m.bot, m.room, m.holder)
        m.holder = None
        self._join(m)

    # -- what the bots send ---------------------------------------------------------------------------------------
    def outgoing(self, stanza: Stanza) -> Stanza | None:
        """A stanza a bot sends, addressed for its room: from its occupant JID; held while it is not in the room;
        None when it is not to be sent now."""
        if not self._rooms:  # no room at all (the usual case): every reply goes out as it is
            return stanza
        bots = self._rooms.get(bare(stanza.to).lower())
        if bots is None:
            return stanza
        m = bots.get(protocol.local_part(stanza.from_))
        if m is None:
            return stanza
        if stanza.kind == "message" and stanza.type == "error":
            # a failing bot's error answer: Prosody kicks an occupant that sends one (the failure is logged already)
            self._metrics.room_dropped.labels("error_reply").inc()
            return None
        if stanza.from_ != m.real_jid:
            stanza = with_from(stanza, m.real_jid)
        if stanza.kind == "message" and m.state not in ("joined", "elsewhere"):
            if len(m.pending) >= HOLD_MAX:
                m.pending.popleft()
                self._metrics.room_dropped.labels("held_too_many").inc()
            m.pending.append((time.monotonic(), stanza))
            return None
        return stanza

    def _flush(self, m: Membership) -> None:
        expired = time.monotonic() - HOLD_SECONDS
        while m.pending:
            held_since, stanza = m.pending.popleft()
            if held_since < expired:
                self._metrics.room_dropped.labels("held_too_long").inc()
            else:
                self._send(stanza)


def with_from(stanza: Stanza, from_: str) -> Stanza:
    """`stanza` sent from `from_` instead: its root's `from` attribute rewritten in the text."""
    head_end = stanza.xml.find(">")
    old = f' from="{escape_attr(stanza.from_)}"'
    at = stanza.xml.find(old, 0, head_end)
    if at < 0:  # not written by our serializer: parse it
        elem = ET.fromstring(stanza.xml)
        elem.set("from", from_)
        xml = serialize(elem, NS_COMPONENT, NS_COMPONENT)
    else:
        xml = f'{stanza.xml[:at]} from="{escape_attr(from_)}"{stanza.xml[at + len(old) :]}'
    return Stanza(stanza.kind, stanza.to, from_, stanza.type, stanza.id, stanza.body, xml)
