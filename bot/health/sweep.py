"""Sweeps: lease due sites, probe them concurrently (bounded), store what was found.

Any number of processes sweep one database: each leases a batch of due sites (see
:mod:`bot.health.store`), renews its leases while it works, and writes a site's results only
while it still holds that site's lease; a dead sweeper's sites are due again once its lease
runs out. Alerts go to the outbox, which only the bot sends from.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AlertOutbox, ComponentHealth, Incident, Router, Site, SiteSweep
from bot.db.types import utcnow
from bot.health import store
from bot.health.config import HealthConfig
from bot.health.judge import Judged, Known, Verdict, judge
from bot.health.machine import Machine
from bot.health.metrics import HealthMetrics
from bot.health.model import DROPLET, PARTS, Probe, camera_component
from bot.leases import Heartbeat, Owner
from bot.site import SiteSpec

log = logging.getLogger(__name__)


class Prober(Protocol):
    async def probe(self, site: str) -> list[Probe]: ...


@dataclass(frozen=True)
class SiteResult:
    site: str
    probes: list[Probe]
    verdict: Verdict | None  # None: the lease was lost meanwhile, nothing was stored


class Sweeper:
    def __init__(
        self, sessions: store.Sessions, prober: Prober, config: HealthConfig, *,
        owner: Owner | None = None, lease_seconds: float = 30.0,
        metrics: HealthMetrics | None = None, clock: Callable[[], datetime] = utcnow,
        site_timeout: float = 60.0,
    ) -> None:
        self._sessions = sessions
        self._prober = prober
        self.config = config
        self.owner = owner or Owner.this_process()
        self.lease_seconds = lease_seconds
        self.metrics = metrics
        self._clock = clock
        self.site_timeout = site_timeout
        self._inflight: dict[int, asyncio.Task[SiteResult | None]] = {}
        self._heartbeat = Heartbeat(self._renew, max(lease_seconds / 3, 0.2))

    async def _renew(self) -> None:
        until = self._clock() + timedelta(seconds=self.lease_seconds)
        await store.renew(self._sessions, self.owner, list(self._inflight), until)

    # -- one site ------------------------------------------------------------------------
    async def _probe(self, claimed: store.Claimed, spec: SiteSpec, pushed: bool) -> list[Probe]:
        try:
            async with asyncio.timeout(self.site_timeout):
                probes = await self._prober.probe(claimed.name)
        except TimeoutError:
            probes = [Probe(DROPLET, False, f"no answer within {self.site_timeout:g} s")]
        if not pushed:
            # The router is not set up yet: only the droplet can be judged; the rest would
            # page about a tunnel nobody has built.
            probes = [p if p.component == DROPLET else
                      Probe(p.component, None, "not set up yet (router not configured)")
                      for p in probes]
        seen = {p.component for p in probes}
        cams = [camera_component(c.name) for c in spec.cameras]
        return probes + [Probe(c, None, "not checked") for c in [*PARTS, *cams] if c not in seen]

    async def sweep(self, claimed: store.Claimed) -> SiteResult | None:
        """Probe one leased site and store the results (only if the lease still holds)."""
        async with self._sessions() as s:
            site = await s.get(Site, claimed.site_id)
            if site is None:
                return None
            spec = SiteSpec.model_validate(site.spec)
            router = (await s.execute(select(Router.last_push_at)
                                      .where(Router.site_id == site.id))).scalar()
        probes = await self._probe(claimed, spec, pushed=router is not None)
        return await self._store(claimed, spec, probes)

    async def _store(self, claimed: store.Claimed, spec: SiteSpec, probes: list[Probe]
                     ) -> SiteResult:
        now = self._clock()
        cfg = self.config.for_site(spec.health.model_dump())
        async with self._sessions.begin() as s:
            rows = {r.component: r for r in (await s.execute(
                select(ComponentHealth).where(ComponentHealth.site_id == claimed.site_id)
            )).scalars().all()}
            sweep_row = await s.get(SiteSweep, claimed.site_id)
            muted = bool(sweep_row and sweep_row.muted_until and sweep_row.muted_until > now)
            known = {c: Known(Machine.from_json(r.machine), r.figures or {}, r.summary)
                     for c, r in rows.items()}
            verdict = judge(claimed.name, probes, known, now, cfg.thresholds, muted=muted,
                            zone=spec.timezone)
            interval = cfg.retry_interval if verdict.retry_soon else cfg.check_interval
            # A little jitter keeps sites that started together from staying in lockstep.
            due = now + timedelta(seconds=interval * random.uniform(0.97, 1.0))  # noqa: S311
            if not await store.release(s, self.owner, claimed.site_id, next_due=due,
                                       swept_at=now):
                await s.rollback()
                log.info("lost the lease of %s mid-sweep; its results are dropped", claimed.name)
                return SiteResult(claimed.name, probes, None)
            for part in verdict.parts:
                await self._store_part(s, claimed.site_id, rows.get(part.component), part, now)
            await store.add_hours(s, claimed.site_id, now, [
                (p.component, bool(p.probe.ok), store.key_value(p.component, p.probe.figures))
                for p in verdict.parts if p.probe.ok is not None])
            await self._store_alerts(s, claimed.site_id, verdict, bool(spec.cameras), now)
        if self.metrics is not None:
            for part in verdict.parts:
                self.metrics.record_probe(claimed.name, part.probe)
                # 1 ok, 0 failing or down, no series while nothing is known.
                up = None if part.shown == "unknown" else part.shown == "ok"
                self.metrics.set_up(claimed.name, part.component, up)
        return SiteResult(claimed.name, probes, verdict)

    async def _store_part(self, s: AsyncSession, site_id: int, row: ComponentHealth | None,
                          part: Judged, now: datetime) -> None:
        if row is None:
            row = ComponentHealth(site_id=site_id, component=part.component)
            s.add(row)
        row.state = part.shown
        row.since = part.machine.since
        if part.probe.ok is not None or row.checked_at is None:
            row.checked_at = now
        row.summary = part.summary[:2000]
        row.figures = dict(part.figures)
        row.machine = part.machine.to_json()
        if part.opened:
            s.add(Incident(site_id=site_id, target=part.component,
                           started_at=part.machine.since or now, summary=part.summary[:2000]))
        elif part.closed:
            inc = await _open_incident(s, site_id, part.component)
            if inc is not None:
                inc.ended_at = now

    async def _store_alerts(self, s: AsyncSession, site_id: int, verdict: Verdict,
                            has_camera: bool, now: datetime) -> None:
        await s.flush()  # incidents opened above are found below
        for alert in verdict.alerts:
            inc = await _open_incident(s, site_id, alert.component) \
                if alert.kind != "recovered" else await _last_incident(s, site_id,
                                                                      alert.component)
            if inc is not None:
                if alert.kind == "down":
                    inc.alerted, inc.cause, inc.muted = True, alert.cause, alert.muted
                if alert.kind == "recovered":
                    inc.recovery_alerted = not alert.muted
                if not alert.muted:
                    inc.alerts_sent += 1
            if not alert.muted:
                s.add(AlertOutbox(site_id=site_id, kind=alert.kind, component=alert.component,
                                  text=alert.text, has_camera=has_camera, created_at=now))

    # -- many sites ----------------------------------------------------------------------
    async def _ensure_schedules(self, now: datetime) -> None:
        # New sites start within a few seconds, spread so they do not all fire at once.
        await store.ensure_schedules(self._sessions, now,
                                     jitter=min(10.0, self.config.check_interval))

    async def sweep_due(self) -> list[SiteResult]:
        """One pass: lease what is due (up to the concurrency bound) and sweep it all."""
        now = self._clock()
        await self._ensure_schedules(now)
        claimed = await store.claim_due(self._sessions, self.owner, now,
                                        limit=self.config.sweep_concurrency,
                                        lease=self.lease_seconds)
        return await self._sweep_all(claimed)

    async def sweep_now(self, site_ids: Sequence[int], *, wait: float = 60.0
                        ) -> list[SiteResult]:
        """Sweep these sites now, due or not; a site another process is sweeping is waited
        for (its results are the fresh ones) rather than swept twice."""
        await store.ensure_schedules(self._sessions, self._clock(), jitter=0, only=site_ids)
        pending = set(site_ids)
        results: list[SiteResult] = []
        deadline = asyncio.get_running_loop().time() + wait
        while pending:
            claimed = await store.claim_due(self._sessions, self.owner, self._clock(),
                                            limit=len(pending), lease=self.lease_seconds,
                                            only=sorted(pending))
            pending -= {c.site_id for c in claimed}
            results += await self._sweep_all(claimed)
            if not pending or not await self._others_hold(pending):
                break
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
        return results

    async def _others_hold(self, site_ids: set[int]) -> bool:
        async with self._sessions() as s:
            held = (await s.execute(select(SiteSweep.site_id).where(
                SiteSweep.site_id.in_(site_ids), SiteSweep.lease_until.is_not(None)
            ))).scalars().all()
        return bool(held)

    async def _sweep_all(self, claimed: Sequence[store.Claimed]) -> list[SiteResult]:
        tasks = [self._start(c) for c in claimed]
        done = await asyncio.gather(*tasks)
        return [r for r in done if r is not None]

    def _start(self, claimed: store.Claimed) -> asyncio.Task[SiteResult | None]:
        task = asyncio.create_task(self._guarded(claimed), name=f"sweep-{claimed.name}")
        self._inflight[claimed.site_id] = task
        self._heartbeat.start()
        task.add_done_callback(lambda _: self._inflight.pop(claimed.site_id, None))
        return task

    async def _guarded(self, claimed: store.Claimed) -> SiteResult | None:
        try:
            return await self.sweep(claimed)
        except Exception:
            log.exception("sweep of %s failed", claimed.name)
            async with self._sessions.begin() as s:
                due = self._clock() + timedelta(seconds=self.config.retry_interval)
                await store.release(s, self.owner, claimed.site_id, next_due=due,
                                    swept_at=None)
            return None

    async def run(self, stop: asyncio.Event, *, poll: float = 1.0) -> None:
        """Sweep until ``stop``: every ``poll`` s lease what is due, up to the bound of sites
        in flight; one slow site holds only its own slot."""
        try:
            while not stop.is_set():
                try:
                    await self._tick()
                except Exception:
                    log.warning("health sweep pass failed; trying again", exc_info=True)
                try:
                    await asyncio.wait_for(stop.wait(), poll)
                except TimeoutError:
                    pass
        finally:
            await self.close()

    async def _tick(self) -> None:
        free = self.config.sweep_concurrency - len(self._inflight)
        if free <= 0:
            return
        now = self._clock()
        await self._ensure_schedules(now)
        for claimed in await store.claim_due(self._sessions, self.owner, now, limit=free,
                                             lease=self.lease_seconds):
            self._start(claimed)

    async def close(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._heartbeat.stop()
        # Leases held by cancelled sweeps: hand the sites back at once, due now.
        async with self._sessions.begin() as s:
            held = (await s.execute(select(SiteSweep.site_id).where(
                SiteSweep.owner_token == self.owner.token))).scalars().all()
            for site_id in held:
                await store.release(s, self.owner, site_id, next_due=None, swept_at=None)


async def _open_incident(s: AsyncSession, site_id: int, component: str) -> Incident | None:
    return (await s.execute(select(Incident).where(
        Incident.site_id == site_id, Incident.target == component, Incident.ended_at.is_(None))
        .order_by(Incident.id.desc()).limit(1))).scalar()


async def _last_incident(s: AsyncSession, site_id: int, component: str) -> Incident | None:
    return (await s.execute(select(Incident).where(
        Incident.site_id == site_id, Incident.target == component)
        .order_by(Incident.id.desc()).limit(1))).scalar()
