"""``suppressed_among``: the one lookup form letters use, per user, in chunks."""

from __future__ import annotations

from sendas.context import AppContext
from sendas.db.models import Suppression
from sendas.services import suppressions as svc
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
