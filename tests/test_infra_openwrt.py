"""Proof that the OpenWrt router fixture (tests/infra/openwrt_router.py) gives a real router.

These talk to the real OpenWrt programs over real SSH. ``known_hosts=None`` is acceptable only
here, in tests of the fixture itself; code under test must pin the router's host key.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncssh
import pytest

if TYPE_CHECKING:
    from tests.infra.openwrt_router import OpenWrtRouter


RouterFactory = Callable[..., "OpenWrtRouter"]


def connect(
    router: OpenWrtRouter, **kwargs: Any
) -> AbstractAsyncContextManager[asyncssh.SSHClientConnection]:
    options: dict[str, Any] = {
        "port": router.ssh_port,
        "username": "root",
        "password": router.root_password,
        "known_hosts": None,
        "client_keys": [],
        "agent_path": None,
        "connect_timeout": 10,
    }
    options.update(kwargs)
    return asyncssh.connect(router.addr, **options)


def tcp_connect_ms(router: OpenWrtRouter) -> float:
    """Time of one TCP handshake with the router's SSH port (one round trip)."""
    started = time.monotonic()
    with socket.create_connection((router.addr, router.ssh_port), timeout=5):
        return (time.monotonic() - started) * 1000


async def test_password_login_runs_uci_show_network(openwrt_router: OpenWrtRouter) -> None:
    async with connect(openwrt_router) as conn:
        result = await conn.run("uci show network", check=True)
        server_key = conn.get_server_host_key()
    assert isinstance(result.stdout, str)
    assert "network.lan.device='eth0'" in result.stdout
    assert f"network.lan.ipaddr='{openwrt_router.addr}'" in result.stdout
    # The key dropbear presented is one of the router's own, so tests can pin it.
    assert server_key is not None
    key_type = server_key.get_algorithm()
    assert key_type in openwrt_router.host_public_keys()
    assert server_key.get_fingerprint() == openwrt_router.host_key_fingerprint(key_type)


async def test_pinned_host_key_is_accepted_and_a_wrong_one_is_not(
    openwrt_router: OpenWrtRouter,
) -> None:
    pinned = asyncssh.import_known_hosts(openwrt_router.known_hosts())
    async with connect(openwrt_router, known_hosts=pinned) as conn:
        assert (await conn.run("echo pinned", check=True)).stdout == "pinned\n"

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    wrong = asyncssh.import_known_hosts(f"{openwrt_router.addr} {other}")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(openwrt_router, known_hosts=wrong):
            pass


async def test_wrong_password_is_refused(openwrt_router: OpenWrtRouter) -> None:
    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(openwrt_router, password="not-the-password"):
            pass


async def test_uci_commit_over_ssh_changes_the_config_file(openwrt_router: OpenWrtRouter) -> None:
    network = openwrt_router.root / "etc/config/network"
    async with connect(openwrt_router) as conn:
        await conn.run(
            "uci set network.wwan=interface && uci set network.wwan.proto=dhcp"
            " && uci set network.wwan.device=wwan0",
            check=True,
        )
        # Staged, not yet written: uci keeps it under /tmp/.uci until commit.
        assert "wwan" not in network.read_text()
        assert "network.wwan.proto='dhcp'" in str((await conn.run("uci changes network")).stdout)
        await conn.run("uci commit network", check=True)

    text = network.read_text()
    assert "config interface 'wwan'" in text
    assert "option proto 'dhcp'" in text
    assert openwrt_router.run("uci get network.wwan.device").stdout == "wwan0\n"


async def test_ubus_answers_board_interface_and_rpcd_session(
    openwrt_router: OpenWrtRouter,
) -> None:
    async with connect(openwrt_router) as conn:
        board = json.loads(str((await conn.run("ubus call system board", check=True)).stdout))
        lan = json.loads(
            str((await conn.run("ubus call network.interface.lan status", check=True)).stdout)
        )
        login = await conn.run(
            "ubus call session login "
            f"'{{\"username\":\"root\",\"password\":\"{openwrt_router.root_password}\"}}'"
        )
        bad_login = await conn.run(
            "ubus call session login '{\"username\":\"root\",\"password\":\"nope\"}'"
        )

    assert board["release"]["distribution"] == "OpenWrt"
    assert board["release"]["version"].startswith("23.05")
    assert board["hostname"] == "OpenWrt"
    assert lan["up"] is True
    assert lan["device"] == "eth0"
    assert [a["address"] for a in lan["ipv4-address"]] == [openwrt_router.addr]
    assert login.exit_status == 0
    assert len(json.loads(str(login.stdout))["ubus_rpc_session"]) == 32
    assert bad_login.exit_status != 0  # rpcd checks the real /etc/shadow


async def test_two_routers_at_once_do_not_collide(openwrt_router_factory: RouterFactory) -> None:
    first, second = openwrt_router_factory(), openwrt_router_factory()
    assert len({first.netns, second.netns}) == 2
    assert len({first.addr, second.addr}) == 2
    assert len({first.host_veth, second.host_veth}) == 2
    assert first.root != second.root
    assert first.host_key_fingerprint() != second.host_key_fingerprint()

    async with connect(first) as conn1, connect(second) as conn2:
        await conn1.run("uci set system.@system[0].hostname=first && uci commit system", check=True)
        name1 = (await conn1.run("uci get system.@system[0].hostname", check=True)).stdout
        name2 = (await conn2.run("uci get system.@system[0].hostname", check=True)).stdout
        addr2 = (await conn2.run("ip -4 -o addr show dev eth0", check=True)).stdout
    assert name1 == "first\n"
    assert name2 == "OpenWrt\n"
    assert f"inet {second.addr}/24" in str(addr2)
    assert "hostname 'first'" not in (second.root / "etc/config/system").read_text()


def test_run_is_inside_the_router_with_private_dev_and_empty_sys(
    openwrt_router: OpenWrtRouter,
) -> None:
    assert openwrt_router.run("cat /etc/openwrt_release").stdout.count("23.05") >= 1
    # Own PID namespace: PID 1 is the router's init, not this machine's.
    assert openwrt_router.run("ps | grep -c ' /sbin/procd$'").stdout.strip() == "1"
    assert openwrt_router.run("cat /proc/1/cmdline | tr '\\0' ' '").stdout != Path(
        "/proc/1/cmdline"
    ).read_text().replace("\0", " ")
    assert openwrt_router.run("cat /proc/sys/kernel/hostname").stdout == "OpenWrt\n"

    # /dev is the router's own: files made there do not appear on this machine, and the host
    # side sees what the router sees (so tests can plant fake modem devices either way).
    openwrt_router.run("touch /dev/cdc-wdm0")
    assert (openwrt_router.root / "dev/cdc-wdm0").exists()
    assert not Path("/dev/cdc-wdm0").exists()
    (openwrt_router.root / "dev/ttyUSB0").touch()
    assert openwrt_router.run("ls /dev/ttyUSB0").returncode == 0
    assert openwrt_router.run("head -c 8 /dev/urandom | wc -c").stdout.strip() == "8"

    # /sys is an ordinary empty directory for sysfs-like fixture files.
    assert openwrt_router.run("ls -A /sys").stdout == ""
    usb = openwrt_router.root / "sys/bus/usb/devices/1-1"
    usb.mkdir(parents=True)
    (usb / "idVendor").write_text("12d1\n")
    assert openwrt_router.run("cat /sys/bus/usb/devices/1-1/idVendor").stdout == "12d1\n"

    with pytest.raises(subprocess.CalledProcessError) as failed:
        openwrt_router.run("echo oops >&2; exit 3")
    assert failed.value.returncode == 3
    assert openwrt_router.run("exit 3", check=False).returncode == 3


async def test_arun_does_not_block_the_event_loop(openwrt_router: OpenWrtRouter) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    result = await openwrt_router.arun("sleep 1; uci get network.lan.proto")
    ticker.cancel()
    assert result.stdout == "static\n"
    assert ticks >= 50


async def test_cut_link_stalls_an_open_session_until_restored(
    openwrt_router: OpenWrtRouter,
) -> None:
    async with connect(openwrt_router) as conn:
        assert (await conn.run("echo before", check=True)).stdout == "before\n"
        openwrt_router.cut_link()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(conn.run("echo during", check=True), 2)
        with pytest.raises((TimeoutError, OSError)):
            async with connect(openwrt_router, connect_timeout=2):
                pass
        openwrt_router.restore_link()
        result = await asyncio.wait_for(conn.run("echo after", check=True), 15)
        assert result.stdout == "after\n"


def test_add_latency_delays_packets_and_clear_removes_it(openwrt_router: OpenWrtRouter) -> None:
    baseline = min(tcp_connect_ms(openwrt_router) for _ in range(3))
    openwrt_router.add_latency(200)
    delayed = min(tcp_connect_ms(openwrt_router) for _ in range(3))
    openwrt_router.clear_latency()
    after = min(tcp_connect_ms(openwrt_router) for _ in range(3))
    assert baseline < 50
    assert 200 <= delayed < 600
    assert after < 50


def test_stop_leaves_nothing_behind(openwrt_router_factory: RouterFactory) -> None:
    router = openwrt_router_factory()
    router.run("sleep 300 </dev/null >/dev/null 2>&1 &")
    router.cut_link()
    router.add_latency(10)
    workdir = router.root.parent
    router.stop()

    assert router.netns not in subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert not Path("/sys/class/net", router.host_veth).exists()
    assert str(workdir) not in Path("/proc/mounts").read_text()
    assert not workdir.exists()
    assert not router.is_running()
    leftovers = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(workdir) in os.readlink(proc / "root") + (proc / "cmdline").read_text():
                    leftovers.append(proc.name)
            except OSError:
                continue
    assert leftovers == []
    with pytest.raises(RuntimeError, match="not running"):
        router.run("true")


async def test_netifd_brings_up_wireguard_with_userspace_wireguard_go(
    openwrt_router: OpenWrtRouter,
) -> None:
    router = openwrt_router
    router.enable_userspace_wireguard()
    # A second, hand-made wireguard-go peer in the same router, reached over loopback.
    peer_key = router.run("wg genkey").stdout.strip()
    peer_pub = router.run(f"echo {peer_key} | wg pubkey").stdout.strip()
    router.run(
        f"wireguard-go wg9 2>/dev/null && echo {peer_key} > /tmp/peer.key"
        " && wg set wg9 private-key /tmp/peer.key listen-port 51999"
        " && ip addr add 10.77.0.1/32 dev wg9 && ip link set wg9 up"
    )
    async with connect(router) as conn:
        await conn.run(
            "uci set network.wg0=interface && uci set network.wg0.proto=wireguard"
            " && uci set network.wg0.private_key=\"$(wg genkey)\""
            " && uci add_list network.wg0.addresses=10.77.0.2/24"
            " && uci set network.hub=wireguard_wg0"
            f" && uci set network.hub.public_key={peer_pub}"
            " && uci add_list network.hub.allowed_ips=10.77.0.0/24"
            " && uci add_list network.hub.allowed_ips=192.168.77.0/24"
            " && uci set network.hub.route_allowed_ips=1"
            " && uci set network.hub.endpoint_host=127.0.0.1"
            " && uci set network.hub.endpoint_port=51999"
            " && uci set network.hub.persistent_keepalive=1"
            " && uci commit network && ubus call network reload",
            check=True,
        )
    deadline = time.monotonic() + 20
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        out = router.run("ifstatus wg0", check=False).stdout
        status = json.loads(out) if out.strip().startswith("{") else {}
        if status.get("up"):
            break
        await asyncio.sleep(0.2)
    assert status.get("up") is True, router.diagnostics()
    assert "192.168.77.0/24 dev wg0" in router.run("ip route").stdout

    wg0_pub = router.run("wg show wg0 public-key").stdout.strip()
    router.run(f"wg set wg9 peer {wg0_pub} allowed-ips 10.77.0.2/32")
    handshake = "0"
    while time.monotonic() < deadline + 10:
        handshake = router.run("wg show wg0 latest-handshakes").stdout.split()[-1]
        if handshake != "0":
            break
        await asyncio.sleep(0.2)
    assert handshake != "0", router.run("wg show all").stdout
