"""Daily snapshots: each camera with ``daily_snapshot: "HH:MM"`` sends one picture a day, at
that time of the site's day, to every admin. Only the bot runs this (workers never send)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo

from bot.services.cameras import DailyCamera

log = logging.getLogger(__name__)


def due(cameras: Iterable[DailyCamera], now: datetime,
        sent: set[tuple[str, str, date]]) -> list[DailyCamera]:
    """Pure: the cameras whose time has come today (site time) and that have not sent yet.
    A bot that was down at that minute sends when it is back the same day."""
    out = []
    for cam in cameras:
        local = now.astimezone(ZoneInfo(cam.timezone)) if cam.timezone else now.astimezone()
        hour, minute = (int(x) for x in cam.at.split(":"))
        if (local.hour, local.minute) >= (hour, minute) and \
                (cam.site, cam.camera, local.date()) not in sent:
            out.append(cam)
    return out


class DailySnapshots:
    """Remembers what it sent today; ``send`` delivers one camera's picture."""

    def __init__(self, cameras: Callable[[], Awaitable[list[DailyCamera]]],
                 send: Callable[[DailyCamera], Awaitable[None]]) -> None:
        self._cameras = cameras
        self._send = send
        self._sent: set[tuple[str, str, date]] = set()
        self._started: date | None = None

    async def tick(self, now: datetime) -> list[DailyCamera]:
        cameras = await self._cameras()
        if self._started is None:
            # Started after today's time: today counts as sent (no surprise photo at start-up).
            self._started = now.date()
            for cam in due(cameras, now, set()):
                self._sent.add((cam.site, cam.camera, _local_date(cam, now)))
            return []
        sent = []
        for cam in due(cameras, now, self._sent):
            self._sent.add((cam.site, cam.camera, _local_date(cam, now)))
            try:
                await self._send(cam)
            except Exception:
                log.warning("daily snapshot of %s/%s failed", cam.site, cam.camera,
                            exc_info=True)
            sent.append(cam)
        # Keep only recent days (a bounded set).
        today = now.date()
        self._sent = {k for k in self._sent if (today - k[2]).days <= 2}
        return sent


def _local_date(cam: DailyCamera, now: datetime) -> date:
    return (now.astimezone(ZoneInfo(cam.timezone)) if cam.timezone else now.astimezone()).date()
