"""Message composition: headers, structure, encodings, envelope, and refused header input."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

import sendas.compose as compose_module
from sendas.compose import (
    Attachment,
    Composed,
    Content,
    Sender,
    compose,
    needs_smtputf8,
)
from sendas.errors import SmtpUtf8Required, ValidationFailed

ANN = Sender(alias_name="Ann Example", from_address="ann@example.com")


@pytest.fixture(autouse=True, scope="module", params=["fast", "stdlib"])
def compose_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test here runs against both ways of writing the bytes.

    "fast" is sendas.mime_fast with the email package disabled, so a test passing there
    shows the fast path itself covers it; "stdlib" is the email package alone.
    """
    saved = compose_module.FAST_PATH, compose_module._build_stdlib

    def no_fallback(**_: object) -> bytes:
        raise AssertionError("the fast path fell back to the email package")

    if request.param == "fast":
        compose_module.FAST_PATH = True
        compose_module._build_stdlib = no_fallback
    else:
        compose_module.FAST_PATH = False
    yield str(request.param)
    compose_module.FAST_PATH, compose_module._build_stdlib = saved


def parse(composed: Composed) -> EmailMessage:
    if composed.smtputf8:
        # BytesParser reads headers as ASCII; RFC 6532 headers are UTF-8 (bodies stay 7-bit).
        text = composed.data.decode("utf-8")
        msg = email.message_from_string(text, policy=email.policy.default)
    else:
        msg = email.message_from_bytes(composed.data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def header_block(data: bytes) -> bytes:
    head, sep, _ = data.partition(b"\r\n\r\n")
    assert sep, "no blank line after the headers"
    return head


def simple(**content: object) -> Content:
    fields: dict[str, object] = {"to": ["bob@example.org"], "subject": "Hi", "text": "Hello"}
    fields.update(content)
    return Content(**fields)  # type: ignore[arg-type]


# --- headers and envelope ----------------------------------------------------------------------


def test_headers_parse_back_and_bcc_is_only_in_the_envelope() -> None:
    sender = Sender(
        alias_name='Jürgen "JJ" Müller, Vertrieb',
        from_address="jm@example.com",
        reply_to="replies@example.com",
    )
    content = Content(
        to=["bob@example.org", "carol@example.org"],
        cc=["dave@example.net"],
        bcc=["hidden@example.net"],
        subject="Grüße aus Köln \u2013 今日は",
        text="Hallo",
    )
    composed = compose(sender, content, utf8=False)
    msg = parse(composed)

    assert msg["From"].addresses[0].display_name == 'Jürgen "JJ" Müller, Vertrieb'
    assert msg["From"].addresses[0].addr_spec == "jm@example.com"
    assert b"=?utf-8?" in header_block(composed.data)  # RFC 2047, not raw UTF-8
    assert composed.data.isascii()
    assert str(msg["Reply-To"]) == "replies@example.com"
    assert [a.addr_spec for a in msg["To"].addresses] == ["bob@example.org", "carol@example.org"]
    assert [a.addr_spec for a in msg["Cc"].addresses] == ["dave@example.net"]
    assert msg["Subject"] == "Grüße aus Köln \u2013 今日は"
    assert b"bcc" not in composed.data.lower()
    assert b"hidden@example.net" not in composed.data
    assert composed.envelope_from == "jm@example.com"
    assert composed.recipients == [
        "bob@example.org",
        "carol@example.org",
        "dave@example.net",
        "hidden@example.net",
    ]
    assert composed.smtputf8 is False


def test_date_mime_version_and_message_id_on_the_senders_domain() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    sender = Sender("Ann", "ann@Bücher.Example")
    first = compose(sender, simple(), utf8=False, date=when)
    second = compose(sender, simple(), utf8=False, date=when)
    msg = parse(first)

    assert email.utils.parsedate_to_datetime(msg["Date"]) == when
    assert msg["MIME-Version"] == "1.0"
    assert msg["Message-ID"] == first.message_id
    assert first.message_id.startswith("<")
    assert first.message_id.endswith("@xn--bcher-kva.example>")
    assert first.message_id != second.message_id


def test_long_non_ascii_name_is_folded_into_encoded_words_that_decode_exactly() -> None:
    name = "Jürgen Müller-Lüdenscheidt, Geschäftsführung " * 4 + "😀" * 30
    composed = compose(Sender(name, "jm@example.com"), simple(), utf8=False)
    head = header_block(composed.data)
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    raw_from = email.message_from_bytes(composed.data, policy=email.policy.compat32)["From"]
    phrase = re.sub(r"\r?\n", "", str(raw_from)).rsplit("<", 1)[0]
    assert str(make_header(decode_header(phrase))).strip() == name.strip()


def test_no_reply_to_header_without_reply_to() -> None:
    msg = parse(compose(ANN, simple(), utf8=False))
    assert "Reply-To" not in msg
    assert str(msg["From"]) == "Ann Example <ann@example.com>"


def test_sender_without_a_name_is_the_bare_address() -> None:
    msg = parse(compose(Sender("", "ann@example.com"), simple(), utf8=False))
    assert str(msg["From"]) == "ann@example.com"


def test_bcc_only_message_says_undisclosed_recipients() -> None:
    composed = compose(ANN, Content(bcc=["hidden@example.net"], text="x"), utf8=False)
    msg = parse(composed)
    assert str(msg["To"]) == "undisclosed-recipients:;"
    assert b"hidden@example.net" not in composed.data
    assert composed.recipients == ["hidden@example.net"]


def test_a_recipient_is_required() -> None:
    with pytest.raises(ValidationFailed) as exc:
        compose(ANN, Content(text="x"), utf8=False)
    assert exc.value.problems[0].loc == ("body", "to")


def test_envelope_lists_each_recipient_once() -> None:
    content = simple(to=["bob@example.org"], cc=["bob@EXAMPLE.org"], bcc=["bob@example.org"])
    assert compose(ANN, content, utf8=False).recipients == ["bob@example.org"]


def test_every_line_ends_in_crlf() -> None:
    content = simple(text="one\ntwo\r\nthree\rfour", html="<p>a</p>\n<p>b</p>")
    data = compose(ANN, content, utf8=False).data
    assert data.count(b"\n") == data.count(b"\r\n")
    assert data.count(b"\r") == data.count(b"\r\n")


# --- structure -----------------------------------------------------------------------------------


def test_text_only_is_a_single_text_plain_part() -> None:
    msg = parse(compose(ANN, simple(text="Hello there, ü"), utf8=False))
    assert msg.get_content_type() == "text/plain"
    assert not msg.is_multipart()
    assert text_of(msg) == "Hello there, ü\n"


def test_text_and_html_are_alternatives() -> None:
    msg = parse(compose(ANN, simple(text="plain", html="<b>rich</b>"), utf8=False))
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert text_of(parts[0]) == "plain\n"
    assert text_of(parts[1]) == "<b>rich</b>\n"


def test_attachments_make_a_mixed_message_and_round_trip() -> None:
    pdf = bytes(range(256)) * 4
    attachments = [
        Attachment("Bericht März.pdf", "application/pdf", pdf),
        Attachment("notes.txt", "Text/Plain", b"line 1\nline 2\n"),
    ]
    msg = parse(
        compose(ANN, simple(text="t", html="<p>h</p>", attachments=attachments), utf8=False)
    )
    assert msg.get_content_type() == "multipart/mixed"
    body, *files = list(msg.iter_parts())
    assert body.get_content_type() == "multipart/alternative"
    assert [(f.get_filename(), f.get_content_type()) for f in files] == [
        ("Bericht März.pdf", "application/pdf"),
        ("notes.txt", "text/plain"),
    ]
    assert files[0].get_payload(decode=True) == pdf
    assert files[1].get_payload(decode=True).replace(b"\r\n", b"\n") == b"line 1\nline 2\n"
    assert all(f.get_content_disposition() == "attachment" for f in files)
    assert "MIME-Version" not in body


def test_attachment_without_alternative() -> None:
    attachment = Attachment("a.bin", "", b"\x00\x01")
    msg = parse(compose(ANN, simple(attachments=[attachment]), utf8=False))
    body, file = list(msg.iter_parts())
    assert body.get_content_type() == "text/plain"
    assert file.get_content_type() == "application/octet-stream"
    assert file.get_payload(decode=True) == b"\x00\x01"


@pytest.mark.parametrize("content_type", ["pdf", "text/", "multipart/mixed", "a b/c", 'a/b"'])
def test_bad_attachment_content_type_is_refused(content_type: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        compose(ANN, simple(attachments=[Attachment("a", content_type, b"")]), utf8=False)
    assert exc.value.problems[0].loc == ("body", "attachments")
    assert "attachment 1" in exc.value.problems[0].msg


# --- internationalized addresses -----------------------------------------------------------------


def test_idn_domains_go_out_in_idna_form_without_smtputf8() -> None:
    sender = Sender("Ann", "ann@bücher.example", reply_to="r@müller.example")
    content = simple(to=["bob@straße.example"], cc=["c@café.example"], bcc=["d@日本.example"])
    composed = compose(sender, content, utf8=False)
    msg = parse(composed)

    assert composed.data.isascii()
    assert composed.smtputf8 is False
    assert composed.envelope_from == "ann@xn--bcher-kva.example"
    assert msg["From"].addresses[0].addr_spec == "ann@xn--bcher-kva.example"
    assert str(msg["Reply-To"]) == "r@xn--mller-kva.example"
    # UTS 46 (as browsers and email-validator): ß is kept, not mapped to ss.
    assert str(msg["To"]) == "bob@xn--strae-oqa.example"
    assert str(msg["Cc"]) == "c@xn--caf-dma.example"
    assert composed.recipients[-1] == "d@xn--wgv71a.example"


def test_idn_domains_stay_unicode_with_smtputf8() -> None:
    composed = compose(
        Sender("Ann", "ann@bücher.example"), simple(to=["bob@straße.example"]), utf8=True
    )
    msg = parse(composed)
    assert composed.smtputf8 is True
    assert composed.envelope_from == "ann@bücher.example"
    assert composed.recipients == ["bob@straße.example"]
    assert msg["From"].addresses[0].addr_spec == "ann@bücher.example"
    assert "ann@bücher.example".encode() in header_block(composed.data)
    assert str(msg["To"]) == "bob@straße.example"
    # The Message-ID stays ASCII either way.
    assert composed.message_id.endswith("@xn--bcher-kva.example>")


def test_ascii_addresses_keep_encoded_words_even_when_the_server_has_smtputf8() -> None:
    composed = compose(Sender("Jörg", "j@example.com"), simple(subject="Grüße"), utf8=True)
    assert composed.smtputf8 is False
    assert composed.data.isascii()
    assert parse(composed)["Subject"] == "Grüße"


@pytest.mark.parametrize("field", ["from_address", "reply_to", "to", "cc", "bcc"])
def test_non_ascii_local_part_needs_smtputf8(field: str) -> None:
    address = "jürgen@example.com"
    sender = Sender(
        "J",
        address if field == "from_address" else "ann@example.com",
        reply_to=address if field == "reply_to" else None,
    )
    content = simple(**{field: [address]}) if field in ("to", "cc", "bcc") else simple()

    with pytest.raises(SmtpUtf8Required) as exc:
        compose(sender, content, utf8=False)
    assert address in str(exc.value)
    assert field in str(exc.value)

    composed = compose(sender, content, utf8=True)
    assert composed.smtputf8 is True
    assert address.encode() in composed.data or address in composed.recipients


def test_needs_smtputf8() -> None:
    assert needs_smtputf8(["a@example.com", "jürgen@example.com"]) is True
    assert needs_smtputf8(["a@example.com", "a@bücher.example"]) is False
    assert needs_smtputf8([]) is False


# --- refused input ----------------------------------------------------------------------------

BAD = ["\r\n", "\n", "\r", "\x00", "\x1b", "\x85", "\u2028", "\u2029", "\x0b"]
HEADER_FIELDS = ["alias_name", "from_address", "reply_to", "to", "cc", "bcc", "subject"]


def with_value(field: str, value: str) -> tuple[Sender, Content]:
    """A valid message with ``value`` put into ``field``."""
    sender = {"alias_name": "Ann", "from_address": "ann@example.com", "reply_to": None}
    content: dict[str, object] = {"to": ["bob@example.org"], "subject": "Hi", "text": "x"}
    if field in sender:
        sender[field] = value
    elif field in ("to", "cc", "bcc"):
        content[field] = [value]
    elif field == "subject":
        content["subject"] = value
    elif field == "attachments":
        content["attachments"] = [Attachment(value, "text/plain", b"x")]
    return Sender(**sender), Content(**content)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", BAD, ids=[f"U+{ord(b[0]):04X}" for b in BAD])
@pytest.mark.parametrize("field", [*HEADER_FIELDS, "attachments"])
def test_line_breaks_and_control_characters_are_refused(field: str, bad: str) -> None:
    value = f"bob{bad}Bcc: victim@example.net" if field != "attachments" else f"a{bad}b.txt"
    if field in ("from_address", "reply_to", "to", "cc", "bcc"):
        value = f"bob@example.org{bad}Bcc: victim@example.net"
    sender, content = with_value(field, value)
    with pytest.raises(ValidationFailed) as exc:
        compose(sender, content, utf8=True)
    assert exc.value.problems[0].loc == ("body", field)


@pytest.mark.parametrize(
    "address",
    ["bob", "@example.org", "bob@", "bob example@x.org", "<bob@x.org>", "b..ob@x.org",
     "Bob <bob@x.org>", "bob@exa mple.org", "bob@x.org>, eve@y.org", '"bob"@x.org'],
)  # fmt: skip
def test_malformed_addresses_are_refused(address: str) -> None:
    sender, content = with_value("to", address)
    with pytest.raises(ValidationFailed) as exc:
        compose(sender, content, utf8=True)
    assert exc.value.problems[0].loc == ("body", "to")


@pytest.mark.parametrize("field", [*HEADER_FIELDS, "attachments"])
def test_text_shaped_like_an_encoded_word_is_refused(field: str) -> None:
    # A reader would show the decoded text, not what was typed: "=?...?=" reads "Bcc: x".
    value = "=?utf-8?q?Bcc=3A_x?="
    if field in ("from_address", "reply_to", "to", "cc", "bcc"):
        value += "@example.org"
    sender, content = with_value(field, value)
    with pytest.raises(ValidationFailed) as exc:
        compose(sender, content, utf8=False)
    assert exc.value.problems[0].loc == ("body", field)


def test_overlong_subject_is_refused() -> None:
    with pytest.raises(ValidationFailed) as exc:
        compose(ANN, simple(subject="x" * 999), utf8=False)
    assert exc.value.problems[0].loc == ("body", "subject")


# --- properties: no input can add a header --------------------------------------------------

TOP_HEADERS = {"from", "to", "subject", "date", "message-id", "mime-version", "content-type"}
FILE_HEADERS = {"content-type", "content-transfer-encoding", "content-disposition"}


def weighted(*choices: tuple[int, st.SearchStrategy[str]]) -> st.SearchStrategy[str]:
    """Pick a strategy with the given odds (st.one_of leaves the odds to hypothesis)."""
    bag = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.integers(0, len(bag) - 1).flatmap(lambda i: bag[i])


# Mostly text a person might type (any script, quotes, specials), sometimes anything at all.
typed_text = st.text(st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")), max_size=300)
specials = st.text(alphabet=st.sampled_from(list(" :;,<>\"'\\()=?@_.aü日\u00a0")), max_size=60)
hostile = st.text(
    alphabet=st.sampled_from(list("\r\n\t :;,<>\"'\\()=?@_ aü日\u2028\x00")), max_size=60
)
header_text = weighted((8, typed_text), (8, specials), (1, st.text(max_size=300)), (1, hostile))

local_parts = st.text(
    alphabet=st.sampled_from(list("abc.+-_!#'\"\\ :;,<>()[]@\r\nüß=?")), min_size=1, max_size=30
)
domains = st.sampled_from(
    ["example.com", "bücher.example", "EXAMPLE.org", "x", "a\r\nb.com", "a b.com", "日本.jp"]
)
good_addresses = st.sampled_from(
    ["bob@example.org", "ann@bücher.example", "jürgen@example.com", "x.y+z=?@EXAMPLE.org"]
)
# Mostly valid, so that the other fields get exercised past address validation.
addresses = weighted(
    (20, good_addresses),
    (1, st.builds(lambda lp, d: f"{lp}@{d}", local_parts, domains)),
    (1, header_text),
)


def check_no_injection(composed: Composed, sender: Sender, content: Content) -> None:
    for line in composed.data.split(b"\r\n"):
        assert len(line) <= 998
    msg = parse(composed)
    expected = set(TOP_HEADERS)
    if sender.reply_to is not None:
        expected.add("reply-to")
    if content.cc:
        expected.add("cc")
    assert {k.lower() for k in msg} == expected
    assert len(msg.keys()) == len(expected)  # each once
    assert msg["Subject"] == content.subject.strip()
    # CPython's address parser keeps the folding space between adjacent encoded words
    # (RFC 2047 6.2 says to drop it; see the test on long names): compare without spaces.
    name = msg["From"].addresses[0].display_name
    assert "".join(name.split()) == "".join(sender.alias_name.split())
    assert not re.search(rb"(?im)^bcc[ \t]*:", composed.data)
    parts = list(msg.iter_parts())
    for part, attachment in zip(parts[1:], content.attachments, strict=True):
        assert {k.lower() for k in part} == FILE_HEADERS
        # get_filename() unquotes (a pair of "" or <>) and strips again
        # (email.message.Message.get_filename): mirror that.
        expected = email.utils.unquote(attachment.filename.strip()).strip()
        assert part.get_filename() == expected


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    alias_name=header_text,
    from_address=addresses,
    reply_to=st.none() | addresses,
    to=st.lists(addresses, min_size=1, max_size=2),
    cc=st.lists(addresses, max_size=2),
    bcc=st.lists(addresses, max_size=2),
    subject=header_text,
    filename=header_text.filter(lambda s: s.strip() != ""),
    utf8=st.booleans(),
)
@example(
    alias_name='"Eve" <eve@evil.example>, x',
    from_address="ann@example.com",
    reply_to=None,
    to=["bob@example.org"],
    cc=[],
    bcc=[],
    subject="=?utf-8?q?Bcc=3A_x?= " + "w" * 900,
    filename='a"; name="b.exe',
    utf8=False,
)
@example(
    alias_name='"Eve" <eve@evil.example>, Bcc: x@y.z; \\ (c) ü',
    from_address="ann@example.com",
    reply_to="r@example.com",
    to=["bob@example.org"],
    cc=["c@example.org"],
    bcc=["hidden@example.org"],
    subject="Re: Bcc: x@y.z " + "w" * 900,
    filename='a"; name="b.exe ü ' + "f" * 500,
    utf8=True,
)
def test_no_input_injects_a_header(
    alias_name: str,
    from_address: str,
    reply_to: str | None,
    to: list[str],
    cc: list[str],
    bcc: list[str],
    subject: str,
    filename: str,
    utf8: bool,
) -> None:
    sender = Sender(alias_name, from_address, reply_to)
    content = Content(
        to=to,
        cc=cc,
        bcc=bcc,
        subject=subject,
        text="body",
        attachments=[Attachment(filename, "application/octet-stream", b"x")],
    )
    try:
        composed = compose(sender, content, utf8=utf8)
    except (ValidationFailed, SmtpUtf8Required):
        event("refused")
        return
    event("composed")
    check_no_injection(composed, sender, content)
