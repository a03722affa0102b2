"""``suppressed_among``: the one lookup form letters use, per user, in chunks."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sendas.addresses import mailbox_key
from sendas.context import AppContext
from sendas.db.models import Suppression
from sendas.db.models.base import utcnow
from sendas.errors import ValidationFailed
from sendas.outbox.bounces.suppress import suppress_bounced
from sendas.schemas import SuppressionIn
from sendas.services import suppressions as svc
from sendas.services.campaigns.recipients import recipients_from_upload
from sendas.services.campaigns.summary import summarize
from sendas.services.common import Actor
from tests.conftest import Person


def test_suppressed_among_is_per_user_case_blind_and_chunked(
    ctx: AppContext, alice: Person, bob: Person
):
    many = [f"r{n}@example.org" for n in range(svc.LOOKUP_CHUNK * 2 + 7)]
    with ctx.db.write() as s:
        s.add(Suppression(user_id=alice.id, address="r3@example.org", source="bounce"))
        s.add(Suppression(user_id=alice.id, address=many[-1], source="manual"))
        s.add(Suppression(user_id=bob.id, address="r4@example.org", source="manual"))
    with ctx.db.read() as s:
        asked = [a.upper() for a in many]
        assert svc.suppressed_among(s, alice.id, asked) == {"r3@example.org", many[-1]}
        assert svc.suppressed_among(s, bob.id, many) == {"r4@example.org"}
        assert svc.suppressed_among(s, alice.id, []) == set()
        assert svc.has_any(s, alice.id)
        assert not svc.has_any(s, alice.id + bob.id + 1)


def test_list_summary_counts_the_suppressed_rows() -> None:
    rows = recipients_from_upload(
        None, pasted="email\nann@example.org\nBEN@example.org\nnobody\nben@example.org\n"
    )
    asked: list[list[str]] = []

    def among(emails: list[str]) -> set[str]:
        asked.append(emails)
        return {"ben@example.org"}

    info = summarize(rows, among)
    assert (info.valid, info.invalid, info.suppressed) == (3, 1, 2)
    assert asked == [["ann@example.org", "BEN@example.org", "ben@example.org"]]
    assert summarize(rows).suppressed == 0


PUNY = "ben@xn--bcher-kva.example.org"
UNICODE = "ben@bücher.example.org"


def test_either_spelling_of_an_idn_domain_is_one_entry(ctx: AppContext, alice: Person):
    """Added in Unicode, bounced in punycode (or back): one entry, found either way."""
    actor = Actor(alice.id, alice.email, False)
    with ctx.db.write() as s:
        row = svc.add_suppression(s, actor, SuppressionIn(address="Ben@Bücher.Example.org"))
        assert row.address == UNICODE
        assert not suppress_bounced(s, alice.id, PUNY.upper(), "5.1.1", None, utcnow())
    with ctx.db.write() as s:
        assert suppress_bounced(
            s, alice.id, "cat@XN--BCHER-KVA.example.org", "5.1.1", None, utcnow()
        )
    with ctx.db.write() as s, pytest.raises(ValidationFailed):
        svc.add_suppression(s, actor, SuppressionIn(address="cat@bücher.example.org"))
    with ctx.db.read() as s:
        rows = s.scalars(select(Suppression.address).where(Suppression.user_id == alice.id))
        assert sorted(rows) == [UNICODE, "cat@bücher.example.org"]
        found = svc.find(s, alice.id, PUNY)
        assert found is not None and found.id == row.id
        assert svc.suppressed_among(s, alice.id, [PUNY, "CAT@bücher.example.org"]) == {
            UNICODE,
            "cat@bücher.example.org",
        }


def test_an_entry_stored_in_punycode_still_matches(ctx: AppContext, alice: Person):
    """A row written before keys had Unicode domains (a bounce's spelling) is matched by
    either spelling, whether the list is held or looked up."""
    with ctx.db.write() as s:
        s.add(Suppression(user_id=alice.id, address=PUNY, source="bounce"))
    with ctx.db.read() as s:
        assert svc.whole_list(s, alice.id, 10) == {UNICODE}
        assert svc.suppressed_among(s, alice.id, ["Ben@Bücher.example.org"]) == {UNICODE}
        assert svc.suppressed_among(s, alice.id, [PUNY]) == {UNICODE}
        assert svc.find(s, alice.id, UNICODE) is not None


def test_list_summary_counts_either_spelling() -> None:
    rows = recipients_from_upload(None, pasted=f"email\n{PUNY}\n{UNICODE}\nann@example.org\n")
    info = summarize(rows, lambda emails: {UNICODE})
    assert (info.valid, info.suppressed) == (3, 2)


def test_mailbox_key() -> None:
    assert mailbox_key(" Ann@Example.ORG ") == "ann@example.org"
    assert mailbox_key("Ben@XN--BCHER-KVA.example.org") == UNICODE
    assert mailbox_key("BEN@BÜCHER.example.org") == UNICODE
    assert mailbox_key("odd@exa_mple..org") == "odd@exa_mple..org"  # refused: only lower-cased
    assert mailbox_key("bücher") == "bücher"  # a search needle, not an address
