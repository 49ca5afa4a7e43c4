"""The whole router: modem + WireGuard + firewall sections, golden batch and config."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

import pytest

from bot.errors import ValidationFailed
from bot.render.firewall import MODEM_ZONE, VPN_ZONE, firewall_sections
from bot.render.model import FirewallConfig, ModemConfig, RouterConfig, RouterWireguard
from bot.render.router import (
    render_router_batch,
    render_router_config,
    render_router_sections,
)
from bot.render.router_wireguard import PEER_SECTION, router_wireguard_sections
from bot.render.uci import UciSection
from tests.golden import PSK, ROUTER_PRIVATE, SERVER_PUBLIC, golden

LAN = IPv4Network("192.168.1.0/24")


def wg(**kw: object) -> RouterWireguard:
    fields: dict[str, object] = {
        "private_key": ROUTER_PRIVATE,
        "address": IPv4Interface("10.8.0.2/24"),
        "server_public_key": SERVER_PUBLIC,
        "endpoint_host": "203.0.113.10",
    }
    fields.update(kw)
    return RouterWireguard(**fields)  # type: ignore[arg-type]


def config(**kw: object) -> RouterConfig:
    fields: dict[str, object] = {
        "modem": ModemConfig(
            "ncm", "/dev/cdc-wdm0", apn="airtelgprs.com", pin="1234", mode="prefer-lte"
        ),
        "wg": wg(),
        "lan_subnet": LAN,
    }
    fields.update(kw)
    return RouterConfig(**fields)  # type: ignore[arg-type]


def by_name(sections: list[UciSection]) -> dict[str, UciSection]:
    return {s.path: s for s in sections}


def test_router_config_golden() -> None:
    text = render_router_config(config())
    assert text == golden("router.uci", text)


def test_router_batch_golden() -> None:
    text = render_router_batch(config())
    assert text == golden("router.batch", text)


def test_router_config_with_every_option_golden() -> None:
    cfg = config(
        wg=wg(preshared_key=PSK, listen_port=51821, mtu=1380, keepalive=15),
        ssh_from=IPv4Network("10.8.0.1/32"),
        masquerade_to_lan=True,
        lan_internet=False,
    )
    text = render_router_config(cfg)
    assert text == golden("router_full.uci", text)


def test_order_is_network_then_firewall_and_stable() -> None:
    sections = render_router_sections(config())
    packages = [s.package for s in sections]
    assert packages == sorted(packages, key=["network", "firewall"].index)
    assert [s.path for s in sections] == [s.path for s in render_router_sections(config())]


def test_wireguard_peer_routes_only_the_tunnel() -> None:
    iface, peer = router_wireguard_sections(wg())
    assert iface.path == "network.wg0"
    assert iface.options["proto"] == "wireguard"
    assert iface.options["addresses"] == ("10.8.0.2/24",)
    assert iface.options["mtu"] == "1280"
    assert "listen_port" not in iface.options
    assert peer.path == f"network.{PEER_SECTION}"
    assert peer.type == "wireguard_wg0"
    assert peer.options["allowed_ips"] == ("10.8.0.0/24",)
    assert peer.options["route_allowed_ips"] == "1"
    assert peer.options["persistent_keepalive"] == "25"
    assert peer.options["endpoint_port"] == "51820"


def test_firewall_puts_each_interface_in_camreachs_own_zone() -> None:
    s = by_name(render_router_sections(config()))
    modem_zone = s["firewall.camreach_modem"].options
    vpn_zone = s["firewall.camreach_vpn"].options
    assert modem_zone["name"] == MODEM_ZONE and modem_zone["network"] == ("wwan",)
    assert vpn_zone["name"] == VPN_ZONE and vpn_zone["network"] == ("wg0",)
    # The router's own services are closed on both; only explicit rules open SSH and ping.
    assert modem_zone["input"] == vpn_zone["input"] == "REJECT"
    assert modem_zone["forward"] == vpn_zone["forward"] == "REJECT"
    assert modem_zone["masq"] == "1"
    assert "masq" not in vpn_zone
    rules = [x for x in s.values() if x.type == "rule"]
    assert {r.options["src"] for r in rules} == {VPN_ZONE}
    ssh = s["firewall.camreach_vpn_ssh"].options
    assert (ssh["proto"], ssh["dest_port"], ssh["target"]) == ("tcp", "22", "ACCEPT")
    assert "src_ip" not in ssh  # no ssh_from: the whole tunnel (tests only; sites set it)
    forwardings = {
        (f.options["src"], f.options["dest"]) for f in s.values() if f.type == "forwarding"
    }
    assert forwardings == {("lan", MODEM_ZONE), (VPN_ZONE, "lan")}
    assert not any(x.type == "nat" for x in s.values())


def test_firewall_options() -> None:
    cfg = FirewallConfig(
        modem_interface="lte",
        vpn_interface="wg1",
        vpn_subnet=IPv4Network("10.9.0.0/24"),
        lan_subnet=LAN,
        ssh_port=2222,
        ssh_from=IPv4Network("10.9.0.1/32"),
        lan_internet=False,
        masquerade_to_lan=True,
    )
    s = by_name(firewall_sections(cfg))
    assert "firewall.camreach_lan_modem" not in s
    assert s["firewall.camreach_vpn_ssh"].options["dest_port"] == "2222"
    assert s["firewall.camreach_vpn_ssh"].options["src_ip"] == "10.9.0.1/32"
    assert s["firewall.camreach_vpn_ssh"].options["name"] == "camreach: SSH from the droplet"
    nat = s["firewall.camreach_vpn_masq"].options
    assert (nat["src"], nat["src_ip"], nat["dest_ip"]) == ("lan", "10.9.0.0/24", str(LAN))
    assert s["firewall.camreach_modem"].options["network"] == ("lte",)


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"lan_subnet": IPv4Network("10.8.0.0/16")}, "firewall.vpn_subnet"),
        ({"ssh_from": IPv4Network("192.168.1.5/32")}, "firewall.ssh_from"),
        ({"wg": wg(address=IPv4Interface("10.8.0.0/24"))}, "wg.address"),
        ({"wg": wg(interface="wwan")}, "wg.interface"),
        ({"lan_zone": "lan zone"}, "firewall.lan_zone"),
    ],
)
def test_router_config_is_validated(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        config(**kw)
    assert exc.value.user_message.startswith(field + ":")


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"private_key": "nope"}, "wg.private_key"),
        ({"server_public_key": ROUTER_PRIVATE[:-2] + "B="}, "wg.server_public_key"),
        ({"preshared_key": "x"}, "wg.preshared_key"),
        ({"endpoint_host": "evil.com; reboot"}, "wg.endpoint_host"),
        ({"endpoint_host": ""}, "wg.endpoint_host"),
        ({"endpoint_port": 0}, "wg.endpoint_port"),
        ({"mtu": 9000}, "wg.mtu"),
        ({"listen_port": 70000}, "wg.listen_port"),
        ({"address": "10.8.0.2/24"}, "wg.address"),
        ({"description": "a\nb"}, "wg.description"),
    ],
)
def test_wireguard_inputs_are_validated(kw: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationFailed) as exc:
        wg(**kw)
    assert exc.value.user_message.startswith(field + ":")
    assert ROUTER_PRIVATE not in exc.value.user_message
