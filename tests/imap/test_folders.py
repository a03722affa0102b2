"""Pure parts of the IMAP module: names, LIST parsing, the Sent choice, endpoint rules."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from sendas.imap import ImapEndpoint, decode_mutf7, encode_mutf7, files_own_sent_copy
from sendas.imap.folders import (
    Folder,
    choose_sent_folder,
    match_folder,
    parse_list_line,
    parse_list_response,
    quote_mailbox,
)


@pytest.mark.parametrize(
    ("readable", "wire"),
    [
        ("INBOX", "INBOX"),
        ("Envoyés", "Envoy&AOk-s"),
        ("Éléments envoyés", "&AMk-l&AOk-ments envoy&AOk-s"),
        ("Tom & Jerry", "Tom &- Jerry"),
        ("已发送", "&XfJT0ZAB-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ],
)
def test_modified_utf7_both_ways(readable: str, wire: str) -> None:
    assert encode_mutf7(readable) == wire
    assert decode_mutf7(wire) == readable


def test_malformed_modified_utf7_is_left_alone() -> None:
    assert decode_mutf7("Broken&AOk") == "Broken&AOk"
    assert decode_mutf7("Bad&!!!-") == "Bad&!!!-"


def test_parse_list_lines() -> None:
    f = parse_list_line(rb'(\HasNoChildren \Sent) "/" "Sent Items"')
    assert (f.raw, f.name, f.delimiter, f.is_sent) == ("Sent Items", "Sent Items", "/", True)
    f = parse_list_line(rb'(\HasNoChildren) "." INBOX.Sent')
    assert (f.raw, f.delimiter, f.parts()) == ("INBOX.Sent", ".", ["INBOX", "Sent"])
    f = parse_list_line(rb'(\HasNoChildren) "/" Envoy&AOk-s')
    assert (f.raw, f.name) == ("Envoy&AOk-s", "Envoyés")
    f = parse_list_line(rb'(\Noselect) NIL ""')
    assert f.delimiter is None and not f.selectable
    f = parse_list_line(rb'() "/" "with \"quote\" and \\ backslash"')
    assert f.raw == 'with "quote" and \\ backslash'
    f = parse_list_line(rb'(\HasNoChildren) "/" inbox')
    assert f.raw == "INBOX"


def test_parse_list_response_with_literals_and_junk() -> None:
    data: list[object] = [
        (rb'(\HasNoChildren) "/" {12}', b"Odd\x22Name\\Box"),
        b"",
        rb'(\HasNoChildren \Sent) "/" Sent',
        b"garbage the parser skips",
    ]
    folders = parse_list_response(data)
    assert [f.raw for f in folders] == ['Odd"Name\\Box', "Sent"]


def _folder(name: str, delim: str = "/", *attrs: str) -> Folder:
    raw = encode_mutf7(name)
    return Folder(raw, name, delim, frozenset(a.lower() for a in attrs))


def test_special_use_wins_over_names() -> None:
    folders = [_folder("Sent"), _folder("Outbox Copies", "/", "\\Sent"), _folder("INBOX")]
    chosen = choose_sent_folder(folders)
    assert chosen is not None and chosen.name == "Outbox Copies"


def test_names_in_priority_order_and_below_inbox() -> None:
    assert choose_sent_folder([_folder("Gesendet"), _folder("Sent Items")]).name == "Sent Items"  # type: ignore[union-attr]
    dot = [_folder("INBOX", "."), _folder("INBOX.Sent", "."), _folder("INBOX.Trash", ".")]
    assert choose_sent_folder(dot).name == "INBOX.Sent"  # type: ignore[union-attr]
    assert choose_sent_folder([_folder("INBOX/Sent"), _folder("Sent")]).name == "Sent"  # type: ignore[union-attr]
    assert choose_sent_folder([_folder("ENVOYÉS")]).name == "ENVOYÉS"  # type: ignore[union-attr]
    # Decomposed (NFD) accents still match.
    assert choose_sent_folder([_folder("Envoye\u0301s")]) is not None
    assert choose_sent_folder([_folder("Archive/Sent")]) is None
    assert choose_sent_folder([_folder("Sent", "/", "\\Noselect")]) is None


def test_match_folder_by_wire_readable_or_case() -> None:
    folders = [_folder("Envoyés"), _folder("INBOX.Sent", "."), _folder("Archive")]
    assert match_folder(folders, "Envoy&AOk-s").name == "Envoyés"  # type: ignore[union-attr]
    assert match_folder(folders, "envoyés").name == "Envoyés"  # type: ignore[union-attr]
    assert match_folder(folders, "INBOX/Sent").name == "INBOX.Sent"  # type: ignore[union-attr]
    assert match_folder(folders, "Missing") is None


def test_quote_mailbox() -> None:
    assert quote_mailbox('a "b" \\c') == '"a \\"b\\" \\\\c"'
    with pytest.raises(ValueError):
        quote_mailbox("a\r\nb")


@pytest.mark.parametrize(
    ("host", "auth", "expected"),
    [
        ("smtp.gmail.com", "password", True),
        ("SMTP.Gmail.com.:465", "password", True),
        ("smtp.office365.com:587", "password", True),
        ("smtp-mail.outlook.com", "password", True),
        ("smtp.mail.me.com", "password", True),
        ("smtppro.zoho.eu", "password", True),
        ("smtp.gmail.com", "google", True),
        ("smtp.office365.com:587", "microsoft", True),
        # Signed in, but sending through a server that files no copy: IMAP makes one.
        ("smtp-relay.example.com", "google", False),
        ("smtp.example.com", "microsoft", False),
        ("smtp.mail.yahoo.com", "password", False),
        ("smtp.fastmail.com:465", "password", False),
        ("[::1]:587", "password", False),
        ("mail.example.com", "password", False),
        ("smtp.gmail.com.evil.example", "password", False),
    ],
)
def test_files_own_sent_copy(host: str, auth: str, expected: bool) -> None:
    assert files_own_sent_copy(host) is expected, auth


def test_endpoint_repr_hides_password_and_tls_auto() -> None:
    ep = ImapEndpoint("imap.example.com", 993, "me@example.com", SecretStr("hunter2-secret"))
    assert "hunter2-secret" not in repr(ep) and "hunter2-secret" not in str(ep)
    assert ep.tls_mode == "implicit"
    assert ImapEndpoint("h", 143, "u", SecretStr("p")).tls_mode == "starttls"
    assert ImapEndpoint("h", 1143, "u", SecretStr("p")).tls_mode == "starttls"
    assert ImapEndpoint("h", 993, "u", SecretStr("p"), tls="none").tls_mode == "none"
    assert ImapEndpoint("[::1]", 993, "u", SecretStr("p")).connect_host == "::1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"host": ""},
        {"port": 0},
        {"port": 70000},
        {"tls": "ssl"},
        {"timeout": 0},
        {"sent_folder": "Sent\r\nX"},
        {"sent_folder": "  "},
        {"username": "me\n"},
    ],
)
def test_endpoint_rejects_bad_settings(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "host": "imap.example.com",
        "port": 993,
        "username": "me",
        "password": SecretStr("p"),
    }
    with pytest.raises(ValueError):
        ImapEndpoint(**{**base, **kwargs})  # type: ignore[arg-type]
