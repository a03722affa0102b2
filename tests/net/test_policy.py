"""The outbound policy's classifier, directly: every spelling of a refused address is refused
once resolved, public addresses pass, and the allow list lets exactly what it names through.

No test here opens a connection. Spellings are resolved with ``AI_NUMERICHOST`` (the C
library parses them; no DNS query is made), which is what the SMTP and IMAP clients check.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from sendas.config import Settings
from sendas.errors import OutboundRefused
from sendas.net.policy import OutboundPolicy, classify, parse_address

STRICT = OutboundPolicy()

REFUSED_V4 = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "0.0.0.0/8",
    "224.0.0.0/4",
    "240.0.0.0/4",
]
REFUSED_V6 = ["::1/128", "::/128", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8"]
METADATA = ["169.254.169.254", "fd00:ec2::254", "100.100.100.200"]


def resolve_numeric(spelling: str) -> list[str]:
    """What getaddrinfo makes of a numeric spelling, as the clients see it."""
    infos = socket.getaddrinfo(spelling, 25, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    return [str(info[4][0]) for info in infos]


def addresses_in(cidrs: list[str]) -> st.SearchStrategy[ipaddress.IPv4Address]:
    def pick(cidr: str) -> st.SearchStrategy[ipaddress.IPv4Address]:
        net = ipaddress.IPv4Network(cidr)
        first, last = int(net.network_address), int(net.broadcast_address)
        return st.integers(first, last).map(ipaddress.IPv4Address)

    return st.one_of(*(pick(c) for c in cidrs))


def v4_spellings(ip: ipaddress.IPv4Address) -> list[str]:
    """The ways inet_aton and IPv6 let one write an IPv4 address."""
    n = int(ip)
    a, b, c, d = ip.packed
    mapped_hex = f"{n >> 16:x}:{n & 0xFFFF:x}"
    return [
        str(ip),
        str(n),  # one decimal integer
        hex(n),
        hex(n).upper().replace("X", "x"),
        "0X" + format(n, "X"),
        "0" + format(n, "o"),  # octal
        f"{a}.{b}.{(c << 8) | d}",  # a.b.16-bit
        f"{a}.{(b << 16) | (c << 8) | d}",  # a.24-bit
        f"0{a:o}.0x{b:x}.{c}.0{d:o}",  # mixed bases per part
        f"::ffff:{ip}",
        f"::FFFF:{ip}",
        f"::ffff:{mapped_hex}",
        f"0:0:0:0:0:ffff:{mapped_hex.upper()}",
        f"::{ip}" if n > 1 else f"::ffff:{ip}",  # IPv4-compatible (:: and ::1 are not)
        f"2002:{n >> 16:x}:{n & 0xFFFF:x}::1",  # 6to4
        f"64:ff9b::{ip}",  # NAT64 well-known prefix
        f"64:ff9b:1::{mapped_hex}",  # NAT64 local-use prefix
    ]


@given(addresses_in(REFUSED_V4))
@example(ipaddress.IPv4Address("127.0.0.1"))
@example(ipaddress.IPv4Address("169.254.169.254"))
@example(ipaddress.IPv4Address("10.0.0.1"))
def test_every_spelling_of_a_refused_ipv4_address_is_refused(ip: ipaddress.IPv4Address) -> None:
    for spelling in v4_spellings(ip):
        for resolved in resolve_numeric(spelling):
            reason = STRICT.refusal(spelling, resolved)
            assert reason is not None, (spelling, resolved)
            assert "SENDAS_OUTBOUND_ALLOW" in reason


def v6_in(cidr: str) -> st.SearchStrategy[ipaddress.IPv6Address]:
    net = ipaddress.IPv6Network(cidr)
    first, last = int(net.network_address), int(net.broadcast_address)
    return st.integers(first, last).map(ipaddress.IPv6Address)


@given(st.one_of(*(v6_in(c) for c in REFUSED_V6)), st.sampled_from(["", "%lo", "%1"]))
@example(ipaddress.IPv6Address("::1"), "")
@example(ipaddress.IPv6Address("fe80::1"), "%lo")
def test_every_spelling_of_a_refused_ipv6_address_is_refused(
    ip: ipaddress.IPv6Address, zone: str
) -> None:
    spellings = [str(ip), str(ip).upper(), ip.exploded, ip.exploded.upper()]
    for spelling in spellings:
        # A zone id only means something on a link-local address; the resolver wants it there.
        text = spelling + zone if ip.is_link_local else spelling
        for resolved in resolve_numeric(text):
            assert STRICT.refusal(text, resolved) is not None, (text, resolved)
        # The same text as it may come back from getaddrinfo (with the zone still on).
        assert STRICT.refusal(text, spelling + zone) is not None


@pytest.mark.parametrize("address", METADATA)
def test_cloud_metadata_addresses_are_named(address: str) -> None:
    assert classify(parse_address(address)) == "cloud metadata"
    reason = STRICT.refusal(address, address)
    assert reason == (
        f"{address} is a cloud metadata address; sendas does not connect to loopback, "
        "private or link-local addresses unless SENDAS_OUTBOUND_ALLOW allows it"
    )


@pytest.mark.parametrize(
    ("spelling", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("0x7f000001", "loopback"),
        ("2130706433", "loopback"),
        ("127.1", "loopback"),
        ("017700000001", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fd12:3456::1", "private"),
        ("100.64.0.1", "shared (CGNAT)"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "reserved"),
        ("2001:db8::1", "reserved"),
    ],
)
def test_classification_of_known_addresses(spelling: str, kind: str) -> None:
    (resolved,) = set(resolve_numeric(spelling))
    assert classify(parse_address(resolved)) == kind


def test_the_refusal_says_how_the_host_was_written_and_what_it_resolved_to() -> None:
    assert STRICT.refusal("0x7f000001", "127.0.0.1") == (
        "0x7f000001 resolves to 127.0.0.1, a loopback address; sendas does not connect to "
        "loopback, private or link-local addresses unless SENDAS_OUTBOUND_ALLOW allows it"
    )
    assert STRICT.refusal("::ffff:127.0.0.1", "::ffff:127.0.0.1") == (
        "::ffff:7f00:1 (IPv4 127.0.0.1) is a loopback address; sendas does not connect to "
        "loopback, private or link-local addresses unless SENDAS_OUTBOUND_ALLOW allows it"
    )


PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::1"]


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert classify(parse_address(address)) is None
    assert STRICT.refusal("smtp.example.com", address) is None
    assert STRICT.check("smtp.example.com", [address], step="connect") == [address]


@given(
    st.integers(
        int(ipaddress.IPv4Address("11.0.0.0")), int(ipaddress.IPv4Address("99.255.255.255"))
    )
)
def test_public_ipv4_and_its_mapped_form_pass(n: int) -> None:
    ip = ipaddress.IPv4Address(n)
    assert classify(ip) is None
    assert classify(ipaddress.IPv6Address(f"::ffff:{ip}")) is None


def test_check_keeps_the_allowed_addresses_and_refuses_when_none_is_left() -> None:
    mixed = ["10.0.0.5", "8.8.8.8"]
    assert STRICT.check("mixed.example", mixed, step="connect") == ["8.8.8.8"]
    with pytest.raises(OutboundRefused) as caught:
        STRICT.check("localhost", ["127.0.0.1", "::1"], step="connect")
    assert caught.value.step == "connect" and caught.value.address == "127.0.0.1"
    assert str(caught.value).startswith("localhost resolves to 127.0.0.1, a loopback address")
    assert "SENDAS_OUTBOUND_ALLOW" in caught.value.hint


@given(addresses_in(["127.0.0.0/8"]))
def test_an_allowed_cidr_lets_its_addresses_through_in_every_form(
    ip: ipaddress.IPv4Address,
) -> None:
    policy = OutboundPolicy.from_setting("127.0.0.0/8, ::1/128")
    for spelling in v4_spellings(ip):
        for resolved in resolve_numeric(spelling):
            assert policy.refusal(spelling, resolved) is None, (spelling, resolved)
    # ... and nothing else.
    assert policy.refusal("10.0.0.1", "10.0.0.1") is not None
    assert policy.refusal("169.254.169.254", "169.254.169.254") is not None


def test_an_allowed_host_name_allows_what_it_resolves_to_and_only_it() -> None:
    policy = OutboundPolicy.from_setting("Relay.Corp.Example.,10.1.2.3")
    assert policy.host_names == frozenset({"relay.corp.example"})
    assert policy.refusal("relay.corp.example", "10.9.9.9") is None
    assert policy.refusal("RELAY.corp.example.", "10.9.9.9") is None
    assert policy.refusal("other.corp.example", "10.9.9.9") is not None
    assert policy.refusal("other.corp.example", "10.1.2.3") is None  # a single address


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "not a host", "1.2.3", "http://x", "a..b"])
def test_a_bad_allow_entry_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="SENDAS_OUTBOUND_ALLOW"):
        OutboundPolicy.from_setting(f"127.0.0.1/32,{bad}")
    with pytest.raises(ValidationError, match="SENDAS_OUTBOUND_ALLOW"):
        Settings(outbound_allow=bad)


def test_the_setting_defaults_to_nothing_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SENDAS_OUTBOUND_ALLOW")
    assert Settings().outbound_policy == OutboundPolicy()


def test_the_test_session_allows_loopback_for_every_settings_built() -> None:
    # tests/conftest.py sets it at import, so the CLI and worker subprocesses inherit it.
    policy = Settings().outbound_policy
    assert policy.refusal("127.0.0.1", "127.0.0.1") is None
    assert policy.refusal("::1", "::1") is None
    assert policy.refusal("10.0.0.1", "10.0.0.1") is not None


def test_a_subprocess_started_by_the_tests_sees_the_setting() -> None:
    """Workers and `sendas serve` run as subprocesses with os.environ: they allow loopback."""
    code = "from sendas.config import Settings; print(Settings().outbound_policy.networks)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=dict(os.environ), capture_output=True, check=True
    )
    assert out.stdout.decode().strip() == "(IPv4Network('127.0.0.0/8'), IPv6Network('::1/128'))"
