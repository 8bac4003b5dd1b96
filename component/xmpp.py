"""The XMPP side: a thin slixmpp ComponentXMPP that hands every stanza over as plain values, and the
supervisor that keeps the component stream up (reconnect with backoff; slow retries when refused; retries every
`standby` seconds while another instance holds the domain: Prosody's `conflict`, the active/standby of several
instances)."""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from slixmpp import ComponentXMPP
from slixmpp.xmlstream.xmlstream import NotConnectedError

from component import error_map
from component.stanza import Stanza, XmppError, build, error_payload, from_element, kind_of

log = logging.getLogger(__name__)

OnStanza = Callable[[Stanza, ET.Element], None]
OnRefused = Callable[[Stanza], None]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between connection attempts: doubling from `first` to `most`; `refused` after a refusal; `standby`
    after a `conflict` (another instance holds the domain)."""

    first: float = 0.5
    most: float = 30.0
    refused: float = 60.0
    standby: float = 2.0
    handshake_timeout: float = 30.0

    def after(self, failures: int) -> float:
        return float(min(self.most, self.first * 2 ** min(max(0, failures - 1), 64)))  # no overflow after days


DEFAULT_BACKOFF = Backoff()


class ComponentStream(ComponentXMPP):
    """Receives stanzas as ElementTree elements, before slixmpp builds stanza objects, and sends text.

    `on_stanza` gets every stanza as a value with its element; `on_refused` gets the error answer to a stanza
    that could not even be read (it goes out through the outbox like every other stanza)."""

    def __init__(self, jid: str, secret: str, host: str, port: int, on_stanza: OnStanza, on_refused: OnRefused) -> None:
        super().__init__(jid, secret, host, port)  # type: ignore[no-untyped-call]
        self._on_stanza = on_stanza
        self._on_refused = on_refused
        self._host, self._port = host, port
        self.up = False
        self._outgoing: list[str] = []
        self._attempt: asyncio.Future[str] | None = None
        self._down: asyncio.Future[str] | None = None
        self._last_error = ""
        self._conflict = False  # the last refusal was a `conflict` stream error
        self._recycling = ""  # why `recycle` closed the stream: made again at once, logged at DEBUG
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.add_event_handler("stream_error", self._on_stream_error)

    # -- receiving ---------------------------------------------------------------------------------------
    def _spawn_event(self, xml: ET.Element) -> None:
        kind = kind_of(xml)
        if kind is None:
            super()._spawn_event(xml)  # handshake, stream errors
            return
        try:
            stanza = from_element(xml, kind)
        except RecursionError:
            self._refuse(xml, error_map.TOO_DEEP)
            return
        except Exception:  # never let one odd stanza break the stream
            log.exception("could not read a stanza from the server")
            self._refuse(xml, error_map.UNREADABLE)
            return
        self._on_stanza(stanza, xml)

    def _refuse(self, xml: ET.Element, error: XmppError) -> None:
        """Answer a stanza we cannot even read, unless it is an error itself."""
        kind, to, from_ = kind_of(xml), xml.get("to"), xml.get("from")
        if kind is not None and xml.get("type") != "error" and to and from_:
            self._on_refused(build(kind, from_, to, "error", xml.get("id"), payload=error_payload(error)))

    # -- sending -----------------------------------------------------------------------------------------
    def send_text(self, xml: str) -> bool:
        """Queue one stanza for the stream; False when the stream is down (the outbox then holds it).

        Stanzas queued in one turn of the event loop leave in one write: one system call for many replies.
        """
        if not self.up:
            return False
        self._outgoing.append(xml)
        if len(self._outgoing) == 1:
            asyncio.get_running_loop().call_soon(self._flush)
        return True

    def _flush(self) -> None:
        data, self._outgoing = "".join(self._outgoing), []
        if not data:
            return
        try:
            self.send_raw(data)
        except NotConnectedError:
            log.warning("the stream closed before %d characters of stanzas could be written", len(data))

    # -- connection events -------------------------------------------------------------------------------
    def _settle(self, future: asyncio.Future[str] | None, value: str) -> None:
        if future is not None and not future.done():
            future.set_result(value)

    def _on_session_start(self, _event: object) -> None:
        self.up = True
        self._settle(self._attempt, "up")

    def _on_connection_failed(self, error: object) -> None:
        self._last_error = str(error)
        self._settle(self._attempt, "failed")

    def _on_stream_error(self, error: object) -> None:
        condition, text = error["condition"] or "undefined", error["text"]  # type: ignore[index]
        self._last_error = f"stream error {condition}{': ' + text if text else ''}"
        self._conflict = condition == "conflict"

    def _on_disconnected(self, reason: object) -> None:
        self.up = False
        if self._attempt is not None and not self._attempt.done():
            self._settle(self._attempt, "refused")
        self._settle(self._down, str(reason or self._last_error or "connection closed"))

    def recycle(self, why: str) -> None:
        """Close the stream so that the supervisor makes it again at once (a connection the server routes nothing
        to: component/cluster.py, RouteCheck). The caller has logged why."""
        if self.up and not self._recycling:
            self._recycling = why
            self.disconnect(wait=1, reason=why)

    # -- supervisor --------------------------------------------------------------------------------------
    async def maintain(self, stop: asyncio.Event, backoff: Backoff, on_change: Callable[[bool], None]) -> None:
        """Keep the component stream up until `stop` is set; each connect and disconnect is logged once."""
        loop = asyncio.get_running_loop()
        failures = 0
        standing_by = False  # refused with `conflict` since the last other outcome: logged once, at INFO
        recycled = ""  # the stream was closed by `recycle`: its next connect is logged at DEBUG
        self._recycling = ""
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._last_error = ""
                self._conflict = False
                self._attempt = loop.create_future()
                self._down = loop.create_future()
                self.connect(self._host, self._port)
                await asyncio.wait(
                    (self._attempt, stopping), timeout=backoff.handshake_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if stop.is_set():
                    break
                outcome = self._attempt.result() if self._attempt.done() else "timeout"
                if outcome == "up":
                    failures = 0
                    log.log(
                        logging.DEBUG if recycled else logging.INFO,
                        "connected to %s:%d as component %s%s",
                        self._host,
                        self._port,
                        self.boundjid.bare,
                        " (taking over from the instance that held it)" if standing_by else "",
                    )
                    standing_by = False
                    on_change(True)
                    await asyncio.wait((self._down, stopping), return_when=asyncio.FIRST_COMPLETED)
                    on_change(False)
                    if stop.is_set():
                        break
                    recycled, self._recycling = self._recycling, ""
                    if recycled:
                        log.debug("closed the stream to make it again: %s", recycled)
                        continue
                    log.warning(
                        "disconnected from %s:%d (%s); reconnecting", self._host, self._port, self._down.result()
                    )
                    delay = backoff.first
                elif outcome == "refused" and self._conflict:
                    self.cancel_connection_attempt()
                    delay = backoff.standby
                    if not standing_by:
                        log.info(
                            "standing by: the XMPP server at %s:%d says another instance holds component %s (%s); "
                            "trying again every %g s to take over when it goes",
                            self._host,
                            self._port,
                            self.boundjid.bare,
                            self._last_error,
                            delay,
                        )
                    standing_by = True
                else:
                    failures += 1
                    standing_by = False
                    self.cancel_connection_attempt()
                    if outcome == "refused":
                        delay = backoff.refused
                        log.error(
                            "the XMPP server at %s:%d refused component %s (%s): check component.jid and "
                            "component.secret against the server's component configuration; retrying in %g s",
                            self._host,
                            self._port,
                            self.boundjid.bare,
                            self._last_error or "stream closed",
                            delay,
                        )
                    else:
                        if outcome == "timeout":
                            self.abort()
                            self._last_error = "no handshake answer"
                        delay = backoff.after(failures)
                        log.warning(
                            "cannot connect to %s:%d (%s); retrying in %g s",
                            self._host,
                            self._port,
                            self._last_error or outcome,
                            delay,
                        )
                await asyncio.wait((stopping,), timeout=delay)
        finally:
            stopping.cancel()
            self.cancel_connection_attempt()
            await self.close()

    async def close(self) -> None:
        """Write what is queued, then close the stream (RFC 6120: nothing may follow our </stream:stream>, so the
        stream counts as down from here on)."""
        if self._outgoing:
            self._flush()
        self.up = False
        if self.transport is not None:
            try:
                await asyncio.wait_for(self.disconnect(wait=2), 3)
            except (TimeoutError, NotConnectedError):
                self.abort()
            self.up = False
