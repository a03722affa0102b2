"""The fast MIME writer (sendas.mime_fast) against the email package, on generated input.

Both paths get the same validated input; parsed back with the email package's default
policy they must give the same headers, decoded values, structure and contents.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import sendas.compose as compose_module
from sendas import mime_fast
from sendas.compose import Attachment, Composed, Content, Sender
from sendas.errors import SmtpUtf8Required, ValidationFailed
from tests.test_compose import addresses, header_text, parse, weighted

WHEN = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def compose_with(fast: bool, sender: Sender, content: Content, utf8: bool) -> Composed:
    saved = compose_module.FAST_PATH
    compose_module.FAST_PATH = fast
    try:
        return compose_module.compose(sender, content, utf8=utf8, date=WHEN)
    finally:
        compose_module.FAST_PATH = saved


def outcome(fast: bool, sender: Sender, content: Content, utf8: bool) -> Composed | str:
    try:
        return compose_with(fast, sender, content, utf8)
    except (ValidationFailed, SmtpUtf8Required, UnicodeEncodeError) as exc:
        return f"{type(exc).__name__}: {exc}"


def squash(value: str) -> str:
    return "".join(value.split())


def structure(part: Message, top: bool = True) -> Iterator[tuple[Any, ...]]:
    """Content type, charset, disposition, filename and decoded content of every part."""
    assert isinstance(part, EmailMessage)
    kind = part.get_content_type()
    yield kind, part.get_param("charset"), part.get_content_disposition(), part.get_filename()
    if not top:
        assert "MIME-Version" not in part
    if part.is_multipart():
        for sub in part.iter_parts():
            yield from structure(sub, top=False)
    elif part.get_content_disposition() == "attachment":
        yield (part.get_payload(decode=True),)
    else:
        text = part.get_content()
        assert isinstance(text, str)
        yield (text.replace("\r\n", "\n"),)


def describe(composed: Composed) -> dict[str, Any]:
    msg = parse(composed)
    assert not msg.defects
    out: dict[str, Any] = {"keys": sorted(k.lower() for k in msg)}
    # Subject too is checked against the input: the email package folds a 70-character word
    # onto a line of its own, and its own parser then reads it back with a leading space.
    for name in ("Date", "MIME-Version"):
        out[name] = str(msg[name])
    # From is checked against the input instead (see check_from): the email package's own
    # SMTPUTF8 output can turn a long display name with commas into several addresses.
    for name in ("Reply-To", "To", "Cc"):
        if name in msg:
            header = msg[name]
            out[name] = [(squash(a.display_name), a.addr_spec) for a in header.addresses]
            out[name + " groups"] = [g.display_name for g in header.groups]
    out["structure"] = list(structure(msg))
    for kind in ("envelope_from", "recipients", "smtputf8"):
        out[kind] = getattr(composed, kind)
    return out


def check_lines(data: bytes) -> None:
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in data.split(b"\r\n"):
        assert len(line) <= 998
    for line in head.split(b"\r\n"):
        assert len(line) <= 78, line
        assert line.strip(b" \t"), "a folded line made only of whitespace"


def check_from(composed: Composed, sender: Sender) -> None:
    header = parse(composed)["From"]
    assert len(header.groups) == 1
    (address,) = header.addresses
    assert squash(address.display_name) == squash(sender.alias_name)
    assert address.addr_spec == composed.envelope_from
    assert from_display_name(composed.data) == sender.alias_name.strip()


def from_display_name(data: bytes) -> str:
    """The From display name decoded per RFC 2047 6.2 (space between encoded words dropped)."""
    raw = email.message_from_bytes(data, policy=email.policy.compat32)["From"]
    value = re.sub(r"\r?\n", "", str(raw))
    if "<" not in value:
        return ""
    phrase = value.rsplit("<", 1)[0].strip()
    if phrase.startswith('"'):
        return re.sub(r"\\(.)", r"\1", phrase[1:-1])
    return str(make_header(decode_header(phrase)))


body_text = weighted(
    (6, st.text(max_size=400)),
    (2, st.text(alphabet=st.sampled_from(list("ab =.\t\r\n\x00ü日😀")), max_size=400)),
    (1, st.text(alphabet="x", min_size=70, max_size=90)),
)
content_types = st.sampled_from(["application/pdf", "text/plain", "", "image/png"])
attachments = st.lists(
    st.builds(
        Attachment,
        filename=header_text.filter(lambda s: s.strip() != ""),
        content_type=content_types,
        data=st.binary(max_size=200),
    ),
    max_size=2,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alias_name=header_text,
    from_address=addresses,
    reply_to=st.none() | addresses,
    to=st.lists(addresses, max_size=3),
    cc=st.lists(addresses, max_size=3),
    bcc=st.lists(addresses, max_size=2),
    subject=header_text,
    text=body_text,
    html=st.none() | body_text,
    files=attachments,
    utf8=st.booleans(),
)
@example(
    alias_name="Jürgen Müller-Lüdenscheidt, Geschäftsführung " * 4 + "😀" * 30,
    from_address="ann@bücher.example",
    reply_to="jürgen@example.com",
    to=[f"user{i}@example.org" for i in range(3)],
    cc=["x.y+z=?@EXAMPLE.org"],
    bcc=[],
    subject="Grüße " * 100,
    text="line\r\n.\r\n" + "é" * 300,
    html="<p>" + "x" * 2000 + "</p>",
    files=[Attachment("Bericht März " * 40 + ".pdf", "application/pdf", b"\x00" * 100)],
    utf8=True,
)
def test_fast_and_stdlib_paths_agree(
    alias_name: str,
    from_address: str,
    reply_to: str | None,
    to: list[str],
    cc: list[str],
    bcc: list[str],
    subject: str,
    text: str,
    html: str | None,
    files: list[Attachment],
    utf8: bool,
) -> None:
    sender = Sender(alias_name, from_address, reply_to)
    content = Content(
        to=to, cc=cc, bcc=bcc, subject=subject, text=text, html=html, attachments=files
    )
    fast = outcome(True, sender, content, utf8)
    slow = outcome(False, sender, content, utf8)
    if isinstance(slow, str):
        event("refused")
        assert fast == slow
        return
    event("composed")
    assert isinstance(fast, Composed)
    check_lines(fast.data)
    if not fast.smtputf8:
        assert fast.data.isascii()
    assert describe(fast) == describe(slow)
    check_from(fast, sender)
    assert parse(fast)["Subject"] == subject.strip()
    assert re.fullmatch(r"<[0-9.]+@[a-z0-9.-]+>", fast.message_id, re.IGNORECASE)


@pytest.mark.parametrize("length", [0, 1, 44, 45, 46, 300, 998])
@pytest.mark.parametrize("char", ["a", "é", "日", "😀", "a ", "\u00e9 "])
def test_encoded_words_are_whole_characters_within_75(length: int, char: str) -> None:
    value = (char * length)[:length]
    words = mime_fast._encoded_words(value, 78 - len("Subject: "))
    assert all(len(w) <= 75 for w in words)
    assert len("Subject: ") + len(words[0]) <= 78
    decoded = [str(make_header(decode_header(w))) for w in words]
    assert "".join(decoded) == value


def test_long_filename_uses_rfc2231_continuations() -> None:
    name = "Bericht März " * 30 + ".pdf"
    composed = compose_with(
        True, Sender("Ann", "ann@example.com"),
        Content(to=["b@example.org"], attachments=[Attachment(name, "application/pdf", b"x")]),
        utf8=False,
    )  # fmt: skip
    check_lines(composed.data)
    assert b"filename*1*=" in composed.data
    _, file = parse(composed).iter_parts()
    assert file.get_filename() == name.strip()


def test_an_address_outside_dot_atom_text_is_left_to_the_email_package() -> None:
    common: dict[str, Any] = {
        "alias_name": "",
        "reply_to": None,
        "cc": [],
        "subject": "",
        "date": "",
        "message_id": "<x@y>",
        "text": "",
        "html": None,
        "attachments": [],
    }
    assert mime_fast.build(from_address="a@b.c", to=["x@y.z"], **common) is not None
    assert mime_fast.build(from_address="a@b.c", to=["x y@z"], **common) is None
    assert mime_fast.build(from_address="a@b.c", to=["x<@z"], **common) is None


def test_long_name_with_commas_stays_one_address_with_smtputf8() -> None:
    # The email package (SMTPUTF8 policy) folds this into five addresses; we must not.
    name = "Jürgen Müller-Lüdenscheidt, Geschäftsführung " * 4
    sender = Sender(name, "jürgen@example.com")
    composed = compose_with(True, sender, Content(to=["b@example.org"]), utf8=True)
    check_lines(composed.data)
    check_from(composed, sender)


def test_a_subject_word_just_too_long_for_the_first_line_parses_back_exactly() -> None:
    # The email package writes "Subject: \r\n 000..." here, which parses as " 000...".
    subject = "0" * 70
    content = Content(bcc=["bob@example.org"], subject=subject)
    composed = compose_with(True, Sender("", "ann@example.com"), content, utf8=False)
    check_lines(composed.data)
    assert parse(composed)["Subject"] == subject


def test_form_letter_shapes_take_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fallback(**_: object) -> bytes:
        raise AssertionError("fell back to the email package")

    monkeypatch.setattr(compose_module, "_build_stdlib", no_fallback)
    sender = Sender('Jürgen "JJ" Müller', "jm@bücher.example", reply_to="r@example.com")
    for content in (
        Content(to=["bob@example.org"], subject="Hi", text="Hello"),
        Content(to=["bob@example.org"], subject="Grüße", text="Hallo ü", html="<p>ü</p>"),
        Content(bcc=["bob@example.org"], text="x", attachments=[Attachment("a", "", b"")]),
    ):
        for utf8 in (False, True):
            compose_with(True, sender, content, utf8)


@pytest.mark.parametrize(("length", "cte"), [(78, "7bit"), (79, "quoted-printable")])
def test_a_body_line_over_78_characters_is_not_sent_as_7bit(length: int, cte: str) -> None:
    sender = Sender("Ann", "ann@example.com")
    content = Content(to=["bob@example.org"], subject="s", text=f"short\n{'x' * length}\nend")
    for fast in (True, False):
        msg = parse(compose_with(fast, sender, content, utf8=False))
        assert msg["Content-Transfer-Encoding"] == cte, fast
