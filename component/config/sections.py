"""The component's own sections ([component], [bot], [presence], [web], [api], [state], [rooms], [instance]) and
`Config`, which holds them and notify's; `from_dict` and `load` read a whole configuration into it, checked in one
pass."""

from __future__ import annotations

import base64
import binascii
import os
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomlkit
from slixmpp.jid import JID, InvalidJID
from tomlkit.exceptions import TOMLKitError

from component.config.toml_errors import syntax_error
from component.notify import config as notify
from component.options import (
    MASK,
    ConfigError,
    Converter,
    ListenAddress,
    expect,
    masked,
    non_empty,
    opt,
    positive,
    read_section,
)
from component.stanza import KINDS, Kind

SECRET_ENV = "XMPP_COMPONENT_SECRET"
SIGNING_SECRET_ENV = "XMPP_COMPONENT_SIGNING_SECRET"
API_TOKEN_ENV = "XMPP_COMPONENT_API_TOKEN"
BROKER_PASSWORD_ENV = "XMPP_COMPONENT_BROKER_PASSWORD"
URL_PLACEHOLDERS = {  # with the sample values a URL is checked with (as filled in: percent-encoded)
    "local": "x",
    "kind": KINDS[0],
    "type": "chat",
    "to": "x%40bot.example",
    "from": "alice%40example.org%2Fphone",
}


# --- Checks of values, beyond their types -----------------------------------------------------------------------


def _domain(key: str, value: str) -> str:
    try:
        jid = JID(value)
    except InvalidJID as exc:
        raise ConfigError(f"{key}: expected a domain such as 'bot.example.com', got {value!r} ({exc})") from None
    if jid.user or jid.resource or not jid.domain:
        raise ConfigError(f"{key}: expected a bare domain such as 'bot.example.com', got {value!r}")
    return jid.domain


def _port(key: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{key}: expected a TCP port from 1 to 65535, got {value}")
    return value


def _bot_url(key: str, value: str) -> str:
    """An http(s) URL that may hold the placeholders of URL_PLACEHOLDERS; '' when routes cover all. Stored
    as written: the bot client encodes it (IDNA hosts, percent-encoded paths)."""
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
    # The bot client's own reading of URLs: what passes here, it can send to. Imported when a URL is checked, so
    # that reading a configuration does not load the HTTP client.
    from component.bot.client import parse_url

    try:
        parse_url(value.format(**URL_PLACEHOLDERS))
    except ValueError as exc:
        filled = f" (with {', '.join(f'{{{n}}} = {v!r}' for n, v in URL_PLACEHOLDERS.items())})" if names else ""
        raise ConfigError(f"{key}: {exc}{filled}") from None
    return value


def _routes(key: str, value: dict[str, str]) -> dict[str, str]:
    routes = {}
    for local, url in value.items():
        if not local or "@" in local or "/" in local:
            raise ConfigError(f"{key}.{local}: expected the local part of a bot JID, such as 'weather'")
        routes[local.lower()] = _bot_url(f"{key}.{local}", non_empty(f"{key}.{local}", url))
    return routes


def _read_signing_key(key: str, value: Any) -> bytes | None:
    """A Standard Webhooks secret, 'whsec_' + base64, -> the key bytes; '' -> None (unsigned)."""
    if expect(key, value, (str,), "a string") == "":
        return None
    try:
        secret = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{key}: expected 'whsec_' followed by base64 (a Standard Webhooks secret)") from None
    if len(secret) < 16:
        raise ConfigError(f"{key}: the secret is {len(secret)} bytes; use at least 16 (24 to 64 is usual)")
    return secret


def _show_signing_key(key: bytes | None) -> str:
    return "" if key is None else "whsec_" + base64.b64encode(key).decode()


def _headers(key: str, value: dict[str, str]) -> dict[str, str]:
    for name, header in value.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise ConfigError(f"{key}.{name}: not a valid HTTP header name")
        if "\r" in header or "\n" in header:
            raise ConfigError(f"{key}.{name}: header values must not contain line breaks")
        if not re.fullmatch(r"[\t\x20-\x7e]*", header):
            # sent as is on every request: a value outside ASCII would fail there, not here
            raise ConfigError(
                f"{key}.{name}: header values must be printable ASCII (percent- or base64-encode the rest)"
            )
    return value


def _masked_headers(headers: dict[str, str]) -> dict[str, str]:
    return {name: MASK if name.lower() == "authorization" else value for name, value in headers.items()}


# --- The sections -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ComponentSection:
    jid: str = opt(
        "the component's domain (every JID of it is served), e.g. 'bot.example.com'",
        check=_domain,
        example="bot.example.com",
    )
    secret: str = opt(
        f"the shared secret of the XMPP server's component port; ${SECRET_ENV} overrides it",
        check=non_empty,
        env=SECRET_ENV,
        mask=masked,
    )
    host: str = opt("address of the XMPP server's component port", "127.0.0.1", non_empty)
    port: int = opt("the XMPP server's component port", 5347, _port)
    max_stanza_bytes: int = opt(
        "largest stanza written to the server; keep it under the server's own limit "
        "(Prosody: component_stanza_size_limit, 512 KiB by default)",
        500000,
        positive,
    )
    standby_retry: float = opt(
        "seconds between two attempts while the server refuses the stream with `conflict` because another instance "
        "holds the domain (Prosody: active/standby); the standby takes over within this of the active one's end",
        2.0,
        positive,
    )


@dataclass(frozen=True, slots=True)
class BotSection:
    url: str = opt(
        "where stanzas are POSTed; may hold {local}, {kind}, {type}, {to}, {from} (filled in percent-encoded), e.g. "
        "'http://127.0.0.1:8080/bots/{local}'; optional when routes name every bot",
        "",
        _bot_url,
        example="http://127.0.0.1:8080/",
    )
    routes: dict[str, str] = opt(
        "local part -> the URL of its own bot, overriding url for it, e.g. { weather = 'http://127.0.0.1:8081/hook' }",
        {},
        _routes,
    )
    format: Literal["json", "xml"] = opt(
        "what is POSTed: 'json' (mod_component_http's JSON) or 'xml' (the stanza, as application/xmpp+xml)", "json"
    )
    signing_key: bytes | None = opt(
        f"'whsec_' + base64: sign every request the Standard Webhooks way; ${SIGNING_SECRET_ENV} overrides it; "
        "'' leaves requests unsigned",
        None,
        key="signing_secret",
        read=Converter(_read_signing_key, _show_signing_key),
        env=SIGNING_SECRET_ENV,
        mask=masked,
    )
    stanzas: frozenset[Kind] = opt(
        f"stanza kinds forwarded to the bot: any of {', '.join(KINDS)}", frozenset({"message"})
    )
    timeout: float = opt("seconds one bot request may take, reply included", 10.0, positive)
    max_in_flight: int = opt("bot requests under way at once", 100, positive)
    max_queued: int = opt(
        "stanzas waiting for the bot; past that, senders get wait/resource-constraint at once", 1000, positive
    )
    max_reply_bytes: int = opt("largest bot reply body read, in bytes", 1048576, positive)
    headers: dict[str, str] = opt(
        "extra request headers, e.g. { Authorization = 'Bearer ...' }", {}, _headers, mask=_masked_headers
    )
    delivery: Literal["direct", "queued"] = opt(
        "'direct': each stanza POSTed once, a failure answered at once; 'queued': each stanza written to a durable "
        "queue in state.dir first, then POSTed in order per conversation and retried (connection failures, "
        "timeouts, 5xx, 408, 429) until bot.retry_for passes; iqs stay direct",
        "direct",
    )
    retry_for: float = opt(
        "queued delivery: seconds a stanza is retried, from its arrival; then the sender gets a timeout error and the "
        "stanza goes to the dead letters",
        86400.0,
        positive,
    )
    retry_first: float = opt(
        "queued delivery: seconds before the first retry; each further wait doubles (less up to half, at random)",
        1.0,
        positive,
    )
    retry_most: float = opt("queued delivery: the longest wait between two attempts, in seconds", 300.0, positive)


@dataclass(frozen=True, slots=True)
class PresenceSection:
    resource: str = opt("resource of the always-online presence sent for bot JIDs", "default", non_empty)


@dataclass(frozen=True, slots=True)
class WebSection:
    listen: ListenAddress | None = opt(
        "address of /metrics and /healthz, 'host:port' or '[::1]:port'; '' turns the server off",
        ListenAddress("127.0.0.1", 9090),
    )


@dataclass(frozen=True, slots=True)
class ApiSection:
    listen: ListenAddress | None = opt(
        "address of the send API (POST /v1/stanzas, /v1/iq), e.g. '127.0.0.1:8088'; '' (the default) turns it off",
        None,
    )
    token: str = opt(
        f"bearer token the send API requires (required with listen); ${API_TOKEN_ENV} overrides it",
        "",
        env=API_TOKEN_ENV,
        mask=masked,
    )


def _at_least_zero(key: str, value: int) -> int:
    if value < 0:
        raise ConfigError(f"{key}: expected 0 or more, got {value}")
    return value


def _tcp_port(key: str, value: int) -> int:
    if not 1 <= value <= 65535:
        raise ConfigError(f"{key}: expected a TCP port from 1 to 65535, got {value}")
    return value


def _instance_id(key: str, value: str) -> str:
    if "~" in value or any(c.isspace() for c in value):
        raise ConfigError(f"{key}: an instance id has no '~' and no spaces, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class InstanceSection:
    id: str = opt(
        "this process's name among several serving one domain, in every log line and in the metric "
        "component_instance_info; '' makes it the host name and the process id, e.g. 'web1-4711'; no '~' (it "
        "separates the id in the send API's iq ids)",
        "",
        _instance_id,
    )
    slots: int = opt(
        "the number of instances that serve the domain at once (ejabberd's component_number; 1 on Prosody): each "
        "holds a slot through a lock on the broker below, one more waits as a spare and takes the slot of one "
        "that dies; 0 takes no lock (every instance connects, as without a broker)",
        0,
        _at_least_zero,
    )
    broker_host: str = opt("address of the RabbitMQ broker that holds the slots' locks (with slots)", "localhost")
    broker_port: int = opt("its AMQP port", 5672, _tcp_port)
    broker_username: str = opt("the user the instance logs in as", "guest")
    broker_password: str = opt(
        f"that user's password; ${BROKER_PASSWORD_ENV} overrides it",
        "guest",
        env=BROKER_PASSWORD_ENV,
        mask=masked,
    )
    broker_virtual_host: str = opt("the virtual host of the slots' queues", "/")
    heartbeat: int = opt(
        "AMQP heartbeat in seconds: a slot held by an instance that stopped answering frees after about twice this",
        2,
        positive,
    )
    lock_retry: float = opt("seconds between a spare's tries to take a free slot", 0.2, positive)
    probe_interval: float = opt(
        "with slots of 2 or more (ejabberd's domain_balancing): seconds between the checks that the XMPP server "
        "routes stanzas to this instance's connection (probes sent to the domain itself); 0 checks nothing",
        10.0,
        _at_least_zero,
    )
    probe_timeout: float = opt("seconds a check waits for one of its probes to come back", 2.0, positive)


@dataclass(frozen=True, slots=True)
class StateSection:
    dir: str = opt(
        "folder of the component's own state (SQLite files: rooms added through the API, queued deliveries); "
        "created if missing; '' keeps no state",
        "",
    )


def _local_part(key: str, value: str) -> str:
    if not value or "@" in value or "/" in value:
        raise ConfigError(f"{key}: expected the local part of a bot JID, such as 'echo', got {value!r}")
    try:
        return JID(f"{value}@x.example").user
    except InvalidJID as exc:
        raise ConfigError(f"{key}: not a valid local part: {value!r} ({exc})") from None


def _room_jid(key: str, value: str) -> str:
    try:
        jid = JID(value)
    except InvalidJID as exc:
        raise ConfigError(f"{key}: not a valid room JID: {value!r} ({exc})") from None
    if not jid.user or jid.resource:
        raise ConfigError(f"{key}: expected a room's bare JID such as 'dev@conference.example.com', got {value!r}")
    return f"{jid.user}@{jid.domain.rstrip('.')}"


def _not_negative(key: str, value: int) -> int:
    if value < 0:
        raise ConfigError(f"{key}: expected 0 or more, got {value}")
    return value


@dataclass(frozen=True, slots=True)
class RoomEntry:
    """[[rooms.join]]: one room one bot sits in."""

    jid: str = opt("the room's bare JID", check=_room_jid, example="dev@conference.example.com")
    bot: str = opt("the local part of the bot JID that sits in the room", check=_local_part, example="echo")
    nick: str = opt("the bot's nick in the room; '' uses the bot's local part", "")
    password: str = opt("the room's password, if it has one", "", mask=masked)
    history: int = opt(
        "old messages asked for on joining and forwarded (marked with `delay`); 0 asks for none and drops any sent",
        0,
        _not_negative,
    )


def _read_rooms(key: str, value: Any) -> tuple[RoomEntry, ...]:
    entries: list[RoomEntry] = []
    for index, item in enumerate(expect(key, value, (list,), "an array of tables ([[rooms.join]])")):
        entry = read_section(RoomEntry, f"{key}[{index}]", item)
        for earlier, other in enumerate(entries):
            if (other.jid, other.bot) == (entry.jid, entry.bot):
                raise ConfigError(f"{key}[{index}]: bot {entry.bot!r} is already in {entry.jid} ({key}[{earlier}])")
        entries.append(entry)
    return tuple(entries)


def _show_rooms(entries: tuple[RoomEntry, ...]) -> list[dict[str, Any]]:
    return [
        {"jid": e.jid, "bot": e.bot, "nick": e.nick, "password": masked(e.password), "history": e.history}
        for e in entries
    ]


def _read_bots(key: str, value: Any) -> tuple[str, ...]:
    for index, item in enumerate(expect(key, value, (list,), "an array of strings")):
        expect(f"{key}[{index}]", item, (str,), "a string")
    return tuple(_local_part(f"{key}[{index}]", item) for index, item in enumerate(value))


@dataclass(frozen=True, slots=True)
class RoomsSection:
    """[rooms]: group chats (XEP-0045). The rooms themselves are [[rooms.join]] tables."""

    accept_invites: tuple[str, ...] = opt(
        "bots (local parts) that join the rooms they are invited to, e.g. ['echo']; the others only hear of it",
        (),
        read=Converter(_read_bots, list),
    )
    ping_interval: float = opt(
        "seconds between two self-pings (XEP-0410) of each joined room: a silent drop is found within this",
        60.0,
        positive,
    )
    timeout: float = opt("seconds to wait for the answer to a join or a self-ping", 30.0, positive)
    retry_first: float = opt(
        "seconds before joining again after a kick, a ban, a wrong password or another refusal; each further wait "
        "doubles",
        5.0,
        positive,
    )
    retry_most: float = opt("the longest wait between two attempts to join a room, in seconds", 600.0, positive)
    join: tuple[RoomEntry, ...] = opt(
        "the rooms the bots sit in: [[rooms.join]] tables of jid (the room), bot (its local part), nick, password "
        "and history, written after the [rooms] keys (instead of `join = []`)",
        (),
        read=Converter(_read_rooms, _show_rooms),
    )


@dataclass(frozen=True, slots=True)
class Config:
    """A whole configuration: the component's sections, and notify's pools, handlers and rabbit backend."""

    component: ComponentSection
    bot: BotSection
    presence: PresenceSection = field(default_factory=PresenceSection)
    web: WebSection = field(default_factory=WebSection)
    api: ApiSection = field(default_factory=ApiSection)
    state: StateSection = field(default_factory=StateSection)
    rooms: RoomsSection = field(default_factory=RoomsSection)
    instance: InstanceSection = field(default_factory=InstanceSection)
    pools: dict[str, notify.HttpPool] = field(default_factory=dict)
    handlers: tuple[notify.PushHandler, ...] = ()
    rabbit: notify.Rabbit | None = None


SECTIONS: dict[str, type] = {
    "component": ComponentSection,
    "bot": BotSection,
    "presence": PresenceSection,
    "web": WebSection,
    "api": ApiSection,
    "state": StateSection,
    "rooms": RoomsSection,
    "instance": InstanceSection,
}
NOTIFY_SECTIONS = ("outgoing_pools", "event_pusher")


def from_dict(raw: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Config:
    """Check a plain (already parsed) configuration; the environment may supply the secrets."""
    env = os.environ if env is None else env
    for key in raw:
        if key not in SECTIONS and key not in NOTIFY_SECTIONS:
            raise ConfigError(f"{key}: unknown section (known: {', '.join((*SECTIONS, *NOTIFY_SECTIONS))})")
    built: dict[str, Any] = {name: read_section(cls, name, raw.get(name, {}), env) for name, cls in SECTIONS.items()}
    pools, handlers = notify.read(raw)
    config = Config(**built, pools=pools, handlers=handlers, rabbit=notify.read_rabbit(raw, env))
    if not config.bot.url and not config.bot.routes:
        raise ConfigError("bot.url: required unless [bot.routes] names every bot (where stanzas are POSTed)")
    if config.bot.delivery == "queued" and not config.state.dir:
        raise ConfigError("state.dir: required when bot.delivery = 'queued' (the folder of the durable queue)")
    for index, entry in enumerate(config.rooms.join):
        if entry.jid.rpartition("@")[2] == config.component.jid:
            raise ConfigError(f"rooms.join[{index}].jid: a room of {config.component.jid} itself is one of the bots")
    if config.api.listen is not None and not config.api.token:
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
    except TOMLKitError as exc:
        line, sentence = syntax_error(text, exc)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: not valid TOML: {sentence}") from None
    return from_dict(raw, env)
