"""The droplet's user data: valid cloud-config, the right files, the host key camreach made,
and no secret but the droplet's two private keys."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from bot.errors import ValidationFailed
from bot.render.cloud_init import nftables_conf, render_user_data, sshd_dropin
from bot.render.model import ServerConfig
from bot.render.wg_conf import device_peer, router_peer, server_conf
from bot.sshkeys import HostKeyPair
from tests.golden import (
    LAPTOP_PRIVATE,
    PHONE_PRIVATE,
    PHONE_PUBLIC,
    ROUTER_PRIVATE,
    ROUTER_PUBLIC,
    SERVER_PRIVATE,
    golden,
)

LAN = IPv4Network("192.168.1.0/24")
ROUTER = router_peer("router", ROUTER_PUBLIC, IPv4Address("10.8.0.2"), [LAN])
PHONE = device_peer("phone", PHONE_PUBLIC, IPv4Address("10.8.0.3"))
CFG = ServerConfig(SERVER_PRIVATE, peers=(ROUTER, PHONE))
KEY_RE = re.compile(r"[A-Za-z0-9+/]{43}=")
# A fixed test-only host key (its public half is in the golden file). The OpenSSH private key
# format holds random check bytes, so the private text differs per run; the golden file shows
# it masked, and no private key block is ever committed.
HOST_KEY = HostKeyPair.from_key(Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"camreach test droplet host key").digest()))
PRIVATE_MASK = "<the droplet's ed25519 host private key: made per droplet, masked here>"


def render(cfg: ServerConfig = CFG, **kwargs: Any) -> str:
    return render_user_data(cfg, host_key=HOST_KEY, **kwargs)


def masked(text: str, pair: HostKeyPair = HOST_KEY) -> str:
    """``text`` with the private key block (a ``|`` block of the ``ssh_keys`` mapping) masked."""
    block = "".join(f"    {line}\n" for line in pair.private_openssh.splitlines())
    assert text.count(block) == 1
    return text.replace(block, f"    {PRIVATE_MASK}\n")


def load(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict)
    return doc


def files(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in doc["write_files"]}


def test_golden() -> None:
    text = masked(render())
    assert text == golden("user_data.yaml", text)
    assert "PRIVATE KEY" not in golden("user_data.yaml", text)


def test_is_a_cloud_config_document() -> None:
    text = render()
    assert text.splitlines()[0] == "#cloud-config"
    doc = load(text)
    assert set(doc) == {"package_update", "packages", "ssh_pwauth", "ssh_deletekeys", "ssh_keys",
                        "write_files", "runcmd"}
    assert {"wireguard", "nftables", "unattended-upgrades"} <= set(doc["packages"])
    assert doc["ssh_pwauth"] is False


def test_installs_exactly_the_host_key_camreach_made() -> None:
    doc = load(render())
    # cloud-init's cc_ssh: the image's keys are deleted, this pair is written, none generated.
    assert doc["ssh_deletekeys"] is True
    assert doc["ssh_keys"] == {"ed25519_private": HOST_KEY.private_openssh,
                               "ed25519_public": HOST_KEY.public}
    assert HOST_KEY.public.startswith("ssh-ed25519 ") and len(HOST_KEY.public.split()) == 2
    assert HostKeyPair.from_private(doc["ssh_keys"]["ed25519_private"]) == HOST_KEY
    # a new pair for each droplet
    other = HostKeyPair.generate()
    assert other.public != HOST_KEY.public
    assert load(render_user_data(CFG, host_key=other))["ssh_keys"]["ed25519_public"] == other.public


def test_refuses_a_host_key_that_is_not_an_ed25519_pair() -> None:
    with pytest.raises(ValidationFailed, match="ed25519 host key pair"):
        render_user_data(CFG, host_key=("private", "public"))  # type: ignore[arg-type]
    with pytest.raises(ValidationFailed, match="does not match"):
        HostKeyPair(HOST_KEY.private_openssh, HostKeyPair.generate().public)
    rsa = generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()).decode()
    with pytest.raises(ValidationFailed, match="ed25519"):
        HostKeyPair.from_private(rsa)
    with pytest.raises(ValidationFailed) as err:
        HostKeyPair.from_private(HOST_KEY.private_openssh[:-40])
    assert HOST_KEY.private_openssh[40:80] not in err.value.user_message
    assert HOST_KEY.private_openssh not in repr(HOST_KEY)


def test_wg0_conf_is_the_server_conf_and_private() -> None:
    wg0 = files(load(render()))["/etc/wireguard/wg0.conf"]
    assert wg0["content"] == server_conf(CFG)
    assert wg0["permissions"] == "0600"
    assert wg0["owner"] == "root:root"


def test_forwarding_firewall_ssh_and_upgrades() -> None:
    f = files(load(render()))
    assert f["/etc/sysctl.d/90-camreach.conf"]["content"] == "net.ipv4.ip_forward = 1\n"
    nft = f["/etc/nftables.conf"]["content"]
    assert nft == nftables_conf(CFG)
    assert "policy drop" in nft and "tcp dport 22 accept" in nft
    assert "udp dport 51820 accept" in nft
    assert 'iifname "wg0" oifname "wg0" accept' in nft
    assert "masquerade" not in nft  # no NAT needed: see wg_conf.py
    sshd = f["/etc/ssh/sshd_config.d/10-camreach.conf"]["content"]
    assert "PasswordAuthentication no" in sshd
    upgrades = f["/etc/apt/apt.conf.d/20auto-upgrades"]["content"]
    assert 'APT::Periodic::Unattended-Upgrade "1";' in upgrades


def test_runcmd_loads_the_firewall_before_the_tunnel() -> None:
    runcmd = load(render())["runcmd"]
    assert ["sysctl", "--system"] in runcmd
    nft = runcmd.index(["systemctl", "enable", "--now", "nftables"])
    wg = runcmd.index(["systemctl", "enable", "--now", "wg-quick@wg0"])
    assert nft < wg
    assert ["systemctl", "enable", "--now", "unattended-upgrades"] in runcmd


def test_only_the_servers_private_keys_are_secret_in_it() -> None:
    text = render()
    assert text.count(SERVER_PRIVATE) == 1
    public = {ROUTER_PUBLIC, PHONE_PUBLIC}
    assert set(KEY_RE.findall(text)) == {SERVER_PRIVATE} | public
    for other in (ROUTER_PRIVATE, PHONE_PRIVATE, LAPTOP_PRIVATE):
        assert other not in text
    # and the one SSH host private key, once
    assert text.count("PRIVATE KEY-----") == 2  # its BEGIN and END lines
    assert "PRIVATE KEY" not in masked(text)


@pytest.mark.parametrize(
    "name",
    [
        "evil: {a: b}",
        "'; rm -rf / #",
        '"quoted" and \\ back',
        "- list? | > &anchor *alias !!python/object:os.system",
        "#cloud-config\n",  # refused: names are one line
        "\u2028line separator",  # refused: a newline to YAML
        "next\x85line",  # refused: NEL
        "…unicode ✓",
    ],
)
def test_hostile_peer_names_cannot_break_the_yaml(name: str) -> None:
    try:
        peer = device_peer(name, PHONE_PUBLIC, IPv4Address("10.8.0.3"))
    except ValidationFailed:
        assert not name.isprintable()
        return
    cfg = ServerConfig(SERVER_PRIVATE, peers=(ROUTER, peer))
    doc = load(render(cfg))
    assert files(doc)["/etc/wireguard/wg0.conf"]["content"] == server_conf(cfg)
    assert len(doc["write_files"]) == 5


def test_custom_ssh_port() -> None:
    doc = load(render(ssh_port=2222))
    f = files(doc)
    assert "tcp dport 2222 accept" in f["/etc/nftables.conf"]["content"]
    assert "tcp dport 22 " not in f["/etc/nftables.conf"]["content"]
    assert "Port 2222" in f["/etc/ssh/sshd_config.d/10-camreach.conf"]["content"]
    assert any(isinstance(c, str) and "ssh.socket" in c for c in doc["runcmd"])
    with pytest.raises(ValidationFailed):
        render(ssh_port=51820)
    with pytest.raises(ValidationFailed):
        render(ssh_port=0)


def test_deterministic() -> None:
    assert render() == render()


# --- the real tools --------------------------------------------------------------------------


def _need(tool: str) -> str:
    path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if path is None or os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} and root are required in CI")
        pytest.skip(f"needs {tool} and root")
    return path


@pytest.mark.parametrize("ssh_port", [22, 2222])
def test_nft_accepts_the_ruleset(tmp_path: Path, ssh_port: int) -> None:
    nft = _need("nft")
    _need("unshare")
    ruleset = tmp_path / "nftables.conf"
    ruleset.write_text(nftables_conf(CFG, ssh_port=ssh_port))
    # -c: parse and check only; in a fresh network namespace so nothing here is touched.
    res = subprocess.run(
        ["unshare", "--net", nft, "-c", "-f", str(ruleset)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr


def test_nft_check_can_fail(tmp_path: Path) -> None:
    nft = _need("nft")
    bad = tmp_path / "bad.conf"
    bad.write_text(nftables_conf(CFG).replace("policy drop", "policy dorp"))
    res = subprocess.run(
        ["unshare", "--net", nft, "-c", "-f", str(bad)], capture_output=True, text=True, check=False
    )
    assert res.returncode != 0


def test_openssh_reads_the_host_key(tmp_path: Path) -> None:
    keygen = _need("ssh-keygen")
    keys = load(render())["ssh_keys"]
    private = tmp_path / "ssh_host_ed25519_key"
    private.write_text(keys["ed25519_private"])
    private.chmod(0o600)  # as cloud-init writes it
    derived = subprocess.run([keygen, "-y", "-f", str(private)], capture_output=True, text=True,
                             check=True).stdout
    assert derived.split()[:2] == keys["ed25519_public"].split()


@pytest.mark.parametrize("ssh_port", [22, 2222])
def test_sshd_accepts_the_dropin(tmp_path: Path, ssh_port: int) -> None:
    sshd = _need("sshd")
    hostkey = tmp_path / "hostkey"  # the host key camreach makes, as cloud-init writes it
    hostkey.write_text(load(render())["ssh_keys"]["ed25519_private"])
    hostkey.chmod(0o600)
    conf = tmp_path / "sshd_config"
    conf.write_text(sshd_dropin(ssh_port=ssh_port) + f"HostKey {hostkey}\n")
    # sshd -T wants its privilege separation directory; give it one on a private /run.
    script = f'mount -t tmpfs tmpfs /run && mkdir /run/sshd && exec "{sshd}" -T -f "{conf}"'
    res = subprocess.run(
        ["unshare", "--mount", "sh", "-c", script], capture_output=True, text=True, check=False
    )
    assert res.returncode == 0, res.stderr
    effective = res.stdout.splitlines()
    assert "passwordauthentication no" in effective
    assert "kbdinteractiveauthentication no" in effective
    assert "permitrootlogin without-password" in effective
    assert f"port {ssh_port}" in effective
