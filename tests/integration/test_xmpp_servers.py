"""Self-test for tests/harness/servers.py (and `login`) against real Prosody and ejabberd.

Run:  .venv/bin/python -m pytest tests/integration/test_xmpp_servers.py -p no:cacheprovider [-s]

Observed (prosody 0.12.3 / ejabberd 23.01, slixmpp 1.17):
* start(): prosody ~0.05-0.1 s, ejabberd ~0.7-1.0 s (first start, fresh mnesia);
  stop(): prosody ~0.01 s, ejabberd ~2.4 s (``ejabberdctl stop`` boots a VM).
* wrong component secret -> both servers answer the <handshake/> with a
  stream error ``<not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>``
  and close the stream (exact bytes are printed by test_wrong_secret).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest
from slixmpp import ComponentXMPP

from tests.harness.clients import USERS, WAIT, LoginFailed, login
from tests.harness.servers import EjabberdServer, ProsodyServer, XmppServer, free_port, start_ejabberd, start_prosody

STARTERS = {"prosody": start_prosody, "ejabberd": start_ejabberd}
COMPONENT = "bot.localhost"  # the harness's default component domain
T = TypeVar("T")


# --------------------------------------------------------------------------- helpers
def _pgid_members(pgid: int) -> list[int]:
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid:  # fields: state ppid pgrp ...
            pids.append(int(d))
    return pids


def _listening(pids: list[int]) -> set[tuple[str, int, str]]:
    """(addr, port, proto) of TCP listeners / bound UDP sockets owned by pids."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    out = set()
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        try:
            lines = Path(f"/proc/net/{proto}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            local, state, inode = f[1], f[3], f[9]
            if inode not in inodes or (proto.startswith("tcp") and state != "0A"):
                continue
            hexaddr, hexport = local.split(":")
            addr = ".".join(str(int(hexaddr[i : i + 2], 16)) for i in (6, 4, 2, 0)) if len(hexaddr) == 8 else hexaddr
            out.add((addr, int(hexport, 16), proto))
    return out


async def close(*xmpps: Any) -> None:
    for x in xmpps:
        fut = x.disconnect(wait=1)
        with suppress(Exception):
            await asyncio.wait_for(fut, 5)


async def raw_component(server: XmppServer, secret: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str, str]:
    """Open a XEP-0114 stream by hand.

    Returns (reader, writer, server stream header, raw reply to the handshake).
    """
    r, w = await asyncio.open_connection("127.0.0.1", server.component_port)
    w.write(
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:component:accept' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{COMPONENT}'>".encode()
    )
    buf = ""
    while not (m := re.search(r"<stream:stream\b[^>]*?\sid=['\"]([^'\"]+)['\"][^>]*>", buf)):
        buf += (await asyncio.wait_for(r.read(4096), WAIT)).decode()
    digest = hashlib.sha1((m.group(1) + secret).encode()).hexdigest()
    w.write(f"<handshake>{digest}</handshake>".encode())
    reply = ""
    while not re.search(r"<handshake\s*/>|<handshake\s*>\s*</handshake>|</stream:stream>|</stream:error>", reply):
        chunk = await asyncio.wait_for(r.read(4096), WAIT)
        if not chunk:
            break
        reply += chunk.decode()
    return r, w, m.group(0), reply


def first(future: asyncio.Future[T]) -> Callable[[T], None]:
    """An event handler that resolves `future` with the first value it is given."""

    def handler(value: T) -> None:
        if not future.done():
            future.set_result(value)

    return handler


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", params=list(STARTERS))
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[XmppServer]:
    """A server of this module's own (not the suite's shared one: a test here restarts it)."""
    kind = request.param
    t0 = time.monotonic()
    srv = STARTERS[kind](tmp_path_factory.mktemp(kind))
    print(f"\n[{kind}] start() took {time.monotonic() - t0:.3f}s")
    try:
        for u, p in USERS.items():
            srv.register(u, p)
        yield srv
    finally:
        srv.stop()


# --------------------------------------------------------------------------- tests
def test_start_runs_the_servers_binary_on_its_config_and_ports(server: XmppServer) -> None:
    assert server.running
    assert server.c2s_port != server.component_port
    assert 0 < server.start_seconds < 10
    assert server._proc is not None
    command = _cmdline(server._proc.pid)
    log = server.log_text()
    if isinstance(server, ProsodyServer):
        assert "/usr/bin/prosody" in command and str(server.config_path) in command, command
        for service, port in (("c2s", server.c2s_port), ("component", server.component_port)):
            assert f"Activated service '{service}' on [127.0.0.1]:{port}" in log, log
    else:
        assert isinstance(server, EjabberdServer)
        assert any(arg.endswith("/ejabberdctl") for arg in command) and server.node in command, command
        assert f"is started in the node '{server.node}'" in log, log
        for module, port in (("ejabberd_c2s", server.c2s_port), ("ejabberd_service", server.component_port)):
            assert f"at 127.0.0.1:{port} for {module}" in log, log


def test_free_port_can_be_bound_and_is_none_of_the_servers(server: XmppServer) -> None:
    port = free_port()
    assert port not in server.ports
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_only_loopback_and_our_ports(server: XmppServer) -> None:
    assert server._proc is not None
    socks = _listening(_pgid_members(server._proc.pid))
    allowed = {server.c2s_port, server.component_port}
    if isinstance(server, EjabberdServer):
        allowed.add(server.dist_port)  # Erlang distribution (no epmd)
    tcp = {(a, p) for a, p, proto in socks if proto.startswith("tcp")}
    assert {server.c2s_port, server.component_port} <= {p for _, p in tcp}, socks
    assert all(a == "127.0.0.1" for a, _ in tcp), socks
    assert {p for _, p in tcp} <= allowed, socks
    assert not any(proto.startswith("udp") and a != "127.0.0.1" for a, _, proto in socks), socks


@pytest.mark.asyncio
async def test_two_clients_exchange_message(server: XmppServer) -> None:
    alice = await login(server, "alice")
    bob = await login(server, "bob")
    alice.say(f"bob@{server.domain}", "hello bob")
    msg = await bob.next_message()
    assert msg["body"] == "hello bob"
    assert msg["from"].bare == f"alice@{server.domain}"
    await close(alice, bob)


@pytest.mark.asyncio
async def test_component_session_roster_and_message(server: XmppServer) -> None:
    loop = asyncio.get_running_loop()
    comp = ComponentXMPP(COMPONENT, server.component_secret, "127.0.0.1", server.component_port)  # type: ignore[no-untyped-call]
    session: asyncio.Future[Any] = loop.create_future()
    comp_msg: asyncio.Future[Any] = loop.create_future()
    comp_sub: asyncio.Future[Any] = loop.create_future()

    def on_subscribe(p: Any) -> None:
        # slixmpp's ComponentXMPP does NOT auto-authorize: answer explicitly.
        comp.send_presence(pto=p["from"].bare, pfrom=p["to"].bare, ptype="subscribed")
        first(comp_sub)(p)

    comp.add_event_handler("session_start", first(session))
    comp.add_event_handler("message", first(comp_msg))
    comp.add_event_handler("presence_subscribe", on_subscribe)
    comp.connect()
    alice = None
    try:
        await asyncio.wait_for(session, WAIT)
        alice = await login(server, "alice")
        pushes: list[tuple[str, str]] = []
        subscribed: asyncio.Future[bool] = loop.create_future()

        def on_roster_update(iq: Any) -> None:
            for jid, item in iq["roster"]["items"].items():
                pushes.append((str(jid), f"{item['subscription']}/{item['ask']}"))
                if str(jid) == f"echo@{COMPONENT}" and item["subscription"] in ("to", "both"):
                    first(subscribed)(True)

        alice.add_event_handler("roster_update", on_roster_update)
        alice.send_presence(pto=f"echo@{COMPONENT}", ptype="subscribe")
        sub = await asyncio.wait_for(comp_sub, WAIT)
        assert sub["from"].bare == f"alice@{server.domain}"
        await asyncio.wait_for(subscribed, WAIT)
        print(f"\n[{server.name}] roster pushes seen by alice (subscription/ask): {pushes}")
        assert (f"echo@{COMPONENT}", "none/subscribe") in pushes

        alice.say(f"echo@{COMPONENT}", "ping bot")
        m = await asyncio.wait_for(comp_msg, WAIT)
        assert m["body"] == "ping bot"
        assert m["from"].full == f"alice@{server.domain}/test"
        print(f"[{server.name}] message as re-serialized by slixmpp ComponentXMPP: {m}")

        # component -> client
        comp.send_message(mto=m["from"], mfrom=f"echo@{COMPONENT}", mbody="pong", mtype="chat")
        assert (await alice.next_message())["body"] == "pong"
    finally:
        await close(*(x for x in (alice, comp) if x is not None))


@pytest.mark.asyncio
async def test_raw_stanza_delivered_to_component(server: XmppServer) -> None:
    r, w, header, reply = await raw_component(server, server.component_secret)
    alice = None
    try:
        assert re.search(r"<handshake\s*/>|<handshake\s*>\s*</handshake>", reply), reply
        alice = await login(server, "alice")
        alice.say(f"echo@{COMPONENT}", "raw check")
        buf = ""
        try:
            while not (m := re.search(r"<message\b.*?</message>", buf, re.S)):
                buf += (await asyncio.wait_for(r.read(65536), WAIT)).decode()
        except TimeoutError:
            pytest.fail(f"no <message/> on the component stream; got {buf!r}")
        print(f"\n[{server.name}] stream header: {header}")
        print(f"[{server.name}] handshake reply: {reply!r}")
        print(f"[{server.name}] raw <message/> on the component stream: {m.group(0)}")
        assert "raw check" in m.group(0)
    finally:
        w.write(b"</stream:stream>")
        w.close()
        if alice is not None:
            await close(alice)


@pytest.mark.asyncio
async def test_wrong_secret(server: XmppServer) -> None:
    # prosody: <stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>
    #          <text ...>Authentication failure</text></stream:error></stream:stream>
    # ejabberd: <stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>
    #          </stream:error></stream:stream>
    # (exact bytes printed below; run with -s)
    _, w, _, reply = await raw_component(server, "wrong-" + server.component_secret)
    w.close()
    print(f"\n[{server.name}] wrong secret -> {reply!r}")
    assert "stream:error" in reply and "not-authorized" in reply, reply
    assert "<handshake" not in reply

    # slixmpp view of the same thing
    comp = ComponentXMPP(COMPONENT, "nope", "127.0.0.1", server.component_port)  # type: ignore[no-untyped-call]
    err: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    started: list[int] = []
    comp.add_event_handler("stream_error", first(err))
    comp.add_event_handler("session_start", lambda _: started.append(1))
    comp.connect()
    e = await asyncio.wait_for(err, WAIT)
    assert e["condition"] == "not-authorized"
    assert not started
    await close(comp)


@pytest.mark.asyncio
async def test_register_while_running_and_restart_keeps_accounts(server: XmppServer) -> None:
    server.register("dave", "davepw")
    c = await login(server, "dave", password="davepw")
    await close(c)
    assert server._proc is not None
    before = server._proc.pid
    t0 = time.monotonic()
    server.restart()
    print(f"\n[{server.name}] restart() took {time.monotonic() - t0:.3f}s (start {server.start_seconds:.3f}s)")
    assert server._proc is not None and server._proc.pid != before, "restart() did not start a new process"
    assert _pgid_members(before) == [], "the old server outlived restart()"
    for user, pw in [("alice", USERS["alice"]), ("dave", "davepw")]:  # on the same ports, with the same accounts
        c = await login(server, user, password=pw)
        await close(c)


@pytest.mark.asyncio
async def test_login_reports_a_refused_password(server: XmppServer) -> None:
    with pytest.raises(LoginFailed, match="the server refused the login"):  # at once: not a TimeoutError
        await login(server, "alice", password="badpw")


@pytest.mark.parametrize("kind", ["prosody", "ejabberd"])
def test_stop_frees_ports_and_processes(kind: str, tmp_path: Path) -> None:
    srv = STARTERS[kind](tmp_path)
    assert srv._proc is not None
    pgid = srv._proc.pid
    assert _pgid_members(pgid)
    t0 = time.monotonic()
    srv.stop()
    print(f"\n[{kind}] stop() took {time.monotonic() - t0:.3f}s")
    srv.stop()  # idempotent
    assert _pgid_members(pgid) == []
    for port in srv.ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    if isinstance(srv, EjabberdServer):
        node = srv.node.split("@")[0]
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    cmd = Path(f"/proc/{d}/cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                assert node not in cmd, f"leftover ejabberd process {d}: {cmd}"


class _BrokenProsody(ProsodyServer):
    def _write_config(self) -> None:
        super()._write_config()
        with open(self.config_path, "a") as f:
            f.write("this is not lua {{{\n")


def test_start_failure_reports_log(tmp_path: Path) -> None:
    srv = _BrokenProsody(workdir=tmp_path)
    with pytest.raises(RuntimeError, match="exited with code") as ei:
        srv.start(timeout=10)
    print(f"\n[start failure] {ei.value}")
    assert "prosody.cfg.lua" in str(ei.value)
    srv.stop()  # idempotent after a failed start


class _NeverReadyProsody(ProsodyServer):
    """Runs, but is never judged ready: start() times out with a live process to clean up."""

    pid = 0

    def _ready(self) -> bool:
        assert self._proc is not None
        self.pid = self._proc.pid
        return False


def test_start_that_times_out_leaves_nothing_running(tmp_path: Path) -> None:
    srv = _NeverReadyProsody(workdir=tmp_path)
    with pytest.raises(RuntimeError, match="prosody not ready after 1s"):
        srv.start(timeout=1)
    assert srv.pid and _pgid_members(srv.pid) == [], "the half-started server is still running"
    for port in srv.ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        srv = ProsodyServer(workdir=tmp_path, c2s_port=s.getsockname()[1])
        with pytest.raises(RuntimeError, match="already in use"):
            srv.start()
