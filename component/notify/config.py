"""The notification sections, in MongooseIM's shape: `[outgoing_pools.http.NAME]` (an HTTP service and how many
requests at once) and `[[event_pusher.http.handlers]]` (a path and the callbacks, loaded once, here); for the rabbit
backend `[outgoing_pools.rabbit.event_pusher]` (the broker) and `[event_pusher.rabbit]` (the exchanges)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import tomlkit

from component.notify.callbacks import DEFAULT_MODULE, CallbackError, Callbacks, load_callbacks
from component.options import (
    ConfigError,
    Converter,
    Option,
    commented_lines,
    expect,
    http_url,
    masked,
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


# --- The rabbit backend -----------------------------------------------------------------------------------------

RABBIT_PASSWORD_ENV = "XMPP_COMPONENT_RABBIT_PASSWORD"
RABBIT_POOL = "event_pusher"  # MongooseIM's tag: mod_event_pusher_rabbit publishes through this pool only
EXCHANGE_KEYS = ("presence_exchange", "chat_msg_exchange", "groupchat_msg_exchange")
_EXCHANGE_TYPES = ("topic", "direct", "fanout", "headers")
_BOOLEAN = Converter(partial(expect, accepted=(bool,), expected="a boolean"))


def _tcp_port(key: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{key}: expected a TCP port from 1 to 65535, got {value}")
    return value


def _exchange_type(key: str, value: str) -> str:
    if value not in _EXCHANGE_TYPES and not value.startswith("x-"):
        raise ConfigError(
            f"{key}: expected 'topic', 'direct', 'fanout', 'headers' or a plugin's 'x-...', got {value!r}"
        )
    return value


_DURABLE = "declared durable, so that it outlives a broker restart (queues bound to it must be durable too)"


@dataclass(frozen=True, slots=True)
class RabbitConnection:
    host: str = opt("address of the RabbitMQ server", "localhost", non_empty)
    port: int = opt("its AMQP port", 5672, _tcp_port)
    username: str = opt("the user the component logs in as", "guest", non_empty)
    password: str = opt(
        f"that user's password; ${RABBIT_PASSWORD_ENV} overrides it", "guest", env=RABBIT_PASSWORD_ENV, mask=masked
    )
    virtual_host: str = opt("the virtual host of the exchanges", "/", non_empty)
    confirms_enabled: bool = opt(
        "publisher confirms: an event counts as published once the broker has acked it, and is published again "
        "after a reconnect until then (MongooseIM's default is false)",
        True,
        read=_BOOLEAN,
    )


@dataclass(frozen=True, slots=True)
class RabbitPool:
    """[outgoing_pools.rabbit.event_pusher]: the broker the rabbit backend publishes to, on one connection."""

    connection: RabbitConnection = opt("[outgoing_pools.rabbit.event_pusher.connection]: where, and as whom")
    scope: str = opt("accepted for MongooseIM configs; must be 'global'", "global", _scope)


@dataclass(frozen=True, slots=True)
class PresenceExchange:
    name: str = opt("the exchange's name", "presence", non_empty)
    type: str = opt("the exchange's type: topic, direct, fanout, headers or a plugin's x-...", "topic", _exchange_type)
    durable: bool = opt(_DURABLE, False, read=_BOOLEAN)


@dataclass(frozen=True, slots=True)
class ChatExchange:
    name: str = opt("the exchange's name", "chat_msg", non_empty)
    type: str = opt("the exchange's type: topic, direct, fanout, headers or a plugin's x-...", "topic", _exchange_type)
    durable: bool = opt(_DURABLE, False, read=_BOOLEAN)
    sent_topic: str = opt("routing key of a message a bot sends: <bot JID>.<sent_topic>", "chat_msg_sent", non_empty)
    recv_topic: str = opt("routing key of a message a bot gets: <bot JID>.<recv_topic>", "chat_msg_recv", non_empty)


@dataclass(frozen=True, slots=True)
class GroupchatExchange:
    name: str = opt("the exchange's name", "groupchat_msg", non_empty)
    type: str = opt("the exchange's type: topic, direct, fanout, headers or a plugin's x-...", "topic", _exchange_type)
    durable: bool = opt(_DURABLE, False, read=_BOOLEAN)
    sent_topic: str = opt(
        "routing key of a groupchat message a bot sends: <bot JID>.<sent_topic>", "groupchat_msg_sent", non_empty
    )
    recv_topic: str = opt(
        "routing key of a groupchat message a bot gets: <bot JID>.<recv_topic>", "groupchat_msg_recv", non_empty
    )


@dataclass(frozen=True, slots=True)
class RabbitPusher:
    """[event_pusher.rabbit]: events as JSON messages to RabbitMQ. An exchange is on (declared, published to) only
    when its table is present; `{}` takes every default."""

    presence_exchange: PresenceExchange = opt(
        "[event_pusher.rabbit.presence_exchange]: users' presence toward the bots (available, unavailable)"
    )
    chat_msg_exchange: ChatExchange = opt("[event_pusher.rabbit.chat_msg_exchange]: chat messages to and from bots")
    groupchat_msg_exchange: GroupchatExchange = opt(
        "[event_pusher.rabbit.groupchat_msg_exchange]: groupchat messages to and from bots"
    )
    max_queued: int = opt(
        "events waiting to be published and confirmed; past it the oldest waiting one is dropped", 10000, positive
    )


@dataclass(frozen=True, slots=True)
class Rabbit:
    """The rabbit backend as configured: the broker, the section, and the exchanges that are on."""

    pool: RabbitPool
    pusher: RabbitPusher
    exchanges: frozenset[str]  # of EXCHANGE_KEYS: those present in the file

    @property
    def connection(self) -> RabbitConnection:
        return self.pool.connection

    @property
    def presence(self) -> PresenceExchange | None:
        return self.pusher.presence_exchange if "presence_exchange" in self.exchanges else None

    @property
    def chat(self) -> ChatExchange | None:
        return self.pusher.chat_msg_exchange if "chat_msg_exchange" in self.exchanges else None

    @property
    def groupchat(self) -> GroupchatExchange | None:
        return self.pusher.groupchat_msg_exchange if "groupchat_msg_exchange" in self.exchanges else None


# For the list of options: the dotted key each section stands under.
SECTIONS = (
    ("outgoing_pools.http.NAME", HttpPool),
    ("event_pusher.http.handlers[]", PushHandler),
    (f"outgoing_pools.rabbit.{RABBIT_POOL}", RabbitPool),
    ("event_pusher.rabbit", RabbitPusher),
)
BACKENDS = ("http", "rabbit")


def _backends(key: str, raw: Any) -> dict[str, Any]:
    """Table `key` (outgoing_pools or event_pusher), by backend: MongooseIM nests these sections so."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a table, got {type(raw).__name__}")
    for sub in raw:
        if sub not in BACKENDS:
            raise ConfigError(f"{key}.{sub}: unknown key (known: {', '.join(BACKENDS)})")
    return raw


def _only(key: str, raw: Any, allowed: str, default: Any) -> Any:
    """The one entry `allowed` of table `key`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{key}: expected a table, got {type(raw).__name__}")
    for sub in raw:
        if sub != allowed:
            raise ConfigError(f"{key}.{sub}: unknown key (known: {allowed})")
    return raw.get(allowed, default)


def read(raw: Mapping[str, Any]) -> tuple[dict[str, HttpPool], tuple[PushHandler, ...]]:
    """The HTTP pools and handlers of a configuration; each handler's pool must exist."""
    pools_table = _backends("outgoing_pools", raw.get("outgoing_pools", {})).get("http", {})
    if not isinstance(pools_table, dict):
        raise ConfigError(f"outgoing_pools.http: expected a table, got {type(pools_table).__name__}")
    pools = {name: read_section(HttpPool, f"outgoing_pools.http.{name}", body) for name, body in pools_table.items()}
    pusher = _backends("event_pusher", raw.get("event_pusher", {})).get("http", {})
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


def read_rabbit(raw: Mapping[str, Any], env: Mapping[str, str]) -> Rabbit | None:
    """The rabbit backend of a configuration, or None when [event_pusher.rabbit] is absent."""
    pools = _backends("outgoing_pools", raw.get("outgoing_pools", {})).get("rabbit", {})
    if not isinstance(pools, dict):
        raise ConfigError(f"outgoing_pools.rabbit: expected a table, got {type(pools).__name__}")
    for tag in pools:
        if tag != RABBIT_POOL:
            raise ConfigError(
                f"outgoing_pools.rabbit.{tag}: events go through the pool tagged {RABBIT_POOL!r} only "
                "(as in MongooseIM)"
            )
    body = _backends("event_pusher", raw.get("event_pusher", {})).get("rabbit")
    pool_key = f"outgoing_pools.rabbit.{RABBIT_POOL}"
    if body is None:
        if pools:
            raise ConfigError(f"{pool_key}: no [event_pusher.rabbit] publishes through it (add one)")
        return None
    pusher = read_section(RabbitPusher, "event_pusher.rabbit", body)
    exchanges = frozenset(key for key in EXCHANGE_KEYS if key in body)
    if not exchanges:
        raise ConfigError(
            f"event_pusher.rabbit: no exchange is on; add {', '.join(EXCHANGE_KEYS[:-1])} or {EXCHANGE_KEYS[-1]} "
            "(`{}` takes every default)"
        )
    if RABBIT_POOL not in pools:
        raise ConfigError(f"event_pusher.rabbit: needs [{pool_key}], the broker to publish to")
    pool = read_section(RabbitPool, pool_key, pools[RABBIT_POOL])
    if env.get(RABBIT_PASSWORD_ENV):  # a nested table: the environment is applied here
        pool = replace(pool, connection=replace(pool.connection, password=env[RABBIT_PASSWORD_ENV]))
    return Rabbit(pool, pusher, exchanges)


def describe(
    doc: tomlkit.TOMLDocument,
    pools: Mapping[str, HttpPool],
    handlers: tuple[PushHandler, ...],
    rabbit: Rabbit | None = None,
) -> None:
    """Add the pools, handlers and rabbit backend in effect to `doc`, or a comment saying notifications are off."""
    if not pools and not handlers and rabbit is None:
        doc.add(
            tomlkit.comment("no [[event_pusher.http.handlers]] nor [event_pusher.rabbit]: event notifications are off")
        )
        return
    outgoing: dict[str, Any] = {}
    pushers: dict[str, Any] = {}
    if pools:
        outgoing["http"] = {name: shown(pool) for name, pool in pools.items()}
    if handlers:
        listed = tomlkit.aot()
        for handler in handlers:
            listed.append(shown(handler))
        pushers["http"] = {"handlers": listed}
    if rabbit is not None:
        outgoing["rabbit"] = {RABBIT_POOL: shown(rabbit.pool)}
        table = shown(rabbit.pusher)
        for key in EXCHANGE_KEYS:
            if key not in rabbit.exchanges:
                del table[key]  # off: absent, as in the file
        pushers["rabbit"] = table
    if outgoing:
        doc.add("outgoing_pools", outgoing)
    if pushers:
        doc.add("event_pusher", pushers)


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
        "",
        "Events to RabbitMQ, as MongooseIM's mod_event_pusher rabbit backend publishes them (off while",
        "[event_pusher.rabbit] is absent). Uncomment to publish presence, chat and groupchat events to the topic",
        "exchanges presence, chat_msg and groupchat_msg; an exchange whose table is absent is off.",
        "",
        *commented_lines(f"outgoing_pools.rabbit.{RABBIT_POOL}", RabbitPool),
        "",
        *commented_lines("event_pusher.rabbit", RabbitPusher),
    ]
