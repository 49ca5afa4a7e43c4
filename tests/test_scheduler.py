"""The scheduler starts and stops with the application; its jobs do real work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from bot.app import App
from bot.core import Core
from bot.db.models import CheckResult, Site
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
        assert [j.name for j in queue.jobs()] == ["prune-history"]
    assert not queue.scheduler.running


async def test_prune_history_keeps_recent_checks(core: Core) -> None:
    async with core.sessions.begin() as s:
        site = Site(name="farm", spec={})
        s.add(site)
        await s.flush()
        s.add_all([
            CheckResult(site_id=site.id, target="tunnel", ok=True,
                        checked_at=utcnow() - timedelta(days=40)),
            CheckResult(site_id=site.id, target="tunnel", ok=False,
                        checked_at=utcnow() - timedelta(days=1)),
        ])
    assert await prune_history(core.sessions) == 1
    async with core.sessions() as s:
        left = (await s.execute(select(func.count()).select_from(CheckResult))).scalar_one()
    assert left == 1
