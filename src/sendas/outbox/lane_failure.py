"""What a lane's connection failing does to the lane: flagged (the sign-in was refused),
paused until the time the server names (rate limit, quota), or backed off (unreachable,
or the server keeps closing the connection).

Apart from :mod:`~sendas.outbox.driver` because the driver's two paths meet here: opening a
connection (:meth:`~sendas.outbox.driver.LaneDriver.ensure_session`) and recording a link
that broke once too often (:mod:`~sendas.outbox.driver_writes`); the worker words a revoked
sign-in the same way (:func:`reauth_reason`)."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sendas.db.models import utcnow
from sendas.errors import (
    AuthError,
    MailConnectionError,
    OAuthError,
    ReauthRequired,
    ReplyError,
    TransportError,
)
from sendas.outbox.lanes import lane_needs_attention, pause_lane
from sendas.outbox.outcomes import backoff
from sendas.outbox.state import DriverContext
from sendas.smtp import ReplyKind, SmtpEndpoint, pause_until

log = logging.getLogger("sendas.outbox")


def reauth_reason(auth: str) -> str:
    """Why a signed-in alias's queue waits: the grant is gone until the owner reconnects."""
    label = {"google": "Google", "microsoft": "Microsoft"}.get(auth, "provider")
    return (
        f"the {label} sign-in was revoked or has expired: reconnect the alias (Sign in with "
        f"{label} again); its queued mail goes out afterwards"
    )


async def lane_failure(
    ctx: DriverContext, lane: str, exc: TransportError, endpoint: SmtpEndpoint | None = None
) -> None:
    """Opening the connection failed: flag, pause or back off the lane."""
    now = utcnow()
    reason = " - ".join(x for x in (exc.server_reply or str(exc), exc.hint) if x)
    kind = exc.kind if isinstance(exc, ReplyError) else None
    if isinstance(exc, ReauthRequired):
        reason = reauth_reason(endpoint.auth if endpoint is not None else "")
    # A sign-in provider that is down (ProviderUnavailable, a connection error too) is a
    # retry with backoff, never "needs attention": the grant itself is fine.
    unreachable = isinstance(exc, MailConnectionError)
    if not unreachable and (isinstance(exc, AuthError | OAuthError) or kind == ReplyKind.AUTH):
        log.warning("lane %s: sign-in refused, the alias needs attention", lane)
        await ctx.tx.run(lambda s: lane_needs_attention(s, lane, reason, now))
        return
    until: datetime | None = None
    if kind in (ReplyKind.RATE_LIMIT, ReplyKind.QUOTA):
        until = pause_until(kind or "", exc.code or 0, exc.server_reply, now)
    if until is None:
        failures = ctx.failures.get(lane, 0) + 1
        ctx.failures[lane] = failures
        wait = backoff(failures, ctx.cfg.reconnect_base, ctx.cfg.reconnect_max)
        until = now + timedelta(seconds=wait)
        reason = f"cannot reach the server: {reason}"
    log.warning("lane %s paused until %s: %s", lane, until.isoformat(), reason)
    final_until = until
    await ctx.tx.run(lambda s: pause_lane(s, lane, final_until, reason))


def dropped() -> TransportError:
    """The failure a lane is paused with when its link broke too many times in a row."""
    return MailConnectionError(
        "the server keeps closing the connection", step="mail_from",
        hint="The server closed the connection repeatedly; sending pauses and tries again.",
    )  # fmt: skip
