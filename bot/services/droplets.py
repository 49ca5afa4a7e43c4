"""Provisioning the site's droplet as a WireGuard server, reaching it, and destroying it.

Exactly one droplet per site, whatever happens: before creating, camreach looks the droplet
up by its site tag, so a repeated apply, or one after a crash between DigitalOcean's create
call and the database write, adopts the droplet that exists instead of paying for a second.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bot.actions import action
from bot.adapters.digitalocean import DigitalOceanClient, DropletInfo
from bot.adapters.ssh import SshConnection, SshTarget, ssh_session
from bot.crypto import SecretBox
from bot.db.models import Droplet, PeerKind, Site, VpnPeer
from bot.errors import AuthRejected, NotFound, OperatorError, Unreachable
from bot.operations import OpContext
from bot.render.cloud_init import render_user_data
from bot.render.model import ServerConfig
from bot.render.wg_conf import device_peer, router_peer
from bot.services import identity
from bot.services.secrets import SecretStore
from bot.services.vpn_keys import ensure_site_keys
from bot.site import SiteSpec

log = logging.getLogger(__name__)

BOOT_CHECK = "test -f /var/lib/cloud/instance/boot-finished && wg show wg0 listen-port"
STEPS = 6


@dataclass(frozen=True)
class Timing:
    """How long to wait for things; tests shorten these, production keeps the defaults."""

    active_timeout: float = 600.0
    ssh_timeout: float = 600.0
    boot_timeout: float = 900.0
    poll: float = 5.0
    do_poll: float = 3.0
    do_backoff: float = 1.0
    ssh_connect: float = 10.0


def site_tag(site_id: int) -> str:
    return f"camreach-site-{site_id}"


def droplet_name(site: str) -> str:
    return f"camreach-{site}"


ClientFactory = Callable[[str], DigitalOceanClient]


@dataclass(frozen=True)
class DropletView:
    """What surfaces show of a droplet."""

    name: str
    do_id: int | None
    region: str
    size: str
    status: str
    public_ipv4: str | None
    price_monthly: float | None


async def _site_names(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as s:
        return list((await s.execute(select(Site.name))).scalars().all())


class DropletService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        secrets: SecretStore,
        env_token: str | None,
        timing: Timing | None = None,
    ) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._env_token = env_token
        self.timing = timing or Timing()

    @property
    def _box(self) -> SecretBox:
        return self._secrets.box

    async def has_token(self) -> bool:
        return await identity.find_do_token(self._secrets, self._env_token) is not None

    async def client(self) -> DigitalOceanClient:
        token = await identity.do_token(self._secrets, self._env_token)
        return DigitalOceanClient(token, poll_interval=self.timing.do_poll,
                                  backoff=self.timing.do_backoff)

    # -- provisioning --------------------------------------------------------------
    async def provision(self, ctx: OpContext, site_name: str) -> str:
        """The ``provision_droplet`` operation: idempotent, resumable from any step."""
        await ctx.step(1, STEPS, "Checking the DigitalOcean token")
        do = await self.client()
        await do.check_token()

        await ctx.step(2, STEPS, "Registering camreach's SSH key with DigitalOcean")
        key = await identity.client_key(self._secrets)
        do_key = await do.ensure_ssh_key("camreach", identity.client_public_key(key))

        await ctx.step(3, STEPS, "Preparing WireGuard keys")
        site_id, spec, server_cfg = await self._server_config(site_name)

        tag = site_tag(site_id)
        existing = await do.find_droplets_by_tag(tag)
        if existing:
            droplet = min(existing, key=lambda d: d.id)
            await ctx.step(4, STEPS, f"Found the site's droplet {droplet.name} (#{droplet.id})")
        else:
            price = await do.monthly_price(spec.droplet.size)
            await ctx.step(4, STEPS, f"Creating droplet {droplet_name(site_name)}: "
                           f"{spec.droplet.size} in {spec.droplet.region}, ${price:g}/month")
            droplet = await do.create_droplet(
                droplet_name(site_name), spec.droplet.region, spec.droplet.size,
                spec.droplet.image, [do_key.id], ["camreach", tag],
                render_user_data(server_cfg),
            )
        await self._record(site_id, spec, droplet)

        await ctx.step(5, STEPS, "Waiting for the droplet to start")
        droplet = await do.wait_active(droplet.id, ctx.note, timeout=self.timing.active_timeout)
        await self._record(site_id, spec, droplet)

        await ctx.step(6, STEPS, f"Waiting for SSH and first-boot setup on {droplet.public_ipv4}")
        await self._wait_ready(ctx, site_name)
        return (f"Droplet {droplet.name} at {droplet.public_ipv4} is ready: WireGuard listens on "
                f"UDP {spec.vpn.port}. Next: {action('router connect', site_name)}, then "
                f"{action('router push', site_name)}.")

    async def _server_config(self, site_name: str) -> tuple[int, SiteSpec, ServerConfig]:
        async with self._sessions.begin() as s:
            site = await _site(s, site_name)
            spec = SiteSpec.model_validate(site.spec)
            (_, server_key), (router, _) = await ensure_site_keys(s, self._box, site, spec)
            phones = (
                await s.execute(select(VpnPeer).where(VpnPeer.site_id == site.id,
                                                      VpnPeer.kind == PeerKind.PHONE))
            ).scalars().all()
            return site.id, spec, server_config(spec, server_key, router, list(phones))

    async def _record(self, site_id: int, spec: SiteSpec, info: DropletInfo) -> None:
        async with self._sessions.begin() as s:
            row = (
                await s.execute(select(Droplet).where(Droplet.site_id == site_id))
            ).scalar_one_or_none()
            if row is None:
                row = Droplet(site_id=site_id, name=info.name, region=info.region,
                              size=info.size, image=spec.droplet.image)
                s.add(row)
            if row.do_id != info.id:
                row.ssh_host_key = None  # a different machine: pin afresh
            row.do_id, row.name, row.status = info.id, info.name, info.status
            row.region, row.size = info.region, info.size
            row.public_ipv4 = info.public_ipv4
            row.price_monthly = info.price_monthly

    async def _wait_ready(self, ctx: OpContext, site_name: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timing.ssh_timeout + self.timing.boot_timeout
        last: Exception | None = None
        while loop.time() < deadline:
            try:
                async with self.session(site_name) as conn:
                    res = await conn.run(BOOT_CHECK, check=False, timeout=30)
                    if res.ok:
                        return
                    await ctx.note("SSH works; waiting for the first-boot setup to finish")
            except (Unreachable, AuthRejected) as exc:
                # While booting, sshd may be down or root's key not installed yet.
                last = exc
                await ctx.note("Waiting for SSH on the droplet")
            await asyncio.sleep(self.timing.poll)
        if last is not None:
            raise Unreachable(
                f"The droplet did not accept SSH in time ({getattr(last, 'user_message', last)})."
                " It may still be booting: retry in a few minutes."
            ) from last
        raise Unreachable(
            "The droplet's first-boot setup did not finish in time (WireGuard is not up). "
            "Retry later; if it keeps failing, destroy the droplet and provision again."
        )

    # -- reaching the droplet ------------------------------------------------------
    @asynccontextmanager
    async def session(self, site_name: str) -> AsyncIterator[SshConnection]:
        """SSH to the site's droplet as root, pinning its host key on first contact."""
        async with self._sessions() as s:
            site = await _site(s, site_name)
            d = site.droplet
            if d is None or not d.public_ipv4:
                raise NotFound(f"Site {site_name} has no droplet yet. Run "
                               f"{action('setup', site_name)} first.")
            pinned, address, droplet_id = d.ssh_host_key, d.public_ipv4, d.id
        key = await identity.client_key(self._secrets)
        target = SshTarget(address, 22, "root", f"the droplet of {site_name}", pinned, key,
                           connect_timeout=self.timing.ssh_connect)
        async with ssh_session(target) as conn:
            if pinned is None:
                async with self._sessions.begin() as s:
                    row = await s.get(Droplet, droplet_id)
                    if row is not None:
                        row.ssh_host_key = conn.host_key
            yield conn

    # -- destroying ----------------------------------------------------------------
    async def describe(self, site_name: str) -> Droplet:
        async with self._sessions() as s:
            site = await _site(s, site_name)
            if site.droplet is None:
                raise NotFound(f"Site {site_name} has no droplet.")
            return site.droplet

    async def view(self, site_name: str) -> DropletView | None:
        """The site's droplet as a plain view, or None when it has none."""
        try:
            row = await self.describe(site_name)
        except NotFound:
            if site_name not in await _site_names(self._sessions):
                raise
            return None
        return DropletView(name=row.name, do_id=row.do_id, region=row.region, size=row.size,
                           status=row.status, public_ipv4=row.public_ipv4,
                           price_monthly=row.price_monthly)

    async def destroy(self, ctx: OpContext, site_name: str) -> str:
        """The ``destroy_droplet`` operation: delete by id, then forget it in the database."""
        row = await self.describe(site_name)
        if row.do_id is None:
            raise OperatorError(f"Site {site_name}'s droplet was never created.")
        await ctx.step(1, 2, f"Deleting droplet {row.name} (#{row.do_id})")
        do = await self.client()
        await do.destroy_droplet(row.do_id, missing_ok=True)
        await ctx.step(2, 2, "Updating the database")
        async with self._sessions.begin() as s:
            current = await s.get(Droplet, row.id)
            if current is not None:
                await s.delete(current)
        return f"Droplet {row.name} is deleted; it costs nothing from now on."


def server_config(
    spec: SiteSpec, server_private: str, router: VpnPeer, phones: list[VpnPeer]
) -> ServerConfig:
    """The droplet's WireGuard server: the router routes the site LAN, phones get a /32."""
    prefix = spec.vpn.subnet.prefixlen
    peers = [router_peer("router", router.public_key,
                         ipaddress.IPv4Address(router.tunnel_address), [spec.router.lan_subnet])]
    peers += [device_peer(p.name, p.public_key, ipaddress.IPv4Address(p.tunnel_address))
              for p in phones]
    return ServerConfig(
        private_key=server_private,
        address=ipaddress.IPv4Interface(f"{spec.vpn.server_address}/{prefix}"),
        listen_port=spec.vpn.port,
        peers=tuple(peers),
    )


async def _site(s: AsyncSession, name: str) -> Site:
    site = (
        await s.execute(
            select(Site).where(Site.name == name).options(selectinload(Site.droplet))
        )
    ).scalar_one_or_none()
    if site is None:
        raise NotFound(f"There is no site named {name!r}.")
    return site

