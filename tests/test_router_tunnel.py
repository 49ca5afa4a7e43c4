"""End to end: camreach sets up the router, and confirms the push through the real tunnel.

Pieces, all real except the LTE link: the OpenWrt userland router (its netifd brings wg0 up
with userspace wireguard-go; its fw4 firewall runs), the droplet stand-in (sshd and a
wireguard-go wg0 with camreach's server config), camreach's database, ``RouterService`` and
the operation runner. The stand-in for the LTE uplink is a veth pair between the router's and
the droplet's namespaces (both made by the test fixtures) with carrier-grade-NAT addresses
(100.64.7.0/24); the router's default route goes over it. The modem is the sysfs stand-in of
test_router_detect (an E3372h in stick mode); its ncm interface cannot dial, which does not
matter for the tunnel, since the veth carries it.
"""

from __future__ import annotations

import ipaddress
import secrets
import subprocess
import time
from typing import Any

import pytest
from sqlalchemy import select

from bot.core import Core
from bot.db.models import Droplet, Modem, Router, Site
from bot.operations import OperationView
from bot.render.wg_conf import server_conf
from bot.router.access import RouterTiming
from bot.router.service import RouterService
from bot.services import identity
from bot.services.audit import Actor
from bot.services.droplets import server_config
from bot.services.vpn_keys import ensure_site_keys
from bot.site import SiteSpec, parse_site
from tests.infra.droplet_host import DropletHost
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_detect import plant_e3372h_stick

ROUTER_PW_ENV = "CAMREACH_TEST_ROUTER_PASSWORD"


def link_router_to_droplet(router: OpenWrtRouter, droplet: DropletHost) -> None:
    """The "LTE" link: a veth from the router's namespace to the droplet's."""
    a, b = f"crl{secrets.token_hex(3)}", f"crd{secrets.token_hex(3)}"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("link", "add", a, "type", "veth", "peer", "name", b)
    ip("link", "set", a, "netns", router.netns)
    ip("link", "set", b, "netns", droplet.netns)
    ip("-n", router.netns, "link", "set", a, "name", "lte0")
    ip("-n", droplet.netns, "addr", "add", "100.64.7.1/24", "dev", b)
    ip("-n", droplet.netns, "link", "set", b, "up")
    # On the router the uplink is a netifd interface, as the modem's would be: netifd routes
    # WireGuard's endpoint over it (wireguard.sh adds a host dependency on that route).
    router.run("uci batch <<'EOF'\n"
               "set network.ltelink=interface\nset network.ltelink.proto=static\n"
               "set network.ltelink.device=lte0\nset network.ltelink.ipaddr=100.64.7.2\n"
               "set network.ltelink.netmask=255.255.255.0\n"
               "set network.ltelink.gateway=100.64.7.1\ncommit network\nEOF\n"
               "ubus call network reload && ubus -t 15 wait_for network.interface.ltelink")
    deadline = time.monotonic() + 15
    while '"up": true' not in router.run("ifstatus ltelink", check=False).stdout:
        assert time.monotonic() < deadline, router.run("ifstatus ltelink", check=False).stdout
        time.sleep(0.1)


def site_spec(router: OpenWrtRouter, port: int = 51820) -> SiteSpec:
    return parse_site({
        "name": "farm",
        "vpn": {"subnet": "10.8.0.0/24", "port": port},
        "router": {"host": router.addr, "password_env": ROUTER_PW_ENV,
                   "lan_subnet": str(ipaddress.ip_network(f"{router.addr}/24", strict=False))},
        "modem": {"protocol": "auto", "apn": "internet"},
    })


class Progress:
    def __init__(self) -> None:
        self.views: list[OperationView] = []

    async def update(self, view: OperationView) -> None:
        self.views.append(view)


@pytest.fixture
async def setup(
    core: Core, openwrt_router_factory: Any, droplet_host: DropletHost
) -> dict[str, Any]:
    router: OpenWrtRouter = openwrt_router_factory(
        services=("log", "rpcd", "network", "dropbear", "firewall"))
    router.enable_userspace_wireguard()
    plant_e3372h_stick(router)
    link_router_to_droplet(router, droplet_host)
    spec = site_spec(router)
    await core.apply_site(spec, Actor.cli())
    async with core.sessions.begin() as s:
        site = (await s.execute(select(Site).where(Site.name == "farm"))).scalar_one()
        s.add(Droplet(site_id=site.id, name="camreach-farm", region="blr1", size="s-1vcpu",
                      image="ubuntu-24-04-x64", status="active", public_ipv4=droplet_host.addr))
        (_, server_private), (router_peer, _) = await ensure_site_keys(
            s, core.secrets.box, site, spec)
    droplet_host.bring_up_wg0(server_conf(server_config(spec, server_private, router_peer, [])))
    key = await identity.client_key(core.secrets)
    droplet_host.authorize(identity.client_public_key(key))
    service = RouterService(
        core.sessions, core.secrets, core.droplets, env={ROUTER_PW_ENV: router.root_password},
        timing=RouterTiming(connect_timeout=3, command_timeout=15, rollback_deadline=20,
                            confirm_grace=8),
    )
    yield {"router": router, "droplet": droplet_host, "service": service, "spec": spec}
    await service.close()


async def test_first_push_is_confirmed_through_the_tunnel_then_a_breaking_one_rolls_back(
    core: Core, setup: dict[str, Any]
) -> None:
    router: OpenWrtRouter = setup["router"]
    droplet: DropletHost = setup["droplet"]
    service: RouterService = setup["service"]

    first = await service.first_contact("farm")
    assert first.pinned_now and first.key_added
    found = await service.detect("farm")
    assert found.modem is not None and found.modem.protocol == "ncm"
    assert found.cgnat is True  # the router's uplink is 100.64.7.2

    plan = await service.plan_push("farm")
    assert not plan.no_changes
    assert "+ network.camreach_droplet.endpoint_host: " + repr(droplet.addr) in plan.diff

    core.operations.register("push_router_config", service.push_operation)
    progress = Progress()
    view = await core.operations.start("push_router_config", site="farm", sink=progress,
                                       params={"expect": plan.fingerprint})
    done = await core.operations.wait(view.id)
    assert done.state == "succeeded", done.error
    assert done.message.startswith("Applied and confirmed")
    steps = [v.message for v in progress.views]
    assert any("through the tunnel" in m and "to confirm" in m for m in steps), steps

    # The router's own files and live state: wg0 up and handshaking with the droplet.
    assert router.run("uci get network.camreach_droplet.endpoint_host").stdout.strip() == (
        droplet.addr)
    assert "camvpn" in (router.root / "etc/config/firewall").read_text()
    handshakes = router.run("wg show wg0 latest-handshakes").stdout.split()
    assert handshakes and handshakes[-1] != "0"
    async with core.sessions() as s:
        row = (await s.execute(select(Router).join(Site).where(Site.name == "farm"))
               ).scalar_one()
        modem = (await s.execute(select(Modem).join(Site).where(Site.name == "farm"))
                 ).scalar_one()
    assert row.last_push_at is not None and row.key_installed and row.ssh_host_key
    assert (modem.usb_id, modem.mode, modem.device) == ("12d1:1506", "ncm", "/dev/cdc-wdm0")

    # From now on camreach reaches the router through the droplet, and reuses the connection.
    opened = service.pool.opened
    again = await service.plan_push("farm")
    assert again.no_changes
    status = await service.detect("farm")
    assert status.facts.release == "23.05-SNAPSHOT"
    assert service.pool.opened == opened + 1  # one tunnel connection for both calls
    tunnelled = droplet.run("ss -tn state established '( dport = :22 )'").stdout
    assert "10.8.0.2:22" in tunnelled  # the droplet holds the forwarded SSH connection

    # A push that cuts the tunnel (the droplet does not listen on 51999) cannot be confirmed:
    # the router rolls back by itself and the tunnel comes back.
    before = (router.root / "etc/config/network").read_bytes()
    breaking = site_spec(router, port=51999)
    await core.apply_site(breaking, Actor.cli())
    service.timing = RouterTiming(connect_timeout=3, command_timeout=15, rollback_deadline=8,
                                  confirm_grace=15)
    view = await core.operations.start("push_router_config", site="farm")
    done = await core.operations.wait(view.id)
    assert done.state == "failed"
    assert done.error is not None
    assert "restored its previous configuration by itself" in done.error
    assert "through the tunnel" in done.error
    assert (router.root / "etc/config/network").read_bytes() == before
    assert router.run("uci get network.camreach_droplet.endpoint_port").stdout.strip() == "51820"
