"""Routes: placeholders and per-bot URLs."""

from __future__ import annotations

import pytest

from component.bot.routes import Router
from component.config import BotSection, ConfigError, from_dict
from component.stanza import Stanza


def stanza(to: str, kind: str = "message", type_: str | None = "chat") -> Stanza:
    return Stanza(kind, to, "alice@localhost/r", type_, None, None, "<message/>")  # type: ignore[arg-type]


def bot(**values: object) -> BotSection:
    raw = {"component": {"jid": "bot.localhost", "secret": "s"}, "bot": values}
    return from_dict(raw, env={}).bot


@pytest.mark.parametrize(
    ("url", "to", "expected"),
    [
        ("http://127.0.0.1:8080/", "echo@bot.localhost", "http://127.0.0.1:8080/"),
        ("http://127.0.0.1:8080/bots/{local}", "echo@bot.localhost/x", "http://127.0.0.1:8080/bots/echo"),
        ("http://127.0.0.1:8080/bots/{local}", "bot.localhost", "http://127.0.0.1:8080/bots/"),
        ("http://127.0.0.1:8080/{kind}/{type}", "echo@bot.localhost", "http://127.0.0.1:8080/message/chat"),
        ("http://127.0.0.1:8080/b/{local}", "a?b#c%d@bot.localhost", "http://127.0.0.1:8080/b/a%3Fb%23c%25d"),
        (
            "http://127.0.0.1:8080/in/{to}?from={from}",
            "echo@bot.localhost/x",
            "http://127.0.0.1:8080/in/echo%40bot.localhost%2Fx?from=alice%40localhost%2Fr",
        ),
    ],
    ids=["constant", "local", "bare-domain", "kind-and-type", "percent-encoded", "to-and-from-as-mod-rest"],
)
def test_placeholders(url: str, to: str, expected: str) -> None:
    assert Router(bot(url=url)).url_for(stanza(to)) == expected


def test_routes_override_the_default_and_ignore_case() -> None:
    router = Router(bot(url="http://127.0.0.1:8080/", routes={"Weather": "http://127.0.0.1:8081/hook"}))
    assert router.url_for(stanza("weather@bot.localhost")) == "http://127.0.0.1:8081/hook"
    assert router.url_for(stanza("WEATHER@bot.localhost")) == "http://127.0.0.1:8081/hook"
    assert router.url_for(stanza("echo@bot.localhost")) == "http://127.0.0.1:8080/"


def test_without_a_default_unrouted_bots_have_no_url() -> None:
    router = Router(bot(routes={"weather": "http://127.0.0.1:8081/hook"}))
    assert router.url_for(stanza("echo@bot.localhost")) is None
    assert router.url_for(stanza("bot.localhost")) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({}, "bot.url: required unless [bot.routes]", id="neither-url-nor-routes"),
        pytest.param({"url": "http://a/{user}"}, "bot.url: unknown placeholder {user}", id="unknown-placeholder"),
        pytest.param({"url": "http://a/{local"}, "bot.url: ", id="unclosed-brace"),
        pytest.param(
            {"routes": {"w": "ftp://a/"}}, "bot.routes.w: the URL 'ftp://a/' is not http or https", id="route-url"
        ),
        pytest.param({"routes": {"w@x": "http://a/"}}, "bot.routes.w@x: expected the local part", id="route-key"),
        pytest.param({"routes": {"w": 5}}, "bot.routes.w: expected a string", id="route-type"),
        pytest.param({"url": "http://a/", "format": "yaml"}, "bot.format: expected 'json' or 'xml'", id="format"),
        pytest.param(
            {"url": "http://a/", "signing_secret": "whsec_!!"},
            "bot.signing_secret: expected 'whsec_'",
            id="secret-not-base64",
        ),
        pytest.param(
            {"url": "http://a/", "signing_secret": "whsec_c2hvcnQ="},
            "bot.signing_secret: the secret is 5",
            id="secret-too-short",
        ),
    ],
)
def test_mistakes_name_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        bot(**values)
    assert str(info.value).startswith(message), str(info.value)


def test_api_needs_a_token() -> None:
    raw = {
        "component": {"jid": "bot.localhost", "secret": "s"},
        "bot": {"url": "http://a/"},
        "api": {"listen": "127.0.0.1:8088"},
    }
    with pytest.raises(ConfigError, match=r"api\.token: required when api\.listen is set"):
        from_dict(raw, env={})
    assert from_dict(raw, env={"XMPP_COMPONENT_API_TOKEN": "t"}).api.token == "t"
