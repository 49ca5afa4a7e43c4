"""Health sweeps at scale, with simulated sites: only the network is simulated (each site
answers after --delay-ms with realistic figures, tests/health_sim.py); the sweeper, its leases,
the judging and the database writes are the real ones.

(a) one sweep of --sites sites at --concurrency (and at the default 50), each in a fresh
    process and database: wall time, CPU time (time.process_time: every thread, aiosqlite's
    too) and peak resident memory growth (VmHWM over VmRSS before the first sweep, from
    /proc/self/status, the peak reset through /proc/self/clear_refs). A sweep is passes of
    Sweeper.sweep_due() until no site is due; the first sweep creates every part's rows, the
    steady one (every sweep after) updates them and is the one held to the target.
(b) /status while sweeps run: HealthService.sites() (what Core.health() answers from) plus
    rendering with status_overview and split_message, timed over and over, idle, while this
    process sweeps and while a worker process sweeps the same database.
(c) the database after 30 simulated days: the latest rows the sweeper keeps, hourly rows for
    every part of every site (written in bulk as store.add_hours leaves them after an hour of
    one check a minute, day by day, each packed the morning after by the real store.pack_days
    as the prune job does), incidents and a week of sent alerts (the outbox keeps seven days).

Run: .venv/bin/python bench/bench_health.py [--sites 500] [--delay-ms 200] [--concurrency 500]
PostgreSQL is measured too when --pg URL (or CAMREACH_TEST_POSTGRES_URL) is given: a throw-away
database is created there and dropped. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import delete, func, insert, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: E402

from bench.bench_foundation import pct  # noqa: E402
from bot.db.engine import make_engine, upgrade  # noqa: E402
from bot.db.models import AlertOutbox, HealthDay, HealthHour, Incident, Site, SiteSweep  # noqa: E402
from bot.health import store  # noqa: E402
from bot.health.config import HealthConfig  # noqa: E402
from bot.health.model import MODEM, PARTS, ROUTER, TUNNEL, camera_component  # noqa: E402
from bot.health.service import HealthService  # noqa: E402
from bot.health.sweep import Sweeper  # noqa: E402
from bot.render import alerts  # noqa: E402
from bot.render.health_text import status_overview  # noqa: E402
from bot.texts import split_message  # noqa: E402
from tests.health_sim import SimProber, camera_names, seed_sites, sim_probes  # noqa: E402

CAMERAS = camera_names(1)  # five parts a site: droplet, tunnel, router, modem, one camera
COMPONENTS = [*PARTS, *(camera_component(c) for c in CAMERAS)]
DEFAULT_CONCURRENCY = HealthConfig().sweep_concurrency
STATUS_CALLS = 100
DAYS = 30
WALL_TARGET, MEMORY_TARGET_MB, STATUS_TARGET_MS, SIZE_TARGET_MB = 2.0, 50.0, 50.0, 200.0


@dataclass
class Row:
    what: str
    figure: str
    target: str
    ok: bool | None  # None: for information, no target


ROWS: list[Row] = []


def report(what: str, figure: str, target: str = "", ok: bool | None = None) -> None:
    ROWS.append(Row(what, figure, target, ok))
    mark = "" if ok is None else (" ok" if ok else " MISSED")
    print(f"  {what}: {figure}{'; target ' + target if target else ''}{mark}", flush=True)


# -- databases --------------------------------------------------------------------------------
@asynccontextmanager
async def database(kind: str, pg: str | None, tmp: Path) -> AsyncIterator[str]:
    """A fresh, migrated database: a SQLite file, or a new database on the PostgreSQL server."""
    if kind == "sqlite":
        path = tmp / f"health-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite+aiosqlite:///{path}"
        await upgrade(url, announce=False)
        yield url
        return
    import asyncpg  # type: ignore[import-untyped]

    assert pg is not None
    admin = pg.replace("postgresql+asyncpg://", "postgresql://")
    name = f"camreach_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = f"postgresql+asyncpg://{admin.split('://', 1)[1].rsplit('/', 1)[0]}/{name}"
    try:
        await upgrade(url, announce=False)
        yield url
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[store.Sessions]:
    engine = make_engine(url)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


def proc_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS


# -- (a) one sweep ------------------------------------------------------------------------------
class Failures(logging.Handler):
    """Counts the sweeps that failed (the sweeper logs each and retries the site later)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.kinds: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.kinds[record.exc_info[0].__name__ if record.exc_info and record.exc_info[0]
                   else record.getMessage()] += 1


async def sweep_all(sweeper: Sweeper, sessions: store.Sessions, ids: list[int]) -> int:
    """Make every site due, then sweep passes (each leases up to the concurrency) until no
    site is due; returns how many were stored (a failed site is due again only later)."""
    await store.request_sweep(sessions, ids, datetime.now(UTC))
    swept = 0
    while results := await sweeper.sweep_due():
        swept += sum(r.verdict is not None for r in results)
    return swept


async def sweep_child(url: str, sites: int, delay: float, concurrency: int) -> dict[str, Any]:
    """In a process of its own, so that its memory is its own: the first sweep (it creates
    every part's row) and a steady one (every sweep after)."""
    failures = Failures()
    logging.getLogger("bot.health.sweep").addHandler(failures)
    out: dict[str, Any] = {}
    async with opened(url) as sessions:
        ids = await seed_sites(sessions, sites, cameras=CAMERAS)
        await store.ensure_schedules(sessions, datetime.now(UTC), jitter=0)
        sweeper = Sweeper(sessions, SimProber(delay, cameras=CAMERAS),
                          HealthConfig(sweep_concurrency=concurrency), lease_seconds=30)
        rss0 = proc_kb("VmRSS")
        reset_peak_rss()
        for name in ("first", "steady"):
            t0, c0 = time.perf_counter(), time.process_time()
            swept = await sweep_all(sweeper, sessions, ids)
            out[name] = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                         "swept": swept}
        out["rss_growth_mb"] = (proc_kb("VmHWM") - rss0) / 1024
        await sweeper.close()
    out["failures"] = dict(failures.kinds)
    return out


async def measure_sweep(url: str, label: str, sites: int, delay: float, concurrency: int,
                        targeted: bool) -> None:
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--child-sweep", url, "--sites",
        str(sites), "--delay-ms", str(delay * 1000), "--concurrency", str(concurrency),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    stdout, _ = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the sweep child exited {child.returncode}")
    got = json.loads(stdout.decode().strip().splitlines()[-1])
    first, steady = got["first"], got["steady"]
    lost = sites - min(first["swept"], steady["swept"])
    failed = ", ".join(f"{n} {k}" for k, n in got["failures"].items()) or "none"
    report(f"{label}: one sweep of {sites} sites answering in {delay * 1000:g} ms, "
           f"concurrency {concurrency} (floor {sites * delay / concurrency:.1f} s)",
           f"wall {steady['wall']:.2f} s, CPU {steady['cpu']:.2f} s "
           f"({steady['cpu'] / sites * 1000:.0f} ms a site); first sweep {first['wall']:.2f} s, "
           f"CPU {first['cpu']:.2f} s; failed sweeps: {failed}",
           f"wall < {WALL_TARGET:g} s, none failed" if targeted else "none failed",
           (steady["wall"] < WALL_TARGET or not targeted) and lost == 0)
    report(f"{label}: peak resident memory growth over both sweeps, concurrency {concurrency}",
           f"+{got['rss_growth_mb']:.1f} MB (VmHWM - VmRSS before)",
           f"< {MEMORY_TARGET_MB:g} MB", got["rss_growth_mb"] < MEMORY_TARGET_MB)


# -- (b) /status while sweeping -------------------------------------------------------------
async def status_times(service: HealthService, sites: int, calls: int) -> list[float]:
    out: list[float] = []
    for _ in range(calls):
        t0 = time.perf_counter()
        health = await service.sites(None)
        parts = split_message(status_overview(health, datetime.now(UTC)))
        out.append(time.perf_counter() - t0)
        assert len(health) == sites and parts
        await asyncio.sleep(0.02)  # requests a few times a second, not a tight loop
    return out


async def total_sweeps(sessions: store.Sessions) -> int:
    async with sessions() as s:
        return int((await s.execute(select(func.sum(SiteSweep.sweeps)))).scalar() or 0)


@asynccontextmanager
async def bot_sweeping(service: HealthService, sessions: store.Sessions, ids: list[int],
                       delay: float, concurrency: int) -> AsyncIterator[None]:
    """The bot's own sweeper (CAMREACH_SWEEP_IN_BOT): Sweeper.run, poll 1 s, at the shortest
    interval allowed (10 s), every site due at once to begin with; what it stores goes to the
    bot's health view too, as HealthService.sweeper() wires it."""
    sweeper = Sweeper(sessions, SimProber(delay, cameras=CAMERAS),
                      HealthConfig(check_interval=10, sweep_concurrency=concurrency),
                      lease_seconds=30, on_stored=service.view.put)
    await store.request_sweep(sessions, ids, datetime.now(UTC))
    stop = asyncio.Event()
    running = asyncio.create_task(sweeper.run(stop))
    try:
        yield
    finally:
        stop.set()
        await running


@asynccontextmanager
async def sweeping_passes(service: HealthService, sessions: store.Sessions, ids: list[int],
                          delay: float, concurrency: int) -> AsyncIterator[None]:
    """Sweeps of every site, one after the other, in this process (wired as the bot's)."""
    sweeper = Sweeper(sessions, SimProber(delay, cameras=CAMERAS),
                      HealthConfig(sweep_concurrency=concurrency), lease_seconds=30,
                      on_stored=service.view.put)
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            await sweep_all(sweeper, sessions, ids)
    running = asyncio.create_task(loop())
    await asyncio.sleep(0.1)  # the first pass is under way
    try:
        yield
    finally:
        stop.set()
        await running
        await sweeper.close()


@asynccontextmanager
async def worker_sweeping(url: str, sessions: store.Sessions, sites: int, delay: float,
                          concurrency: int) -> AsyncIterator[None]:
    """A sim worker process sweeping all the time: interval 1 s (the sim worker takes one
    below the 10 s minimum), poll 0.2 s."""
    with tempfile.TemporaryDirectory() as tmp:
        err = Path(tmp) / "worker.err"
        with err.open("wb") as stderr:
            worker = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tests.health_sim", "worker", "--db", url,
                "--prober-delay", str(delay), "--interval", "1", "--poll", "0.2",
                "--concurrency", str(concurrency), "--cameras", str(len(CAMERAS)),
                "--lease", "30", cwd=ROOT, stderr=stderr)
        try:
            before = await total_sweeps(sessions)
            while await total_sweeps(sessions) < before + sites // 2:  # it is sweeping
                if worker.returncode is not None:
                    raise RuntimeError(f"the worker died: {err.read_text()[-2000:]}")
                await asyncio.sleep(0.1)
            yield
        finally:
            worker.terminate()
            await worker.wait()
            failed = err.read_text().count("ERROR:")
            if failed:
                print(f"  (the worker logged {failed} failed sweeps)", flush=True)


async def measure_status(url: str, label: str, sites: int, delay: float, concurrency: int,
                         calls: int) -> None:
    async with opened(url) as sessions:
        ids = await seed_sites(sessions, sites, cameras=CAMERAS)
        await store.ensure_schedules(sessions, datetime.now(UTC), jitter=0)
        prober = SimProber(delay, cameras=CAMERAS)
        service = HealthService(sessions, HealthConfig(sweep_concurrency=sites), prober,
                                lease_seconds=30)
        await sweep_all(service.sweeper(), sessions, ids)  # every part has a state to show
        await service.sweeper().close()
        # (name, load, held to the target). The last one is a stress test, not the bot's
        # life: a new pass of all 500 sites the moment one ends, some 1500 sweeps a second
        # in the bot's own loop, where 500 sites at the default interval make 8.
        scenarios: list[tuple[str, Callable[[], Any], bool]] = [
            ("idle", lambda: nullcontext(), True),
            *[(f"while this process sweeps them as the bot does (Sweeper.run, interval 10 s, "
               f"concurrency {c}, all due at once)",
               lambda c=c: bot_sweeping(service, sessions, ids, delay, c), True)
              for c in sorted({DEFAULT_CONCURRENCY, concurrency})],
            (f"while a worker process sweeps them all the time (concurrency {concurrency})",
             lambda: worker_sweeping(url, sessions, sites, delay, concurrency), True),
            (f"while this process sweeps all of them, pass after pass (concurrency "
             f"{concurrency}; a stress test)",
             lambda: sweeping_passes(service, sessions, ids, delay, concurrency), False),
        ]
        for name, load, targeted in scenarios:
            async with load():
                before = await total_sweeps(sessions)
                lat = await status_times(service, sites, calls)
                swept = await total_sweeps(sessions) - before
            p95 = pct(lat, 0.95) * 1000
            report(f"{label}: /status with {sites} sites, {name}",
                   f"p50 {pct(lat, 0.5) * 1000:.0f} ms, p95 {p95:.0f} ms, max "
                   f"{max(lat) * 1000:.0f} ms (n={len(lat)}; {swept} site sweeps meanwhile)",
                   f"p95 < {STATUS_TARGET_MS:g} ms" if targeted else "",
                   p95 < STATUS_TARGET_MS if targeted else None)


# -- (c) thirty days ------------------------------------------------------------------------
def hour_rows(site_ids: list[int], start: datetime, days: int) -> Any:
    """What store.add_hours leaves after an hour of one check a minute (the default
    interval): 60 checks, the key figure's min and sum over the hour for tunnel and modem."""
    rng = random.Random(1)
    for day in range(days):
        for hour in range(24):
            at = start + timedelta(days=day, hours=hour)
            for site_id in site_ids:
                for comp in COMPONENTS:
                    up = 60 if rng.random() > 0.01 else rng.randint(0, 59)
                    value: float | None = None
                    if comp == TUNNEL:
                        value = float(rng.randint(5, 120))
                    elif comp == MODEM:
                        value = float(-rng.randint(80, 115))
                    yield {"site_id": site_id, "component": comp, "hour": at, "checks": 60,
                           "up": up, "value_min": value,
                           "value_sum": (value or 0.0) * 60 + (rng.random() * 60 if value else 0),
                           "value_count": 60 if value is not None else 0}


async def bulk(sessions: store.Sessions, model: Any, rows: Any, batch: int = 20_000) -> int:
    n, chunk = 0, []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= batch:
            async with sessions.begin() as s:
                await s.execute(insert(model), chunk)
            n, chunk = n + len(chunk), []
    if chunk:
        async with sessions.begin() as s:
            await s.execute(insert(model), chunk)
        n += len(chunk)
    return n


def incident_rows(site_ids: list[int], start: datetime, days: int, per_site: int) -> Any:
    """Outages of a month: a few per site, ended, alerted, each with its cause."""
    rng = random.Random(2)
    for site_id in site_ids:
        for _ in range(per_site):
            began = start + timedelta(seconds=rng.uniform(0, days * 86400 - 7200))
            comp = rng.choice([TUNNEL, ROUTER, MODEM])
            yield {"site_id": site_id, "target": comp, "started_at": began,
                   "ended_at": began + timedelta(seconds=rng.uniform(180, 7200)),
                   "alerted": True, "recovery_alerted": True, "muted": False, "alerts_sent": 2,
                   "summary": "no handshake for 412 s" if comp == TUNNEL else "no answer",
                   "cause": alerts.likely_cause(comp, {MODEM: {"rsrp": -112, "cgnat": 1}})}


def outbox_rows(site_ids: list[int], names: dict[int, str], now: datetime, per_site: int
                ) -> Any:
    """A week of sent alerts (finish_alert deletes the older ones): down and recovered."""
    rng = random.Random(3)
    figures = {p.component: dict(p.figures) for p in sim_probes("sim-0000")}
    for site_id in site_ids:
        for _ in range(per_site):
            at = now - timedelta(seconds=rng.uniform(0, 7 * 86400))
            comp = rng.choice([TUNNEL, ROUTER, MODEM])
            for kind, body in (
                ("down", alerts.outage_text(names[site_id], comp, at.strftime("%H:%M"),
                                            figures, "no answer")),
                ("recovered", alerts.recovery_text(names[site_id], comp, timedelta(minutes=21))),
            ):
                yield {"site_id": site_id, "kind": kind, "component": comp, "text": body,
                       "has_camera": True, "created_at": at, "claimed_at": at, "sent_at": at}


HEALTH_TABLES = ("sites", "droplets", "routers", "site_sweeps", "component_health",
                 "health_hours", "health_days", "incidents", "alert_outbox")


HOUR_COLUMNS = "site_id, component, hour, checks, up, value_min, value_sum, value_count"


async def write_hours(sessions: store.Sessions, ids: list[int], start: datetime, sqlite: bool
                      ) -> tuple[int, int, float]:
    """Thirty days as the bot lives them: each day's hourly rows, then the prune job's packing
    the morning after (store.pack_days, the real one) and, on PostgreSQL, the plain VACUUM
    autovacuum would run (so freed space is reused, as in a steady state). The first day goes
    through the ORM's types (the values exactly as the store writes them); each further day is
    copied from it in SQL, its hour column shifted: 1.8 million rows through Python would take
    the best part of an hour. Returns (hourly rows written, rows packed, packing seconds)."""
    await bulk(sessions, HealthHour, hour_rows(ids, start, 1))
    async with sessions.begin() as s:
        await s.execute(text(f"CREATE TABLE bench_day AS SELECT {HOUR_COLUMNS} FROM health_hours"))
    written, packed, packing = 0, 0, 0.0
    for day in range(DAYS):
        shifted = (f"strftime('%Y-%m-%d %H:%M:%S', hour, '+{day} days') || '.000000'"
                   if sqlite else f"hour + interval '{day} days'")
        async with sessions.begin() as s:
            if day:
                await s.execute(text(
                    f"INSERT INTO health_hours ({HOUR_COLUMNS}) SELECT "
                    f"{HOUR_COLUMNS.replace('hour,', shifted + ',', 1)} FROM bench_day"))
            written += int((await s.execute(text("SELECT count(*) FROM bench_day"))).scalar()
                           or 0)
        t0 = time.perf_counter()
        packed += await store.pack_days(sessions, start + timedelta(days=day + 1, hours=1))
        packing += time.perf_counter() - t0
        if not sqlite:
            engine = sessions.kw["bind"]
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.exec_driver_sql("VACUUM health_hours")
    async with sessions.begin() as s:
        await s.execute(text("DROP TABLE bench_day"))
    return written, packed, packing


async def measure_size(url: str, label: str, sites: int, delay: float) -> None:
    sqlite = url.startswith("sqlite")
    async with opened(url) as sessions:
        ids = await seed_sites(sessions, sites, cameras=CAMERAS)
        await store.ensure_schedules(sessions, datetime.now(UTC), jitter=0)
        sweeper = Sweeper(sessions, SimProber(delay, cameras=CAMERAS),
                          HealthConfig(sweep_concurrency=DEFAULT_CONCURRENCY), lease_seconds=30)
        await sweep_all(sweeper, sessions, ids)  # the latest rows, as the sweeper keeps them
        await sweeper.close()
        async with sessions() as s:
            names = dict((await s.execute(select(Site.id, Site.name))).all())
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = now - timedelta(days=DAYS)
        async with sessions.begin() as s:  # the sweep's own hour rows: replaced by 30 days'
            await s.execute(delete(HealthHour))
        hours, packed, packing = await write_hours(sessions, ids, start, sqlite)
        incidents = await bulk(sessions, Incident, incident_rows(ids, start, DAYS, 4))
        outbox = await bulk(sessions, AlertOutbox, outbox_rows(ids, names, now, 1))
        async with sessions() as s:
            days = int((await s.execute(select(func.count()).select_from(HealthDay))).scalar()
                       or 0)
            if sqlite:
                await s.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
                path = Path(url.split(":///", 1)[1])
                size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
                # The two history tables with their indexes (dbstat names each b-tree); a
                # page on the free list is reused by the next day's rows.
                history = (await s.execute(text(
                    "SELECT SUM(pgsize) FROM dbstat WHERE name IN (SELECT name FROM "
                    "sqlite_master WHERE tbl_name IN ('health_hours', 'health_days'))"))
                ).scalar() or 0
                free = (await s.execute(text("PRAGMA freelist_count"))).scalar() or 0
                free *= (await s.execute(text("PRAGMA page_size"))).scalar() or 0
                where = f"the file (and its -wal), {free / 2**20:.0f} MB of it free pages"
            else:
                sizes = {t: (await s.execute(text(f"SELECT pg_total_relation_size('{t}')")
                                             )).scalar() or 0 for t in HEALTH_TABLES}
                size = sum(sizes.values())
                history = sizes["health_hours"] + sizes["health_days"]
                where = "pg_total_relation_size of " + ", ".join(HEALTH_TABLES)
    mb = size / 2**20
    report(f"{label}: database after {DAYS} days of {sites} sites x {len(COMPONENTS)} parts "
           f"({hours} hourly rows written, {incidents} incidents, {outbox} alerts kept)",
           f"{mb:.0f} MB, {where}; of it the hourly history {history / 2**20:.0f} MB "
           f"({packed} hourly rows packed into {days} rows of a day each morning, "
           f"{packing / DAYS:.1f} s a morning)",
           f"< {SIZE_TARGET_MB:g} MB", mb < SIZE_TARGET_MB)


# -- main -------------------------------------------------------------------------------------
def print_table() -> None:
    print("\n| what | figure | target |")
    print("| --- | --- | --- |")
    for row in ROWS:
        mark = "" if row.ok is None else (" (met)" if row.ok else " (MISSED)")
        print(f"| {row.what} | {row.figure} | {row.target or '-'}{mark} |")


async def main(args: argparse.Namespace) -> int:
    delay = args.delay_ms / 1000
    kinds = [k for k in ("sqlite", "postgres") if k in args.db and (k == "sqlite" or args.pg)]
    concurrencies = sorted({DEFAULT_CONCURRENCY, args.concurrency})
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            label = "SQLite" if kind == "sqlite" else "PostgreSQL"
            print(f"== {label}", flush=True)
            if "sweep" in args.parts:
                for concurrency in concurrencies:
                    async with database(kind, args.pg, Path(tmp)) as url:
                        await measure_sweep(url, label, args.sites, delay, concurrency,
                                            targeted=concurrency == args.concurrency)
            if "status" in args.parts:
                async with database(kind, args.pg, Path(tmp)) as url:
                    await measure_status(url, label, args.sites, delay, args.concurrency,
                                         args.status_calls)
            if "size" in args.parts:
                async with database(kind, args.pg, Path(tmp)) as url:
                    await measure_size(url, label, args.sites, delay)
    print_table()
    missed = [r for r in ROWS if r.ok is False]
    if missed:
        print(f"\n{len(missed)} target(s) missed", file=sys.stderr)
    return 1 if missed else 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--sites", type=int, default=500)
    p.add_argument("--delay-ms", type=float, default=200.0, help="each site answers after this")
    p.add_argument("--concurrency", type=int, default=500,
                   help=f"sites in flight (also measured at the default {DEFAULT_CONCURRENCY})")
    p.add_argument("--pg", default=os.environ.get("CAMREACH_TEST_POSTGRES_URL"),
                   help="PostgreSQL server URL (default: CAMREACH_TEST_POSTGRES_URL)")
    p.add_argument("--parts", default="sweep,status,size",
                   help="comma-separated: sweep, status, size")
    p.add_argument("--db", default="sqlite,postgres",
                   help="comma-separated: sqlite, postgres (postgres needs --pg)")
    p.add_argument("--status-calls", type=int, default=STATUS_CALLS,
                   help="/status calls timed in each scenario")
    p.add_argument("--child-sweep", metavar="URL", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.parts, args.db = set(args.parts.split(",")), set(args.db.split(","))
    return args


if __name__ == "__main__":
    logging.basicConfig(level=logging.CRITICAL if "--child-sweep" in sys.argv else
                        logging.WARNING)
    args = parse_args()
    if args.child_sweep:
        print(json.dumps(asyncio.run(sweep_child(args.child_sweep, args.sites,
                                                 args.delay_ms / 1000, args.concurrency))))
        sys.exit(0)
    sys.exit(asyncio.run(main(args)))
