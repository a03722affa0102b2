"""SmtpEndpoint options, the smtp_server field parser, and server warnings."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from sendas.smtp import SmtpEndpoint, parse_server, server_warnings


async def _token(force_refresh: bool) -> str:
    return "t"


@pytest.mark.parametrize(
    ("port", "tls", "effective"),
    [
        (465, "auto", "implicit"),
        (587, "auto", "starttls"),
        (25, "auto", "starttls"),
        (2525, "implicit", "implicit"),
        (25, "none", "none"),
    ],
)
def test_effective_tls(port: int, tls: str, effective: str) -> None:
    assert SmtpEndpoint("smtp.example.com", port, tls).effective_tls == effective  # type: ignore[arg-type]


def test_repr_never_shows_the_password() -> None:
    endpoint = SmtpEndpoint(
        "smtp.example.com", 587, "starttls", "me@example.com", SecretStr("hunter2-secret")
    )
    assert "hunter2-secret" not in repr(endpoint)
    assert "hunter2-secret" not in str(endpoint)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"auth": "google"}, "token provider"),
        ({"auth": "microsoft", "token_provider": _token, "username": ""}, "mailbox address"),
        (
            {"auth": "google", "token_provider": _token, "password": SecretStr("x")},
            "token, not a password",
        ),
        ({"token_provider": _token}, "only used with Google or Microsoft"),
        ({"username": "", "password": SecretStr("x")}, "needs a user name"),
        ({"port": 0}, "outside"),
        ({"timeout": 0}, "timeout"),
        ({"tls": "tls13"}, "tls must be"),
        ({"ca_bundle_pem": "not pem"}, "PEM"),
        ({"username": "a\r\nRSET"}, "line breaks"),
    ],
)
def test_conflicting_options_raise(kwargs: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"host": "smtp.example.com", "port": 587, "username": "me"}
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        SmtpEndpoint(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "tls", "expected"),
    [
        ("smtp.gmail.com", "implicit", ("smtp.gmail.com", 465)),
        ("smtp.gmail.com", "auto", ("smtp.gmail.com", 587)),
        ("smtp.gmail.com", "starttls", ("smtp.gmail.com", 587)),
        ("relay.local", "none", ("relay.local", 25)),
        ("SMTP.Office365.com:587", "auto", ("smtp.office365.com", 587)),
        (" smtp.example.com:2525 ", "auto", ("smtp.example.com", 2525)),
        ("192.0.2.10:465", "auto", ("192.0.2.10", 465)),
        ("[::1]:587", "auto", ("::1", 587)),
        ("[2001:db8::1]", "implicit", ("2001:db8::1", 465)),
        ("2001:db8::1", "none", ("2001:db8::1", 25)),
        ("smtp.bücher.example:587", "auto", ("smtp.bücher.example", 587)),
        ("smtp.example.com.", "auto", ("smtp.example.com", 587)),
    ],
)
def test_parse_server(text: str, tls: str, expected: tuple[str, int]) -> None:
    assert parse_server(text, tls) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "enter the SMTP server"),
        ("smtp://smtp.gmail.com", "without smtp://"),
        ("smtp.gmail.com:abc", "must be a number"),
        ("smtp.gmail.com:70000", "outside 1-65535"),
        ("smtp gmail.com", "spaces"),
        ("me@gmail.com", "not an email address"),
        ("[::1", "closing bracket"),
        ("[nope]:25", "not a valid IPv6"),
        ("2001:db8::1:587:x", "in brackets"),
        ("300.1.1.1", "not a valid IPv4"),
        ("-bad-.example.com", "not a valid host name"),
        (":587", "host name is missing"),
    ],
)
def test_parse_server_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_server(text, "auto")


def test_incoming_mail_host_gets_a_warning() -> None:
    [warning] = server_warnings("imap.gmail.com")
    assert "smtp.gmail.com" in warning
    assert server_warnings("pop.example.com")
    assert server_warnings("smtp.gmail.com") == []
    assert any("465" in w for w in server_warnings("smtp.gmail.com", 465, "starttls"))
