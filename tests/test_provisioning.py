"""Provisioning through the real python-digitalocean (fake API) and a real sshd stand-in."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import asyncssh
import pytest
from sqlalchemy import select

from bot.adapters.ssh import public_key_line
from bot.core import Core
from bot.db.models import Droplet, OpState, VpnPeer
from bot.errors import HostKeyMismatch
from bot.operations import OperationView
from bot.services.audit import Actor
from bot.services.droplets import Timing, site_tag
from bot.settings import Settings
from bot.site import parse_site
from bot.wgkeys import public_key
from tests.cloudsim import cloud_init, host_key_from_user_data
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.infra.droplet_host import DropletHost

FAST = Timing(active_timeout=20, ssh_timeout=20, boot_timeout=20, poll=0.1, do_poll=0.05,
              do_backoff=0.01, ssh_connect=2)


def site(name: str = "farm", region: str = "fra1") -> dict:
    return {"name": name, "droplet": {"region": region, "size": "s-1vcpu-512mb-10gb"},
            "router": {"password_env": "ROUTER_PASSWORD"},
            "cameras": [{"name": "porch", "host": "192.168.1.64"}]}


@pytest.fixture
async def fake_do(droplet_host: DropletHost) -> AsyncIterator[FakeDigitalOcean]:
    async with FakeDigitalOcean(public_ipv4=droplet_host.addr) as fake:
        with fake.set_env():
            yield fake


@pytest.fixture
def do_settings(settings: Settings, fake_do: FakeDigitalOcean) -> Iterator[Settings]:
    from pydantic import SecretStr

    yield settings.model_copy(update={"digitalocean_token": SecretStr(fake_do.token)})


@pytest.fixture
async def do_core(do_settings: Settings) -> AsyncIterator[Core]:
    core = await Core.open(do_settings)
    core.set_timing(FAST)
    await core.apply_site(parse_site(site()), Actor.cli())
    try:
        yield core
    finally:
        await core.close()


async def provision(core: Core, name: str = "farm") -> OperationView:
    view = await core.provision(name, Actor.cli())
    final = await core.operations.wait(view.id)
    return final


async def test_provision_end_to_end_and_idempotent(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost
) -> None:
    async with cloud_init(fake_do, droplet_host):
        final = await provision(do_core)
        assert final.state is OpState.SUCCEEDED, final.error
        assert droplet_host.addr in final.message and "51820" in final.message
        again = await provision(do_core)
        assert again.state is OpState.SUCCEEDED, again.error
    # exactly one droplet, tagged for the site, created with camreach's key
    assert len(fake_do.droplets) == 1 and fake_do.count("POST", "/v2/droplets") == 1
    d = next(iter(fake_do.droplets.values()))
    async with do_core.sessions() as s:
        row = (await s.execute(select(Droplet))).scalar_one()
        peers = {p.name: p for p in (await s.execute(select(VpnPeer))).scalars()}
    assert d.tags == ["camreach", site_tag(row.site_id)]
    assert len(fake_do.keys) == 1 and d.ssh_keys == [fake_do.keys[0].id]
    assert (row.do_id, row.status, row.public_ipv4) == (d.id, "active", droplet_host.addr)
    assert row.price_monthly == 4.0
    # host key: the one camreach gave the droplet in its user data, pinned before it booted
    assert d.user_data is not None
    _, given = host_key_from_user_data(d.user_data)
    assert row.ssh_host_key == given == droplet_host.host_public_key
    # the server runs WireGuard with the router peer routing the site LAN
    dump = droplet_host.run("wg show wg0 dump").stdout.splitlines()
    server_private = dump[0].split("\t")[0]
    assert public_key(server_private) == peers["server"].public_key
    router_line = next(ln.split("\t") for ln in dump[1:]
                       if ln.startswith(peers["router"].public_key))
    assert set(router_line[3].split(",")) == {"10.8.0.2/32", "192.168.1.0/24"}
    assert droplet_host.run("wg show wg0 listen-port").stdout.strip() == "51820"


async def test_crash_between_create_and_save_never_pays_twice(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost
) -> None:
    # DigitalOcean creates the droplet but its answer never arrives: the bot "dies" there.
    fake_do.delay_next("POST", "/v2/droplets", 30, after=True)
    view = await do_core.provision("farm", Actor.cli())
    while not fake_do.droplets:
        await asyncio.sleep(0.02)
    await do_core.operations.shutdown()
    assert (await do_core.operations.get(view.id)).state is OpState.INTERRUPTED
    async with do_core.sessions() as s:
        assert (await s.execute(select(Droplet))).scalar_one_or_none() is None
    fake_do.clear_faults()
    async with cloud_init(fake_do, droplet_host):
        final = await provision(do_core)
    assert final.state is OpState.SUCCEEDED, final.error
    assert len(fake_do.droplets) == 1
    assert fake_do.count("POST", "/v2/droplets") == 1
    # the adopted droplet keeps the host key its create call gave it
    (d,) = fake_do.droplets.values()
    assert d.user_data is not None
    async with do_core.sessions() as s:
        pin = (await s.execute(select(Droplet.ssh_host_key))).scalar_one()
    assert pin == host_key_from_user_data(d.user_data)[1] == droplet_host.host_public_key


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (401, None, "DigitalOcean rejected the API token"),
        (403, None, "read+write"),
        (422, None, "region"),
    ],
)
async def test_errors_leave_nothing_half_done(
    do_core: Core, fake_do: FakeDigitalOcean, status: int, headers: dict | None, expected: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    if status == 401:
        fake_do.fail_next("*", "/v2/account", status)
    elif status == 403:
        fake_do.fail_next("POST", "/v2/droplets", status)
    else:
        await do_core.apply_site(parse_site(site(region="blr1")), Actor.cli())
    final = await provision(do_core)
    assert final.state is OpState.FAILED
    assert final.error is not None and expected in final.error
    async with do_core.sessions() as s:
        assert (await s.execute(select(Droplet))).scalar_one_or_none() is None
    assert not fake_do.droplets
    assert fake_do.token not in caplog.text and fake_do.token not in final.error


async def test_stuck_in_new(do_core: Core, fake_do: FakeDigitalOcean) -> None:
    fake_do.stuck_in_new = True
    do_core.set_timing(Timing(active_timeout=0.5, poll=0.05, do_poll=0.05, do_backoff=0.01))
    final = await provision(do_core)
    assert final.state is OpState.FAILED
    assert final.error is not None and "still 'new'" in final.error
    # the droplet exists and is recorded, so a retry adopts it instead of creating another
    async with do_core.sessions() as s:
        row = (await s.execute(select(Droplet))).scalar_one()
    assert row.status == "new" and row.do_id in fake_do.droplets


async def test_changed_host_key_is_refused(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost
) -> None:
    async with cloud_init(fake_do, droplet_host):
        assert (await provision(do_core)).state is OpState.SUCCEEDED
    # The droplet answers with another key than the one camreach gave it.
    other = asyncssh.generate_private_key("ssh-ed25519")
    await asyncio.to_thread(droplet_host.set_host_key,
                            other.export_private_key().decode(), public_key_line(other))
    with pytest.raises(HostKeyMismatch, match="other than the one camreach gave it"):
        async with do_core.droplets.session("farm"):
            pass
    final = await provision(do_core)
    assert final.state is OpState.FAILED and final.error is not None
    assert "other than the one camreach gave it" in final.error
    assert "camreach sent nothing" in final.error
    # A pin that is not the key camreach gave (say, pinned on first contact by an older
    # camreach) is refused in the adapter's words.
    async with do_core.sessions.begin() as s:
        row = (await s.execute(select(Droplet))).scalar_one()
        row.ssh_host_key = public_key_line(asyncssh.generate_private_key("ssh-ed25519"))
    with pytest.raises(HostKeyMismatch, match="not the one camreach pinned"):
        async with do_core.droplets.session("farm"):
            pass
