"""Health for the surfaces: views from the database, sweeps on demand, mutes, the outbox."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from bot.db.models import Site
from bot.db.types import utcnow
from bot.errors import NotFound, ValidationFailed
from bot.health import store
from bot.health.config import HealthConfig
from bot.health.metrics import HealthMetrics
from bot.health.model import MUTED_FOREVER, HourRow, Probe, SiteHealth
from bot.health.sweep import Prober, SiteResult, Sweeper
from bot.health.view import HealthView
from bot.leases import Owner

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNIT = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``30m``, ``2h``, ``1d``, ``1w``; a bare number is hours. At most 30 days."""
    m = _DURATION.match(text)
    if m is None:
        raise ValidationFailed(f"{text!r} is not a duration: give e.g. 30m, 2h or 1d.")
    seconds = float(m.group(1)) * _UNIT[(m.group(2) or "h").lower()]
    if not 60 <= seconds <= 30 * 86400:
        raise ValidationFailed("A mute lasts from 1 minute to 30 days (e.g. 30m, 2h, 7d); "
                               "without a duration it lasts until /unmute.")
    return timedelta(seconds=seconds)


@dataclass(frozen=True)
class Checked:
    """One sweep of one site now: the stored view after it, and the probes' own figures."""

    health: SiteHealth
    probes: list[Probe]


class HealthService:
    def __init__(self, sessions: store.Sessions, config: HealthConfig, prober: Prober, *,
                 lease_seconds: float, metrics: HealthMetrics | None = None) -> None:
        self._sessions = sessions
        self.config = config
        self.prober = prober
        self.metrics = metrics
        self.lease_seconds = lease_seconds
        self._sweeper: Sweeper | None = None
        self.view = HealthView(sessions)

    def sweeper(self, owner: Owner | None = None) -> Sweeper:
        """The sweeper of this process (one per process: its leases carry one owner)."""
        if self._sweeper is None:
            self._sweeper = Sweeper(self._sessions, self.prober, self.config, owner=owner,
                                    lease_seconds=self.lease_seconds, metrics=self.metrics,
                                    on_stored=self.view.put)
        return self._sweeper

    async def sites(self, names: Sequence[str] | None = None) -> list[SiteHealth]:
        """What is stored of these sites (all when None): answered from the database alone,
        whatever the network does, through the view this process keeps of it."""
        await self.view.refresh()
        found = self.view.sites(names, utcnow())
        if names is not None and len(found) < len(set(names)):
            missing = sorted(set(names) - {h.site for h in found})
            raise NotFound(f"No site named {', '.join(missing)}.")
        return found

    async def _ids(self, names: Sequence[str]) -> list[int]:
        async with self._sessions() as s:
            rows = dict((await s.execute(select(Site.name, Site.id)
                                         .where(Site.name.in_(names)))).all())
        missing = sorted(set(names) - set(rows))
        if missing:
            raise NotFound(f"No site named {', '.join(missing)}.")
        return [rows[n] for n in names]

    async def check(self, name: str) -> Checked:
        """Sweep one site now (waiting for another process's sweep of it, if one runs)."""
        (site_id,) = await self._ids([name])
        results: list[SiteResult] = await self.sweeper().sweep_now([site_id])
        probes = next((r.probes for r in results if r.site == name), [])
        (health,) = await self.sites([name])
        return Checked(health, probes)

    async def refresh(self, names: Sequence[str] | None) -> list[SiteHealth]:
        """Sweep these sites (all when None) now, then answer from the database."""
        if names is None:
            async with self._sessions() as s:
                names = list((await s.execute(select(Site.name))).scalars().all())
        ids = await self._ids(list(names))
        await self.sweeper().sweep_now(ids)
        return await self.sites(list(names) if names else None)

    async def mute(self, name: str, duration: timedelta | None) -> datetime:
        (site_id,) = await self._ids([name])
        until = utcnow() + duration if duration is not None else MUTED_FOREVER
        await store.set_muted(self._sessions, site_id, until)
        return until

    async def unmute(self, name: str) -> None:
        (site_id,) = await self._ids([name])
        await store.set_muted(self._sessions, site_id, None)

    async def hours(self, name: str, days: int = 7) -> list[HourRow]:
        await self._ids([name])
        return await store.hours(self._sessions, name, utcnow() - timedelta(days=days))

    async def pending_alerts(self) -> list[store.PendingAlert]:
        return await store.claim_alerts(self._sessions, utcnow())

    async def alert_done(self, alert: store.PendingAlert, *, sent: bool) -> None:
        await store.finish_alert(self._sessions, alert.id, sent=sent, now=utcnow())
        if sent and self.metrics is not None:
            self.metrics.alert_sent(alert.site, alert.kind)
