"""Pure: which URL serves a stanza. `[bot.routes]` maps a local part to its own URL; `bot.url` serves the
rest; both may hold {local}, {kind} and {type}, filled in percent-encoded."""

from __future__ import annotations

from urllib.parse import quote

from component.config import BotSection
from component.stanza import Stanza, split_jid


class Router:
    def __init__(self, bot: BotSection) -> None:
        self._default = bot.url or None
        self._routes = dict(bot.routes)

    def url_for(self, stanza: Stanza) -> str | None:
        """The bot URL for `stanza`, or None when no bot serves its recipient."""
        local = split_jid(stanza.to)[0]
        template = self._routes.get(local.lower(), self._default)
        if template is None or "{" not in template:
            return template
        return template.format(
            local=quote(local, safe=""), kind=quote(stanza.kind, safe=""), type=quote(stanza.type or "", safe="")
        )
