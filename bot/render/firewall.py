"""camreach's firewall sections: a zone for the modem uplink and one for the tunnel.

Every section is a *named* ``camreach_*`` section, so a re-apply recreates exactly these
and never has to find OpenWrt's anonymous default sections (``@zone[1]``) by position.
The default ``wan`` zone is left alone: the modem interface gets camreach's own ``camwan``
zone with the same policy as OpenWrt's ``wan`` (input and forward REJECT, masquerade, MSS
clamping) plus a ``lan -> camwan`` forwarding so LAN hosts keep their Internet. Zone names
are at most 11 characters (LuCI's limit) and unlikely to clash with a hand-made ``vpn``.

Security choices:
- Nothing of the router (SSH, LuCI, DNS) is open on the modem side: ``camwan`` input REJECT,
  and no rule names it as a source. The WireGuard tunnel is dialled out from the router, so
  its replies pass as established traffic; no inbound port is opened.
- ``camvpn`` input is REJECT too, except SSH from ``ssh_from`` and ping. camreach's site
  config sets ``ssh_from`` to the droplet's tunnel address (/32) always: camreach manages the
  router from there (the droplet is its jump host), while a phone's packets keep the phone's
  own tunnel address through the droplet and are refused (fw4 answers a TCP reset). So no
  phone can try root passwords, and dropbear's password login is off anyway once camreach's
  key is in (``bot.router.access``). LuCI, DNS and everything else of the router stay
  unreachable over the tunnel, from the droplet too. SSH from the LAN is OpenWrt's own
  ``lan`` zone (input ACCEPT), untouched. ``ssh_from=None`` would open SSH to the whole
  tunnel subnet, phones included: only for tests on a bench.
- Ping (ICMP echo request only) stays open to the whole tunnel on purpose: it is how a phone
  tells "the site is offline" from "the camera is down", and what a health check of the
  tunnel can use; it opens no service and takes no password.
- ``camvpn -> lan`` forwarding lets the droplet and phones reach the camera; nothing
  forwards ``camvpn -> camwan``, so the router is no exit to the Internet for VPN clients.

No masquerade by default: the camera's default gateway is the router, and netifd routes
the tunnel subnet into wg0 (``route_allowed_ips``), so replies to 10.8.0.x return through
the tunnel with the phone's real address intact (camera logs stay meaningful).
``masquerade_to_lan`` adds an SNAT rule for cameras whose gateway is some other box
(they would send replies there); the camera then sees the router's LAN address instead.
"""

from __future__ import annotations

from bot.render.model import FirewallConfig
from bot.render.uci import UciSection, UciValue

__all__ = ["MODEM_ZONE", "VPN_ZONE", "firewall_sections"]

MODEM_ZONE = "camwan"
VPN_ZONE = "camvpn"


def _fw(type_: str, name: str, options: dict[str, UciValue]) -> UciSection:
    return UciSection("firewall", type_, name, options)


def firewall_sections(cfg: FirewallConfig) -> list[UciSection]:
    sections = [
        _fw(
            "zone",
            "camreach_modem",
            {
                "name": MODEM_ZONE,
                "network": [cfg.modem_interface],
                "input": "REJECT",
                "output": "ACCEPT",
                "forward": "REJECT",
                "masq": True,  # LTE gives one address; LAN traffic leaves as the router's
                "mtu_fix": True,
            },
        ),
    ]
    if cfg.lan_internet:
        sections.append(
            _fw("forwarding", "camreach_lan_modem", {"src": cfg.lan_zone, "dest": MODEM_ZONE})
        )
    ssh: dict[str, UciValue] = {"src": VPN_ZONE}
    if cfg.ssh_from is None:
        ssh = {"name": "camreach: SSH from the tunnel", **ssh}
    else:
        ssh = {"name": "camreach: SSH from the droplet", **ssh, "src_ip": str(cfg.ssh_from)}
    ssh.update({"proto": "tcp", "dest_port": cfg.ssh_port, "family": "ipv4", "target": "ACCEPT"})
    sections += [
        _fw(
            "zone",
            "camreach_vpn",
            {
                "name": VPN_ZONE,
                "network": [cfg.vpn_interface],
                "input": "REJECT",
                "output": "ACCEPT",
                "forward": "REJECT",
                # wg0's MTU is 1280: clamp TCP MSS so camera streams are not black-holed.
                "mtu_fix": True,
            },
        ),
        _fw("rule", "camreach_vpn_ssh", ssh),
        _fw(
            "rule",
            "camreach_vpn_ping",
            {
                "name": "camreach: ping from the tunnel",
                "src": VPN_ZONE,
                "proto": "icmp",
                "icmp_type": ["echo-request"],
                "family": "ipv4",
                "target": "ACCEPT",
            },
        ),
        _fw("forwarding", "camreach_vpn_lan", {"src": VPN_ZONE, "dest": cfg.lan_zone}),
    ]
    if cfg.masquerade_to_lan:
        sections.append(
            _fw(
                "nat",
                "camreach_vpn_masq",
                {
                    "name": "camreach: tunnel clients appear as the router on the LAN",
                    "family": "ipv4",
                    "proto": "all",
                    "src": cfg.lan_zone,  # fw4: the zone the packets leave through
                    "src_ip": str(cfg.vpn_subnet),
                    "dest_ip": str(cfg.lan_subnet),
                    "target": "MASQUERADE",
                },
            )
        )
    return sections
