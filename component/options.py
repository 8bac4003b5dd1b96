"""Configuration options: each declared once, with `opt`, beside its dataclass field; read from one TOML table into a
typed frozen section (`read_section`, raising `ConfigError` naming the dotted key); shown back as TOML. The toolkit
that config/ and notify/ write their sections with; it depends on no other module of the component."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass
from functools import partial
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import tomlkit

MASK = "***"


class ConfigError(Exception):
    """A configuration problem, phrased as one line that names the dotted key."""


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where one of our HTTP servers listens; port 0 picks a free port."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """'host:port' or '[v6]:port'; ValueError saying why for anything else."""
        match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^:\[\]]+):(\d+)", text)
        if not match:
            raise ValueError(f"expected 'host:port' (or '[::1]:port', or '' for off), got {text!r}")
        port = int(match.group(2) or match.group(4))
        if port > 65535:
            raise ValueError(f"port {port} is out of range")
        return cls(match.group(1) or match.group(3), port)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


# --- How options are declared -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Option:
    """What a field's metadata says about its option, beside the default and the type."""

    doc: str
    key: str | None = None  # the TOML key, when it is not the field's name
    check: Callable[[str, Any], Any] | None = None  # (dotted key, typed value) -> value; raises ConfigError
    read: Converter | None = None  # when the TOML form is not the one the field's type implies
    env: str | None = None  # an environment variable that overrides the file (when set and not empty)
    mask: Callable[[Any], Any] | None = None  # what `describe` shows instead of the value
    example: Any = None  # a TOML value `starter` writes (a required key's placeholder)


@dataclass(frozen=True, slots=True)
class Converter:
    """Between a TOML value and a field's typed value: `read` raises ConfigError naming the key."""

    read: Callable[[str, Any], Any]
    show: Callable[[Any], Any] = lambda value: value


def opt(doc: str, default: Any = MISSING, check: Callable[[str, Any], Any] | None = None, **more: Any) -> Any:
    """A dataclass field declaring one option; `more` takes the other `Option` attributes."""
    meta = {"option": Option(doc, check=check, **more)}
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


# --- How a TOML value is read, by the field's type --------------------------------------------------------------


def _toml_kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a float", str: "a string", list: "an array"}
    return "a table" if isinstance(value, dict) else names.get(type(value), f"a {type(value).__name__}")


def expect(key: str, value: Any, accepted: tuple[type, ...], expected: str) -> Any:
    """`value` when it is of an accepted type (a boolean only when bool is named); else ConfigError."""
    if (isinstance(value, bool) and bool not in accepted) or not isinstance(value, accepted):
        raise ConfigError(f"{key}: expected {expected}, got {_toml_kind(value)} {value!r}")
    return value


def _read_table_of_strings(key: str, value: Any) -> dict[str, str]:
    for name, item in expect(key, value, (dict,), "a table of strings").items():
        expect(f"{key}.{name}", item, (str,), "a string")
    return dict(value)


def _read_listen(key: str, value: Any) -> ListenAddress | None:
    if expect(key, value, (str,), "a string") == "":
        return None
    try:
        return ListenAddress.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _alternatives(choices: tuple[str, ...]) -> str:
    quoted = [repr(c) for c in choices]
    return f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def _read_choice(choices: tuple[str, ...], key: str, value: Any) -> str:
    if expect(key, value, (str,), "a string") not in choices:
        raise ConfigError(f"{key}: expected {_alternatives(choices)}, got {value!r}")
    return str(value)


def _read_choices(choices: tuple[str, ...], key: str, value: Any) -> frozenset[str]:
    for item in expect(key, value, (list,), "an array of strings"):
        if item not in choices:
            raise ConfigError(f"{key}: expected an array of {_alternatives(choices)}, got {item!r}")
    return frozenset(value)


_CONVERTERS: dict[object, Converter] = {
    str: Converter(partial(expect, accepted=(str,), expected="a string")),
    int: Converter(partial(expect, accepted=(int,), expected="an integer")),
    float: Converter(lambda key, value: float(expect(key, value, (int, float), "a number"))),
    dict[str, str]: Converter(_read_table_of_strings),
    ListenAddress | None: Converter(_read_listen, lambda address: "" if address is None else str(address)),
}


def _converter(annotation: Any) -> Converter:
    """How a field of this type is read: the table above, a Literal's choices, a set of them, or a sub-table."""
    if annotation in _CONVERTERS:
        return _CONVERTERS[annotation]
    if get_origin(annotation) is Literal:
        return Converter(partial(_read_choice, get_args(annotation)))
    if get_origin(annotation) is frozenset and get_origin(get_args(annotation)[0]) is Literal:
        choices = get_args(get_args(annotation)[0])
        return Converter(partial(_read_choices, choices), lambda kinds: [c for c in choices if c in kinds])
    if isinstance(annotation, type) and is_dataclass(annotation):
        return Converter(partial(read_section, annotation))
    raise TypeError(f"no TOML reading for {annotation!r}: declare the option with read=")


# --- A section's options, and reading one -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Declared:
    """One option of a section class, as `declared` finds it."""

    name: str  # the field's
    key: str  # the TOML key
    option: Option
    converter: Converter
    field: Field[Any]
    table: type | None  # the class of a sub-table (a section of its own)

    @property
    def required(self) -> bool:
        return self.field.default is MISSING and self.field.default_factory is MISSING

    def default(self) -> Any:
        f = self.field
        return f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default


_DECLARED: dict[type, tuple[Declared, ...]] = {}


def declared(cls: type) -> tuple[Declared, ...]:
    """The options of a section class, in order, with the converter each field's resolved type calls for."""
    if cls in _DECLARED:
        return _DECLARED[cls]
    hints = get_type_hints(cls)
    rows = []
    for f in fields(cls):
        option: Option = f.metadata["option"]
        hint = hints[f.name]
        table = hint if option.read is None and isinstance(hint, type) and is_dataclass(hint) else None
        rows.append(Declared(f.name, option.key or f.name, option, option.read or _converter(hint), f, table))
    _DECLARED[cls] = tuple(rows)
    return _DECLARED[cls]


def toml_rows(cls: type) -> list[Declared]:
    """The options a TOML file shows: one per key (a field derived from another's key is left out)."""
    rows: dict[str, Declared] = {}
    for row in declared(cls):
        rows.setdefault(row.key, row)
    return list(rows.values())


S = TypeVar("S")


def read_section(cls: type[S], name: str, raw: Any, env: Mapping[str, str] | None = None) -> S:
    """One table -> one section: every key known and typed, checked, the environment winning where it may."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a table, got {_toml_kind(raw)} {raw!r}")
    rows = declared(cls)
    known = list(dict.fromkeys(row.key for row in rows))
    for key in raw:
        if key not in known:
            raise ConfigError(f"{name}.{key}: unknown key (known: {', '.join(known)})")
    values: dict[str, Any] = {}
    for row in rows:
        key = f"{name}.{row.key}"
        value: Any
        if env and row.option.env and env.get(row.option.env):
            value = env[row.option.env]
        elif row.key in raw:
            value = raw[row.key]
        elif row.table is not None:
            value = {}  # an absent sub-table: its own keys say what is required
        elif row.required:
            raise ConfigError(f"{key}: required ({row.option.doc})")
        else:
            continue
        typed = row.converter.read(key, value)
        values[row.name] = row.option.check(key, typed) if row.option.check else typed
    return cls(**values)


# --- Checks of values, beyond their types, that any section may use ---------------------------------------------


def non_empty(key: str, value: str) -> str:
    if not value:
        raise ConfigError(f"{key}: must not be empty")
    return value


def positive(key: str, value: float) -> float:
    if value <= 0:
        raise ConfigError(f"{key}: expected a number greater than 0, got {value}")
    return value


def http_url(key: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{key}: expected an http:// or https:// URL, got {value!r}")
    return value


def masked(value: Any) -> Any:
    """A secret as `describe` shows it: '***' when set, '' when not."""
    return MASK if value else value


# --- Showing a section as TOML ----------------------------------------------------------------------------------


def toml_value(value: Any) -> Any:
    """A tomlkit item for a plain value; a table stays inline (a dict would become a [sub.table])."""
    if isinstance(value, dict):
        table = tomlkit.inline_table()
        table.update(value)
        return table
    return tomlkit.item(value)


def default_shown(row: Declared) -> Any:
    """The TOML value shown for an option not set: its example, its default, or '' for a required key."""
    if row.option.example is not None:
        return row.option.example
    return "" if row.required else row.converter.show(row.default())


def shown(section: Any) -> Any:
    """A section's values as a TOML table, secrets masked."""
    table = tomlkit.table()
    for row in toml_rows(type(section)):
        value = getattr(section, row.name)
        if row.table is not None:
            table.add(row.key, shown(value))
            continue
        value = row.converter.show(value)
        table.add(row.key, toml_value(row.option.mask(value) if row.option.mask else value))
    return table


def commented_lines(name: str, cls: type, array: bool = False, indent: str = "") -> list[str]:
    """A section as commented-out TOML (without the '# '): each key at its example or default, documented."""
    lines = [indent + (f"[[{name}]]" if array else f"[{name}]")]
    for row in toml_rows(cls):
        if row.table is None:
            setting = f"{indent}  {row.key} = {toml_value(default_shown(row)).as_string()}"
            doc = textwrap.wrap(("required: " if row.required else "") + row.option.doc, 76)
            lines += [f"{text:<34} # {line}" for text, line in zip([setting, *[""] * len(doc)], doc, strict=False)]
    for row in toml_rows(cls):
        if row.table is not None:
            lines += commented_lines(f"{name}.{row.key}", row.table, indent=indent + "  ")
    return lines
