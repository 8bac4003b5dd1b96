"""The command line, in-process: `init`, `--check-config` (the effective configuration, secrets masked), and
configuration errors as one line on stderr with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomlkit

from component import cli, config

GOOD = """\
[component]
jid = "bot.localhost"
secret = "component-secret"

[bot]
url = "http://127.0.0.1:8080/"
signing_secret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM="
headers = { Authorization = "Bearer hunter2", X-Trace = "on" }

[api]
listen = "127.0.0.1:8088"
token = "api-token-value"
"""
SECRETS = ("component-secret", "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM=", "hunter2", "api-token-value")


@pytest.fixture(autouse=True)
def no_secrets_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (config.SECRET_ENV, config.SIGNING_SECRET_ENV, config.API_TOKEN_ENV):
        monkeypatch.delenv(name, raising=False)


def test_init_writes_a_starter_that_loads_once_the_secret_is_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "new.toml"
    assert cli.main(["init", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"wrote {path}: ")
    assert f"xmpp-http-component --config {path} --check-config" in out
    text = path.read_text()
    assert text == config.starter(config.STARTER_TITLE.format(path=path)).as_string()
    assert config.load(path, env={config.SECRET_ENV: "s"}).component.jid == "bot.example.com"
    with pytest.raises(config.ConfigError, match=r"component\.secret: required"):
        config.load(path, env={})


def test_init_then_check_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init"]) == 0
    assert (tmp_path / "config.toml").exists()
    capsys.readouterr()
    assert cli.main(["--check-config"]) == 2  # the secret is not set yet
    assert "component.secret: required" in capsys.readouterr().err
    monkeypatch.setenv(config.SECRET_ENV, "s")
    assert cli.main(["--check-config"]) == 0
    assert capsys.readouterr().out.endswith("config.toml: ok\n")


def test_init_does_not_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text("# mine\n")
    assert cli.main(["init", str(path)]) == 2
    assert capsys.readouterr().err == f"xmpp-http-component: {path} exists; use --force to overwrite it\n"
    assert path.read_text() == "# mine\n"
    assert cli.main(["init", "--force", str(path)]) == 0
    assert path.read_text().startswith("# xmpp-http-component configuration")


def test_init_into_a_missing_directory_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["init", str(tmp_path / "absent" / "config.toml")]) == 1
    assert "cannot write" in capsys.readouterr().err


def test_check_config_shows_every_key_with_secrets_masked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    assert cli.main(["--config", str(path), "--check-config"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    lines = captured.out.splitlines()
    assert lines[0].startswith(f"# {path}, as read")
    assert lines[-1] == f"{path}: ok"
    for secret in SECRETS:
        assert secret not in captured.out
    shown = tomlkit.parse("\n".join(lines[:-1])).unwrap()
    assert shown["component"]["secret"] == shown["bot"]["signing_secret"] == shown["api"]["token"] == "***"
    assert shown["bot"]["headers"] == {"Authorization": "***", "X-Trace": "on"}
    for key, _, _ in config.options():
        section, _, name = key.partition(".")
        if section in config.SECTIONS:
            assert name in shown[section], f"--check-config does not show {key}"
    assert (shown["bot"]["timeout"], shown["web"]["listen"]) == (10.0, "127.0.0.1:9090")  # defaults included


def test_check_config_of_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    example = Path(__file__).resolve().parents[2] / "config.toml"
    assert cli.main(["--config", str(example), "--check-config"]) == 0
    out = capsys.readouterr().out
    assert 'secret = "***"' in out
    assert "s3cret" not in out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            '[component]\njid = "bot.localhost\n',
            ':2: not valid TOML: a string is not closed (a missing "?)',
            id="toml",
        ),
        pytest.param("[component\n", ":1: not valid TOML: a table header is not closed (a missing ]?)", id="header"),
        pytest.param("a = 1\na = 2\n", ":2: not valid TOML: 'a' is already defined", id="duplicate"),
        pytest.param('[component]\njid = "bot.localhost"\n', ": component.secret: required", id="missing-key"),
        pytest.param(GOOD.replace("[api]", "[apu]"), ": apu: unknown section", id="unknown-section"),
        pytest.param(GOOD.replace('"127.0.0.1:8088"', "8088"), ": api.listen: expected a string", id="wrong-type"),
    ],
)
@pytest.mark.parametrize("check", [pytest.param(True, id="check-config"), pytest.param(False, id="run")])
def test_configuration_errors_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str, check: bool
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    assert cli.main(["--config", str(path), *(["--check-config"] if check else [])]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    prefix = "xmpp-http-component: configuration error: "
    if message.startswith(": "):
        assert captured.err.startswith(f"{prefix}{message[2:]}"), captured.err
    else:
        assert captured.err.startswith(f"{prefix}{path}{message}"), captured.err
    assert captured.err.count("\n") == 1


def test_a_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--config", str(tmp_path / "absent.toml"), "--check-config"]) == 2
    assert "cannot read the configuration file" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "command", "config_path", "check"),
    [
        pytest.param([], None, "config.toml", False, id="no-arguments"),
        pytest.param(["--config", "x.toml"], None, "x.toml", False, id="config"),
        pytest.param(["--config", "x.toml", "--check-config"], None, "x.toml", True, id="check-config"),
        pytest.param(["--log-level", "DEBUG", "--config", "y.toml"], None, "y.toml", False, id="log-level"),
        pytest.param(["init"], "init", "config.toml", False, id="init"),
    ],
)
def test_the_existing_flags_still_work_beside_init(
    argv: list[str], command: str | None, config_path: str, check: bool
) -> None:
    args = cli._parser().parse_args(argv)
    assert (args.command, args.config, args.check_config) == (command, Path(config_path), check)
