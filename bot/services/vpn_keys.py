"""The site's WireGuard identities: server and router peers with their keys."""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.crypto import SecretBox
from bot.db.models import PeerKind, Site, VpnPeer
from bot.services.secrets import dialect_insert, get_or_create_secret
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
    """The peer row and its private key, created on first use (idempotent).

    Race-free across processes: two applies creating the site's keys at once both end with the
    one key and the one row the database kept (insert-or-nothing, then read back).
    """
    secret = key_secret_name(site.name, name)
    peer = await _peer(s, site.id, name)
    private = await get_or_create_secret(s, box, secret, generate_private_key)
    if peer is None:
        await s.execute(
            dialect_insert(s, VpnPeer)
            .values(site_id=site.id, name=name, kind=kind, tunnel_address=str(address),
                    public_key=public_key(private), private_key_secret=secret)
            .on_conflict_do_nothing(index_elements=[VpnPeer.site_id, VpnPeer.name])
        )
        peer = await _peer(s, site.id, name)
        if peer is None:  # inserted and deleted again by someone else meanwhile
            raise RuntimeError(f"peer {name!r} of site {site.name!r} vanished while created")
    return peer, private


async def _peer(s: AsyncSession, site_id: int, name: str) -> VpnPeer | None:
    return (
        await s.execute(select(VpnPeer).where(VpnPeer.site_id == site_id, VpnPeer.name == name))
    ).scalar_one_or_none()


async def ensure_site_keys(
    s: AsyncSession, box: SecretBox, site: Site, spec: SiteSpec
) -> tuple[tuple[VpnPeer, str], tuple[VpnPeer, str]]:
    """Server (first address of the VPN subnet) and router (second) identities."""
    server = await ensure_peer(s, box, site, "server", PeerKind.SERVER, spec.vpn.server_address)
    router = await ensure_peer(s, box, site, "router", PeerKind.ROUTER, spec.vpn.router_address)
    return server, router
