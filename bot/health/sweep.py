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
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.db.models import AlertOutbox, Incident, SiteSweep
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


# After a commit: each stored site's sweep count and part rows (component_health's columns),
# exactly what was written; the health view of this process takes them without a read.
OnStored = Callable[[dict[int, tuple[int, list[dict[str, Any]]]]], None]


class Prober(Protocol):
    async def probe(self, site: str) -> list[Probe]: ...


@dataclass(frozen=True)
class SiteResult:
    site: str
    probes: list[Probe]
    verdict: Verdict | None  # None: the lease was lost meanwhile, nothing was stored


@dataclass(frozen=True)
class _Done:
    """A probed site waiting for the writer."""

    claimed: store.Claimed
    spec: SiteSpec
    probes: list[Probe]
    stored: asyncio.Future[SiteResult]


class Sweeper:
    def __init__(
        self, sessions: store.Sessions, prober: Prober, config: HealthConfig, *,
        owner: Owner | None = None, lease_seconds: float = 30.0,
        metrics: HealthMetrics | None = None, clock: Callable[[], datetime] = utcnow,
        site_timeout: float = 60.0, write_batch: int = 50, on_stored: OnStored | None = None,
    ) -> None:
        self._sessions = sessions
        self._prober = prober
        self.config = config
        self.owner = owner or Owner.this_process()
        self.lease_seconds = lease_seconds
        self.metrics = metrics
        self._clock = clock
        self.site_timeout = site_timeout
        self.write_batch = write_batch  # sites a transaction stores at most
        self.on_stored = on_stored
        self._inflight: dict[int, asyncio.Task[SiteResult | None]] = {}
        self._queue: asyncio.Queue[_Done] = asyncio.Queue()
        self._specs: dict[int, tuple[dict[str, Any], SiteSpec]] = {}
        self._writer: asyncio.Task[None] | None = None
        self._heartbeat = Heartbeat(self._renew, max(lease_seconds / 3, 0.2))

    async def _renew(self) -> None:
        until = self._clock() + timedelta(seconds=self.lease_seconds)
        await store.renew(self._sessions, self.owner, list(self._inflight), until)

    # -- one site ------------------------------------------------------------------------
    async def _probe(self, claimed: store.Claimed, spec: SiteSpec) -> list[Probe]:
        try:
            async with asyncio.timeout(self.site_timeout):
                probes = await self._prober.probe(claimed.name)
        except TimeoutError:
            probes = [Probe(DROPLET, False, f"no answer within {self.site_timeout:g} s")]
        if not claimed.pushed:
            # The router is not set up yet: only the droplet can be judged; the rest would
            # page about a tunnel nobody has built.
            probes = [p if p.component == DROPLET else
                      Probe(p.component, None, "not set up yet (router not configured)")
                      for p in probes]
        seen = {p.component for p in probes}
        cams = [camera_component(c.name) for c in spec.cameras]
        return probes + [Probe(c, None, "not checked") for c in [*PARTS, *cams] if c not in seen]

    def _spec(self, claimed: store.Claimed) -> SiteSpec:
        # Validating a spec costs more than the rest of a site's sweep; it rarely changes.
        known = self._specs.get(claimed.site_id)
        if known is not None and known[0] == claimed.spec:
            return known[1]
        spec = SiteSpec.model_validate(claimed.spec)
        self._specs[claimed.site_id] = (claimed.spec, spec)
        return spec

    async def sweep(self, claimed: store.Claimed) -> SiteResult:
        """Probe one leased site; its results are stored with those of the other sites done
        meanwhile (only if the lease still holds)."""
        spec = self._spec(claimed)
        probes = await self._probe(claimed, spec)
        done = _Done(claimed, spec, probes, asyncio.get_running_loop().create_future())
        await self._queue.put(done)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="health-writer")
        return await done.stored

    # -- storing, many sites at a time -----------------------------------------------------
    async def _write_loop(self) -> None:
        """One writer per process: whatever sweeps finished while the last batch was being
        written goes in the next, in one transaction (one statement per table, not a dozen
        per site), and SQLite sees one writer here instead of hundreds queueing for its
        lock."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.write_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[_Done]) -> None:
        batch = [d for d in batch if not d.stored.done()]  # its sweep was cancelled
        if not batch:
            return
        try:
            results = await self._store(batch)
        except Exception as exc:
            if len(batch) > 1:  # one site's bad data must not lose the others' results
                for d in batch:
                    await self._write([d])
            elif not batch[0].stored.done():  # that sweep fails, and is retried later
                batch[0].stored.set_exception(exc)
            return
        for d in batch:
            if not d.stored.done():
                d.stored.set_result(results[d.claimed.site_id])

    async def _store(self, batch: Sequence[_Done]) -> dict[int, SiteResult]:
        now = self._clock()
        out: dict[int, SiteResult] = {}
        async with self._sessions.begin() as s:
            held = await store.hold(s, self.owner, [d.claimed.site_id for d in batch])
            stored = await store.latest_parts(s, list(held))
            due: list[tuple[int, datetime]] = []
            parts: list[dict[str, Any]] = []
            hours: list[tuple[int, str, bool, float | None]] = []
            eventful: list[tuple[_Done, Verdict]] = []
            written: dict[int, tuple[int, list[dict[str, Any]]]] = {}
            for n, d in enumerate(batch, 1):
                if n % 10 == 0:  # judging is CPU: let /status and the others in between
                    await asyncio.sleep(0)
                site_id = d.claimed.site_id
                if site_id not in held:
                    log.info("lost the lease of %s mid-sweep; its results are dropped",
                             d.claimed.name)
                    out[site_id] = SiteResult(d.claimed.name, d.probes, None)
                    continue
                muted_until, count = held[site_id]
                verdict, next_due = self._judge(d, stored.get(site_id, {}), muted_until, now)
                out[site_id] = SiteResult(d.claimed.name, d.probes, verdict)
                due.append((site_id, next_due))
                rows = stored.get(site_id, {})
                mine = [_part_row(site_id, j, rows.get(j.component), now) for j in verdict.parts]
                parts += mine
                written[site_id] = (count + 1, mine)
                hours += [(site_id, j.component, bool(j.probe.ok),
                           store.key_value(j.component, j.probe.figures))
                          for j in verdict.parts if j.probe.ok is not None]
                if verdict.alerts or any(j.opened or j.closed for j in verdict.parts):
                    eventful.append((d, verdict))
            await store.release_swept(s, due, now)
            await store.put_parts(s, parts)
            await store.add_hours(s, now, hours)
            for d, verdict in eventful:
                await self._store_incidents(s, d.claimed.site_id, verdict, now)
                await self._store_alerts(s, d.claimed.site_id, verdict, bool(d.spec.cameras),
                                         now)
        if self.on_stored is not None:
            self.on_stored(written)
        if self.metrics is not None:
            for result in out.values():
                self._record(result)
        return out

    def _judge(self, d: _Done, rows: dict[str, store.StoredPart], muted_until: datetime | None,
               now: datetime) -> tuple[Verdict, datetime]:
        cfg = self.config.for_site(d.spec.health.model_dump())
        known = {c: Known(Machine.from_json(r.machine), r.figures, r.summary)
                 for c, r in rows.items()}
        verdict = judge(d.claimed.name, d.probes, known, now, cfg.thresholds,
                        muted=bool(muted_until and muted_until > now), zone=d.spec.timezone)
        interval = cfg.retry_interval if verdict.retry_soon else cfg.check_interval
        # A little jitter keeps sites that started together from staying in lockstep.
        return verdict, now + timedelta(seconds=interval * random.uniform(0.97, 1.0))  # noqa: S311

    def _record(self, result: SiteResult) -> None:
        assert self.metrics is not None
        if result.verdict is None:
            return
        for part in result.verdict.parts:
            self.metrics.record_probe(result.site, part.probe)
            # 1 ok, 0 failing or down, no series while nothing is known.
            up = None if part.shown == "unknown" else part.shown == "ok"
            self.metrics.set_up(result.site, part.component, up)

    async def _store_incidents(self, s: AsyncSession, site_id: int, verdict: Verdict,
                               now: datetime) -> None:
        for part in verdict.parts:
            if part.opened:
                s.add(Incident(site_id=site_id, target=part.component,
                               started_at=part.machine.since or now,
                               summary=part.summary[:2000]))
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
        if self._writer is not None:
            self._writer.cancel()
            await asyncio.gather(self._writer, return_exceptions=True)
            self._writer = None
        await self._heartbeat.stop()
        # Leases held by cancelled sweeps: hand the sites back at once, due now.
        async with self._sessions.begin() as s:
            held = (await s.execute(select(SiteSweep.site_id).where(
                SiteSweep.owner_token == self.owner.token))).scalars().all()
            for site_id in held:
                await store.release(s, self.owner, site_id, next_due=None, swept_at=None)


def _part_row(site_id: int, part: Judged, before: store.StoredPart | None, now: datetime
              ) -> dict[str, Any]:
    checked = now if part.probe.ok is not None or before is None or before.checked_at is None \
        else before.checked_at
    return {"site_id": site_id, "component": part.component, "state": part.shown,
            "since": part.machine.since, "checked_at": checked, "summary": part.summary[:2000],
            "figures": dict(part.figures), "machine": part.machine.to_json()}


async def _open_incident(s: AsyncSession, site_id: int, component: str) -> Incident | None:
    return (await s.execute(select(Incident).where(
        Incident.site_id == site_id, Incident.target == component, Incident.ended_at.is_(None))
        .order_by(Incident.id.desc()).limit(1))).scalar()


async def _last_incident(s: AsyncSession, site_id: int, component: str) -> Incident | None:
    return (await s.execute(select(Incident).where(
        Incident.site_id == site_id, Incident.target == component)
        .order_by(Incident.id.desc()).limit(1))).scalar()
