"""Periodic jobs, run by PTB's JobQueue (APScheduler), which starts and stops with the app."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import JobQueue

from bot.db.models import AuditLog, HealthDay, HealthHour, Incident, Operation, OpState
from bot.db.types import utcnow
from bot.health import store as health_store
from bot.operations import OperationView
from jobs.daily import DailySnapshots

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

async def prune_history(sessions: async_sessionmaker[AsyncSession], *, days: int) -> int:
    """Drop what is older than ``days``: hourly health figures, ended incidents, the audit
    log and finished operations (never an active one, never an open incident)."""
    now = utcnow()
    cutoff = now - timedelta(days=days)
    # Finished days of hourly figures become one row per part and day (lossless).
    await health_store.pack_days(sessions, now)
    removed = 0
    async with sessions.begin() as s:
        for stmt in (
            delete(HealthHour).where(HealthHour.hour < cutoff),
            # A packed day goes once all of it is older than the cutoff.
            delete(HealthDay).where(HealthDay.day <= cutoff - timedelta(days=1)),
            delete(Incident).where(Incident.ended_at.is_not(None), Incident.ended_at < cutoff),
            delete(AuditLog).where(AuditLog.at < cutoff),
            delete(Operation).where(
                Operation.state.in_((OpState.SUCCEEDED, OpState.FAILED, OpState.INTERRUPTED)),
                Operation.finished_at.is_not(None), Operation.finished_at < cutoff),
        ):
            result = await s.execute(stmt)
            removed += getattr(result, "rowcount", 0) or 0
    if removed:
        log.info("pruned %d rows older than %d days", removed, days)
    return removed


def schedule_jobs(
    queue: JobQueue[Any], core: Core,
    on_abandoned: Callable[[list[OperationView]], Awaitable[None]], *,
    lease_check_every: float, daily: DailySnapshots | None = None,
    send_alerts: Callable[[], Awaitable[None]] | None = None,
) -> None:
    async def _prune(_: Any) -> None:
        await prune_history(core.sessions, days=core.settings.camreach_history_days)

    async def _leases(_: Any) -> None:
        # Operations whose process died (a CLI killed mid-push) are reported while the bot
        # runs, not only at its next start.
        abandoned = await core.expire_stale_operations()
        if abandoned:
            await on_abandoned(abandoned)

    queue.run_repeating(_prune, interval=timedelta(hours=6), first=timedelta(minutes=1),
                        name="prune-history")
    if daily is not None:
        async def _daily(_: Any) -> None:
            await daily.tick(utcnow())

        queue.run_repeating(_daily, interval=30, first=1, name="daily-snapshots")
    queue.run_repeating(_leases, interval=lease_check_every, first=lease_check_every,
                        name="lease-check")
    if send_alerts is not None:
        async def _alerts(_: Any) -> None:
            # The outbox the sweeps (this process's or workers') write; only the bot sends.
            await send_alerts()

        queue.run_repeating(_alerts, interval=2, first=1, name="send-alerts")
