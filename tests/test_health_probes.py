"""The site prober against the real stand-ins: the droplet (this machine's sshd and
wireguard-go in a namespace), the OpenWrt userland router linked to it by the real tunnel (as in
test_router_tunnel: the "LTE" link is a veth with carrier-grade-NAT addresses), a fake HIKVision
camera on the router's LAN reached through the tunnel, and the fake DigitalOcean API.

The modem is the sysfs stand-in of an E3372h stick; ``gcom`` (the one tool its readout uses)
answers as the stick would. The camera listens on this machine's end of the router's LAN; the
droplet routes the site LAN into wg0 (what wg-quick does from AllowedIPs) and the router
masquerades tunnel traffic onto its LAN (the camera's gateway is not the router here).

Outcomes are read on the far side: sshd's and dropbear's logs count logins, the fake camera
counts requests, the fake DigitalOcean API records what it was asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.actions import for_chat
from bot.adapters.camera import CameraAuthRefused
from bot.core import Core
from bot.db.models import Droplet, Site
from bot.health.model import HANDSHAKE_STALE_AFTER, Probe
from bot.health.probes import ProbeTimeouts, SiteProber
from bot.render.wg_conf import server_conf
from bot.router.access import RouterTiming
from bot.router.service import RouterService
from bot.services import identity
from bot.services.audit import Actor
from bot.services.cameras import CameraService
from bot.services.droplets import DropletService, server_config
from bot.services.vpn_keys import ensure_site_keys
from bot.site import SiteSpec
from tests.fakes.digitalocean_api import ENDPOINT_ENV, FakeDigitalOcean
from tests.fakes.hikvision_camera import FakeHikvisionCamera
from tests.infra.droplet_host import DropletHost
from tests.infra.openwrt_router import OpenWrtRouter, require_tool
from tests.test_router_detect import plant_e3372h_stick
from tests.test_router_modem_status import AT, install_script
from tests.test_router_tunnel import ROUTER_PW_ENV, link_router_to_droplet, site_spec

CAM_PW_ENV = "CAMREACH_TEST_HEALTH_CAM_PASSWORD"
GATE_PW_ENV = "CAMREACH_TEST_HEALTH_GATE_PASSWORD"
CAM_PASSWORD = "Cam-Pass-1"
TIMING = RouterTiming(connect_timeout=3, command_timeout=15, rollback_deadline=20,
                      confirm_grace=8)
TIMEOUTS = ProbeTimeouts(droplet=2.0)  # the rest as in production


@dataclass
class Lab:
    router: OpenWrtRouter
    droplet: DropletHost
    do: FakeDigitalOcean
    service: RouterService
    droplets: DropletService
    cameras: CameraService
    porch: FakeHikvisionCamera
    gate: FakeHikvisionCamera
    prober: SiteProber


def answer_at_commands(router: OpenWrtRouter, device: str,
                       replies: dict[str, str] | None = None) -> None:
    """The stick's AT port: gcom answers what the E3372h answers (by default: registered on
    airtel LTE); an empty ``replies``, a port that says nothing."""
    replies = AT if replies is None else replies
    cases = "\n".join(f"\t'{cmd}') printf '%s' '{reply}' ;;" for cmd, reply in replies.items())
    install_script(router, "/usr/bin/gcom", f"""#!/bin/sh
[ "$1 $2" = "-d {device}" ] || exit 2
case "$COMMAND" in
{cases}
esac
""")


def route_lan_through_the_tunnel(router: OpenWrtRouter, droplet: DropletHost,
                                 spec: SiteSpec) -> None:
    lan = shlex.quote(str(spec.router.lan_subnet))
    droplet.run(f"ip route add {lan} dev wg0", check=True)
    # OpenWrt turns forwarding on at boot (/etc/sysctl.d/10-default.conf), which the test
    # router skips; the setting is the router's namespace's own.
    subprocess.run(["ip", "netns", "exec", router.netns, "sysctl", "-qw",
                    "net.ipv4.ip_forward=1"], check=True)
    vpn = shlex.quote(str(spec.vpn.subnet))
    router.run("nft add table ip camreach_test && nft 'add chain ip camreach_test post "
               "{ type nat hook postrouting priority 100 ; }' && "
               f"nft add rule ip camreach_test post ip saddr {vpn} oifname eth0 masquerade")


async def site_with_cameras(core: Core, router: OpenWrtRouter, porch: FakeHikvisionCamera,
                            gate: FakeHikvisionCamera) -> SiteSpec:
    doc = site_spec(router).to_json()
    doc["cameras"] = [
        {"name": "porch", "host": router.host_addr, "port": porch.port,
         "password_env": CAM_PW_ENV},
        {"name": "gate", "host": router.host_addr, "port": gate.port,
         "password_env": GATE_PW_ENV},
    ]
    spec = SiteSpec.model_validate(doc)
    await core.apply_site(spec, Actor.cli())
    return spec


@pytest.fixture
async def lab(core: Core, openwrt_router_factory: Any, droplet_host: DropletHost,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Lab]:
    """A site set up end to end: its config pushed and confirmed through the tunnel."""
    require_tool("ping", "iputils-ping")  # the droplet's ping (Ubuntu's droplets have it)
    monkeypatch.setenv(CAM_PW_ENV, CAM_PASSWORD)
    monkeypatch.setenv(GATE_PW_ENV, "not-the-password")
    router: OpenWrtRouter = openwrt_router_factory(
        services=("log", "rpcd", "network", "dropbear", "firewall"))
    router.enable_userspace_wireguard()
    plant_e3372h_stick(router)
    link_router_to_droplet(router, droplet_host)
    async with FakeDigitalOcean(public_ipv4=droplet_host.addr) as do, \
            FakeHikvisionCamera(host=router.host_addr, password=CAM_PASSWORD) as porch, \
            FakeHikvisionCamera(host=router.host_addr, password=CAM_PASSWORD) as gate:
        monkeypatch.setenv(ENDPOINT_ENV, do.endpoint)
        spec = await site_with_cameras(core, router, porch, gate)
        on_do = do.add_droplet("camreach-farm", region="blr1")
        async with core.sessions.begin() as s:
            site = (await s.execute(select(Site).where(Site.name == "farm"))).scalar_one()
            s.add(Droplet(site_id=site.id, do_id=on_do.id, name="camreach-farm", region="blr1",
                          size="s-1vcpu-1gb", image="ubuntu-24-04-x64", status="active",
                          public_ipv4=droplet_host.addr))
            (_, server_private), (router_peer, _) = await ensure_site_keys(
                s, core.secrets.box, site, spec)
        droplet_host.bring_up_wg0(
            server_conf(server_config(spec, server_private, router_peer, [])))
        droplet_host.authorize(identity.client_public_key(
            await identity.client_key(core.secrets)))

        droplets = DropletService(core.sessions, core.secrets, do.token)
        service = RouterService(core.sessions, core.secrets, droplets,
                                env={ROUTER_PW_ENV: router.root_password}, timing=TIMING)
        await service.first_contact("farm")
        found = await service.detect("farm")
        assert found.modem is not None and found.modem.device == "/dev/cdc-wdm0"
        plan = await service.plan_push("farm")
        pushed = await service.push("farm", expect=plan.fingerprint)
        assert pushed.startswith("Applied and confirmed"), pushed
        await service.close()  # the probes start from no connection at all
        answer_at_commands(router, "/dev/cdc-wdm0")
        route_lan_through_the_tunnel(router, droplet_host, spec)

        cameras = CameraService(core.sessions, core.secrets, droplets)
        # The gate's password is refused once (by the camera, through the tunnel): remembered.
        with pytest.raises(CameraAuthRefused):
            await cameras.device_info("farm", "gate")
        assert gate.credential_attempts == gate.failed_logins == 1

        prober = SiteProber(droplets, service, cameras, timeouts=TIMEOUTS)
        try:
            yield Lab(router, droplet_host, do, service, droplets, cameras, porch, gate, prober)
        finally:
            await prober.close()
            await service.close()


def by_part(probes: list[Probe]) -> dict[str, Probe]:
    return {p.component: p for p in probes}


def droplet_logins(droplet: DropletHost) -> int:
    return droplet.sshd_log.count("Accepted publickey for root")


def ssh_clients(netns: str) -> set[str]:
    """The peers (address:port) of the SSH connections a namespace's port 22 holds."""
    listed = subprocess.run(
        ["ip", "netns", "exec", netns, "ss", "-Htn", "state", "established", "( sport = :22 )"],
        capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in listed.splitlines() if line.strip()}


def drop_ssh_connections(droplet: DropletHost) -> None:
    """What a droplet's restart does to the connections it had: every sshd serving one ends
    (the listener, whose pid sshd keeps in its PidFile, stays)."""
    listener = int((droplet.root / "sshd.pid").read_text())
    pids = subprocess.run(["ip", "netns", "pids", droplet.netns], capture_output=True,
                          text=True, check=True).stdout.split()
    for pid in map(int, pids):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # gone meanwhile
            if pid != listener and Path(f"/proc/{pid}/comm").read_text().startswith("sshd"):
                os.kill(pid, signal.SIGTERM)


def _droplet_nft(droplet: DropletHost, *commands: str) -> None:
    for command in commands:
        subprocess.run(["ip", "netns", "exec", droplet.netns, "nft", command], check=True,
                       capture_output=True)


def stall(droplet: DropletHost) -> None:
    """Silently drop what reaches the droplet: its connections hang, new ones time out."""
    _droplet_nft(droplet, "add table inet camreach_stall",
                 "add chain inet camreach_stall input { type filter hook input priority -10 ; }",
                 "add rule inet camreach_stall input iifname eth0 drop")


def unstall(droplet: DropletHost) -> None:
    _droplet_nft(droplet, "delete table inet camreach_stall")


def assert_not_checked(probes: dict[str, Probe], parts: list[str], why: str) -> None:
    for part in parts:
        assert (probes[part].ok, probes[part].summary) == (None, f"not checked: {why}"), part


async def test_every_part_checked_through_the_real_tunnel_then_the_uplink_and_the_droplet_go(
    core: Core, lab: Lab
) -> None:
    router, droplet, prober, porch, gate = lab.router, lab.droplet, lab.prober, lab.porch, lab.gate
    gate_requests = gate.requests

    # -- everything up: real figures from every part --------------------------------------
    probes = await prober.probe("farm")
    assert [p.component for p in probes] == [
        "droplet", "tunnel", "router", "modem", "camera:gate", "camera:porch"]
    got = by_part(probes)

    d = got["droplet"]
    assert d.ok is True, d.summary
    assert d.figures["do_status"] == "active"
    ssh_ms = d.figures["ssh_ms"]
    assert isinstance(ssh_ms, float) and 0 < ssh_ms < 5000
    assert re.fullmatch(r"SSH answers in [\d.]+ ms; DigitalOcean says active", d.summary)

    t = got["tunnel"]
    assert t.ok is True, t.summary
    age = t.figures["handshake_age"]
    assert isinstance(age, int) and 0 <= age < 60  # the push's confirm handshook just now
    assert t.summary == f"handshake {age} s ago"
    rx, tx, ping = t.figures["rx_bytes"], t.figures["tx_bytes"], t.figures["ping_ms"]
    assert isinstance(rx, int) and isinstance(tx, int) and rx > 0 and tx > 0
    assert isinstance(ping, float) and ping > 0

    r = got["router"]
    assert r.ok is True, r.summary
    uptime, flash, mem = r.figures["uptime"], r.figures["flash_free"], r.figures["mem_free"]
    assert isinstance(uptime, int) and uptime > 0
    assert isinstance(flash, int) and flash > 0 and flash % 1024 == 0
    assert isinstance(mem, int) and mem > 0
    assert re.fullmatch(r"up \d+ (s|min|h|d), load \d+\.\d\d", r.summary), r.summary

    m = got["modem"]
    assert (m.ok, m.summary) == (True, "RSRP -102 dBm, airtel LTE")
    assert {k: m.figures[k] for k in ("rsrp", "sinr", "operator", "registration",
                                      "network_type", "wan_ip", "cgnat")} == {
        "rsrp": -102.0, "sinr": 12.0, "operator": "airtel", "registration": "registered",
        "network_type": "LTE", "wan_ip": "100.64.7.2", "cgnat": 1}

    p = got["camera:porch"]
    assert (p.ok, p.summary) == (True, "camera online (DS-2CD1321-I)")
    assert p.figures == {"model": porch.model, "serial": porch.serial,
                         "firmware": porch.firmware}
    assert porch.successes >= 1 and porch.basic_attempts == 0
    g = got["camera:gate"]
    assert g.ok is None
    assert for_chat(g.summary) == (
        "password refused; give a new one with /camera password gate farm")
    assert gate.requests == gate_requests and gate.credential_attempts == 1

    # -- a second sweep: the same connections, nothing logs in again ---------------------
    logins = droplet_logins(droplet)
    # The router holds one SSH connection, from the droplet's tunnel address (forwarded by
    # the droplet's sshd for the router's session).
    (held,) = ssh_clients(router.netns)
    assert held.startswith("10.8.0.1:")
    served = porch.successes
    again = by_part(await prober.probe("farm"))
    assert all(again[c].ok for c in ("droplet", "tunnel", "router", "modem", "camera:porch"))
    assert droplet_logins(droplet) == logins
    assert ssh_clients(router.netns) == {held}
    assert porch.successes == served + 1
    assert gate.requests == gate_requests  # never contacted, sweep after sweep
    # DigitalOcean was asked once (its status is kept for ten minutes per site).
    assert lab.do.count("GET", "/v2/droplets/") == 1

    # -- a camera goes off: that camera fails, naming it; the droplet's connection stays --
    await porch.stop()
    try:
        off = by_part(await prober.probe("farm"))
    finally:
        await porch.start()
    p = off["camera:porch"]
    assert p.ok is False
    assert p.summary.startswith("Camera porch (") and "refused the connection" in p.summary
    assert all(off[c].ok for c in ("droplet", "tunnel", "router", "modem"))
    assert off["camera:gate"].ok is None
    assert droplet_logins(droplet) == logins

    # -- the modem loses the network: down; a modem port that says nothing: no information --
    searching = dict(AT, **{"AT+CREG?": "AT+CREG?\r\n+CREG: 0,2\r\n\r\nOK\r\n",
                            "AT+CEREG?": "AT+CEREG?\r\n+CEREG: 0,2\r\n\r\nOK\r\n"})
    answer_at_commands(router, "/dev/cdc-wdm0", searching)
    m = by_part(await prober.probe("farm"))["modem"]
    assert (m.ok, m.summary) == (False, "modem searching for a network, RSRP -102 dBm")
    assert m.figures["registration"] == "searching"
    answer_at_commands(router, "/dev/cdc-wdm0", {})
    m = by_part(await prober.probe("farm"))["modem"]
    assert (m.ok, m.summary) == (
        None, "modem status unknown: the modem did not answer AT commands")
    assert m.figures["wan_ip"] == "100.64.7.2" and "rsrp" not in m.figures
    answer_at_commands(router, "/dev/cdc-wdm0")
    assert droplet_logins(droplet) == logins and ssh_clients(router.netns) == {held}

    # -- the "LTE" link goes: the tunnel fails within its own limit, nothing behind it is tried
    subprocess.run(["ip", "-n", router.netns, "link", "set", "lte0", "down"], check=True)
    porch_requests = porch.requests
    cut = by_part(await prober.probe("farm"))
    assert cut["droplet"].ok is True
    t = cut["tunnel"]
    assert t.ok is False
    assert t.duration < TIMEOUTS.tunnel
    assert re.fullmatch(r"router not answering through the tunnel \(handshake \d+ s ago\)",
                        t.summary), t.summary
    handshake_age = t.figures["handshake_age"]
    assert isinstance(handshake_age, int) and handshake_age < HANDSHAKE_STALE_AFTER
    assert "ping_ms" not in t.figures
    assert_not_checked(cut, ["router", "modem", "camera:gate", "camera:porch"], "tunnel down")
    assert porch.requests == porch_requests

    # -- the droplet restarts: its connections drop, its sshd refuses while it boots -------
    await asyncio.to_thread(droplet.close_ssh)
    drop_ssh_connections(droplet)
    down = by_part(await prober.probe("farm"))
    assert down["droplet"].ok is False
    assert "the droplet of farm" in down["droplet"].summary
    assert_not_checked(down, ["tunnel", "router", "modem", "camera:gate", "camera:porch"],
                       "droplet unreachable")

    # Back up: the next sweep logs in afresh, once.
    await asyncio.to_thread(droplet.open_ssh)
    before = droplet_logins(droplet)
    back = by_part(await prober.probe("farm"))
    assert back["droplet"].ok is True, back["droplet"].summary
    assert back["tunnel"].ok is False  # the link is still down
    assert droplet_logins(droplet) == before + 1

    # -- the droplet's network stalls: no answer within the droplet's limit; the connection
    # that stalled is dropped, and once the network is back the next sweep logs in afresh.
    stall(droplet)
    try:
        stalled = by_part(await prober.probe("farm"))
    finally:
        unstall(droplet)
    d = stalled["droplet"]
    assert (d.ok, d.summary) == (False, f"no answer within {TIMEOUTS.droplet:g} s")
    assert TIMEOUTS.droplet <= d.duration < TIMEOUTS.droplet + 1
    assert stalled["tunnel"].summary == "not checked: droplet unreachable"
    before = droplet_logins(droplet)
    assert by_part(await prober.probe("farm"))["droplet"].ok is True
    assert droplet_logins(droplet) == before + 1

    # -- without a DigitalOcean token its status is left out, quietly ---------------------
    assert not await core.droplets.has_token()
    asked = lab.do.count("*", "/v2/")
    plain = SiteProber(core.droplets, lab.service, lab.cameras)
    try:
        (first, *_) = await plain.probe("farm")
    finally:
        await plain.close()
    assert first.ok is True and "do_status" not in first.figures
    assert "DigitalOcean" not in first.summary
    assert lab.do.count("*", "/v2/") == asked
