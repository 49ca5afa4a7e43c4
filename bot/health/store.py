"""Health in the database: sweep schedules and their leases, the latest state of every part,
hourly figures, incidents and the alert outbox.

Claims work on both databases: PostgreSQL skips rows another worker has locked (``FOR UPDATE
SKIP LOCKED``), and the claiming ``UPDATE`` repeats the "due and not leased" condition, so on
SQLite (which ignores ``FOR UPDATE``) two processes still never claim the same site.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import (
    AlertOutbox,
    ComponentHealth,
    Droplet,
    HealthDay,
    HealthHour,
    Router,
    Site,
    SiteSweep,
)
from bot.health import hourpack
from bot.health.hourpack import Slot
from bot.health.model import (
    MODEM,
    TUNNEL,
    HourRow,
)
from bot.leases import Owner
from bot.services.secrets import dialect_insert

Sessions = async_sessionmaker[AsyncSession]


@dataclass(frozen=True)
class Claimed:
    site_id: int
    name: str
    spec: dict[str, Any] = field(default_factory=dict)
    pushed: bool = False  # the router was configured: its parts can be judged


@dataclass(frozen=True)
class StoredPart:
    """What a sweep needs of a part's latest row to judge the next check."""

    machine: dict[str, Any]
    figures: dict[str, Any]
    summary: str
    checked_at: datetime | None


def key_value(component: str, figures: dict[str, Any] | Any) -> float | None:
    """The figure kept per hour for charts: the tunnel's handshake age, the modem's RSRP
    (else RSSI)."""
    keys = {TUNNEL: ("handshake_age",), MODEM: ("rsrp", "rssi")}.get(component, ())
    for key in keys:
        value = figures.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


async def ensure_schedules(sessions: Sessions, now: datetime, *, jitter: float,
                           only: Sequence[int] | None = None) -> int:
    """Give every site with a droplet a sweep schedule, first due within ``jitter`` seconds
    (spread so that sites added together do not all fire at once); ``only``: these sites,
    droplet or not (a check asked for by name)."""
    async with sessions.begin() as s:
        q = select(Site.id).outerjoin(SiteSweep, SiteSweep.site_id == Site.id) \
            .where(SiteSweep.site_id.is_(None))
        q = q.where(Site.id.in_(only)) if only is not None else \
            q.join(Droplet, Droplet.site_id == Site.id)
        missing = (await s.execute(q)).scalars().all()
        for site_id in missing:
            due = now + timedelta(seconds=random.uniform(0, jitter))  # noqa: S311 (jitter, not a secret)
            await s.execute(dialect_insert(s, SiteSweep).values(
                site_id=site_id, next_due_at=due, sweeps=0,
            ).on_conflict_do_nothing(index_elements=[SiteSweep.site_id]))
    return len(missing)


def _claimable(now: datetime) -> Any:
    return or_(SiteSweep.lease_until.is_(None), SiteSweep.lease_until < now)


async def claim_due(sessions: Sessions, owner: Owner, now: datetime, *, limit: int,
                    lease: float, only: Sequence[int] | None = None) -> list[Claimed]:
    """Lease up to ``limit`` due sites (or the sites ``only``, due or not) to ``owner``.

    One ``UPDATE`` whose subquery picks the rows (PostgreSQL skips those another worker has
    locked); the ``UPDATE`` repeats the condition, so on SQLite, which has no row locks, a site
    two processes picked at once still goes to one. Writing first also takes SQLite's write
    lock at the start, waiting for it, instead of failing to upgrade a read later."""
    if limit <= 0:
        return []
    cond = _claimable(now) if only is not None else and_(SiteSweep.next_due_at <= now,
                                                         _claimable(now))
    if only is not None:
        cond = and_(cond, SiteSweep.site_id.in_(only))
    pick = (select(SiteSweep.site_id).where(cond).order_by(SiteSweep.next_due_at)
            .limit(limit).with_for_update(skip_locked=True))
    async with sessions.begin() as s:
        ids = (await s.execute(
            update(SiteSweep).where(SiteSweep.site_id.in_(pick.scalar_subquery()), cond)
            .values(owner_host=owner.host, owner_pid=owner.pid, owner_token=owner.token,
                    lease_until=now + timedelta(seconds=lease))
            .returning(SiteSweep.site_id)
            .execution_options(synchronize_session=False))).scalars().all()
        if not ids:
            return []
        rows = (await s.execute(
            select(Site.id, Site.name, Site.spec, Router.last_push_at)
            .outerjoin(Router, Router.site_id == Site.id).where(Site.id.in_(ids)))).all()
    return [Claimed(site_id, name, spec or {}, pushed is not None)
            for site_id, name, spec, pushed in rows]


async def renew(sessions: Sessions, owner: Owner, site_ids: Iterable[int], until: datetime
                ) -> None:
    ids = list(site_ids)
    if not ids:
        return
    async with sessions.begin() as s:
        await s.execute(update(SiteSweep)
                        .where(SiteSweep.site_id.in_(ids), SiteSweep.owner_token == owner.token)
                        .values(lease_until=until)
                        .execution_options(synchronize_session=False))


async def release(s: AsyncSession, owner: Owner, site_id: int, *, next_due: datetime | None,
                  swept_at: datetime | None) -> bool:
    """End ``owner``'s lease of a site; False when the lease was lost (taken over)."""
    values: dict[str, Any] = {"owner_host": None, "owner_pid": None, "owner_token": None,
                              "lease_until": None}
    if next_due is not None:
        values["next_due_at"] = next_due
    if swept_at is not None:
        values.update(last_swept_at=swept_at, sweeps=SiteSweep.sweeps + 1)
    result = await s.execute(
        update(SiteSweep).where(SiteSweep.site_id == site_id,
                                SiteSweep.owner_token == owner.token)
        .values(**values).execution_options(synchronize_session=False))
    return getattr(result, "rowcount", 0) == 1


async def hold(s: AsyncSession, owner: Owner, site_ids: Sequence[int]
               ) -> dict[int, tuple[datetime | None, int]]:
    """Of these sites, those ``owner`` still holds, with their ``muted_until`` and sweep
    count, locked for the rest of the transaction. An ``UPDATE``, so that it takes SQLite's
    write lock first: nobody can take a site over between this check and the writes after
    it."""
    rows = (await s.execute(
        update(SiteSweep).where(SiteSweep.site_id.in_(site_ids),
                                SiteSweep.owner_token == owner.token)
        .values(owner_token=SiteSweep.owner_token)
        .returning(SiteSweep.site_id, SiteSweep.muted_until, SiteSweep.sweeps)
        .execution_options(synchronize_session=False))).all()
    return {site_id: (muted, sweeps) for site_id, muted, sweeps in rows}


async def latest_parts(s: AsyncSession, site_ids: Sequence[int]
                       ) -> dict[int, dict[str, StoredPart]]:
    ch = ComponentHealth
    rows = (await s.execute(
        select(ch.site_id, ch.component, ch.machine, ch.figures, ch.summary, ch.checked_at)
        .where(ch.site_id.in_(site_ids)))).all()
    out: dict[int, dict[str, StoredPart]] = {}
    for site_id, component, machine, figures, summary, checked_at in rows:
        out.setdefault(site_id, {})[component] = StoredPart(machine or {}, figures or {},
                                                            summary or "", checked_at)
    return out


async def release_swept(s: AsyncSession, due: Sequence[tuple[int, datetime]],
                        swept_at: datetime) -> None:
    """End the leases of sites just swept (held, see :func:`hold`), each due again at its
    time: one statement for them all."""
    if not due:
        return
    t = cast(Table, SiteSweep.__table__)
    await s.execute(
        update(t).where(t.c.site_id == bindparam("b_site"))
        .values(owner_host=None, owner_pid=None, owner_token=None, lease_until=None,
                next_due_at=bindparam("b_due"), last_swept_at=swept_at,
                sweeps=t.c.sweeps + 1),
        [{"b_site": site_id, "b_due": at} for site_id, at in due])


async def put_parts(s: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """The latest state of parts (dicts of component_health's columns): one upsert."""
    if not rows:
        return
    stmt = dialect_insert(s, ComponentHealth.__table__)
    cols = ("state", "since", "checked_at", "summary", "figures", "machine")
    await s.execute(stmt.on_conflict_do_update(
        index_elements=["site_id", "component"],
        set_={c: getattr(stmt.excluded, c) for c in cols}), list(rows))


async def add_hours(s: AsyncSession, at: datetime,
                    parts: Sequence[tuple[int, str, bool, float | None]]) -> None:
    """Checks into their hour's aggregates: (site, component, up, key figure) each, all in
    one upsert."""
    if not parts:
        return
    hour = at.replace(minute=0, second=0, microsecond=0)
    t = cast(Table, HealthHour.__table__)
    stmt = dialect_insert(s, t)
    excluded = stmt.excluded
    least = func.min if s.get_bind().dialect.name == "sqlite" else func.least
    await s.execute(stmt.on_conflict_do_update(
        index_elements=["site_id", "component", "hour"],
        set_={
            "checks": t.c.checks + 1,
            "up": t.c.up + excluded.up,
            "value_min": func.coalesce(least(t.c.value_min, excluded.value_min),
                                       t.c.value_min, excluded.value_min),
            "value_sum": t.c.value_sum + excluded.value_sum,
            "value_count": t.c.value_count + excluded.value_count,
        }), [
            {"site_id": site_id, "component": component, "hour": hour, "checks": 1,
             "up": int(up), "value_min": value, "value_sum": value or 0.0,
             "value_count": int(value is not None)}
            for site_id, component, up, value in parts])


async def set_muted(sessions: Sessions, site_id: int, until: datetime | None) -> None:
    async with sessions.begin() as s:
        await s.execute(dialect_insert(s, SiteSweep).values(
            site_id=site_id, next_due_at=datetime.now(UTC), sweeps=0,
            muted_until=until,
        ).on_conflict_do_update(index_elements=[SiteSweep.site_id],
                                set_={"muted_until": until}))


async def request_sweep(sessions: Sessions, site_ids: Sequence[int], now: datetime) -> None:
    """Make sites due at ``now``: whoever sweeps next takes them first."""
    async with sessions.begin() as s:
        await s.execute(update(SiteSweep).where(SiteSweep.site_id.in_(site_ids))
                        .values(next_due_at=now).execution_options(synchronize_session=False))


async def hours(sessions: Sessions, site: str, since: datetime) -> list[HourRow]:
    """The site's hourly figures since ``since``: the recent hours' rows and the packed days
    (an hour found in both, written late into a packed day, is counted once, merged)."""
    first_day = day_start(since)
    async with sessions() as s:
        site_id = (await s.execute(select(Site.id).where(Site.name == site))).scalar()
        if site_id is None:
            return []
        recent = (await s.execute(select(HealthHour).where(
            HealthHour.site_id == site_id, HealthHour.hour >= since))).scalars().all()
        days = (await s.execute(select(HealthDay).where(
            HealthDay.site_id == site_id, HealthDay.day >= first_day))).scalars().all()
    slots: dict[tuple[str, datetime], Slot] = {}
    for day in days:
        for h, slot in hourpack.unpack(day.hours).items():
            at = day.day + timedelta(hours=h)
            if at >= since:
                slots[(day.component, at)] = slot
    for r in recent:
        slot = Slot(r.checks, r.up, r.value_min, r.value_sum, r.value_count)
        key = (r.component, r.hour)
        slots[key] = hourpack.merge(slots[key], slot) if key in slots else slot
    return [HourRow(component, at, v.checks, v.up, v.value_min,
                    v.value_sum / v.value_count if v.value_count else None)
            for (component, at), v in sorted(slots.items(), key=lambda kv: (kv[0][1], kv[0][0]))]


def day_start(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


async def pack_days(sessions: Sessions, now: datetime, *, sites_at_once: int = 20) -> int:
    """Pack the hourly rows of days before yesterday (UTC) into one row per part and day;
    returns how many hourly rows were packed. Today and yesterday stay hourly: sweeps still
    write the hour just ended. Each transaction takes its hourly rows by deleting them, so two
    packers at once never count an hour twice."""
    cutoff = day_start(now) - timedelta(days=1)
    async with sessions() as s:
        site_ids = (await s.execute(select(HealthHour.site_id).where(HealthHour.hour < cutoff)
                                    .distinct())).scalars().all()
    packed = 0
    for i in range(0, len(site_ids), sites_at_once):
        chunk = list(site_ids[i:i + sites_at_once])
        async with sessions.begin() as s:
            taken = (await s.execute(
                delete(HealthHour).where(HealthHour.site_id.in_(chunk), HealthHour.hour < cutoff)
                .returning(HealthHour.site_id, HealthHour.component, HealthHour.hour,
                           HealthHour.checks, HealthHour.up, HealthHour.value_min,
                           HealthHour.value_sum, HealthHour.value_count))).all()
            by_day: dict[tuple[int, str, datetime], list[tuple[int, Slot]]] = {}
            for site_id, component, hour, checks, up, vmin, vsum, count in taken:
                day = day_start(hour)
                by_day.setdefault((site_id, component, day), []).append(
                    (int((hour - day).total_seconds() // 3600),
                     Slot(checks, up, vmin, vsum, count)))
            existing = {(d.site_id, d.component, d.day): hourpack.unpack(d.hours)
                        for d in (await s.execute(
                            select(HealthDay).where(HealthDay.site_id.in_(chunk),
                                                    HealthDay.day < cutoff)
                            .with_for_update())).scalars().all()}
            rows = [{"site_id": site_id, "component": component, "day": day,
                     "hours": hourpack.pack(hourpack.merge_into(
                         existing.get((site_id, component, day), {}), slots))}
                    for (site_id, component, day), slots in by_day.items()]
            if rows:
                stmt = dialect_insert(s, HealthDay.__table__)
                await s.execute(stmt.on_conflict_do_update(
                    index_elements=["site_id", "component", "day"],
                    set_={"hours": stmt.excluded.hours}), rows)
            packed += len(taken)
    return packed


# -- the outbox ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PendingAlert:
    id: int
    site: str
    kind: str
    component: str
    text: str
    has_camera: bool
    alert_chat: int | None  # the site's own extra chat (health.alert_chat)


async def claim_alerts(sessions: Sessions, now: datetime, *, limit: int = 20,
                       stale_after: float = 120.0) -> list[PendingAlert]:
    """Alerts to send, claimed so that a second sender skips them; a claim older than
    ``stale_after`` (its sender died before sending) is claimed again."""
    stale = now - timedelta(seconds=stale_after)
    cond = and_(AlertOutbox.sent_at.is_(None),
                or_(AlertOutbox.claimed_at.is_(None), AlertOutbox.claimed_at < stale))
    async with sessions.begin() as s:
        ids = (await s.execute(select(AlertOutbox.id).where(cond).order_by(AlertOutbox.id)
                               .limit(limit).with_for_update(skip_locked=True))).scalars().all()
        if not ids:
            return []
        await s.execute(update(AlertOutbox).where(AlertOutbox.id.in_(ids), cond)
                        .values(claimed_at=now).execution_options(synchronize_session=False))
        rows = (await s.execute(
            select(AlertOutbox, Site.name, Site.spec).join(Site, Site.id == AlertOutbox.site_id)
            .where(AlertOutbox.id.in_(ids), AlertOutbox.claimed_at == now)
            .order_by(AlertOutbox.id))).all()
    return [PendingAlert(a.id, name, a.kind, a.component, a.text, a.has_camera,
                         (spec.get("health") or {}).get("alert_chat"))
            for a, name, spec in rows]


async def finish_alert(sessions: Sessions, alert_id: int, *, sent: bool, now: datetime) -> None:
    """Sent: never again. Not sent (Telegram unreachable): back in the queue."""
    async with sessions.begin() as s:
        await s.execute(update(AlertOutbox).where(AlertOutbox.id == alert_id).values(
            sent_at=now if sent else None, claimed_at=now if sent else None))
        if not sent:
            return
        await s.execute(delete(AlertOutbox).where(
            AlertOutbox.sent_at.is_not(None),
            AlertOutbox.sent_at < now - timedelta(days=7)))
