"""The instance id: configured, or the host name and the process id; and the log filter that puts it in every
line, whichever logger wrote it."""

from __future__ import annotations

import io
import logging
import os
import socket

import pytest

from component.config import ConfigError, from_dict
from component.instance import InstanceFilter, resolve

MINIMAL_RAW = {"component": {"jid": "bot.example.com", "secret": "s"}, "bot": {"url": "http://127.0.0.1:8080/"}}


def test_a_configured_id_is_kept() -> None:
    assert resolve("web-1") == "web-1"


def test_the_default_names_the_host_and_the_process() -> None:
    assert resolve("") == f"{socket.gethostname().split('.')[0]}-{os.getpid()}"
    assert resolve("") == resolve("")  # the same each time, within one process


def test_the_config_option_defaults_to_empty() -> None:
    raw = MINIMAL_RAW
    assert from_dict(raw, env={}).instance.id == ""
    assert from_dict({**raw, "instance": {"id": "a"}}, env={}).instance.id == "a"
    assert from_dict(raw, env={}).component.standby_retry == 2.0


def test_every_logger_s_lines_name_the_instance() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(instance)s %(name)s: %(message)s"))
    handler.addFilter(InstanceFilter("web-1"))
    root = logging.getLogger("test_instance_root")
    root.addHandler(handler)
    try:
        logging.getLogger("test_instance_root.child").warning("hello")
        root.warning("world")
    finally:
        root.removeHandler(handler)
    assert out.getvalue().splitlines() == [
        "WARNING web-1 test_instance_root.child: hello",
        "WARNING web-1 test_instance_root: world",
    ]


@pytest.mark.parametrize("bad", ["a~b", "web 1"])
def test_an_instance_id_with_the_iq_separator_or_a_space_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^instance\.id: an instance id has no '~' and no spaces"):
        from_dict({**MINIMAL_RAW, "instance": {"id": bad}}, env={})
