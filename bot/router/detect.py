"""What the router is and which modem hangs off it, from one remote script.

:data:`DETECT_SCRIPT` is constant text (nothing is interpolated into it) that prints a framed
report (:mod:`bot.router.frames`): the OpenWrt release, board, package manager and installed
packages, free flash and memory, USB devices from sysfs, modem device nodes, network
interfaces, and the IPv4 default route. :func:`parse_facts` (:mod:`bot.router.facts`) reads
that report and
:func:`identify_modem` matches it against the table in :mod:`bot.router.modems`; both are
pure, so tests feed them text directly and :func:`detect` is one round trip.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from bot.adapters.ssh import SshConnection
from bot.render.model import ModemProtocol
from bot.router.facts import NetDevice, RouterFacts, UsbDevice, UsbInterface, parse_facts
from bot.router.frames import FRAME_SH, parse_frames
from bot.router.modems import MODES, ModeName, find_modem

__all__ = [
    "CGNAT_NET",
    "DETECT_SCRIPT",
    "Detection",
    "ModemFinding",
    "NetDevice",
    "RouterFacts",
    "UsbDevice",
    "UsbInterface",
    "detect",
    "identify_modem",
    "parse_detection",
    "parse_facts",
]

# RFC 6598 shared address space: an uplink address here means carrier-grade NAT.
CGNAT_NET = ipaddress.IPv4Network("100.64.0.0/10")

DETECT_SCRIPT = (
    r"""
umask 077
T=$(mktemp -d /tmp/camreach-detect.XXXXXX) || exit 1
trap 'rm -rf "$T"' EXIT
"""
    + FRAME_SH
    + r"""
capture release cat /etc/openwrt_release
capture board ubus call system board
capture model cat /tmp/sysinfo/model
capture board_name cat /tmp/sysinfo/board_name
if command -v opkg >/dev/null 2>&1; then
	echo opkg > "$T/pkgmgr"; capture packages opkg list-installed
elif command -v apk >/dev/null 2>&1; then
	echo apk > "$T/pkgmgr"; capture packages apk info -v
else
	: > "$T/pkgmgr"
fi
emit pkgmgr "$T/pkgmgr"
# Flash: the writable overlay on squashfs images, / elsewhere.
if grep -q ' /overlay ' /proc/mounts 2>/dev/null; then
	capture flash df -k /overlay
else
	capture flash df -k /
fi
capture tmp df -k /tmp
capture meminfo cat /proc/meminfo
for d in /sys/bus/usb/devices/*; do
	[ -f "$d/idVendor" ] || continue
	echo "device ${d##*/} $(cat "$d/idVendor"):$(cat "$d/idProduct" 2>/dev/null)"
	[ -f "$d/manufacturer" ] && echo "manufacturer $(head -n 1 "$d/manufacturer")"
	[ -f "$d/product" ] && echo "product $(head -n 1 "$d/product")"
	for i in "$d"/*:*; do
		[ -f "$i/bInterfaceClass" ] || continue
		drv=-
		[ -L "$i/driver" ] && drv=$(basename "$(readlink "$i/driver")")
		sub=$(cat "$i/bInterfaceSubClass" 2>/dev/null || echo -)
		proto=$(cat "$i/bInterfaceProtocol" 2>/dev/null || echo -)
		echo "interface ${i##*/} $(cat "$i/bInterfaceClass") $sub $proto $drv"
	done
done > "$T/usb" 2>/dev/null
emit usb "$T/usb"
ls -1d /dev/cdc-wdm* /dev/ttyUSB* /dev/ttyACM* > "$T/devnodes" 2>/dev/null
emit devnodes "$T/devnodes"
for n in /sys/class/net/*; do
	[ -e "$n" ] || continue
	drv=-
	[ -L "$n/device/driver" ] && drv=$(basename "$(readlink "$n/device/driver")")
	echo "${n##*/} $drv"
done > "$T/netdevs" 2>/dev/null
emit netdevs "$T/netdevs"
capture links ip -o link show
capture routes ip -4 route show default
capture addrs ip -4 -o addr show
"""
)


@dataclass(frozen=True)
class ModemFinding:
    """The modem camreach found and what it proposes for it."""

    model: str
    usb_id: str | None
    mode: ModeName
    mode_description: str
    protocol: ModemProtocol | None  # None: the mode must be switched first
    device: str | None  # control device node, or the network interface for dhcp
    device_present: bool  # False: expected there once the driver is installed
    packages: tuple[str, ...]
    missing_packages: tuple[str, ...]
    source: str  # where the table row (or the guess) comes from
    note: str = ""

    @property
    def needs_modeswitch(self) -> bool:
        return self.mode == "mass-storage"


@dataclass(frozen=True)
class Detection:
    facts: RouterFacts
    modem: ModemFinding | None
    cgnat: bool | None  # None: cannot tell from the router (no uplink, or behind HiLink NAT)

    @property
    def missing_packages(self) -> tuple[str, ...]:
        return self.modem.missing_packages if self.modem else ()

    def summary(self) -> str:
        """Plain text for chat and the terminal; no secrets in here."""
        f = self.facts
        lines = [
            f"Router: {f.board_model} — OpenWrt {f.release} ({f.revision}), "
            f"{f.target}, {f.arch}",
            f"Package manager: {f.package_manager or 'none found'}, "
            f"{len(f.packages)} packages installed",
            f"Flash free: {_kb(f.flash_free_kb)} of {_kb(f.flash_total_kb)}; "
            f"memory available: {_kb(f.mem_available_kb)} of {_kb(f.mem_total_kb)}",
        ]
        m = self.modem
        if m is None:
            usb = ", ".join(f"{d.usb_id} {d.name}" for d in f.usb) or "none"
            lines.append(f"Modem: none recognised (USB devices: {usb})")
        else:
            lines.append(f"Modem: {m.model} ({m.usb_id or 'unknown id'}), {m.mode_description}")
            if m.needs_modeswitch:
                lines.append(
                    "It is in mass-storage mode: a mode switch is needed "
                    "(usb-modeswitch does it; detect again afterwards)."
                )
            else:
                where = m.device or "?"
                state = "present" if m.device_present else "not present yet"
                lines.append(f"Proposed protocol: {m.protocol}, device {where} ({state})")
            if m.missing_packages:
                lines.append("Missing packages: " + ", ".join(m.missing_packages))
            if m.note:
                lines.append(m.note)
        if f.wan_address is None:
            lines.append("Uplink: no IPv4 default route yet")
        elif self.cgnat:
            lines.append(
                f"Uplink {f.wan_device} {f.wan_address.ip}: carrier-grade NAT (100.64.0.0/10); "
                "the tunnel to the droplet is needed to reach this site"
            )
        elif self.cgnat is None:
            lines.append(
                f"Uplink {f.wan_device} {f.wan_address.ip}: a private address (the modem's own "
                "NAT); whether the operator adds carrier-grade NAT cannot be seen from here"
            )
        else:
            lines.append(f"Uplink {f.wan_device} {f.wan_address.ip}: a public address")
        return "\n".join(lines)


def _kb(value: int | None) -> str:
    if value is None:
        return "unknown"
    return f"{value / 1024:.1f} MiB" if value >= 1024 else f"{value} KiB"


# --- matching ------------------------------------------------------------------------------

# USB interface class triplets (bInterfaceClass/SubClass/Protocol, USB-IF class codes) that
# give the mode away when neither the id nor a bound driver does.
_CLASS_MODES: tuple[tuple[str, str | None, ModeName], ...] = (
    ("02", "0e", "mbim"),  # CDC MBIM
    ("02", "0d", "ncm"),  # CDC NCM
    ("02", "06", "hilink-cdc-ether"),  # CDC ECM
    ("e0", "01", "hilink-rndis"),  # wireless controller / RNDIS
    ("ef", "04", "hilink-rndis"),  # misc / RNDIS over Ethernet
    ("08", None, "mass-storage"),
)


def _guess_mode(dev: UsbDevice) -> tuple[ModeName, str] | None:
    for iface in dev.interfaces:
        if iface.driver:
            for mode, spec in MODES.items():
                if iface.driver in spec.drivers:
                    return mode, f"guessed from the interface driver {iface.driver}"
    for iface in dev.interfaces:
        for cls, sub, mode in _CLASS_MODES:
            if iface.cls == cls and (sub is None or iface.subclass == sub):
                return mode, f"guessed from the USB interface class {iface.cls}/{iface.subclass}"
    return None


def _device_for(mode: ModeName, facts: RouterFacts) -> tuple[str | None, bool]:
    spec = MODES[mode]
    if spec.protocol is None:
        return None, False
    if spec.protocol == "dhcp":
        by_driver = [n.name for n in facts.net_devices if n.driver in spec.drivers]
        if by_driver:
            return by_driver[0], True
        names = {n.name for n in facts.net_devices}
        for cand in spec.device_candidates:
            if cand in names:
                return cand, True
        return spec.device_candidates[0], False
    for cand in spec.device_candidates:
        if cand in facts.dev_nodes:
            return cand, True
    # Numbering differs when several modems (or a USB serial adapter) are attached.
    prefix = spec.device_candidates[0].rstrip("0123456789")
    for node in facts.dev_nodes:
        if node.startswith(prefix):
            return node, True
    return spec.device_candidates[0], False


def identify_modem(facts: RouterFacts) -> ModemFinding | None:
    """The modem among the USB devices: by table row first, else guessed from its drivers."""
    found: list[tuple[UsbDevice, str, ModeName, str, str]] = []
    for dev in facts.usb:
        row = find_modem(dev.usb_id)
        if row is not None:
            found.append((dev, row.model, row.mode, row.source, row.note))
    if not found:
        for dev in facts.usb:
            if dev.usb_id.startswith("1d6b:"):  # Linux root hubs
                continue
            guess = _guess_mode(dev)
            if guess is not None:
                found.append((dev, dev.name, guess[0], guess[1], "not in camreach's table"))
    if not found:
        return None
    # A usable modem wins over a stick still hiding behind its CD-ROM.
    found.sort(key=lambda item: item[2] == "mass-storage")
    dev, model, mode, source, note = found[0]
    spec = MODES[mode]
    device, present = _device_for(mode, facts)
    missing = tuple(p for p in spec.packages if not facts.has_package(p))
    if mode == "mass-storage" and facts.has_package("usb-modeswitch"):
        note = (note + "; " if note else "") + (
            "usb-modeswitch is installed but the stick has not switched: unplug and replug "
            "it, or check /etc/usb-mode.json"
        )
    elif spec.protocol is not None and not present and device is not None:
        note = (note + "; " if note else "") + (
            f"{device} appears once the driver is installed and the modem is replugged"
        )
    return ModemFinding(
        model=model,
        usb_id=dev.usb_id,
        mode=mode,
        mode_description=spec.description,
        protocol=spec.protocol,
        device=device,
        device_present=present,
        packages=spec.packages,
        missing_packages=missing,
        source=source,
        note=note,
    )


def _cgnat(facts: RouterFacts) -> bool | None:
    if facts.wan_address is None:
        return None
    ip = facts.wan_address.ip
    if ip in CGNAT_NET:
        return True
    if ip.is_private:
        return None  # behind another NAT (a HiLink stick's 192.168.8.x): cannot tell
    return False


def parse_detection(parts: Mapping[str, str]) -> Detection:
    facts = parse_facts(parts)
    return Detection(facts, identify_modem(facts), _cgnat(facts))


async def detect(conn: SshConnection) -> Detection:
    """One round trip: run :data:`DETECT_SCRIPT` and parse what it prints."""
    res = await conn.run(DETECT_SCRIPT, input=b"")
    return parse_detection(parse_frames(res.stdout_bytes or res.stdout, where=conn.target.where))
