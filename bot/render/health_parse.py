"""What the health checks read off the droplet and the router, parsed: text in, values out.

Pure and forgiving: odd or partial output never raises; what cannot be read is None.

- ``wg show wg0 dump`` (wireguard-tools ``show.c``): a line for the interface (private key,
  public key, listen port, fwmark), then one per peer, tab-separated: public key, preshared
  key, endpoint, allowed IPs, latest handshake (Unix time, 0 = never), rx bytes, tx bytes,
  persistent keepalive.
- ``ubus call system info`` (procd ``system.c``): ``uptime`` (s), ``load`` (three values in
  units of 1/65536, as the kernel's sysinfo gives them), ``memory`` (bytes: ``free``,
  ``buffered``, and on newer procd ``available``), ``root`` (KiB: ``total``, ``free``, ...).
- ``ubus call network.interface dump`` (netifd): ``{"interface": [{"interface": NAME, "up":
  bool, "ipv4-address": [{"address", "mask"}], "route": [{"target", "mask", ...}], ...}]}``.
- ``ping -c 1`` as iputils prints it (``64 bytes from A: icmp_seq=1 ttl=64 time=0.045 ms``,
  ``rtt min/avg/max/mdev = ...``) and as busybox does (``seq=0 ttl=64 time=0.676 ms``,
  ``round-trip min/avg/max = ...``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CGNAT",
    "SystemInfo",
    "WgPeer",
    "format_age",
    "is_cgnat",
    "parse_ping",
    "parse_system_info",
    "parse_wan_address",
    "parse_wg_peer",
]

CGNAT = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 shared address space
_LOAD_SCALE = 65536  # SI_LOAD_SHIFT = 16
_ANY = str(ipaddress.IPv4Address(0))  # a default route's target in netifd's dump


# --- WireGuard ----------------------------------------------------------------------------

@dataclass(frozen=True)
class WgPeer:
    """One peer's line of ``wg show wg0 dump``."""

    handshake_age: int | None  # seconds since the latest handshake; None: never
    rx_bytes: int
    tx_bytes: int
    endpoint: str | None


def _count(text: str) -> int:
    return int(text) if text.isdigit() else 0


def parse_wg_peer(dump: str, public_key: str, now: float) -> WgPeer | None:
    """The line of the peer with ``public_key``, its handshake age as of ``now`` (Unix time,
    best the droplet's own clock); None when the interface has no such peer."""
    for line in dump.splitlines():
        cols = line.rstrip("\r").split("\t")
        if len(cols) < 8 or cols[0] != public_key:
            continue
        handshake = _count(cols[4])
        return WgPeer(
            handshake_age=max(0, int(now) - handshake) if handshake else None,
            rx_bytes=_count(cols[5]),
            tx_bytes=_count(cols[6]),
            endpoint=None if cols[2] in ("", "(none)") else cols[2],
        )
    return None


# --- the router's system ------------------------------------------------------------------

@dataclass(frozen=True)
class SystemInfo:
    uptime: int | None = None  # seconds
    load1: float | None = None  # the one-minute load average
    mem_free: int | None = None  # bytes a program could get: available, else free + buffered
    flash_free: int | None = None  # bytes free on the root (overlay) file system


def _json(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _whole(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return int(value)


def _mem_free(memory: Any) -> int | None:
    if not isinstance(memory, dict):
        return None
    available = _whole(memory.get("available"))
    if available is not None:
        return available
    free = _whole(memory.get("free"))
    if free is None:
        return None
    return free + (_whole(memory.get("buffered")) or 0)


def parse_system_info(text: str) -> SystemInfo:
    data = _json(text)
    load = data.get("load")
    first = _whole(load[0]) if isinstance(load, list) and load else None
    root = data.get("root")
    flash_kib = _whole(root.get("free")) if isinstance(root, dict) else None
    return SystemInfo(
        uptime=_whole(data.get("uptime")),
        load1=round(first / _LOAD_SCALE, 2) if first is not None else None,
        mem_free=_mem_free(data.get("memory")),
        flash_free=flash_kib * 1024 if flash_kib is not None else None,
    )


# --- the uplink -------------------------------------------------------------------------------

def _ipv4(entry: dict[str, Any]) -> str | None:
    for addr in entry.get("ipv4-address") or []:
        if isinstance(addr, dict) and isinstance(addr.get("address"), str):
            try:
                return str(ipaddress.IPv4Address(addr["address"]))
            except ValueError:
                continue
    return None


def _has_default_route(entry: dict[str, Any]) -> bool:
    return any(isinstance(r, dict) and r.get("target") == _ANY and r.get("mask") == 0
               for r in entry.get("route") or [])


def parse_wan_address(text: str, interfaces: Sequence[str]) -> str | None:
    """The IPv4 address of the first of ``interfaces`` (netifd names, e.g. the modem's
    ``wwan`` and its ``wwan_4`` child) that is up and has one; failing that, of the interface
    that is up and holds the IPv4 default route (the uplink the router's traffic leaves by)."""
    listed = _json(text).get("interface")
    entries = [e for e in listed if isinstance(e, dict) and e.get("up") is True] if isinstance(
        listed, list) else []
    by_name = {e.get("interface"): e for e in entries}
    for name in interfaces:
        entry = by_name.get(name)
        if entry is not None and (address := _ipv4(entry)) is not None:
            return address
    for entry in entries:
        if _has_default_route(entry) and (address := _ipv4(entry)) is not None:
            return address
    return None


def is_cgnat(address: str) -> bool:
    """Whether ``address`` is carrier-grade NAT space (100.64.0.0/10): no way in from outside."""
    try:
        return ipaddress.IPv4Address(address) in CGNAT
    except ValueError:
        return False


# --- ping -------------------------------------------------------------------------------------

_REPLY_RE = re.compile(r"bytes from .*?\btime[=<]\s*(\d+(?:\.\d+)?)\s*ms")
_RTT_RE = re.compile(r"(?:rtt|round-trip) min/avg/max(?:/mdev)? = [\d.]+/(\d+(?:\.\d+)?)/")


def parse_ping(output: str) -> float | None:
    """The round trip in ms of the echo reply in ``ping -c 1`` output; None: no reply."""
    for line in output.splitlines():
        if m := _REPLY_RE.search(line):
            return float(m.group(1))
    m = _RTT_RE.search(output)
    return float(m.group(1)) if m else None


# --- words --------------------------------------------------------------------------------------

def format_age(seconds: float) -> str:
    """A duration the way a status line says it: ``35 s``, ``4 min``, ``7 h``, ``3 d``."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 120 * 60:
        return f"{s // 60} min"
    if s < 48 * 3600:
        return f"{s // 3600} h"
    return f"{s // 86400} d"
