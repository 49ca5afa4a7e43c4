"""Inputs of the renderers: small frozen dataclasses, validated when built.

They do not know about ``bot.site.SiteSpec`` (the caller maps a site onto them) and hold
only what the rendered text needs. Anything invalid raises ``ValidationFailed`` naming the
field; a secret's value is never quoted back.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Literal, get_args

from bot.errors import ValidationFailed
from bot.wgkeys import is_valid_key

__all__ = [
    "SUPPORTED_AUTH",
    "SUPPORTED_MODES",
    "SUPPORTED_PDPTYPES",
    "Auth",
    "ClientConfig",
    "FirewallConfig",
    "Mode",
    "ModemConfig",
    "ModemProtocol",
    "PdpType",
    "RouterConfig",
    "RouterWireguard",
    "ServerConfig",
    "WgPeer",
    "check_peers",
]

ModemProtocol = Literal["ncm", "qmi", "3g", "mbim", "dhcp"]
Auth = Literal["none", "pap", "chap", "both"]
PdpType = Literal["ip", "ipv6", "ipv4v6"]
Mode = Literal["auto", "lte", "prefer-lte", "umts", "prefer-umts"]

# What each OpenWrt 23.05 proto script can be told (lib/netifd/proto/*.sh; modem.py maps it):
# ncm picks a mode from /etc/gcom/ncm.json and puts auth into AT^NDISDUP as 1 (PAP) or
# 2 (CHAP); uqmi takes --set-network-modes all|lte|umts|... and pap|chap|both; umbim takes
# pap|chap and has no mode; 3g is PPP, which negotiates PAP/CHAP itself and only knows
# UMTS/GPRS services; a dhcp (HiLink) stick dials by itself and is set up in its web page.
SUPPORTED_MODES: dict[ModemProtocol, tuple[Mode, ...]] = {
    "ncm": ("auto", "lte", "prefer-lte", "umts", "prefer-umts"),
    "qmi": ("auto", "lte", "prefer-lte", "umts"),
    "mbim": ("auto",),
    "3g": ("auto", "umts", "prefer-umts"),
    "dhcp": ("auto",),
}
SUPPORTED_AUTH: dict[ModemProtocol, tuple[Auth, ...]] = {
    "ncm": ("none", "pap", "chap"),
    "qmi": ("none", "pap", "chap", "both"),
    "mbim": ("none", "pap", "chap"),
    "3g": ("none",),
    "dhcp": ("none",),
}
SUPPORTED_PDPTYPES: dict[ModemProtocol, tuple[PdpType, ...]] = {
    "ncm": ("ip", "ipv6", "ipv4v6"),
    "qmi": ("ip", "ipv6", "ipv4v6"),
    "mbim": ("ip", "ipv6", "ipv4v6"),
    "3g": ("ip",),
    "dhcp": ("ip",),
}

# Same rules as bot.site (kept here so renderers never import the site model).
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,253}[A-Za-z0-9])?")
_APN_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,98}[A-Za-z0-9])?")
_PIN_RE = re.compile(r"[0-9]{4,8}")
# Linux interface names: at most 15 bytes (IFNAMSIZ - 1).
_NETDEV_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# /dev/cdc-wdm0, /dev/ttyUSB0, /dev/serial/by-id/usb-HUAWEI_...-if00-port0
_DEVNODE_RE = re.compile(r"/dev/[A-Za-z0-9_.:+-]+(?:/[A-Za-z0-9_.:+-]+)*")
# UCI section / netifd interface names.
_IFACE_RE = re.compile(r"[A-Za-z0-9_]{1,15}")
# Credentials end up inside AT commands (ncm: AT^NDISDUP=...,"user","pass") or pppd
# arguments: a '"' would end the AT string early and control characters break both.
_CRED_BAD_RE = re.compile(r'[\x00-\x1f\x7f"]')


def _fail(where: str, msg: str) -> ValidationFailed:
    return ValidationFailed(f"{where}: {msg}")


def _choice(where: str, value: str, options: tuple[str, ...]) -> None:
    if value not in options:
        raise _fail(where, f"{value!r} is not one of {', '.join(options)}")


def _key(where: str, value: str) -> None:
    if not is_valid_key(value):
        raise _fail(where, "not a WireGuard key (44 characters of base64 ending in '=')")


def _port(where: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _fail(where, "a port is a number from 1 to 65535")


def _host(where: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
        return
    except ValueError:
        pass
    if _HOST_RE.fullmatch(value) is None:
        raise _fail(where, f"{value!r} is not an IP address or host name")


def _iface(where: str, value: str) -> None:
    if _IFACE_RE.fullmatch(value) is None:
        raise _fail(where, f"{value!r}: use 1-15 letters, digits or '_'")


def _nonneg(where: str, value: int | None, top: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= top:
        raise _fail(where, f"must be a whole number from 0 to {top}")


@dataclass(frozen=True)
class ModemConfig:
    """The LTE modem's WAN interface.

    ``device`` is the control device (``/dev/cdc-wdm0`` for qmi/mbim, ``/dev/ttyUSB0`` or
    ``/dev/cdc-wdm0`` for ncm, ``/dev/ttyUSB0`` for 3g) or, for ``dhcp`` (HiLink/RNDIS
    sticks that act as a router themselves), the network device (``eth1``, ``usb0``).
    ``pin`` and ``password`` are secrets: they go into the rendered config and nowhere else.
    """

    protocol: ModemProtocol
    device: str
    apn: str | None = None
    pin: str | None = None
    username: str | None = None
    password: str | None = None
    auth: Auth = "none"
    pdptype: PdpType = "ip"
    mode: Mode = "auto"
    interface: str = "wwan"
    delay: int | None = None  # seconds to wait for the modem (ncm: init timeout)
    metric: int | None = None

    def __post_init__(self) -> None:
        _choice("modem.protocol", self.protocol, get_args(ModemProtocol))
        _choice("modem.auth", self.auth, get_args(Auth))
        _choice("modem.pdptype", self.pdptype, get_args(PdpType))
        _choice("modem.mode", self.mode, get_args(Mode))
        _iface("modem.interface", self.interface)
        if self.protocol == "dhcp":
            if _NETDEV_RE.fullmatch(self.device) is None:
                raise _fail(
                    "modem.device",
                    f"{self.device!r}: a dhcp (HiLink) modem is a network device like eth1",
                )
        elif _DEVNODE_RE.fullmatch(self.device) is None or "/../" in self.device + "/":
            raise _fail("modem.device", f"{self.device!r}: expected a device like /dev/cdc-wdm0")
        if self.apn is not None and _APN_RE.fullmatch(self.apn) is None:
            raise _fail(
                "modem.apn",
                f"{self.apn!r}: an APN has only letters, digits, '.' and '-'",
            )
        if self.pin is not None and _PIN_RE.fullmatch(self.pin) is None:
            raise _fail("modem.pin", "a SIM PIN is 4 to 8 digits")
        for name in ("username", "password"):
            value = getattr(self, name)
            if value is None:
                continue
            if not value or len(value) > 64 or _CRED_BAD_RE.search(value):
                raise _fail(
                    f"modem.{name}",
                    "1-64 characters, no double quote and no control characters",
                )
        if (self.username is None) != (self.password is None):
            raise _fail("modem.password", "give both username and password, or neither")
        if self.auth != "none" and self.username is None:
            raise _fail("modem.auth", f"{self.auth} needs a username and password")
        _nonneg("modem.delay", self.delay, 600)
        _nonneg("modem.metric", self.metric, 9999)
        self._check_protocol()

    def _check_protocol(self) -> None:
        p = self.protocol
        if self.mode not in SUPPORTED_MODES[p]:
            raise _fail(
                "modem.mode",
                f"{p} cannot select {self.mode!r}; it takes {', '.join(SUPPORTED_MODES[p])}",
            )
        if self.auth not in SUPPORTED_AUTH[p]:
            hint = " (PPP negotiates PAP/CHAP by itself)" if p == "3g" else ""
            raise _fail(
                "modem.auth",
                f"{p} cannot use {self.auth!r}; it takes {', '.join(SUPPORTED_AUTH[p])}{hint}",
            )
        if self.pdptype not in SUPPORTED_PDPTYPES[p]:
            raise _fail("modem.pdptype", f"{p} supports only {', '.join(SUPPORTED_PDPTYPES[p])}")
        if p == "dhcp":
            for name in ("apn", "pin", "username", "delay"):
                if getattr(self, name) is not None:
                    raise _fail(
                        f"modem.{name}",
                        "a dhcp (HiLink) modem dials by itself; set this in its web page",
                    )


@dataclass(frozen=True)
class RouterWireguard:
    """The router's WireGuard client: it dials the droplet and keeps the tunnel open."""

    private_key: str
    address: IPv4Interface  # the router's tunnel address with the tunnel prefix, 10.8.0.2/24
    server_public_key: str
    endpoint_host: str  # the droplet's public IP (or a name that resolves to it)
    endpoint_port: int = 51820
    preshared_key: str | None = None
    mtu: int = 1280  # LTE paths often carry less than 1500; 1280 is the IPv6 minimum
    listen_port: int | None = None  # None: random; the router only dials out
    keepalive: int = 25  # keeps the CGNAT mapping alive so the droplet can reach the router
    interface: str = "wg0"
    description: str = "camreach droplet"

    def __post_init__(self) -> None:
        if not isinstance(self.address, IPv4Interface):
            raise _fail("wg.address", "expected an address with prefix, like 10.8.0.2/24")
        _key("wg.private_key", self.private_key)
        _key("wg.server_public_key", self.server_public_key)
        if self.preshared_key is not None:
            _key("wg.preshared_key", self.preshared_key)
        _host("wg.endpoint_host", self.endpoint_host)
        _port("wg.endpoint_port", self.endpoint_port)
        if self.listen_port is not None:
            _port("wg.listen_port", self.listen_port)
        _nonneg("wg.keepalive", self.keepalive, 65535)
        if (
            isinstance(self.mtu, bool)
            or not isinstance(self.mtu, int)
            or not (1280 <= self.mtu <= 1420)
        ):
            raise _fail("wg.mtu", "must be from 1280 to 1420")
        _iface("wg.interface", self.interface)
        if not self.description or not self.description.isprintable():
            raise _fail("wg.description", "one line of text")


@dataclass(frozen=True)
class FirewallConfig:
    """What the router's firewall must let through; see ``firewall.py`` for the reasoning."""

    modem_interface: str  # put into camreach's own "modem" zone
    vpn_interface: str  # put into camreach's "vpn" zone
    vpn_subnet: IPv4Network
    lan_subnet: IPv4Network
    lan_zone: str = "lan"  # OpenWrt's default LAN zone name
    ssh_port: int = 22  # dropbear's port on the router
    # Who may SSH in over the tunnel: the droplet's address as a /32 (camreach's site config
    # always sets it, so phones cannot). None: the whole VPN subnet, for tests only.
    ssh_from: IPv4Network | None = None
    lan_internet: bool = True  # LAN hosts (the camera: NTP) may use the modem uplink
    masquerade_to_lan: bool = False  # only if the camera's gateway is not this router

    def __post_init__(self) -> None:
        _iface("firewall.modem_interface", self.modem_interface)
        _iface("firewall.vpn_interface", self.vpn_interface)
        _iface("firewall.lan_zone", self.lan_zone)
        _port("firewall.ssh_port", self.ssh_port)
        if self.vpn_subnet.overlaps(self.lan_subnet):
            raise _fail(
                "firewall.vpn_subnet",
                f"{self.vpn_subnet} overlaps the LAN {self.lan_subnet}",
            )
        if self.ssh_from is not None and not self.ssh_from.subnet_of(self.vpn_subnet):
            raise _fail("firewall.ssh_from", f"{self.ssh_from} is not inside {self.vpn_subnet}")


@dataclass(frozen=True)
class RouterConfig:
    """Everything camreach sets on the router: modem uplink, tunnel, firewall."""

    modem: ModemConfig
    wg: RouterWireguard
    lan_subnet: IPv4Network
    lan_zone: str = "lan"
    ssh_port: int = 22
    ssh_from: IPv4Network | None = None
    lan_internet: bool = True
    masquerade_to_lan: bool = False

    @property
    def vpn_subnet(self) -> IPv4Network:
        return self.wg.address.network

    def __post_init__(self) -> None:
        if self.modem.interface == self.wg.interface:
            raise _fail("wg.interface", "must differ from modem.interface")
        net = self.vpn_subnet
        if self.wg.address.ip in (net.network_address, net.broadcast_address):
            raise _fail("wg.address", f"{self.wg.address.ip} is not a host address")
        _ = self.firewall  # validates the firewall inputs now, not at render time

    @property
    def firewall(self) -> FirewallConfig:
        return FirewallConfig(
            modem_interface=self.modem.interface,
            vpn_interface=self.wg.interface,
            vpn_subnet=self.vpn_subnet,
            lan_subnet=self.lan_subnet,
            lan_zone=self.lan_zone,
            ssh_port=self.ssh_port,
            ssh_from=self.ssh_from,
            lan_internet=self.lan_internet,
            masquerade_to_lan=self.masquerade_to_lan,
        )


@dataclass(frozen=True)
class WgPeer:
    """One ``[Peer]`` of the droplet's wg0.conf.

    The router's peer lists its tunnel /32 and the site's LAN (so the droplet routes camera
    traffic into the tunnel); a phone's peer lists just its /32.
    """

    name: str
    public_key: str
    allowed_ips: tuple[IPv4Network, ...]
    preshared_key: str | None = None

    def __post_init__(self) -> None:
        # isprintable() also refuses U+2028/U+0085, which YAML and editors treat as newlines.
        if not self.name or len(self.name) > 64 or not self.name.isprintable():
            raise _fail("peer.name", "1-64 printable characters on one line")
        if self.name != self.name.strip():
            raise _fail("peer.name", "no leading or trailing blanks")
        _key("peer.public_key", self.public_key)
        if self.preshared_key is not None:
            _key("peer.preshared_key", self.preshared_key)
        for net in self.allowed_ips:
            if not isinstance(net, IPv4Network):
                raise _fail("peer.allowed_ips", f"{net!r} is not an IPv4 network")


DEFAULT_SERVER_ADDRESS = IPv4Interface("10.8.0.1/24")


@dataclass(frozen=True)
class ServerConfig:
    """The droplet's WireGuard server (``/etc/wireguard/wg0.conf``)."""

    private_key: str
    address: IPv4Interface = DEFAULT_SERVER_ADDRESS
    listen_port: int = 51820
    peers: tuple[WgPeer, ...] = ()
    interface: str = "wg0"

    def __post_init__(self) -> None:
        _key("server.private_key", self.private_key)
        _port("server.listen_port", self.listen_port)
        _iface("server.interface", self.interface)
        check_peers(self.peers)


def check_peers(peers: Sequence[WgPeer]) -> None:
    """wg moves an address to the last peer that claims it; refuse instead of guessing."""
    keys: set[str] = set()
    claimed: list[tuple[IPv4Network, str]] = []
    for peer in peers:
        if peer.public_key in keys:
            raise _fail("peer.public_key", f"peer {peer.name!r} is listed twice")
        keys.add(peer.public_key)
        for net in peer.allowed_ips:
            for other, owner in claimed:
                if net.overlaps(other):
                    raise _fail(
                        "peer.allowed_ips",
                        f"{net} of {peer.name!r} overlaps {other} of {owner!r}",
                    )
            claimed.append((net, peer.name))


@dataclass(frozen=True)
class ClientConfig:
    """A phone's or laptop's wg-quick config: reach the tunnel and the site's LAN, nothing else."""

    private_key: str
    address: IPv4Address  # the device's tunnel address; rendered as a /32
    server_public_key: str
    endpoint_host: str
    endpoint_port: int
    vpn_subnet: IPv4Network
    lan_subnets: tuple[IPv4Network, ...]
    dns: tuple[IPv4Address, ...] = ()
    preshared_key: str | None = None
    keepalive: int = 25

    def __post_init__(self) -> None:
        _key("client.private_key", self.private_key)
        _key("client.server_public_key", self.server_public_key)
        if self.preshared_key is not None:
            _key("client.preshared_key", self.preshared_key)
        _host("client.endpoint_host", self.endpoint_host)
        _port("client.endpoint_port", self.endpoint_port)
        _nonneg("client.keepalive", self.keepalive, 65535)
        if not self.lan_subnets:
            raise _fail("client.lan_subnets", "at least the site's LAN")
        if self.address not in self.vpn_subnet:
            raise _fail("client.address", f"{self.address} is not inside {self.vpn_subnet}")
