"""The router's WireGuard client: ``network.wg0`` and its ``wireguard_wg0`` peer section.

Option names are those ``lib/netifd/proto/wireguard.sh`` (OpenWrt 23.05) reads: on the
interface ``private_key``, ``listen_port``, ``addresses``, ``mtu``; on the peer
``public_key``, ``preshared_key``, ``allowed_ips``, ``route_allowed_ips``, ``endpoint_host``,
``endpoint_port``, ``persistent_keepalive`` (and ``description``, which LuCI shows).
"""

from __future__ import annotations

from bot.render.model import RouterWireguard
from bot.render.uci import UciSection, UciValue

__all__ = ["PEER_SECTION", "router_wireguard_sections"]

# The droplet peer's section name; camreach owns it and recreates it on every apply.
PEER_SECTION = "camreach_droplet"


def router_wireguard_sections(cfg: RouterWireguard) -> list[UciSection]:
    iface: dict[str, UciValue] = {
        "proto": "wireguard",
        "private_key": cfg.private_key,
        "addresses": [str(cfg.address)],
        "mtu": cfg.mtu,
    }
    if cfg.listen_port is not None:
        iface["listen_port"] = cfg.listen_port
    peer: dict[str, UciValue] = {
        "description": cfg.description,
        "public_key": cfg.server_public_key,
    }
    if cfg.preshared_key is not None:
        peer["preshared_key"] = cfg.preshared_key
    peer.update(
        {
            "endpoint_host": cfg.endpoint_host,
            "endpoint_port": cfg.endpoint_port,
            # Only the tunnel: phones and the droplet live there. The router's own uplink
            # stays on the modem (no 0.0.0.0/0 here).
            "allowed_ips": [str(cfg.address.network)],
            # netifd adds the routes for allowed_ips, so replies to phones go into wg0.
            "route_allowed_ips": True,
            # The router sits behind carrier-grade NAT: keepalives hold the mapping open so
            # the droplet can reach it at any time.
            "persistent_keepalive": cfg.keepalive,
        }
    )
    return [
        UciSection("network", "interface", cfg.interface, iface),
        UciSection("network", f"wireguard_{cfg.interface}", PEER_SECTION, peer),
    ]
