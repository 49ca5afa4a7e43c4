"""Sweeps over the real database: judging in dependency order, incidents, the outbox, mutes,
restarts, leases. The network is replaced by a scripted prober (what each part answers);
the sweeper, the state machine, the store and the outbox under test are the real ones."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from bot.core import Core
from bot.db.models import (
    AlertOutbox,
    ComponentHealth,
    Droplet,
    HealthHour,
    Incident,
    Router,
    Site,
    SiteSweep,
)
from bot.db.types import utcnow
from bot.health import store
from bot.health.config import HealthConfig
from bot.health.judge import Known, judge
from bot.health.machine import Machine, Thresholds
from bot.health.model import Probe, State
from bot.health.sweep import Sweeper
from bot.health.view import HealthView
from bot.leases import Owner
from bot.settings import Settings
from bot.site import parse_site

FIGURES: dict[str, dict[str, float | str]] = {
    "droplet": {"do_status": "active", "ssh_ms": 40.0},
    "tunnel": {"handshake_age": 35.0, "rx_bytes": 1000.0, "tx_bytes": 2000.0},
    "router": {"uptime": 3 * 86400.0, "load1": 0.1},
    "modem": {"rsrp": -112.0, "operator": "Airtel", "network_type": "LTE"},
    "camera:gate": {"model": "DS-2CD1321-I"},
}


def probes(ok: Mapping[str, bool | None], figures: Mapping[str, Mapping[str, float | str]]
           = FIGURES) -> list[Probe]:
    return [Probe(c, good, "fine" if good else "not checked" if good is None else "no answer",
                  figures.get(c, {}) if good else {}) for c, good in ok.items()]


ALL_OK = {"droplet": True, "tunnel": True, "router": True, "modem": True, "camera:gate": True}
# As the real prober answers: the parts behind a failed tunnel are not checked (no information).
TUNNEL_DOWN: dict[str, bool | None] = {"droplet": True, "tunnel": False, "router": None,
                                       "modem": None, "camera:gate": None}


class Scripted:
    """Answers per site from a mutable table: what the network would say now."""

    def __init__(self) -> None:
        self.now: dict[str, Mapping[str, bool | None]] = {}
        self.calls: list[str] = []

    async def probe(self, site: str) -> list[Probe]:
        self.calls.append(site)
        return probes(self.now.get(site, ALL_OK))


class Clock:
    def __init__(self) -> None:
        self.at = utcnow().replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.at

    def tick(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


async def add_site(core: Core, name: str, *, camera: bool = True, pushed: bool = True) -> int:
    spec = parse_site({
        "name": name, "timezone": "Asia/Kolkata",
        "router": {"host": "192.168.1.1", "lan_subnet": "192.168.1.0/24",
                   "password_env": "ROUTER_PW"},
        "cameras": [{"name": "gate", "host": "192.168.1.64"}] if camera else [],
    }, check_files=False)
    async with core.sessions.begin() as s:
        site = Site(name=name, spec=spec.to_json())
        s.add(site)
        await s.flush()
        s.add(Droplet(site_id=site.id, do_id=1, name=f"camreach-{name}", region="blr1",
                      size="s-1vcpu-512mb-10gb", image="ubuntu-24-04-x64",
                      public_ipv4="203.0.113.5", status="active"))
        s.add(Router(site_id=site.id, host="192.168.1.1",
                     last_push_at=utcnow() if pushed else None))
        return site.id


def sweeper(core: Core, prober: Scripted, clock: Clock, **cfg: float) -> Sweeper:
    config = HealthConfig(**{"check_interval": 60, "retry_interval": 15, **cfg})  # type: ignore[arg-type]
    return Sweeper(core.sessions, prober, config, clock=clock, lease_seconds=30)


async def sweep_until_idle(sw: Sweeper, clock: Clock, seconds: float) -> None:
    """Advance the clock in 5 s steps for ``seconds``, sweeping what is due at each."""
    for _ in range(int(seconds // 5)):
        clock.tick(5)
        await sw.sweep_due()


async def outbox(core: Core) -> list[tuple[str, str, str]]:
    async with core.sessions() as s:
        rows = (await s.execute(select(AlertOutbox).order_by(AlertOutbox.id))).scalars().all()
    return [(r.kind, r.component, r.text) for r in rows]


# -- judging (pure) --------------------------------------------------------------------------
def test_dependents_of_a_down_part_stay_quiet_and_the_alert_names_the_root() -> None:
    now = utcnow()
    known: dict[str, Known] = {c: Known(Machine(State.OK, now), FIGURES.get(c, {}))
                               for c in ALL_OK}
    th = Thresholds(alert_after=3, recover_after=2)
    kinds: list[tuple[str, str]] = []
    for i in range(3):
        verdict = judge("farmhouse", probes(TUNNEL_DOWN), known, now + timedelta(seconds=i),
                        th, muted=False, zone="UTC")
        known = {j.component: Known(j.machine, j.figures) for j in verdict.parts}
        kinds += [(a.kind, a.component) for a in verdict.alerts]
    assert kinds == [("down", "tunnel")]
    assert known["router"].machine.state == State.OK  # not checked: its own state stays
    assert known["modem"].figures["rsrp"] == -112.0  # the last figures are kept for the cause
    text = judge("farmhouse", probes(TUNNEL_DOWN), {
        c: Known(Machine(State.FAILING if c == "tunnel" else State.OK, now, fails=2), k.figures)
        for c, k in known.items()}, now, th, muted=False, zone="UTC").alerts[0].text
    assert "tunnel down since" in text and "RSRP -112 dBm (poor)" in text and "up 3 d" in text


def test_a_real_failure_behind_a_failing_part_sends_nothing_of_its_own() -> None:
    now = utcnow()
    known = {c: Known(Machine(State.OK, now), FIGURES.get(c, {})) for c in ALL_OK}
    both = {**ALL_OK, "tunnel": False, "router": False}
    kinds: list[tuple[str, str]] = []
    for i in range(5):
        verdict = judge("farm", probes(both), known, now + timedelta(seconds=15 * i),
                        Thresholds(), muted=False)
        known = {j.component: Known(j.machine, j.figures) for j in verdict.parts}
        kinds += [(a.kind, a.component) for a in verdict.alerts]
    assert kinds == [("down", "tunnel")]
    assert known["router"].machine.state == State.DOWN and not known["router"].machine.alerted


def test_a_part_without_information_is_not_left_down_by_its_parents_outage() -> None:
    """A camera whose refused password is never sent again says nothing (None) in every
    sweep: the tunnel's outage must not leave it down, nor make its next failure page."""
    def sweep(known: dict[str, Known], ok: bool, at: datetime) -> dict[str, Known]:
        result = judge("farm", probes({"droplet": True, "tunnel": ok, "camera:gate": None}),
                       known, at, Thresholds(), muted=False)
        return {j.component: Known(j.machine, j.figures) for j in result.parts}

    now, known = utcnow(), {}
    known = sweep(known, True, now)
    for i in range(1, 4):
        known = sweep(known, False, now + timedelta(seconds=15 * i))
    for i in range(4, 8):
        known = sweep(known, True, now + timedelta(seconds=15 * i))
    assert known["camera:gate"].machine.state == State.UNKNOWN
    later = judge("farm", probes({"droplet": True, "tunnel": True, "camera:gate": False}),
                  known, now + timedelta(days=2), Thresholds(), muted=False)
    assert later.alerts == []  # one failure is not an outage


def test_a_router_reboot_is_one_message_without_an_outage() -> None:
    now = utcnow()
    known = {c: Known(Machine(State.OK, now), FIGURES.get(c, {})) for c in ALL_OK}
    rebooted = {**FIGURES, "router": {"uptime": 120.0}}
    verdict = judge("farm", probes(ALL_OK, rebooted), known, now, Thresholds(), muted=False)
    assert [(a.kind, a.component) for a in verdict.alerts] == [("reboot", "router")]
    assert all(j.machine.state == State.OK for j in verdict.parts)
    again = judge("farm", probes(ALL_OK, rebooted),
                  {j.component: Known(j.machine, j.figures) for j in verdict.parts},
                  now + timedelta(seconds=60), Thresholds(), muted=False)
    assert again.alerts == []


# -- sweeps on the database ------------------------------------------------------------------
async def test_one_alert_per_outage_and_one_recovery_with_its_length(core: Core) -> None:
    await add_site(core, "farm")
    prober, clock = Scripted(), Clock()
    sw = sweeper(core, prober, clock)
    await sweep_until_idle(sw, clock, 130)  # first sweeps: all ok
    prober.now["farm"] = TUNNEL_DOWN
    await sweep_until_idle(sw, clock, 600)
    prober.now["farm"] = ALL_OK
    await sweep_until_idle(sw, clock, 300)
    sent = await outbox(core)
    assert [(k, c) for k, c, _ in sent] == [("down", "tunnel"), ("recovered", "tunnel")]
    assert "farm: tunnel down since" in sent[0][1 + 1]
    async with core.sessions() as s:
        incidents = (await s.execute(select(Incident).order_by(Incident.id))).scalars().all()
        hours = (await s.execute(select(func.sum(HealthHour.checks))
                                 .where(HealthHour.component == "tunnel"))).scalar()
    by_part = {i.target: i for i in incidents}
    assert set(by_part) == {"tunnel"}  # the parts behind it were not checked, not down
    assert all(i.ended_at is not None for i in incidents)
    tunnel = by_part["tunnel"]
    assert tunnel.alerted and tunnel.recovery_alerted and tunnel.alerts_sent == 2
    assert tunnel.ended_at is not None
    length = tunnel.ended_at - tunnel.started_at
    assert timedelta(minutes=9) < length < timedelta(minutes=12)
    assert "after" in sent[1][2]
    assert hours is not None and hours >= 20  # hourly aggregates, not every probe


async def test_one_lost_probe_never_pages_and_confirmation_is_quick(core: Core) -> None:
    await add_site(core, "farm", camera=False)
    prober, clock = Scripted(), Clock()
    sw = sweeper(core, prober, clock)
    await sweep_until_idle(sw, clock, 70)
    prober.now["farm"] = {**ALL_OK, "camera:gate": None, "modem": False}
    await sweep_until_idle(sw, clock, 5)  # at most one failed check of the modem...
    calls = len(prober.calls)
    prober.now["farm"] = ALL_OK
    await sweep_until_idle(sw, clock, 300)
    assert await outbox(core) == []
    # ...and while failing, the site was checked again at the retry interval, not 60 s later.
    prober.now["farm"] = {**ALL_OK, "modem": False}
    began = clock.at
    while not await outbox(core):
        await sweep_until_idle(sw, clock, 5)
        assert clock.at - began < timedelta(minutes=5)
    assert clock.at - began <= timedelta(seconds=60 + 2 * 15 + 10)
    assert len(prober.calls) > calls


async def test_a_restart_mid_outage_sends_no_second_alert_and_the_recovery_once(
        core: Core) -> None:
    await add_site(core, "farm")
    prober, clock = Scripted(), Clock()
    first = sweeper(core, prober, clock)
    await sweep_until_idle(first, clock, 70)
    prober.now["farm"] = TUNNEL_DOWN
    await sweep_until_idle(first, clock, 200)
    await first.close()
    assert [k for k, _, _ in await outbox(core)] == ["down"]
    # A new process: new owner, nothing in memory; the machines come from the database.
    second = sweeper(core, prober, clock, remind_every=0)
    await sweep_until_idle(second, clock, 300)
    prober.now["farm"] = ALL_OK
    await sweep_until_idle(second, clock, 300)
    assert [(k, c) for k, c, _ in await outbox(core)] == [("down", "tunnel"),
                                                          ("recovered", "tunnel")]


async def test_muted_alerts_are_recorded_not_sent_and_shown(core: Core) -> None:
    await add_site(core, "farm")
    prober, clock = Scripted(), Clock()
    sw = sweeper(core, prober, clock)
    await sweep_until_idle(sw, clock, 70)
    await core.health_service.mute("farm", timedelta(hours=2))
    prober.now["farm"] = TUNNEL_DOWN
    await sweep_until_idle(sw, clock, 200)
    assert await outbox(core) == []
    (health,) = await core.health(["farm"])
    assert health.components["tunnel"].state == "muted"
    assert health.muted_until is not None
    assert health.incident is not None and health.incident.component == "tunnel"
    async with core.sessions() as s:
        inc = (await s.execute(select(Incident).where(Incident.target == "tunnel"))).scalar_one()
    assert inc.alerted and inc.muted and inc.alerts_sent == 0
    await core.health_service.unmute("farm")
    await sweep_until_idle(sw, clock, 120)
    assert await outbox(core) == []  # unmuting does not send the old alert
    (health,) = await core.health(["farm"])
    assert health.components["tunnel"].state == "down"


async def test_a_site_not_yet_pushed_pages_only_about_its_droplet(core: Core) -> None:
    await add_site(core, "new", pushed=False)
    prober, clock = Scripted(), Clock()
    prober.now["new"] = TUNNEL_DOWN
    sw = sweeper(core, prober, clock)
    await sweep_until_idle(sw, clock, 400)
    assert await outbox(core) == []
    (health,) = await core.health(["new"])
    assert health.components["droplet"].state == "ok"
    assert health.components["tunnel"].state == "unknown"


async def test_the_outbox_hands_each_alert_to_one_sender_and_requeues_failures(
        core: Core) -> None:
    site_id = await add_site(core, "farm")
    async with core.sessions.begin() as s:
        s.add_all([AlertOutbox(site_id=site_id, kind="down", component="tunnel", text=t,
                               has_camera=True) for t in ("a", "b")])
    first = await core.pending_alerts()
    assert [a.text for a in first] == ["a", "b"]
    assert await core.pending_alerts() == []  # claimed: a second sender gets nothing
    await core.alert_done(first[0], sent=True)
    await core.alert_done(first[1], sent=False)  # Telegram was unreachable
    again = await core.pending_alerts()
    assert [a.text for a in again] == ["b"]
    assert again[0].has_camera
    assert b'camreach_alerts_sent_total{kind="down",site="farm"} 1.0' in core.metrics.render()


async def test_a_lease_held_by_another_process_is_not_swept(core: Core) -> None:
    site_id = await add_site(core, "farm")
    prober, clock = Scripted(), Clock()
    sw = sweeper(core, prober, clock)
    other = Owner("elsewhere", 1, "feedfacefeedface")
    await store.ensure_schedules(core.sessions, clock(), jitter=0)
    assert [c.name for c in await store.claim_due(core.sessions, other, clock(), limit=10,
                                                  lease=30)] == ["farm"]
    clock.tick(5)
    assert await sw.sweep_due() == []
    assert prober.calls == []
    clock.tick(30)  # the other process's lease ran out: it died
    assert [r.site for r in await sw.sweep_due()] == ["farm"]
    async with core.sessions() as s:
        row = await s.get(SiteSweep, site_id)
    assert row is not None and row.sweeps == 1 and row.owner_token is None


async def test_status_follows_what_another_process_writes(core: Core, settings: Settings
                                                          ) -> None:
    """/status answers from a view this process keeps; what a worker (here a second Core on
    the same database, its own connections) stores, mutes, edits or removes shows in it."""
    farm, shop = await add_site(core, "farm"), await add_site(core, "shop", camera=False)
    assert [h.site for h in await core.health(None)] == ["farm", "shop"]
    assert {v.state for v in (await core.health(["farm"]))[0].components.values()} == {"unknown"}
    worker = await Core.open(settings)
    try:
        prober, clock = Scripted(), Clock()
        sw = Sweeper(worker.sessions, prober, HealthConfig(check_interval=60, retry_interval=15),
                     clock=clock, lease_seconds=30)
        await sweep_until_idle(sw, clock, 70)
        farm_health, shop_health = await core.health(None)
        assert {c: v.state for c, v in farm_health.components.items()} == {
            "droplet": "ok", "tunnel": "ok", "router": "ok", "modem": "ok", "camera:gate": "ok"}
        assert farm_health.components["modem"].figures["rsrp"] == -112.0
        async with worker.sessions() as s:
            last = (await s.execute(select(SiteSweep.last_swept_at)
                                    .where(SiteSweep.site_id == shop))).scalar_one()
        assert last is not None and shop_health.components["tunnel"].checked_at == last

        await worker.health_service.mute("farm", timedelta(hours=1))
        prober.now["farm"] = TUNNEL_DOWN
        await sweep_until_idle(sw, clock, 200)
        (farm_health,) = await core.health(["farm"])
        assert farm_health.components["tunnel"].state == "muted"
        assert farm_health.muted_until is not None
        assert farm_health.incident is not None and farm_health.incident.component == "tunnel"
        await worker.health_service.unmute("farm")
        (farm_health,) = await core.health(["farm"])
        assert farm_health.components["tunnel"].state == "down" and not farm_health.muted_until

        async with worker.sessions.begin() as s:  # a camera added to the site elsewhere
            site = await s.get(Site, farm)
            assert site is not None
            site.spec = {**site.spec, "cameras": [*site.spec["cameras"],
                                                  {"name": "yard", "host": "192.168.1.65"}]}
        (farm_health,) = await core.health(["farm"])
        assert farm_health.components["camera:yard"].state == "unknown"
        assert farm_health.components["tunnel"].state == "down"

        async with worker.sessions.begin() as s:  # and one site forgotten
            site = await s.get(Site, shop)
            assert site is not None
            await s.delete(site)
        assert [h.site for h in await core.health(None)] == ["farm"]
    finally:
        await worker.close()


async def test_this_processs_sweeps_reach_its_view_without_a_read(core: Core) -> None:
    """The bot's own sweeper hands what it committed to the bot's view: /status during its
    sweeps reads no part rows again, and shows exactly what a fresh read would."""
    await add_site(core, "farm")
    service, prober = core.health_service, Scripted()
    service.prober = prober
    assert [h.site for h in await service.sites(None)] == ["farm"]
    view = service.view
    read = view.parts_read
    await service.sweeper().sweep_now([await service_id(core, "farm")])
    (pushed,) = view.sites(["farm"], utcnow())  # no refresh yet: the sweeper's own rows
    assert {v.state for v in pushed.components.values()} == {"ok"}
    await service.sites(None)
    assert view.parts_read == read  # nothing to read again
    fresh = HealthView(core.sessions)
    await fresh.refresh()
    assert fresh.sites(["farm"], utcnow()) == [pushed]


async def service_id(core: Core, name: str) -> int:
    async with core.sessions() as s:
        return (await s.execute(select(Site.id).where(Site.name == name))).scalar_one()


async def test_a_site_whose_results_cannot_be_stored_loses_only_its_own(core: Core) -> None:
    """Sites finished together are stored in one transaction; one that breaks it (here a
    figure no JSON column takes) is retried on its own later, the others are stored now."""
    farm, shop = await add_site(core, "farm"), await add_site(core, "shop")

    class Broken(Scripted):
        async def probe(self, site: str) -> list[Probe]:
            got = await super().probe(site)
            if site != "shop":
                return got
            return [Probe(p.component, p.ok, p.summary, {"odd": object()})  # type: ignore[dict-item]
                    for p in got]

    clock = Clock()
    sw = sweeper(core, Broken(), clock)
    results = await sw.sweep_now([farm, shop])
    assert [r.site for r in results] == ["farm"]
    async with core.sessions() as s:
        stored = sorted((await s.execute(select(ComponentHealth.site_id).distinct())
                         ).scalars().all())
        rows = {r.site_id: r for r in (await s.execute(select(SiteSweep))).scalars().all()}
    assert stored == [farm]
    assert rows[farm].sweeps == 1 and rows[shop].sweeps == 0
    assert rows[shop].owner_token is None  # released, due again after the retry interval
    assert rows[shop].next_due_at > clock()


@pytest.mark.parametrize("text, seconds", [("30m", 1800), ("2h", 7200), ("1d", 86400),
                                           ("3", 3 * 3600), ("1w", 7 * 86400)])
def test_mute_durations(text: str, seconds: int) -> None:
    from bot.health.service import parse_duration

    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "soon", "0m", "90d", "-2h", "2 hours"])
def test_bad_mute_durations_say_what_to_give(text: str) -> None:
    from bot.errors import ValidationFailed
    from bot.health.service import parse_duration

    with pytest.raises(ValidationFailed, match=r"30m|1 minute"):
        parse_duration(text)


async def test_camreach_worker_serves_metrics_and_stops_on_sigterm(
        cli_env: dict[str, str], core: Core) -> None:
    """The real `camreach worker` process: it sweeps (a site it cannot reach shows up as
    failing in the database and in /metrics) and stops cleanly on SIGTERM."""
    import asyncio
    import os
    import shutil
    import signal
    import socket
    import sys
    from pathlib import Path

    import httpx

    await add_site(core, "farm", camera=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exe = shutil.which("camreach", path=str(Path(sys.executable).parent)) or "camreach"
    env = {**cli_env, "CAMREACH_METRICS_PORT": str(port), "CAMREACH_CHECK_INTERVAL": "10"}
    proc = await asyncio.create_subprocess_exec(exe, "worker", env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        body = ""
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    body = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
                except httpx.TransportError:
                    body = ""
                if 'camreach_component_up{component="droplet",site="farm"}' in body:
                    break
                await asyncio.sleep(0.1)
        assert 'camreach_component_up{component="droplet",site="farm"} 0.0' in body
        (health,) = await core.health(["farm"])
        assert health.components["droplet"].state == "failing"
        assert "not checked" in health.components["tunnel"].summary  # behind it
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
