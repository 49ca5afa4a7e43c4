"""Provisioning the site's droplet as a WireGuard server, reaching it, and destroying it.

Exactly one droplet per site, whatever happens: before creating, camreach looks the droplet
up by its site tag, so a repeated apply, or one after a crash between DigitalOcean's create
call and the database write, adopts the droplet that exists instead of paying for a second.

The droplet's SSH host key is never learned over the network: camreach generates the pair for
each create call, stores the private half as a secret of the site (encrypted like the others),
hands the pair to the droplet in its user data and pins the public half with the droplet's
record, so the first connection already verifies it. A retry that adopts the droplet the
create call made keeps that pair; a new droplet (after a destroy) gets a new one. Pins are
never cleared: a droplet id new to the record is pinned to the key camreach gave that droplet.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import shlex
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bot.actions import action
from bot.adapters.digitalocean import (
    DigitalOceanClient,
    DropletInfo,
    ImageInfo,
    RegionInfo,
    SizeInfo,
    _image_info,
)
from bot.adapters.ssh import SshConnection, SshTarget, host_key_mismatch, ssh_session
from bot.crypto import SecretBox
from bot.db.models import Droplet, PeerKind, Site, VpnPeer
from bot.errors import (
    AuthRejected,
    CamreachError,
    NotFound,
    OperatorError,
    Unreachable,
    ValidationFailed,
)
from bot.operations import OpContext
from bot.render.cloud_init import render_user_data
from bot.render.model import ServerConfig
from bot.render.wg_conf import device_peer, router_peer
from bot.services import identity, sites
from bot.services.secrets import SecretStore, get_secret
from bot.services.vpn_keys import ensure_site_keys
from bot.site import DropletSpec, SiteSpec
from bot.sshkeys import HostKeyPair

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


def host_key_secret_name(site: str) -> str:
    """The secret holding the private half of the SSH host key camreach gave the site's
    droplet; under the site's ``site:<name>:`` prefix, so it goes when the site does."""
    return f"site:{site}:droplet-host-key"


def droplet_key_mismatch(site_name: str, where: str, given: str, presented: str) -> str:
    """What to say when the droplet presents a host key other than the one camreach gave it."""
    return (
        f"The droplet of {site_name} ({where}) answered with a host key other than the one "
        f"camreach gave it (camreach gave it {given}, it presented {presented}): someone else "
        "may be answering at that address. camreach sent nothing. If you rebuilt the droplet "
        f"or changed its host key yourself, delete it with {action('site destroy', site_name)} "
        f"and create it again with {action('setup', site_name)}; otherwise find out who "
        f"answers at {where} before using this site."
    )


async def pin_host_key(
    sessions: async_sessionmaker[AsyncSession], droplet_id: int, do_id: int | None, key: str
) -> str | None:
    """Pin ``key`` on the droplet row unless one is pinned already; the key pinned afterwards
    (None when the row is gone or records another droplet now).

    Compare-and-set, decided by the database (``UPDATE … WHERE ssh_host_key IS NULL``): of two
    connections pinning at once exactly one wins and the other reads the winner's key. A
    PostgreSQL update waiting on the winner's row lock re-checks the condition once it
    commits; SQLite writers take the database lock in turn.
    """
    async with sessions.begin() as s:
        await s.execute(
            update(Droplet)
            .where(Droplet.id == droplet_id, Droplet.do_id == do_id,
                   Droplet.ssh_host_key.is_(None))
            .values(ssh_host_key=key)
            .execution_options(synchronize_session=False)
        )
        return (await s.execute(
            select(Droplet.ssh_host_key).where(Droplet.id == droplet_id, Droplet.do_id == do_id)
        )).scalar_one_or_none()


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


@dataclass(frozen=True)
class RouterPeer:
    """The router's peer on the site's WireGuard server."""

    public_key: str
    address: str  # its tunnel address


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
            try:
                price = await do.monthly_price(spec.droplet.size)
                await ctx.step(4, STEPS, f"Creating droplet {droplet_name(site_name)}: "
                               f"{spec.droplet.size} in {spec.droplet.region}, ${price:g}/month")
                # A new machine, a new host key, stored before DigitalOcean hears of it: a
                # crash after the create call leaves the key for the retry that adopts it.
                host_key = await self._new_host_key(site_name)
                droplet = await do.create_droplet(
                    droplet_name(site_name), spec.droplet.region, spec.droplet.size,
                    spec.droplet.image, [do_key.id], ["camreach", tag],
                    render_user_data(server_cfg, host_key=host_key),
                )
            except (ValidationFailed, NotFound) as exc:  # refused (422), or no such size
                said = await self._undo_refused_apply(ctx, do, site_name, tag)
                if said is None:
                    raise
                raise ValidationFailed(f"{exc.user_message} {said}", detail=exc.detail) from exc
        await self._record(site_id, site_name, spec, droplet)

        await ctx.step(5, STEPS, "Waiting for the droplet to start")
        droplet = await do.wait_active(droplet.id, ctx.note, timeout=self.timing.active_timeout)
        await self._record(site_id, site_name, spec, droplet)

        await ctx.step(6, STEPS, f"Waiting for SSH and first-boot setup on {droplet.public_ipv4}")
        await self._wait_ready(ctx, site_name)
        return (f"Droplet {droplet.name} at {droplet.public_ipv4} is ready: WireGuard listens on "
                f"UDP {spec.vpn.port}. Next: {action('router connect', site_name)}, then "
                f"{action('router push', site_name)}.")

    async def _undo_refused_apply(self, ctx: OpContext, do: DigitalOceanClient, site_name: str,
                                  tag: str) -> str | None:
        """DigitalOcean refused the droplet: undo the apply that started this run, if one did
        (its record is in the params), so a refused apply stores nothing. Only once it is sure
        that no droplet of the site exists; None when nothing was undone."""
        record = ctx.params.get(sites.UNDO_PARAM)
        if not isinstance(record, dict):
            return None
        try:
            if await do.find_droplets_by_tag(tag):
                return None
        except CamreachError as exc:
            log.warning("site %s: not undoing the apply, the droplets could not be listed: %s",
                        site_name, exc.user_message)
            return None
        return await sites.undo_apply(self._sessions, site_name, record)

    # -- checking a droplet choice -------------------------------------------------------
    async def check_choice(self, site_name: str, choice: DropletSpec) -> None:
        """Raise ValidationFailed unless DigitalOcean sells this region, size and image now,
        naming each field that is wrong and what would do instead.

        A site whose droplet exists is not checked: provisioning adopts that droplet and
        creates nothing, and a size DigitalOcean has stopped selling must not block an apply.
        """
        async with self._sessions() as s:
            has_droplet = (await s.execute(
                select(Droplet.id).join(Site, Site.id == Droplet.site_id)
                .where(Site.name == site_name, Droplet.do_id.is_not(None))
            )).first() is not None
        if has_droplet:
            return
        do = await self.client()
        regions = await do.list_regions()
        sizes = await do.list_sizes()
        images = await _distribution_images(do)
        problems = droplet_choice_problems(choice, regions, sizes, images)
        if problems:
            raise ValidationFailed(
                "DigitalOcean does not offer this droplet (nothing was stored):\n"
                + "\n".join(f"- {path}: {msg}" for path, msg in problems)
            )

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

    async def _new_host_key(self, site_name: str) -> HostKeyPair:
        """A fresh host key pair for the droplet about to be created, replacing the site's
        previous one (that droplet is gone: none was found by the site's tag)."""
        pair = HostKeyPair.generate()
        await self._secrets.put(host_key_secret_name(site_name), pair.private_openssh)
        return pair

    async def _given_host_key(self, s: AsyncSession, site_name: str) -> HostKeyPair | None:
        """The host key pair camreach gave the site's droplet in its user data, if any."""
        private = await get_secret(s, self._box, host_key_secret_name(site_name))
        return HostKeyPair.from_private(private) if private is not None else None

    async def _record(self, site_id: int, site_name: str, spec: SiteSpec,
                      info: DropletInfo) -> None:
        async with self._sessions.begin() as s:
            row = (
                await s.execute(select(Droplet).where(Droplet.site_id == site_id))
            ).scalar_one_or_none()
            if row is None:
                row = Droplet(site_id=site_id, name=info.name, region=info.region,
                              size=info.size, image=spec.droplet.image)
                s.add(row)
            if row.do_id != info.id:
                # A droplet this record has not held: the one the last create call made (the
                # only droplet of the site, found by its tag), so its key is the one that call
                # put in its user data. Pinned before anything connects to it.
                given = await self._given_host_key(s, site_name)
                if given is not None:
                    row.ssh_host_key = given.public
                elif row.ssh_host_key is not None:
                    # Made before camreach gave droplets their keys: nothing is known about
                    # this one's key, and the old pin is not cleared; a connection is refused.
                    log.warning("site %s: droplet #%s has no host key from camreach; keeping "
                                "the pin of droplet #%s", site_name, info.id, row.do_id)
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
                # While booting, sshd may be down or root's key not installed yet. A host key
                # other than the one camreach gave the droplet is not waited out: sshd starts
                # only after cloud-init wrote that key, so another key is another machine.
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
        """SSH to the site's droplet as root; its host key must be the pinned one, which is
        the key camreach gave it. asyncssh checks the key before logging in, so a droplet
        that fails the check is sent nothing.

        Only a droplet recorded before camreach made droplet host keys can lack a pin; its
        key is pinned on first contact, compare-and-set (see :func:`pin_host_key`).
        """
        async with self._sessions() as s:
            site = await _site(s, site_name)
            d = site.droplet
            if d is None or not d.public_ipv4:
                raise NotFound(f"Site {site_name} has no droplet yet. Run "
                               f"{action('setup', site_name)} first.")
            pinned, address, droplet_id, do_id = d.ssh_host_key, d.public_ipv4, d.id, d.do_id
            given = await self._given_host_key(s, site_name) if pinned is not None else None
        key = await identity.client_key(self._secrets)
        # The droplet's own wording when the pin is the key camreach gave it; else the
        # adapter's, about a key pinned on first contact.
        mismatch = (partial(droplet_key_mismatch, site_name, f"{address}:22")
                    if given is not None and given.public == pinned else None)
        target = SshTarget(address, 22, "root", f"the droplet of {site_name}", pinned, key,
                           connect_timeout=self.timing.ssh_connect, mismatch_message=mismatch)
        async with ssh_session(target) as conn:
            if pinned is None:
                log.warning("site %s: the droplet has no pinned host key (it was recorded "
                            "before camreach gave droplets their keys); pinning the one it "
                            "presents", site_name)
                winner = await pin_host_key(self._sessions, droplet_id, do_id, conn.host_key)
                if winner is None:
                    raise NotFound(f"The droplet record of {site_name} changed meanwhile; "
                                   "nothing was done. Try again.")
                if winner != conn.host_key:
                    # Another connection pinned a different key meanwhile: this one, which
                    # presented another key, is not used (nothing was run over it).
                    raise host_key_mismatch(replace(target, pinned_host_key=winner),
                                            conn.raw.get_server_host_key())
            yield conn

    async def router_peer(self, site_name: str) -> RouterPeer | None:
        """The router's public key and tunnel address on the droplet's wg0 (made with the
        site's keys); None before they exist."""
        async with self._sessions() as s:
            row = (await s.execute(
                select(VpnPeer).join(Site, Site.id == VpnPeer.site_id)
                .where(Site.name == site_name, VpnPeer.kind == PeerKind.ROUTER)
            )).scalars().first()
            return RouterPeer(row.public_key, row.tunnel_address) if row is not None else None

    async def sync_router_lan(self, site_name: str) -> bool:
        """Route the site's LAN (``router.lan_subnet``, which /setup may change after the
        droplet was made) to the router on the droplet: live (``wg set``, the route) and in
        ``wg0.conf``. True when something changed; nothing is done before the droplet runs."""
        d = await self.view(site_name)
        peer = await self.router_peer(site_name)
        if d is None or not d.public_ipv4 or peer is None:
            return False
        spec = await sites.get_spec(self._sessions, site_name)
        allowed = f"{peer.address}/32,{spec.router.lan_subnet}"
        async with self.session(site_name) as conn:
            res = await conn.run(" ".join([
                "sh", "-c", shlex.quote(_SYNC_LAN), "camreach-sync-lan",
                shlex.quote(peer.public_key), shlex.quote(allowed),
                shlex.quote(str(spec.router.lan_subnet))]))
            if res.stdout.strip().endswith("same"):
                return False
            current = await conn.read_file(WG_CONF)
            if current is not None:
                await conn.write_file(WG_CONF, _with_allowed_ips(current, peer.public_key,
                                                                 allowed).encode(), mode=0o600)
        log.info("site %s: the droplet now routes %s to the router", site_name,
                 spec.router.lan_subnet)
        return True

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


def droplet_choice_problems(
    choice: DropletSpec, regions: list[RegionInfo], sizes: list[SizeInfo],
    images: list[ImageInfo],
) -> list[tuple[str, str]]:
    """What is wrong with ``choice`` against DigitalOcean's live lists, as (field, message)."""
    problems: list[tuple[str, str]] = []
    region = next((r for r in regions if r.slug == choice.region), None)
    size = next((z for z in sizes if z.slug == choice.size), None)

    def offering(z: SizeInfo) -> list[str]:
        return sorted(r.slug for r in regions
                      if r.available and z.slug in r.sizes and r.slug in z.regions)

    def sold_in(r: RegionInfo) -> str:
        here = sorted((z for z in sizes if z.available and z.slug in r.sizes
                       and r.slug in z.regions), key=lambda z: (z.price_monthly, z.slug))
        return ", ".join(f"{z.slug} (${z.price_monthly:g}/month)" for z in here) or "none"

    if region is None or not region.available:
        where = (f"regions that offer {size.slug}: {', '.join(offering(size)) or 'none'}"
                 if size is not None and size.available
                 else "open regions: " + ", ".join(sorted(r.slug for r in regions
                                                          if r.available)))
        why = ("DigitalOcean has no region" if region is None
               else "DigitalOcean takes no new droplets in")
        problems.append(("droplet.region", f"{why} {choice.region!r}; {where}"))
    if size is None or not size.available:
        why = "DigitalOcean has no droplet size" if size is None else "DigitalOcean no longer sells"
        where = (f"sizes sold in {region.slug}: {sold_in(region)}"
                 if region is not None and region.available
                 else "sizes: " + ", ".join(z.slug for z in sorted(
                     (z for z in sizes if z.available), key=lambda z: (z.price_monthly, z.slug))))
        problems.append(("droplet.size", f"{why} {choice.size!r}; {where}"))
    elif region is not None and region.available and choice.region not in offering(size):
        others = ", ".join(offering(size)) or "none"
        problems.append(("droplet.size", (
            f"{choice.size} is not offered in {choice.region}. Regions that offer "
            f"{choice.size}: {others}. Sizes sold in {choice.region}: {sold_in(region)}")))
    image = next((i for i in images if i.slug == choice.image), None)
    if image is None:
        listed = ", ".join(sorted(i.slug for i in images if i.slug)) or "none"
        problems.append(("droplet.image", f"DigitalOcean has no distribution image "
                                          f"{choice.image!r}; images: {listed}"))
    elif region is not None and image.regions and choice.region not in image.regions:
        problems.append(("droplet.image", f"{choice.image} is not available in "
                                          f"{choice.region}; it is in "
                                          f"{', '.join(sorted(image.regions))}"))
    return problems


async def _distribution_images(do: DigitalOceanClient) -> list[ImageInfo]:
    """DigitalOcean's public distribution images (the ones a site can name), available now.

    Through the adapter's own call machinery (token check, retries, error mapping), which has
    no public image listing yet; this belongs in DigitalOceanClient as ``list_images``.
    """

    def work(lib: Any) -> list[ImageInfo]:
        return [
            _image_info(vars(i)) for i in lib.manager().get_distro_images()
            if getattr(i, "status", None) in (None, "available")
        ]

    return await do._call("list distribution images", work)


WG_CONF = "/etc/wireguard/wg0.conf"
# Idempotent: the router peer's allowed IPs and the LAN's route through wg0 (wg-quick adds
# routes only when the interface comes up), old LAN routes through wg0 dropped.
_SYNC_LAN = r"""
key=$1; allowed=$2; lan=$3
now=$(wg show wg0 allowed-ips | awk -v k="$key" '$1 == k {$1=""; print}' | tr ' ' '\n' |
      grep . | sort | tr '\n' ',')
want=$(echo "$allowed" | tr ',' '\n' | sort | tr '\n' ',')
if [ "$now" = "$want" ] && ip route show "$lan" dev wg0 | grep -q .; then echo same; exit 0; fi
wg set wg0 peer "$key" allowed-ips "$allowed"
ip route show dev wg0 | grep -v 'proto kernel' | awk '$1 ~ /\/[0-9]+$/ {print $1}' |
while read -r net; do
  case ",$allowed," in *",$net,"*) ;; *) ip route del "$net" dev wg0 ;; esac
done
ip route replace "$lan" dev wg0
echo changed
"""


def _with_allowed_ips(conf: str, public_key: str, allowed: str) -> str:
    """``wg0.conf`` with the AllowedIPs of the peer ``public_key`` replaced."""
    out: list[str] = []
    in_peer = False
    for line in conf.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            in_peer = False
        if stripped.replace(" ", "") == f"PublicKey={public_key}":
            in_peer = True
        if in_peer and stripped.replace(" ", "").startswith("AllowedIPs="):
            line = f"AllowedIPs = {allowed.replace(',', ', ')}"
        out.append(line)
    return "\n".join(out) + ("\n" if conf.endswith("\n") else "")


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

