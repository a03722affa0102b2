"""Scenario e, in a process of its own so its peak RSS is its own.

    python bench/enqueue_csv.py DATA_DIR CSV_PATH

Creates a user and an alias, queues one campaign from the CSV, and prints one JSON line:
seconds (the create_campaign call: validation pass + insert pass + commit), the peak RSS of
the process, and the RSS just before the call (imports, SQLAlchemy, pydantic).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import psutil
from pydantic import SecretStr

from sendas.config import Settings
from sendas.context import AppContext
from sendas.schemas import AliasCreate, CampaignTemplatesIn, UserCreate
from sendas.services import aliases as alias_service
from sendas.services import users as user_service
from sendas.services.campaigns.create import create_campaign
from sendas.services.campaigns.recipients import csv_rows
from sendas.services.common import Actor


def main() -> None:
    data_dir, csv_path = Path(sys.argv[1]), Path(sys.argv[2])
    ctx = AppContext.build(Settings(data_dir=data_dir, embedded_worker=False))
    with ctx.db.write() as s:
        user = user_service.create_user(
            s, UserCreate(email="bench@example.com", name="Bench", password=SecretStr("x" * 12))
        )
        actor = Actor.of(user)
        alias, _ = alias_service.create_alias(
            s,
            actor,
            AliasCreate(
                description="bench",
                from_address="bench@example.com",
                smtp_server="127.0.0.1:2525",
                tls="none",
            ),
            ctx.secrets,
        )
        alias_id = alias.id
    data = CampaignTemplatesIn(
        alias_id=alias_id, subject="Hello {{ first }}", text="Dear {{ first }} {{ last }}"
    )
    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    created = create_campaign(ctx.db, actor, data, csv_rows(lambda: csv_path.open("rb")))
    seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ctx.close()
    print(
        json.dumps(
            {
                "total": created.total,
                "seconds": round(seconds, 2),
                "peak_rss_mb": round(peak_kb / 1024, 1),
                "baseline_rss_mb": round(baseline / 2**20, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
