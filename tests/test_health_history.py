"""Hourly health figures of finished days packed one row per part and day: losslessly (what
/uptime reads is the same before and after), never counted twice, and pruned whole."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.core import Core
from bot.db.engine import make_engine
from bot.db.models import HealthDay, HealthHour, Site
from bot.health import hourpack, store
from bot.health.hourpack import Slot
from bot.settings import Settings
from jobs.scheduler import prune_history

NOW = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def test_a_day_packs_and_unpacks_to_the_same_hours() -> None:
    day = {0: Slot(60, 60, -101.0, -6060.0, 60), 13: Slot(59, 3, None, 0.0, 0),
           23: Slot(1, 0, 35.5, 35.5, 1)}
    data = hourpack.pack(day)
    assert len(data) == hourpack.SIZE == 24 * 14
    assert hourpack.unpack(data) == day
    assert hourpack.unpack(hourpack.pack({})) == {}
    with pytest.raises(ValueError, match="hour 24"):
        hourpack.pack({24: Slot(1, 1, None, 0.0, 0)})
    with pytest.raises(ValueError, match="bytes"):
        hourpack.unpack(data[:-1])


def test_two_parts_of_an_hour_merge() -> None:
    merged = hourpack.merge(Slot(30, 30, -100.0, -3000.0, 30), Slot(30, 20, -110.0, -3300.0, 30))
    assert merged == Slot(60, 50, -110.0, -6300.0, 60)
    assert hourpack.merge(Slot(1, 1, None, 0.0, 0), Slot(1, 0, 7.0, 7.0, 1)).value_min == 7.0


async def add_site(core: Core, name: str) -> int:
    async with core.sessions.begin() as s:
        site = Site(name=name, spec={})
        s.add(site)
        await s.flush()
        return site.id


async def write_hours(core: Core, site_id: int, start: datetime, hours: int) -> None:
    """What sweeps leave: a few checks an hour for the tunnel (with its handshake age, whole
    numbers so that float32 holds them exactly) and the router (no figure)."""
    for h in range(hours):
        at = start + timedelta(hours=h, minutes=7)
        for minute in range(3):
            async with core.sessions.begin() as s:
                await store.add_hours(s, at + timedelta(minutes=minute), [
                    (site_id, "tunnel", (h + minute) % 5 != 0, float(10 + h % 50 + minute)),
                    (site_id, "router", h % 7 != 0, None)])


async def counts(core: Core) -> tuple[int, int]:
    async with core.sessions() as s:
        return ((await s.execute(select(func.count()).select_from(HealthHour))).scalar_one(),
                (await s.execute(select(func.count()).select_from(HealthDay))).scalar_one())


async def test_finished_days_are_packed_and_read_back_the_same(core: Core) -> None:
    farm, shop = await add_site(core, "farm"), await add_site(core, "shop")
    start = NOW.replace(hour=0, minute=0) - timedelta(days=3)  # three whole days and today
    for site_id in (farm, shop):
        await write_hours(core, site_id, start, 3 * 24 + 9)
    since = start - timedelta(hours=5)
    before = await store.hours(core.sessions, "farm", since)
    assert len(before) == 2 * (3 * 24 + 9) and before[0].checks == 3

    packed = await store.pack_days(core.sessions, NOW, sites_at_once=1)
    # Before yesterday: packed (two days, two parts, two sites); yesterday and today: hourly.
    assert packed == 2 * 2 * 2 * 24
    assert await counts(core) == (2 * 2 * (24 + 9), 2 * 2 * 2)
    after = await store.hours(core.sessions, "farm", since)
    assert after == before
    assert await store.hours(core.sessions, "farm", start + timedelta(hours=30)) == \
        [r for r in before if r.hour >= start + timedelta(hours=30)]
    assert await store.pack_days(core.sessions, NOW) == 0  # nothing left to pack

    # A late check into a packed day (a sweep that stalled over midnight): counted once.
    late = start + timedelta(hours=5, minutes=59)
    async with core.sessions.begin() as s:
        await store.add_hours(s, late, [(farm, "tunnel", False, 2.0)])
    (hour,) = [r for r in await store.hours(core.sessions, "farm", since)
               if r.component == "tunnel" and r.hour == late.replace(minute=0)]
    (was,) = [r for r in before if r.component == "tunnel" and r.hour == hour.hour]
    assert (hour.checks, hour.up, hour.value_min) == (was.checks + 1, was.up, 2.0)
    assert await store.pack_days(core.sessions, NOW) == 1
    again = [r for r in await store.hours(core.sessions, "farm", since)
             if r.component == "tunnel" and r.hour == hour.hour]
    assert again == [hour]
    assert await counts(core) == (2 * 2 * (24 + 9), 2 * 2 * 2)


async def test_two_packers_at_once_count_every_hour_once(core: Core, settings: Settings
                                                         ) -> None:
    site_ids = [await add_site(core, f"s{i}") for i in range(6)]
    start = NOW.replace(hour=0, minute=0) - timedelta(days=3)
    for site_id in site_ids:
        await write_hours(core, site_id, start, 2 * 24)
    async with core.sessions() as s:
        total = (await s.execute(select(func.sum(HealthHour.checks)))).scalar_one()
    other = make_engine(settings.database_url)
    try:
        packed = await asyncio.gather(
            store.pack_days(core.sessions, NOW, sites_at_once=2),
            store.pack_days(async_sessionmaker(other, expire_on_commit=False), NOW,
                            sites_at_once=3))
    finally:
        await other.dispose()
    assert sum(packed) == 6 * 2 * 2 * 24
    async with core.sessions() as s:
        days = (await s.execute(select(HealthDay.hours))).scalars().all()
    assert await counts(core) == (0, 6 * 2 * 2)
    assert sum(slot.checks for d in days for slot in hourpack.unpack(d).values()) == total


async def test_prune_drops_packed_days_once_wholly_older_than_the_history(core: Core) -> None:
    farm = await add_site(core, "farm")
    now = datetime.now(UTC)
    old = (now - timedelta(days=12)).replace(hour=0, minute=0, second=0, microsecond=0)
    await write_hours(core, farm, old, 3 * 24)  # days -12, -11 and -10
    assert await prune_history(core.sessions, days=11) == 2 * 1  # day -12 of both parts
    async with core.sessions() as s:
        kept = sorted((await s.execute(select(HealthDay.day).distinct())).scalars().all())
    assert kept == [old + timedelta(days=1), old + timedelta(days=2)]
    rows = await store.hours(core.sessions, "farm", now - timedelta(days=30))
    assert rows and min(r.hour for r in rows) == old + timedelta(days=1)
    assert all(not math.isnan(r.value_min) for r in rows if r.value_min is not None)

