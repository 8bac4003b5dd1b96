"""Standard Webhooks signatures for bot requests: webhook-id, webhook-timestamp, webhook-signature."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid


def signature(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """'v1,' + base64 of HMAC-SHA256 over '{id}.{timestamp}.{body}'."""
    mac = hmac.new(secret, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def new_id() -> str:
    """A unique webhook-id."""
    return f"msg_{uuid.uuid4().hex}"


def headers(secret: bytes, body: bytes, now: float | None = None, msg_id: str | None = None) -> dict[str, str]:
    """The three headers for one request. The id is unique unless given (queued delivery gives the same one on
    every attempt of a stanza, each signed afresh with its own timestamp), so a bot can reject replays."""
    msg_id = new_id() if msg_id is None else msg_id
    timestamp = int(time.time() if now is None else now)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, msg_id, timestamp, body),
    }
