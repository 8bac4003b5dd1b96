"""DESIGN.md's error table, row by row: the (type, condition, text) triples are copied from the table by hand."""

from __future__ import annotations

import pytest

from component import error_map
from component.stanza import XmppError


def triple(error: XmppError) -> tuple[str, str, str]:
    return error.type, error.condition, error.text


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(400, ("modify", "bad-request", ""), id="400"),
        pytest.param(401, ("auth", "not-authorized", ""), id="401"),
        pytest.param(402, ("auth", "forbidden", "Payment required"), id="402"),
        pytest.param(403, ("auth", "forbidden", ""), id="403"),
        pytest.param(404, ("cancel", "item-not-found", ""), id="404"),
        pytest.param(410, ("cancel", "gone", ""), id="410"),
        pytest.param(500, ("cancel", "internal-server-error", ""), id="500"),
        pytest.param(501, ("cancel", "feature-not-implemented", ""), id="501"),
        pytest.param(502, ("cancel", "remote-server-timeout", "Bad gateway"), id="502"),
        pytest.param(503, ("wait", "remote-server-timeout", "Service temporarily unavailable"), id="503"),
        pytest.param(504, ("wait", "remote-server-timeout", "Gateway timeout"), id="504"),
    ],
)
def test_status_row(status: int, expected: tuple[str, str, str]) -> None:
    assert triple(error_map.for_status(status)) == expected


def test_the_table_has_no_other_status_rows() -> None:
    assert sorted(error_map.HTTP_STATUS) == [400, 401, 402, 403, 404, 410, 500, 501, 502, 503, 504]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            error_map.CONNECTION_FAILURE,
            ("cancel", "remote-server-timeout", "Connection failure"),
            id="connection-failure",
        ),
        pytest.param(
            error_map.TIMEOUT, ("wait", "remote-server-timeout", "Gateway timeout"), id="our-own-timeout-as-504"
        ),
    ],
)
def test_non_status_row(error: XmppError, expected: tuple[str, str, str]) -> None:
    assert triple(error) == expected


@pytest.mark.parametrize(
    "status",
    [
        pytest.param(300, id="300"),
        pytest.param(301, id="301-redirects-are-not-followed"),
        pytest.param(405, id="405"),
        pytest.param(408, id="408"),
        pytest.param(413, id="413"),
        pytest.param(418, id="418"),
        pytest.param(429, id="429"),
        pytest.param(505, id="505"),
        pytest.param(599, id="599"),
        pytest.param(999, id="999"),
        pytest.param(100, id="100"),
    ],
)
def test_any_other_status(status: int) -> None:
    assert triple(error_map.for_status(status)) == ("cancel", "service-unavailable", "")


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        pytest.param(
            "invalid JSON",
            ("cancel", "internal-server-error", "The bot's reply was unusable: invalid JSON"),
            id="says-what-was-wrong",
        ),
        pytest.param(
            "<stanza> & more",
            ("cancel", "internal-server-error", "The bot's reply was unusable: <stanza> & more"),
            id="reason-kept-raw-escaped-when-written",
        ),
    ],
)
def test_unusable_reply(reason: str, expected: tuple[str, str, str]) -> None:
    assert triple(error_map.unusable_reply(reason)) == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(
            error_map.QUEUE_FULL,
            ("wait", "resource-constraint", "Too many stanzas are waiting for the bot; try again later"),
            id="queue-full",
        ),
        pytest.param(error_map.NOT_SUPPORTED, ("cancel", "service-unavailable", ""), id="not-supported"),
        pytest.param(
            error_map.UNREADABLE, ("modify", "not-acceptable", "The stanza could not be read"), id="unreadable"
        ),
        pytest.param(
            error_map.TOO_DEEP, ("modify", "not-acceptable", "The stanza is nested too deeply"), id="too-deep"
        ),
    ],
)
def test_component_errors(error: XmppError, expected: tuple[str, str, str]) -> None:
    assert triple(error) == expected
