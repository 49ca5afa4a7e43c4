"""Simulated sites for health sweeps, shared by tests/test_health_workers.py and
bench/bench_health.py.

Only the network is simulated: :class:`SimProber` answers after a delay with the probes a
healthy site gives (droplet, tunnel, router, modem and its cameras). The sweeper, its leases,
the judging and every database write are the real ones.

A sweeper in its own process (each one its own lease owner), until SIGTERM or SIGINT::

    python -m tests.health_sim worker --db URL --prober-delay 0.2 --interval 10 --lease 3

The worker opens sessions on the database itself rather than a whole core: a sweep needs
nothing else, and the core would also want a secret key and build the real prober. It builds
its :class:`HealthConfig` directly, so ``--interval`` may go below the 10 s that
CAMREACH_CHECK_INTERVAL allows (the benchmarks use that to keep a sweep running). It does not
migrate unless told to (``--migrate``): two workers upgrading one fresh database would race.
With ``--wait-go`` it prints ``ready`` and waits for a line on stdin, an epoch time to start
at: two workers can then poll in a known phase of each other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import zlib
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.ext.asyncio import async_sessionmaker

from bot.db.engine import make_engine, upgrade
from bot.db.models import Droplet, Router, Site
from bot.health.config import HealthConfig
from bot.health.model import DROPLET, MODEM, ROUTER, TUNNEL, Probe, camera_component
from bot.health.store import Sessions
from bot.health.sweep import Sweeper
from bot.leases import Owner
from bot.settings import to_async_url
from bot.site import SiteSpec, parse_site

# Uptimes count from here, so every process reports the same, growing uptime for a site (a
# shrinking one would be judged a router reboot).
_BOOT_BASE = 1_700_000_000


def site_name(i: int, prefix: str = "sim") -> str:
    return f"{prefix}-{i:04d}"


def sim_spec(name: str, cameras: Sequence[str] = ()) -> SiteSpec:
    return parse_site({
        "name": name,
        "timezone": "Europe/Berlin",
        "router": {"host": "192.168.1.1", "lan_subnet": "192.168.1.0/24",
                   "password_env": "SIM_ROUTER_PASSWORD"},
        "cameras": [{"name": cam, "host": f"192.168.1.{64 + i}"}
                    for i, cam in enumerate(cameras)],
    }, check_files=False)


async def seed_sites(sessions: Sessions, count: int, *, prefix: str = "sim",
                     cameras: Sequence[str] = (), pushed: bool = True) -> list[int]:
    """``count`` sites the sweeper schedules: each with a droplet (only sites with one get a
    schedule) and a router pushed to (else every part after the droplet is "not set up
    yet"). Returns their ids, in name order."""
    now = datetime.now(UTC)
    sites = []
    for i in range(count):
        name = site_name(i, prefix)
        sites.append(Site(
            name=name, spec=sim_spec(name, cameras).to_json(),
            droplet=Droplet(name=f"camreach-{name}", region="fra1", size="s-1vcpu-512mb-10gb",
                            image="debian-12-x64", status="active",
                            public_ipv4=f"203.0.{113 + i // 250}.{i % 250 + 1}"),
            router=Router(host="192.168.1.1", last_push_at=now if pushed else None)))
    async with sessions.begin() as s:
        s.add_all(sites)
    return [site.id for site in sites]


def sim_probes(site: str, cameras: Sequence[str] = (), *, duration: float = 0.0) -> list[Probe]:
    """What a healthy site answers: figures vary a little per site and per call."""
    h = zlib.crc32(site.encode())
    now = time.time()
    wobble = int(now) % 7
    handshake = 5 + (h + int(now)) % 110
    uptime = int(now - _BOOT_BASE - h % 864_000)
    rsrp = -80 - h % 30 - wobble
    probes = [
        Probe(DROPLET, True, "active, SSH 41 ms",
              {"do_status": "active", "ssh_ms": 35.0 + wobble}, duration),
        Probe(TUNNEL, True, f"handshake {handshake} s ago",
              {"handshake_age": handshake, "rx_bytes": 10_000_000 + h % 100_000_000,
               "tx_bytes": 2_000_000 + h % 50_000_000, "ping_ms": 48.0 + wobble}, duration),
        Probe(ROUTER, True, f"up {uptime // 86400} d",
              {"uptime": uptime, "load1": 0.08 + wobble / 100, "mem_free": 61_000_000,
               "flash_free": 4_200_000}, duration),
        Probe(MODEM, True, f"RSRP {rsrp} dBm",
              {"rssi": rsrp + 25, "rsrp": rsrp, "rsrq": -9 - wobble, "sinr": 14 - wobble,
               "operator": "Sim Mobile", "registration": "registered", "network_type": "LTE",
               "wan_ip": f"100.64.{h % 250}.{h // 250 % 250 + 1}", "cgnat": 1}, duration),
    ]
    for cam in cameras:
        probes.append(Probe(camera_component(cam), True, "DS-2CD2043G2-I",
                            {"model": "DS-2CD2043G2-I", "serial": f"DS{h:010d}",
                             "firmware": "V5.7.3"}, duration))
    return probes


class SimProber:
    """Stands in for the network: every site answers after ``delay`` seconds; sites in
    ``hang`` never answer (until :meth:`release_hung`).

    Each probe's start is kept in ``started`` and, given ``log``, appended to that file as
    ``<epoch> <pid> <site>`` (one short write with O_APPEND: lines from several processes
    do not interleave).
    """

    def __init__(self, delay: float = 0.2, *, cameras: Sequence[str] = (),
                 hang: Collection[str] = (), log: Path | None = None) -> None:
        self.delay = delay
        self.cameras = tuple(cameras)
        self.hang = set(hang)
        self.started: list[str] = []
        self.answered: list[str] = []
        self._released = asyncio.Event()
        self._log = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) \
            if log is not None else None

    async def probe(self, site: str) -> list[Probe]:
        self.started.append(site)
        if self._log is not None:
            os.write(self._log, f"{time.time():.6f} {os.getpid()} {site}\n".encode())
        if site in self.hang:
            await self._released.wait()
        await asyncio.sleep(self.delay)
        self.answered.append(site)
        return sim_probes(site, self.cameras, duration=self.delay)

    def release_hung(self) -> None:
        self._released.set()

    def close(self) -> None:
        if self._log is not None:
            os.close(self._log)
            self._log = None


def read_probe_log(path: Path) -> list[tuple[float, int, str]]:
    """The probes a :class:`SimProber` logged: (epoch, pid, site), in time order."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        at, pid, site = line.split()
        rows.append((float(at), int(pid), site))
    return sorted(rows)


# -- the worker process --------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tests.health_sim")
    sub = p.add_subparsers(dest="command", required=True)
    w = sub.add_parser("worker", help="sweep simulated sites until SIGTERM")
    w.add_argument("--db", required=True, help="database URL (postgresql://... or sqlite:///...)")
    w.add_argument("--prober-delay", type=float, default=0.2, help="seconds a site takes to answer")
    w.add_argument("--interval", type=float, default=10.0, help="check interval, seconds")
    w.add_argument("--lease", type=float,
                   default=float(os.environ.get("CAMREACH_LEASE_SECONDS", "30")),
                   help="lease seconds (default: CAMREACH_LEASE_SECONDS, else 30)")
    w.add_argument("--concurrency", type=int, default=50, help="sites in flight at most")
    w.add_argument("--poll", type=float, default=1.0, help="seconds between claims")
    w.add_argument("--cameras", type=int, default=0, help="cameras per site (cam0, cam1, ...)")
    w.add_argument("--log", type=Path, help="append every probe's start to this file")
    w.add_argument("--migrate", action="store_true", help="upgrade the database first")
    w.add_argument("--wait-go", action="store_true",
                   help="print 'ready', then start at the epoch read from stdin")
    return p


def camera_names(count: int) -> list[str]:
    return [f"cam{i}" for i in range(count)]


async def run_worker(args: argparse.Namespace) -> None:
    url = to_async_url(args.db)
    if args.migrate:
        await upgrade(url, announce=False)
    engine = make_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    prober = SimProber(args.prober_delay, cameras=camera_names(args.cameras), log=args.log)
    config = HealthConfig(check_interval=args.interval, sweep_concurrency=args.concurrency)
    sweeper = Sweeper(sessions, prober, config, owner=Owner.this_process(),
                      lease_seconds=args.lease, site_timeout=max(60.0, 10 * args.prober_delay))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.wait_go:
            print(f"ready {os.getpid()}", flush=True)
            line = await asyncio.to_thread(sys.stdin.readline)
            if line.strip():
                await asyncio.sleep(max(0.0, float(line) - time.time()))
        if not stop.is_set():
            await sweeper.run(stop, poll=args.poll)
    finally:
        prober.close()
        await engine.dispose()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    asyncio.run(run_worker(args))


if __name__ == "__main__":
    main()
