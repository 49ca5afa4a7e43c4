"""The droplet stand-in is real: root SSH, wireguard-go, private /etc/wireguard."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import asyncssh
import pytest

if TYPE_CHECKING:
    from tests.infra.droplet_host import DropletHost

# Imported here only as a plugin (not at module top) so pytest can still
# assert-rewrite it; a root conftest could register it instead.


def wg_keypair() -> tuple[str, str]:
    from tests.infra.droplet_host import wg_keypair

    return wg_keypair()


def server_conf(private_key: str, address: str = "10.8.0.1/24") -> str:
    return f"[Interface]\nPrivateKey = {private_key}\nAddress = {address}\nListenPort = 51820\n"


def authorized_client_key(droplet: DropletHost) -> asyncssh.SSHKey:
    key = asyncssh.generate_private_key("ssh-ed25519")
    droplet.authorize(key.export_public_key().decode())
    return key


@contextlib.asynccontextmanager
async def connect(
    droplet: DropletHost, key: asyncssh.SSHKey, *, pinned: str | None = None
) -> AsyncIterator[asyncssh.SSHClientConnection]:
    """Connect as the product does: root, key auth only, pinned host key."""
    known = asyncssh.import_known_hosts(f"{droplet.addr} {pinned or droplet.host_public_key}\n")
    async with asyncssh.connect(
        droplet.addr,
        droplet.ssh_port,
        username="root",
        client_keys=[key],
        known_hosts=known,
        agent_path=None,
        connect_timeout=10,
    ) as conn:
        yield conn


def dump_peers(dump: str) -> dict[str, list[str]]:
    """`wg show wg0 dump` peer lines keyed by public key (first line is the interface)."""
    lines = dump.strip().splitlines()[1:]
    return {fields[0]: fields for fields in (line.split("\t") for line in lines)}


def host_tree(path: str) -> dict[str, tuple[int, int, bytes]] | None:
    """(mode, mtime_ns, content) of every file under path, or None if absent."""
    root = Path(path)
    if not root.exists():
        return None
    return {
        str(p): (p.stat().st_mode, p.stat().st_mtime_ns, p.read_bytes() if p.is_file() else b"")
        for p in [root, *root.rglob("*")]
    }


async def test_root_ssh_sees_wireguard_go_interface(droplet_host: DropletHost) -> None:
    server_priv, server_pub = wg_keypair()
    droplet_host.bring_up_wg0(server_conf(server_priv))
    key = authorized_client_key(droplet_host)

    async with connect(droplet_host, key) as conn:
        whoami = await conn.run("id -u", check=True)
        dump = await conn.run("wg show wg0 dump", check=True)
        addr = await conn.run("ip -4 -o address show dev wg0", check=True)
        conf = await conn.run("cat /etc/wireguard/wg0.conf && stat -c %a /etc/wireguard/wg0.conf")
        # wireguard-go's wg0 is a tun device; a kernel WireGuard link is not.
        link = await conn.run("ip -d -o link show dev wg0", check=True)

    assert whoami.stdout == "0\n"
    iface = str(dump.stdout).splitlines()[0].split("\t")
    assert iface[:3] == [server_priv, server_pub, "51820"]
    assert "10.8.0.1/24" in str(addr.stdout)
    assert str(conf.stdout).endswith("ListenPort = 51820\n600\n")
    assert " tun " in str(link.stdout)


async def test_peer_added_over_ssh_is_live_and_persisted(droplet_host: DropletHost) -> None:
    server_priv, _ = wg_keypair()
    _, peer_pub = wg_keypair()
    droplet_host.bring_up_wg0(server_conf(server_priv))
    assert peer_pub not in droplet_host.run("wg show wg0 dump", check=True).stdout
    key = authorized_client_key(droplet_host)

    async with connect(droplet_host, key) as conn:
        await conn.run(f"wg set wg0 peer {peer_pub} allowed-ips 10.8.0.2/32", check=True)
        # The persistence step the product performs after a live change.
        await conn.run("wg-quick save wg0", check=True)
        stripped = await conn.run("wg-quick strip wg0", check=True)

    peers = dump_peers(droplet_host.run("wg show wg0 dump", check=True).stdout)
    assert peers[peer_pub][3] == "10.8.0.2/32"
    # What the droplet persisted is visible from the host through wg_dir.
    saved = (droplet_host.wg_dir / "wg0.conf").read_text()
    assert f"PublicKey = {peer_pub}" in saved
    assert "AllowedIPs = 10.8.0.2/32" in saved
    assert f"PublicKey = {peer_pub}" in str(stripped.stdout)


async def test_rejects_unauthorized_key_and_wrong_host_key(droplet_host: DropletHost) -> None:
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    with pytest.raises(asyncssh.PermissionDenied):
        async with connect(droplet_host, stranger):
            pass

    key = authorized_client_key(droplet_host)
    other_host_key = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(droplet_host, key, pinned=other_host_key):
            pass

    # The pinned key is the one from host_key_path.
    pub = asyncssh.read_private_key(droplet_host.host_key_path).export_public_key().decode()
    assert pub.split()[:2] == droplet_host.host_public_key.split()


async def test_installed_host_key_is_presented_and_the_old_one_refused(
    droplet_host: DropletHost,
) -> None:
    # What cloud-init's ssh_keys does on a droplet: the host key pair comes from outside.
    key = authorized_client_key(droplet_host)
    old = droplet_host.host_public_key
    new = asyncssh.generate_private_key("ssh-ed25519")
    public = " ".join(new.export_public_key().decode().split()[:2])
    droplet_host.set_host_key(new.export_private_key().decode(), public)
    assert droplet_host.host_public_key == public != old
    seen = await asyncssh.get_server_host_key(droplet_host.addr, droplet_host.ssh_port, config=[])
    assert seen is not None and seen.export_public_key().decode().split()[:2] == public.split()
    async with connect(droplet_host, key) as conn:  # pinned to the new key
        assert (await conn.run("id -u", check=True)).stdout == "0\n"
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(droplet_host, key, pinned=old):
            pass
    with pytest.raises(ValueError, match="does not belong"):
        droplet_host.set_host_key(new.export_private_key().decode(), old)


async def test_ssh_closed_until_boot_and_wg0_replaced(droplet_host: DropletHost) -> None:
    key = authorized_client_key(droplet_host)
    droplet_host.close_ssh()
    assert not droplet_host.ssh_open
    with pytest.raises(OSError):
        async with connect(droplet_host, key):
            pass
    # The stand-in itself still works: wg0 comes up, and is replaced as a new machine's would.
    first, _ = wg_keypair()
    droplet_host.bring_up_wg0(server_conf(first))
    droplet_host.take_down_wg0()
    assert droplet_host.run("ip link show wg0").returncode != 0
    second, second_pub = wg_keypair()
    droplet_host.bring_up_wg0(server_conf(second))
    droplet_host.open_ssh()
    assert droplet_host.ssh_open
    async with connect(droplet_host, key) as conn:
        shown = await conn.run("wg show wg0 public-key", check=True)
    assert str(shown.stdout).strip() == second_pub


async def test_first_boot_marker_is_private(droplet_host: DropletHost) -> None:
    marker = "/var/lib/cloud/instance/boot-finished"
    host_before = os.path.exists(marker)
    assert droplet_host.run(f"test -e {marker}").returncode == 1

    droplet_host.mark_first_boot_done()

    key = authorized_client_key(droplet_host)
    async with connect(droplet_host, key) as conn:
        result = await conn.run(f"test -f {marker}")
    assert result.exit_status == 0
    assert os.path.exists(marker) == host_before


async def test_host_wireguard_state_is_untouched(droplet_host: DropletHost) -> None:
    watched = ["/etc/wireguard", "/run/wireguard", "/var/lib/cloud", "/run/sshd"]
    before = {p: host_tree(p) for p in watched}
    host_wg0_before = Path("/sys/class/net/wg0").exists()

    server_priv, _ = wg_keypair()
    droplet_host.bring_up_wg0(server_conf(server_priv))
    droplet_host.mark_first_boot_done()
    key = authorized_client_key(droplet_host)
    async with connect(droplet_host, key) as conn:
        await conn.run("echo '# touched' >> /etc/wireguard/wg0.conf", check=True)
        await conn.run("touch /etc/wireguard/extra.conf /run/wireguard/extra", check=True)

    assert {p: host_tree(p) for p in watched} == before
    assert Path("/sys/class/net/wg0").exists() == host_wg0_before
    assert (droplet_host.wg_dir / "extra.conf").exists()


async def test_two_instances_do_not_collide(
    droplet_host: DropletHost, droplet_host_factory: Callable[[], DropletHost]
) -> None:
    other = droplet_host_factory()
    assert len({droplet_host.netns, other.netns}) == 2
    assert len({droplet_host.addr, other.addr, droplet_host.host_addr, other.host_addr}) == 4
    assert droplet_host.host_public_key != other.host_public_key
    assert droplet_host.wg_dir != other.wg_dir

    keys: dict[str, str] = {}
    for droplet in (droplet_host, other):
        priv, pub = wg_keypair()
        droplet.bring_up_wg0(server_conf(priv))
        keys[droplet.netns] = pub

    key = authorized_client_key(droplet_host)
    other.authorize(key.export_public_key().decode())
    for droplet in (droplet_host, other):
        async with connect(droplet, key) as conn:
            shown = await conn.run("wg show wg0 public-key", check=True)
        assert str(shown.stdout).strip() == keys[droplet.netns]

    # Each has its own host key: pinning one while dialling the other fails.
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        async with connect(other, key, pinned=droplet_host.host_public_key):
            pass


def test_stop_leaves_nothing_behind(droplet_host_factory: Callable[[], DropletHost]) -> None:
    droplet = droplet_host_factory()
    server_priv, _ = wg_keypair()
    droplet.bring_up_wg0(server_conf(server_priv))
    netns, root = droplet.netns, droplet.root
    pids = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(pids) >= 2  # sshd and wireguard-go

    droplet.stop()
    droplet.stop()  # idempotent

    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns not in namespaces.split()
    assert not root.exists()
    for pid in pids:
        # An orphaned wireguard-go may linger a moment as a zombie until init reaps it.
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ", 1)[1].startswith("Z")
    with pytest.raises(RuntimeError, match="not started"):
        droplet.run("true")
