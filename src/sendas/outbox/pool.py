"""The extra connections of a lane without delay whose alias allows ``max_connections``
above 1 (relays), like a pool: the lane's first driver owns the lane, and one more driver
per extra connection claims, marks and records its own messages under the same lane
lease. With a delay only the first connection sends (exact pacing)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from sendas.errors import TransportError
from sendas.outbox.claims import Claim
from sendas.outbox.stops import ExtraGone, LaneStop

if TYPE_CHECKING:
    from sendas.outbox.driver import LaneDriver

log = logging.getLogger("sendas.outbox")


def grow(driver: LaneDriver, claim: Claim) -> None:
    """Open the pool's missing connections (a lane without delay that allows more)."""
    size = min(claim.max_connections, driver.pool_limit or claim.max_connections)
    if claim.delay_ms > 0 or size <= 1:
        return
    for index in range(1, size):
        task = driver.extras.get(index)
        if task is None or task.done():
            extra = type(driver)(driver.ctx, driver.st.name, pool=driver, index=index)
            driver.extras[index] = asyncio.create_task(
                run_extra(extra), name=f"lane {driver.st.name} connection {index + 1}"
            )


def fits(driver: LaneDriver, claim: Claim) -> bool:
    """Whether this connection may send ``claim``: no delay, within the pool's size, and
    the lane is not being handed back (held long enough, or beyond the worker's share)."""
    if driver.pool is not None and driver.turning_over():
        return False
    return claim.delay_ms == 0 and driver.index < claim.max_connections


async def run_extra(driver: LaneDriver) -> None:
    """One more connection of the lane: send until the lane is done, nothing is ready, or
    the lane's claims say fewer connections (or a delay)."""
    try:
        while not (
            driver.ctx.stopping.is_set() or driver.lane_over.is_set() or driver.turning_over()
        ):
            claim, rendered = await driver.next_claim()
            if claim is None:
                break
            if not claim.messages:
                continue
            if not fits(driver, claim):
                ids = [m.id for m in claim.messages]
                driver.ctx.held.update(ids)
                await driver.give_back(ids)
                break
            await driver.send_claim(claim, rendered)
    except ExtraGone:
        pass
    except LaneStop:
        driver.lane_over.set()  # paused or needs attention: the lane as a whole stops
    except Exception:
        log.exception("lane %s: connection %d stopped", driver.st.name, driver.index + 1)
    finally:
        await driver.close()


def shrink(driver: LaneDriver, exc: TransportError) -> None:
    """This extra connection could not be opened: the lane keeps the ones before it until
    it is handed back (then the next hold tries the full pool again)."""
    first = driver.pool
    assert first is not None
    limit = first.pool_limit
    first.pool_limit = driver.index if limit is None else min(limit, driver.index)
    log.warning("lane %s: connection %d not opened (%s); %d kept", driver.st.name,
                driver.index + 1, exc, first.pool_limit)  # fmt: skip
