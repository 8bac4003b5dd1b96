"""What the component answers itself (DESIGN.md's "Local flow"): presence, disco, ping, version; exact XML."""

from __future__ import annotations

import pytest

from component import __version__
from component.local import answer_iq, answer_presence
from component.stanza import Stanza, from_element, parse

USER = "alice@localhost/phone"
SERVICE_UNAVAILABLE = '<error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>'
FEATURES = (
    '<feature var="http://jabber.org/protocol/disco#info"/>'
    '<feature var="http://jabber.org/protocol/disco#items"/>'
    '<feature var="urn:xmpp:ping"/>'
    '<feature var="jabber:iq:version"/>'
)


def presence(type_: str | None, to: str = "echo@bot.localhost", from_: str = USER) -> Stanza:
    type_attr = f' type="{type_}"' if type_ is not None else ""
    elem, kind = parse(f'<presence to="{to}" from="{from_}"{type_attr}/>')
    return from_element(elem, kind)


def ask(payload: str, type_: str = "get", to: str = "bot.localhost", id_: str = "q1") -> list[str]:
    """The XML of the local answers to an iq from USER."""
    elem, kind = parse(f'<iq to="{to}" from="{USER}" type="{type_}" id="{id_}">{payload}</iq>')
    return [reply.xml for reply in answer_iq(from_element(elem, kind), elem)]


# -- presence --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stanza", "resource", "expected"),
    [
        pytest.param(
            presence("probe"),
            "default",
            ['<presence to="alice@localhost/phone" from="echo@bot.localhost/default"/>'],
            id="probe-answered-to-the-sender-from-the-configured-resource",
        ),
        pytest.param(
            presence("probe", from_="alice@localhost"),
            "default",
            ['<presence to="alice@localhost" from="echo@bot.localhost/default"/>'],
            id="probe-from-a-bare-jid",
        ),
        pytest.param(
            presence("probe", to="echo@bot.localhost/other"),
            "bot",
            ['<presence to="alice@localhost/phone" from="echo@bot.localhost/bot"/>'],
            id="probe-to-a-full-jid-answered-from-our-resource",
        ),
        pytest.param(
            presence("probe", to="bot.localhost"),
            "default",
            ['<presence to="alice@localhost/phone" from="bot.localhost/default"/>'],
            id="probe-to-the-domain",
        ),
        pytest.param(
            presence("subscribe"),
            "default",
            [
                '<presence to="alice@localhost" from="echo@bot.localhost" type="subscribed"/>',
                '<presence to="alice@localhost" from="echo@bot.localhost/default"/>',
            ],
            id="subscribe-subscribed-from-the-bare-jid-then-available",
        ),
        pytest.param(
            presence("subscribe", to="echo@bot.localhost/x"),
            "r1",
            [
                '<presence to="alice@localhost" from="echo@bot.localhost" type="subscribed"/>',
                '<presence to="alice@localhost" from="echo@bot.localhost/r1"/>',
            ],
            id="subscribe-to-a-full-jid",
        ),
        pytest.param(
            presence("unsubscribe"),
            "default",
            [
                '<presence to="alice@localhost" from="echo@bot.localhost" type="unsubscribed"/>',
                '<presence to="alice@localhost" from="echo@bot.localhost/default" type="unavailable"/>',
            ],
            id="unsubscribe-unsubscribed-then-unavailable",
        ),
        pytest.param(presence(None), "default", [], id="available-accepted-silently"),
        pytest.param(presence("unavailable"), "default", [], id="unavailable-accepted-silently"),
        pytest.param(presence("subscribed"), "default", [], id="subscribed-accepted-silently"),
        pytest.param(presence("unsubscribed"), "default", [], id="unsubscribed-accepted-silently"),
    ],
)
def test_answer_presence(stanza: Stanza, resource: str, expected: list[str]) -> None:
    assert [reply.xml for reply in answer_presence(stanza, resource)] == expected


# -- iq --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("to", "identity"),
    [
        pytest.param(
            "bot.localhost",
            '<identity category="component" type="generic" name="xmpp-http-component"/>',
            id="domain-is-a-component",
        ),
        pytest.param(
            "echo@bot.localhost", '<identity category="client" type="bot" name="HTTP bot"/>', id="bot-jid-is-a-bot"
        ),
        pytest.param(
            "echo@bot.localhost/default",
            '<identity category="client" type="bot" name="HTTP bot"/>',
            id="full-bot-jid-is-a-bot",
        ),
        pytest.param(
            "bot.localhost/default",
            '<identity category="component" type="generic" name="xmpp-http-component"/>',
            id="domain-with-resource-is-a-component",
        ),
    ],
)
def test_disco_info(to: str, identity: str) -> None:
    assert ask('<query xmlns="http://jabber.org/protocol/disco#info"/>', to=to) == [
        f'<iq to="alice@localhost/phone" from="{to}" type="result" id="q1">'
        f'<query xmlns="http://jabber.org/protocol/disco#info">{identity}{FEATURES}</query></iq>'
    ]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(
            '<query xmlns="http://jabber.org/protocol/disco#items"/>',
            '<iq to="alice@localhost/phone" from="bot.localhost" type="result" id="q1">'
            '<query xmlns="http://jabber.org/protocol/disco#items"/></iq>',
            id="disco-items-empty",
        ),
        pytest.param(
            '<ping xmlns="urn:xmpp:ping"/>',
            '<iq to="alice@localhost/phone" from="bot.localhost" type="result" id="q1"/>',
            id="ping-empty-result",
        ),
        pytest.param(
            '<query xmlns="jabber:iq:version"/>',
            '<iq to="alice@localhost/phone" from="bot.localhost" type="result" id="q1">'
            '<query xmlns="jabber:iq:version"><name>xmpp-http-component</name>'
            f"<version>{__version__}</version></query></iq>",
            id="version",
        ),
    ],
)
def test_iq_answered(payload: str, expected: str) -> None:
    assert ask(payload) == [expected]


def test_answer_keeps_the_id_and_answers_from_the_bot_jid() -> None:
    assert ask('<ping xmlns="urn:xmpp:ping"/>', to="echo@bot.localhost", id_="ping-7") == [
        '<iq to="alice@localhost/phone" from="echo@bot.localhost" type="result" id="ping-7"/>'
    ]


@pytest.mark.parametrize(
    ("payload", "type_"),
    [
        pytest.param(
            '<query xmlns="http://jabber.org/protocol/disco#info" node="x"/>', "get", id="disco-info-on-a-node"
        ),
        pytest.param(
            '<query xmlns="http://jabber.org/protocol/disco#items" node="x"/>', "get", id="disco-items-on-a-node"
        ),
        pytest.param('<query xmlns="jabber:iq:roster"/>', "get", id="unknown-get"),
        pytest.param('<query xmlns="jabber:iq:roster"><item jid="a@b"/></query>', "set", id="unknown-set"),
        pytest.param('<query xmlns="http://jabber.org/protocol/disco#info"/>', "set", id="disco-info-as-set"),
        pytest.param('<ping xmlns="urn:xmpp:ping"/>', "set", id="ping-as-set"),
        pytest.param('<query xmlns="jabber:iq:version"/>', "set", id="version-as-set"),
        pytest.param("", "get", id="get-without-payload"),
        pytest.param(
            '<ping xmlns="urn:xmpp:ping"/><query xmlns="jabber:iq:version"/>', "get", id="get-with-two-payloads"
        ),
        pytest.param('<ping xmlns="urn:other"/>', "get", id="right-name-wrong-namespace"),
    ],
)
def test_other_get_or_set_is_service_unavailable(payload: str, type_: str) -> None:
    assert ask(payload, type_) == [
        f'<iq to="alice@localhost/phone" from="bot.localhost" type="error" id="q1">{SERVICE_UNAVAILABLE}</iq>'
    ]


@pytest.mark.parametrize(
    ("payload", "type_"),
    [
        pytest.param("", "result", id="result"),
        pytest.param('<query xmlns="jabber:iq:version"/>', "result", id="result-with-payload"),
        pytest.param(SERVICE_UNAVAILABLE, "error", id="error"),
        pytest.param('<ping xmlns="urn:xmpp:ping"/>', "bogus", id="unknown-type"),
    ],
)
def test_results_and_errors_get_no_answer(payload: str, type_: str) -> None:
    assert ask(payload, type_) == []
