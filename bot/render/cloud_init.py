"""The droplet's cloud-init user data: a WireGuard server with a closed firewall.

Built as a Python structure and dumped with ``yaml.safe_dump``; no text is pasted together,
so no input (a peer name, say) can change the document's structure.

Firewall: nftables, not ufw. One declarative ruleset file, loaded atomically by
``nftables.service``, with ``policy drop`` on input and forward. The only forwarding the
server needs is wg0 -> wg0 (phones <-> router and the LAN behind it), which nftables says in
one rule matched by interface name (it holds before wg0 exists). With ufw the same needs
``ufw route allow`` plus ``DEFAULT_FORWARD_POLICY`` edits, and it brings its own chains that
would interleave with wg-quick PostUp rules. No NAT is needed (see ``wg_conf.py``).

SSH host key: camreach makes the droplet's host key pair itself (``bot.sshkeys``) and the
document installs it through cloud-init's ``ssh_keys``, with ``ssh_deletekeys`` removing any
key the image came with (and, ``ssh_keys`` being given, cloud-init generates none). camreach
pinned the public half before the droplet existed, so its first SSH connection is verified
against a key it knows rather than trusting whoever answers first.

Secrets: the document holds the WireGuard server's private key and the droplet's SSH host
private key (it has to; DigitalOcean keeps user data and serves it to the droplet's metadata
endpoint) and peers' preshared keys if there are any. Nothing else secret is passed in.
"""

from __future__ import annotations

from typing import Any

import yaml

from bot.errors import ValidationFailed
from bot.render.model import ServerConfig
from bot.render.wg_conf import server_conf
from bot.sshkeys import HostKeyPair

__all__ = [
    "NFTABLES_PATH",
    "SSHD_DROPIN_PATH",
    "WG_CONF_PATH",
    "nftables_conf",
    "render_user_data",
    "sshd_dropin",
]

WG_CONF_PATH = "/etc/wireguard/{interface}.conf"
NFTABLES_PATH = "/etc/nftables.conf"
SYSCTL_PATH = "/etc/sysctl.d/90-camreach.conf"
# sshd keeps the first value it reads and reads drop-ins in name order: "10-" beats the
# "50-cloud-init.conf"/"60-cloudimg-settings.conf" that images ship.
SSHD_DROPIN_PATH = "/etc/ssh/sshd_config.d/10-camreach.conf"
AUTO_UPGRADES_PATH = "/etc/apt/apt.conf.d/20auto-upgrades"


def nftables_conf(cfg: ServerConfig, *, ssh_port: int = 22) -> str:
    """The droplet's whole ruleset: SSH and WireGuard in, tunnel-to-tunnel forwarding."""
    wg = cfg.interface
    return f"""#!/usr/sbin/nft -f
# Written by camreach: only SSH and WireGuard come in; tunnel peers may reach each other
# (phones -> router -> cameras). Nothing is forwarded to or from the Internet.
flush ruleset

table inet camreach {{
    chain input {{
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        iifname "lo" accept
        # Path MTU discovery and IPv6 neighbour discovery need ICMP.
        meta l4proto {{ icmp, ipv6-icmp }} accept
        tcp dport {ssh_port} accept
        udp dport {cfg.listen_port} accept
    }}

    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{wg}" oifname "{wg}" accept
    }}

    chain output {{
        type filter hook output priority filter; policy accept;
    }}
}}
"""


def sshd_dropin(*, ssh_port: int = 22) -> str:
    lines = [
        "# Written by camreach: keys only.",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
    ]
    if ssh_port != 22:
        lines.append(f"Port {ssh_port}")
    return "\n".join(lines) + "\n"


def _file(path: str, content: str, permissions: str) -> dict[str, str]:
    return {"path": path, "owner": "root:root", "permissions": permissions, "content": content}


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings as ``|`` blocks, so the files stay readable."""


def _str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str)


def render_user_data(cfg: ServerConfig, *, host_key: HostKeyPair, ssh_port: int = 22) -> str:
    """``#cloud-config`` user data for a fresh Ubuntu droplet whose SSH host key is
    ``host_key`` (the only one it will have).

    Order on first boot: files are written early (init stage); packages are installed in
    the final stage, then ``runcmd`` loads the firewall *before* bringing the tunnel up,
    so forwarding is never on without the drop policy.
    """
    if isinstance(ssh_port, bool) or not isinstance(ssh_port, int) or not 1 <= ssh_port <= 65535:
        raise ValidationFailed("ssh_port: a port is a number from 1 to 65535")
    if ssh_port == cfg.listen_port:
        raise ValidationFailed("ssh_port: must differ from the WireGuard port")
    if not isinstance(host_key, HostKeyPair) or not host_key.public.startswith("ssh-ed25519 "):
        raise ValidationFailed("host_key: the droplet needs an ed25519 host key pair")
    wg_unit = f"wg-quick@{cfg.interface}"
    runcmd: list[Any] = [
        ["chmod", "700", "/etc/wireguard"],
        ["sysctl", "--system"],
        ["systemctl", "enable", "--now", "nftables"],
        ["systemctl", "enable", "--now", wg_unit],
        ["systemctl", "enable", "--now", "unattended-upgrades"],
    ]
    if ssh_port != 22:
        # Ubuntu 24.04 starts sshd from ssh.socket, whose port a generator takes from
        # sshd_config at daemon-reload; older releases run ssh.service directly.
        runcmd.append(
            "if systemctl is-enabled --quiet ssh.socket; then systemctl daemon-reload"
            " && systemctl restart ssh.socket; else systemctl restart ssh; fi"
        )
    else:
        runcmd.append(["systemctl", "try-reload-or-restart", "ssh"])
    doc: dict[str, Any] = {
        "package_update": True,
        "packages": ["wireguard", "nftables", "unattended-upgrades"],
        "ssh_pwauth": False,
        # cloud-init's cc_ssh: delete the image's host keys, write exactly this pair.
        "ssh_deletekeys": True,
        "ssh_keys": {
            "ed25519_private": host_key.private_openssh,
            "ed25519_public": host_key.public,
        },
        "write_files": [
            _file(WG_CONF_PATH.format(interface=cfg.interface), server_conf(cfg), "0600"),
            _file(SYSCTL_PATH, "net.ipv4.ip_forward = 1\n", "0644"),
            _file(NFTABLES_PATH, nftables_conf(cfg, ssh_port=ssh_port), "0755"),
            _file(SSHD_DROPIN_PATH, sshd_dropin(ssh_port=ssh_port), "0644"),
            _file(
                AUTO_UPGRADES_PATH,
                'APT::Periodic::Update-Package-Lists "1";\n'
                'APT::Periodic::Unattended-Upgrade "1";\n',
                "0644",
            ),
        ],
        "runcmd": runcmd,
    }
    body = yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        width=1000,
        allow_unicode=True,
    )
    # Belt and braces: the document must read back as exactly what was meant.
    if yaml.safe_load(body) != doc:
        raise ValidationFailed("The server settings contain text that cannot be written safely.")
    return "#cloud-config\n" + body
