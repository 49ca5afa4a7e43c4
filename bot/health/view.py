"""The stored health of every site, kept in memory and followed incrementally: /status answers
from here at once, and with hundreds of sites it must not read and decode every part's row on
each request.

A refresh finds what changed with three narrow queries: every sweep that stores a site's parts
counts itself in ``site_sweeps.sweeps`` in the same transaction, a site's spec change moves its
``updated_at``, and mutes and open incidents are few. Only the parts of sites whose count moved
are read again. Workers in other processes write the same tables, so the view follows them too:
what it shows is always the database's, read a moment ago.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import String, select, type_coerce

from bot.db.models import ComponentHealth, Incident, Site, SiteSweep
from bot.health.model import (
    MUTED,
    PARTS,
    ComponentView,
    IncidentView,
    SiteHealth,
    State,
    camera_component,
    ordered,
)
from bot.health.store import Sessions

_CHUNK = 500  # ids in one IN (...): well inside both databases' limits on parameters


@dataclass
class _Site:
    name: str
    updated_at: object  # as the database holds it: only compared
    components: list[str]  # in dependency order: the parts and the spec's cameras
    timezone: str | None
    sweeps: int | None = None  # the count the views below were read at (None: not yet)
    views: dict[str, ComponentView] = field(default_factory=dict)
    # What sites() last answered for it, and the mute and incident it was built with: most
    # requests find nothing changed and hand the same object out again.
    built: SiteHealth | None = None
    built_with: tuple[datetime | None, IncidentView | None] | None = None


def _unknown(component: str) -> ComponentView:
    return ComponentView(component, State.UNKNOWN, None, None, "not checked yet")


def _muted_view(view: ComponentView) -> ComponentView:
    if view.state not in (State.FAILING, State.DOWN):
        return view
    return ComponentView(view.component, MUTED, view.since, view.checked_at, view.summary,
                         view.figures)


class HealthView:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self._sites: dict[int, _Site] = {}
        self._mutes: dict[int, datetime] = {}
        self._incidents: dict[int, IncidentView] = {}
        self._lock = asyncio.Lock()
        self._started = 0  # refreshes begun
        self._held = 0  # the one whose results the view holds
        self.parts_read = 0  # sites whose part rows a refresh had to read (for tests)

    async def refresh(self) -> None:
        """Bring the view up to what the database holds now. Callers that arrive while a
        refresh runs wait for the next one to begin after them (theirs must see what was
        committed before they asked), and share it."""
        arrived = self._started
        async with self._lock:
            if self._held > arrived:
                return
            self._started += 1
            mine = self._started
            await self._load()
            self._held = mine

    async def _load(self) -> None:
        async with self._sessions() as s:
            # SQLite reads all of this in one snapshot; on PostgreSQL a part row read after its
            # count may be newer than the count, and is then read again next time: harmless.
            # updated_at as stored (text on SQLite): compared, never read, so not parsed.
            sites = (await s.execute(
                select(Site.id, Site.name, type_coerce(Site.updated_at, String)
                       .label("updated_at")))).all()
            sweeps = {site_id: (n, muted) for site_id, n, muted in (await s.execute(
                select(SiteSweep.site_id, SiteSweep.sweeps, SiteSweep.muted_until))).all()}
            respec = [row.id for row in sites if self._stale_spec(row)]
            specs: dict[int, Any] = {}
            for chunk in _chunks(respec):
                specs.update((await s.execute(
                    select(Site.id, Site.spec).where(Site.id.in_(chunk)))).all())
            for row in sites:
                if row.id in specs:
                    self._set_spec(row, specs[row.id] or {})
            present = {row.id for row in sites}
            for gone in set(self._sites) - present:
                del self._sites[gone]
            moved = [site_id for site_id in present
                     if self._sites[site_id].sweeps != sweeps.get(site_id, (None, None))[0]]
            rows: dict[int, dict[str, Mapping[Any, Any]]] = {site_id: {} for site_id in moved}
            ch = ComponentHealth
            for chunk in _chunks(moved):
                for part in (await s.execute(
                        select(ch.site_id, ch.component, ch.state, ch.since, ch.checked_at,
                               ch.summary, ch.figures).where(ch.site_id.in_(chunk))
                )).mappings().all():
                    rows[part["site_id"]][part["component"]] = part
            inc = Incident
            open_incidents = (await s.execute(
                select(inc.site_id, inc.target, inc.started_at, inc.ended_at, inc.cause,
                       inc.alerts_sent)
                .where(inc.ended_at.is_(None)).order_by(inc.started_at))).all()
        self.parts_read += len(moved)
        for site_id in moved:
            self._set_parts(site_id, sweeps.get(site_id, (None, None))[0], rows[site_id])
        self._mutes = {site_id: muted for site_id, (_, muted) in sweeps.items()
                       if muted is not None}
        self._incidents = {}
        for opened in open_incidents:  # the oldest open one: the root's
            self._incidents.setdefault(opened.site_id, IncidentView(
                opened.target, opened.started_at, opened.ended_at, opened.cause,
                opened.alerts_sent))

    def _stale_spec(self, row: Any) -> bool:
        known = self._sites.get(row.id)
        return known is None or (known.name, known.updated_at) != (row.name, row.updated_at)

    def _set_spec(self, row: Any, spec: dict[str, Any]) -> None:
        # New or edited (its cameras may have changed): its parts are read again too.
        cams = [camera_component(c["name"]) for c in spec.get("cameras", [])]
        self._sites[row.id] = _Site(row.name, row.updated_at, ordered([*PARTS, *cams]),
                                    spec.get("timezone"))

    def _set_parts(self, site_id: int, sweeps: int | None,
                   rows: Mapping[str, Mapping[Any, Any]]) -> None:
        """A site's parts from component_health rows (as read, or as the sweeper wrote them)."""
        site = self._sites[site_id]
        site.sweeps, site.built = sweeps, None
        site.views = {}
        for comp in site.components:
            row = rows.get(comp)
            site.views[comp] = _unknown(comp) if row is None else ComponentView(
                comp, row["state"], row["since"], row["checked_at"], row["summary"],
                row["figures"] or {})

    def put(self, written: dict[int, tuple[int, list[dict[str, Any]]]]) -> None:
        """What this process's sweeper just committed (see ``Sweeper.on_stored``): taken as
        the next refresh would read it, so that refresh has nothing to read again. A refresh
        running meanwhile may lay older rows over these; their count is older too, so the
        refresh after reads them again."""
        for site_id, (sweeps, rows) in written.items():
            if site_id in self._sites:
                self._set_parts(site_id, sweeps, {r["component"]: r for r in rows})

    def sites(self, names: Sequence[str] | None, now: datetime) -> list[SiteHealth]:
        """The sites (all when ``names`` is None) as of the last refresh, by name."""
        wanted = None if names is None else set(names)
        out: list[SiteHealth] = []
        for site_id, site in self._sites.items():
            if wanted is not None and site.name not in wanted:
                continue
            until = self._mutes.get(site_id)
            key = (until if until is not None and until > now else None,
                   self._incidents.get(site_id))
            if site.built is None or site.built_with != key:
                site.built, site.built_with = self._build(site, *key), key
            out.append(site.built)
        out.sort(key=lambda h: h.site)
        return out

    @staticmethod
    def _build(site: _Site, muted_until: datetime | None, incident: IncidentView | None
               ) -> SiteHealth:
        views = {c: site.views.get(c) or _unknown(c) for c in site.components}
        if muted_until is not None:
            views = {c: _muted_view(v) for c, v in views.items()}
        return SiteHealth(site=site.name, components=views, muted_until=muted_until,
                          incident=incident, has_camera=len(site.components) > len(PARTS),
                          timezone=site.timezone)


def _chunks(ids: Sequence[int]) -> list[Sequence[int]]:
    return [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
