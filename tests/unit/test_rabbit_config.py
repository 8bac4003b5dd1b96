"""The rabbit backend's configuration: MongooseIM's shape and defaults, the password from the environment and
masked when shown, one line naming the dotted key (exit 2) for every mistake, and the starter's sections."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomlkit

from component import cli, config
from component.config import ConfigError, from_dict
from component.notify.config import RABBIT_PASSWORD_ENV

BASE = {"component": {"jid": "bot.localhost", "secret": "s"}, "bot": {"url": "http://127.0.0.1:8080/"}}
POOL: dict[str, Any] = {"rabbit": {"event_pusher": {}}}


def raw(pool: dict[str, Any] | None = None, **pusher: Any) -> dict[str, Any]:
    return {**BASE, "outgoing_pools": {"rabbit": {"event_pusher": pool or {}}}, "event_pusher": {"rabbit": pusher}}


def test_mongooseims_defaults() -> None:
    rabbit = from_dict(raw(chat_msg_exchange={}), env={}).rabbit
    assert rabbit is not None
    c = rabbit.connection
    assert (c.host, c.port, c.username, c.password, c.virtual_host) == ("localhost", 5672, "guest", "guest", "/")
    assert c.confirms_enabled is True  # MongooseIM's default is false: ours is delivery confirmed by the broker
    assert (rabbit.pool.scope, rabbit.pusher.max_queued) == ("global", 10000)
    chat = rabbit.chat
    assert chat is not None
    assert (chat.name, chat.type, chat.durable, chat.sent_topic, chat.recv_topic) == (
        "chat_msg",
        "topic",
        False,
        "chat_msg_sent",
        "chat_msg_recv",
    )
    assert rabbit.presence is None and rabbit.groupchat is None  # absent: off, never declared


def test_every_exchange_with_its_defaults() -> None:
    rabbit = from_dict(raw(presence_exchange={}, chat_msg_exchange={}, groupchat_msg_exchange={}), env={}).rabbit
    assert rabbit is not None and rabbit.presence is not None and rabbit.groupchat is not None
    assert (rabbit.presence.name, rabbit.presence.type, rabbit.presence.durable) == ("presence", "topic", False)
    g = rabbit.groupchat
    assert (g.name, g.sent_topic, g.recv_topic) == ("groupchat_msg", "groupchat_msg_sent", "groupchat_msg_recv")


def test_the_issues_example_reads_as_written() -> None:
    text = """
[component]
jid = "bot.localhost"
secret = "s"
[bot]
url = "http://127.0.0.1:8080/"

[outgoing_pools.rabbit.event_pusher.connection]
host = "rabbit.internal"
port = 5673
username = "events"
password = "pw"
virtual_host = "/xmpp"
confirms_enabled = false

[event_pusher.rabbit]
presence_exchange = { name = "presence", type = "topic" }
chat_msg_exchange = { name = "chat_msg", type = "direct", durable = true, sent_topic = "s", recv_topic = "r" }
groupchat_msg_exchange = { name = "groupchat_msg", type = "fanout" }
max_queued = 50
"""
    rabbit = from_dict(tomlkit.parse(text).unwrap(), env={}).rabbit
    assert rabbit is not None and rabbit.chat is not None and rabbit.groupchat is not None
    c = rabbit.connection
    assert (c.host, c.port, c.username, c.password, c.virtual_host) == (
        "rabbit.internal",
        5673,
        "events",
        "pw",
        "/xmpp",
    )
    assert c.confirms_enabled is False
    assert (rabbit.chat.type, rabbit.chat.durable, rabbit.chat.sent_topic, rabbit.chat.recv_topic) == (
        "direct",
        True,
        "s",
        "r",
    )
    assert (rabbit.groupchat.type, rabbit.pusher.max_queued) == ("fanout", 50)


def test_the_environment_gives_the_password() -> None:
    found = from_dict(
        raw({"connection": {"password": "in-file"}}, chat_msg_exchange={}), env={RABBIT_PASSWORD_ENV: "e"}
    )
    assert found.rabbit is not None and found.rabbit.connection.password == "e"


def test_no_rabbit_section_no_backend() -> None:
    assert from_dict(BASE, env={}).rabbit is None


@pytest.mark.parametrize(
    ("given", "message"),
    [
        pytest.param(
            {**BASE, "event_pusher": {"rabbit": {"chat_msg_exchange": {}}}},
            "event_pusher.rabbit: needs [outgoing_pools.rabbit.event_pusher], the broker to publish to",
            id="no-pool",
        ),
        pytest.param(
            {**BASE, "outgoing_pools": POOL},
            "outgoing_pools.rabbit.event_pusher: no [event_pusher.rabbit] publishes through it",
            id="pool-unused",
        ),
        pytest.param(raw(), "event_pusher.rabbit: no exchange is on; add presence_exchange,", id="no-exchange"),
        pytest.param(
            {**BASE, "outgoing_pools": {"rabbit": {"events": {}}}},
            "outgoing_pools.rabbit.events: events go through the pool tagged 'event_pusher' only",
            id="pool-tag",
        ),
        pytest.param(
            {**BASE, "event_pusher": {"kafka": {}}}, "event_pusher.kafka: unknown key (known: http, rabbit)", id="kafka"
        ),
        pytest.param(
            raw({"connection": {"port": 70000}}, chat_msg_exchange={}),
            "outgoing_pools.rabbit.event_pusher.connection.port: expected a TCP port from 1 to 65535, got 70000",
            id="port",
        ),
        pytest.param(
            raw({"connection": {"hots": "x"}}, chat_msg_exchange={}),
            "outgoing_pools.rabbit.event_pusher.connection.hots: unknown key (known: host, port,",
            id="unknown-connection-key",
        ),
        pytest.param(
            raw({"connection": {"confirms_enabled": "yes"}}, chat_msg_exchange={}),
            "outgoing_pools.rabbit.event_pusher.connection.confirms_enabled: expected a boolean, got a string 'yes'",
            id="confirms-string",
        ),
        pytest.param(
            raw({"scope": "host_type"}, chat_msg_exchange={}),
            'outgoing_pools.rabbit.event_pusher.scope: only "global" is meaningful here',
            id="scope",
        ),
        pytest.param(
            raw(chat_msg_exchange={"type": "weird"}),
            "event_pusher.rabbit.chat_msg_exchange.type: expected 'topic', 'direct', 'fanout', 'headers' or a "
            "plugin's 'x-...', got 'weird'",
            id="exchange-type",
        ),
        pytest.param(
            raw(chat_msg_exchange={"durable": 1}),
            "event_pusher.rabbit.chat_msg_exchange.durable: expected a boolean, got an integer 1",
            id="durable-integer",
        ),
        pytest.param(
            raw(presence_exchange={"name": ""}),
            "event_pusher.rabbit.presence_exchange.name: must not be empty",
            id="empty-name",
        ),
        pytest.param(
            raw(presence_exchange={"sent_topic": "x"}),
            "event_pusher.rabbit.presence_exchange.sent_topic: unknown key (known: name, type, durable)",
            id="presence-has-no-topics",
        ),
        pytest.param(
            raw(chat_msg_exchange="chat_msg"),
            "event_pusher.rabbit.chat_msg_exchange: expected a table, got a string 'chat_msg'",
            id="exchange-not-a-table",
        ),
        pytest.param(
            raw(chat_msg_exchange={}, max_queued=0),
            "event_pusher.rabbit.max_queued: expected a number greater than 0",
            id="max-queued",
        ),
    ],
)
def test_mistakes_name_the_key(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(given, env={})
    assert str(info.value).startswith(message)


def test_a_mistake_is_one_line_and_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[component]\njid = "bot.localhost"\nsecret = "s"\n[bot]\nurl = "http://127.0.0.1:8080/"\n'
        '[outgoing_pools.rabbit.event_pusher.connection]\nport = "5672"\n'
        "[event_pusher.rabbit]\nchat_msg_exchange = {}\n"
    )
    assert cli.main(["--config", str(path), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "outgoing_pools.rabbit.event_pusher.connection.port: expected an integer, got a string '5672'" in err


def test_check_config_shows_the_backend_with_the_password_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(config.SECRET_ENV, raising=False)
    monkeypatch.setenv(RABBIT_PASSWORD_ENV, "rabbit-secret-from-env")
    path = tmp_path / "config.toml"
    path.write_text(
        '[component]\njid = "bot.localhost"\nsecret = "s"\n[bot]\nurl = "http://127.0.0.1:8080/"\n'
        '[outgoing_pools.rabbit.event_pusher]\nconnection.host = "rabbit"\nconnection.password = "in-the-file"\n'
        "[event_pusher.rabbit]\nchat_msg_exchange = {}\n"
    )
    assert cli.main(["--config", str(path), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert "rabbit-secret-from-env" not in out and "in-the-file" not in out
    shown = tomlkit.parse(out.rsplit("\n", 2)[0]).unwrap()
    connection = shown["outgoing_pools"]["rabbit"]["event_pusher"]["connection"]
    assert (connection["host"], connection["password"], connection["confirms_enabled"]) == ("rabbit", "***", True)
    pusher = shown["event_pusher"]["rabbit"]
    assert set(pusher) == {"chat_msg_exchange", "max_queued"}  # an exchange that is off stays absent
    assert pusher["chat_msg_exchange"]["recv_topic"] == "chat_msg_recv"


def test_the_effective_config_reads_back_the_same() -> None:
    cfg = from_dict(
        raw({"connection": {"host": "h", "port": 5673}}, presence_exchange={"durable": True}, chat_msg_exchange={}),
        env={},
    )
    shown = tomlkit.parse(config.describe(cfg)).unwrap()
    shown["component"]["secret"] = "s"
    shown["outgoing_pools"]["rabbit"]["event_pusher"]["connection"]["password"] = "guest"  # masked
    shown["instance"]["broker_password"] = "guest"
    assert from_dict(shown, env={}) == cfg


def test_the_starter_documents_the_backend_commented_out() -> None:
    text = config.starter().as_string()
    for line in (
        "# [outgoing_pools.rabbit.event_pusher]",
        "#   [outgoing_pools.rabbit.event_pusher.connection]",
        '#     host = "localhost"',
        "#     confirms_enabled = true",
        "# [event_pusher.rabbit]",
        "#   max_queued = 10000",
        "#   [event_pusher.rabbit.chat_msg_exchange]",
        '#     recv_topic = "chat_msg_recv"',
    ):
        assert line in text, line
    keys = {key for key, _, _ in config.options()}
    assert {
        "outgoing_pools.rabbit.event_pusher.connection.password",
        "event_pusher.rabbit.groupchat_msg_exchange.sent_topic",
        "event_pusher.rabbit.presence_exchange.durable",
    } <= keys
    block = text[text.index("# [outgoing_pools.rabbit.event_pusher]") :]
    uncommented = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    rabbit = from_dict({**BASE, **tomlkit.parse(uncommented).unwrap()}, env={}).rabbit  # uncommented, it works
    assert rabbit is not None and rabbit.exchanges == {
        "presence_exchange",
        "chat_msg_exchange",
        "groupchat_msg_exchange",
    }
