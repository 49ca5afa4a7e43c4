"""The scheduler starts and stops with the application; its jobs do real work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.app import App
from bot.core import Core
from bot.db.models import AuditLog, HealthHour, Incident, Operation, OpState, Site
from bot.db.types import utcnow
from bot.settings import Settings
from jobs.scheduler import prune_history
from tests.botharness import running_bot
from tests.fakes.telegram_api import FakeTelegramAPI


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as fake:
        yield fake


async def test_scheduler_runs_with_the_app(settings: Settings, api: FakeTelegramAPI) -> None:
    seen: list[App] = []
    async with running_bot(settings, api, customize=seen.append):
        queue = seen[0].job_queue
        assert queue is not None and queue.scheduler.running
        assert sorted(j.name for j in queue.jobs()) == ["daily-snapshots", "lease-check",
                                                        "prune-history", "send-alerts"]
    assert not queue.scheduler.running


async def test_prune_history_keeps_what_is_recent_or_active(core: Core) -> None:
    old, recent = utcnow() - timedelta(days=91), utcnow() - timedelta(days=1)
    async with core.sessions.begin() as s:
        site = Site(name="farm", spec={})
        s.add(site)
        await s.flush()
        s.add_all([
            HealthHour(site_id=site.id, component="tunnel", hour=old, checks=1, up=1),
            HealthHour(site_id=site.id, component="tunnel", hour=recent, checks=1, up=0),
            Incident(site_id=site.id, target="tunnel", started_at=old, ended_at=old),
            Incident(site_id=site.id, target="router", started_at=old, ended_at=None),
            AuditLog(at=old, action="site.apply", outcome="ok"),
            AuditLog(at=recent, action="site.apply", outcome="ok"),
            Operation(kind="a", state=OpState.SUCCEEDED, created_at=old, finished_at=old),
            Operation(kind="b", state=OpState.FAILED, created_at=old, finished_at=recent),
            Operation(kind="c", state=OpState.RUNNING, created_at=old, heartbeat_at=old),
        ])
    assert await prune_history(core.sessions, days=90) == 4
    async with core.sessions() as s:
        checks = (await s.execute(select(HealthHour.hour))).scalars().all()
        incidents = (await s.execute(select(Incident.target))).scalars().all()
        audit = (await s.execute(select(AuditLog.at))).scalars().all()
        kinds = sorted((await s.execute(select(Operation.kind))).scalars().all())
    assert [c > old for c in checks] == [True] and [a > old for a in audit] == [True]
    assert kinds == ["b", "c"]  # recent, and active however old
    assert incidents == ["router"]  # an open incident stays however old


async def test_history_days_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMREACH_HISTORY_DAYS", "7")
    assert Settings(_env_file=None).camreach_history_days == 7  # type: ignore[call-arg]
    monkeypatch.setenv("CAMREACH_HISTORY_DAYS", "0")
    with pytest.raises(ValueError, match="CAMREACH_HISTORY_DAYS"):
        Settings(_env_file=None)  # type: ignore[call-arg]
