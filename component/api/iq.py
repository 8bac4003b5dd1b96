"""Waiting for the answer to an iq sent through the send API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from component.stanza import Stanza, bare

SendAll = Callable[[list[Stanza]], bool]


class Closed(Exception):
    """The waiter was closed (the component is stopping) before the answer came."""


class IqWaiter:
    """The iqs sent and not yet answered, by id. The app shows it every stanza it receives (`take`)."""

    def __init__(self) -> None:
        self._pending: dict[str, tuple[str, asyncio.Future[Stanza]]] = {}

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
        if iq.id in self._pending:
            raise ValueError(f"an iq with id {iq.id!r} is already waiting for its answer")
        future: asyncio.Future[Stanza] = asyncio.get_running_loop().create_future()
        self._pending[iq.id] = (iq.to, future)
        try:
            if not send_all([iq]):
                return None
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            del self._pending[iq.id]

    def take(self, stanza: Stanza) -> bool:
        """True when `stanza` is the answer to an iq we wait for: it is then consumed (the app does nothing
        else with it). An iq result or error with the id of a waiting iq is consumed even when it is not
        accepted as the answer, as before."""
        if stanza.kind != "iq" or stanza.type not in ("result", "error") or stanza.id not in self._pending:
            return False
        to, future = self._pending[stanza.id]
        # Only the account asked answers a result; an error may come from its server instead.
        if not future.done() and (stanza.type == "error" or bare(stanza.from_) == bare(to)):
            future.set_result(stanza)
        return True
