"""Reply classification, hints for network/TLS failures, and wire helpers."""

from __future__ import annotations

import socket
import ssl

import pytest

from sendas.smtp import LocalProblem, ReplyKind, SmtpCode, classify, hint_for
from sendas.smtp.wire import crlf_only, frame_chunk, frame_data, parse_ehlo, wire_address


@pytest.mark.parametrize(
    ("code", "text", "kind"),
    [
        (250, "2.0.0 OK", ReplyKind.OK),
        (451, "4.3.0 Temporary failure", ReplyKind.TRANSIENT),
        (550, "5.1.1 User unknown", ReplyKind.PERMANENT),
        (535, "5.7.8 Authentication credentials invalid", ReplyKind.AUTH),
        (530, "5.7.0 Authentication required", ReplyKind.AUTH),
        (534, "5.7.9 Application-specific password required", ReplyKind.AUTH),
        (421, "4.7.0 Try again later, closing connection.", ReplyKind.RATE_LIMIT),
        (454, "4.7.0 Too many login attempts", ReplyKind.RATE_LIMIT),
        (454, "Throttling failure: Maximum sending rate exceeded.", ReplyKind.RATE_LIMIT),
        (432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", ReplyKind.RATE_LIMIT),
        (550, "5.4.5 Daily user sending quota exceeded.", ReplyKind.QUOTA),
        (
            554,
            "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
            ReplyKind.QUOTA,
        ),
        (554, "5.2.252 SendAsDenied; not allowed to send as", ReplyKind.PERMANENT),
        (421, "4.4.2 connection dropped", ReplyKind.TRANSIENT),
    ],
)
def test_classify(code: int, text: str, kind: ReplyKind) -> None:
    assert classify(code, text) is kind


def test_codes_are_named() -> None:
    assert SmtpCode(535) is SmtpCode.AUTH_FAILED
    assert SmtpCode.START_MAIL_INPUT == 354


@pytest.mark.parametrize(
    ("step", "exc", "words"),
    [
        ("connect", TimeoutError(), "blocked"),
        ("greeting", TimeoutError(), "SSL/TLS (implicit)"),
        ("connect", ConnectionRefusedError(), "Nothing accepts connections"),
        ("resolve", socket.gaierror(-2, "Name or service not known"), "could not be found"),
        ("tls", ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "587"),
        (
            "tls",
            ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate"),
            "self-signed",
        ),
        (
            "tls",
            ssl.SSLCertVerificationError(1, "certificate verify failed: Hostname mismatch"),
            "different name",
        ),
        (
            "tls",
            ssl.SSLCertVerificationError(
                1, "certificate verify failed: unable to get local issuer certificate"
            ),
            "CA certificate",
        ),
        ("starttls", LocalProblem.STARTTLS_NOT_OFFERED, "password was not sent"),
        ("auth", LocalProblem.PLAINTEXT_AUTH_REFUSED, "unencrypted"),
        ("rcpt_to", LocalProblem.SMTPUTF8_NOT_OFFERED, "nothing was sent"),
    ],
)
def test_hints_for_failures_without_a_reply(
    step: str, exc: BaseException | LocalProblem, words: str
) -> None:
    assert words in hint_for(step, None, "", exc)


def test_frame_data_dot_stuffs_and_terminates() -> None:
    assert frame_data(b".a\r\nb\r\n.c") == b"..a\r\nb\r\n..c\r\n.\r\n"
    assert frame_data(b"x\ny\r\n") == b"x\r\ny\r\n.\r\n"
    assert frame_data(b"x\r\n") == b"x\r\n.\r\n"


def test_line_endings_are_checked_unless_known_to_be_crlf() -> None:
    assert crlf_only(b"a\r\nb\r\n") and crlf_only(b"")
    assert not crlf_only(b"a\nb\r\n") and not crlf_only(b"a\rb\r\n")
    assert not crlf_only(b"a\n\rb")  # as many CR as LF, but not as pairs
    for data in (b".a\r\nb\r\n", b"a\r\n.b"):
        assert frame_data(data, crlf=True) == frame_data(data)
        assert frame_chunk(data, crlf=True) == frame_chunk(data)
    assert frame_chunk(b"x\ny") == b"BDAT 4 LAST\r\nx\r\ny"


def test_parse_ehlo() -> None:
    ext = parse_ehlo("mx.example\nPIPELINING\nAUTH PLAIN LOGIN\nsize 1000")
    assert ext == {"PIPELINING": "", "AUTH": "PLAIN LOGIN", "SIZE": "1000"}


def test_wire_address() -> None:
    assert wire_address("a@bücher.example", smtputf8=False) == "a@xn--bcher-kva.example"
    assert wire_address("a@bücher.example", smtputf8=True) == "a@bücher.example"
    with pytest.raises(ValueError):
        wire_address("a@b.example>\r\nRCPT TO:<c@d.example", smtputf8=False)
