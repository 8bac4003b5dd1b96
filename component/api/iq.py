"""Waiting for the answer to an iq sent through the send API.

With several instances (`[instance] slots`) an answer may reach another instance than the one that asked (on
ejabberd with `bare_source`, the instance that owns the target's bare JID gets it): the waiter then sends its iqs with
ids that name this instance (`xhc~<instance>~<id>`), and an answer whose id names another instance is handed to
`forward` (component/cluster.py publishes it to that instance's reply queue on the broker). The caller gets the
answer with the id it gave."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

from component.stanza import Stanza, bare
from component.xml import escape_attr

SendAll = Callable[[list[Stanza]], bool]
Forward = Callable[[str, Stanza], None]
ID_MARK = "xhc~"


def owner_of(stanza_id: str | None) -> str | None:
    """The instance an iq id names (`xhc~<instance>~<id>`), or None."""
    if stanza_id is None or not stanza_id.startswith(ID_MARK):
        return None
    owner, sep, _ = stanza_id[len(ID_MARK) :].partition("~")
    return owner if sep and owner else None


def with_id(stanza: Stanza, new: str) -> Stanza:
    """`stanza` with id `new` (in its XML too); unchanged when its start tag has no id attribute to replace."""
    if stanza.id is None:
        return stanza
    old = f' id="{escape_attr(stanza.id)}"'
    at = stanza.xml.find(old, 0, stanza.xml.find(">"))
    if at < 0:
        return stanza
    xml = f'{stanza.xml[:at]} id="{escape_attr(new)}"{stanza.xml[at + len(old) :]}'
    return replace(stanza, id=new, xml=xml)


class Closed(Exception):
    """The waiter was closed (the component is stopping) before the answer came."""


class IqWaiter:
    """The iqs sent and not yet answered, by id. The app shows it every stanza it receives (`take`)."""

    def __init__(self, instance: str = "", forward: Forward | None = None) -> None:
        """With `instance` (several instances), iq ids name it and answers naming others go to `forward`."""
        self._pending: dict[str, tuple[str, asyncio.Future[Stanza]]] = {}
        self._instance = instance
        self.forward = forward

    def close(self) -> None:
        """Stop the waits under way (they raise Closed): at shutdown no request waits out its timeout."""
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(Closed())

    async def ask(self, iq: Stanza, timeout: float, send_all: SendAll) -> Stanza | None:
        """Send an iq get/set and wait for its answer (None after `timeout` seconds or if it cannot be sent).
        Raises ValueError when an iq with the same id is already waiting, Closed when the waiter is closed."""
        if iq.id is None:
            raise ValueError("an iq needs an id")
        given = iq.id
        if self._instance:
            iq = with_id(iq, f"{ID_MARK}{self._instance}~{given}")
        if iq.id in self._pending:
            raise ValueError(f"an iq with id {given!r} is already waiting for its answer")
        assert iq.id is not None
        future: asyncio.Future[Stanza] = asyncio.get_running_loop().create_future()
        self._pending[iq.id] = (iq.to, future)
        try:
            if not send_all([iq]):
                return None
            answer = await asyncio.wait_for(future, timeout)
            return answer if answer.id == given else with_id(answer, given)
        except TimeoutError:
            return None
        finally:
            del self._pending[iq.id]

    def take(self, stanza: Stanza) -> bool:
        """True when `stanza` is the answer to an iq we wait for: it is then consumed (the app does nothing
        else with it). An iq result or error with the id of a waiting iq is consumed even when it is not
        accepted as the answer, as before."""
        if stanza.kind != "iq" or stanza.type not in ("result", "error"):
            return False
        if stanza.id not in self._pending:
            owner = owner_of(stanza.id)
            if owner is None or owner == self._instance or self.forward is None:
                return False
            self.forward(owner, stanza)  # another instance's answer: to its reply queue
            return True
        to, future = self._pending[stanza.id]
        # Only the account asked answers a result; an error may come from its server instead.
        if not future.done() and (stanza.type == "error" or bare(stanza.from_) == bare(to)):
            future.set_result(stanza)
        return True
