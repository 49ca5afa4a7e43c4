"""Storing sites from their YAML spec, and reading back what the database knows."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bot.actions import action
from bot.db.models import (
    Camera,
    Droplet,
    Incident,
    Modem,
    Operation,
    OpState,
    Router,
    Secret,
    Site,
    VpnPeer,
)
from bot.errors import NotFound
from bot.render.spec_diff import spec_diff as spec_diff  # re-exported: the diff lives there
from bot.site import SiteSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    site: str
    action: Literal["created", "updated", "unchanged"]
    changes: list[str]
    dry_run: bool
    # The stored spec before and after (None before: a new site); for undo_record.
    previous: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    applied: dict[str, Any] | None = field(default=None, compare=False, repr=False)


# The operation parameter under which a provisioning run started by an apply carries what
# undoing that apply takes (see undo_record, undo_apply).
UNDO_PARAM = "undo_apply"


async def apply_site(
    sessions: async_sessionmaker[AsyncSession], spec: SiteSpec, *, dry_run: bool = False
) -> ApplyResult:
    """Create or update the stored site; with ``dry_run`` report the changes and write nothing."""
    new = spec.to_json()
    async with sessions() as s, s.begin():
        site = await _load(s, spec.name)
        if site is None:
            result = ApplyResult(spec.name, "created", spec_diff({}, new), dry_run, None, new)
            if not dry_run:
                site = Site(name=spec.name, spec=new)
                s.add(site)
                _mirror(site, spec)
            return result
        changes = spec_diff(site.spec, new)
        if not changes:
            return ApplyResult(spec.name, "unchanged", [], dry_run, site.spec, new)
        previous = dict(site.spec)
        if not dry_run:
            site.spec = new
            _mirror(site, spec)
        return ApplyResult(spec.name, "updated", changes, dry_run, previous, new)


def undo_record(result: ApplyResult) -> dict[str, Any] | None:
    """What undoing a stored apply takes, to pass in an operation's params (JSON); None when
    the apply stored nothing (a dry run, or no change)."""
    if result.dry_run or result.action == "unchanged":
        return None
    return {"applied": result.applied, "previous": result.previous}


async def undo_apply(
    sessions: async_sessionmaker[AsyncSession], name: str, record: dict[str, Any]
) -> str | None:
    """Undo the apply ``record`` describes (see :func:`undo_record`): remove the site it
    created, or put back the spec it replaced. Only while the site still holds what that apply
    stored and (for a removal) has no droplet; returns a sentence saying what was done, or None
    when nothing was (the site changed since, or the record is not one of ours)."""
    applied, previous = record.get("applied"), record.get("previous")
    if not isinstance(applied, dict) or not (previous is None or isinstance(previous, dict)):
        return None
    async with sessions() as s, s.begin():
        site = await _load(s, name)
        if site is None or site.spec != applied:
            return None
        if previous is None:
            if site.droplet is not None:
                return None
            await s.delete(site)  # its rows go with it; operations keep their history
            prefix = f"site:{name}:"  # the site's own secrets (its WireGuard keys)
            await s.execute(delete(Secret).where(Secret.name.startswith(prefix, autoescape=True)))
            return f"Nothing was stored: site {name} was removed again."
        try:
            spec = SiteSpec.model_validate(previous)
        except ValidationError:
            log.warning("site %s: the previous spec no longer validates; not restored", name)
            return None
        site.spec = previous
        _mirror(site, spec)
        return f"Site {name} keeps its previous settings."


def _mirror(site: Site, spec: SiteSpec) -> None:
    """Keep the per-device rows in step with the spec (actual-state columns are kept)."""
    r = spec.router
    if site.router is None:
        site.router = Router(host=r.host, port=r.port, user=r.user)
    else:
        # A new address is not a new machine: the pin stays (a router that really was
        # replaced is unpinned on purpose, with `router forget-key`).
        site.router.host, site.router.port, site.router.user = r.host, r.port, r.user
    m = spec.modem
    if site.modem is None:
        site.modem = Modem(protocol=m.protocol, apn=m.apn)
    else:
        site.modem.protocol, site.modem.apn = m.protocol, m.apn
    by_name = {c.name: c for c in site.cameras}
    wanted = []
    for cam in spec.cameras:
        row = by_name.get(cam.name) or Camera(name=cam.name)
        row.host, row.port, row.user = str(cam.host), cam.port, cam.user
        row.password_env, row.kind = cam.password_env, cam.kind
        row.via, row.snapshot_url = cam.via, cam.snapshot_url
        row.daily_snapshot = cam.daily_snapshot
        wanted.append(row)
    site.cameras = wanted


async def _load(s: AsyncSession, name: str) -> Site | None:
    q = select(Site).where(Site.name == name).options(*_EAGER)
    return (await s.execute(q)).scalar_one_or_none()


_EAGER = (
    selectinload(Site.droplet),
    selectinload(Site.router),
    selectinload(Site.modem),
    selectinload(Site.cameras),
    selectinload(Site.peers),
)


async def get_spec(sessions: async_sessionmaker[AsyncSession], name: str) -> SiteSpec:
    async with sessions() as s:
        site = (await s.execute(select(Site).where(Site.name == name))).scalar_one_or_none()
    if site is None:
        raise NotFound(f"There is no site named {name!r}. {action('site list')} shows them.")
    return SiteSpec.model_validate(site.spec)


@dataclass(frozen=True)
class LastOperation:
    id: int
    kind: str
    state: str
    message: str
    finished_at: str | None


@dataclass(frozen=True)
class SiteStatus:
    """What the database knows about one site; ``to_json`` keys are a documented interface."""

    name: str
    droplet: dict[str, Any] | None
    router: dict[str, Any]
    modem: dict[str, Any]
    cameras: list[str]
    peers: int
    open_incidents: int
    last_operation: LastOperation | None
    updated_at: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        return data


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def site_statuses(
    sessions: async_sessionmaker[AsyncSession], name: str | None = None
) -> list[SiteStatus]:
    """One status per site (or just ``name``), sorted by name.

    Plain column queries rather than ORM objects: /status must stay fast with many sites.
    """
    d, r, m = Droplet, Router, Modem
    q = (
        select(Site.id, Site.name, Site.updated_at, d.status, d.region, d.size, d.public_ipv4,
               d.price_monthly, r.host, r.openwrt_release, r.last_push_at, m.protocol, m.apn,
               m.model)
        .outerjoin(d, d.site_id == Site.id)
        .outerjoin(r, r.site_id == Site.id)
        .outerjoin(m, m.site_id == Site.id)
        .order_by(Site.name)
    )
    if name is not None:
        q = q.where(Site.name == name)
    async with sessions() as s:
        rows = (await s.execute(q)).all()
        if name is not None and not rows:
            raise NotFound(f"There is no site named {name!r}. {action('site list')} shows them.")
        ids = [row[0] for row in rows]
        cameras: dict[int, list[str]] = {}
        cams = await s.execute(
            select(Camera.site_id, Camera.name).where(Camera.site_id.in_(ids))
            .order_by(Camera.name)
        )
        for site_id, cam in cams.all():
            cameras.setdefault(site_id, []).append(cam)
        peer_counts = await s.execute(
            select(VpnPeer.site_id, func.count()).where(VpnPeer.site_id.in_(ids))
            .group_by(VpnPeer.site_id)
        )
        peers: dict[int, int] = {site_id: n for site_id, n in peer_counts.all()}
        latest = (
            select(func.max(Operation.id)).where(Operation.site_id.in_(ids))
            .group_by(Operation.site_id)
        )
        op_rows = await s.execute(
            select(Operation.site_id, Operation.id, Operation.kind, Operation.state,
                   Operation.message, Operation.finished_at)
            .where(Operation.id.in_(latest))
        )
        ops = {
            site_id: LastOperation(op_id, kind, OpState(state).value, message, _iso(finished))
            for site_id, op_id, kind, state, message, finished in op_rows.all()
        }
        counts = await s.execute(
            select(Incident.site_id, func.count())
            .where(Incident.site_id.in_(ids), Incident.ended_at.is_(None))
            .group_by(Incident.site_id)
        )
        incidents: dict[int, int] = {site_id: n for site_id, n in counts.all()}
    return [
        SiteStatus(
            name=row[1],
            droplet=None if row[3] is None else {
                "status": row[3], "region": row[4], "size": row[5], "public_ipv4": row[6],
                "price_monthly": row[7],
            },
            router={"host": row[8], "openwrt_release": row[9], "last_push_at": _iso(row[10])},
            modem={"protocol": row[11], "apn": row[12], "model": row[13]},
            cameras=cameras.get(row[0], []),
            peers=peers.get(row[0], 0),
            open_incidents=incidents.get(row[0], 0),
            last_operation=ops.get(row[0]),
            updated_at=_iso(row[2]) or "",
        )
        for row in rows
    ]


async def list_site_names(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as s:
        return list((await s.execute(select(Site.name).order_by(Site.name))).scalars())


async def delete_site(sessions: async_sessionmaker[AsyncSession], name: str) -> None:
    """Remove a site and everything the database holds of it (rows cascade)."""
    async with sessions.begin() as s:
        result = await s.execute(delete(Site).where(Site.name == name))
        if not getattr(result, "rowcount", 0):
            raise NotFound(f"There is no site named {name!r}.")
