"""The notification sections, in MongooseIM's shape: `[outgoing_pools.http.NAME]` (an HTTP service and how many
requests at once) and `[[event_pusher.http.handlers]]` (a path and the callbacks, loaded once, here)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import tomlkit

from component.notify.callbacks import DEFAULT_MODULE, CallbackError, Callbacks, load_callbacks
from component.options import (
    ConfigError,
    Converter,
    Option,
    commented_lines,
    http_url,
    non_empty,
    opt,
    positive,
    read_section,
    shown,
)


def _scope(key: str, value: str) -> str:
    if value != "global":
        raise ConfigError(
            f'{key}: only "global" is meaningful here (MongooseIM\'s host_type scopes are not), got {value!r}'
        )
    return value


def _read_callbacks(key: str, value: Any) -> Callbacks:
    try:
        return load_callbacks(str(value))  # callback_module, read just before, is a string
    except CallbackError as exc:
        raise ConfigError(f"{key}: {exc}") from None


@dataclass(frozen=True, slots=True)
class PoolConnection:
    host: str = opt(
        "scheme://host:port of the HTTP service",
        check=http_url,
        example="http://127.0.0.1:8000",
    )
    path_prefix: str = opt("put before every handler's path", "", example="/webservice")
    request_timeout: int = opt("milliseconds one notification may take", 2000, positive)


@dataclass(frozen=True, slots=True)
class HttpPool:
    """[outgoing_pools.http.NAME]: connections to one HTTP service, shared by the handlers naming it."""

    connection: PoolConnection = opt("[outgoing_pools.http.NAME.connection]: where and how long")
    workers: int = opt("concurrent connections to the host, kept alive", 20, positive)
    scope: str = opt("accepted for MongooseIM configs; must be 'global'", "global", _scope)


@dataclass(frozen=True, slots=True)
class PushHandler:
    """[[event_pusher.http.handlers]]: turns events into HTTP notifications through one pool."""

    pool_name: str = opt("the outgoing pool to send through", "http_pool", non_empty)
    path: str = opt("appended to the pool's path_prefix", "", example="/notifications")
    callback_module: str = opt(
        "any importable Python module giving should_make_req/prepare_headers/prepare_body "
        "(see examples/alerts_callback.py)",
        DEFAULT_MODULE,
        non_empty,
    )
    max_queued: int = opt("notifications waiting to be sent; past it the oldest is dropped", 1000, positive)
    callbacks: Callbacks = field(
        default_factory=lambda: load_callbacks(DEFAULT_MODULE),
        metadata={
            "option": Option(
                "the callbacks of callback_module, imported once, when the configuration is read",
                key="callback_module",
                read=Converter(_read_callbacks),
            )
        },
    )


# For the list of options: the dotted key each section stands under.
SECTIONS = (("outgoing_pools.http.NAME", HttpPool), ("event_pusher.http.handlers[]", PushHandler))


def _only(key: str, raw: Any, allowed: str, default: Any) -> Any:
    """The one entry `allowed` of table `key` (MongooseIM nests these sections by backend: http)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a table, got {type(raw).__name__}")
    for sub in raw:
        if sub != allowed:
            raise ConfigError(f"{key}.{sub}: unknown key (known: {allowed})")
    return raw.get(allowed, default)


def read(raw: Mapping[str, Any]) -> tuple[dict[str, HttpPool], tuple[PushHandler, ...]]:
    """The pools and the handlers of a configuration; each handler's pool must exist."""
    pools_table = _only("outgoing_pools", raw.get("outgoing_pools", {}), "http", {})
    if not isinstance(pools_table, dict):
        raise ConfigError(f"outgoing_pools.http: expected a table, got {type(pools_table).__name__}")
    pools = {name: read_section(HttpPool, f"outgoing_pools.http.{name}", body) for name, body in pools_table.items()}
    pusher = _only("event_pusher", raw.get("event_pusher", {}), "http", {})
    listed = _only("event_pusher.http", pusher, "handlers", [])
    if not isinstance(listed, list):
        raise ConfigError(f"event_pusher.http.handlers: expected a list of tables, got {type(listed).__name__}")
    handlers = []
    for index, body in enumerate(listed):
        key = f"event_pusher.http.handlers[{index}]"
        handler = read_section(PushHandler, key, body)
        if handler.pool_name not in pools:
            known = ", ".join(pools) or "none is configured"
            raise ConfigError(f"{key}.pool_name: no pool [outgoing_pools.http.{handler.pool_name}] (pools: {known})")
        handlers.append(handler)
    return pools, tuple(handlers)


def describe(doc: tomlkit.TOMLDocument, pools: Mapping[str, HttpPool], handlers: tuple[PushHandler, ...]) -> None:
    """Add the pools and handlers in effect to `doc`, or a comment saying notifications are off."""
    if not pools and not handlers:
        doc.add(tomlkit.comment("no [[event_pusher.http.handlers]]: event notifications are off"))
        return
    if pools:
        doc.add("outgoing_pools", {"http": {name: shown(pool) for name, pool in pools.items()}})
    if handlers:
        listed = tomlkit.aot()
        for handler in handlers:
            listed.append(shown(handler))
        doc.add("event_pusher", {"http": {"handlers": listed}})


def starter_comments() -> list[str]:
    """The notification sections, commented out, for a starter configuration ('' for a blank line)."""
    return [
        "Event notifications, in the shape of MongooseIM's mod_event_pusher HTTP backend (off while no handler is",
        "listed). Uncomment to POST `author=alice&server=localhost&receiver=echo&message=...` for every incoming",
        "chat message to http://127.0.0.1:8000/webservice/notifications.",
        "",
        *commented_lines("outgoing_pools.http.http_pool", HttpPool),
        "",
        *commented_lines("event_pusher.http.handlers", PushHandler, array=True),
    ]
