"""wg-quick configs: the droplet's ``wg0.conf`` and a phone's or laptop's client config.

Routing model (why the AllowedIPs are what they are):
- The router's peer on the droplet lists the router's tunnel /32 *and* the site's LAN, so
  the droplet (and, through it, every phone) routes camera traffic into the router's tunnel.
- A phone's peer lists only its /32; phones reach each other and the site via the droplet.
- A client's AllowedIPs are the tunnel subnet plus the site LAN: nothing else is sent into
  the tunnel, so the phone's Internet does not go through the droplet.

Hence the droplet forwards only wg0 -> wg0 and needs no NAT; that forwarding rule lives in
the droplet's nftables ruleset (``cloud_init.py``), so ``wg0.conf`` carries no
PostUp/PostDown commands (nothing to run, nothing to go stale when the rules change).

Peers are stored in ``wg0.conf`` itself, each block named by the comment line right after
``[Peer]``; :func:`add_peer`/:func:`remove_peer` edit that text block by block and leave
everything else (hand edits included) as it was.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv4Network

from bot.errors import NotFound, ValidationFailed
from bot.render.model import ClientConfig, ServerConfig, WgPeer, check_peers

__all__ = [
    "add_peer",
    "check_server_conf",
    "client_conf",
    "device_peer",
    "next_free_address",
    "parse_server_peers",
    "remove_peer",
    "router_peer",
    "server_conf",
]

_HEADER_RE = re.compile(r"\[([A-Za-z]+)\]")


def _endpoint(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def _peer_block(peer: WgPeer) -> str:
    lines = ["[Peer]", f"# {peer.name}", f"PublicKey = {peer.public_key}"]
    if peer.preshared_key is not None:
        lines.append(f"PresharedKey = {peer.preshared_key}")
    if peer.allowed_ips:  # a peer without any is legal in wg (and reaches nothing)
        lines.append("AllowedIPs = " + ", ".join(str(n) for n in peer.allowed_ips))
    return "\n".join(lines) + "\n"


def _join(head: str, blocks: Sequence[str]) -> str:
    # One blank line between blocks, one newline at the end: the same shape every time.
    parts = [head.rstrip("\n") + "\n", *(b.rstrip("\n") + "\n" for b in blocks)]
    return "\n".join(parts)


def server_conf(cfg: ServerConfig) -> str:
    """``/etc/wireguard/wg0.conf`` for the droplet."""
    head = "\n".join(
        [
            "# Written by camreach. Peers are added and removed by camreach; the comment",
            "# under each [Peer] is its name.",
            "[Interface]",
            f"Address = {cfg.address}",
            f"ListenPort = {cfg.listen_port}",
            f"PrivateKey = {cfg.private_key}",
        ]
    )
    return _join(head, [_peer_block(p) for p in cfg.peers])


def client_conf(cfg: ClientConfig) -> str:
    """A wg-quick config for a phone or laptop (also fine as a QR code for the mobile app)."""
    lines = [
        "[Interface]",
        f"PrivateKey = {cfg.private_key}",
        f"Address = {cfg.address}/32",
    ]
    if cfg.dns:
        lines.append("DNS = " + ", ".join(str(d) for d in cfg.dns))
    allowed = [cfg.vpn_subnet, *cfg.lan_subnets]
    peer = [
        "[Peer]",
        f"PublicKey = {cfg.server_public_key}",
    ]
    if cfg.preshared_key is not None:
        peer.append(f"PresharedKey = {cfg.preshared_key}")
    peer += [
        f"Endpoint = {_endpoint(cfg.endpoint_host, cfg.endpoint_port)}",
        "AllowedIPs = " + ", ".join(str(n) for n in allowed),
        f"PersistentKeepalive = {cfg.keepalive}",
    ]
    return _join("\n".join(lines), ["\n".join(peer)])


def router_peer(
    name: str,
    public_key: str,
    tunnel_ip: IPv4Address,
    lan_subnets: Iterable[IPv4Network],
    preshared_key: str | None = None,
) -> WgPeer:
    """The site router's peer: its tunnel /32 and the LAN behind it."""
    allowed = (IPv4Network(f"{tunnel_ip}/32"), *lan_subnets)
    return WgPeer(name, public_key, allowed, preshared_key)


def device_peer(
    name: str, public_key: str, tunnel_ip: IPv4Address, preshared_key: str | None = None
) -> WgPeer:
    """A phone's or laptop's peer: just its tunnel /32."""
    return WgPeer(name, public_key, (IPv4Network(f"{tunnel_ip}/32"),), preshared_key)


# --- reading and editing an existing wg0.conf -------------------------------------------------


def _split(text: str) -> tuple[str, list[str]]:
    """``(everything before the first [Peer], [each [Peer] block up to the next one])``."""
    head: list[str] = []
    blocks: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        m = _HEADER_RE.fullmatch(line.split("#", 1)[0].strip())
        if m is not None and m.group(1).lower() == "peer":
            blocks.append([line])
        elif m is not None and blocks:
            raise ValidationFailed(
                f"wg0.conf has [{m.group(1)}] after a [Peer]; camreach cannot edit it safely."
            )
        else:
            (blocks[-1] if blocks else head).append(line)
    return "".join(head), ["".join(b) for b in blocks]


def _parse_block(block: str) -> WgPeer:
    name: str | None = None
    public_key: str | None = None
    psk: str | None = None
    allowed: list[IPv4Network] = []
    for raw in block.splitlines()[1:]:
        line = raw.strip()
        if line.startswith("#"):
            if name is None and public_key is None and line[1:].strip():
                name = line[1:].strip()
            continue
        line = line.split("#", 1)[0]
        if "=" not in line:
            continue
        key, _, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "publickey":
            public_key = value
        elif key == "presharedkey":
            psk = value
        elif key == "allowedips":
            for item in filter(None, (v.strip() for v in value.split(","))):
                try:
                    net = ipaddress.ip_network(item, strict=False)
                except ValueError:
                    raise ValidationFailed(f"wg0.conf: {item!r} is not an address") from None
                if not isinstance(net, IPv4Network):
                    raise ValidationFailed(f"wg0.conf: {item} is IPv6; camreach uses IPv4 only")
                allowed.append(net)
    if public_key is None:
        raise ValidationFailed("wg0.conf: a [Peer] has no PublicKey.")
    return WgPeer(name or f"unnamed {public_key[:8]}", public_key, tuple(allowed), psk)


def parse_server_peers(conf_text: str) -> list[WgPeer]:
    """The peers of a wg0.conf, in file order, named by the comment under ``[Peer]``."""
    _, blocks = _split(conf_text)
    return [_parse_block(b) for b in blocks]


def add_peer(conf_text: str, peer: WgPeer) -> str:
    """``conf_text`` with ``peer`` added, or its block replaced if its key is already there.

    Refuses a peer whose addresses overlap another peer's (wg would silently move them).
    """
    head, blocks = _split(conf_text)
    parsed = [_parse_block(b) for b in blocks]
    check_peers([*(p for p in parsed if p.public_key != peer.public_key), peer])
    out: list[str] = []
    placed = False
    for block, old in zip(blocks, parsed, strict=True):
        if old.public_key != peer.public_key:
            out.append(block)
        elif not placed:  # replace in place: file order (and any diff) stays stable
            out.append(_peer_block(peer))
            placed = True
    if not placed:
        out.append(_peer_block(peer))
    return _join(head, out)


def remove_peer(conf_text: str, public_key: str, *, missing_ok: bool = True) -> str:
    """``conf_text`` without the peer that has ``public_key`` (unchanged if there is none)."""
    head, blocks = _split(conf_text)
    kept = [b for b in blocks if _parse_block(b).public_key != public_key]
    if len(kept) == len(blocks) and not missing_ok:
        raise NotFound("There is no such peer on the server.")
    return _join(head, kept)


def next_free_address(
    peers: Iterable[WgPeer], subnet: IPv4Network, *, reserved: Iterable[IPv4Address] = ()
) -> IPv4Address:
    """The lowest host address of ``subnet`` no peer uses and not ``reserved`` (the server's)."""
    taken = set(reserved)
    nets = [n for p in peers for n in p.allowed_ips]
    for host in subnet.hosts():
        if host not in taken and not any(host in n for n in nets):
            return host
    raise ValidationFailed(f"The VPN subnet {subnet} is full; remove a device first.")


# What wg(8) and wg-quick(8) accept in each section; anything else fails at the next boot.
_KEYS = {
    "interface": {"privatekey", "listenport", "fwmark", "address", "dns", "mtu", "table",
                  "preup", "postup", "predown", "postdown", "saveconfig"},
    "peer": {"publickey", "presharedkey", "allowedips", "endpoint", "persistentkeepalive"},
}
_KEY_FIELDS = {"privatekey", "publickey", "presharedkey"}


def _is_wg_key(value: str) -> bool:
    try:
        return len(base64.b64decode(value, validate=True)) == 32 and len(value) == 44
    except (ValueError, binascii.Error):
        return False


def check_server_conf(conf_text: str) -> None:
    """Refuse a wg0.conf that wg-quick would refuse (unknown or malformed lines, bad keys or
    networks, overlapping peers): validated whole, before anything is changed."""
    section: str | None = None
    interfaces = 0
    for number, raw in enumerate(conf_text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        header = _HEADER_RE.fullmatch(line)
        if header is not None:
            section = header.group(1).lower()
            if section not in _KEYS:
                raise ValidationFailed(f"wg0.conf line {number}: unknown section [{header[1]}]")
            interfaces += section == "interface"
            continue
        key, sep, value = (part.strip() for part in line.partition("="))
        if section is None or not sep or key.lower() not in _KEYS[section]:
            raise ValidationFailed(f"wg0.conf line {number}: {key!r} is not a WireGuard "
                                   f"setting{'' if section else ' (outside any section)'}")
        if key.lower() in _KEY_FIELDS and not _is_wg_key(value):
            raise ValidationFailed(f"wg0.conf line {number}: {key} is not a WireGuard key")
        if key.lower() in ("allowedips", "address"):
            for part in filter(None, (p.strip() for p in value.split(","))):
                try:
                    ipaddress.ip_network(part, strict=key.lower() == "allowedips")
                except ValueError:
                    raise ValidationFailed(
                        f"wg0.conf line {number}: {part!r} is not a network") from None
    if interfaces != 1:
        raise ValidationFailed("wg0.conf must have exactly one [Interface] section")
    check_peers(parse_server_peers(conf_text))
