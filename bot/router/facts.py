"""What the router is, as typed facts read from the detection script's report.

Pure: :func:`parse_facts` takes the framed parts (:mod:`bot.router.frames`) that
:data:`bot.router.detect.DETECT_SCRIPT` prints and never raises on odd text; whatever it
cannot read stays "unknown" (or None).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface
from types import MappingProxyType
from typing import Literal

__all__ = ["NetDevice", "RouterFacts", "UsbDevice", "UsbInterface", "parse_facts"]


@dataclass(frozen=True)
class UsbInterface:
    name: str  # "1-1:1.0"
    cls: str  # bInterfaceClass, two hex digits
    subclass: str
    protocol: str
    driver: str | None


@dataclass(frozen=True)
class UsbDevice:
    path: str  # "1-1"
    usb_id: str  # "12d1:1506"
    manufacturer: str | None = None
    product: str | None = None
    interfaces: tuple[UsbInterface, ...] = ()

    @property
    def name(self) -> str:
        text = " ".join(p for p in (self.manufacturer, self.product) if p)
        return text or self.usb_id


@dataclass(frozen=True)
class NetDevice:
    name: str
    driver: str | None = None


@dataclass(frozen=True)
class RouterFacts:
    """The router as the detection script saw it. Sizes are in KiB."""

    release: str = "unknown"
    revision: str = "unknown"
    target: str = "unknown"  # "ramips/mt76x8"
    arch: str = "unknown"  # "mipsel_24kc"
    board_model: str = "unknown"  # "TP-Link TL-MR3020 v3"
    board_name: str = "unknown"  # "tplink,tl-mr3020-v3"
    package_manager: Literal["opkg", "apk"] | None = None
    packages: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    flash_free_kb: int | None = None
    flash_total_kb: int | None = None
    tmp_free_kb: int | None = None
    mem_total_kb: int | None = None
    mem_available_kb: int | None = None
    usb: tuple[UsbDevice, ...] = ()
    dev_nodes: tuple[str, ...] = ()
    net_devices: tuple[NetDevice, ...] = ()
    wan_device: str | None = None
    wan_address: IPv4Interface | None = None

    def has_package(self, name: str) -> bool:
        return name in self.packages


_RELEASE_RE = re.compile(r"^(DISTRIB_[A-Z]+)=['\"]?(.*?)['\"]?$")
_PKG_LINE_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._+-]*) - (\S+)")
_APK_LINE_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._+-]*?)-(\d[^-\s]*-r\d+)$")
_ID_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")


def _release(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = _RELEASE_RE.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _packages(text: str, manager: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        m = (_APK_LINE_RE if manager == "apk" else _PKG_LINE_RE).match(line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def _df(text: str) -> tuple[int | None, int | None]:
    """(available, total) KiB from ``df -k`` output (last line; busybox prints one line)."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    for row in reversed(rows):
        # ... 1K-blocks Used Available Use% Mounted-on
        if len(row) >= 6 and row[-2].endswith("%"):
            try:
                return int(row[-3]), int(row[-5])
            except ValueError:
                return None, None
    return None, None


def _meminfo(text: str) -> tuple[int | None, int | None]:
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key.strip()] = int(parts[0])
    available = values.get("MemAvailable", values.get("MemFree"))
    return values.get("MemTotal"), available


@dataclass
class _UsbBuilder:
    path: str
    usb_id: str
    manufacturer: str | None = None
    product: str | None = None
    interfaces: list[UsbInterface] = field(default_factory=list)

    def build(self) -> UsbDevice:
        return UsbDevice(self.path, self.usb_id, self.manufacturer, self.product,
                         tuple(self.interfaces))


def _usb(text: str) -> tuple[UsbDevice, ...]:
    devices: list[UsbDevice] = []
    cur: _UsbBuilder | None = None
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "device":
            if cur is not None:
                devices.append(cur.build())
            path, _, usb_id = rest.partition(" ")
            usb_id = usb_id.strip().lower()
            cur = _UsbBuilder(path, usb_id) if _ID_RE.match(usb_id) else None
        elif cur is None:
            continue
        elif kind == "manufacturer":
            cur.manufacturer = rest.strip() or None
        elif kind == "product":
            cur.product = rest.strip() or None
        elif kind == "interface":
            words = rest.split()
            if len(words) >= 5:
                name, cls, sub, proto, drv = words[:5]
                cur.interfaces.append(
                    UsbInterface(name, cls.lower(), sub.lower(), proto.lower(),
                                 None if drv == "-" else drv)
                )
    if cur is not None:
        devices.append(cur.build())
    return tuple(devices)


def _net_devices(netdevs: str, links: str) -> tuple[NetDevice, ...]:
    found: dict[str, NetDevice] = {}
    for line in netdevs.splitlines():
        words = line.split()
        if words:
            drv = words[1] if len(words) > 1 and words[1] != "-" else None
            found[words[0]] = NetDevice(words[0], drv)
    # `ip -o link`: "3: eth0@if4: <...>" -- adds what /sys/class/net did not show.
    for line in links.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            name = parts[1].strip().split("@", 1)[0]
            if name and name not in found:
                found[name] = NetDevice(name)
    return tuple(found.values())


def _wan(routes: str, addrs: str) -> tuple[str | None, IPv4Interface | None]:
    dev = None
    for line in routes.splitlines():
        words = line.split()
        if words[:1] == ["default"] and "dev" in words:
            dev = words[words.index("dev") + 1]
            break
    if dev is None:
        return None, None
    for line in addrs.splitlines():
        words = line.split()
        # "3: wan    inet 100.64.7.2/24 brd ... scope global wan"
        if len(words) >= 4 and words[1] == dev and words[2] == "inet":
            try:
                return dev, IPv4Interface(words[3])
            except ValueError:
                continue
    return dev, None


def parse_facts(parts: Mapping[str, str]) -> RouterFacts:
    """The framed report of :data:`DETECT_SCRIPT` as typed facts; unknown stays "unknown"."""
    rel = _release(parts.get("release", ""))
    try:
        board = json.loads(parts.get("board", "") or "{}")
    except ValueError:
        board = {}
    if not isinstance(board, dict):
        board = {}
    release_info = board.get("release") if isinstance(board.get("release"), dict) else {}
    assert isinstance(release_info, dict)
    manager_text = parts.get("pkgmgr", "").strip()
    manager: Literal["opkg", "apk"] | None = (
        "opkg" if manager_text == "opkg" else "apk" if manager_text == "apk" else None
    )
    flash_free, flash_total = _df(parts.get("flash", ""))
    tmp_free, _ = _df(parts.get("tmp", ""))
    mem_total, mem_avail = _meminfo(parts.get("meminfo", ""))
    wan_dev, wan_addr = _wan(parts.get("routes", ""), parts.get("addrs", ""))
    model = (
        str(board.get("model") or "").strip()
        or parts.get("model", "").strip()
        or "unknown"
    )
    board_name = (
        str(board.get("board_name") or "").strip()
        or parts.get("board_name", "").strip()
        or "unknown"
    )
    return RouterFacts(
        release=rel.get("DISTRIB_RELEASE") or str(release_info.get("version") or "unknown"),
        revision=rel.get("DISTRIB_REVISION") or str(release_info.get("revision") or "unknown"),
        target=rel.get("DISTRIB_TARGET") or str(release_info.get("target") or "unknown"),
        arch=rel.get("DISTRIB_ARCH", "unknown"),
        board_model=model,
        board_name=board_name,
        package_manager=manager,
        packages=MappingProxyType(_packages(parts.get("packages", ""), manager)),
        flash_free_kb=flash_free,
        flash_total_kb=flash_total,
        tmp_free_kb=tmp_free,
        mem_total_kb=mem_total,
        mem_available_kb=mem_avail,
        usb=_usb(parts.get("usb", "")),
        dev_nodes=tuple(
            line.strip() for line in parts.get("devnodes", "").splitlines() if line.strip()
        ),
        net_devices=_net_devices(parts.get("netdevs", ""), parts.get("links", "")),
        wan_device=wan_dev,
        wan_address=wan_addr,
    )
