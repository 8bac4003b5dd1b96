"""The floor's peer: an XMPP user that echoes every chat message back to its sender, as fast as slixmpp can.

python bench/echo_client.py JID PASSWORD C2S_PORT
"""

from __future__ import annotations

import asyncio
import sys
import xml.etree.ElementTree as ET

from slixmpp import ClientXMPP
from slixmpp.stanza import Message

NS = "{jabber:client}"


class Echo(ClientXMPP):
    def __init__(self, jid: str, password: str, plain: bool) -> None:
        super().__init__(jid, password, plugin_config={"feature_mechanisms": {"unencrypted_plain": True}})
        self.enable_plaintext = True
        self.enable_starttls = False
        self.enable_direct_tls = False
        self.plain = plain
        self.add_event_handler("session_start", self._started)
        if plain:
            self.add_event_handler("message", self._echo)

    def _echo(self, msg: Message) -> None:
        if msg["type"] == "chat":
            msg.reply(msg["body"]).send()

    def _started(self, _event: object) -> None:
        self.send_presence()
        print("ready", flush=True)

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
    jid, password, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = Echo(jid, password, "--plain" in sys.argv[4:])
    client.connect(host="127.0.0.1", port=port)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
