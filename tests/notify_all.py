"""A test callback module: one JSON notification for every event, whatever its kind or direction."""

from __future__ import annotations

import json

from component.notify.events import Event


def should_make_req(event: Event) -> bool:
    return True


def prepare_headers(event: Event) -> dict[str, str]:
    return {"Content-Type": "application/json"}


def prepare_body(event: Event) -> str:
    return json.dumps(
        {
            "direction": event.direction,
            "kind": event.kind,
            "type": event.type,
            "from": event.from_,
            "to": event.to,
            "body": event.body,
            "host_type": event.host_type,
        }
    )
