"""Plays cloud-init for the droplet stand-in: what DigitalOcean and first boot would do.

When the fake DigitalOcean API holds a new droplet, this installs the droplet's registered SSH
keys for root, brings wg0 up from the wg0.conf that the droplet's user_data writes, and marks
first boot finished: the same outcome the real user_data produces on a real droplet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import yaml

from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.infra.droplet_host import DropletHost


def wg_conf_from_user_data(user_data: str) -> str:
    doc = yaml.safe_load(user_data)
    for item in doc["write_files"]:
        if item["path"] == "/etc/wireguard/wg0.conf":
            return str(item["content"])
    raise AssertionError("user_data writes no /etc/wireguard/wg0.conf")


async def boot(fake: FakeDigitalOcean, host: DropletHost, droplet_id: int) -> None:
    d = fake.droplets[droplet_id]
    keys = {k.id: k for k in fake.keys}
    for key_id in d.ssh_keys:
        await asyncio.to_thread(host.authorize, keys[int(key_id)].public_key)
    assert d.user_data is not None
    await asyncio.to_thread(host.bring_up_wg0, wg_conf_from_user_data(d.user_data))
    await asyncio.to_thread(host.mark_first_boot_done)


@asynccontextmanager
async def cloud_init(fake: FakeDigitalOcean, host: DropletHost) -> AsyncIterator[set[int]]:
    """Boot every droplet the fake creates (once each) while the block runs."""
    booted: set[int] = set()

    async def watch() -> None:
        while True:
            for droplet_id in list(fake.droplets):
                if droplet_id not in booted and fake.droplets[droplet_id].user_data:
                    booted.add(droplet_id)
                    await boot(fake, host, droplet_id)
            await asyncio.sleep(0.05)

    task = asyncio.create_task(watch())
    try:
        yield booted
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
