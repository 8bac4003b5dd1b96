"""The callback contract (MongooseIM's should_make_req / prepare_headers / prepare_body) and its loader."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Protocol

from component.notify.events import Event

DEFAULT_MODULE = "component.notify.defaults"
# MongooseIM's name for its default module, so that a pasted MongooseIM config works as is.
ALIASES = {"mod_event_pusher_http_defaults": DEFAULT_MODULE}
NAMES = ("should_make_req", "prepare_headers", "prepare_body")


class CallbackError(Exception):
    """A callback module that cannot be used; the message says why."""


class CallbackModule(Protocol):
    """What a callback module gives; each function is optional and falls back to the default's."""

    def should_make_req(self, event: Event) -> bool: ...  # called for every event: keep it fast
    def prepare_headers(self, event: Event) -> dict[str, str]: ...
    def prepare_body(self, event: Event) -> str | bytes: ...


@dataclass(frozen=True, slots=True)
class Callbacks:
    should_make_req: Callable[[Event], bool]
    prepare_headers: Callable[[Event], dict[str, str]]
    prepare_body: Callable[[Event], str | bytes]


def load_callbacks(name: str) -> Callbacks:
    """Import `name` and take its callbacks, the defaults filling in what it lacks."""
    from component.notify import defaults

    module_name = ALIASES.get(name, name)
    try:
        module: ModuleType = importlib.import_module(module_name)
    except Exception as exc:  # any failure of user code at import is a configuration problem
        raise CallbackError(f"cannot import {name!r} ({type(exc).__name__}: {exc})") from None
    found = {n: getattr(module, n) for n in NAMES if hasattr(module, n)}
    if not found:
        raise CallbackError(f"module {name!r} defines none of {', '.join(NAMES)}")
    for fn_name, fn in found.items():
        if not callable(fn):
            raise CallbackError(f"{name}.{fn_name} is not a function")
    return Callbacks(**{n: found.get(n, getattr(defaults, n)) for n in NAMES})
