"""The Event value: every stanza the component receives (direction `in`) or sends (`out`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from component.stanza import Stanza

Direction = Literal["in", "out"]


@dataclass(frozen=True, slots=True)
class Event:
    """What notification callbacks see. `type` is never empty: a message without one is `normal`, a presence
    without one `available` (RFC 6121's defaults)."""

    direction: Direction
    kind: str  # message, presence or iq
    type: str
    from_: str
    to: str
    body: str | None
    stanza: str  # the XML text
    host_type: str  # the component's domain

    @classmethod
    def of(cls, direction: Direction, stanza: Stanza, host_type: str) -> Event:
        default = {"message": "normal", "presence": "available"}.get(stanza.kind, "")
        return cls(
            direction, stanza.kind, stanza.type or default, stanza.from_, stanza.to, stanza.body, stanza.xml, host_type
        )
