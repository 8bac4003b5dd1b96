"""Pure: which URL serves a stanza. `[bot.routes]` maps a local part to its own URL; `bot.url` serves the
rest; both may hold {local}, {kind} and {type}, filled in percent-encoded."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

from yarl import URL

from component.codec import Stanza
from component.config import BotSection


class Router:
    def __init__(self, bot: BotSection) -> None:
        self._default = bot.url or None
        self._routes = dict(bot.routes)

    def url_for(self, stanza: Stanza) -> URL | None:
        """The bot URL for `stanza`, or None when no bot serves its recipient."""
        local = local_part(stanza.to)
        template = self._routes.get(local.lower(), self._default)
        if template is None:
            return None
        if "{" in template:
            template = template.format(
                local=quote(local, safe=""), kind=quote(stanza.kind, safe=""), type=quote(stanza.type or "", safe="")
            )
        return _parsed(template)


@lru_cache(maxsize=4096)
def _parsed(url: str) -> URL:
    """URLs parsed once (encoded=True: placeholders are percent-encoded already)."""
    return URL(url, encoded=True)


def local_part(jid: str) -> str:
    """'Echo@bot.example/r' -> 'Echo'; the bare domain -> ''."""
    bare = jid.partition("/")[0]
    return bare.rpartition("@")[0]
