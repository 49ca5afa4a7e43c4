"""``camera discover``: the router's leases and neighbours (pure, and on the real OpenWrt
userland), vendors by OUI, and the ISAPI probe that never sends a password."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest
from aiohttp import web

from bot.adapters.ssh import ssh_session
from bot.core import Core
from bot.errors import ValidationFailed
from bot.router.discover import (
    DISCOVER_SCRIPT,
    Found,
    Neighbour,
    merge,
    parse_arp,
    parse_leases,
    parse_neighbours,
    parse_own_addresses,
    scan,
    sweep_arguments,
    vendor_of,
    vendors,
)
from bot.services.audit import Actor
from bot.services.discovery import DiscoveredDevice, IsapiProbe, probe_all, probe_isapi, rows
from bot.site import parse_site
from tests.fakes.hikvision_camera import (
    FakeHikvisionCamera,
    ForwardOnlySshServer,
    device_info_xml,
)
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_cli import camreach
from tests.test_router_support import first_contact, target

LAN = IPv4Network("192.168.1.0/24")
HIK_MAC = "44:19:b6:00:00:01"
HIKVISION = "Hangzhou Hikvision Digital Technology Co.,Ltd."

LEASES = """\
1712345678 44:19:B6:00:00:01 192.168.1.64 DS-2CD2043G2 01:44:19:b6:00:00:01
1712345999 bc:ad:28:12:34:56 192.168.1.65 * *
1712340000 02:00:00:00:00:07 192.168.1.70 phone 01:02:00:00:00:00:07
1712340000 02:00:00:00:00:01 192.168.1.1 router *
duid 00:01:00:01:2c:1f:aa:bb:cc:dd:ee:ff
garbage line
1712340000 02:00:00:00:00:09 10.0.0.9 elsewhere *
"""
NEIGH = """\
192.168.1.64 dev br-lan lladdr 44:19:b6:00:00:01 REACHABLE
192.168.1.65 dev br-lan lladdr bc:ad:28:12:34:56 STALE
192.168.1.70 dev br-lan  FAILED
192.168.1.71 dev br-lan  INCOMPLETE
192.168.1.80 dev br-lan lladdr 02:00:00:00:00:80 router PERMANENT
192.168.8.1 dev wwan0 lladdr 0c:96:e6:00:00:01 REACHABLE
"""
ARP = """\
IP address       HW type     Flags       HW address            Mask     Device
192.168.1.64     0x1         0x2         44:19:b6:00:00:01     *        br-lan
192.168.1.72     0x1         0x0         00:00:00:00:00:00     *        br-lan
192.168.1.90     0x1         0x6         02:00:00:00:00:90     *        br-lan
"""


# --- pure parsers ---------------------------------------------------------------------------

def test_leases_are_read_and_odd_lines_skipped() -> None:
    found = parse_leases(LEASES)
    assert [(str(f.ip), f.mac, f.hostname) for f in found] == [
        ("192.168.1.64", HIK_MAC, "DS-2CD2043G2"),
        ("192.168.1.65", "bc:ad:28:12:34:56", None),
        ("192.168.1.70", "02:00:00:00:00:07", "phone"),
        ("192.168.1.1", "02:00:00:00:00:01", "router"),
        ("10.0.0.9", "02:00:00:00:00:09", "elsewhere"),
    ]


def test_neighbours_with_their_states() -> None:
    got = {str(n.ip): (n.mac, n.state, n.present) for n in parse_neighbours(NEIGH)}
    assert got == {
        "192.168.1.64": (HIK_MAC, "REACHABLE", True),
        "192.168.1.65": ("bc:ad:28:12:34:56", "STALE", True),
        "192.168.1.70": (None, "FAILED", False),
        "192.168.1.71": (None, "INCOMPLETE", False),
        "192.168.1.80": ("02:00:00:00:00:80", "PERMANENT", True),
        "192.168.8.1": ("0c:96:e6:00:00:01", "REACHABLE", True),
    }


def test_proc_net_arp() -> None:
    got = {str(n.ip): (n.mac, n.state, n.present) for n in parse_arp(ARP)}
    assert got == {"192.168.1.64": (HIK_MAC, "", True),
                   "192.168.1.72": (None, "INCOMPLETE", False),
                   "192.168.1.90": ("02:00:00:00:00:90", "PERMANENT", True)}


def test_merge_keeps_the_lan_drops_the_absent_and_the_router() -> None:
    own = parse_own_addresses("1: lo    inet 127.0.0.1/8 scope host lo\n"
                              "4: br-lan    inet 192.168.1.1/24 brd 192.168.1.255 scope global\n")
    assert own == {IPv4Address("127.0.0.1"), IPv4Address("192.168.1.1")}
    merged = merge(parse_leases(LEASES), parse_neighbours(NEIGH) + parse_arp(ARP),
                   subnet=LAN, own=own)
    assert merged == [
        Found(IPv4Address("192.168.1.64"), HIK_MAC, "DS-2CD2043G2"),
        Found(IPv4Address("192.168.1.65"), "bc:ad:28:12:34:56", None),
        Found(IPv4Address("192.168.1.80"), "02:00:00:00:00:80", None),
        Found(IPv4Address("192.168.1.90"), "02:00:00:00:00:90", None),
    ]  # .70 leased but FAILED; .71/.72 never answered; .1 the router; 192.168.8.1 off the LAN


def test_merge_prefers_the_live_mac_and_keeps_a_lease_the_table_lacks() -> None:
    leases = [Found(IPv4Address("192.168.1.64"), "02:00:00:00:00:aa", "old-device"),
              Found(IPv4Address("192.168.1.66"), "02:00:00:00:00:66", "quiet")]
    neighbours = [Neighbour(IPv4Address("192.168.1.64"), HIK_MAC, "REACHABLE")]
    assert merge(leases, neighbours, subnet=LAN) == [
        Found(IPv4Address("192.168.1.64"), HIK_MAC, None),  # another device has it now
        Found(IPv4Address("192.168.1.66"), "02:00:00:00:00:66", "quiet"),
    ]


def test_vendor_from_the_oui_registry() -> None:
    assert vendor_of(HIK_MAC) == HIKVISION
    assert vendor_of("BC:AD:28:12:34:56") == HIKVISION
    assert vendor_of("02:00:00:00:00:01") is None  # locally administered: not registered
    assert vendor_of("not a mac") is None


async def test_vendors_run_off_the_loop() -> None:
    assert await vendors([HIK_MAC, HIK_MAC, "02:00:00:00:00:01"]) == {
        HIK_MAC: HIKVISION, "02:00:00:00:00:01": None}


@pytest.mark.parametrize(("subnet", "args"), [
    ("192.168.1.0/24", ["192.168.1", "1", "254", "64"]),
    ("10.0.5.128/25", ["10.0.5", "129", "254", "64"]),
    ("192.168.1.7/30", ["192.168.1", "5", "6", "64"]),
])
def test_sweep_arguments(subnet: str, args: list[str]) -> None:
    assert sweep_arguments(subnet) == args


@pytest.mark.parametrize("subnet", ["10.0.0.0/16", "192.168.0.0/23", "nonsense", "1.2.3.4; rm"])
def test_sweep_refuses_large_or_bad_subnets(subnet: str) -> None:
    with pytest.raises(ValidationFailed):
        sweep_arguments(subnet)


def test_the_script_is_constant_text() -> None:
    assert "{" not in DISCOVER_SCRIPT.replace("${", "").replace("{ ", "")
    assert "ping -c1 -W1" in DISCOVER_SCRIPT


def test_rows_json_keys_and_camera_names() -> None:
    found = [Found(IPv4Address("192.168.1.64"), HIK_MAC, "cam"),
             Found(IPv4Address("192.168.1.80"), "02:00:00:00:00:80", None)]
    out = rows(found, {HIK_MAC: HIKVISION}, [IsapiProbe(True, "DS-2CD2043G2-I"),
                                             IsapiProbe(False)],
               {IPv4Address("192.168.1.64"): "porch"})
    assert [r.to_json() for r in out] == [
        {"ip": "192.168.1.64", "mac": HIK_MAC, "vendor": HIKVISION, "hostname": "cam",
         "isapi": True, "model": "DS-2CD2043G2-I", "camera": "porch"},
        {"ip": "192.168.1.80", "mac": "02:00:00:00:00:80", "vendor": None, "hostname": None,
         "isapi": False, "model": None, "camera": None},
    ]
    assert isinstance(out[0], DiscoveredDevice)


# --- the real script on the real OpenWrt userland --------------------------------------------

def _ns(router: OpenWrtRouter, *args: str) -> None:
    subprocess.run(["ip", "-n", router.netns, *args], check=True, capture_output=True)


async def test_discovery_on_the_real_router(openwrt_router: OpenWrtRouter) -> None:
    router = openwrt_router
    prefix = router.addr.rsplit(".", 1)[0]
    lan = IPv4Network(f"{prefix}.0/24")
    (router.root / "tmp/dhcp.leases").write_text(
        f"1712345678 44:19:b6:00:00:01 {prefix}.64 DS-2CD2043G2 01:44:19:b6:00:00:01\n"
        f"1712345999 bc:ad:28:12:34:56 {prefix}.65 * *\n"
        f"1712340000 02:00:00:00:00:07 {prefix}.70 phone *\n")  # .70 is away: FAILED
    _ns(router, "neigh", "add", f"{prefix}.64", "lladdr", HIK_MAC, "dev", "eth0",
        "nud", "permanent")
    _ns(router, "neigh", "add", f"{prefix}.65", "lladdr", "bc:ad:28:12:34:56", "dev", "eth0",
        "nud", "permanent")
    host_mac = Path(f"/sys/class/net/{router.host_veth}/address").read_text().strip()
    key, pinned = await first_contact(router)
    async with ssh_session(target(router, key, pinned, timeout=30)) as conn:
        found = await scan(conn, lan)
    got = {str(f.ip): (f.mac, f.hostname) for f in found}
    assert got == {
        f"{prefix}.1": (host_mac, None),  # this machine's end of the veth answered the ping
        f"{prefix}.64": (HIK_MAC, "DS-2CD2043G2"),
        f"{prefix}.65": ("bc:ad:28:12:34:56", None),
    }
    assert router.addr not in got


# --- the ISAPI probe: no credentials, ever --------------------------------------------------

@pytest.fixture
async def cam() -> AsyncIterator[FakeHikvisionCamera]:
    async with FakeHikvisionCamera(password="Cam-Pass-1") as camera:
        yield camera


Handler = Callable[[web.Request], Awaitable[web.Response]]


async def _plain_server(handler: Handler) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, port


async def test_probe_sees_the_digest_challenge_and_sends_nothing(
        cam: FakeHikvisionCamera) -> None:
    assert await probe_isapi(cam.host, cam.port) == IsapiProbe(True, None)
    assert cam.credential_attempts == 0 and cam.auth_headers == [] and cam.failed_logins == 0
    assert cam.challenges >= 1


async def test_probe_via_the_droplet_hop_is_bounded(cam: FakeHikvisionCamera) -> None:
    async with ForwardOnlySshServer() as hop, hop.connect() as ssh:
        hop.blackhole.add(("127.0.0.2", cam.port))  # the channel never opens
        began = time.monotonic()
        got = await probe_all([cam.host, "127.0.0.2"], cam.port, ssh=ssh, timeout=1.0)
        took = time.monotonic() - began
    assert got == [IsapiProbe(True, None), IsapiProbe(False)]
    assert took < 2.0
    assert (cam.host, cam.port) in hop.channel_requests
    assert cam.credential_attempts == 0 and cam.auth_headers == []


async def test_plain_http_and_basic_are_not_isapi() -> None:
    async def plain(request: web.Request) -> web.Response:
        return web.Response(text="<html>router</html>", content_type="text/html")

    async def basic(request: web.Request) -> web.Response:
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="x"'})

    seen: list[str | None] = []

    async def info(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(body=device_info_xml(
            model="DS-2CD1321-I", serial="S1", firmware="V5.5", release="build 1",
            name="cam", mac=HIK_MAC), content_type="application/xml")

    for handler, want in ((plain, IsapiProbe(False)), (basic, IsapiProbe(False)),
                          (info, IsapiProbe(True, "DS-2CD1321-I"))):
        runner, port = await _plain_server(handler)
        try:
            assert await probe_isapi("127.0.0.1", port) == want
        finally:
            await runner.cleanup()
    assert seen == [None]


async def test_probe_gives_up_in_time_on_nothing_listening() -> None:
    with socket.socket() as sock:  # a port nothing listens on: refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert await probe_isapi("127.0.0.1", port, timeout=0.5) == IsapiProbe(False)


# --- the whole path: core and CLI, a real router, a camera on its LAN ------------------------

PW_ENV = "CAMREACH_TEST_DISCOVER_ROUTER_PW"


async def test_discover_through_core_and_cli(core: Core, openwrt_router: OpenWrtRouter,
                                             cli_env: dict[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """No droplet: the probes go straight from here (via: direct). The fake camera listens on
    this machine's end of the router's LAN (``host_addr``), so the router sees it there."""
    router = openwrt_router
    prefix = router.addr.rsplit(".", 1)[0]
    (router.root / "tmp/dhcp.leases").write_text(
        f"1712345678 02:00:00:00:00:07 {prefix}.70 phone *\n")
    _ns(router, "neigh", "add", f"{prefix}.64", "lladdr", HIK_MAC, "dev", "eth0",
        "nud", "permanent")  # a HIKVision MAC with nothing behind it: not ISAPI
    spec = parse_site({
        "name": "farm",
        "router": {"host": router.addr, "password_env": PW_ENV, "lan_subnet": f"{prefix}.0/24"},
        "cameras": [{"name": "porch", "host": router.host_addr}],
    })
    await core.apply_site(spec, Actor.cli())
    monkeypatch.setenv(PW_ENV, router.root_password)
    await core.router_first_contact("farm", Actor.cli())
    host_mac = Path(f"/sys/class/net/{router.host_veth}/address").read_text().strip()

    async with FakeHikvisionCamera(host=router.host_addr, port=80) as cam:
        found = await core.discover_cameras("farm")
        res = await asyncio.to_thread(camreach, cli_env, "camera", "discover", "farm", "--json")
        table = await asyncio.to_thread(camreach, cli_env, "camera", "discover", "farm")
    want = [
        {"ip": router.host_addr, "mac": host_mac, "vendor": vendor_of(host_mac),
         "hostname": None, "isapi": True, "model": None, "camera": "porch"},
        {"ip": f"{prefix}.64", "mac": HIK_MAC, "vendor": HIKVISION, "hostname": None,
         "isapi": False, "model": None, "camera": None},
    ]
    assert [d.to_json() for d in found] == want
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == want
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["IP", "MAC", "VENDOR", "HOSTNAME", "ISAPI", "MODEL", "CAMERA"]
    assert router.host_addr in lines[1] and "porch" in lines[1] and " yes " in lines[1]
    assert cam.credential_attempts == 0 and cam.auth_headers == []
