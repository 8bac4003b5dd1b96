"""Command line: arguments, logging, exit codes; one asyncio.run, signals that set an Event. `init` writes a
starter configuration; `--check-config` shows the effective one."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from component import __version__, config, instance
from component.http_server import ListenError

EXIT_CONFIG = 2
EXIT_START = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmpp-http-component",
        description="An XMPP component (XEP-0114) that POSTs stanzas to an HTTP bot and sends its replies back.",
    )
    parser.add_argument("--config", type=Path, default=Path("config.toml"), help="TOML file (default: config.toml)")
    parser.add_argument(
        "--check-config", action="store_true", help="show the effective configuration (secrets masked) and exit"
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="DEBUG also logs stanza contents (default: INFO)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # A command is optional: without one, the component runs (`xmpp-http-component --config X` as ever).
    commands = parser.add_subparsers(dest="command", metavar="{init}")
    init = commands.add_parser("init", help="write a commented starter configuration")
    init.add_argument("path", nargs="?", type=Path, default=Path("config.toml"), help="(default: config.toml)")
    init.add_argument("--force", action="store_true", help="overwrite the file if it exists")
    return parser


def _init(path: Path, force: bool) -> int:
    text = config.starter(config.STARTER_TITLE.format(path=path)).as_string()
    try:
        with path.open("w" if force else "x", encoding="utf-8") as file:  # "x": never over an existing file
            file.write(text)
    except FileExistsError:
        print(f"xmpp-http-component: {path} exists; use --force to overwrite it", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"xmpp-http-component: cannot write {path} ({exc.strerror})", file=sys.stderr)
        return EXIT_START
    print(f"wrote {path}: a starter configuration, every option documented beside it")
    print(f"next: set component.secret (or ${config.SECRET_ENV}) and bot.url, then check it with")
    print(f"  xmpp-http-component --config {path} --check-config")
    return 0


async def _serve(cfg: config.Config) -> None:
    # The stanza path makes little cyclic garbage: collect it less often, and never scan what start-up built.
    # Cuts the p99 latency under load (docs/benchmarks.md).
    gc.freeze()
    gc.set_threshold(20000, 50, 50)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    from component.app import App  # here: `init` and `--check-config` need only the configuration

    await App(cfg).run(stop)


def _run(main: Coroutine[Any, Any, None]) -> None:
    """asyncio.run, on uvloop when it is installed (`pip install xmpp-http-component[fast]`), unless
    XMPP_COMPONENT_NO_UVLOOP is set."""
    if not os.environ.get("XMPP_COMPONENT_NO_UVLOOP"):
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "init":
        return _init(args.path, args.force)
    try:
        cfg = config.load(args.config)
    except config.ConfigError as exc:
        print(f"xmpp-http-component: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"# {args.config}, as read: every key with its value, defaults included, secrets masked")
        print(config.describe(cfg), end="")
        print(f"{args.config}: ok")
        return 0
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(instance)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:  # every line names the instance ([instance] id)
        handler.addFilter(instance.InstanceFilter(instance.resolve(cfg.instance.id)))
    # slixmpp logs every TCP close at INFO and stanza traffic at DEBUG; our own lines say what matters.
    logging.getLogger("slixmpp").setLevel(logging.DEBUG if args.log_level == "DEBUG" else logging.WARNING)
    try:
        _run(_serve(cfg))
    except ListenError as exc:
        print(f"xmpp-http-component: {exc}", file=sys.stderr)
        return EXIT_START
    except config.ConfigError as exc:  # found at start: e.g. state.dir cannot hold the queue
        print(f"xmpp-http-component: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0
