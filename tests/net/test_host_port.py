"""``host:port`` parsing (the smtp_server / imap_server fields), with hypothesis: what is
written comes back as typed, anything else is a ValueError (never another exception), and
what is accepted is a host the resolver can take: no spaces, scheme, path or user part."""

from __future__ import annotations

import ipaddress

from hypothesis import example, given
from hypothesis import strategies as st

from sendas.smtp.endpoint import parse_server

LABEL = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?\Z")
NAMES = (
    st.lists(LABEL, min_size=2, max_size=4)
    .map(".".join)
    .filter(lambda n: not all(part.isdigit() for part in n.split(".")))
)
PORTS = st.integers(1, 65535)


@given(NAMES, PORTS)
def test_a_name_and_port_come_back(name: str, port: int) -> None:
    assert parse_server(f"{name}:{port}") == (name, port)
    assert parse_server(f" {name.upper()}.:{port} ") == (name, port)


@given(st.ip_addresses(v=4), PORTS)
def test_an_ipv4_address_and_port_come_back(ip: ipaddress.IPv4Address, port: int) -> None:
    assert parse_server(f"{ip}:{port}") == (str(ip), port)


@given(st.ip_addresses(v=6), PORTS)
@example(ipaddress.IPv6Address("::ffff:127.0.0.1"), 25)
def test_an_ipv6_address_in_brackets_comes_back(ip: ipaddress.IPv6Address, port: int) -> None:
    host, got = parse_server(f"[{ip}]:{port}")
    assert ipaddress.IPv6Address(host) == ip and got == port
    assert parse_server(f"[{ip.exploded.upper()}]:{port}")[1] == port


@given(NAMES, st.integers().filter(lambda p: not 1 <= p <= 65535))
def test_a_port_out_of_range_is_refused(name: str, port: int) -> None:
    try:
        parse_server(f"{name}:{port}")
    except ValueError:
        return
    raise AssertionError("accepted a port outside 1-65535")


@given(st.text(max_size=60))
@example("smtp://host:25")
@example("user@host:25")
@example("[::1")
@example("host:25:26")
@example("127.1:25")
@example("[::1]x")
def test_any_text_is_parsed_or_refused_with_a_value_error(text: str) -> None:
    try:
        host, port = parse_server(text)
    except ValueError as exc:
        assert str(exc)
        return
    assert 1 <= port <= 65535
    assert host and not any(c.isspace() for c in host)
    assert not {"/", "@", "[", "]"} & set(host)
