"""The instance id: which process of several serving one domain wrote a log line or a metric.

`[instance] id` names it; '' (the default) makes it `<host name>-<process id>`: unique among the processes running
at one time on every host, readable in a log (`ps` and the host's own logs name the same process), and the same
each time it is asked for within one process, so the log setup and the metrics need not pass it around."""

from __future__ import annotations

import logging
import os
import socket


def resolve(configured: str) -> str:
    """The configured id, or `<host name>-<pid>` when it is ''."""
    if configured:
        return configured
    host = socket.gethostname().split(".")[0] or "localhost"
    return f"{host}-{os.getpid()}"


class InstanceFilter(logging.Filter):
    """Gives every record an `instance` attribute, for the `%(instance)s` of the log format. Set on the handler,
    so records of every logger (slixmpp's and aiohttp's too) get it."""

    def __init__(self, instance: str) -> None:
        super().__init__()
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance = self.instance
        return True
