"""A configuration written out, from the same declarations it is read with: `starter` (what `init` writes, every
key documented), `describe` (the effective one, secrets masked, for `--check-config`) and `options` (the list)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator, Mapping
from typing import Any

import tomlkit

from component.config.sections import SECTIONS, Config
from component.notify import config as notify
from component.options import default_shown, shown, toml_rows, toml_value

STARTER_TITLE = """xmpp-http-component configuration, written by `xmpp-http-component init`.
Required keys hold placeholders; the others are commented out at their defaults.
Check it with: xmpp-http-component --config {path} --check-config"""


def describe(cfg: Config) -> str:
    """The effective configuration as TOML: every key with its value, defaults included, secrets masked."""
    doc = tomlkit.document()
    for name in SECTIONS:
        doc.add(name, shown(getattr(cfg, name)))
    notify.describe(doc, cfg.pools, cfg.handlers, cfg.rabbit)
    return doc.as_string()


def _rows(prefix: str, cls: type) -> Iterator[tuple[str, str, str]]:
    for row in toml_rows(cls):
        if row.table is not None:
            yield from _rows(f"{prefix}.{row.key}", row.table)
        else:
            default = "(required)" if row.required else toml_value(row.converter.show(row.default())).as_string()
            yield f"{prefix}.{row.key}", default, row.option.doc


def options() -> list[tuple[str, str, str]]:
    """Every option as (dotted key, default as TOML, documentation), for the docs and their tests."""
    return [row for prefix, cls in (*SECTIONS.items(), *notify.SECTIONS) for row in _rows(prefix, cls)]


def starter(
    title: str = STARTER_TITLE.format(path="config.toml"),
    every_key: bool = False,
    values: Mapping[str, Any] | None = None,
) -> tomlkit.TOMLDocument:
    """A commented configuration: each key documented; required keys with placeholders (or `values`, by dotted
    key); the others commented out at their defaults, or written out with `every_key`."""
    values = values or {}
    doc = tomlkit.document()
    for line in title.splitlines():
        doc.add(tomlkit.comment(line))
    for name, cls in SECTIONS.items():
        table = tomlkit.table()
        for row in toml_rows(cls):
            for line in textwrap.wrap(("required: " if row.required else "") + row.option.doc, 110):
                table.add(tomlkit.comment(line))
            value = values.get(f"{name}.{row.key}", default_shown(row))
            if f"{name}.{row.key}" in values or row.option.example is not None or (every_key and not row.required):
                table.add(row.key, toml_value(value))
            else:
                table.add(tomlkit.comment(f"{row.key} = {toml_value(value).as_string()}"))
        doc.add(tomlkit.nl())
        doc.add(name, table)
    doc.add(tomlkit.nl())
    for line in notify.starter_comments():
        doc.add(tomlkit.comment(line) if line else tomlkit.nl())
    return doc
