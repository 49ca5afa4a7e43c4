"""VPN peers on the droplet stand-in: wg set live, wg0.conf persisted, database in step."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core import Core
from bot.db.models import OpState
from bot.errors import NotFound, ValidationFailed
from bot.render.wg_conf import parse_server_peers
from bot.services.audit import Actor
from bot.settings import Settings
from bot.wgkeys import public_key
from tests.cloudsim import cloud_init
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.infra.droplet_host import DropletHost, wg_keypair
from tests.test_provisioning import do_core, do_settings, fake_do  # noqa: F401 (fixtures)

ME = Actor(1001, "owner")


@pytest.fixture
async def ready(do_core: Core, fake_do: FakeDigitalOcean,  # noqa: F811
                droplet_host: DropletHost) -> AsyncIterator[Core]:
    async with cloud_init(fake_do, droplet_host):
        view = await do_core.provision("farm", ME)
        assert (await do_core.operations.wait(view.id)).state is OpState.SUCCEEDED
    yield do_core


def dump_peers(host: DropletHost) -> dict[str, str]:
    lines = host.run("wg show wg0 dump").stdout.strip().splitlines()[1:]
    return {ln.split("\t")[0]: ln.split("\t")[3] for ln in lines}


def conf_value(conf: str, key: str) -> str:
    return next(ln.split("=", 1)[1].strip() for ln in conf.splitlines()
                if ln.split("=", 1)[0].strip() == key)


async def test_add_list_remove(ready: Core, droplet_host: DropletHost, tmp_path: Path) -> None:
    anna = await ready.add_peer("farm", "anna-phone", ME)
    assert anna.address == "10.8.0.3"
    # the client config reaches the tunnel and the site LAN through the droplet
    assert conf_value(anna.config, "Address") == "10.8.0.3/32"
    assert conf_value(anna.config, "AllowedIPs").replace(" ", "") == "10.8.0.0/24,192.168.1.0/24"
    assert conf_value(anna.config, "Endpoint") == f"{droplet_host.addr}:51820"
    assert "DNS" not in anna.config
    conf_file = tmp_path / "wg0.conf"
    conf_file.write_text(anna.config)
    stripped = subprocess.run(["wg-quick", "strip", str(conf_file)], capture_output=True,
                              text=True, check=True)
    assert "PrivateKey" in stripped.stdout
    anna_pub = public_key(conf_value(anna.config, "PrivateKey"))
    # applied live and persisted
    assert dump_peers(droplet_host)[anna_pub] == "10.8.0.3/32"
    persisted = {p.public_key: p for p in parse_server_peers(
        (droplet_host.wg_dir / "wg0.conf").read_text())}
    assert persisted[anna_pub].name == "anna-phone"

    ben = await ready.add_peer("farm", "ben-laptop", ME, dns="1.1.1.1")
    assert ben.address == "10.8.0.4" and conf_value(ben.config, "DNS") == "1.1.1.1"
    with pytest.raises(ValidationFailed, match="already has a peer"):
        await ready.add_peer("farm", "anna-phone", ME)
    with pytest.raises(ValidationFailed, match="cannot name a peer"):
        await ready.add_peer("farm", "x; rm -rf /", ME)

    # a peer someone added by hand on the server is reported, not deleted
    _, stranger_pub = wg_keypair()
    droplet_host.run(f"wg set wg0 peer {stranger_pub} allowed-ips 10.8.0.99/32", check=True)
    rows = {r.public_key: r for r in await ready.list_peers("farm")}
    assert rows[anna_pub].name == "anna-phone" and rows[anna_pub].address == "10.8.0.3"
    assert rows[stranger_pub].name is None and rows[stranger_pub].kind == "unknown"
    assert {r.name for r in rows.values()} >= {"router", "anna-phone", "ben-laptop"}

    await ready.remove_peer("farm", "anna-phone", ME)
    live = dump_peers(droplet_host)
    assert anna_pub not in live and stranger_pub in live
    persisted_keys = {p.public_key for p in parse_server_peers(
        (droplet_host.wg_dir / "wg0.conf").read_text())}
    assert anna_pub not in persisted_keys
    assert "anna-phone" not in {r.name for r in await ready.list_peers("farm")}
    with pytest.raises(NotFound):
        await ready.remove_peer("farm", "anna-phone", ME)
    with pytest.raises(ValidationFailed, match="stays"):
        await ready.remove_peer("farm", "router", ME)
    # the freed address is handed out again
    again = await ready.add_peer("farm", "carl", ME)
    assert again.address == "10.8.0.3"


async def test_qr_code_holds_the_config(ready: Core, tmp_path: Path) -> None:
    if shutil.which("zbarimg") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("zbarimg (zbar-tools) is required in CI")
        pytest.skip("zbarimg (zbar-tools) not installed")
    peer = await ready.add_peer("farm", "phone", ME)
    png = tmp_path / "qr.png"
    png.write_bytes(peer.qr_png)
    out = subprocess.run(["zbarimg", "--quiet", "--raw", str(png)], capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == peer.config.strip()


async def test_peer_add_fails_cleanly_when_droplet_unreachable(
    ready: Core, droplet_host: DropletHost
) -> None:
    from bot.errors import Unreachable

    before = {r.name for r in await ready.list_peers("farm")}
    conf_before = (droplet_host.wg_dir / "wg0.conf").read_text()
    # Freeze the stand-in's sshd (only the processes inside its network namespace).
    pids = subprocess.run(["ip", "netns", "pids", droplet_host.netns], capture_output=True,
                          text=True, check=True).stdout.split()
    def comm(pid: str) -> str:
        try:
            return Path(f"/proc/{pid}/comm").read_text().strip()
        except FileNotFoundError:  # a short-lived process that ended meanwhile
            return ""

    sshd = [int(p) for p in pids if comm(p) == "sshd"]
    assert sshd
    for pid in sshd:
        os.kill(pid, signal.SIGSTOP)
    try:
        with pytest.raises(Unreachable, match="did not answer in time"):
            await ready.add_peer("farm", "late", ME)
    finally:
        for pid in sshd:
            os.kill(pid, signal.SIGCONT)
    assert {r.name for r in await ready.list_peers("farm")} == before
    assert (droplet_host.wg_dir / "wg0.conf").read_text() == conf_before


async def test_a_phone_added_by_hand_keeps_its_address(ready: Core,
                                                       droplet_host: DropletHost) -> None:
    """A peer live on the server that the database does not know is someone's phone."""
    _, stranger_pub = wg_keypair()
    droplet_host.run(f"wg set wg0 peer {stranger_pub} allowed-ips 10.8.0.3/32")
    conf = droplet_host.wg_dir / "wg0.conf"
    anna = await ready.add_peer("farm", "anna-phone", ME)
    assert anna.address != "10.8.0.3"
    live = dump_peers(droplet_host)
    assert live[stranger_pub] == "10.8.0.3/32"  # the working phone still has its address
    assert live[public_key(conf_value(anna.config, "PrivateKey"))] == f"{anna.address}/32"
    assert anna.address in conf.read_text()


async def test_two_adds_at_once_get_two_addresses(ready: Core, do_settings: Settings,  # noqa: F811
                                                  droplet_host: DropletHost) -> None:
    other = await Core.open(do_settings, migrate=False)  # another process's core: own engine
    try:
        a, b = await asyncio.gather(ready.add_peer("farm", "anna", ME),
                                    other.add_peer("farm", "ben", ME))
    finally:
        await other.close()
    assert a.address != b.address
    live = dump_peers(droplet_host)
    conf = droplet_host.wg_dir / "wg0.conf"
    for peer in (a, b):
        assert live[public_key(conf_value(peer.config, "PrivateKey"))] == f"{peer.address}/32"
        assert f"{peer.address}/32" in conf.read_text()


async def test_no_private_key_of_a_phone_is_kept(ready: Core) -> None:
    from sqlalchemy import func, select

    from bot.db.models import Secret, VpnPeer

    async with ready.sessions() as s:
        before = (await s.execute(select(func.count()).select_from(Secret))).scalar_one()
    anna = await ready.add_peer("farm", "anna", ME)
    async with ready.sessions() as s:
        after = (await s.execute(select(func.count()).select_from(Secret))).scalar_one()
        row = (await s.execute(select(VpnPeer).where(VpnPeer.name == "anna"))).scalar_one()
    assert after == before and row.private_key_secret is None
    assert row.public_key == public_key(conf_value(anna.config, "PrivateKey"))
    with pytest.raises(ValidationFailed, match="keeps no copy"):
        await ready.add_peer("farm", "anna", ME)  # a lost config is made anew, not re-sent


async def test_an_invalid_config_changes_nothing_live(ready: Core,
                                                      droplet_host: DropletHost) -> None:
    conf = droplet_host.wg_dir / "wg0.conf"
    # Something wg-quick refuses, left in the file by hand (it would break the next reboot).
    conf.write_text(conf.read_text().replace("[Interface]", "[Interface]\nBogus = 1", 1))
    broken = conf.read_text()
    live_before = dump_peers(droplet_host)
    with pytest.raises(ValidationFailed, match="'Bogus' is not a WireGuard setting"):
        await ready.add_peer("farm", "anna", ME)
    assert dump_peers(droplet_host) == live_before and conf.read_text() == broken
    assert "anna" not in {p.name for p in await ready.list_peers("farm")}
