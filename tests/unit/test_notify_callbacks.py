"""Notification config, URLs, the default callback and callback loading."""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import parse_qs

import pytest

from component.config import ConfigError, from_dict
from component.notify import defaults
from component.notify.callbacks import CallbackError, load_callbacks
from component.notify.events import Event
from component.notify.pusher import join_url

BASE = {"component": {"jid": "bot.localhost", "secret": "s"}, "bot": {"url": "http://127.0.0.1:8080/"}}
POOL = {"http": {"http_pool": {"connection": {"host": "http://127.0.0.1:8000"}}}}


def event(
    direction: str = "in",
    kind: str = "message",
    type_: str = "chat",
    body: str | None = "Hi, Bob!",
    from_: str = "alice@localhost/phone",
    to: str = "Echo@bot.localhost",
) -> Event:
    return Event(direction, kind, type_, from_, to, body, "<message/>", "bot.localhost")  # type: ignore[arg-type]


def test_mongooseim_shape_with_defaults() -> None:
    cfg = from_dict({**BASE, "outgoing_pools": POOL, "event_pusher": {"http": {"handlers": [{}]}}}, env={})
    pool = cfg.pools["http_pool"]
    assert (pool.workers, pool.connection.path_prefix, pool.connection.request_timeout) == (20, "", 2000)
    [handler] = cfg.handlers
    assert (handler.pool_name, handler.path, handler.callback_module) == ("http_pool", "", "component.notify.defaults")


def test_array_of_tables_and_inline_forms_are_the_same() -> None:
    import tomlkit

    array = tomlkit.parse(
        "[outgoing_pools.http.http_pool]\nworkers = 50\n[outgoing_pools.http.http_pool.connection]\n"
        'host = "http://localhost:8000"\npath_prefix = "/webservice"\nrequest_timeout = 2000\n'
        '[[event_pusher.http.handlers]]\npool_name = "http_pool"\npath = "/notifications"\n'
        '[[event_pusher.http.handlers]]\npath = "/alerts"\n'
    ).unwrap()
    inline = tomlkit.parse(
        '[outgoing_pools.http.http_pool]\nworkers = 50\nconnection = {host = "http://localhost:8000", '
        'path_prefix = "/webservice", request_timeout = 2000}\n'
        '[event_pusher.http]\nhandlers = [{pool_name = "http_pool", path = "/notifications"}, {path = "/alerts"}]\n'
    ).unwrap()
    a, b = from_dict({**BASE, **array}, env={}), from_dict({**BASE, **inline}, env={})
    assert a.pools == b.pools and a.handlers == b.handlers
    assert [h.path for h in a.handlers] == ["/notifications", "/alerts"]
    assert a.pools["http_pool"].workers == 50


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param(
            {"event_pusher": {"http": {"handlers": [{"pool_name": "nope"}]}}, "outgoing_pools": POOL},
            "event_pusher.http.handlers[0].pool_name: no pool [outgoing_pools.http.nope]",
            id="unknown-pool",
        ),
        pytest.param(
            {"event_pusher": {"http": {"handlers": [{}]}}},
            "event_pusher.http.handlers[0].pool_name: no pool",
            id="no-pools-at-all",
        ),
        pytest.param(
            {
                "outgoing_pools": POOL,
                "event_pusher": {"http": {"handlers": [{"callback_module": "no_such_module_here"}]}},
            },
            "event_pusher.http.handlers[0].callback_module: cannot import 'no_such_module_here'",
            id="callback-not-importable",
        ),
        pytest.param(
            {"outgoing_pools": POOL, "event_pusher": {"http": {"handlers": [{"callback_module": "json"}]}}},
            "event_pusher.http.handlers[0].callback_module: module 'json' defines none of",
            id="callback-module-without-callbacks",
        ),
        pytest.param(
            {"outgoing_pools": {"http": {"p": {}}}},
            "outgoing_pools.http.p.connection.host: required",
            id="pool-without-host",
        ),
        pytest.param(
            {"outgoing_pools": {"http": {"p": {"connection": {"host": "localhost:8000"}}}}},
            "outgoing_pools.http.p.connection.host: expected an http:// or https:// URL",
            id="host-no-scheme",
        ),
        pytest.param(
            {"outgoing_pools": {"http": {"p": {"worker": 5, "connection": {"host": "http://a"}}}}},
            "outgoing_pools.http.p.worker: unknown key",
            id="pool-typo",
        ),
        pytest.param({"outgoing_pools": {"rdbms": {}}}, "outgoing_pools.rdbms: unknown key", id="other-pool-kind"),
        pytest.param(
            {"outgoing_pools": POOL, "event_pusher": {"http": {"handlers": [{"paht": "/x"}]}}},
            "event_pusher.http.handlers[0].paht: unknown key",
            id="handler-typo",
        ),
        pytest.param(
            {"event_pusher": {"http": {"handlers": {"path": "/x"}}}},
            "event_pusher.http.handlers: expected a list of tables",
            id="handlers-not-a-list",
        ),
        pytest.param(
            {"outgoing_pools": {"http": {"p": {"connection": {"host": "http://a", "request_timeout": 0}}}}},
            "outgoing_pools.http.p.connection.request_timeout: expected a number greater than 0",
            id="zero-timeout",
        ),
    ],
)
def test_mistakes_name_the_key(extra: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict({**BASE, **extra}, env={})
    assert str(info.value).startswith(message), str(info.value)


@pytest.mark.parametrize(
    ("host", "prefix", "path", "url"),
    [
        ("http://localhost:8000", "/webservice", "/notifications", "http://localhost:8000/webservice/notifications"),
        ("http://localhost:8000/", "webservice/", "notifications/", "http://localhost:8000/webservice/notifications"),
        ("http://localhost:8000", "", "/alerts", "http://localhost:8000/alerts"),
        ("http://localhost:8000", "/p", "", "http://localhost:8000/p"),
        ("http://localhost:8000", "", "", "http://localhost:8000/"),
    ],
)
def test_urls_join_with_exactly_one_slash(host: str, prefix: str, path: str, url: str) -> None:
    assert join_url(host, prefix, path) == url


def test_default_body_is_mongooseims() -> None:
    e = event()
    assert defaults.should_make_req(e)
    assert defaults.prepare_headers(e) == {"Content-Type": "application/x-www-form-urlencoded"}
    assert defaults.prepare_body(e) == "author=alice&server=localhost&receiver=echo&message=Hi%2C+Bob%21"


def test_default_body_normalises_jids() -> None:
    body = defaults.prepare_body(event(from_="ALICE@LocalHost/Phone", to="Weather@Bot.Localhost"))
    assert parse_qs(body) == {
        "author": ["alice"],
        "server": ["localhost"],
        "receiver": ["weather"],
        "message": ["Hi, Bob!"],
    }


@pytest.mark.parametrize(
    "e",
    [
        pytest.param(event(direction="out"), id="outgoing"),
        pytest.param(event(type_="groupchat"), id="groupchat"),
        pytest.param(event(body=""), id="empty-body"),
        pytest.param(event(body=None), id="no-body"),
        pytest.param(event(kind="presence", type_="available", body=None), id="presence"),
    ],
)
def test_default_sends_nothing_for_other_events(e: Event) -> None:
    assert not defaults.should_make_req(e)


def test_missing_callbacks_fall_back_to_the_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "only_filter.py").write_text("def should_make_req(event):\n    return True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    callbacks = load_callbacks("only_filter")
    assert callbacks.should_make_req(event(direction="out"))
    assert callbacks.prepare_body is defaults.prepare_body
    assert callbacks.prepare_headers is defaults.prepare_headers
    sys.modules.pop("only_filter", None)


def test_mongooseim_default_module_name_is_accepted() -> None:
    assert load_callbacks("mod_event_pusher_http_defaults").prepare_body is defaults.prepare_body


def test_a_callback_that_is_not_a_function_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "not_callable.py").write_text("prepare_body = 'x'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(CallbackError, match="not a function"):
        load_callbacks("not_callable")
