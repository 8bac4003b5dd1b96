"""Pure: what the sender of a stanza is told when the bot fails or the component cannot serve it (DESIGN.md's
error table, as data)."""

from __future__ import annotations

from component.stanza import XmppError

HTTP_STATUS: dict[int, XmppError] = {
    400: XmppError("modify", "bad-request"),
    401: XmppError("auth", "not-authorized"),
    402: XmppError("auth", "forbidden", "Payment required"),
    403: XmppError("auth", "forbidden"),
    404: XmppError("cancel", "item-not-found"),
    410: XmppError("cancel", "gone"),
    500: XmppError("cancel", "internal-server-error"),
    501: XmppError("cancel", "feature-not-implemented"),
    502: XmppError("cancel", "remote-server-timeout", "Bad gateway"),
    503: XmppError("wait", "remote-server-timeout", "Service temporarily unavailable"),
    504: XmppError("wait", "remote-server-timeout", "Gateway timeout"),
}
OTHER_STATUS = XmppError("cancel", "service-unavailable")
CONNECTION_FAILURE = XmppError("cancel", "remote-server-timeout", "Connection failure")
TIMEOUT = HTTP_STATUS[504]
QUEUE_FULL = XmppError("wait", "resource-constraint", "Too many stanzas are waiting for the bot; try again later")
SHUTTING_DOWN = XmppError("cancel", "service-unavailable", "The component is shutting down")
IQ_UNANSWERED = XmppError("cancel", "service-unavailable", "The bot did not answer this request")
NOT_SUPPORTED = XmppError("cancel", "service-unavailable")
NO_ROUTE = XmppError("cancel", "item-not-found", "No bot serves this address")
INTERNAL = XmppError("cancel", "internal-server-error")
UNREADABLE = XmppError("modify", "not-acceptable", "The stanza could not be read")
TOO_DEEP = XmppError("modify", "not-acceptable", "The stanza is nested too deeply")


def for_status(status: int) -> XmppError:
    """The error for a non-2xx HTTP status."""
    return HTTP_STATUS.get(status, OTHER_STATUS)


def unusable_reply(reason: str) -> XmppError:
    """The error for a bot reply that cannot be turned into stanzas; the text says why."""
    return XmppError("cancel", "internal-server-error", f"The bot's reply was unusable: {reason}")
