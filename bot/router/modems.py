"""Which USB modem is plugged in, what mode it is in, and what OpenWrt needs to drive it.

Two tables, both data:

- :data:`MODEMS`: a USB id (``vendor:product`` as sysfs shows it) -> model and mode. The same
  stick has different ids in different modes (a Huawei E3372h is ``12d1:1f01`` as a CD-ROM,
  ``12d1:1506`` in stick/NCM mode and ``12d1:14dc`` in HiLink mode), so the id says the mode.
- :data:`MODES`: a mode -> the netifd protocol, the packages and the device node it needs.

Every row names where it comes from. Sources, in short form:

- ``usb-mode.json``: OpenWrt's usb-modeswitch table (``/etc/usb-mode.json`` of the
  ``usb-modeswitch`` package, generated from usb_modeswitch-data); for a mass-storage id it
  lists the ids the stick switches to.
- ``qmi_wwan.c``: the Linux driver's device table (``drivers/net/usb/qmi_wwan.c``,
  ``products[]``); a row there means the kernel binds QMI to that id.
- ``usb.ids``: the Linux USB ID Repository (http://www.linux-usb.org/usb.ids).
- ``quirks.c``: ``drivers/usb/core/quirks.c`` (Fibocom L850-GL).
- OpenWrt forum/wiki threads are named by URL.

The package names are OpenWrt 23.05's (``kmod-usb-net-huawei-cdc-ncm``, ``comgt-ncm``, ...);
the protocols are netifd's (``/lib/netifd/proto/*.sh``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.render.model import ModemProtocol

__all__ = ["MODEMS", "MODES", "ModeName", "ModeSpec", "ModemRow", "find_modem"]

ModeName = Literal[
    "mass-storage", "ncm", "hilink-cdc-ether", "hilink-rndis", "qmi", "mbim", "serial-3g"
]


@dataclass(frozen=True)
class ModeSpec:
    """How OpenWrt drives a modem in one mode."""

    description: str
    protocol: ModemProtocol | None  # None: not usable as is (switch the mode first)
    packages: tuple[str, ...]
    # Where the control device appears, in order of preference; a name without "/dev/"
    # is a network interface (HiLink sticks are configured as a plain DHCP uplink).
    device_candidates: tuple[str, ...]
    # Interface drivers that show the mode when the USB id is unknown.
    drivers: tuple[str, ...] = ()
    source: str = ""


MODES: dict[ModeName, ModeSpec] = {
    "mass-storage": ModeSpec(
        "a USB CD-ROM/storage device: the modem inside is not visible until usb-modeswitch "
        "switches it (OpenWrt does that automatically once usb-modeswitch is installed)",
        None,
        ("usb-modeswitch",),
        (),
        ("usb-storage",),
        "usb-mode.json",
    ),
    "ncm": ModeSpec(
        "stick mode: NCM network interface, AT commands on the serial/cdc-wdm port",
        "ncm",
        ("kmod-usb-net-huawei-cdc-ncm", "comgt-ncm", "kmod-usb-serial-option"),
        ("/dev/cdc-wdm0", "/dev/ttyUSB0"),
        ("huawei_cdc_ncm", "cdc_ncm"),
        "lib/netifd/proto/ncm.sh; https://gist.github.com/aliicex/8bdade7383fa58d874bb72cc54f84d2c",
    ),
    "hilink-cdc-ether": ModeSpec(
        "HiLink mode: the stick is a small router itself (CDC Ethernet, 192.168.8.1); "
        "OpenWrt takes an address from it by DHCP",
        "dhcp",
        ("kmod-usb-net-cdc-ether",),
        ("eth1", "usb0"),
        ("cdc_ether",),
        "https://forum.openwrt.org/t/huawei-e3372-does-not-working-in-19-07/69650",
    ),
    "hilink-rndis": ModeSpec(
        "HiLink mode over RNDIS: the stick is a small router itself; DHCP uplink",
        "dhcp",
        ("kmod-usb-net-rndis",),
        ("usb0", "eth1"),
        ("rndis_host",),
        "https://forum.openwrt.org/t/huawei-e3372h-325-now-working-stuck-in-cdrom-only-mode-with-openwrt/153556",
    ),
    "qmi": ModeSpec(
        "QMI: a Qualcomm modem driven by uqmi over /dev/cdc-wdm0",
        "qmi",
        ("kmod-usb-net-qmi-wwan", "uqmi", "kmod-usb-serial-option"),
        ("/dev/cdc-wdm0",),
        ("qmi_wwan",),
        "lib/netifd/proto/qmi.sh; qmi_wwan.c",
    ),
    "mbim": ModeSpec(
        "MBIM: a standard mobile broadband modem driven by umbim over /dev/cdc-wdm0",
        "mbim",
        ("kmod-usb-net-cdc-mbim", "umbim"),
        ("/dev/cdc-wdm0",),
        ("cdc_mbim",),
        "lib/netifd/proto/mbim.sh",
    ),
    "serial-3g": ModeSpec(
        "a 3G serial modem: PPP over the modem's first serial port",
        "3g",
        ("comgt", "kmod-usb-serial-option", "kmod-usb-serial-wwan"),
        ("/dev/ttyUSB0",),
        ("option",),
        "lib/netifd/proto/3g.sh; https://forum.openwrt.org/t/huawei-e3533-usb-modem-dongle-usbmode-switch/28744",
    ),
}


@dataclass(frozen=True)
class ModemRow:
    usb_id: str  # "12d1:1506", lower-case hex as in sysfs idVendor/idProduct
    model: str
    mode: ModeName
    source: str
    note: str = ""


MODEMS: tuple[ModemRow, ...] = (
    # Huawei E3372h (and the E3131/E353 family that share its ids).
    ModemRow(
        "12d1:1f01", "Huawei E3372h / E3131 / E353", "mass-storage",
        "usb-mode.json (12d1:1f01 -> 12d1:14db/14dc, HuaweiNew); usb.ids",
        "after the switch it is 12d1:14dc (HiLink firmware) or 12d1:1506 (stick firmware)",
    ),
    ModemRow(
        "12d1:1506", "Huawei E3372h (stick firmware)", "ncm",
        "https://gist.github.com/aliicex/8bdade7383fa58d874bb72cc54f84d2c (12d1:1506 = "
        "huawei_cdc_ncm); usb.ids 'Modem/Networkcard'",
    ),
    ModemRow(
        "12d1:14dc", "Huawei E3372h (HiLink firmware)", "hilink-cdc-ether",
        "usb.ids 'E33372 LTE/UMTS/GSM HiLink Modem/Networkcard'; "
        "https://forum.openwrt.org/t/huawei-e3372-does-not-working-in-19-07/69650",
    ),
    ModemRow(
        "12d1:14db", "Huawei E3131 / E353 / E3533 (HiLink)", "hilink-cdc-ether",
        "usb.ids 'E353/E3131'; https://forum.openwrt.org/t/huawei-e3533-usb-modem-dongle-"
        "usbmode-switch/28744 (lsusb -t: Driver=cdc_ether)",
    ),
    # Other Huawei sticks.
    ModemRow(
        "12d1:1446", "Huawei E1550 / E173 (3G)", "mass-storage",
        "usb-mode.json (12d1:1446 -> 12d1:1001/1436/..., HuaweiNew)",
        "after the switch it is a 3G serial modem such as 12d1:1001 or 12d1:1436",
    ),
    ModemRow(
        "12d1:1001", "Huawei E169 / E620 / E800 (3G)", "serial-3g",
        "usb.ids 'E169/E620/E800 HSDPA Modem'; forum.openwrt.org/t/28744 (modem mode 12d1:1001)",
    ),
    # ZTE.
    ModemRow(
        "19d2:1225", "ZTE MF823 / MF831", "mass-storage",
        "usb-mode.json (19d2:1225 -> 19d2:1405, StandardEject)",
        "after the switch it is 19d2:1405 (CDC Ethernet)",
    ),
    ModemRow(
        "19d2:1405", "ZTE MF823 / MF831", "hilink-cdc-ether",
        "usb-mode.json target of 19d2:1225",
    ),
    ModemRow(
        "19d2:2000", "ZTE MF190 / MF626 / MF627 and others (3G)", "mass-storage",
        "usb-mode.json (19d2:2000 -> 19d2:0001/0002/0031/..., StandardEject)",
        "after the switch it is a 3G modem such as 19d2:0031",
    ),
    ModemRow("19d2:0167", "ZTE MF820D", "qmi", "qmi_wwan.c {0x19d2, 0x0167} /* ZTE MF820D */"),
    ModemRow("19d2:0257", "ZTE MF821", "qmi", "qmi_wwan.c {0x19d2, 0x0257} /* ZTE MF821 */"),
    # Quectel (QMI).
    ModemRow(
        "2c7c:0125", "Quectel EC25 / EC20 R2.0", "qmi",
        "qmi_wwan.c QMI_QUIRK_SET_DTR(0x2c7c, 0x0125, 4) /* Quectel EC25, EC20 R2.0 */",
    ),
    ModemRow("2c7c:0121", "Quectel EC21", "qmi", "qmi_wwan.c QMI_QUIRK_SET_DTR(0x2c7c, 0x0121, 4)"),
    ModemRow("2c7c:0306", "Quectel EP06", "qmi", "qmi_wwan.c QMI_QUIRK_SET_DTR(0x2c7c, 0x0306, 4)"),
    # Sierra Wireless (QMI).
    ModemRow(
        "1199:9071", "Sierra Wireless MC7455 / MC7430 (MC74xx)", "qmi",
        "qmi_wwan.c QMI_FIXED_INTF(0x1199, 0x9071, 8) /* Sierra Wireless MC74xx */",
    ),
    ModemRow(
        "1199:9079", "Sierra Wireless EM7455 (EM74xx)", "qmi",
        "qmi_wwan.c QMI_FIXED_INTF(0x1199, 0x9079, 8) /* Sierra Wireless EM74xx */",
    ),
    ModemRow(
        "1199:68c0", "Sierra Wireless MC7304 / MC7354", "qmi",
        "qmi_wwan.c QMI_FIXED_INTF(0x1199, 0x68c0, 8)",
    ),
    # MBIM.
    ModemRow(
        "2cb7:0007", "Fibocom L850-GL", "mbim",
        "quirks.c 'Fibocom L850-GL LTE Modem' 2cb7:0007; ChromiumOS shill (MBIM modem)",
    ),
)


_BY_ID = {row.usb_id: row for row in MODEMS}


def find_modem(usb_id: str) -> ModemRow | None:
    """The table row for ``vendor:product`` (case-insensitive), or None."""
    return _BY_ID.get(usb_id.lower())
