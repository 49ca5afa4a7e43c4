"""The real checks of one site's parts, over the connections camreach keeps open.

One sweep of a site (:meth:`SiteProber.probe`) checks, in dependency order:

- droplet: ``true`` over SSH (its round trip is ``ssh_ms``), and DigitalOcean's own status of
  the droplet, asked at most every ``do_status_every`` seconds per site, and only when there is
  a token and the droplet has a DigitalOcean id. DigitalOcean's answer never decides ``ok``
  (its API being slow or down says nothing about the droplet); it is shown beside.
- tunnel: on the droplet, ``ping -c 1 -W 2`` to the router's tunnel address, then the router
  peer's line of ``wg show wg0 dump`` (read after the ping, which brings a stale session back
  if it can). Up iff the router answers the ping and its handshake is younger than
  :data:`HANDSHAKE_STALE_AFTER`. A droplet without ``ping`` is judged by the handshake alone.
- router: ``ubus call system info`` over the router's pooled tunnel session.
- modem: the modem's radio state (:func:`read_modem_status`, through ``RouterService``) and the
  uplink's address ``wan_ip`` (``ubus call network.interface dump``: the modem interface's, else
  that of the interface holding the default route), both over that same pooled session.
  Registered or roaming is up; searching, not registered or denied is down; a modem camreach
  cannot read (not detected yet, a protocol it cannot read, no answer from the tool) gives
  ``ok=None``: no information, so its state does not move, while the tunnel (which the modem
  carries) already says whether the uplink works.
- cameras: each camera's device information, concurrently, over the pooled droplet connection.
  A camera whose current password it refused before is not contacted at all (``ok=None``).

Every check has its own time limit; whatever goes wrong becomes a failed :class:`Probe` with a
message fit for the user, never an exception (only cancellation goes through). A part whose
parent failed is not attempted: it comes back failed, "not checked: <why>".

Connections are reused between sweeps: the droplet's lives in the prober's
:class:`ConnectionPool` (one per site), the router's in ``RouterService``'s own. A connection
that breaks or times out is dropped from its pool, so the next sweep reconnects; a camera that
does not answer keeps the droplet's connection (its limit runs inside the pooled block).
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.actions import action
from bot.adapters.ssh import SshConnection
from bot.errors import CamreachError, NotFound
from bot.health.model import (
    DROPLET,
    HANDSHAKE_STALE_AFTER,
    MODEM,
    ROUTER,
    TUNNEL,
    Figure,
    Probe,
    camera_component,
    camera_name,
)
from bot.render.health_parse import (
    WgPeer,
    format_age,
    is_cgnat,
    parse_ping,
    parse_system_info,
    parse_wan_address,
    parse_wg_peer,
)
from bot.router.modem_status import ModemStatus
from bot.router.pool import ConnectionPool
from bot.router.service import RouterService
from bot.services.cameras import CameraService, PasswordRefusedBefore
from bot.services.droplets import DropletService

__all__ = ["MODEM_INTERFACES", "ProbeTimeouts", "SiteProber"]

log = logging.getLogger(__name__)

# The netifd interface camreach gives the modem (ModemConfig.interface) and the child that
# ncm, qmi and mbim bring up for its IPv4 address.
MODEM_INTERFACES = ("wwan", "wwan_4")
# The droplet's clock first: handshake ages are measured on the machine that recorded them.
WG_DUMP = "date +%s && wg show wg0 dump"
SYSTEM_INFO = "ubus call system info"
INTERFACE_DUMP = "ubus call network.interface dump"
NO_PING = 127  # the shell's "command not found"

# Time to get the pooled droplet connection before a camera's own limit (it is there: the
# droplet's check has just used it).
POOL_GRACE = 1.0

Outcome = tuple[bool | None, str, Mapping[str, Figure]]
Check = Callable[[], Awaitable[Outcome]]


@dataclass(frozen=True)
class ProbeTimeouts:
    """Seconds each check may take; DigitalOcean is asked at most every ``do_status_every``."""

    droplet: float = 10.0
    tunnel: float = 8.0
    router: float = 10.0
    modem: float = 15.0
    camera: float = 12.0
    do_status_every: float = 600.0


class SiteProber:
    def __init__(self, droplets: DropletService, router: RouterService, cameras: CameraService,
                 *, timeouts: ProbeTimeouts | None = None) -> None:
        self._droplets = droplets
        self._router = router
        self._cameras = cameras
        self.timeouts = timeouts or ProbeTimeouts()
        self.pool = ConnectionPool()  # the droplets' connections, one per site
        self._do_status: dict[str, tuple[float, str | None]] = {}  # site: (asked at, status)

    async def close(self) -> None:
        """Close the droplet connections this prober keeps. The router's pooled sessions are
        RouterService's, closed by whoever owns it (they may be in use elsewhere)."""
        await self.pool.close()

    async def probe(self, site: str) -> list[Probe]:
        """The site's parts: droplet, tunnel, router, modem, then ``camera:NAME`` for each
        camera (by name); never raises but for cancellation."""
        cameras = [camera_component(n) for n in await self._camera_names(site)]
        droplet = await self._droplet(site)
        if not droplet.ok:
            return [droplet, *_skipped([TUNNEL, ROUTER, MODEM, *cameras], "droplet unreachable")]
        tunnel = await self._timed(TUNNEL, self.timeouts.tunnel, lambda: self._tunnel(site))
        if not tunnel.ok:
            return [droplet, tunnel, *_skipped([ROUTER, MODEM, *cameras], "tunnel down")]
        router = await self._timed(ROUTER, self.timeouts.router, lambda: self._system(site))
        if not router.ok:
            return [droplet, tunnel, router, *_skipped([MODEM, *cameras], "router unreachable")]
        modem, *checked = await asyncio.gather(
            self._timed(MODEM, self.timeouts.modem, lambda: self._modem(site)),
            *(self._camera(site, c) for c in cameras))
        return [droplet, tunnel, router, modem, *checked]

    # -- running one check ------------------------------------------------------------------
    async def _timed(self, component: str, limit: float, check: Check) -> Probe:
        began = time.monotonic()
        ok, summary, figures = await _guarded(component, limit, check)
        return Probe(component, ok, summary, dict(figures), time.monotonic() - began)

    @asynccontextmanager
    async def _droplet_conn(self, site: str) -> AsyncIterator[SshConnection]:
        async with self.pool.connection(f"droplet:{site}",
                                        lambda: self._droplets.session(site)) as conn:
            yield conn

    async def _camera_names(self, site: str) -> list[str]:
        try:
            return sorted(v.name for v in await self._cameras.views(site))
        except CamreachError as exc:  # e.g. no such site: the droplet's check says so
            log.info("health: cameras of %s not listed: %s", site, exc.user_message)
        except Exception:
            log.exception("health: listing the cameras of %s failed", site)
        return []

    # -- droplet ----------------------------------------------------------------------------
    async def _droplet(self, site: str) -> Probe:
        status, probe = await asyncio.gather(
            self._cloud_status(site),
            self._timed(DROPLET, self.timeouts.droplet, lambda: self._ssh(site)))
        if status is None:
            return probe
        if probe.ok:
            summary = f"{probe.summary}; DigitalOcean says {status}"
        elif status != "active":
            summary = f"{probe.summary} (DigitalOcean says the droplet is {status}.)"
        else:
            summary = probe.summary
        return Probe(probe.component, probe.ok, summary, {**probe.figures, "do_status": status},
                     probe.duration)

    async def _ssh(self, site: str) -> Outcome:
        async with self._droplet_conn(site) as conn:
            began = time.monotonic()
            await conn.run("true")
            ms = round((time.monotonic() - began) * 1000, 1)
        return True, f"SSH answers in {ms:g} ms", {"ssh_ms": ms}

    async def _cloud_status(self, site: str) -> str | None:
        """DigitalOcean's status of the site's droplet, cached for ``do_status_every``."""
        now = time.monotonic()
        cached = self._do_status.get(site)
        if cached is not None and now - cached[0] < self.timeouts.do_status_every:
            return cached[1]
        status = None  # unknown until the next ask, whatever went wrong
        try:
            async with asyncio.timeout(self.timeouts.droplet):
                status = await self._ask_digitalocean(site)
        except TimeoutError:
            log.warning("health: DigitalOcean did not say within %g s how %s's droplet is",
                        self.timeouts.droplet, site)
        except CamreachError as exc:
            log.warning("health: DigitalOcean's status of %s's droplet: %s", site,
                        exc.user_message)
        except Exception:
            log.exception("health: asking DigitalOcean about %s's droplet failed", site)
        self._do_status[site] = (now, status)
        return status

    async def _ask_digitalocean(self, site: str) -> str | None:
        view = await self._droplets.view(site)
        if view is None or view.do_id is None or not await self._droplets.has_token():
            return None
        client = await self._droplets.client()
        return (await client.get_droplet(view.do_id)).status

    # -- tunnel -----------------------------------------------------------------------------
    async def _tunnel(self, site: str) -> Outcome:
        peer_row = await self._droplets.router_peer(site)
        if peer_row is None:
            raise NotFound(f"Site {site} has no WireGuard keys yet; nothing to check.")
        async with self._droplet_conn(site) as conn:
            ping = await conn.run(shlex.join(["ping", "-c", "1", "-W", "2", peer_row.address]),
                                  check=False)
            dump = await conn.run(WG_DUMP, check=False)
        if not dump.ok:
            return False, "WireGuard is not running on the droplet (wg show wg0 failed)", {}
        clock, _, table = dump.stdout.partition("\n")
        now = float(clock) if clock.strip().isdigit() else time.time()
        peer = parse_wg_peer(table, peer_row.public_key, now)
        if peer is None:
            return False, "the droplet's WireGuard has no peer for the router", {}
        ping_ms = parse_ping(ping.stdout) if ping.exit_status != NO_PING else None
        return _tunnel_outcome(peer, ping_ms, pinged=ping.exit_status != NO_PING)

    # -- router -----------------------------------------------------------------------------
    async def _system(self, site: str) -> Outcome:
        async with self._router.session(site, via="tunnel") as conn:
            info = parse_system_info((await conn.run(SYSTEM_INFO)).stdout)
        figures = {"uptime": info.uptime, "load1": info.load1, "mem_free": info.mem_free,
                   "flash_free": info.flash_free}
        parts = []
        if info.uptime is not None:
            parts.append(f"up {format_age(info.uptime)}")
        if info.load1 is not None:
            parts.append(f"load {info.load1:.2f}")
        return True, ", ".join(parts) or "answers through the tunnel", _known(figures)

    # -- modem ------------------------------------------------------------------------------
    async def _modem(self, site: str) -> Outcome:
        # Both through RouterService's pool: the router's session the router check used.
        async with self._router.session(site, via="tunnel") as conn:
            dump = await conn.run(INTERFACE_DUMP, check=False)
        status = await self._router.modem_status(site, via="tunnel")
        wan = parse_wan_address(dump.stdout, MODEM_INTERFACES) if dump.ok else None
        return _modem_outcome(status, wan)

    # -- cameras ----------------------------------------------------------------------------
    async def _camera(self, site: str, component: str) -> Probe:
        name, limit = camera_name(component), self.timeouts.camera

        async def check() -> Outcome:
            async with self._droplet_conn(site) as conn:
                # The camera's limit inside the pooled block: a camera that does not answer
                # says nothing about the droplet's connection, which stays for the next sweep.
                return await _guarded(component, limit,
                                      lambda: self._device_info(site, name, conn))

        return await self._timed(component, limit + POOL_GRACE, check)

    async def _device_info(self, site: str, name: str, conn: SshConnection) -> Outcome:
        try:
            info = await self._cameras.device_info(site, name, ssh=conn)
        except PasswordRefusedBefore:  # raised before anything is sent to the camera
            again = action("camera password", name, site)
            return None, f"password refused; give a new one with {again}", {}
        return True, f"camera online ({info.model})", _known(
            {"model": info.model, "serial": info.serial, "firmware": info.firmware})


async def _guarded(component: str, limit: float, check: Check) -> Outcome:
    """``check()`` within ``limit`` seconds; what goes wrong is a failed outcome."""
    try:
        async with asyncio.timeout(limit):
            return await check()
    except TimeoutError:
        return False, f"no answer within {limit:g} s", {}
    except CamreachError as exc:
        return False, exc.user_message, {}
    except Exception as exc:  # a bug or a broken database must not stop the sweep
        log.exception("health check of %s failed", component)
        return False, f"the check itself failed ({type(exc).__name__}); see camreach's log", {}


def _skipped(components: list[str], why: str) -> list[Probe]:
    # No information, not a failure: a part behind a failed one keeps its own state (it did
    # not fail; it could not be asked), so it needs its own failures in a row to page.
    return [Probe(c, None, f"not checked: {why}") for c in components]


def _known(figures: Mapping[str, Figure]) -> dict[str, Figure]:
    return {k: v for k, v in figures.items() if v is not None and v != ""}


def _tunnel_outcome(peer: WgPeer, ping_ms: float | None, *, pinged: bool) -> Outcome:
    figures = _known({"handshake_age": peer.handshake_age, "rx_bytes": peer.rx_bytes,
                      "tx_bytes": peer.tx_bytes, "ping_ms": ping_ms})
    age = peer.handshake_age
    handshake = "no handshake yet" if age is None else f"handshake {format_age(age)} ago"
    fresh = age is not None and age < HANDSHAKE_STALE_AFTER
    if pinged and ping_ms is None:
        return False, f"router not answering through the tunnel ({handshake})", figures
    if not fresh:
        return False, f"{handshake}: the tunnel has no live session", figures
    return True, handshake if pinged else f"{handshake} (no ping on the droplet)", figures


_UP = ("registered", "roaming")
_DOWN = ("searching", "not-registered", "denied")


def _modem_outcome(status: ModemStatus, wan: str | None) -> Outcome:
    figures = _known({
        "rssi": status.rssi_dbm, "rsrp": status.rsrp_dbm, "rsrq": status.rsrq_db,
        "sinr": status.sinr_db, "operator": status.operator,
        "registration": status.registration if status.source != "none" else None,
        "network_type": status.network_type, "wan_ip": wan,
        "cgnat": (1 if is_cgnat(wan) else 0) if wan else None,
    })
    signal = _signal(status)
    if status.registration in _UP:
        network = " ".join(p for p in (status.operator, status.network_type) if p)
        roaming = " (roaming)" if status.registration == "roaming" else ""
        parts = [p for p in (signal, network) if p]
        return True, (", ".join(parts) or "registered") + roaming, figures
    if status.registration in _DOWN:
        state = {"searching": "searching for a network",
                 "not-registered": "not registered with a network",
                 "denied": "refused by the network (registration denied)"}[status.registration]
        return False, f"modem {state}" + (f", {signal}" if signal else ""), figures
    why = status.problems[0] if status.problems else "the modem did not say"
    return None, f"modem status unknown: {why}" + (f" ({signal})" if signal else ""), figures


def _signal(status: ModemStatus) -> str:
    if status.rsrp_dbm is not None:
        return f"RSRP {status.rsrp_dbm:g} dBm"
    if status.rssi_dbm is not None:
        return f"RSSI {status.rssi_dbm:g} dBm"
    return ""
