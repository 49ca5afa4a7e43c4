"""VPN peers (phones, laptops) on the site's droplet: add, list, remove.

The live interface is changed with ``wg set`` and ``/etc/wireguard/wg0.conf`` is rewritten
with the same change, so a reboot keeps it. The database is written last, only after the
droplet has taken the change. Peers found on the server that the database does not know are
reported and left alone: they may be someone's working phone.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bot.actions import action
from bot.adapters.ssh import SshConnection
from bot.crypto import SecretBox
from bot.db.models import PeerKind, Secret, Site, VpnPeer
from bot.errors import NotFound, RemoteFailed, ValidationFailed
from bot.render.model import ClientConfig
from bot.render.qr import qr_png
from bot.render.wg_conf import (
    add_peer,
    check_server_conf,
    client_conf,
    device_peer,
    next_free_address,
    parse_server_peers,
    remove_peer,
)
from bot.services.droplets import DropletService
from bot.services.secrets import SecretStore
from bot.services.vpn_keys import key_secret_name
from bot.site import SiteSpec, valid_name
from bot.wgkeys import generate_private_key, public_key

WG_CONF = "/etc/wireguard/wg0.conf"


@dataclass(frozen=True)
class NewPeer:
    name: str
    address: str
    config: str  # the client's wg-quick file: holds its private key, send it and forget it
    qr_png: bytes


@dataclass(frozen=True)
class PeerStatus:
    name: str | None  # None: on the server but unknown to camreach
    kind: str
    address: str
    public_key: str
    endpoint: str | None
    latest_handshake: datetime | None
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class DumpPeer:
    public_key: str
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    latest_handshake: datetime | None
    rx_bytes: int
    tx_bytes: int


def parse_wg_dump(text: str) -> list[DumpPeer]:
    """Parse ``wg show wg0 dump``: a line for the interface, then one per peer (tab-separated)."""
    peers = []
    for line in text.strip().splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) < 8:
            continue
        handshake = int(cols[4]) if cols[4].isdigit() else 0
        peers.append(DumpPeer(
            public_key=cols[0],
            endpoint=None if cols[2] == "(none)" else cols[2],
            allowed_ips=tuple(a for a in cols[3].split(",") if a and a != "(none)"),
            latest_handshake=datetime.fromtimestamp(handshake, UTC) if handshake else None,
            rx_bytes=int(cols[5]) if cols[5].isdigit() else 0,
            tx_bytes=int(cols[6]) if cols[6].isdigit() else 0,
        ))
    return peers


class PeerService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], secrets: SecretStore,
                 droplets: DropletService) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._droplets = droplets

    @property
    def _box(self) -> SecretBox:
        return self._secrets.box

    async def add(self, site_name: str, name: str, *, dns: str | None = None) -> NewPeer:
        """A new phone or laptop: its own key pair, an address no peer uses (in the database
        or live on the server), the server changed live and in ``wg0.conf`` in one step.

        The private key exists only in the returned config: camreach keeps no copy, so a lost
        config is replaced by a new key pair (remove the peer, add it again), never re-sent.
        """
        if not valid_name(name) or name in ("server", "router"):
            raise ValidationFailed(
                f"{name!r} cannot name a peer: use letters, digits and '-' (e.g. anna-phone)."
            )
        if dns is not None:
            try:
                ipaddress.IPv4Address(dns)
            except ValueError:
                raise ValidationFailed(f"{dns!r} is not an IPv4 address for DNS.") from None
        async with self._sessions() as s:
            site, spec = await _site(s, site_name)
            if any(p.name == name for p in site.peers):
                raise ValidationFailed(
                    f"{site_name} already has a peer named {name!r}. camreach keeps no copy of "
                    f"its private key: {action('peer remove', name, site_name)} and add it "
                    "again for a new config (the old one stops working).")
            server = next((p for p in site.peers if p.kind is PeerKind.SERVER), None)
            if server is None or site.droplet is None or not site.droplet.public_ipv4:
                raise NotFound(f"Site {site_name} has no VPN server yet. Run "
                               f"{action('setup', site_name)} first.")
            site_id, endpoint, server_public = site.id, site.droplet.public_ipv4, server.public_key
        private = generate_private_key()
        public = public_key(private)
        reserved = {spec.vpn.server_address, spec.vpn.router_address}
        async with self._droplets.session(site_name) as conn:
            for _ in range(ADD_ATTEMPTS):
                conf = await conn.read_file(WG_CONF)
                if conf is None:
                    raise RemoteFailed(f"{WG_CONF} is missing on the droplet; provision it again.")
                live = parse_wg_dump((await conn.run("wg show wg0 dump")).stdout)
                address = await self._reserve(site_id, name, public, spec.vpn.subnet,
                                              reserved, _live_addresses(live, conf))
                try:
                    new_conf = add_peer(conf, device_peer(name, public, address))
                    check_server_conf(new_conf)
                except ValidationFailed as exc:
                    await self._release(site_id, name)
                    raise ValidationFailed(
                        f"The droplet's {WG_CONF} would not be valid with the new peer, so "
                        f"nothing was changed: {exc.user_message}") from exc
                try:
                    outcome = await _apply_peer(conn, public, address, conf, new_conf)
                except BaseException:
                    # No answer: the server may or may not have it. Its address stays out of
                    # reach anyway (live peers are never given away), and the row goes.
                    await self._release(site_id, name)
                    raise
                if outcome == "ok":
                    break
                await self._release(site_id, name)  # the server said no: nothing stays
                if outcome != "changed":  # "changed": another add won the race; again
                    raise RemoteFailed(f"The droplet refused the new peer ({outcome}); nothing "
                                       "was changed.")
            else:
                raise RemoteFailed("The droplet's WireGuard config kept changing; try again.")

        config = client_conf(ClientConfig(
            private_key=private,
            address=address,
            server_public_key=server_public,
            endpoint_host=endpoint,
            endpoint_port=spec.vpn.port,
            vpn_subnet=spec.vpn.subnet,
            lan_subnets=(spec.router.lan_subnet,),
            dns=(ipaddress.IPv4Address(dns),) if dns else (),
        ))
        # Pillow's PNG encoder is CPU work: keep it off the event loop.
        return NewPeer(name, str(address), config, await asyncio.to_thread(qr_png, config))

    async def _reserve(self, site_id: int, name: str, public: str, subnet: IPv4Network,
                       reserved: set[IPv4Address], live: set[IPv4Address]) -> IPv4Address:
        """Claim the lowest free address with a database row: the unique index on (site,
        address) makes two adds at once (the bot and a CLI) end with two addresses."""
        taken = set(reserved) | live
        while True:
            async with self._sessions() as s:
                rows = (await s.execute(select(VpnPeer.tunnel_address)
                                        .where(VpnPeer.site_id == site_id))).scalars().all()
            taken |= {ipaddress.IPv4Address(a) for a in rows}
            address = next_free_address([], subnet, reserved=taken)
            try:
                async with self._sessions.begin() as s:
                    s.add(VpnPeer(site_id=site_id, name=name, kind=PeerKind.PHONE,
                                  tunnel_address=str(address), public_key=public,
                                  private_key_secret=None))
            except IntegrityError:
                async with self._sessions() as s:
                    same_name = (await s.execute(select(VpnPeer.id).where(
                        VpnPeer.site_id == site_id, VpnPeer.name == name))).first()
                if same_name is not None:
                    raise ValidationFailed(f"A peer named {name!r} was just added.") from None
                taken.add(address)  # someone else took it meanwhile: the next one
                continue
            return address

    async def _release(self, site_id: int, name: str) -> None:
        async with self._sessions.begin() as s:
            await s.execute(delete(VpnPeer).where(VpnPeer.site_id == site_id,
                                                  VpnPeer.name == name))

    async def list(self, site_name: str) -> list[PeerStatus]:
        async with self._sessions() as s:
            site, _ = await _site(s, site_name)
            known = {p.public_key: p for p in site.peers if p.kind is not PeerKind.SERVER}
        async with self._droplets.session(site_name) as conn:
            dump = parse_wg_dump((await conn.run("wg show wg0 dump")).stdout)
        live = {d.public_key: d for d in dump}
        rows = []
        for key, peer in known.items():
            d = live.get(key)
            rows.append(PeerStatus(peer.name, peer.kind.value, peer.tunnel_address, key,
                                   d.endpoint if d else None, d.latest_handshake if d else None,
                                   d.rx_bytes if d else 0, d.tx_bytes if d else 0))
        for key, d in live.items():
            if key not in known:
                address = d.allowed_ips[0].split("/")[0] if d.allowed_ips else "?"
                rows.append(PeerStatus(None, "unknown", address, key, d.endpoint,
                                       d.latest_handshake, d.rx_bytes, d.tx_bytes))
        return rows

    async def remove(self, site_name: str, name: str) -> None:
        async with self._sessions() as s:
            site, _ = await _site(s, site_name)
            peer = next((p for p in site.peers if p.name == name), None)
            if peer is None:
                raise NotFound(f"{site_name} has no peer named {name!r}. "
                               f"{action('peer list', site_name)} shows them.")
            if peer.kind is not PeerKind.PHONE:
                raise ValidationFailed(f"{name!r} is part of the site's tunnel; it stays.")
            public, peer_id = peer.public_key, peer.id
        async with self._droplets.session(site_name) as conn:
            await _wg_set(conn, f"peer {shlex.quote(public)} remove")
            await _rewrite_conf(conn, lambda text: remove_peer(text, public))
        async with self._sessions.begin() as s:
            await s.execute(delete(VpnPeer).where(VpnPeer.id == peer_id))
            await s.execute(delete(Secret).where(Secret.name == key_secret_name(site_name, name)))


ADD_ATTEMPTS = 5

# One round trip: check wg0.conf is what the new one was made from, validate the new one with
# wg-quick itself, then change the live interface and persist; undo the live change if the
# file cannot be replaced, so both or neither change.
_APPLY_PEER = r"""
umask 077
key=$1; addr=$2; want=$3
C=/etc/wireguard/wg0.conf
[ "$(md5sum < "$C" | cut -d' ' -f1)" = "$want" ] || { echo changed; exit 0; }
d=$(mktemp -d /etc/wireguard/.camreach.XXXXXX) || { echo no-temp; exit 0; }
trap 'rm -rf "$d"' EXIT
cat > "$d/wg0.conf"
wg-quick strip "$d/wg0.conf" > /dev/null 2>&1 || { echo invalid-config; exit 0; }
if wg show wg0 allowed-ips | grep -v "^$key" | tr ' 	' '

' | grep -qx "$addr/32"; then
	echo address-taken; exit 0
fi
wg set wg0 peer "$key" allowed-ips "$addr/32" || { echo live-change-failed; exit 0; }
if ! mv "$d/wg0.conf" "$C"; then
	wg set wg0 peer "$key" remove
	echo persist-failed; exit 0
fi
echo ok
"""


async def _apply_peer(conn: SshConnection, public: str, address: IPv4Address, old: str,
                      new_conf: str) -> str:
    command = " ".join(["sh", "-c", shlex.quote(_APPLY_PEER), "camreach-add-peer",
                        shlex.quote(public), shlex.quote(str(address)),
                        hashlib.md5(old.encode(), usedforsecurity=False).hexdigest()])
    res = await conn.run(command, input=new_conf.encode())
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else "no-answer"


def _live_addresses(live: list[DumpPeer], conf: str) -> set[IPv4Address]:
    """Addresses of the server's peers as it runs them and as wg0.conf lists them (a phone
    added by hand is someone's working phone: its address is never given away)."""
    found = {ipaddress.IPv4Network(a, strict=False) for d in live for a in d.allowed_ips}
    found |= {n for p in parse_server_peers(conf) for n in p.allowed_ips}
    return {n.network_address for n in found if n.prefixlen == 32}


async def _wg_set(conn: SshConnection, args: str) -> None:
    await conn.run(f"wg set wg0 {args}")


async def _rewrite_conf(conn: SshConnection, change: Callable[[str], str]) -> None:
    current = await conn.read_file(WG_CONF)
    if current is None:
        raise RemoteFailed(f"{WG_CONF} is missing on the droplet; provision it again.")
    await conn.write_file(WG_CONF, change(current).encode(), mode=0o600)


async def _site(s: AsyncSession, name: str) -> tuple[Site, SiteSpec]:
    site = (
        await s.execute(
            select(Site).where(Site.name == name)
            .options(selectinload(Site.peers), selectinload(Site.droplet))
        )
    ).scalar_one_or_none()
    if site is None:
        raise NotFound(f"There is no site named {name!r}.")
    return site, SiteSpec.model_validate(site.spec)
