"""Cameras on a site's LAN: who the router sees, by vendor, and which ones speak ISAPI.

The router sweeps its LAN and reads its DHCP leases and neighbour table
(:mod:`bot.router.discover`); every address found is then asked for
``/ISAPI/System/deviceInfo`` *without credentials*, over the path the site's cameras take
(the droplet's SSH connection when the site has a droplet, else straight from this machine).
A HIKVision camera answers that with a Digest challenge: that, or a deviceInfo document,
marks it as ISAPI. No credentials are ever sent, so no probe counts toward a lockout.
"""

from __future__ import annotations

import asyncio
import ipaddress
from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncssh
import httpcore
import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import __version__
from bot.adapters.camera import ChannelBackend, PoolTransport
from bot.adapters.ssh import SshConnection
from bot.render.isapi import IsapiParseError, parse_device_info
from bot.router.discover import Found, scan, vendors
from bot.router.service import RouterService
from bot.services import sites
from bot.services.droplets import DropletService

__all__ = ["DEVICE_INFO", "DiscoveredDevice", "IsapiProbe", "discover", "probe_isapi"]

DEVICE_INFO = "/ISAPI/System/deviceInfo"
PROBE_TIMEOUT = 2.0
MAX_PROBE_BODY = 64 * 1024
# Probes at once: each is a TCP connection (a direct-tcpip channel via the droplet).
PROBES_AT_ONCE = 32


@dataclass(frozen=True)
class IsapiProbe:
    isapi: bool
    model: str | None = None


@dataclass(frozen=True)
class DiscoveredDevice:
    """One address on the site's LAN, as ``camera discover`` lists it."""

    ip: str
    mac: str
    vendor: str | None
    hostname: str | None
    isapi: bool
    model: str | None
    camera: str | None  # the site's camera at this address, if any

    def to_json(self) -> dict[str, object]:
        return {"ip": self.ip, "mac": self.mac, "vendor": self.vendor,
                "hostname": self.hostname, "isapi": self.isapi, "model": self.model,
                "camera": self.camera}


def _digest_challenge(response: httpx.Response) -> bool:
    return any(h.strip().lower().startswith("digest")
               for h in response.headers.get_list("www-authenticate"))


async def probe_isapi(host: str, port: int = 80, *,
                      ssh: SshConnection | asyncssh.SSHClientConnection | None = None,
                      timeout: float = PROBE_TIMEOUT) -> IsapiProbe:  # noqa: ASYNC109
    """Ask ``host`` for its ISAPI device information without credentials.

    ISAPI when it answers 401 with a Digest challenge, or 200 with a deviceInfo document
    (then with its model). Anything else, an error or no answer within ``timeout``: not ISAPI.
    ``ssh``: the connection to the droplet to open the TCP connection through, or None.
    """
    raw = ssh.raw if isinstance(ssh, SshConnection) else ssh
    backend = ChannelBackend(raw) if raw is not None else None
    pool = httpcore.AsyncConnectionPool(max_connections=1, max_keepalive_connections=0,
                                        retries=0, network_backend=backend)
    http = httpx.AsyncClient(transport=PoolTransport(pool, max_body=MAX_PROBE_BODY),
                             base_url=f"http://{host}:{port}", timeout=httpx.Timeout(timeout),
                             follow_redirects=False, trust_env=False,
                             headers={"User-Agent": f"camreach/{__version__}",
                                      "Accept": "*/*"})
    try:
        async with asyncio.timeout(timeout):
            response = await http.get(DEVICE_INFO)
    except (TimeoutError, httpx.HTTPError, asyncssh.Error, OSError):
        return IsapiProbe(False)
    finally:
        await http.aclose()
    if response.status_code == 401:
        return IsapiProbe(_digest_challenge(response))
    if response.status_code == 200:
        try:
            info = parse_device_info(response.content)
        except IsapiParseError:
            return IsapiProbe(False)
        return IsapiProbe(True, info.model or None)
    return IsapiProbe(False)


async def probe_all(hosts: list[str], port: int = 80, *,
                    ssh: SshConnection | asyncssh.SSHClientConnection | None,
                    timeout: float = PROBE_TIMEOUT) -> list[IsapiProbe]:  # noqa: ASYNC109
    """:func:`probe_isapi` for every host, all at once (at most ``PROBES_AT_ONCE`` open)."""
    gate = asyncio.Semaphore(PROBES_AT_ONCE)

    async def one(host: str) -> IsapiProbe:
        async with gate:
            return await probe_isapi(host, port, ssh=ssh, timeout=timeout)

    return list(await asyncio.gather(*(one(h) for h in hosts)))


def rows(found: list[Found], vendor: dict[str, str | None], probes: list[IsapiProbe],
         cameras: dict[ipaddress.IPv4Address, str]) -> list[DiscoveredDevice]:
    return [DiscoveredDevice(str(f.ip), f.mac, vendor.get(f.mac), f.hostname, p.isapi, p.model,
                             cameras.get(f.ip))
            for f, p in zip(found, probes, strict=True)]


async def discover(sessions: async_sessionmaker[AsyncSession], router: RouterService,
                   droplets: DropletService, site: str) -> list[DiscoveredDevice]:
    """Everything the site's router sees on its LAN, marked by vendor and ISAPI."""
    spec = await sites.get_spec(sessions, site)
    async with router.session(site) as conn:
        found = await scan(conn, spec.router.lan_subnet)
    vendor = await vendors(f.mac for f in found)
    droplet = await droplets.view(site)
    hosts = [str(f.ip) for f in found]
    async with AsyncExitStack() as stack:
        ssh = None
        if droplet is not None and droplet.public_ipv4:
            ssh = await stack.enter_async_context(droplets.session(site))
        probes = await probe_all(hosts, ssh=ssh)
    cameras = {c.host: c.name for c in spec.cameras}
    return rows(found, vendor, probes, cameras)
