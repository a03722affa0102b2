"""Properties of ``host:port`` parsing (smtp.endpoint.parse_server, behind the smtp_server
and imap_server fields): any text parses or raises ValueError; what parses comes back from
its printed form; through the API, junk is a 422 naming the field, never a 500."""

from __future__ import annotations

import ipaddress
import string
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from sendas.api import create_app
from sendas.config import Settings
from sendas.context import AppContext
from sendas.services.common import format_server
from sendas.smtp import parse_server
from tests.conftest import Person, make_person

LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
NAMES = (
    st.lists(LABEL, min_size=1, max_size=4)
    .map(".".join)
    .filter(lambda n: not all(part.isdigit() for part in n.split(".")))
)
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(lambda a: a.compressed)
PORTS = st.integers(1, 65535)
TLS = st.sampled_from(["auto", "implicit", "starttls", "none"])
SERVER_CHARS = string.ascii_letters + string.digits + ".-_:[]/@ \t\n%"


@given(text=st.text(max_size=80), tls=TLS)
@example(text="[::1", tls="auto")
@example(text="host:99999999999999999999999", tls="auto")
@example(text="host:", tls="auto")
@example(text="[::1]x", tls="auto")
@example(text="١٢٣:25", tls="auto")  # Arabic-Indic digits
@example(text="host:²", tls="auto")
def test_any_text_parses_or_raises_value_error(text: str, tls: str) -> None:
    try:
        host, port = parse_server(text, tls)  # type: ignore[arg-type]
    except ValueError as exc:
        assert str(exc)  # a message for the person who typed it
        return
    assert host and 1 <= port <= 65535
    assert not any(c.isspace() for c in host)


@given(text=st.text(alphabet=SERVER_CHARS, max_size=40), tls=TLS)
def test_server_like_junk_parses_or_raises_value_error(text: str, tls: str) -> None:
    test_any_text_parses_or_raises_value_error.hypothesis.inner_test(text, tls)  # type: ignore[attr-defined]


@given(host=st.one_of(NAMES, IPV4, IPV6), port=PORTS)
def test_round_trip(host: str, port: int) -> None:
    printed = format_server(host, port)
    assert parse_server(printed) == (host, port)
    # Surrounding whitespace is forgiven.
    assert parse_server(f"  {printed}\t") == (host, port)


@given(host=NAMES, port=PORTS)
def test_names_are_compared_as_dns_does(host: str, port: int) -> None:
    """Upper case and the root's trailing dot give the same host."""
    assert parse_server(f"{host.upper()}.:{port}") == (host, port)


@given(address=st.ip_addresses(v=6))
def test_ipv6_needs_brackets_for_a_port(address: ipaddress.IPv6Address) -> None:
    text = address.compressed
    assert parse_server(f"[{text}]:2525") == (text, 2525)
    assert parse_server(f"[{text}]", "implicit") == (text, 465)
    if text.count(":") > 1:  # a bare address is read whole, never as host:port
        assert parse_server(text, "none") == (text, 25)


@given(host=st.one_of(NAMES, IPV4), port=st.one_of(st.integers(max_value=0), st.integers(65536)))
def test_ports_out_of_range_are_refused(host: str, port: int) -> None:
    with pytest.raises(ValueError, match="port"):
        parse_server(f"{host}:{port}")


@given(host=NAMES, port=PORTS, space=st.sampled_from([" ", "\t", "\n", "\u00a0", "\u2003"]))
def test_inner_whitespace_is_refused(host: str, port: int, space: str) -> None:
    with pytest.raises(ValueError):
        parse_server(f"{host}{space}:{port}")


# --- through the API ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Person]]:
    data = tmp_path_factory.mktemp("servers") / "data"
    ctx = AppContext.build(Settings(data_dir=data, embedded_worker=False))
    with TestClient(create_app(ctx.settings, ctx=ctx)) as client:
        yield client, make_person(ctx, "alice@example.com")
    ctx.close()


# Any text, lone surrogates (\ud800) included: JSON carries them and they must be a 422 too.
API_TEXT = st.text(max_size=60)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(API_TEXT, st.text(alphabet=SERVER_CHARS, max_size=40)))
def test_api_server_fields_answer_422_or_save(api: tuple[TestClient, Person], text: str) -> None:
    client, alice = api
    try:
        parse_server(text)
        valid = True
    except ValueError:
        valid = False
    assume(not valid)  # saving valid ones would only fill the database
    alias = {
        "description": "Probe",
        "alias_name": "Probe",
        "from_address": alice.email,
        "smtp_server": text,
    }
    r = client.post("/api/aliases", json=alias, headers=alice.headers)
    assert r.status_code == 422, r.text
    assert ["body", "smtp_server"] in [e["loc"] for e in r.json()["detail"]]
    account = {"imap_server": text, "username": "a", "password": "pw-12345"}
    r = client.post("/api/imap-accounts", json=account, headers=alice.headers)
    assert r.status_code == 422, r.text
    assert ["body", "imap_server"] in [e["loc"] for e in r.json()["detail"]]
