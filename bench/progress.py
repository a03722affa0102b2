"""Progress at constant cost: ``GET /api/campaigns/{id}`` on a finished form letter.

    python bench/progress.py [--recipients 1000000] [--calls 200] [--data-dir DIR]
                             [--database-url URL] [--compare]

Creates a user, an alias and one form letter of ``--recipients`` messages, inserted in bulk
(the enqueue path's executemany, no SMTP), all ``sent`` and the letter ``completed``; then
times ``--calls`` GETs of its progress through the whole app (FastAPI's TestClient, bearer
token) and prints one JSON line: the median with min-max in milliseconds, and how long the
set-up took. ``--compare`` also times the GROUP BY over the messages that progress used
before the outbox kept counts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select, update

from sendas.api.app import create_app
from sendas.config import Settings
from sendas.context import AppContext
from sendas.db.models import Campaign, Message, utcnow
from sendas.outbox.counts import recount
from sendas.outbox.enqueue import enqueue_form_letter
from sendas.schemas import AliasCreate, UserCreate
from sendas.services import aliases as alias_service
from sendas.services import users as user_service
from sendas.services.common import Actor


def finished_letter(ctx: AppContext, recipients: int) -> tuple[int, str]:
    """A completed letter of ``recipients`` sent messages; its id and an API token."""
    with ctx.db.write() as s:
        user = user_service.create_user(
            s, UserCreate(email="bench@example.com", name="Bench", password=SecretStr("x" * 12))
        )
        _, token = user_service.create_token(s, user, "bench")
        actor = Actor.of(user)
        alias, _ = alias_service.create_alias(
            s,
            actor,
            AliasCreate(description="bench", from_address="bench@example.com",
                        smtp_server="127.0.0.1:2525", tls="none"),
            ctx.secrets,
        )  # fmt: skip
        now = utcnow()
        campaign = Campaign(
            user_id=user.id, alias_id=alias.id, subject="Hello {{ n }}",
            text_template="Dear {{ n }}", status="running", created_at=now,
        )  # fmt: skip
        s.add(campaign)
        s.flush()
        rows = ((f"r{i}@example.org", {"n": str(i)}, f"Hello {i}") for i in range(recipients))
        campaign.total = enqueue_form_letter(s, rows, campaign_id=campaign.id, user_id=user.id,
                                             alias_id=alias.id, from_address=alias.from_address,
                                             now=now)  # fmt: skip
        s.execute(
            update(Message)
            .where(Message.campaign_id == campaign.id)
            .values(status="sent", sent_at=now, attempts=1)
            .execution_options(synchronize_session=False)
        )
        recount(s, campaign.id)  # as if every outcome had been recorded one by one
        campaign.status, campaign.completed_at = "completed", utcnow()
        return campaign.id, token


def timed(fn: Any, calls: int) -> dict[str, float]:
    fn()  # warm
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 2),
            "min_ms": round(min(times), 2), "max_ms": round(max(times), 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--compare", action="store_true")
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="sendas-progress-"))
    extra = {"database_url": args.database_url} if args.database_url else {}
    settings = Settings(data_dir=data_dir, embedded_worker=False, **extra)
    ctx = AppContext.build(settings)
    started = time.perf_counter()
    campaign_id, token = finished_letter(ctx, args.recipients)
    setup = time.perf_counter() - started
    out: dict[str, Any] = {"recipients": args.recipients, "setup_s": round(setup, 1),
                           "calls": args.calls}  # fmt: skip
    headers = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(ctx.settings, ctx=ctx)) as client:

        def get() -> None:
            r = client.get(f"/api/campaigns/{campaign_id}", headers=headers)
            assert r.status_code == 200 and r.json()["counts"]["sent"] == args.recipients

        out["get_progress"] = timed(get, args.calls)

        def history() -> None:
            assert client.get("/api/campaigns", headers=headers).status_code == 200

        out["get_history"] = timed(history, args.calls)
    if args.compare:

        def group_by() -> None:
            with ctx.db.read() as s:
                s.execute(
                    select(Message.status, func.count())
                    .where(Message.campaign_id == campaign_id)
                    .group_by(Message.status)
                ).all()

        out["old_group_by"] = timed(group_by, max(3, args.calls // 20))
    ctx.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
