"""Routers camreach can put OpenWrt on through the TP-Link bootloader's TFTP recovery.

Each row is one hardware revision, with the sources its numbers come from. The recovery
works the same way on all of them: the PC has a fixed address, the router is powered on
with its reset button held, and its bootloader fetches one file by TFTP and writes it to
flash from offset 0. That is why the largest image is the whole flash minus the partitions
the bootloader keeps (config and Wi-Fi calibration): a larger image would overwrite them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import NotFound

KIB = 1024
MIB = 1024 * KIB

# OpenWrt's tftp-recovery image for the 8 MiB MediaTek TP-Links ("8Mmtk" layout) is
# 128 KiB of padding for the bootloader partition plus the 7808 KiB firmware partition
# (`IMAGE/tftp-recovery.bin := pad-extra 128k | ...`, `IMAGE_SIZE := 7808k`).
_MT76X8_IMAGE_MAKEFILE = (
    "https://github.com/openwrt/openwrt/blob/main/target/linux/ramips/image/mt76x8.mk"
)
_8M_MTK_RECOVERY_MAX = 128 * KIB + 7808 * KIB

OPENWRT_DEFAULT_IP = "192.168.1.1"
FIRMWARE_SELECTOR = "https://firmware-selector.openwrt.org/"


@dataclass(frozen=True, slots=True)
class RouterModel:
    """One router revision and how its bootloader recovers by TFTP."""

    key: str
    name: str
    uplink: str
    server_ip: str  # the address this PC must have; the bootloader sends its request there
    recovery_filename: str  # the name the bootloader asks for
    openwrt_ip: str  # where the freshly flashed OpenWrt answers
    flash_bytes: int
    max_image_bytes: int
    openwrt_target: str  # e.g. "ramips/mt76x8", the directory on downloads.openwrt.org
    openwrt_device: str  # OpenWrt's device id, part of every image name
    # How to enter recovery: power off, hold the button, power on, keep holding.
    reset_button: str
    power_off: str
    hold: str
    sources: tuple[str, ...]
    server_prefix: int = 24

    @property
    def recovery_steps(self) -> tuple[str, ...]:
        return (
            "Connect the router's Ethernet port to this PC with a cable.",
            f"Power the router off completely: {self.power_off}.",
            f"Press and hold the {self.reset_button}.",
            f"Keep holding it and power the router on; keep holding for {self.hold},"
            " until camreach shows the transfer starting.",
        )

    @property
    def image_pattern(self) -> str:
        """Glob for the OpenWrt image to download, e.g. for the file-name check."""
        target = self.openwrt_target.replace("/", "-")
        return f"openwrt-*-{target}-{self.openwrt_device}-squashfs-tftp-recovery.bin"

    @property
    def selector_url(self) -> str:
        target = self.openwrt_target.replace("/", "%2F")
        return f"{FIRMWARE_SELECTOR}?target={target}&id={self.openwrt_device}"


_HOLD_6S = "about 6-7 seconds"
_HOLD_8S = "at least 8 seconds"

MODELS: tuple[RouterModel, ...] = (
    RouterModel(
        key="tl-mr3020-v3",
        name="TP-Link TL-MR3020 v3",
        uplink="USB modem",
        server_ip="192.168.0.225",
        recovery_filename="tp_recovery.bin",
        openwrt_ip=OPENWRT_DEFAULT_IP,
        flash_bytes=8 * MIB,
        max_image_bytes=_8M_MTK_RECOVERY_MAX,
        openwrt_target="ramips/mt76x8",
        openwrt_device="tplink_tl-mr3020-v3",
        reset_button="reset button (next to the row of lights on top)",
        power_off="unplug the USB power cable",
        hold="about 6-7 seconds (the 3G/4G/WAN LED starts flashing)",
        sources=(
            "https://openwrt.org/toh/tp-link/tl-mr3020_v3",
            "https://github.com/openwrt/openwrt/pull/1327",
            "https://github.com/freifunk-gluon/gluon/pull/1926",
            _MT76X8_IMAGE_MAKEFILE,
        ),
    ),
    RouterModel(
        key="tl-mr3420-v5",
        name="TP-Link TL-MR3420 v5",
        uplink="USB modem",
        server_ip="192.168.0.225",
        recovery_filename="tp_recovery.bin",
        openwrt_ip=OPENWRT_DEFAULT_IP,
        flash_bytes=8 * MIB,
        max_image_bytes=_8M_MTK_RECOVERY_MAX,
        openwrt_target="ramips/mt76x8",
        openwrt_device="tplink_tl-mr3420-v5",
        reset_button="reset button",
        power_off="switch it off or unplug the power supply",
        hold=_HOLD_6S,
        sources=(
            "https://openwrt.org/toh/tp-link/tl-mr3420_v5",
            "https://github.com/lede-project/source/pull/1583",
            _MT76X8_IMAGE_MAKEFILE,
        ),
    ),
    RouterModel(
        key="tl-wr842n-v5",
        name="TP-Link TL-WR842N v5",
        uplink="USB modem",
        server_ip="192.168.0.225",
        recovery_filename="tp_recovery.bin",
        openwrt_ip=OPENWRT_DEFAULT_IP,
        flash_bytes=8 * MIB,
        max_image_bytes=_8M_MTK_RECOVERY_MAX,
        openwrt_target="ramips/mt76x8",
        openwrt_device="tplink_tl-wr842n-v5",
        reset_button="reset button",
        power_off="switch it off or unplug the power supply",
        hold=_HOLD_6S,
        sources=(
            "https://github.com/openwrt/openwrt/pull/1045",
            _MT76X8_IMAGE_MAKEFILE,
        ),
    ),
    RouterModel(
        key="tl-wr902ac-v3",
        name="TP-Link TL-WR902AC v3",
        uplink="USB modem",
        server_ip="192.168.0.66",
        recovery_filename="tp_recovery.bin",
        openwrt_ip=OPENWRT_DEFAULT_IP,
        flash_bytes=8 * MIB,
        max_image_bytes=_8M_MTK_RECOVERY_MAX,
        openwrt_target="ramips/mt76x8",
        openwrt_device="tplink_tl-wr902ac-v3",
        reset_button="reset button",
        power_off="unplug the power cable",
        hold=_HOLD_6S,
        sources=(
            "https://openwrt.org/toh/tp-link/tl-wr902ac_v3",
            "https://gist.github.com/grantstephens/326756a7d800d300e0e4263f7b68ac38",
            _MT76X8_IMAGE_MAKEFILE,
        ),
    ),
    RouterModel(
        key="tl-mr6400-v4",
        name="TP-Link TL-MR6400 v4",
        uplink="built-in LTE",
        server_ip="192.168.0.225",
        recovery_filename="tp_recovery.bin",
        openwrt_ip=OPENWRT_DEFAULT_IP,
        flash_bytes=8 * MIB,
        max_image_bytes=_8M_MTK_RECOVERY_MAX,
        openwrt_target="ramips/mt76x8",
        openwrt_device="tplink_tl-mr6400-v4",
        reset_button="reset/WPS button",
        power_off="unplug the power supply",
        hold=_HOLD_8S,
        sources=(
            "https://openwrt.org/toh/tp-link/tl-mr6400_v4",
            "https://gist.github.com/gamwe6/ef726b550037957a4d6d5255dc7efa7a",
            _MT76X8_IMAGE_MAKEFILE,
        ),
    ),
    RouterModel(
        key="tl-mr6400-v5",
        name="TP-Link TL-MR6400 v5",
        uplink="built-in LTE",
        server_ip="192.168.0.225",
        recovery_filename="tp_recovery.bin",
        openwrt_ip=OPENWRT_DEFAULT_IP,
        flash_bytes=8 * MIB,
        max_image_bytes=_8M_MTK_RECOVERY_MAX,
        openwrt_target="ramips/mt76x8",
        openwrt_device="tplink_tl-mr6400-v5",
        reset_button="reset/WPS button",
        power_off="unplug the power supply",
        hold=_HOLD_8S,
        sources=(
            "https://git.openwrt.org/?p=openwrt/openwrt.git;a=commit;"
            "h=b641eb6ecfbfc2c6a488483332d4b5a6ee4c736c",
            "https://github.com/freifunk-gluon/gluon/pull/2918",
            _MT76X8_IMAGE_MAKEFILE,
        ),
    ),
)

_BY_KEY = {m.key: m for m in MODELS}


@dataclass(frozen=True, slots=True)
class FlashTarget:
    """What to serve and where: a row of the table, or addresses given by hand."""

    label: str
    server_ip: str
    filename: str
    openwrt_ip: str
    model: RouterModel | None = None
    server_prefix: int = 24


def model_keys() -> tuple[str, ...]:
    return tuple(_BY_KEY)


def get_model(key: str) -> RouterModel:
    """The row for ``key`` (case-insensitive); NotFound lists the known keys."""
    try:
        return _BY_KEY[key.strip().lower()]
    except KeyError:
        known = ", ".join(_BY_KEY)
        raise NotFound(
            f"Unknown router model {key!r}. Known models: {known}. "
            "For another router give --server-ip and --filename from its OpenWrt wiki page."
        ) from None
