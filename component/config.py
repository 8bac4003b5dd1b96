"""The TOML configuration: read with tomlkit, checked field by field, returned as frozen dataclasses.

Every option is declared once below, with its default and its documentation; unknown keys, wrong types,
bad values and missing required keys raise `ConfigError` naming the dotted key.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import tomlkit
from slixmpp.jid import JID, InvalidJID

KINDS = ("message", "presence", "iq")
SECRET_ENV = "XMPP_COMPONENT_SECRET"
SIGNING_SECRET_ENV = "XMPP_COMPONENT_SIGNING_SECRET"
API_TOKEN_ENV = "XMPP_COMPONENT_API_TOKEN"
URL_PLACEHOLDERS = ("local", "kind", "type")


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the dotted key."""


def _opt(doc: str, default: Any = MISSING, check: Callable[[str, Any], Any] | None = None) -> Any:
    meta = {"doc": doc, "check": check}
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


def _domain(key: str, value: str) -> str:
    try:
        jid = JID(value)
    except InvalidJID as exc:
        raise ConfigError(f"{key}: expected a domain such as 'bot.example.com', got {value!r} ({exc})") from None
    if jid.user or jid.resource or not jid.domain:
        raise ConfigError(f"{key}: expected a bare domain such as 'bot.example.com', got {value!r}")
    return jid.domain


def _non_empty(key: str, value: str) -> str:
    if not value:
        raise ConfigError(f"{key}: must not be empty")
    return value


def _port(key: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{key}: expected a TCP port from 1 to 65535, got {value}")
    return value


def _positive(key: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"{key}: expected a number greater than 0, got {value}")
    return value


def _http_url(key: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")
    return value


def _bot_url(key: str, value: str) -> str:
    """An http(s) URL that may hold the placeholders {local}, {kind} and {type}; '' when routes cover all."""
    if value == "":
        return value
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(value) if name is not None]
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc} in {value!r} (write {{{{ and }}}} for literal braces)") from None
    for name in names:
        if name not in URL_PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in URL_PLACEHOLDERS)
            raise ConfigError(f"{key}: unknown placeholder {{{name}}} (known: {known})")
    _http_url(key, value.format(local="x", kind="message", type="chat"))
    return value


def _routes(key: str, value: dict[str, str]) -> dict[str, str]:
    routes = {}
    for local, url in value.items():
        if not local or "@" in local or "/" in local:
            raise ConfigError(f"{key}.{local}: expected the local part of a bot JID, such as 'weather'")
        routes[local.lower()] = _bot_url(f"{key}.{local}", url)
    return routes


def _signing_secret(key: str, value: str) -> str:
    if value:
        decode_signing_secret(key, value)
    return value


def decode_signing_secret(key: str, value: str) -> bytes:
    """A Standard Webhooks secret: 'whsec_' + base64 -> the key bytes."""
    encoded = value.removeprefix("whsec_")
    try:
        secret = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{key}: expected 'whsec_' followed by base64 (a Standard Webhooks secret)") from None
    if len(secret) < 16:
        raise ConfigError(f"{key}: the secret is {len(secret)} bytes; use at least 16 (24 to 64 is usual)")
    return secret


def _format(key: str, value: str) -> str:
    if value not in ("json", "xml"):
        raise ConfigError(f"{key}: expected 'json' or 'xml', got {value!r}")
    return value


def _kinds(key: str, value: list[str]) -> tuple[str, ...]:
    for kind in value:
        if kind not in KINDS:
            raise ConfigError(f"{key}: expected stanza kinds among {', '.join(KINDS)}, got {kind!r}")
    return tuple(dict.fromkeys(value))


def _headers(key: str, value: dict[str, str]) -> dict[str, str]:
    for name, header in value.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ConfigError(f"{key}.{name}: not a valid HTTP header name")
        if "\r" in header or "\n" in header:
            raise ConfigError(f"{key}.{name}: header values must not contain line breaks")
    return value


def parse_listen(key: str, value: str) -> tuple[str, int] | None:
    """'host:port' or '[v6]:port' -> (host, port); '' -> None (off). Port 0 picks a free port."""
    if value == "":
        return None
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", value)
    if not match:
        raise ConfigError(f"{key}: expected 'host:port' (or '[::1]:port', or '' for off), got {value!r}")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ConfigError(f"{key}: port {port} is out of range")
    return host, port


def _listen(key: str, value: str) -> str:
    parse_listen(key, value)
    return value


@dataclass(frozen=True, slots=True)
class ComponentSection:
    jid: str = _opt("the component's domain (every JID of it is served), e.g. 'bot.example.com'", check=_domain)
    secret: str = _opt(f"the shared secret of the component port; ${SECRET_ENV} overrides it", check=_non_empty)
    host: str = _opt("address of the XMPP server's component port", "127.0.0.1", _non_empty)
    port: int = _opt("the XMPP server's component port", 5347, _port)
    max_stanza_bytes: int = _opt(
        "largest stanza written to the server (keep it under the server's limit: Prosody's is 512 KiB)",
        500000,
        _positive,
    )


@dataclass(frozen=True, slots=True)
class BotSection:
    url: str = _opt("where stanzas are POSTed; may hold {local}, {kind}, {type}; optional with routes", "", _bot_url)
    routes: dict[str, str] = _opt("local part -> URL of its own bot, overriding url for it", {}, _routes)
    format: str = _opt("what is POSTed: 'json' (mod_component_http's format) or 'xml' (the stanza)", "json", _format)
    signing_secret: str = _opt(
        f"'whsec_' + base64: sign requests the Standard Webhooks way; ${SIGNING_SECRET_ENV} overrides it",
        "",
        _signing_secret,
    )
    stanzas: tuple[str, ...] = _opt("stanza kinds forwarded to the bot: message, presence, iq", ("message",), _kinds)
    timeout: float = _opt("seconds one bot request may take, reply included", 10.0, _positive)
    max_in_flight: int = _opt("bot requests under way at once", 100, _positive)
    max_queued: int = _opt(
        "stanzas accepted but not yet answered; past it senders get resource-constraint", 1000, _positive
    )
    max_reply_bytes: int = _opt("largest bot reply body read, in bytes", 1048576, _positive)
    headers: dict[str, str] = _opt("extra request headers, e.g. {Authorization = 'Bearer ...'}", {}, _headers)


@dataclass(frozen=True, slots=True)
class ApiSection:
    listen: str = _opt("address of the send API, 'host:port'; '' (the default) turns it off", "", _listen)
    token: str = _opt(f"bearer token the send API requires; ${API_TOKEN_ENV} overrides it", "")


@dataclass(frozen=True, slots=True)
class PresenceSection:
    resource: str = _opt("resource of the always-online presence sent for bot JIDs", "default", _non_empty)


@dataclass(frozen=True, slots=True)
class WebSection:
    listen: str = _opt(
        "address of /metrics and /healthz, 'host:port'; '' turns the server off", "127.0.0.1:9090", _listen
    )


def _scope(key: str, value: str) -> str:
    if value != "global":
        raise ConfigError(
            f'{key}: only "global" is meaningful here (MongooseIM\'s host_type scopes are not), got {value!r}'
        )
    return value


def _callback_module(key: str, value: str) -> str:
    from component.notify.callbacks import CallbackError, load_callbacks

    try:
        load_callbacks(value)
    except CallbackError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return value


@dataclass(frozen=True, slots=True)
class PoolConnection:
    host: str = _opt("scheme://host:port of the HTTP service, e.g. 'http://127.0.0.1:8000'", check=_http_url)
    path_prefix: str = _opt("path put before every handler's path", "")
    request_timeout: int = _opt("milliseconds one notification may take", 2000, _positive)


@dataclass(frozen=True, slots=True)
class HttpPool:
    """[outgoing_pools.http.NAME]: connections to one HTTP service, shared by the handlers naming it."""

    connection: PoolConnection = _opt("[outgoing_pools.http.NAME.connection]: where and how long")
    workers: int = _opt("concurrent connections to the host (kept alive)", 20, _positive)
    scope: str = _opt("accepted for MongooseIM configs; must be 'global'", "global", _scope)


@dataclass(frozen=True, slots=True)
class PushHandler:
    """[[event_pusher.http.handlers]]: turns events into HTTP notifications through one pool."""

    pool_name: str = _opt("the outgoing pool to send through", "http_pool", _non_empty)
    path: str = _opt("appended to the pool's path_prefix", "")
    callback_module: str = _opt(
        "importable Python module with should_make_req/prepare_headers/prepare_body",
        "component.notify.defaults",
        _callback_module,
    )
    max_queued: int = _opt("notifications waiting to be sent; past it the oldest is dropped", 1000, _positive)


@dataclass(frozen=True, slots=True)
class Config:
    component: ComponentSection
    bot: BotSection
    presence: PresenceSection = field(default_factory=PresenceSection)
    web: WebSection = field(default_factory=WebSection)
    api: ApiSection = field(default_factory=ApiSection)
    pools: dict[str, HttpPool] = field(default_factory=dict)
    handlers: tuple[PushHandler, ...] = ()


_TYPE_NAMES: dict[str, tuple[tuple[type, ...], str]] = {
    "str": ((str,), "a string"),
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "tuple[str, ...]": ((list,), "a list of strings"),
    "dict[str, str]": ((dict,), "a table of strings"),
}

S = TypeVar("S")


def _type_check(key: str, annotation: str, value: Any) -> Any:
    accepted, name = _TYPE_NAMES[annotation]
    if isinstance(value, bool) or not isinstance(value, accepted):
        raise ConfigError(f"{key}: expected {name}, got {type(value).__name__} {value!r}")
    checked: Any = value  # isinstance() with a tuple of types narrows to object
    if annotation == "tuple[str, ...]" and not all(isinstance(v, str) for v in checked):
        raise ConfigError(f"{key}: expected a list of strings, got {checked!r}")
    if annotation == "dict[str, str]":
        for k, v in checked.items():
            if not isinstance(v, str):
                raise ConfigError(f"{key}.{k}: expected a string, got {type(v).__name__} {v!r}")
    return float(checked) if annotation == "float" else checked


def _section(cls: type[S], name: str, raw: Any, overrides: Mapping[str, Any] | None = None) -> S:
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table, got {type(raw).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for f in known.values():
        key = f"{name}.{f.name}"
        if overrides and f.name in overrides:
            value = overrides[f.name]
        elif str(f.type) in _NESTED:
            value = _section(_NESTED[str(f.type)], key, raw.get(f.name, {}))
        elif f.name in raw:
            value = _type_check(key, str(f.type), raw[f.name])
        elif f.default is MISSING and f.default_factory is MISSING:
            raise ConfigError(f"{key}: required ({f.metadata['doc']})")
        else:
            continue
        check = f.metadata.get("check")
        values[f.name] = check(key, value) if check else value
    return cls(**values)


SECTIONS: dict[str, type] = {
    "component": ComponentSection,
    "bot": BotSection,
    "presence": PresenceSection,
    "web": WebSection,
    "api": ApiSection,
}


_NESTED: dict[str, type] = {"PoolConnection": PoolConnection}
NOTIFY_SECTIONS = ("outgoing_pools", "event_pusher")


def _only(key: str, raw: Any, allowed: str, default: Any) -> Any:
    """The one entry `allowed` of table `key` (MongooseIM nests these sections by backend: http)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a table, got {type(raw).__name__}")
    for sub in raw:
        if sub != allowed:
            raise ConfigError(f"{key}.{sub}: unknown key (known: {allowed})")
    return raw.get(allowed, default)


def _notifications(raw: Mapping[str, Any]) -> tuple[dict[str, HttpPool], tuple[PushHandler, ...]]:
    pools_table = _only("outgoing_pools", raw.get("outgoing_pools", {}), "http", {})
    if not isinstance(pools_table, dict):
        raise ConfigError(f"outgoing_pools.http: expected a table, got {type(pools_table).__name__}")
    pools = {name: _section(HttpPool, f"outgoing_pools.http.{name}", body) for name, body in pools_table.items()}
    pusher = _only("event_pusher", raw.get("event_pusher", {}), "http", {})
    listed = _only("event_pusher.http", pusher, "handlers", [])
    if not isinstance(listed, list):
        raise ConfigError(f"event_pusher.http.handlers: expected a list of tables, got {type(listed).__name__}")
    handlers = []
    for index, body in enumerate(listed):
        key = f"event_pusher.http.handlers[{index}]"
        handler = _section(PushHandler, key, body)
        if handler.pool_name not in pools:
            known = ", ".join(pools) or "none is configured"
            raise ConfigError(f"{key}.pool_name: no pool [outgoing_pools.http.{handler.pool_name}] (pools: {known})")
        handlers.append(handler)
    return pools, tuple(handlers)


def from_dict(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Check a plain (already parsed) configuration; the environment may supply the secret."""
    env = os.environ if env is None else env
    for key in raw:
        if key not in SECTIONS and key not in NOTIFY_SECTIONS:
            raise ConfigError(f"{key}: unknown section (known: {', '.join((*SECTIONS, *NOTIFY_SECTIONS))})")
    from_env = {
        "component": {"secret": env.get(SECRET_ENV)},
        "bot": {"signing_secret": env.get(SIGNING_SECRET_ENV)},
        "api": {"token": env.get(API_TOKEN_ENV)},
    }
    built: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        overrides = {k: v for k, v in from_env.get(name, {}).items() if v}
        built[name] = _section(cls, name, raw.get(name, {}), overrides)
    built["pools"], built["handlers"] = _notifications(raw)
    config = Config(**built)
    if not config.bot.url and not config.bot.routes:
        raise ConfigError("bot.url: required unless [bot.routes] names every bot (where stanzas are POSTed)")
    if config.api.listen and not config.api.token:
        raise ConfigError(f"api.token: required when api.listen is set (or set ${API_TOKEN_ENV})")
    return config


def load(path: Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and check a TOML file; every problem is a `ConfigError` with one line of text."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: the configuration file is not UTF-8") from None
    try:
        raw = tomlkit.parse(text).unwrap()
    except tomlkit.exceptions.ParseError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return from_dict(raw, env)


def describe() -> list[tuple[str, str, str]]:
    """Every option as (dotted key, default, documentation), for --check-config and the docs."""
    rows = []
    for name, cls in SECTIONS.items():
        for f in fields(cls):
            if f.default is not MISSING:
                default = repr(f.default)
            elif f.default_factory is not MISSING:
                default = repr(f.default_factory())
            else:
                default = "(required)"
            rows.append((f"{name}.{f.name}", default, f.metadata["doc"]))
    return rows
