"""The TOML configuration, read in one pass into typed frozen dataclasses: this package's public names.

`sections` declares the component's options and reads a file (`load`, `from_dict`); `toml_errors` words syntax
errors; `starter` writes a configuration out. The option toolkit, shared with notify/, is `component.options`."""

from component.config.sections import (
    API_TOKEN_ENV,
    NOTIFY_SECTIONS,
    SECRET_ENV,
    SECTIONS,
    SIGNING_SECRET_ENV,
    URL_PLACEHOLDERS,
    ApiSection,
    BotSection,
    ComponentSection,
    Config,
    PresenceSection,
    RoomEntry,
    RoomsSection,
    StateSection,
    WebSection,
    from_dict,
    load,
)
from component.config.starter import STARTER_TITLE, describe, options, starter
from component.config.toml_errors import syntax_error
from component.options import ConfigError, ListenAddress

__all__ = [
    "API_TOKEN_ENV",
    "NOTIFY_SECTIONS",
    "SECRET_ENV",
    "SECTIONS",
    "SIGNING_SECRET_ENV",
    "STARTER_TITLE",
    "URL_PLACEHOLDERS",
    "ApiSection",
    "BotSection",
    "ComponentSection",
    "Config",
    "ConfigError",
    "ListenAddress",
    "PresenceSection",
    "RoomEntry",
    "RoomsSection",
    "StateSection",
    "WebSection",
    "describe",
    "from_dict",
    "load",
    "options",
    "starter",
    "syntax_error",
]
