"""The send API's iq waiter with several instances: iq ids that name the instance, answers for another instance handed
on, the caller's own id given back (the broker's part is tested with a real broker in
tests/integration/test_instances_ejabberd.py); the route check's rounds of probes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from component.api.iq import IqWaiter, owner_of, with_id
from component.cluster import RouteCheck
from component.config.sections import InstanceSection
from component.metrics import Metrics
from component.stanza import Stanza, build


def ping(id_: str, to: str = "alice@localhost/phone") -> Stanza:
    return build("iq", to, "bot.localhost", "get", id_, payload='<ping xmlns="urn:xmpp:ping"/>')


def answer(id_: str, from_: str = "alice@localhost/phone") -> Stanza:
    xml = f'<iq xmlns="jabber:client" type="result" id="{id_}" from="{from_}" to="bot.localhost"/>'
    return Stanza("iq", "bot.localhost", from_, "result", id_, None, xml)


def test_an_id_names_its_instance() -> None:
    assert owner_of("xhc~web1-4711~abc") == "web1-4711"
    assert owner_of("xhc~i0~a~b") == "i0"
    for other in (None, "abc", "xhc~", "xhc~~x", "xhc~i0"):
        assert owner_of(other) is None, other


def test_with_id_changes_the_id_in_the_xml_too() -> None:
    changed = with_id(ping('a"b'), 'xhc~i0~a"b')
    assert changed.id == 'xhc~i0~a"b'
    assert changed.xml == (
        '<iq to="alice@localhost/phone" from="bot.localhost" type="get" id="xhc~i0~a&quot;b">'
        '<ping xmlns="urn:xmpp:ping"/></iq>'
    )


async def test_the_iq_goes_out_under_an_id_naming_the_instance_and_the_answer_comes_back_under_the_callers() -> None:
    waiter = IqWaiter("i0")
    out: list[Stanza] = []

    def send_all(stanzas: list[Stanza]) -> bool:
        out.extend(stanzas)
        return True

    asking = asyncio.create_task(waiter.ask(ping("p1"), 5.0, send_all))
    await asyncio.sleep(0)
    assert [s.id for s in out] == ["xhc~i0~p1"] and 'id="xhc~i0~p1"' in out[0].xml
    assert waiter.take(answer("xhc~i0~p1"))
    got = await asyncio.wait_for(asking, 1.0)
    assert got is not None and got.id == "p1" and 'id="p1"' in got.xml


def test_an_answer_naming_another_instance_is_handed_on() -> None:
    forwarded: list[tuple[str, str | None]] = []
    waiter = IqWaiter("i0", lambda owner, stanza: forwarded.append((owner, stanza.id)))
    assert waiter.take(answer("xhc~i2~p1"))  # consumed: on its way to i2
    assert not waiter.take(answer("xhc~i0~gone"))  # its own, no longer waited for: as before
    assert not waiter.take(answer("plain"))  # names no instance
    assert forwarded == [("i2", "xhc~i2~p1")]
    alone = IqWaiter()  # a single instance: nothing is handed on
    assert not alone.take(answer("xhc~i2~p1"))


# -- the route check (component/cluster.py, RouteCheck): the server's part is tested on ejabberd ---------------------


def probe_answer(xml: str) -> Stanza:
    """The probe `xml` as the server hands it back."""
    to = re.search(r' to="([^"]+)"', xml)[1]  # type: ignore[index]
    from_ = re.search(r' from="([^"]+)"', xml)[1]  # type: ignore[index]
    id_ = re.search(r' id="([^"]+)"', xml)[1]  # type: ignore[index]
    return Stanza("message", to, from_, "headline", id_, None, xml)


class Server:
    """Sends back the probes whose index `routes` says reach this connection (a slot of ejabberd's balancing)."""

    def __init__(self, check: RouteCheck, routes: Callable[[int], bool]) -> None:
        self.check, self.routes = check, routes
        self.rounds: list[list[str]] = []

    def send_text(self, text: str) -> bool:
        probes = re.findall(r"<message [^>]*/>", text)
        self.rounds.append(probes)
        loop = asyncio.get_running_loop()
        for i, xml in enumerate(probes):
            if self.routes(i):
                loop.call_soon(self.check.take, probe_answer(xml))
        return True


def route_check(slots: int = 3, interval: float = 0.01) -> tuple[RouteCheck, Metrics]:
    metrics = Metrics()
    section = InstanceSection(slots=slots, probe_interval=interval, probe_timeout=0.05)
    return RouteCheck(section, "bot.localhost", lambda _text: True, metrics), metrics


async def test_a_round_sends_probes_from_many_bare_jids_of_the_domain_to_the_domain() -> None:
    check, metrics = route_check(slots=3)
    server = Server(check, lambda i: i % 3 == 1)  # a third of them come back: this connection holds one of 3 slots
    check._send_text = server.send_text
    unrouted: list[str] = []
    routed: list[bool] = []
    task = asyncio.create_task(check.run(unrouted.append, lambda: routed.append(True)))
    await asyncio.sleep(0.1)
    task.cancel()
    assert unrouted == [] and check.routed
    assert routed == [True]  # once, at the first round back (the rooms are joined then)
    assert metrics.registry.get_sample_value("component_xmpp_routed") == 1
    assert len(server.rounds) >= 2
    first = server.rounds[0]
    assert len(first) == 48  # 16 per slot
    answers = [probe_answer(xml) for xml in first]
    assert {a.to for a in answers} == {"xhc-probe@bot.localhost"}
    assert len({a.from_ for a in answers}) == 48 and all(a.from_.endswith("@bot.localhost") for a in answers)
    assert not {a.from_ for a in answers} & {probe_answer(xml).from_ for xml in server.rounds[1]}  # new JIDs each
    assert metrics.registry.get_sample_value("component_probes_sent_total") == 48 * len(server.rounds)


async def test_a_connection_nothing_comes_back_to_is_made_again() -> None:
    check, metrics = route_check()
    server = Server(check, lambda _i: False)
    check._send_text = server.send_text
    unrouted: list[str] = []
    await asyncio.wait_for(check.run(unrouted.append), 1)
    assert len(server.rounds) == 1  # never routed: one round with nothing back is enough
    assert len(unrouted) == 1 and "routes nothing to this connection" in unrouted[0]
    assert not check.routed
    assert metrics.registry.get_sample_value("component_xmpp_routed") == 0
    assert metrics.registry.get_sample_value("component_unrouted_reconnects_total") == 1


async def test_a_routed_connection_takes_two_empty_rounds_in_a_row_to_be_made_again() -> None:
    check, _metrics = route_check()
    back = [True, False, True, False, False]  # round by round: does any probe come back?
    server = Server(check, lambda _i: back[len(server.rounds) - 1])
    check._send_text = server.send_text
    unrouted: list[str] = []
    await asyncio.wait_for(check.run(unrouted.append), 1)
    assert len(server.rounds) == 5 and len(unrouted) == 1  # the lone miss of round 2 was tried again at once


async def test_probes_of_another_instance_or_round_stop_here_without_counting() -> None:
    check, _metrics = route_check()
    other = probe_answer('<message to="xhc-probe@bot.localhost" from="xhc-probe-aa-1@bot.localhost" id="aa-1"/>')
    assert check.take(other)  # another instance's probe: taken, so it goes no further
    user = build("message", "xhc-probe2@bot.localhost", "alice@localhost/phone", "chat", "1", body="hi")
    assert not check.take(user)
    server = Server(check, lambda _i: False)
    check._send_text = lambda text: (server.send_text(text), check.take(other))[0]  # only the other one comes
    unrouted: list[str] = []
    await asyncio.wait_for(check.run(unrouted.append), 1)
    assert len(unrouted) == 1


async def test_a_round_on_a_stream_that_is_down_counts_as_empty() -> None:
    check, metrics = route_check()
    unrouted: list[str] = []
    check._send_text = lambda _text: False
    await asyncio.wait_for(check.run(unrouted.append), 1)
    assert len(unrouted) == 1
    assert metrics.registry.get_sample_value("component_probes_sent_total") == 0
