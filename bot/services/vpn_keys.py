"""The site's WireGuard identities: server and router peers with their keys."""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.crypto import SecretBox
from bot.db.models import PeerKind, Site, VpnPeer
from bot.services.secrets import get_secret, put_secret
from bot.site import SiteSpec
from bot.wgkeys import generate_private_key, public_key


def key_secret_name(site: str, peer: str) -> str:
    return f"site:{site}:wg:{peer}"


async def ensure_peer(
    s: AsyncSession,
    box: SecretBox,
    site: Site,
    name: str,
    kind: PeerKind,
    address: ipaddress.IPv4Address,
) -> tuple[VpnPeer, str]:
    """The peer row and its private key, created on first use (idempotent)."""
    secret = key_secret_name(site.name, name)
    peer = (
        await s.execute(select(VpnPeer).where(VpnPeer.site_id == site.id, VpnPeer.name == name))
    ).scalar_one_or_none()
    private = await get_secret(s, box, secret)
    if private is None:
        private = generate_private_key()
        await put_secret(s, box, secret, private)
    if peer is None:
        peer = VpnPeer(site_id=site.id, name=name, kind=kind, tunnel_address=str(address),
                       public_key=public_key(private), private_key_secret=secret)
        s.add(peer)
        await s.flush()
    return peer, private


async def ensure_site_keys(
    s: AsyncSession, box: SecretBox, site: Site, spec: SiteSpec
) -> tuple[tuple[VpnPeer, str], tuple[VpnPeer, str]]:
    """Server (first address of the VPN subnet) and router (second) identities."""
    server = await ensure_peer(s, box, site, "server", PeerKind.SERVER, spec.vpn.server_address)
    router = await ensure_peer(s, box, site, "router", PeerKind.ROUTER, spec.vpn.router_address)
    return server, router
