"""Configuration: typed values from one pass, defaults, the environment, one clear line per mistake, TOML syntax
errors in plain words, the effective configuration shown with secrets masked, and the starter config."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from component import config
from component.config import ConfigError, ListenAddress, from_dict
from component.notify import config as notify_config
from component.notify import defaults
from component.notify.callbacks import Callbacks, load_callbacks

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"component": {"jid": "bot.localhost", "secret": "s"}, "bot": {"url": "http://127.0.0.1:8080/"}}
KEY = b"0123456789abcdef0123"  # a 20-byte signing key
WHSEC = "whsec_" + base64.b64encode(KEY).decode()
POOL = {"http": {"http_pool": {"connection": {"host": "http://127.0.0.1:8000"}}}}
# The repository's config.toml is what `init` writes, with every key written out and the demo's values.
EXAMPLE_TITLE = """xmpp-http-component: example configuration; it runs as is against the demo's Prosody.
It is what `xmpp-http-component init` writes, with every key written out at its default.
Check it with: xmpp-http-component --config config.toml --check-config"""
EXAMPLE_VALUES = {"component.jid": "bot.localhost", "component.secret": "s3cret"}


def with_(section: str, **values: object) -> dict[str, dict[str, object]]:
    raw: dict[str, dict[str, object]] = {name: dict(body) for name, body in MINIMAL.items()}
    raw.setdefault(section, {}).update(values)
    return raw


def test_defaults() -> None:
    cfg = from_dict(MINIMAL, env={})
    assert (cfg.component.host, cfg.component.port) == ("127.0.0.1", 5347)
    assert cfg.bot.stanzas == frozenset({"message"})
    assert (cfg.bot.format, cfg.bot.signing_key, cfg.bot.routes, cfg.bot.headers) == ("json", None, {}, {})
    assert (cfg.bot.timeout, cfg.bot.max_in_flight, cfg.bot.max_reply_bytes) == (10.0, 100, 1048576)
    assert cfg.presence.resource == "default"
    assert cfg.web.listen == ListenAddress("127.0.0.1", 9090)
    assert (cfg.api.listen, cfg.api.token) == (None, "")
    assert (cfg.pools, cfg.handlers) == ({}, ())


@pytest.mark.parametrize(
    ("raw", "read", "expected"),
    [
        pytest.param(
            with_("web", listen="127.0.0.1:0"),
            lambda c: c.web.listen,
            ListenAddress("127.0.0.1", 0),
            id="listen-port-0",
        ),
        pytest.param(
            with_("web", listen="[::1]:9090"), lambda c: c.web.listen, ListenAddress("::1", 9090), id="listen-v6"
        ),
        pytest.param(with_("web", listen=""), lambda c: c.web.listen, None, id="listen-off"),
        pytest.param(
            with_("api", listen="localhost:8088", token="t"),
            lambda c: c.api.listen,
            ListenAddress("localhost", 8088),
            id="api-listen",
        ),
        pytest.param(with_("bot", signing_secret=WHSEC), lambda c: c.bot.signing_key, KEY, id="signing-key-decoded"),
        pytest.param(
            with_("bot", signing_secret=WHSEC[6:]), lambda c: c.bot.signing_key, KEY, id="signing-key-no-prefix"
        ),
        pytest.param(with_("bot", signing_secret=""), lambda c: c.bot.signing_key, None, id="signing-key-off"),
        pytest.param(
            with_("bot", stanzas=["iq", "message", "iq"]),
            lambda c: c.bot.stanzas,
            frozenset({"iq", "message"}),
            id="stanzas-set",
        ),
        pytest.param(with_("bot", stanzas=[]), lambda c: c.bot.stanzas, frozenset(), id="stanzas-none"),
        pytest.param(with_("bot", format="xml"), lambda c: c.bot.format, "xml", id="format-xml"),
        pytest.param(with_("bot", timeout=5), lambda c: c.bot.timeout, 5.0, id="integer-timeout-is-float"),
        pytest.param(
            with_("component", jid="Bot.LocalHost"), lambda c: c.component.jid, "bot.localhost", id="jid-normalised"
        ),
        pytest.param(
            with_("bot", routes={"Weather": "http://127.0.0.1:8081/"}),
            lambda c: c.bot.routes,
            {"weather": "http://127.0.0.1:8081/"},
            id="route-local-part-lower-case",
        ),
        pytest.param(
            with_("bot", url="http://café.example/bot"),
            lambda c: c.bot.url,
            "http://café.example/bot",
            id="idn-url-kept-as-given",
        ),
        pytest.param(
            with_("bot", url="http://127.0.0.1:8080/bøt"),
            lambda c: c.bot.url,
            "http://127.0.0.1:8080/bøt",
            id="non-ascii-path-kept",
        ),
        pytest.param(
            with_("bot", url="", routes={"w": "http://café.example/{kind}"}),
            lambda c: c.bot.routes,
            {"w": "http://café.example/{kind}"},
            id="idn-route-with-placeholder",
        ),
        pytest.param(
            with_("bot", url="http://127.0.0.1:8080/bots/{local}/{kind}/{type}"),
            lambda c: c.bot.url,
            "http://127.0.0.1:8080/bots/{local}/{kind}/{type}",
            id="url-placeholders",
        ),
        pytest.param(
            with_("bot", url="http://h/{{x}}"), lambda c: c.bot.url, "http://h/{{x}}", id="url-literal-braces"
        ),
        pytest.param(
            with_("bot", headers={"Authorization": "Bearer x"}),
            lambda c: c.bot.headers,
            {"Authorization": "Bearer x"},
            id="headers",
        ),
    ],
)
def test_values_are_read_into_their_types(raw: dict[str, Any], read: Any, expected: object) -> None:
    assert read(from_dict(raw, env={})) == expected


@pytest.mark.parametrize(
    ("address", "text"),
    [
        pytest.param(ListenAddress("127.0.0.1", 9090), "127.0.0.1:9090", id="v4"),
        pytest.param(ListenAddress("localhost", 0), "localhost:0", id="name"),
        pytest.param(ListenAddress("::1", 8088), "[::1]:8088", id="v6-in-brackets"),
    ],
)
def test_listen_address_prints_as_it_is_written(address: ListenAddress, text: str) -> None:
    assert str(address) == text
    assert ListenAddress.parse(text) == address


@pytest.mark.parametrize(
    ("section", "key", "variable", "value", "read", "expected"),
    [
        pytest.param(
            "component", "secret", "XMPP_COMPONENT_SECRET", "env", lambda c: c.component.secret, "env", id="secret"
        ),
        pytest.param(
            "bot",
            "signing_secret",
            "XMPP_COMPONENT_SIGNING_SECRET",
            WHSEC,
            lambda c: c.bot.signing_key,
            KEY,
            id="signing",
        ),
        pytest.param("api", "token", "XMPP_COMPONENT_API_TOKEN", "tok", lambda c: c.api.token, "tok", id="api-token"),
    ],
)
def test_the_environment_wins(section: str, key: str, variable: str, value: str, read: Any, expected: object) -> None:
    assert read(from_dict(with_(section, **{key: "whsec_" + "A" * 24}), env={variable: value})) == expected
    raw = {name: {k: v for k, v in body.items() if k != key} for name, body in MINIMAL.items()}
    if section == "component":
        assert read(from_dict(raw, env={variable: value})) == expected
    assert read(from_dict(with_(section, **{key: value}), env={variable: ""})) == expected  # empty: not set


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({}, "component.jid: required", id="empty-file"),
        pytest.param(
            {"component": {"jid": "bot.localhost"}, "bot": {"url": "http://a/"}},
            "component.secret: required",
            id="no-secret",
        ),
        pytest.param({"component": {"jid": "bot.localhost", "secret": "s"}}, "bot.url: required", id="no-url"),
        pytest.param(with_("component", jid="a@b"), "component.jid: expected a bare domain", id="jid-with-user"),
        pytest.param(with_("component", jid="bad domain"), "component.jid: expected a domain", id="jid-invalid"),
        pytest.param(
            with_("component", port="5347"),
            "component.port: expected an integer, got a string '5347'",
            id="port-string",
        ),
        pytest.param(with_("component", port=70000), "component.port: expected a TCP port", id="port-range"),
        pytest.param(with_("component", secret=""), "component.secret: must not be empty", id="secret-empty"),
        pytest.param(
            with_("component", prot=5347), "component.prot: unknown key (known: jid, secret,", id="unknown-key"
        ),
        pytest.param({**MINIMAL, "bots": {}}, "bots: unknown section", id="unknown-section"),
        pytest.param({**MINIMAL, "bot": "http://x/"}, "bot: expected a table, got a string", id="section-not-table"),
        pytest.param(with_("bot", url="ftp://x/"), "bot.url: the URL 'ftp://x/'", id="url-scheme"),
        pytest.param(with_("bot", url="http:///path"), "bot.url: the URL 'http:///path'", id="url-no-host"),
        pytest.param(with_("bot", url=5), "bot.url: expected a string, got an integer 5", id="url-not-string"),
        pytest.param(
            with_("bot", url="http://h/{user}"),
            "bot.url: unknown placeholder {user} (known: {local}",
            id="url-placeholder",
        ),
        pytest.param(with_("bot", url="http://h/{local"), "bot.url: expected '}'", id="url-unclosed-brace"),
        pytest.param(
            with_("bot", url="ftp://h/{local}"), "bot.url: the URL 'ftp://h/x'", id="url-checked-with-sample-values"
        ),
        pytest.param(
            with_("bot", routes={"a@b": "http://x/"}), "bot.routes.a@b: expected the local part", id="route-jid"
        ),
        pytest.param(with_("bot", routes={"w": ""}), "bot.routes.w: must not be empty", id="route-empty-url"),
        pytest.param(with_("bot", routes={"w": "ftp://x/"}), "bot.routes.w: the URL 'ftp://x/'", id="route-url"),
        pytest.param(with_("bot", routes={"w": 1}), "bot.routes.w: expected a string, got an integer", id="route-type"),
        pytest.param(with_("bot", format="yaml"), "bot.format: expected 'json' or 'xml', got 'yaml'", id="format"),
        pytest.param(
            with_("bot", signing_secret="whsec_!!"), "bot.signing_secret: expected 'whsec_'", id="signing-base64"
        ),
        pytest.param(
            with_("bot", signing_secret="whsec_c2hvcnQ="),
            "bot.signing_secret: the secret is 5 bytes",
            id="signing-short",
        ),
        pytest.param(
            with_("bot", stanzas=["message", "mesage"]),
            "bot.stanzas: expected an array of 'message', 'presence' or 'iq', got 'mesage'",
            id="stanzas-typo",
        ),
        pytest.param(
            with_("bot", stanzas="message"),
            "bot.stanzas: expected an array of strings, got a string",
            id="stanzas-string",
        ),
        pytest.param(with_("bot", timeout=0), "bot.timeout: expected a number greater than 0", id="timeout-zero"),
        pytest.param(with_("bot", timeout=True), "bot.timeout: expected a number, got a boolean", id="timeout-bool"),
        pytest.param(with_("bot", timeout="10"), "bot.timeout: expected a number, got a string", id="timeout-string"),
        pytest.param(
            with_("bot", max_in_flight=0), "bot.max_in_flight: expected a number greater than 0", id="in-flight-zero"
        ),
        pytest.param(with_("bot", max_queued=1.5), "bot.max_queued: expected an integer, got a float", id="int-float"),
        pytest.param(with_("bot", headers={"X-A": 1}), "bot.headers.X-A: expected a string", id="header-value"),
        pytest.param(with_("bot", headers=["X-A"]), "bot.headers: expected a table of strings", id="headers-array"),
        pytest.param(
            with_("bot", headers={"Bad Name": "x"}), "bot.headers.Bad Name: not a valid HTTP header", id="header-name"
        ),
        pytest.param(with_("bot", headers={"X": "a\nb"}), "bot.headers.X: header values must not", id="header-newline"),
        pytest.param(
            with_("bot", headers={"X": "5 €"}), "bot.headers.X: header values must be printable ASCII", id="header-euro"
        ),
        pytest.param(with_("web", listen="9090"), "web.listen: expected 'host:port'", id="listen-no-host"),
        pytest.param(with_("web", listen="h:70000"), "web.listen: port 70000 is out of range", id="listen-port"),
        pytest.param(with_("web", listen=9090), "web.listen: expected a string, got an integer", id="listen-integer"),
        pytest.param(
            with_("api", listen="127.0.0.1:8088"), "api.token: required when api.listen is set", id="api-without-token"
        ),
        pytest.param(with_("presence", resource=""), "presence.resource: must not be empty", id="empty-resource"),
        pytest.param(
            {**MINIMAL, "outgoing_pools": POOL, "event_pusher": {"http": {"handlers": [{"callback_module": 5}]}}},
            "event_pusher.http.handlers[0].callback_module: expected a string",
            id="callback-module-type",
        ),
    ],
)
def test_mistakes_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(raw, env={})
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_urls_are_checked_by_the_bot_client(monkeypatch: pytest.MonkeyPatch) -> None:
    from component.bot import client

    seen: list[str] = []
    monkeypatch.setattr(client, "parse_url", lambda url: seen.append(url))
    from_dict(with_("bot", url="http://h/{local}/{kind}/{type}", routes={"w": "http://w/"}), env={})
    assert seen == ["http://h/x/message/chat", "http://w/"]


def test_callbacks_are_loaded_once_when_the_config_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    loaded: list[str] = []

    def load(name: str) -> Callbacks:
        loaded.append(name)
        return load_callbacks(name)

    monkeypatch.setattr(notify_config, "load_callbacks", load)
    raw = {**MINIMAL, "outgoing_pools": POOL, "event_pusher": {"http": {"handlers": [{"path": "/a"}]}}}
    [handler] = from_dict(raw, env={}).handlers
    assert loaded == ["component.notify.defaults"]
    assert handler.callback_module == "component.notify.defaults"
    assert handler.callbacks.prepare_body is defaults.prepare_body


# --- TOML syntax errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "sentence"),
    [
        pytest.param(
            '[component]\njid = "bot.localhost\nsecret = "s"\n',
            2,
            'a string is not closed (a missing "?)',
            id="unclosed-string",
        ),
        pytest.param(
            "[bot]\nurl = 'http://a/\n", 2, "a string is not closed (a missing '?)", id="unclosed-literal-string"
        ),
        pytest.param(
            '[bot]\nurl = "http://a/', 2, 'a string is not closed (a missing "?)', id="unclosed-string-at-the-end"
        ),
        pytest.param(
            'a = """x\nb = 1\n',
            1,
            'a multi-line string is not closed (a missing """?)',
            id="unclosed-multi-line-string",
        ),
        pytest.param(
            "[component]\nport = 1\nport = 2\n",
            3,
            "'port' is already defined (a key or table may appear only once)",
            id="duplicate-key",
        ),
        pytest.param(
            "[bot]\n[web]\n[bot]\n",
            3,
            "'bot' is already defined (a key or table may appear only once)",
            id="duplicate-table",
        ),
        pytest.param(
            "[bot]\nheaders = {A = '1', A = '2'}\n",
            2,
            "'A' is already defined (a key or table may appear only once)",
            id="duplicate-inline-key",
        ),
        pytest.param(
            '[component]\njid "bot.localhost"\n',
            2,
            "expected '=' after the key 'jid', found '\"'",
            id="missing-equals",
        ),
        pytest.param(
            '[bot]\r\nurl = "http://a/\r\nformat = "xml"\r\n',
            2,
            'a string is not closed (a missing "?)',
            id="unclosed-string-crlf",
        ),
        pytest.param(
            '[bot]\nurl = "http://a/\\\n', 2, 'a string is not closed (a missing "?)', id="backslash-at-end-of-line"
        ),
        pytest.param(
            '[bot]\nurl = http://a/"\n',
            2,
            'a string needs a quote at each end, as "http://a/"',
            id="missing-opening-quote",
        ),
        pytest.param(
            "[component]\nmy key = 1\n",
            2,
            "'my key' is not a key (a missing '='? a key with spaces needs quotes)",
            id="key-with-a-space",
        ),
        pytest.param(
            "[component]\nport\n", 2, "'port' is not followed by '=' and a value (a missing '='?)", id="key-alone"
        ),
        pytest.param(
            "[component]\nport: 5347\n", 2, "expected '=' after the key 'port', found ':'", id="colon-for-equals"
        ),
        pytest.param(
            "[component\njid = 1\n", 1, "a table header is not closed (a missing ]?)", id="unclosed-table-header"
        ),
        pytest.param(
            "[component", 1, "a table header is not closed (a missing ]?)", id="unclosed-table-header-at-the-end"
        ),
        pytest.param(
            "[[event_pusher.http.handlers]\n",
            1,
            "a table header is not closed (a missing ]]?)",
            id="unclosed-array-table-header",
        ),
        pytest.param("[]\n", 1, "a table header needs a name, as in [bot]", id="empty-table-header"),
        pytest.param("= 1\n", 1, "a key is missing before '='", id="empty-key"),
        pytest.param(
            "[bot]\nformat = json\n", 2, 'json is not a value (a string needs quotes: "json")', id="unquoted-string"
        ),
        pytest.param(
            "[bot]\nstanzas = True\n", 2, "True is not a value: write true and false in lower case", id="capital-true"
        ),
        pytest.param("[bot]\ntimeout =\n", 2, "a value is missing after '='", id="missing-value"),
        pytest.param("[bot]\ntimeout = ", 2, "a value is missing after '='", id="missing-value-at-the-end"),
        pytest.param("[bot]\ntimeout = = 1\n", 2, "'=' cannot start a value", id="double-equals"),
        pytest.param(
            "[bot]\nstanzas = ['message'\ntimeout = 1\n",
            2,
            "an array is not closed (a missing ]?)",
            id="unclosed-array",
        ),
        pytest.param(
            "[bot]\nstanzas = ['message'", 2, "an array is not closed (a missing ]?)", id="unclosed-array-at-the-end"
        ),
        pytest.param(
            "[bot]\nheaders = {A = '1'\ntimeout = 1\n",
            2,
            "an inline table is not closed (a missing }?)",
            id="unclosed-inline-table",
        ),
        pytest.param(
            "[bot]\ntimeout = 10 s\n",
            2,
            "unexpected 's' after a value (one key = value per line; a comment starts with #)",
            id="text-after-value",
        ),
        pytest.param(
            "[bot]\ntimeout = 1_\n",
            2,
            "not a valid number (as 10, 2.5 or 1_000; a string needs quotes)",
            id="bad-number",
        ),
        pytest.param("a = 2024-13-01\n", 1, "not a valid date (as 2024-05-27; a string needs quotes)", id="bad-date"),
        pytest.param(
            'a = "C:\\dir"\n',
            1,
            "\\d is not an escape: write \\\\ for a backslash, or use '...' for a literal string",
            id="bad-escape",
        ),
        pytest.param(
            'a = "\\uZZZZ"\n',
            1,
            "a \\u escape needs 4 hex digits (\\U 8) naming a Unicode character",
            id="bad-unicode-escape",
        ),
        pytest.param(
            'a = "x\x01"\n',
            1,
            "a control character (U+0001) is not allowed in a string: write \\u0001",
            id="control-character",
        ),
        pytest.param(
            "café = 1\n",
            1,
            'a bare key may hold only A-Z, a-z, 0-9, _ and -: quote it, as "café"',
            id="non-ascii-bare-key",
        ),
    ],
)
def test_toml_syntax_errors_name_the_line_in_plain_words(tmp_path: Path, text: str, line: int, sentence: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        config.load(path, env={})
    assert str(info.value) == f"{path}:{line}: not valid TOML: {sentence}"


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        config.load(tmp_path / "absent.toml", env={})


def test_load_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'[component]\njid = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="is not UTF-8"):
        config.load(path, env={})


# --- The example, the starter and the effective configuration ----------------------------------------------------


def test_the_example_config_is_valid() -> None:
    cfg = config.load(REPO / "config.toml", env={})
    assert (cfg.component.jid, cfg.component.secret) == ("bot.localhost", "s3cret")
    assert cfg == from_dict(MINIMAL | {"component": {"jid": "bot.localhost", "secret": "s3cret"}}, env={})


def test_the_example_config_is_what_init_writes_with_every_key() -> None:
    expected = config.starter(EXAMPLE_TITLE, every_key=True, values=EXAMPLE_VALUES).as_string()
    assert (REPO / "config.toml").read_text() == expected, (
        "regenerate config.toml: config.starter(EXAMPLE_TITLE, every_key=True, values=EXAMPLE_VALUES) in "
        "tests/unit/test_config.py"
    )


def test_the_starter_loads_once_the_secret_is_set() -> None:
    raw = tomlkit.parse(config.starter().as_string()).unwrap()
    assert from_dict(raw, env={"XMPP_COMPONENT_SECRET": "s"}).bot.url == "http://127.0.0.1:8080/"
    with pytest.raises(ConfigError, match=r"^component\.secret: required"):
        from_dict(raw, env={})


def test_every_option_is_documented_in_the_starter() -> None:
    rows = config.options()
    keys = {key for key, _, _ in rows}
    assert keys >= {"component.jid", "bot.url", "bot.signing_secret", "web.listen", "api.token"}
    assert keys >= {"outgoing_pools.http.NAME.connection.host", "event_pusher.http.handlers[].callback_module"}
    assert all(doc for _, _, doc in rows)
    text = config.starter().as_string()
    for key, default, _ in rows:
        name = key.rsplit(".", 1)[1]
        assert f"{name} = " in text, f"the starter does not show {key}"
        if default != "(required)" and not key.startswith(("outgoing_pools", "event_pusher")):
            shown = f"# {name} = {default}\n" in text or f"\n{name} = " in text
            assert shown, f"the starter shows {key} neither commented out at its default nor set"


def test_the_effective_config_masks_secrets() -> None:
    raw = with_("bot", headers={"Authorization": "Bearer hunter2", "X-Trace": "1"})
    raw["api"] = {"listen": "127.0.0.1:8088", "token": "api-token-value"}
    cfg = from_dict(raw, env={"XMPP_COMPONENT_SECRET": "component-secret", "XMPP_COMPONENT_SIGNING_SECRET": WHSEC})
    text = config.describe(cfg)
    for secret in ("component-secret", WHSEC, "hunter2", "api-token-value"):
        assert secret not in text
    shown = tomlkit.parse(text).unwrap()
    assert shown["component"]["secret"] == shown["bot"]["signing_secret"] == shown["api"]["token"] == "***"
    assert shown["bot"]["headers"] == {"Authorization": "***", "X-Trace": "1"}
    assert shown["api"]["listen"] == "127.0.0.1:8088"


def test_the_effective_config_shows_every_key_and_reads_back_the_same() -> None:
    raw = {
        **with_("bot", stanzas=["iq", "message"], routes={"w": "http://café.example/"}),
        "web": {"listen": "[::1]:0"},
        "outgoing_pools": {**POOL, "rabbit": {"event_pusher": {}}},
        "event_pusher": {
            "http": {"handlers": [{"path": "/a"}, {"path": "/b", "max_queued": 5}]},
            "rabbit": {"presence_exchange": {}, "chat_msg_exchange": {}, "groupchat_msg_exchange": {}},
        },
    }
    cfg = from_dict(raw, env={})
    shown = tomlkit.parse(config.describe(cfg)).unwrap()
    expected = {key.replace("NAME", "http_pool").replace("[]", "") for key, _, _ in config.options()}
    found = {f"{s}.{k}" for s in config.SECTIONS for k in shown[s]}
    found |= {f"outgoing_pools.http.http_pool.{k}" for k in shown["outgoing_pools"]["http"]["http_pool"]}
    found |= {
        f"outgoing_pools.http.http_pool.connection.{k}"
        for k in shown["outgoing_pools"]["http"]["http_pool"]["connection"]
    }
    found |= {f"event_pusher.http.handlers.{k}" for k in shown["event_pusher"]["http"]["handlers"][0]}
    tables = {"outgoing_pools.rabbit.event_pusher": shown["outgoing_pools"]["rabbit"]["event_pusher"]}
    tables["event_pusher.rabbit"] = shown["event_pusher"]["rabbit"]
    for prefix, table in tables.items():
        found |= {f"{prefix}.{k}" for k, v in table.items() if not isinstance(v, dict)}
        found |= {f"{prefix}.{k}.{sub}" for k, v in table.items() if isinstance(v, dict) for sub in v}
    assert found - {"outgoing_pools.http.http_pool.connection"} == expected
    shown["component"]["secret"] = "s"  # masked: the values that do not read back
    shown["outgoing_pools"]["rabbit"]["event_pusher"]["connection"]["password"] = "guest"
    shown["instance"]["broker_password"] = "guest"
    assert from_dict(shown, env={}) == cfg


def test_no_notifications_is_said_in_the_effective_config() -> None:
    assert "event notifications are off" in config.describe(from_dict(MINIMAL, env={}))
