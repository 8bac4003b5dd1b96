"""Pure: what the component answers itself, as an always-online service (presence, disco, ping, version).

Used for every kind not listed in `bot.stanzas`; stanzas of type error never reach here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from component import __version__, error_map
from component.stanza import Stanza, bare, build, error_reply
from component.xml import escape_text, split_tag

NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_PING = "urn:xmpp:ping"
NS_VERSION = "jabber:iq:version"
FEATURES = (NS_DISCO_INFO, NS_DISCO_ITEMS, NS_PING, NS_VERSION)
SOFTWARE = "xmpp-http-component"


def answer_presence(stanza: Stanza, resource: str) -> list[Stanza]:
    """Accept subscriptions and answer probes, from the bare bot JID (RFC 6121), presence from a resource."""
    me, them = bare(stanza.to), bare(stanza.from_)
    online = f"{me}/{resource}"
    if stanza.type == "probe":
        return [build("presence", stanza.from_, online)]
    if stanza.type == "subscribe":
        return [build("presence", them, me, "subscribed"), build("presence", them, online)]
    if stanza.type == "unsubscribe":
        return [build("presence", them, me, "unsubscribed"), build("presence", them, online, "unavailable")]
    return []


def _result(stanza: Stanza, payload: str = "") -> Stanza:
    return build("iq", stanza.from_, stanza.to, "result", stanza.id or "", payload=payload)


def answer_iq(stanza: Stanza, element: ET.Element) -> list[Stanza]:
    """Answer disco#info, disco#items, ping and version; any other get/set gets service-unavailable."""
    if stanza.type not in ("get", "set"):
        return []  # results and errors addressed to us need no answer
    children = list(element)
    payload = children[0] if len(children) == 1 else None
    ns, name = split_tag(payload.tag) if payload is not None else ("", "")
    if stanza.type == "get" and payload is not None:
        if (ns, name) == (NS_DISCO_INFO, "query") and not payload.get("node"):
            if "@" in bare(stanza.to):
                identity = '<identity category="client" type="bot" name="HTTP bot"/>'
            else:
                identity = f'<identity category="component" type="generic" name="{SOFTWARE}"/>'
            features = "".join(f'<feature var="{f}"/>' for f in FEATURES)
            return [_result(stanza, f'<query xmlns="{NS_DISCO_INFO}">{identity}{features}</query>')]
        if (ns, name) == (NS_DISCO_ITEMS, "query") and not payload.get("node"):
            return [_result(stanza, f'<query xmlns="{NS_DISCO_ITEMS}"/>')]
        if (ns, name) == (NS_PING, "ping"):
            return [_result(stanza)]
        if (ns, name) == (NS_VERSION, "query"):
            version = f"<name>{SOFTWARE}</name><version>{escape_text(__version__)}</version>"
            return [_result(stanza, f'<query xmlns="{NS_VERSION}">{version}</query>')]
    return [error_reply(stanza, error_map.NOT_SUPPORTED)]
