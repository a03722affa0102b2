"""The heartbeat reports a lane as lost only when another worker owns it now: a lane its own
driver handed back after the beat's snapshot was taken is not a takeover."""

from __future__ import annotations

from datetime import timedelta

from sendas.context import AppContext
from sendas.db.models import Lane, utcnow
from sendas.outbox.lanes import heartbeat


def test_only_lanes_owned_by_another_worker_are_reported_lost(ctx: AppContext) -> None:
    until = utcnow() + timedelta(seconds=5)
    with ctx.db.write() as s:
        s.add_all([
            Lane(name="alias:1", owner="me", owner_expires_at=until),
            Lane(name="alias:2", owner=None, owner_expires_at=None),  # handed back meanwhile
            Lane(name="alias:3", owner="other", owner_expires_at=until),  # taken over
        ])  # fmt: skip
    with ctx.db.write() as s:
        lost = heartbeat(s, "me", ["alias:1", "alias:2", "alias:3"], [], until)
    assert lost == {"alias:3"}
    with ctx.db.read() as s:
        assert s.get_one(Lane, "alias:2").owner is None  # a beat never takes a lane back
