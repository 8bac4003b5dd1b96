"""A private, loopback-only RabbitMQ broker for integration tests and the benchmark (standard library only).

It keeps its config, data (mnesia), logs and Erlang cookie inside ``workdir`` and listens on 127.0.0.1 only, on
free ports chosen at construction time, so that a restart keeps its ports and its durable queues::

    broker = RabbitServer(Path(tmp))
    broker.start()          # returns once the AMQP port accepts connections (about 6 s)
    ...                     # amqp://guest:guest@127.0.0.1:<broker.port>/ (guest may log in from loopback)
    broker.stop()           # `rabbitmqctl stop`, then the epmd it started is ended

Its Erlang VM runs with SHARED_CORES (one scheduler, no busy waiting: a broker sharing the machine's cores with the
servers, components and clients of a test or a benchmark); ``RabbitServer(workdir, erl_args="")`` gives Erlang's
defaults.

It runs the broker's own start script (``/usr/lib/rabbitmq/bin/rabbitmq-server`` on Debian) as the current user:
Debian's ``/usr/sbin/rabbitmq-server`` wrapper switches to the ``rabbitmq`` user, which would need ``workdir`` to
be its own and could not enter a private temp dir. ``rabbitmq-server -detached`` starts nothing here, so the
script runs in the foreground, in its own process group.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.servers import LOOPBACK, free_ports, port_open

__all__ = ["SHARED_CORES", "RabbitServer", "start_rabbit"]

# The Erlang VM flags of a broker that shares its machine's cores with other busy processes (here: the XMPP server,
# the component, the bot and the clients of a test or a benchmark, on 2 vCPUs), as RabbitMQ's runtime guide
# advises for such a node (docs/deployment.md): one scheduler thread, which keeps the broker's processes (reader,
# channel, queue) on one thread instead of waking the other for each message passed, and no busy waiting, so that
# a scheduler out of work sleeps at once instead of spinning on a core the others need.
SHARED_CORES = "+S 1:1 +sbwt none +sbwtdcpu none +sbwtdio none"

_SCRIPT_DIRS = ("/usr/lib/rabbitmq/bin", "/usr/lib/rabbitmq/sbin", "/usr/local/sbin", "/usr/sbin", "/usr/local/bin")
_RUNNING: set[RabbitServer] = set()  # strong refs: atexit must see forgotten brokers


def _script(name: str) -> str:
    """A RabbitMQ script: the broker's own (not Debian's su wrapper) when installed, else from PATH."""
    for directory in _SCRIPT_DIRS:
        path = Path(directory) / name
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which(name)
    if not found:
        raise RuntimeError(f"{name!r} not found: install Debian's rabbitmq-server (scripts/setup.sh does)")
    return found


@dataclass(eq=False)
class RabbitServer:
    """A private RabbitMQ node in ``workdir``: AMQP on 127.0.0.1:``port``, user guest/guest."""

    workdir: Path
    port: int = 0  # AMQP; 0 -> a free loopback port, fixed at construction
    erl_args: str = SHARED_CORES  # more flags for the broker's Erlang VM; "" for Erlang's defaults
    dist_port: int = field(default=0, init=False)  # Erlang distribution
    epmd_port: int = field(default=0, init=False)  # a private epmd, so that no shared one is started or used
    node: str = field(default="", init=False)
    start_seconds: float = field(default=0.0, init=False)  # how long the last start() took
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        ports = free_ports(3, {self.port})
        self.port = self.port or ports.pop()
        self.dist_port, self.epmd_port = ports[:2]
        self.node = f"rabbit-test-{secrets.token_hex(4)}@localhost"  # fixed: the node's data is bound to it

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@{LOOPBACK}:{self.port}/"

    @property
    def log_path(self) -> Path:
        return self.workdir / "console.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _env(self) -> dict[str, str]:
        w = self.workdir
        loopback_only = "-kernel inet_dist_use_interface {127,0,0,1}"
        return {
            **os.environ,
            "HOME": str(w),  # the Erlang cookie, shared by the node and rabbitmqctl
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "RABBITMQ_MNESIA_BASE": str(w / "mnesia"),
            "RABBITMQ_LOG_BASE": str(w / "log"),
            "RABBITMQ_CONFIG_FILE": str(w / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(w / "advanced.config"),  # absent: none
            "RABBITMQ_CONF_ENV_FILE": str(w / "rabbitmq-env.conf"),  # not the machine's
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(w / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": f"{loopback_only} {self.erl_args}".strip(),
            "RABBITMQ_CTL_ERL_ARGS": loopback_only,
        }

    def _write_config(self) -> None:
        w = self.workdir
        (w / "rabbitmq.conf").write_text(
            "# generated by tests/harness/rabbit.py\n"
            "loopback_users.guest = true\n"  # guest logs in from 127.0.0.1 only (RabbitMQ's default, said here)
            "listeners.ssl = none\n"
        )
        (w / "rabbitmq-env.conf").write_text("# generated by tests/harness/rabbit.py: the environment says it all\n")
        (w / "enabled_plugins").write_text("[].\n")

    def start(self, timeout: float = 60) -> None:
        """Start in the background; return once the AMQP port accepts TCP. RuntimeError (with the log's tail) when
        the broker exits or is not ready in time."""
        if self.running:
            return
        if port_open(self.port):
            raise RuntimeError(f"rabbitmq: port {self.port} already in use")
        self._write_config()
        started = time.monotonic()
        with self.log_path.open("ab") as console:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                [_script("rabbitmq-server")],
                cwd=self.workdir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group -> killpg on stop
            )
        _RUNNING.add(self)
        try:
            while not port_open(self.port):
                if self._proc.poll() is not None:
                    raise RuntimeError(f"rabbitmq exited with code {self._proc.returncode}\n{self.log_tail()}")
                if time.monotonic() - started > timeout:
                    raise RuntimeError(f"rabbitmq not listening after {timeout} s\n{self.log_tail()}")
                time.sleep(0.1)
        except BaseException:
            self.stop(10)
            raise
        self.start_seconds = time.monotonic() - started

    def stop(self, timeout: float = 30) -> None:
        """`rabbitmqctl stop` (SIGTERM, then SIGKILL, if that fails); then end the epmd the node started.
        Idempotent; the AMQP port is closed on return."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(Exception):
                    self.ctl("stop", timeout=timeout)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGTERM)
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                        proc.wait(5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # anything of its group left behind
            self._proc = None
        self._end_epmd()
        _RUNNING.discard(self)
        deadline = time.monotonic() + 10
        while port_open(self.port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"rabbitmq: port {self.port} still open after stop()")
            time.sleep(0.05)

    def restart(self) -> None:
        """stop() + start(): the same ports and data (durable exchanges and queues, persistent messages)."""
        self.stop()
        self.start()

    def ctl(self, *args: str, timeout: float = 30) -> str:
        """Run `rabbitmqctl -n NODE ARGS...` against this node; its output, or RuntimeError."""
        result = subprocess.run(
            [_script("rabbitmqctl"), "-n", self.node, *args],
            cwd=self.workdir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {(result.stdout + result.stderr).strip()}")
        return result.stdout

    def _end_epmd(self) -> None:
        """The node started its own epmd (on epmd_port, loopback only), which outlives it: end it."""
        epmd = shutil.which("epmd") or shutil.which("epmd", path="/usr/lib/erlang/bin")
        if epmd is None:
            return
        with contextlib.suppress(Exception):
            subprocess.run(
                [epmd, "-port", str(self.epmd_port), "-kill"],
                env=self._env(),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
            )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> RabbitServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_rabbit(workdir: Path, timeout: float = 60) -> RabbitServer:
    """Construct a RabbitServer in ``workdir`` and start() it."""
    broker = RabbitServer(workdir)
    broker.start(timeout)
    return broker


@atexit.register
def _stop_all() -> None:
    """Safety net: never leave a broker of ours (or its epmd) running after the interpreter exits."""
    for broker in list(_RUNNING):
        with contextlib.suppress(Exception):
            broker.stop(10)
