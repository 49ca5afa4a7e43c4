"""wg-quick configs: golden text, wg-quick/wg accept them, peers parse back and edit."""

from __future__ import annotations

import os
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest

from bot.errors import NotFound, ValidationFailed
from bot.render.model import ClientConfig, ServerConfig, WgPeer
from bot.render.wg_conf import (
    add_peer,
    client_conf,
    device_peer,
    next_free_address,
    parse_server_peers,
    remove_peer,
    router_peer,
    server_conf,
)
from tests.golden import (
    LAPTOP_PUBLIC,
    PHONE_PRIVATE,
    PHONE_PUBLIC,
    PSK,
    ROUTER_PUBLIC,
    SERVER_PRIVATE,
    SERVER_PUBLIC,
    golden,
)

LAN = IPv4Network("192.168.1.0/24")
VPN = IPv4Network("10.8.0.0/24")
ROUTER = router_peer("router mr3020", ROUTER_PUBLIC, IPv4Address("10.8.0.2"), [LAN])
PHONE = device_peer("Asha's phone", PHONE_PUBLIC, IPv4Address("10.8.0.3"), preshared_key=PSK)
LAPTOP = device_peer("laptop", LAPTOP_PUBLIC, IPv4Address("10.8.0.4"))


def server(*peers: WgPeer) -> ServerConfig:
    return ServerConfig(SERVER_PRIVATE, peers=peers)


def client(**kw: object) -> ClientConfig:
    fields: dict[str, object] = {
        "private_key": PHONE_PRIVATE,
        "address": IPv4Address("10.8.0.3"),
        "server_public_key": SERVER_PUBLIC,
        "endpoint_host": "203.0.113.10",
        "endpoint_port": 51820,
        "vpn_subnet": VPN,
        "lan_subnets": (LAN,),
    }
    fields.update(kw)
    return ClientConfig(**fields)  # type: ignore[arg-type]


def test_server_golden() -> None:
    text = server_conf(server(ROUTER, PHONE))
    assert text == golden("wg0_server.conf", text)


def test_server_without_peers_golden() -> None:
    text = server_conf(server())
    assert text == golden("wg0_server_empty.conf", text)


def test_client_golden() -> None:
    text = client_conf(client())
    assert text == golden("client.conf", text)


def test_client_with_dns_and_psk_golden() -> None:
    text = client_conf(
        client(dns=(IPv4Address("1.1.1.1"), IPv4Address("9.9.9.9")), preshared_key=PSK)
    )
    assert text == golden("client_dns_psk.conf", text)


def test_client_routes_only_tunnel_and_site() -> None:
    text = client_conf(client())
    assert "AllowedIPs = 10.8.0.0/24, 192.168.1.0/24\n" in text
    assert "0.0.0.0/0" not in text
    assert "DNS" not in text
    assert "Address = 10.8.0.3/32\n" in text


def test_ipv6_endpoint_is_bracketed() -> None:
    assert "Endpoint = [2001:db8::1]:51820\n" in client_conf(client(endpoint_host="2001:db8::1"))


def test_router_peer_carries_the_site_lan() -> None:
    assert ROUTER.allowed_ips == (IPv4Network("10.8.0.2/32"), LAN)
    assert PHONE.allowed_ips == (IPv4Network("10.8.0.3/32"),)


def test_peers_parse_back() -> None:
    assert parse_server_peers(server_conf(server(ROUTER, PHONE))) == [ROUTER, PHONE]
    assert parse_server_peers(server_conf(server())) == []


def test_parse_tolerates_hand_edits() -> None:
    text = (
        "[Interface]\nPrivateKey = x\n\n"
        "[peer]  # lower case header\n"
        "#  spaced name  \n"
        "publickey=" + PHONE_PUBLIC + "\n"
        "AllowedIPs = 10.8.0.3/32,10.8.0.9/32 # two\n"
        "AllowedIPs = 10.8.0.10/32\n"
        "\n[Peer]\nPublicKey = " + LAPTOP_PUBLIC + "\n"
    )
    phone, laptop = parse_server_peers(text)
    assert phone.name == "spaced name"
    assert [str(n) for n in phone.allowed_ips] == ["10.8.0.3/32", "10.8.0.9/32", "10.8.0.10/32"]
    assert laptop.name.startswith("unnamed ")
    assert laptop.allowed_ips == ()


def test_add_and_remove_peers_reproduce_the_full_render() -> None:
    text = server_conf(server())
    text = add_peer(text, ROUTER)
    text = add_peer(text, PHONE)
    assert text == server_conf(server(ROUTER, PHONE))
    assert add_peer(text, PHONE) == text  # idempotent
    text = add_peer(text, LAPTOP)
    assert remove_peer(text, LAPTOP_PUBLIC) == server_conf(server(ROUTER, PHONE))
    assert remove_peer(text, PHONE_PUBLIC) == server_conf(server(ROUTER, LAPTOP))
    assert remove_peer(remove_peer(text, PHONE_PUBLIC), PHONE_PUBLIC) == remove_peer(
        text, PHONE_PUBLIC
    )


def test_add_replaces_a_peer_with_the_same_key_in_place() -> None:
    text = server_conf(server(ROUTER, PHONE, LAPTOP))
    renamed = WgPeer("new name", PHONE_PUBLIC, PHONE.allowed_ips)
    assert parse_server_peers(add_peer(text, renamed)) == [ROUTER, renamed, LAPTOP]


def test_edits_keep_unknown_lines() -> None:
    text = server_conf(server(ROUTER)).replace(
        "ListenPort", "# operator note\nMTU = 1380\nListenPort"
    )
    edited = remove_peer(add_peer(text, PHONE), PHONE_PUBLIC)
    assert edited == text


def test_remove_missing_peer() -> None:
    text = server_conf(server(ROUTER))
    assert remove_peer(text, PHONE_PUBLIC) == text
    with pytest.raises(NotFound):
        remove_peer(text, PHONE_PUBLIC, missing_ok=False)


def test_overlapping_peers_are_refused() -> None:
    thief = device_peer("thief", LAPTOP_PUBLIC, IPv4Address("10.8.0.2"))
    with pytest.raises(ValidationFailed, match="overlaps"):
        add_peer(server_conf(server(ROUTER)), thief)
    with pytest.raises(ValidationFailed, match="overlaps"):
        server(ROUTER, WgPeer("lan thief", LAPTOP_PUBLIC, (IPv4Network("192.168.1.128/25"),)))
    with pytest.raises(ValidationFailed, match="twice"):
        server(PHONE, PHONE)


def test_a_section_after_the_peers_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="Interface"):
        parse_server_peers(server_conf(server(ROUTER)) + "[Interface]\n")


@pytest.mark.parametrize("name", ["", " padded", "two\nlines", "x" * 65, "bell\a"])
def test_peer_names_stay_on_their_comment_line(name: str) -> None:
    with pytest.raises(ValidationFailed, match=r"peer\.name"):
        device_peer(name, PHONE_PUBLIC, IPv4Address("10.8.0.3"))


def test_hostile_peer_name_is_only_a_comment() -> None:
    evil = device_peer("x = y [Interface] # PostUp = reboot", PHONE_PUBLIC, IPv4Address("10.8.0.3"))
    text = server_conf(server(evil))
    assert parse_server_peers(text) == [evil]
    assert "\n# x = y [Interface] # PostUp = reboot\n" in text


def test_next_free_address() -> None:
    reserved = [IPv4Address("10.8.0.1")]
    assert next_free_address([ROUTER, PHONE], VPN, reserved=reserved) == IPv4Address("10.8.0.4")
    assert next_free_address([], VPN, reserved=reserved) == IPv4Address("10.8.0.2")
    tiny = IPv4Network("10.8.0.0/30")
    with pytest.raises(ValidationFailed, match="full"):
        next_free_address([ROUTER], tiny, reserved=reserved)


def test_client_inputs_are_validated() -> None:
    with pytest.raises(ValidationFailed, match=r"client\.address"):
        client(address=IPv4Address("10.9.0.3"))
    with pytest.raises(ValidationFailed, match=r"client\.endpoint_host"):
        client(endpoint_host="1.2.3.4\nPostUp = reboot")
    with pytest.raises(ValidationFailed, match=r"client\.lan_subnets"):
        client(lan_subnets=())
    with pytest.raises(ValidationFailed, match=r"server\.private_key"):
        ServerConfig("nope")
    assert ServerConfig(SERVER_PRIVATE).address == IPv4Interface("10.8.0.1/24")


# --- the real tools --------------------------------------------------------------------------


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} (wireguard-tools) is required in CI")
        pytest.skip(f"{name} is not installed")
    return path


CONFIGS = {
    "server": lambda: server_conf(server(ROUTER, PHONE, LAPTOP)),
    "server_empty": lambda: server_conf(server()),
    "client": lambda: client_conf(client()),
    "client_dns_psk": lambda: client_conf(client(dns=(IPv4Address("1.1.1.1"),), preshared_key=PSK)),
}


@pytest.mark.parametrize("which", sorted(CONFIGS))
def test_wg_quick_strip_and_wg_accept_the_config(tmp_path: Path, which: str) -> None:
    wg_quick, wg = _tool("wg-quick"), _tool("wg")
    conf = tmp_path / "wg0.conf"  # wg-quick wants <interface name>.conf
    conf.write_text(CONFIGS[which]())
    conf.chmod(0o600)
    strip = subprocess.run(
        [wg_quick, "strip", str(conf)], capture_output=True, text=True, check=False
    )
    assert strip.returncode == 0, strip.stderr
    assert "Address" not in strip.stdout and "DNS" not in strip.stdout  # wg-quick's own keys
    stripped = tmp_path / "stripped.conf"
    stripped.write_text(strip.stdout)
    # wg parses the whole file before it looks for the interface, so on a missing
    # interface the only error left is the interface one.
    res = subprocess.run(
        [wg, "setconf", "camreach-nx0", str(stripped)], capture_output=True, text=True, check=False
    )
    assert "Unable to modify interface" in res.stderr, res.stderr
    assert "Line unrecognized" not in res.stderr and "parsing error" not in res.stderr


def test_wg_rejects_a_broken_config(tmp_path: Path) -> None:
    # The check above can fail: a line wg does not know is reported as a parse error.
    wg = _tool("wg")
    bad = tmp_path / "bad.conf"
    bad.write_text("[Interface]\nPrivateKey = " + SERVER_PRIVATE + "\nAddress = 10.8.0.1/24\n")
    res = subprocess.run(
        [wg, "setconf", "camreach-nx0", str(bad)], capture_output=True, text=True, check=False
    )
    assert "Line unrecognized" in res.stderr
