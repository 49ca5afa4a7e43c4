"""Detection: the modem table row by row (pure), and the real script on the OpenWrt userland.

The chroot has no USB and an empty /sys, so the real-router test builds the smallest stand-in:
sysfs-like files for one USB device (``/sys/bus/usb/devices/1-1/idVendor`` ...), plain files
for ``/dev/cdc-wdm0``/``/dev/ttyUSB0`` in the router's private /dev, and a veth inside the
router's own namespace as the LTE uplink. Everything else (release, packages, df, meminfo,
``ip``) is the router's own.
"""

from __future__ import annotations

import subprocess
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from bot.adapters.ssh import ssh_session
from bot.router.detect import (
    DETECT_SCRIPT,
    Detection,
    identify_modem,
    parse_detection,
    parse_facts,
)
from bot.router.detect import detect as detect_router
from bot.router.frames import parse_frames
from bot.router.modems import MODEMS, MODES, find_modem
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_support import first_contact, target

RELEASE = """DISTRIB_ID='OpenWrt'
DISTRIB_RELEASE='23.05.3'
DISTRIB_REVISION='r23809-234f1a2efa'
DISTRIB_TARGET='ramips/mt76x8'
DISTRIB_ARCH='mipsel_24kc'
DISTRIB_DESCRIPTION='OpenWrt 23.05.3 r23809-234f1a2efa'
"""
BOARD = '{"model": "TP-Link TL-MR3020 v3", "board_name": "tplink,tl-mr3020-v3"}'
FLASH = """Filesystem           1K-blocks      Used Available Use% Mounted on
/dev/mtdblock5            3968       540      3428  14% /overlay
"""


def framed(parts: dict[str, str]) -> str:
    return "".join(f"@{k} {len(v.encode())}\n{v}" for k, v in parts.items())


def report(usb: str = "", devnodes: str = "", netdevs: str = "", packages: str = "",
           routes: str = "", addrs: str = "") -> Detection:
    text = framed({
        "release": RELEASE, "board": BOARD, "model": "", "board_name": "",
        "packages": packages or "base-files - 1554-r23809\nkernel - 5.15.150-1-abc\n",
        "pkgmgr": "opkg\n", "flash": FLASH, "tmp": FLASH.replace("/overlay", "/tmp"),
        "meminfo": "MemTotal:          59000 kB\nMemAvailable:      30000 kB\n",
        "usb": usb, "devnodes": devnodes, "netdevs": netdevs, "links": "",
        "routes": routes, "addrs": addrs,
    })
    return parse_detection(parse_frames(text))


def usb_device(usb_id: str, *interfaces: str, product: str = "Mobile") -> str:
    lines = [f"device 1-1 {usb_id}", "manufacturer Vendor", f"product {product}"]
    lines += [f"interface 1-1:1.{i} {iface}" for i, iface in enumerate(interfaces)]
    return "\n".join(lines) + "\n"


# --- the table, row by row ------------------------------------------------------------------

def test_usb_ids_are_unique_and_every_mode_is_described() -> None:
    ids = [row.usb_id for row in MODEMS]
    assert len(ids) == len(set(ids))
    assert {row.mode for row in MODEMS} <= set(MODES)
    for row in MODEMS:
        assert row.source, f"{row.usb_id} has no source"
    for mode in MODES.values():
        assert mode.source and mode.packages


@pytest.mark.parametrize("row", MODEMS, ids=[f"{r.usb_id}-{r.mode}" for r in MODEMS])
def test_every_table_row_is_recognised(row: object) -> None:
    from bot.router.modems import ModemRow

    assert isinstance(row, ModemRow)
    spec = MODES[row.mode]
    # The device node the mode needs is present (as a file) and one of its packages is
    # already installed, so the finding must say which others are missing.
    node = spec.device_candidates[0] if spec.device_candidates else ""
    devnodes = node + "\n" if node.startswith("/dev/") else ""
    netdevs = f"{node} {spec.drivers[0]}\n" if node and not node.startswith("/dev/") else ""
    installed = f"{spec.packages[0]} - 1.0-1\n"
    found = report(usb=usb_device(row.usb_id.upper()), devnodes=devnodes, netdevs=netdevs,
                   packages=installed)
    m = found.modem
    assert m is not None
    assert (m.usb_id, m.model, m.mode, m.source) == (row.usb_id, row.model, row.mode, row.source)
    assert m.protocol == spec.protocol
    assert m.missing_packages == spec.packages[1:]
    if row.mode == "mass-storage":
        assert m.needs_modeswitch and m.device is None and m.protocol is None
        assert "mode switch is needed" in found.summary()
        assert m.missing_packages == ()  # usb-modeswitch was "installed" above
        assert "has not switched" in m.note
    else:
        assert not m.needs_modeswitch
        assert (m.device, m.device_present) == (node, True)
        assert f"Proposed protocol: {m.protocol}, device {node} (present)" in found.summary()


def test_the_e3372h_in_its_three_identities() -> None:
    storage = report(usb=usb_device("12d1:1f01", "08 06 50 usb-storage"))
    stick = report(usb=usb_device("12d1:1506", "ff 02 16 huawei_cdc_ncm"),
                   devnodes="/dev/ttyUSB0\n/dev/ttyUSB1\n")
    hilink = report(usb=usb_device("12d1:14dc", "02 06 00 cdc_ether"), netdevs="eth1 cdc_ether\n")
    assert storage.modem and storage.modem.needs_modeswitch
    assert storage.missing_packages == ("usb-modeswitch",)
    assert "12d1:14dc (HiLink firmware) or 12d1:1506 (stick firmware)" in storage.modem.note
    assert stick.modem and (stick.modem.protocol, stick.modem.device) == ("ncm", "/dev/ttyUSB0")
    assert stick.missing_packages == MODES["ncm"].packages
    assert hilink.modem and (hilink.modem.protocol, hilink.modem.device) == ("dhcp", "eth1")


def test_a_missing_driver_means_the_node_is_expected_not_present() -> None:
    found = report(usb=usb_device("2c7c:0125"))  # EC25 without qmi_wwan: no /dev/cdc-wdm0
    assert found.modem is not None
    assert (found.modem.device, found.modem.device_present) == ("/dev/cdc-wdm0", False)
    assert "appears once the driver is installed" in found.modem.note
    assert "kmod-usb-net-qmi-wwan" in found.missing_packages


@pytest.mark.parametrize(("interface", "mode"), [
    ("ff ff ff qmi_wwan", "qmi"),
    ("02 0e 00 -", "mbim"),
    ("e0 01 03 rndis_host", "hilink-rndis"),
    ("02 06 00 -", "hilink-cdc-ether"),
    ("08 06 50 -", "mass-storage"),
    ("ff ff ff option", "serial-3g"),
])
def test_unknown_ids_are_guessed_from_drivers_and_classes(interface: str, mode: str) -> None:
    found = report(usb=usb_device("1234:5678", interface))
    assert found.modem is not None and found.modem.mode == mode
    assert found.modem.usb_id == "1234:5678" and "guessed" in found.modem.source


def test_hubs_and_unrelated_devices_are_not_modems() -> None:
    found = report(usb=usb_device("1d6b:0002", "09 00 00 hub") + usb_device("0781:5567"))
    assert found.modem is None
    assert "Modem: none recognised" in found.summary()


def test_a_switched_stick_wins_over_a_usb_disk_in_storage_mode() -> None:
    usb = usb_device("19d2:1225", "08 06 50 usb-storage") + usb_device("12d1:1506").replace(
        "1-1", "1-2")
    found = report(usb=usb)
    assert found.modem is not None and found.modem.mode == "ncm"


@pytest.mark.parametrize(("address", "cgnat"), [
    ("100.64.12.34/10", True), ("100.127.255.1/10", True), ("192.168.8.100/24", None),
    ("81.2.69.160/24", False), (None, None),
])
def test_carrier_grade_nat_is_told_by_the_uplink_address(address: str | None,
                                                         cgnat: bool | None) -> None:
    routes = "default via 100.64.0.1 dev wwan0 proto static\n" if address else ""
    addrs = f"5: wwan0    inet {address} brd + scope global wwan0\n" if address else ""
    found = report(routes=routes, addrs=addrs)
    assert found.cgnat is cgnat
    if address:
        assert found.facts.wan_address == IPv4Interface(address)
    if cgnat:
        assert "carrier-grade NAT" in found.summary()


def test_facts_from_the_report() -> None:
    f = report().facts
    assert (f.release, f.revision, f.target, f.arch) == (
        "23.05.3", "r23809-234f1a2efa", "ramips/mt76x8", "mipsel_24kc")
    assert (f.board_model, f.board_name) == ("TP-Link TL-MR3020 v3", "tplink,tl-mr3020-v3")
    assert (f.flash_free_kb, f.flash_total_kb) == (3428, 3968)
    assert (f.mem_total_kb, f.mem_available_kb) == (59000, 30000)
    assert f.packages["kernel"] == "5.15.150-1-abc"


def test_apk_package_lists_are_read_too() -> None:
    text = framed({"pkgmgr": "apk\n",
                   "packages": "kmod-usb-net-cdc-ether-6.6.73-r1\nuqmi-2024.08.17~a7ba2b3e-r1\n"})
    f = parse_facts(parse_frames(text))
    assert f.package_manager == "apk"
    assert f.packages == {"kmod-usb-net-cdc-ether": "6.6.73-r1", "uqmi": "2024.08.17~a7ba2b3e-r1"}


def test_garbage_gives_unknowns_not_a_crash() -> None:
    text = framed({"release": "\x00nonsense", "board": "{not json", "flash": "df: error",
                   "usb": "device\ndevice 1-1 zz:yy\ninterface x\nproduct\n",
                   "routes": "default", "addrs": "1: lo inet", "meminfo": ":::"})
    found = parse_detection(parse_frames(text))
    assert found.facts.release == "unknown" and found.facts.board_model == "unknown"
    assert found.facts.flash_free_kb is None and found.modem is None and found.cgnat is None
    assert "unknown" in found.summary()
    assert identify_modem(found.facts) is None


def test_find_modem_ignores_case() -> None:
    assert find_modem("12D1:1506") is find_modem("12d1:1506") is not None


# --- the real script on the real userland ---------------------------------------------------

def plant_e3372h_stick(router: OpenWrtRouter) -> None:
    """sysfs-like files for a Huawei E3372h in stick (NCM) mode, and its device nodes."""
    dev = router.root / "sys/bus/usb/devices/1-1"
    for name, value in {"idVendor": "12d1", "idProduct": "1506",
                        "manufacturer": "HUAWEI_MOBILE", "product": "HUAWEI_MOBILE"}.items():
        (dev / name).parent.mkdir(parents=True, exist_ok=True)
        (dev / name).write_text(value + "\n")
    drivers = router.root / "sys/bus/usb/drivers"
    for num, (cls, sub, proto, driver) in enumerate([("ff", "02", "16", "huawei_cdc_ncm"),
                                                     ("ff", "02", "12", "option")]):
        iface = dev / f"1-1:1.{num}"
        iface.mkdir()
        (iface / "bInterfaceClass").write_text(cls + "\n")
        (iface / "bInterfaceSubClass").write_text(sub + "\n")
        (iface / "bInterfaceProtocol").write_text(proto + "\n")
        (drivers / driver).mkdir(parents=True, exist_ok=True)
        (iface / "driver").symlink_to(Path("../../../drivers") / driver)
    for node in ("cdc-wdm0", "ttyUSB0", "ttyUSB1"):
        (router.root / "dev" / node).touch()
    (router.root / "tmp/sysinfo").mkdir(exist_ok=True)
    (router.root / "tmp/sysinfo/model").write_text("TP-Link TL-MR3020 v3\n")
    (router.root / "tmp/sysinfo/board_name").write_text("tplink,tl-mr3020-v3\n")


def remove_packages(router: OpenWrtRouter, *names: str) -> None:
    # The snapshot lost the exec bits of some maintainer scripts; opkg runs them on removal.
    router.run("chmod +x /usr/lib/opkg/info/*.prerm /usr/lib/opkg/info/*.postrm 2>/dev/null;"
               " opkg remove --force-depends " + " ".join(names) + " >/dev/null")


def lte_uplink(router: OpenWrtRouter, address: str = "100.72.13.5/10") -> None:
    """A stand-in uplink inside the router's own namespace, with a CGNAT address."""
    ns = ["ip", "-n", router.netns]  # the host's ip: busybox's cannot name a veth's peer
    for args in (["link", "add", "wwan0", "type", "veth", "peer", "name", "wwan0p"],
                 ["link", "set", "wwan0p", "up"], ["addr", "add", address, "dev", "wwan0"],
                 ["link", "set", "wwan0", "up"],
                 ["route", "add", "default", "via", "100.64.0.1", "dev", "wwan0"]):
        subprocess.run([*ns, *args], check=True, capture_output=True)


async def test_detect_on_the_real_router_in_one_round_trip(openwrt_router: OpenWrtRouter) -> None:
    router = openwrt_router
    plant_e3372h_stick(router)
    lte_uplink(router)
    # The rootfs has every modem package; take two away so something is missing.
    remove_packages(router, "comgt-ncm", "kmod-usb-net-huawei-cdc-ncm")
    key, pinned = await first_contact(router)
    async with ssh_session(target(router, key, pinned)) as conn:
        calls = 0
        real_run = conn.run

        async def counting_run(*args, **kwargs):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real_run(*args, **kwargs)

        conn.run = counting_run  # type: ignore[method-assign]
        found = await detect_router(conn)
    assert calls == 1

    f = found.facts
    assert (f.release, f.target, f.arch) == ("23.05-SNAPSHOT", "x86/64", "x86_64")
    assert f.board_model == "TP-Link TL-MR3020 v3"  # procd read it from /tmp/sysinfo
    assert f.package_manager == "opkg" and "uqmi" in f.packages
    assert f.flash_free_kb and f.flash_free_kb > 1000 and f.mem_total_kb
    assert {"eth0", "wwan0", "lo"} <= {n.name for n in f.net_devices}
    assert set(f.dev_nodes) == {"/dev/cdc-wdm0", "/dev/ttyUSB0", "/dev/ttyUSB1"}
    assert [d.usb_id for d in f.usb] == ["12d1:1506"]
    assert [i.driver for i in f.usb[0].interfaces] == ["huawei_cdc_ncm", "option"]
    m = found.modem
    assert m is not None
    assert (m.model, m.mode, m.protocol, m.device) == (
        "Huawei E3372h (stick firmware)", "ncm", "ncm", "/dev/cdc-wdm0")
    assert m.missing_packages == ("kmod-usb-net-huawei-cdc-ncm", "comgt-ncm")
    assert found.cgnat is True and str(f.wan_address) == "100.72.13.5/10"
    assert "carrier-grade NAT" in found.summary()


def test_the_script_is_constant_text() -> None:
    # Nothing from a site or a user is ever formatted into it.
    assert "{" not in DETECT_SCRIPT.replace("${", "").replace("{ ", "")


async def test_detect_reads_bytes_that_are_not_utf8(openwrt_router: OpenWrtRouter) -> None:
    """A USB product string in Latin-1 (or garbage) must not break the framed read."""
    router = openwrt_router
    plant_e3372h_stick(router)
    (router.root / "sys/bus/usb/devices/1-1/product").write_bytes(b"Stick \xe9\xff\xfe LTE\n")
    (router.root / "tmp/sysinfo/model").write_bytes(b"Routeur \xe0 la ferme\n")
    key, pinned = await first_contact(router)
    async with ssh_session(target(router, key, pinned)) as conn:
        found = await detect_router(conn)
    assert found.facts.board_model == "Routeur \ufffd la ferme"
    assert [d.usb_id for d in found.facts.usb] == ["12d1:1506"]  # the frames after it are whole
    assert found.modem is not None and found.modem.mode == "ncm"
