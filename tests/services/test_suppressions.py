"""``suppressed_among``: the one lookup form letters use, per user, in chunks."""

from __future__ import annotations

from sendas.context import AppContext
from sendas.db.models import Suppression
from sendas.services import suppressions as svc
from sendas.services.campaigns.recipients import recipients_from_upload
from sendas.services.campaigns.summary import summarize
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
