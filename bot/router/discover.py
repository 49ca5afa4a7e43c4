"""What is on the router's LAN: DHCP leases and the neighbour table, after a ping sweep.

:data:`DISCOVER_SCRIPT` is constant text; the LAN subnet reaches it as arguments (its first
three octets and the first and last host number), validated here first. It pings every host
of the subnet once (busybox ``ping -c1 -W1``, backgrounded, a batch at a time) so that the
kernel's neighbour table learns who is there, then prints framed (:mod:`bot.router.frames`)
``/tmp/dhcp.leases``, ``ip neigh show``, ``/proc/net/arp`` and the router's own IPv4
addresses. :func:`parse_leases`, :func:`parse_neighbours`, :func:`parse_arp` and
:func:`merge` are pure; :func:`scan` is one round trip.

The vendor of a MAC comes from the IEEE OUI registry as the ``netaddr`` package ships it
(:func:`vendor_of`); netaddr loads its index lazily, so :func:`vendors` runs off the event
loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from netaddr import EUI, AddrFormatError, NotRegisteredError

from bot.adapters.ssh import SshConnection
from bot.errors import ValidationFailed
from bot.router.frames import FRAME_SH, parse_frames

__all__ = [
    "BATCH",
    "DISCOVER_SCRIPT",
    "Found",
    "Neighbour",
    "merge",
    "parse_arp",
    "parse_leases",
    "parse_neighbours",
    "parse_own_addresses",
    "parse_scan",
    "scan",
    "sweep_arguments",
    "vendor_of",
    "vendors",
]

# Pings running at once on the router (each a busybox process of its own).
BATCH = 64

DISCOVER_SCRIPT = (
    r"""
umask 077
T=$(mktemp -d /tmp/camreach-discover.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
"""
    + FRAME_SH
    + r"""
prefix=$1; first=$2; last=$3; batch=$4
i=$first; n=0
while [ "$i" -le "$last" ]; do
	ping -c1 -W1 "$prefix.$i" >/dev/null 2>&1 &
	i=$((i + 1)); n=$((n + 1))
	if [ "$n" -ge "$batch" ]; then wait; n=0; fi
done
wait
if [ -f /tmp/dhcp.leases ]; then emit leases /tmp/dhcp.leases; else
	: > "$T/leases"; emit leases "$T/leases"; fi
capture neigh ip -4 neigh show
capture arp cat /proc/net/arp
capture addrs ip -4 -o addr show
"""
)

_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_ADDR_RE = re.compile(r"\binet (\d+\.\d+\.\d+\.\d+)(?:/\d+)?")
# Neighbour states that mean nobody answered at that address.
_GONE = frozenset({"FAILED", "INCOMPLETE"})


@dataclass(frozen=True)
class Found:
    """A device on the LAN: address, MAC (lower case), and its DHCP host name if any."""

    ip: ipaddress.IPv4Address
    mac: str
    hostname: str | None = None


@dataclass(frozen=True)
class Neighbour:
    ip: ipaddress.IPv4Address
    mac: str | None  # None: no link-layer address (FAILED, INCOMPLETE)
    state: str  # upper case: REACHABLE, STALE, PERMANENT, FAILED ...; "" when not given

    @property
    def present(self) -> bool:
        return self.mac is not None and self.state not in _GONE


def sweep_arguments(subnet: ipaddress.IPv4Network | str) -> list[str]:
    """The script's arguments for ``subnet``: prefix, first and last host, batch size.

    Only subnets of /24 or smaller are swept (at most 254 pings); a larger LAN is refused.
    """
    try:
        net = ipaddress.IPv4Network(subnet, strict=False)
    except ValueError as exc:
        raise ValidationFailed(f"{subnet!r} is not an IPv4 subnet.") from exc
    if net.prefixlen < 24:
        raise ValidationFailed(f"camreach sweeps a LAN of at most 254 addresses (a /24); "
                               f"{net} is larger.")
    hosts = list(net.hosts()) or [net.network_address]
    prefix = ".".join(str(hosts[0]).split(".")[:3])
    first, last = int(hosts[0]) & 0xFF, int(hosts[-1]) & 0xFF
    return [prefix, str(first), str(last), str(BATCH)]


def _mac(text: str) -> str | None:
    mac = text.strip().lower()
    if not _MAC_RE.fullmatch(mac) or mac == "00:00:00:00:00:00":
        return None
    return mac


def _ipv4(text: str) -> ipaddress.IPv4Address | None:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        return None


def parse_leases(text: str) -> list[Found]:
    """dnsmasq's lease file: ``expiry mac ip hostname clientid`` (``*`` for none)."""
    out: list[Found] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        mac, ip = _mac(fields[1]), _ipv4(fields[2])
        if mac is None or ip is None:  # IPv6 lines ("duid ...") and garbage
            continue
        name = fields[3]
        out.append(Found(ip, mac, None if name == "*" else name[:63]))
    return out


def parse_neighbours(text: str) -> list[Neighbour]:
    """``ip neigh show``: ``IP dev DEV [lladdr MAC] [router] STATE``."""
    out: list[Neighbour] = []
    for line in text.splitlines():
        fields = line.split()
        ip = _ipv4(fields[0]) if fields else None
        if ip is None:
            continue
        mac = None
        if "lladdr" in fields[:-1]:
            mac = _mac(fields[fields.index("lladdr") + 1])
        last = fields[-1]
        out.append(Neighbour(ip, mac, last if last.isalpha() and last.isupper() else ""))
    return out


def parse_arp(text: str) -> list[Neighbour]:
    """``/proc/net/arp``: ``IP HWtype Flags MAC Mask Device``; flags 0x0 is incomplete."""
    out: list[Neighbour] = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        ip = _ipv4(fields[0])
        if ip is None:
            continue
        try:
            flags = int(fields[2], 16)
        except ValueError:
            flags = 0
        mac = _mac(fields[3])
        if not flags & 0x2 or mac is None:  # ATF_COM unset: no answer (yet)
            out.append(Neighbour(ip, None, "INCOMPLETE"))
        else:
            out.append(Neighbour(ip, mac, "PERMANENT" if flags & 0x4 else ""))
    return out


def parse_own_addresses(text: str) -> set[ipaddress.IPv4Address]:
    """The router's own IPv4 addresses from ``ip -4 -o addr show``."""
    return {ip for m in _ADDR_RE.finditer(text) if (ip := _ipv4(m.group(1))) is not None}


def merge(leases: Iterable[Found], neighbours: Iterable[Neighbour], *,
          subnet: ipaddress.IPv4Network,
          own: Iterable[ipaddress.IPv4Address] = ()) -> list[Found]:
    """One row per address in ``subnet``, by address.

    The neighbour table says who is there now (its MAC wins over a lease's); a lease adds the
    host name, and a leased address the table does not know at all is kept. An address whose
    neighbour entry is FAILED/INCOMPLETE did not answer: it is dropped, lease or not. The
    router's own addresses, the network and broadcast addresses are never listed.
    """
    skip = set(own) | {subnet.network_address, subnet.broadcast_address}
    seen: dict[ipaddress.IPv4Address, Neighbour] = {}
    for n in neighbours:
        old = seen.get(n.ip)
        if old is None or (n.present and not old.present):
            seen[n.ip] = n
    by_ip: dict[ipaddress.IPv4Address, Found] = {}
    by_mac: dict[str, str] = {}
    for lease in leases:
        if lease.hostname:
            by_mac.setdefault(lease.mac, lease.hostname)
        by_ip[lease.ip] = lease
    rows: dict[ipaddress.IPv4Address, Found] = {}
    for ip, n in seen.items():
        if n.present and n.mac is not None:
            lease_row = by_ip.get(ip)
            name = (lease_row.hostname if lease_row is not None and lease_row.mac == n.mac
                    else None) or by_mac.get(n.mac)
            rows[ip] = Found(ip, n.mac, name)
    for ip, lease in by_ip.items():
        if ip not in seen:
            rows[ip] = lease
    return sorted((r for ip, r in rows.items() if ip in subnet and ip not in skip),
                  key=lambda r: r.ip)


def vendor_of(mac: str) -> str | None:
    """The organisation the IEEE registered the MAC's OUI to, or None (unknown, local)."""
    try:
        org = EUI(mac).oui.registration().org
    except (NotRegisteredError, AddrFormatError, IndexError, ValueError):
        return None
    return str(org).strip() or None


async def vendors(macs: Iterable[str]) -> dict[str, str | None]:
    """:func:`vendor_of` for each MAC, off the event loop (netaddr reads its index lazily)."""
    wanted = sorted(set(macs))

    def work() -> dict[str, str | None]:
        return {mac: vendor_of(mac) for mac in wanted}

    return await asyncio.to_thread(work)


def parse_scan(parts: Mapping[str, str], subnet: ipaddress.IPv4Network) -> list[Found]:
    neighbours = parse_neighbours(parts.get("neigh", "")) + parse_arp(parts.get("arp", ""))
    return merge(parse_leases(parts.get("leases", "")), neighbours, subnet=subnet,
                 own=parse_own_addresses(parts.get("addrs", "")))


async def scan(conn: SshConnection, subnet: ipaddress.IPv4Network) -> list[Found]:
    """One round trip: sweep ``subnet`` from the router and read who is there."""
    args = sweep_arguments(subnet)
    command = shlex.join(["sh", "-c", DISCOVER_SCRIPT, "camreach-discover", *args])
    res = await conn.run(command, input=b"", timeout=max(conn.target.command_timeout, 30))
    return parse_scan(parse_frames(res.stdout_bytes or res.stdout, where=conn.target.where),
                      subnet)
