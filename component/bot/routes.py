"""Pure: which URL serves a stanza. `[bot.routes]` maps a local part to its own URL; `bot.url` serves the
rest; both may hold {local}, {kind}, {type}, {to} and {from} (as mod_rest's rest_callback_url does), filled in
percent-encoded."""

from __future__ import annotations

from urllib.parse import quote

from component.config import BotSection
from component.stanza import Stanza, split_jid


class Router:
    def __init__(self, bot: BotSection) -> None:
        self._default = bot.url or None
        self._routes = dict(bot.routes)

    def template_for(self, stanza: Stanza) -> str | None:
        """The URL template (the bot) serving `stanza`, or None when no bot serves its recipient."""
        return self._routes.get(split_jid(stanza.to)[0].lower(), self._default)

    def url_for(self, stanza: Stanza) -> str | None:
        """The bot URL for `stanza`, or None when no bot serves its recipient."""
        template = self.template_for(stanza)
        return None if template is None else fill(template, stanza)


def fill(template: str, stanza: Stanza) -> str:
    """A URL template with the stanza's values in its placeholders."""
    if "{" not in template:
        return template
    values = {"local": split_jid(stanza.to)[0], "kind": stanza.kind, "type": stanza.type or "", "to": stanza.to}
    values["from"] = stanza.from_
    return template.format(**{name: quote(value, safe="") for name, value in values.items()})
