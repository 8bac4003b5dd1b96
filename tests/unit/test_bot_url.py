"""parse_url: what a bot URL becomes on the wire, and the URLs refused with a reason."""

from __future__ import annotations

import pytest

from component.bot.client import Target, parse_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8080/bot", Target("http", "127.0.0.1", 8080, "/bot", "127.0.0.1:8080")),
        ("https://Bots.Example", Target("https", "bots.example", 443, "/", "bots.example")),
        ("http://bots.example:80/a?b=1#frag", Target("http", "bots.example", 80, "/a?b=1", "bots.example")),
        ("http://café.example/", Target("http", "xn--caf-dma.example", 80, "/", "xn--caf-dma.example")),
        ("https://bücher.example:8443", Target("https",
         "xn--bcher-kva.example", 8443, "/", "xn--bcher-kva.example:8443")),
        ("http://h/bots/é?q=ü", Target("http", "h", 80, "/bots/%C3%A9?q=%C3%BC", "h")),
        ("http://h/a b/%41%2F?x=a b", Target("http", "h", 80, "/a%20b/%41%2F?x=a%20b", "h")),
        ("http://h/100%?p=50%", Target("http", "h", 80, "/100%25?p=50%25", "h")),
        ("http://h/a\"<>`{}|\\^", Target("http", "h", 80, "/a%22%3C%3E%60%7B%7D%7C%5C%5E", "h")),
        ("http://[::1]:8080/x", Target("http", "::1", 8080, "/x", "[::1]:8080")),
        ("https://[2001:DB8::1]/", Target("https", "2001:db8::1", 443, "/", "[2001:db8::1]")),
    ],
    ids=["ipv4-port", "default-port-lower-case", "explicit-default-port", "idn", "idn-and-port", "non-ascii-path",
         "spaces-and-escapes-kept", "lone-percent", "unsafe-ascii", "ipv6-port", "ipv6-default-port"],
)  # fmt: skip
def test_usable(url: str, expected: Target) -> None:
    assert parse_url(url) == expected
    assert parse_url(url).target.isascii()


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://h/", "not http or https"),
        ("h/bot", "not http or https"),
        ("http:///bot", "has no host"),
        ("http://:8080/", "has no host"),
        ("http://h:99999/", "bad port"),
        ("http://h:0/", "bad port"),
        ("http://h:port/", "bad port"),
        ("http://a..b/", "not a valid domain name"),
        ("http://" + "a" * 64 + ".example/", "not a valid domain name"),
        ("http://a b/", "not a valid host name"),
        ("http://h/a\nb", "control characters"),
        ("http://h/a\x00b", "control characters"),
        ("http://[::1/", "cannot be read"),
        ("http://user:secret@h/", "credentials"),
    ],
    ids=["bad-scheme", "no-scheme", "no-host", "port-only", "port-too-big", "port-zero", "port-not-a-number",
         "empty-label", "label-too-long", "space-in-host", "newline", "nul", "unclosed-ipv6", "credentials"],
)  # fmt: skip
def test_unusable(url: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        parse_url(url)
    assert "secret" not in str(info.value)
