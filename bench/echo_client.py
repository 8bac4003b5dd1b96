"""The floor's peer: an XMPP user that echoes every chat message back to its sender, as fast as slixmpp can.

    .venv/bin/python -m bench.echo_client USER@DOMAIN/RESOURCE PASSWORD C2S_PORT [--plain]

(from the repository's root; bench/bench.py starts it). It prints "ready" once logged in and available.
"""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ET

from slixmpp import JID
from slixmpp.stanza import Message

from tests.harness.clients import Endpoint, PlainClient, login

NS = "{jabber:client}"


class Echo(PlainClient):
    def __init__(self, jid: str, password: str, plain: bool) -> None:
        super().__init__(jid, password)
        self.plain = plain
        if plain:
            self.add_event_handler("message", self._echo)

    def _echo(self, msg: Message) -> None:
        if msg["type"] == "chat":
            msg.reply(msg["body"]).send()  # type: ignore[no-untyped-call]

    def _spawn_event(self, xml: ET.Element) -> None:
        # Echo at the XML level, as our component does: no stanza objects on the hot path.
        if not self.plain and xml.tag == NS + "message" and xml.get("type") == "chat":
            body = xml.find(NS + "body")
            if body is not None:
                text = (body.text or "").replace("&", "&amp;").replace("<", "&lt;")
                sender = (xml.get("from") or "").replace('"', "&quot;")
                self.send_raw(f'<message to="{sender}" type="chat"><body>{text}</body></message>')
                return
        super()._spawn_event(xml)


async def main() -> None:
    jid, password, port = JID(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    plain = "--plain" in sys.argv[4:]
    server = Endpoint(jid.domain, port)
    await login(server, jid.user, jid.resource, make=lambda j, p: Echo(j, p, plain), password=password, timeout=20)
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
