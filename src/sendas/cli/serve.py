"""`sendas serve` (the web app and API) and `sendas worker` (extra outbox workers)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from sendas.cli.common import context, fail, out
from sendas.config import Settings
from sendas.context import configure_logging
from sendas.errors import ConfigError
from sendas.web.security import trusted_networks


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's proxy handling from ``SENDAS_TRUSTED_PROXIES``, the same rule the app uses:
    without trusted proxies uvicorn ignores X-Forwarded-* (its own default would trust
    them from 127.0.0.1, or from FORWARDED_ALLOW_IPS); with them, only from those CIDRs."""
    networks = trusted_networks(settings.trusted_proxies)
    if not networks:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": [str(n) for n in networks]}


def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (SENDAS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (SENDAS_PORT).")] = None,
) -> None:
    """Upgrade the database, then serve the web UI and the API (with an embedded worker, or
    SENDAS_WORKER_PROCESSES worker processes)."""
    import uvicorn

    from sendas.api import create_app
    from sendas.bootstrap import ensure_first_admin

    settings = Settings()
    if host:
        settings.host = host
    if port:
        settings.port = port
    configure_logging(settings.log_level)
    try:
        proxies = proxy_options(settings)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    with context() as ctx:
        first = ensure_first_admin(ctx)
        if first is not None:
            email, password = first
            out.print(
                f"[bold]First start:[/] created admin [cyan]{email}[/] with password "
                f"[cyan]{password}[/] (shown once). Log in at {settings.base_url}/login",
                highlight=False,
                soft_wrap=True,
            )
        out.print(f"sendas serving on http://{settings.host}:{settings.port}", highlight=False)
        web_app = create_app(settings, ctx=ctx)
        if settings.embedded_worker and settings.worker_processes > 1:
            from sendas.outbox.processes import worker_processes_hook

            web_app.state.startup_hooks.append(worker_processes_hook)
        elif settings.embedded_worker:
            from sendas.outbox import embedded_worker_hook

            web_app.state.startup_hooks.append(embedded_worker_hook)
        uvicorn.run(
            web_app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            **proxies,
        )


def worker(
    lease_seconds: Annotated[
        float | None,
        typer.Option(
            help="Claims last this long unless renewed by the heartbeat; a dead worker's "
            "lanes are taken over after it (default SENDAS_WORKER_TAKEOVER_SECONDS)."
        ),
    ] = None,
    poll_interval: Annotated[float, typer.Option(help="Seconds between looks for work.")] = 0.25,
    lane_hold_seconds: Annotated[
        float, typer.Option(help="Hand a busy lane to other workers after this long.")
    ] = 60.0,
    parent_pid: Annotated[
        int | None,
        typer.Option(hidden=True, help="Stop when this process (`sendas serve`) ends."),
    ] = None,
) -> None:
    """Send queued mail until stopped (SIGTERM/SIGINT finish the submissions in flight)."""
    import asyncio
    from dataclasses import replace

    from sendas.outbox import Worker
    from sendas.outbox.processes import die_with_parent
    from sendas.outbox.worker import config_from_settings, run_until_signalled

    if parent_pid is not None:
        die_with_parent(parent_pid)
    settings = Settings()
    configure_logging(settings.log_level)
    try:
        config = config_from_settings(settings)
        config = replace(
            config,
            poll_interval=poll_interval,
            lane_hold_seconds=lane_hold_seconds,
            lease_seconds=config.lease_seconds if lease_seconds is None else lease_seconds,
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from None
    with context() as ctx:
        asyncio.run(run_until_signalled(Worker(ctx, config)))
