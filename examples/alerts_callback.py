"""A notification callback module: a JSON alert for every message the bots send.

Use it with a handler whose path is /alerts (examples/ must be importable, e.g. PYTHONPATH=examples):

    [outgoing_pools.http.http_pool.connection]
      host = "http://127.0.0.1:8000"

    [[event_pusher.http.handlers]]
      path = "/alerts"
      callback_module = "alerts_callback"

Each function is optional: what a module leaves out comes from component.notify.defaults.
"""

from __future__ import annotations

import json

from component.notify.events import Event


def should_make_req(event: Event) -> bool:
    """Called for every event, on the component's event loop: decide quickly."""
    return event.direction == "out" and event.kind == "message" and event.type != "error"


def prepare_headers(event: Event) -> dict[str, str]:
    return {"Content-Type": "application/json"}


def prepare_body(event: Event) -> str:
    return json.dumps(
        {"bot": event.from_, "to": event.to, "type": event.type, "body": event.body, "host": event.host_type}
    )
