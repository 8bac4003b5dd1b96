"""Private, loopback-only XMPP servers (Prosody, ejabberd) for integration tests.

Each server keeps its config, data, pid file and logs inside ``workdir`` and
listens on 127.0.0.1 only, on free ports chosen at construction time (so a
restart keeps them).  No pytest dependency: usable from fixtures, demos and
benchmark scripts alike::

    with start_prosody(Path(tmp)) as srv:
        srv.register("alice", "pw")
        ...  # connect to 127.0.0.1:srv.c2s_port / srv.component_port

Only the system binaries ``prosody``, ``prosodyctl`` and ``ejabberdctl`` are
used from outside the work dir.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "EjabberdServer",
    "ProsodyServer",
    "XmppServer",
    "free_port",
    "free_ports",
    "port_open",
    "start_ejabberd",
    "start_prosody",
]

LOOPBACK = "127.0.0.1"
_SEARCH_DIRS = ("/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin")
_RUNNING: set[XmppServer] = set()  # strong refs: atexit must see forgotten servers


def free_port() -> int:
    """Return a currently free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def free_ports(n: int, taken: set[int]) -> list[int]:
    """``n`` distinct free loopback ports not in ``taken``."""
    out: list[int] = []
    while len(out) < n:
        p = free_port()
        if p not in taken and p not in out:
            out.append(p)
    return out


def _which(binary: str) -> str:
    """Locate a system binary on PATH or in the usual sbin/bin dirs."""
    found = shutil.which(binary) or shutil.which(binary, path=os.pathsep.join(_SEARCH_DIRS))
    if not found:
        raise RuntimeError(f"{binary!r} not found on PATH or in {_SEARCH_DIRS}")
    return found


def port_open(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _lua_str(s: str) -> str:
    """Quote a Python string as a Lua string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _yaml_str(s: str) -> str:
    """Quote a Python string as a YAML (JSON-style) scalar."""
    import json

    return json.dumps(s)


@dataclass(eq=False)
class XmppServer:
    """Base class: a private XMPP server subprocess living in ``workdir``."""

    name: str
    workdir: Path
    domain: str = "localhost"  # the user host
    component_domains: tuple[str, ...] = ("bot.localhost",)
    muc_domain: str = "conference.localhost"  # the server's own group chat service (XEP-0045)
    component_secret: str = "s3cret"
    c2s_port: int = 0  # 0 -> a free loopback port, fixed at construction
    component_port: int = 0

    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    start_seconds: float = field(default=0.0, init=False)  # duration of the last start()

    console_log_name: ClassVar[str] = "console.log"

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.component_domains = tuple(self.component_domains)
        taken = {p for p in (self.c2s_port, self.component_port) if p}
        if not self.c2s_port:
            self.c2s_port = free_ports(1, taken)[0]
            taken.add(self.c2s_port)
        if not self.component_port:
            self.component_port = free_ports(1, taken)[0]

    # -- hooks for subclasses ----------------------------------------------
    def _write_config(self) -> None:
        raise NotImplementedError

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["HOME"] = str(self.workdir)  # keep ~/.anything inside workdir
        return env

    def _ready(self) -> bool:
        """Extra readiness check beyond the ports accepting connections."""
        return True

    def _graceful_stop(self, timeout: float) -> None:
        assert self._proc is not None
        os.killpg(self._proc.pid, signal.SIGTERM)

    def _log_files(self) -> list[Path]:
        return []

    # -- public API --------------------------------------------------------
    @property
    def ports(self) -> tuple[int, ...]:
        """The TCP ports this server listens on (c2s, component)."""
        return (self.c2s_port, self.component_port)

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 20) -> None:
        """Start in background; return once c2s and component ports accept TCP.

        Raises RuntimeError (with the log tail) if the server dies or times out.
        """
        if self.running:
            return
        for port in self.ports:
            if port_open(port):
                raise RuntimeError(f"{self.name}: port {port} already in use")
        self._write_config()
        t0 = time.monotonic()
        with open(self.workdir / self.console_log_name, "ab") as console:  # the child keeps its own descriptor
            self._proc = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group -> killpg on stop
            )
        _RUNNING.add(self)
        deadline = t0 + timeout
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with code {self._proc.returncode} during start\n{_tail(self.log_text())}"
                    )
                if self._ready() and all(port_open(p) for p in self.ports):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready after {timeout}s\n{_tail(self.log_text())}")
                time.sleep(0.05)
        except BaseException:
            self.stop(5)  # never leave a half-started server behind
            raise
        self.start_seconds = time.monotonic() - t0

    def stop(self, timeout: float = 20) -> None:
        """Graceful stop, SIGKILL after ``timeout``; idempotent; ports closed on return."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(Exception):
                    self._graceful_stop(timeout)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)
            self._reap_group(timeout)
            self._proc = None
        _RUNNING.discard(self)
        deadline = time.monotonic() + 5
        while any(port_open(p) for p in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: ports {self.ports} still open after stop()")
            time.sleep(0.05)

    def restart(self) -> None:
        """stop() + start(): same ports, same data (accounts are kept)."""
        self.stop()
        self.start()

    def register(self, user: str, password: str) -> None:
        """Create the account ``user@domain`` (works while the server runs)."""
        raise NotImplementedError

    def log_text(self) -> str:
        """The server's log so far (log files + console output)."""
        parts = []
        for path in [*self._log_files(), self.workdir / self.console_log_name]:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                parts.append(f"==> {path.name} <==\n{text}")
        return "\n".join(parts)

    def __enter__(self) -> XmppServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------
    @staticmethod
    def _killpg(pgid: int, sig: int) -> bool:
        try:
            os.killpg(pgid, sig)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def _reap_group(self, timeout: float) -> None:
        """Make sure no process of our process group survives."""
        assert self._proc is not None
        pgid = self._proc.pid
        deadline = time.monotonic() + timeout
        while self._killpg(pgid, 0):
            if time.monotonic() > deadline:
                self._killpg(pgid, signal.SIGKILL)
                time.sleep(0.2)
                break
            time.sleep(0.05)

    def _run(self, args: list[str], what: str, timeout: float = 60) -> str:
        res = subprocess.run(
            args,
            cwd=self.workdir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        out = (res.stdout + res.stderr).strip()
        if res.returncode != 0:
            raise RuntimeError(f"{self.name}: {what} failed (rc={res.returncode}): {out}")
        return out


@dataclass(eq=False)
class ProsodyServer(XmppServer):
    """Prosody 0.12 run in the foreground (``prosody -F --config FILE``)."""

    name: str = field(default="prosody", init=False)

    @property
    def config_path(self) -> Path:
        return self.workdir / "prosody.cfg.lua"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prosody.log"

    def _log_files(self) -> list[Path]:
        return [self.log_path]

    def _write_config(self) -> None:
        w = self.workdir
        (w / "data").mkdir(exist_ok=True)
        (w / "plugins").mkdir(exist_ok=True)
        (w / "certs").mkdir(exist_ok=True)  # empty: no TLS, but avoids a startup error
        q = _lua_str
        lines = [
            "-- generated by tests/harness/servers.py",
            "run_as_root = true",
            "daemonize = false",
            f"pidfile = {q(str(w / 'prosody.pid'))}",
            f"data_path = {q(str(w / 'data'))}",
            f"installer_plugin_path = {q(str(w / 'plugins'))}",
            f"certificates = {q(str(w / 'certs'))}",
            f"log = {{ info = {q(str(self.log_path))}; }}",
            # loopback only, and only our two ports
            f"interfaces = {{ {q(LOOPBACK)} }}",
            f"local_interfaces = {{ {q(LOOPBACK)} }}",
            f"c2s_ports = {{ {self.c2s_port} }}",
            f"c2s_interfaces = {{ {q(LOOPBACK)} }}",
            "c2s_direct_tls_ports = { }",
            "legacy_ssl_ports = { }",
            "s2s_ports = { }",
            "s2s_direct_tls_ports = { }",
            "http_ports = { }",
            "https_ports = { }",
            f"component_ports = {{ {self.component_port} }}",
            f"component_interfaces = {{ {q(LOOPBACK)} }}",
            f"component_interface = {q(LOOPBACK)}",
            # no TLS, plain auth, no s2s
            "c2s_require_encryption = false",
            "s2s_require_encryption = false",
            "allow_unencrypted_plain_auth = true",
            'authentication = "internal_plain"',
            'storage = "internal"',
            "allow_registration = false",
            # generous limits (benchmarks push thousands of msg/s)
            "c2s_stanza_size_limit = 10*1024*1024",
            "c2s_unauthed_stanza_size_limit = 1024*1024",
            "c2s_max_child_elements = 1000000",
            "component_stanza_size_limit = 10*1024*1024",
            "c2s_timeout = 3600",
            "modules_enabled = {",
            '  "roster"; "saslauth"; "disco"; "presence"; "message"; "iq";',
            '  "ping"; "time"; "version"; "uptime"; "posix";',
            "}",
            'modules_disabled = { "s2s"; "s2s_auth_certs"; "dialback"; "tls"; "limits"; "offline"; }',
            "",
            f"VirtualHost {q(self.domain)}",
            "",
        ]
        for comp in self.component_domains:
            lines += [f"Component {q(comp)}", f"  component_secret = {q(self.component_secret)}", ""]
        # the built-in MUC component: anyone may create a room (locked until configured, as XEP-0045 says)
        lines += [f'Component {q(self.muc_domain)} "muc"', "  restrict_room_creation = false", ""]
        self.config_path.write_text("\n".join(lines))

    def _command(self) -> list[str]:
        return [_which("prosody"), "-F", "--config", str(self.config_path)]

    def _graceful_stop(self, timeout: float) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)

    def register(self, user: str, password: str) -> None:
        """Create user@domain via ``prosodyctl --config FILE register``."""
        if not self.config_path.exists():
            self._write_config()
        self._run(
            [_which("prosodyctl"), "--config", str(self.config_path), "register", user, self.domain, password],
            f"register {user}@{self.domain}",
        )


@dataclass(eq=False)
class EjabberdServer(XmppServer):
    """ejabberd 23.x run via ``ejabberdctl ... foreground``.

    Runs as the *current* user (root here): our private ejabberdctl.cfg sets
    EXEC_CMD=as_current_user, so ejabberdctl does not ``su`` to the
    ``ejabberd`` user (which could not traverse 0700 temp dirs such as
    pytest's own).  Erlang distribution uses a fixed loopback-only port
    (ERL_DIST_PORT + inet_dist_use_interface), so no epmd is started at all,
    and a random cookie is passed with -setcookie (no ~/.erlang.cookie).
    """

    name: str = field(default="ejabberd", init=False)
    node: str = field(default="", init=False)
    dist_port: int = field(default=0, init=False)
    # > 0: `domain_balancing` for every component domain, `type: bare_source` over this many connections (ejabberd
    # 23.01 needs component_number with it); 0 (the default): no balancing, each stanza to any connection
    component_number: int = 0
    cookie: str = field(default="", init=False, repr=False)
    _log_offset: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        tag = secrets.token_hex(4)
        self.node = f"ejabberd-test-{tag}@localhost"  # fixed: mnesia is bound to it
        self.dist_port = free_ports(1, set(self.ports))[0]
        self.cookie = "c" + secrets.token_hex(12)

    @property
    def config_path(self) -> Path:
        return self.workdir / "ejabberd.yml"

    @property
    def ctl_config_path(self) -> Path:
        return self.workdir / "ejabberdctl.cfg"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def spool_dir(self) -> Path:
        return self.workdir / "spool"

    def _log_files(self) -> list[Path]:
        return [self.log_dir / "ejabberd.log", self.log_dir / "error.log", self.log_dir / "crash.log"]

    def _write_config(self) -> None:
        w = self.workdir
        for d in (self.log_dir, self.spool_dir, w / "modules.d"):
            d.mkdir(exist_ok=True)
        try:  # readiness is judged on log lines written by *this* start
            self._log_offset = (self.log_dir / "ejabberd.log").stat().st_size
        except OSError:
            self._log_offset = 0
        q = _yaml_str
        ctl = [
            "# generated by tests/harness/servers.py (sourced by ejabberdctl)",
            "EXEC_CMD=as_current_user",
            "EJABBERD_BYPASS_WARNINGS=true",
            f"EJABBERD_PID_PATH={shlex.quote(str(w / 'ejabberd.pid'))}",
            f"CONTRIB_MODULES_PATH={shlex.quote(str(w / 'contrib'))}",
            f"CONTRIB_MODULES_CONF_DIR={shlex.quote(str(w / 'modules.d'))}",
            f"ERL_DIST_PORT={self.dist_port}",
            "ERL_EPMD_ADDRESS=127.0.0.1",
            f"ERL_OPTIONS='-env ERL_CRASH_DUMP_BYTES 0 -setcookie {self.cookie}"
            " -kernel inet_dist_use_interface {127,0,0,1}'",
        ]
        self.ctl_config_path.write_text("\n".join(ctl) + "\n")
        (w / "inetrc").write_text('{lookup,["file","native"]}.\n{host,{127,0,0,1}, ["localhost"]}.\n')
        big = 64 * 1024 * 1024
        y = [
            "# generated by tests/harness/servers.py",
            "hosts:",
            f"  - {q(self.domain)}",
            "loglevel: info",
            "log_rotate_count: 0",
            "hide_sensitive_log_data: false",
            "certfiles: []",
            "acme:",
            "  auto: false",
            "auth_method: [internal]",
            "auth_password_format: plain",
            'disable_sasl_mechanisms: ["X-OAUTH2"]',
            "s2s_access: none",
            "listen:",
            f"  - port: {self.c2s_port}",
            f"    ip: {q(LOOPBACK)}",
            "    module: ejabberd_c2s",
            "    backlog: 1024",
            f"    max_stanza_size: {big}",
            "    shaper: none",
            "    access: c2s",
            "    starttls: false",
            "    starttls_required: false",
            f"  - port: {self.component_port}",
            f"    ip: {q(LOOPBACK)}",
            "    module: ejabberd_service",
            "    backlog: 1024",
            f"    max_stanza_size: {big}",
            "    shaper: none",
            "    hosts:",
        ]
        for comp in self.component_domains:
            y += [f"      {q(comp)}:", f"        password: {q(self.component_secret)}"]
        if self.component_number:
            y += ["domain_balancing:"]
            for comp in self.component_domains:
                y += [f"  {q(comp)}:", "    type: bare_source", f"    component_number: {self.component_number}"]
        y += [
            "shaper: {}",
            "shaper_rules:",
            "  max_user_sessions: 100",
            "  max_user_offline_messages: 100000",
            "  c2s_shaper: none",
            "  s2s_shaper: none",
            "acl:",
            "  local:",
            '    user_regexp: ""',
            "  loopback:",
            '    ip: [127.0.0.0/8, "::1/128"]',
            "access_rules:",
            "  local:",
            "    allow: local",
            "  c2s:",
            "    allow: all",
            "api_permissions:",
            '  "console commands":',
            "    from: [ejabberd_ctl]",
            "    who: all",
            '    what: "*"',
            "modules:",
            "  mod_roster: {}",
            "  mod_disco: {}",
            "  mod_ping: {}",
            "  mod_version: {}",
            "  mod_time: {}",
            "  mod_offline:",
            "    access_max_user_messages: max_user_offline_messages",
            "  mod_muc:",  # the group chat service (XEP-0045); anyone may create a room
            f"    host: {q(self.muc_domain)}",
            "    access_create: all",
            "    history_size: 20",
            "",
        ]
        self.config_path.write_text("\n".join(y))

    def _ctl(self) -> list[str]:
        return [
            _which("ejabberdctl"),
            "--ctl-config",
            str(self.ctl_config_path),
            "--config-dir",
            str(self.workdir),
            "--config",
            str(self.config_path),
            "--logs",
            str(self.log_dir),
            "--spool",
            str(self.spool_dir),
            "--node",
            self.node,
        ]

    def _command(self) -> list[str]:
        return [*self._ctl(), "foreground-quiet"]

    def _ready(self) -> bool:
        try:
            with open(self.log_dir / "ejabberd.log", "rb") as f:
                f.seek(self._log_offset)
                return b"is started in the node" in f.read()
        except OSError:
            return False

    def _graceful_stop(self, timeout: float) -> None:
        try:
            self._run([*self._ctl(), "stop"], "ejabberdctl stop", timeout=timeout)
        except Exception:
            assert self._proc is not None
            self._killpg(self._proc.pid, signal.SIGTERM)  # beam handles SIGTERM as init:stop()

    def register(self, user: str, password: str) -> None:
        """Create user@domain via ``ejabberdctl ... register`` (server must run)."""
        if not self.running:
            raise RuntimeError("ejabberd must be running to register users")
        self._run([*self._ctl(), "register", user, self.domain, password], f"register {user}@{self.domain}")


def start_prosody(workdir: Path, **kw: Any) -> ProsodyServer:
    """Construct a ProsodyServer in ``workdir`` and start() it."""
    timeout = kw.pop("timeout", 20)
    srv = ProsodyServer(workdir=Path(workdir), **kw)
    srv.start(timeout)
    return srv


def start_ejabberd(workdir: Path, **kw: Any) -> EjabberdServer:
    """Construct an EjabberdServer in ``workdir`` and start() it."""
    timeout = kw.pop("timeout", 20)
    srv = EjabberdServer(workdir=Path(workdir), **kw)
    srv.start(timeout)
    return srv


@atexit.register
def _stop_all() -> None:
    """Safety net: never leave a server of ours running after the interpreter exits."""
    for srv in list(_RUNNING):
        with contextlib.suppress(Exception):
            srv.stop(5)
