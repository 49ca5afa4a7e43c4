"""Health sweeps shared by worker processes, and a hanging site that holds only its own slot.

The two-worker test runs real ``python -m tests.health_sim worker`` processes (each its own
lease owner) on one database: PostgreSQL in CI's second pass (``FOR UPDATE SKIP LOCKED``),
SQLite in the first (which ignores ``FOR UPDATE``; the claim's conditional UPDATE is what keeps
two processes apart there). Only the network is simulated (tests/health_sim.py).
What happened is read back from the database: a monitor polls ``site_sweeps`` often enough to
see every stored sweep of every site (a counter that moves by more than one between two polls
is a double sweep), and the simulated prober logs every probe it was asked for, with the
worker's pid.

The interval is the real minimum (10 s), so a run takes about 50 s. The bounds below are the
scheduling contract, with room for the worker's poll and the probe itself: a site is due
``interval`` x U(0.97, 1) after its last sweep and waits up to one poll to be claimed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.db.engine import make_engine, upgrade
from bot.db.models import ComponentHealth, HealthHour, Site, SiteSweep
from bot.health import store
from bot.health.config import HealthConfig
from bot.health.model import DROPLET, PARTS
from bot.health.sweep import Sweeper
from tests.health_sim import SimProber, read_probe_log, seed_sites

ROOT = Path(__file__).resolve().parents[1]

SITES = 200
INTERVAL = 10.0  # CAMREACH_CHECK_INTERVAL's minimum
LEASE = 3.0
DELAY = 0.2  # each simulated site answers after this
# The sweeper's default poll, and a shorter one: the two workers' polls drift through each
# other, so they sometimes claim at the same moment (the race a claim must win) and at other
# times one after the other (each gets a share of the work).
POLLS = (1.0, 0.9)
# Waiting for the next poll, the probe, database time, and a busy CI machine's hiccups (one
# run there saw a sweep 2.4 s later than on a quiet machine).
SLACK = max(POLLS) + DELAY + 3.0


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[store.Sessions]:
    await upgrade(database_url)
    engine = make_engine(database_url)
    try:
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


async def until(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> None:
    """Wait for ``check`` (a deadline only so that a broken sweeper fails, not hangs)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        await asyncio.sleep(0.05)


class Monitor:
    """Every stored sweep of every site, as seen in ``site_sweeps``."""

    def __init__(self, sessions: store.Sessions) -> None:
        self._sessions = sessions
        self.swept: dict[int, list[datetime]] = defaultdict(list)  # last_swept_at values
        self.counts: dict[int, int] = {}
        self.jumps: list[tuple[int, int]] = []  # (site, sweeps counted since the last poll)

    async def poll(self) -> None:
        async with self._sessions() as s:
            rows = (await s.execute(select(SiteSweep.site_id, SiteSweep.sweeps,
                                           SiteSweep.last_swept_at))).all()
        for site_id, sweeps, last in rows:
            if sweeps != self.counts.get(site_id, 0):
                assert last is not None  # a stored sweep sets it
                if sweeps - self.counts.get(site_id, 0) != 1:
                    self.jumps.append((site_id, sweeps - self.counts.get(site_id, 0)))
                self.swept[site_id].append(last)
                self.counts[site_id] = sweeps

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(0.1)


async def spawn_worker(url: str, log: Path, err: Path, poll: float
                       ) -> asyncio.subprocess.Process:
    env = {**os.environ, "CAMREACH_LEASE_SECONDS": str(LEASE)}
    with err.open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.health_sim", "worker", "--db", url,
            "--prober-delay", str(DELAY), "--interval", str(INTERVAL), "--poll", str(poll),
            "--log", str(log), "--wait-go", cwd=ROOT, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line.startswith(b"ready"), f"worker did not start: {err.read_text()[-2000:]}"
    return proc


async def go(proc: asyncio.subprocess.Process, at: float) -> None:
    assert proc.stdin is not None
    proc.stdin.write(f"{at}\n".encode())
    await proc.stdin.drain()


def ts(at: datetime) -> float:
    return at.timestamp()


async def test_two_workers_sweep_each_site_once_per_interval_and_take_over_a_killed_ones(
    database_url: str, sessions: store.Sessions, tmp_path: Path,
) -> None:
    ids = await seed_sites(sessions, SITES)
    async with sessions() as s:
        names = dict((await s.execute(select(Site.id, Site.name))).all())
    log = tmp_path / "probes.log"
    workers = [await spawn_worker(database_url, log, tmp_path / f"worker{i}.err", poll)
               for i, poll in enumerate(POLLS)]
    victim, survivor = workers
    monitor = Monitor(sessions)
    watching = asyncio.create_task(monitor.run())
    try:
        start = time.time() + 0.2  # both at once: neither sweeps alone first
        for proc in workers:
            await go(proc, start)

        async def all_swept_once() -> bool:
            return len(monitor.counts) == SITES and min(monitor.counts.values()) >= 1
        # First sweeps are spread over min(10 s, interval) by ensure_schedules.
        await until(all_swept_once, within=INTERVAL + 60, what="every site swept once")
        await asyncio.sleep(2 * INTERVAL)  # both workers sweep for two intervals

        # kill -9 the victim while it holds leases (it claims a batch on every poll).
        async def victim_holds() -> bool:
            async with sessions() as s:
                return bool((await s.execute(select(func.count()).where(
                    SiteSweep.owner_pid == victim.pid))).scalar())
        deadline = time.monotonic() + 30
        while not await victim_holds():
            assert time.monotonic() < deadline, "the victim never held a lease"
            await asyncio.sleep(0.01)
        victim.kill()
        await victim.wait()
        dead_at = datetime.now(UTC)
        async with sessions() as s:  # its leases: nobody can release them now
            orphans = dict((await s.execute(select(SiteSweep.site_id, SiteSweep.lease_until)
                                            .where(SiteSweep.owner_pid == victim.pid))).all())
        assert orphans, "the victim held no lease when it died"

        async def all_swept_since_kill() -> bool:
            return all(monitor.swept[i][-1] > dead_at for i in ids)
        await until(all_swept_since_kill, within=LEASE + INTERVAL + 60,
                    what="every site swept after the kill")

        survivor.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(survivor.wait(), 30) == 0, \
            (tmp_path / "worker1.err").read_text()[-2000:]
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        watching.cancel()
    await monitor.poll()  # the survivor's last sweeps

    assert monitor.jumps == [], "sites swept twice between two polls of the monitor"
    probes = read_probe_log(log)
    by_site: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for at, pid, site in probes:
        by_site[site].append((at, pid))

    # Before the kill: every site once per interval, never twice (stored sweeps and probes).
    for site_id in ids:
        stored = [ts(t) for t in monitor.swept[site_id] if t < dead_at]
        gaps = [b - a for a, b in pairwise(stored)]
        assert len(stored) >= 2, (names[site_id], stored)
        assert min(gaps) > 0.9 * INTERVAL, (names[site_id], gaps)
        assert max([*gaps, ts(dead_at) - stored[-1]]) <= INTERVAL + SLACK, (names[site_id], gaps)
        sent = [at for at, _ in by_site[names[site_id]] if at < ts(dead_at)]
        sent_gaps = [b - a for a, b in pairwise(sent)]
        assert min(sent_gaps) > 0.9 * INTERVAL, (names[site_id], sent_gaps)
    before = [pid for at, pid, _ in probes if at < ts(dead_at)]
    for proc in workers:
        assert before.count(proc.pid) >= 0.1 * len(before), \
            f"worker {proc.pid} did {before.count(proc.pid)} of {len(before)} probes"

    # After: the dead worker's sites are taken over once its lease runs out; all are swept.
    for site_id in ids:
        first_after = next(t for t in monitor.swept[site_id] if t > dead_at)
        bound = LEASE + INTERVAL if site_id in orphans else INTERVAL + SLACK
        assert first_after - dead_at <= timedelta(seconds=bound), (names[site_id], site_id in
                                                                   orphans, first_after)
    for site_id in orphans:
        assert any(at > ts(dead_at) and pid == survivor.pid
                   for at, pid in by_site[names[site_id]]), names[site_id]

    # Every stored sweep is exactly one probe; the only probes without a result are the
    # dead worker's last ones and those the survivor was stopped in the middle of.
    for site_id in ids:
        prev = 0.0
        for stored_at in map(ts, monitor.swept[site_id]):
            inside = [(at, pid) for at, pid in by_site[names[site_id]] if prev < at < stored_at]
            lost = [p for p in inside if p[1] == victim.pid and prev < ts(dead_at) < stored_at]
            assert len(lost) <= (1 if site_id in orphans else 0), (names[site_id], inside)
            assert len(inside) - len(lost) == 1, (names[site_id], inside)
            prev = stored_at
        after = [(at, pid) for at, pid in by_site[names[site_id]] if at > prev]
        assert len(after) <= 1 and all(pid == survivor.pid for _, pid in after), after

    async with sessions() as s:
        sweeps = dict((await s.execute(select(SiteSweep.site_id, SiteSweep.sweeps))).all())
        leased = (await s.execute(select(func.count()).where(
            SiteSweep.owner_token.is_not(None)))).scalar()
        states = (await s.execute(select(ComponentHealth.state, func.count())
                                  .group_by(ComponentHealth.state))).all()
        checks = dict((await s.execute(
            select(HealthHour.site_id, func.sum(HealthHour.checks))
            .where(HealthHour.component == DROPLET).group_by(HealthHour.site_id))).all())
    assert leased == 0, "a stopped worker hands its leases back"
    assert states == [("ok", SITES * len(PARTS))]
    for site_id in ids:
        assert sweeps[site_id] == len(monitor.swept[site_id]) == checks[site_id]


async def test_a_hanging_site_holds_only_its_own_slot(sessions: store.Sessions) -> None:
    ids = await seed_sites(sessions, 12)
    async with sessions() as s:
        names = dict((await s.execute(select(Site.id, Site.name))).all())
    hung, others = ids[0], ids[1:]
    now = datetime.now(UTC)
    await store.ensure_schedules(sessions, now, jitter=0)
    await store.request_sweep(sessions, [hung], now - timedelta(seconds=1))  # first in line
    prober = SimProber(0.05, hang={names[hung]})
    # Three slots for twelve sites: the hung site keeps one, the rest go through two.
    sweeper = Sweeper(sessions, prober, HealthConfig(sweep_concurrency=3), lease_seconds=30,
                      site_timeout=3600)
    stop = asyncio.Event()
    running = asyncio.create_task(sweeper.run(stop, poll=0.05))

    async def others_stored() -> bool:
        async with sessions() as s:
            done = (await s.execute(select(func.count(func.distinct(ComponentHealth.site_id)))
                                    .where(ComponentHealth.site_id.in_(others)))).scalar()
        return done == len(others)
    try:
        await until(others_stored, within=60, what="the other sites' results")
        async with sessions() as s:
            rows = {r.site_id: r for r in (await s.execute(select(SiteSweep))).scalars()}
            parts = (await s.execute(select(ComponentHealth.site_id, ComponentHealth.state)
                                     )).all()
        # The hung site was in the first batch, and is still in flight.
        assert names[hung] in prober.started[:3]
        assert names[hung] not in prober.answered
        assert rows[hung].owner_token == sweeper.owner.token and rows[hung].sweeps == 0
        assert all(site_id != hung for site_id, _ in parts)
        assert sorted(site_id for site_id, state in parts if state == "ok") == \
            sorted(others * len(PARTS))
        assert all(rows[i].sweeps == 1 and rows[i].owner_token is None for i in others)
    finally:
        stop.set()
        stopped, _ = await asyncio.wait({running}, timeout=60)
        if not stopped:  # stuck behind the hung site: let it go, so that the test ends
            prober.release_hung()
            await running
            pytest.fail("Sweeper.run did not stop while a site hung")
    async with sessions() as s:
        row = await s.get(SiteSweep, hung)
    assert row is not None
    # Stopping hands the hung site back, due at once, with nothing stored for it.
    assert (row.owner_token, row.lease_until, row.sweeps) == (None, None, 0)
    assert row.next_due_at <= datetime.now(UTC)
