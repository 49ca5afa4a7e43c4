"""Plays cloud-init for the droplet stand-in: what DigitalOcean and first boot would do.

When the fake DigitalOcean API holds a new droplet, this installs the SSH host key pair from
the droplet's user_data (cloud-init's ``ssh_keys``), the droplet's registered SSH keys for
root, starts answering SSH, brings wg0 up from the wg0.conf that the user_data writes, and
marks first boot finished: the same outcome the real user_data produces on a real droplet.

Like a real droplet, the stand-in answers SSH only once a droplet has booted on it (a
droplet's sshd starts after cloud-init wrote its host key): while no live droplet has booted
there, its port 22 refuses connections, and it refuses them again once that droplet is
destroyed. Each droplet boots once per stand-in (cloud-init runs once per instance); a new
droplet on the same stand-in is a new machine there, with fresh keys and a fresh wg0.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import yaml

from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.infra.droplet_host import DropletHost


def wg_conf_from_user_data(user_data: str) -> str:
    doc = yaml.safe_load(user_data)
    for item in doc["write_files"]:
        if item["path"] == "/etc/wireguard/wg0.conf":
            return str(item["content"])
    raise AssertionError("user_data writes no /etc/wireguard/wg0.conf")


def host_key_from_user_data(user_data: str) -> tuple[str, str]:
    """(private OpenSSH text, public line) of the ed25519 host key the user_data installs."""
    doc: dict[str, Any] = yaml.safe_load(user_data)
    keys = doc.get("ssh_keys")
    if not isinstance(keys, dict) or set(keys) != {"ed25519_private", "ed25519_public"}:
        raise AssertionError(f"user_data gives no ed25519 host key pair: {keys!r}")
    if doc.get("ssh_deletekeys") is not True:
        raise AssertionError("user_data keeps the image's host keys (ssh_deletekeys)")
    return str(keys["ed25519_private"]), str(keys["ed25519_public"])


def booted_here(host: DropletHost) -> list[int]:
    """Ids of the droplets that booted on this stand-in, oldest first (the last is current),
    kept where cloud-init keeps its instance data."""
    path = host.cloud_dir / "data" / "instance-ids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _note_booted(host: DropletHost, droplet_id: int) -> None:
    data = host.cloud_dir / "data"
    data.mkdir(exist_ok=True)
    with (data / "instance-ids").open("a") as f:
        f.write(f"{droplet_id}\n")


async def boot(
    fake: FakeDigitalOcean, host: DropletHost, droplet_id: int, *, install_host_key: bool = True
) -> None:
    """First boot of ``droplet_id`` on ``host``. ``install_host_key=False`` skips the host key
    of the user_data: the stand-in then presents a key of its own (someone else's machine)."""
    d = fake.droplets[droplet_id]
    assert d.user_data is not None
    if booted_here(host):  # another droplet ran here before: this one starts afresh
        await asyncio.to_thread(host.close_ssh)
        await asyncio.to_thread(host.take_down_wg0)
        host.authorized_keys_path.write_text("")
    # Init stage (cc_ssh): host keys, then root's authorized keys; then sshd starts.
    if install_host_key:
        private, public = host_key_from_user_data(d.user_data)
        await asyncio.to_thread(host.set_host_key, private, public)
    keys = {k.id: k for k in fake.keys}
    for key_id in d.ssh_keys:
        await asyncio.to_thread(host.authorize, keys[int(key_id)].public_key)
    _note_booted(host, droplet_id)
    await asyncio.to_thread(host.open_ssh)
    # Final stage: runcmd brings the tunnel up; then boot-finished.
    await asyncio.to_thread(host.bring_up_wg0, wg_conf_from_user_data(d.user_data))
    await asyncio.to_thread(host.mark_first_boot_done)


def _live_droplet_here(fake: FakeDigitalOcean, host: DropletHost) -> bool:
    booted = booted_here(host)
    return bool(booted) and booted[-1] in fake.droplets


@asynccontextmanager
async def cloud_init(
    fake: FakeDigitalOcean, host: DropletHost, *, install_host_key: bool = True
) -> AsyncIterator[set[int]]:
    """Boot every droplet the fake creates (once each) while the block runs.

    ``install_host_key=False``: droplets boot without the host key their user_data gives, so
    the stand-in presents another key (for the tests of a refused host key).
    """
    booted: set[int] = set()
    if not _live_droplet_here(fake, host):
        await asyncio.to_thread(host.close_ssh)

    async def watch() -> None:
        while True:
            if host.ssh_open and not _live_droplet_here(fake, host):
                await asyncio.to_thread(host.close_ssh)  # its droplet was destroyed
            before = set(booted_here(host))
            for droplet_id, d in fake.droplets.items():
                if droplet_id not in booted and droplet_id not in before and d.user_data:
                    booted.add(droplet_id)
                    await boot(fake, host, droplet_id, install_host_key=install_host_key)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(watch())
    try:
        yield booted
    finally:
        task.cancel()
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(host.open_ssh)  # the stand-in's own state outside the block
    if isinstance(outcome, Exception):  # a boot failed: say so rather than time out later
        raise AssertionError(f"cloudsim could not boot a droplet: {outcome!r}") from outcome
