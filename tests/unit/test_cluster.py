"""The send API's iq waiter with several instances: iq ids that name the instance, answers for another instance handed
on, the caller's own id given back (the broker's part is tested with a real broker in
tests/integration/test_instances_ejabberd.py)."""

from __future__ import annotations

import asyncio

from component.api.iq import IqWaiter, owner_of, with_id
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
