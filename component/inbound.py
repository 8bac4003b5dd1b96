"""Every stanza from the server passes here first: counted, offered to the notification handlers, then sent on
its way. Answers to the send API's iqs go back to their waiter; what concerns a room a bot sits in goes to the
room manager (MUC presence, self-ping answers, a room's errors), which hands back the room messages to forward
(groupchat, private messages from occupants, subject changes, invitations) and keeps the rest (the bot's own
reflected messages, history); type=error stanzas stop here, before any I/O (no error loops); kinds listed in
`bot.stanzas` go to the bot; the rest is answered locally.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection
from typing import Protocol

from component import local
from component.metrics import Metrics
from component.notify.events import Event
from component.stanza import Kind, Stanza

log = logging.getLogger(__name__)


class Taker(Protocol):
    def take(self, stanza: Stanza) -> bool: ...


class Rooms(Protocol):
    """The room manager, as inbound sees it (component/rooms/manager.py)."""

    def take_iq(self, stanza: Stanza, element: ET.Element) -> bool: ...

    def presence(self, stanza: Stanza, element: ET.Element) -> bool: ...

    def message(self, stanza: Stanza, element: ET.Element | None) -> Stanza | object | None: ...


class Inbound:
    def __init__(
        self,
        to_bot: Collection[Kind],
        submit: Callable[[Stanza], None],
        send: Callable[[Stanza], None],
        answers: Taker,
        metrics: Metrics,
        resource: str,
        host_type: str,
        emit: Callable[[Event], None] | None = None,
        rooms: Rooms | None = None,
    ) -> None:
        self._to_bot = frozenset(to_bot)
        self._submit = submit
        self._send = send
        self._answers = answers
        self._metrics = metrics
        self._resource = resource
        self._host_type = host_type
        self._emit = emit  # None when no notification handler is configured: no Event is built
        self._rooms = rooms

    def receive(self, stanza: Stanza, element: ET.Element) -> None:
        self._metrics.received[stanza.kind].inc()
        if log.isEnabledFor(logging.DEBUG):
            log.debug("received %s", stanza.xml)
        if self._emit is not None:
            self._emit(Event.of("in", stanza, self._host_type))
        if stanza.kind == "iq" and stanza.type in ("result", "error") and self._answers.take(stanza):
            return
        if self._rooms is not None and self._to_room(stanza, element):
            if stanza.type == "error":  # a room's refusal, taken by the room manager: a bounce all the same
                self._metrics.errors_received.inc()
            return
        if stanza.type == "error":
            self._metrics.errors_received.inc()
            return  # never answer an error: no error loops
        try:
            if stanza.kind in self._to_bot:
                self._submit(stanza)
            elif stanza.kind == "presence":
                for reply in local.answer_presence(stanza, self._resource):
                    self._send(reply)
            elif stanza.kind == "iq":
                for reply in local.answer_iq(stanza, element):
                    self._send(reply)
        except Exception:  # the error boundary of the local flow
            self._metrics.internal_errors.inc()
            log.exception("internal error while handling a %s from %s", stanza.kind, stanza.from_)

    def _to_room(self, stanza: Stanza, element: ET.Element) -> bool:
        """Offer a stanza to the room manager; True when it was a room's (forwarded to the bot, or kept)."""
        rooms = self._rooms
        assert rooms is not None
        try:
            if stanza.kind == "message":
                verdict = rooms.message(stanza, element)
                if verdict is None:
                    return False
                if isinstance(verdict, Stanza) and "message" in self._to_bot:
                    self._submit(verdict)
                return True
            if stanza.kind == "presence":
                return rooms.presence(stanza, element)
            return stanza.type in ("result", "error") and rooms.take_iq(stanza, element)
        except Exception:  # the error boundary of the room flow
            self._metrics.internal_errors.inc()
            log.exception("internal error while handling a %s from %s", stanza.kind, stanza.from_)
            return True
