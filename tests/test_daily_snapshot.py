"""Daily snapshots: due at the site's time, once a day, none at start-up for a time past."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.services.cameras import DailyCamera
from jobs.daily import DailySnapshots, due

KOLKATA = DailyCamera("farm", "porch", "08:00", "Asia/Kolkata")  # UTC+5:30
UTC_CAM = DailyCamera("shop", "door", "08:00", "UTC")


def at(hour: int, minute: int, day: int = 1) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


def test_due_in_the_sites_time() -> None:
    assert due([KOLKATA, UTC_CAM], at(2, 29), set()) == []
    assert due([KOLKATA, UTC_CAM], at(2, 30), set()) == [KOLKATA]  # 08:00 in Kolkata
    assert due([KOLKATA, UTC_CAM], at(8, 0), set()) == [KOLKATA, UTC_CAM]
    sent = {("farm", "porch", datetime(2026, 12, 1).date())}
    assert due([KOLKATA], at(9, 0), sent) == []
    assert due([KOLKATA], at(2, 30, day=2), sent) == [KOLKATA]  # the next day again


async def test_once_a_day_and_not_at_start_up() -> None:
    delivered: list[DailyCamera] = []

    async def cameras() -> list[DailyCamera]:
        return [KOLKATA, UTC_CAM]

    async def send(cam: DailyCamera) -> None:
        delivered.append(cam)

    daily = DailySnapshots(cameras, send)
    assert await daily.tick(at(5, 0)) == []  # start-up after Kolkata's 08:00: no surprise
    assert await daily.tick(at(7, 59)) == []
    assert await daily.tick(at(8, 0)) == [UTC_CAM]
    assert await daily.tick(at(8, 0) + timedelta(seconds=30)) == []  # once only
    assert await daily.tick(at(2, 30, day=2)) == [KOLKATA]
    assert delivered == [UTC_CAM, KOLKATA]
