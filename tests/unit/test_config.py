"""Configuration: defaults, the environment, and one clear line per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest

from component import config
from component.config import ConfigError, from_dict

REPO = Path(__file__).resolve().parents[2]
MINIMAL = {"component": {"jid": "bot.localhost", "secret": "s"}, "bot": {"url": "http://127.0.0.1:8080/"}}


def with_(section: str, **values: object) -> dict[str, dict[str, object]]:
    raw = {name: dict(body) for name, body in MINIMAL.items()}
    raw.setdefault(section, {}).update(values)
    return raw


def test_defaults() -> None:
    cfg = from_dict(MINIMAL, env={})
    assert (cfg.component.host, cfg.component.port) == ("127.0.0.1", 5347)
    assert cfg.bot.stanzas == ("message",)
    assert (cfg.bot.timeout, cfg.bot.max_in_flight, cfg.bot.max_reply_bytes) == (10.0, 100, 1048576)
    assert cfg.bot.headers == {}
    assert cfg.presence.resource == "default"
    assert cfg.web.listen == "127.0.0.1:9090"


def test_domain_is_normalised() -> None:
    assert from_dict(with_("component", jid="Bot.LocalHost"), env={}).component.jid == "bot.localhost"


def test_secret_from_the_environment() -> None:
    raw = {"component": {"jid": "bot.localhost"}, "bot": {"url": "http://127.0.0.1:8080/"}}
    assert from_dict(raw, env={"XMPP_COMPONENT_SECRET": "from-env"}).component.secret == "from-env"
    assert from_dict(MINIMAL, env={"XMPP_COMPONENT_SECRET": "env-wins"}).component.secret == "env-wins"


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
        pytest.param(with_("component", port="5347"), "component.port: expected an integer, got str", id="port-string"),
        pytest.param(with_("component", port=70000), "component.port: expected a TCP port", id="port-range"),
        pytest.param(with_("component", prot=5347), "component.prot: unknown key", id="unknown-key"),
        pytest.param({**MINIMAL, "bots": {}}, "bots: unknown section", id="unknown-section"),
        pytest.param(with_("bot", url="ftp://x/"), "bot.url: expected an http:// or https:// URL", id="url-scheme"),
        pytest.param(
            with_("bot", stanzas=["message", "mesage"]), "bot.stanzas: expected stanza kinds", id="stanzas-typo"
        ),
        pytest.param(with_("bot", stanzas="message"), "bot.stanzas: expected a list of strings", id="stanzas-string"),
        pytest.param(with_("bot", timeout=0), "bot.timeout: expected a number greater than 0", id="timeout-zero"),
        pytest.param(with_("bot", timeout=True), "bot.timeout: expected a number, got bool", id="timeout-bool"),
        pytest.param(
            with_("bot", max_in_flight=0), "bot.max_in_flight: expected a number greater than 0", id="in-flight-zero"
        ),
        pytest.param(with_("bot", headers={"X-A": 1}), "bot.headers.X-A: expected a string", id="header-value"),
        pytest.param(
            with_("bot", headers={"Bad Name": "x"}), "bot.headers.Bad Name: not a valid HTTP header", id="header-name"
        ),
        pytest.param(with_("web", listen="9090"), "web.listen: expected 'host:port'", id="listen-no-host"),
        pytest.param(with_("presence", resource=""), "presence.resource: must not be empty", id="empty-resource"),
        pytest.param({**MINIMAL, "bot": "http://x/"}, "bot: expected a table", id="section-not-table"),
    ],
)
def test_mistakes_name_the_key(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(raw, env={})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_web_listen_forms() -> None:
    assert config.parse_listen("k", "") is None
    assert config.parse_listen("k", "127.0.0.1:0") == ("127.0.0.1", 0)
    assert config.parse_listen("k", "[::1]:9090") == ("::1", 9090)


def test_load_reports_toml_syntax_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[component\njid = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(path, env={})


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        config.load(tmp_path / "absent.toml", env={})


def test_the_example_config_is_valid() -> None:
    cfg = config.load(REPO / "config.toml", env={})
    assert cfg.component.jid == "bot.localhost"


def test_every_option_is_documented() -> None:
    rows = config.describe()
    assert {key for key, _, _ in rows} >= {"component.jid", "bot.url", "bot.stanzas", "web.listen"}
    assert all(doc for _, _, doc in rows)
    text = (REPO / "config.toml").read_text()
    for key, _, _ in rows:
        assert key.split(".")[1] in text, f"config.toml does not show {key}"
