"""Periodic jobs, run by PTB's JobQueue (APScheduler), which starts and stops with the app."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import JobQueue

from bot.db.models import CheckResult
from bot.db.types import utcnow
from bot.operations import OperationView

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

CHECK_RETENTION = timedelta(days=30)


async def prune_history(sessions: async_sessionmaker[AsyncSession]) -> int:
    """Drop check results past retention so the database stays small on a 10 GB droplet."""
    async with sessions.begin() as s:
        result = await s.execute(
            delete(CheckResult).where(CheckResult.checked_at < utcnow() - CHECK_RETENTION)
        )
    removed: int = getattr(result, "rowcount", 0) or 0
    if removed:
        log.info("pruned %d old check results", removed)
    return removed


def schedule_jobs(
    queue: JobQueue[Any], core: Core,
    on_abandoned: Callable[[list[OperationView]], Awaitable[None]], *,
    lease_check_every: float,
) -> None:
    async def _prune(_: Any) -> None:
        await prune_history(core.sessions)

    async def _leases(_: Any) -> None:
        # Operations whose process died (a CLI killed mid-push) are reported while the bot
        # runs, not only at its next start.
        abandoned = await core.expire_stale_operations()
        if abandoned:
            await on_abandoned(abandoned)

    queue.run_repeating(_prune, interval=timedelta(hours=6), first=timedelta(minutes=1),
                        name="prune-history")
    queue.run_repeating(_leases, interval=lease_check_every, first=lease_check_every,
                        name="lease-check")
