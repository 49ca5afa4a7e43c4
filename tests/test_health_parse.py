"""The health checks' parsers on real-looking output of the droplet and the router.

Samples: ``ubus call system info`` and ``ubus call network.interface dump`` as the OpenWrt
23.05 userland of the test router prints them (the modem's ncm interface with its dynamic
``wwan_4`` child as netifd reports a dialled stick); ``wg show wg0 dump`` in wireguard-tools'
format; ``ping -c 1 -W 2`` as iputils (Ubuntu, the droplet) and busybox (OpenWrt) print it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.health.probes import MODEM_INTERFACES
from bot.render.health_parse import (
    SystemInfo,
    WgPeer,
    format_age,
    is_cgnat,
    parse_ping,
    parse_system_info,
    parse_wan_address,
    parse_wg_peer,
)
from bot.render.model import ModemConfig

ROUTER_KEY = "kQvK0yS3qK9vQ1c2Gk1S0S8rjQf0Z3uJp9u7mT3pX2s="
PHONE_KEY = "Ym9vdHN0cmFwcGVkLXBob25lLWtleS0wMDAwMDAwMDA="
WG_DUMP = (
    "oCd5l1H1k3lSmB0c5t9jQ0G9fE5b0Qj8bW3nNqV3Y2M=\tWn3m2x8c2Fq1mZ5JtP0kq1n1t8dS0wQzYl3e6q2Vh0o="
    "\t51820\toff\n"
    f"{ROUTER_KEY}\t(none)\t100.64.7.2:41377\t10.8.0.2/32,192.168.1.0/24\t1712345600"
    "\t1843220\t2291012\toff\n"
    f"{PHONE_KEY}\t(none)\t(none)\t10.8.0.10/32\t0\t0\t0\toff\n"
)

SYSTEM_INFO = """{
	"localtime": 1796168184,
	"uptime": 273713,
	"load": [
		7864,
		5242,
		3276
	],
	"memory": {
		"total": 61341696,
		"free": 21270528,
		"shared": 3608576,
		"buffered": 2338816,
		"available": 26259456,
		"cached": 10665984
	},
	"root": {
		"total": 4480,
		"free": 3204,
		"used": 1276,
		"avail": 3204
	},
	"tmp": {
		"total": 29952,
		"free": 29752,
		"used": 200,
		"avail": 29752
	},
	"swap": {
		"total": 0,
		"free": 0
	}
}
"""


def _iface(name: str, *, up: bool = True, addresses: tuple[str, ...] = (),
           default_route: bool = False, **extra: Any) -> dict[str, Any]:
    return {
        "interface": name, "up": up, "pending": False, "available": True, "autostart": True,
        "dynamic": name.endswith("_4"), "uptime": 5120, "l3_device": extra.get("dev", name),
        "proto": extra.get("proto", "static"), "device": extra.get("dev", name),
        "metric": 0, "dns_metric": 0, "delegation": True,
        "ipv4-address": [{"address": a, "mask": 24} for a in addresses],
        "ipv6-address": [], "ipv6-prefix": [], "ipv6-prefix-assignment": [],
        "route": [{"target": "0.0.0.0", "mask": 0, "nexthop": "100.72.13.6",
                   "source": "0.0.0.0/0"}] if default_route else [],
        "dns-server": [], "dns-search": [], "neighbors": [], "data": {},
    }


def dump(*entries: dict[str, Any]) -> str:
    return json.dumps({"interface": list(entries)}, indent="\t")


LAN = _iface("lan", addresses=("192.168.1.1",), dev="br-lan")
NCM_DIALLED = dump(
    LAN, _iface("loopback", addresses=("127.0.0.1",), dev="lo"),
    _iface("wwan", proto="ncm", dev="wwan0"),
    _iface("wwan_4", proto="dhcp", dev="wwan0", addresses=("100.72.13.5",), default_route=True),
    _iface("camreach_droplet", proto="wireguard", dev="wg0", addresses=("10.8.0.2",)),
)
HILINK = dump(LAN, _iface("wwan", proto="dhcp", dev="eth1", addresses=("192.168.8.100",),
                          default_route=True))
MODEM_DOWN_WIRED_UP = dump(
    LAN, _iface("wwan", proto="ncm", dev="wwan0", up=False),
    _iface("ltelink", addresses=("100.64.7.2",), default_route=True, dev="lte0"))
NOTHING_UP = dump(LAN, _iface("wwan", proto="qmi", dev="wwan0", up=False))


# --- wg show wg0 dump -----------------------------------------------------------------------

@pytest.mark.parametrize(("key", "now", "want"), [
    (ROUTER_KEY, 1712345635, WgPeer(35, 1843220, 2291012, "100.64.7.2:41377")),
    (ROUTER_KEY, 1712345600 + 4 * 60, WgPeer(240, 1843220, 2291012, "100.64.7.2:41377")),
    # The droplet's clock a little behind the handshake's: no negative age.
    (ROUTER_KEY, 1712345598, WgPeer(0, 1843220, 2291012, "100.64.7.2:41377")),
    (PHONE_KEY, 1712345635, WgPeer(None, 0, 0, None)),  # 0: never handshook
    ("bm9ib2R5LWtub3dzLXRoaXMta2V5LTAwMDAwMDAwMDA=", 1712345635, None),
], ids=["recent", "minutes", "clock-skew", "never", "absent"])
def test_wg_peer(key: str, now: float, want: WgPeer | None) -> None:
    assert parse_wg_peer(WG_DUMP, key, now) == want


def test_wg_peer_is_found_without_the_interface_line_and_never_in_it() -> None:
    peers_only = WG_DUMP.split("\n", 1)[1]
    assert parse_wg_peer(peers_only, ROUTER_KEY, 1712345635) == parse_wg_peer(
        WG_DUMP, ROUTER_KEY, 1712345635)
    # The interface line holds the server's keys; neither names a peer.
    private, public = WG_DUMP.split("\t")[:2]
    assert parse_wg_peer(WG_DUMP, private, 0) is None
    assert parse_wg_peer(WG_DUMP, public, 0) is None


@pytest.mark.parametrize("text", ["", "garbage", "unable to access interface: No such device\n",
                                  f"{ROUTER_KEY}\t(none)\t(none)\n"])
def test_wg_peer_on_odd_output(text: str) -> None:
    assert parse_wg_peer(text, ROUTER_KEY, 1712345635) is None


# --- ubus call system info --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "want"), [
    # load 7864/65536; memory "available"; root 3204 KiB free
    (SYSTEM_INFO, SystemInfo(273713, 0.12, 26259456, 3204 * 1024)),
    # Older procd: no "available", so free + buffered.
    ('{"uptime": 60, "load": [65536, 0, 0], "memory": {"free": 1000, "buffered": 24},'
     ' "root": {"free": 1}}', SystemInfo(60, 1.0, 1024, 1024)),
    ('{"uptime": 5, "memory": {"free": 4096}}', SystemInfo(5, None, 4096, None)),
    ('{"load": "high", "memory": [], "root": {"free": -3}, "uptime": true}', SystemInfo()),
    ("", SystemInfo()),
    ("Command failed: Not found\n", SystemInfo()),
    ("[1, 2]", SystemInfo()),
], ids=["openwrt-23.05", "older-procd", "partial", "wrong-types", "empty", "error", "list"])
def test_system_info(text: str, want: SystemInfo) -> None:
    assert parse_system_info(text) == want


# --- the uplink's address ---------------------------------------------------------------------

@pytest.mark.parametrize(("text", "want"), [
    (NCM_DIALLED, "100.72.13.5"),  # the ncm interface's IPv4 child
    (HILINK, "192.168.8.100"),  # the stick's own NAT
    (MODEM_DOWN_WIRED_UP, "100.64.7.2"),  # the interface with the default route
    (NOTHING_UP, None),
    ("", None),
    ('{"interface": "wwan"}', None),
], ids=["ncm", "hilink", "default-route", "nothing-up", "empty", "malformed"])
def test_wan_address(text: str, want: str | None) -> None:
    assert parse_wan_address(text, MODEM_INTERFACES) == want


def test_wan_address_prefers_the_named_interface_over_the_default_route() -> None:
    both = dump(LAN, _iface("wan", addresses=("203.0.113.7",), default_route=True, dev="eth1"),
                _iface("wwan", proto="dhcp", dev="usb0", addresses=("192.168.8.100",)))
    assert parse_wan_address(both, ["wwan"]) == "192.168.8.100"
    assert parse_wan_address(both, ["modem"]) == "203.0.113.7"


def test_the_modem_interface_is_the_one_camreach_configures() -> None:
    assert MODEM_INTERFACES[0] == ModemConfig(protocol="ncm", device="/dev/cdc-wdm0").interface


@pytest.mark.parametrize(("address", "want"), [
    ("100.64.0.0", True), ("100.72.13.5", True), ("100.127.255.255", True),
    ("100.63.255.255", False), ("100.128.0.0", False), ("192.168.8.100", False),
    ("203.0.113.7", False), ("", False), ("not an address", False), ("fd00::1", False),
])
def test_cgnat(address: str, want: bool) -> None:
    assert is_cgnat(address) is want


# --- ping -------------------------------------------------------------------------------------

IPUTILS_OK = """PING 10.8.0.2 (10.8.0.2) 56(84) bytes of data.
64 bytes from 10.8.0.2: icmp_seq=1 ttl=64 time=23.4 ms

--- 10.8.0.2 ping statistics ---
1 packets transmitted, 1 received, 0% packet loss, time 0ms
rtt min/avg/max/mdev = 23.412/23.412/23.412/0.000 ms
"""
IPUTILS_LOST = """PING 10.8.0.2 (10.8.0.2) 56(84) bytes of data.

--- 10.8.0.2 ping statistics ---
1 packets transmitted, 0 received, 100% packet loss, time 0ms

"""
IPUTILS_UNREACHABLE = """PING 10.8.0.2 (10.8.0.2) 56(84) bytes of data.
From 10.8.0.1 icmp_seq=1 Destination Host Unreachable

--- 10.8.0.2 ping statistics ---
1 packets transmitted, 0 received, +1 errors, 100% packet loss, time 0ms

"""
BUSYBOX_OK = """PING 100.64.7.1 (100.64.7.1): 56 data bytes
64 bytes from 100.64.7.1: seq=0 ttl=64 time=0.676 ms

--- 100.64.7.1 ping statistics ---
1 packets transmitted, 1 packets received, 0% packet loss
round-trip min/avg/max = 0.676/0.676/0.676 ms
"""
BUSYBOX_LOST = """PING 100.64.7.9 (100.64.7.9): 56 data bytes

--- 100.64.7.9 ping statistics ---
1 packets transmitted, 0 packets received, 100% packet loss
"""


@pytest.mark.parametrize(("output", "want"), [
    (IPUTILS_OK, 23.4),
    (BUSYBOX_OK, 0.676),
    ("64 bytes from 10.8.0.2: icmp_seq=1 ttl=64 time<1 ms\n", 1.0),
    ("rtt min/avg/max/mdev = 1.000/7.250/9.000/1.000 ms\n", 7.25),  # summary only
    (IPUTILS_LOST, None),
    (IPUTILS_UNREACHABLE, None),
    (BUSYBOX_LOST, None),
    ("ping: 10.8.0.2: Name or service not known\n", None),
    ("sh: 1: ping: not found\n", None),
    ("", None),
], ids=["iputils", "busybox", "sub-ms", "summary-only", "lost", "unreachable", "busybox-lost",
        "bad-name", "missing", "empty"])
def test_ping(output: str, want: float | None) -> None:
    assert parse_ping(output) == want


# --- durations ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("seconds", "want"), [
    (0, "0 s"), (35.9, "35 s"), (119, "119 s"), (120, "2 min"), (4 * 60 + 59, "4 min"),
    (119 * 60, "119 min"), (2 * 3600, "2 h"), (47 * 3600, "47 h"), (3 * 86400 + 5, "3 d"),
    (-4, "0 s"),
])
def test_format_age(seconds: float, want: str) -> None:
    assert format_age(seconds) == want
