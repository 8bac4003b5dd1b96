"""The distribution: its metadata, the console script and `python -m component`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from pathlib import Path

import component

REPO = Path(__file__).resolve().parents[2]


def test_metadata() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["name"] == "xmpp-http-component"
    assert project["requires-python"] == ">=3.11"
    names = {dep.split(">")[0].split("=")[0].strip() for dep in project["dependencies"]}
    assert {"slixmpp", "aiohttp", "tomlkit", "prometheus-client"} <= names
    assert project["scripts"] == {"xmpp-http-component": "component.cli:main"}
    assert distribution("xmpp-http-component").version == component.__version__


def test_console_script_and_module_entry_points() -> None:
    script = Path(sys.executable).parent / "xmpp-http-component"
    for command in ([str(script)], [sys.executable, "-m", "component"]):
        result = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=30)
        assert (result.returncode, result.stdout.strip()) == (0, f"xmpp-http-component {component.__version__}")
