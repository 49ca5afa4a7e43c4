"""The droplet's SSH host key is camreach's own: made for the create call, handed over in the
user data, pinned before the droplet exists, verified on the first connection."""

from __future__ import annotations

import asyncio
import logging

import asyncssh
import pytest
from sqlalchemy import select

from bot.adapters.ssh import fingerprint, public_key_line
from bot.core import Core
from bot.db.models import Droplet, OpState, Secret, Site, VpnPeer
from bot.errors import HostKeyMismatch
from bot.services import droplets as droplet_service
from bot.services.audit import Actor
from bot.services.droplets import host_key_secret_name, pin_host_key
from bot.sshkeys import HostKeyPair
from tests.cloudsim import cloud_init, host_key_from_user_data, wg_conf_from_user_data
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.infra.droplet_host import DropletHost
from tests.test_provisioning import (  # noqa: F401 (fixtures)
    do_core,
    do_settings,
    fake_do,
    provision,
)

ME = Actor(1001, "owner")
REFUSED = "answered with a host key other than the one camreach gave it"


async def presented_key(host: DropletHost) -> str:
    key = await asyncio.wait_for(
        asyncssh.get_server_host_key(host.addr, host.ssh_port, config=[]), 10)
    assert key is not None
    return public_key_line(key)


async def pinned(core: Core) -> str | None:
    async with core.sessions() as s:
        return (await s.execute(select(Droplet.ssh_host_key))).scalar_one()


async def stored_ciphertext(core: Core, site: str = "farm") -> bytes:
    async with core.sessions() as s:
        return (await s.execute(select(Secret.ciphertext)
                                .where(Secret.name == host_key_secret_name(site)))).scalar_one()


def only_droplet(fake: FakeDigitalOcean) -> tuple[int, str]:
    ((do_id, d),) = fake.droplets.items()
    assert d.user_data is not None
    return do_id, d.user_data


def logins(host: DropletHost) -> list[str]:
    """sshd's lines about authentication and sessions: a login or a command shows here."""
    words = ("Accepted", "publickey", "Starting session", "session opened")
    return [ln for ln in host.sshd_log.splitlines() if any(w in ln for w in words)]


async def test_pin_is_the_key_in_the_user_data_and_its_private_half_is_encrypted(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    own_key = droplet_host.host_public_key  # what the stand-in had before it "booted"
    async with cloud_init(fake_do, droplet_host):
        final = await provision(do_core)
        assert final.state is OpState.SUCCEEDED, final.error
    _, user_data = only_droplet(fake_do)
    private, public = host_key_from_user_data(user_data)
    assert HostKeyPair.from_private(private).public == public and public != own_key
    # pinned: exactly the public half DigitalOcean received, and the droplet presents it
    assert await pinned(do_core) == public
    assert await presented_key(droplet_host) == public
    # the private half is stored, encrypted: no line of its body is in the ciphertext
    ciphertext = await stored_ciphertext(do_core)
    body = [ln for ln in private.splitlines() if "PRIVATE KEY" not in ln]
    assert body and not any(ln.encode() in ciphertext for ln in body)
    assert b"OPENSSH" not in ciphertext
    assert do_core.secrets.box.decrypt(ciphertext) == private
    async with do_core.sessions() as s:
        for row in (await s.execute(select(Secret.ciphertext))).scalars():
            assert not any(ln.encode() in row for ln in body)
    assert not any(ln in caplog.text for ln in body)
    # camreach logged in and ran its boot check (the negative checks below mean something)
    assert any("Accepted publickey for root" in ln for ln in logins(droplet_host))

    # A retry adopts the same droplet and keeps its key.
    async with cloud_init(fake_do, droplet_host):
        again = await provision(do_core)
        assert again.state is OpState.SUCCEEDED, again.error
    assert fake_do.count("POST", "/v2/droplets") == 1
    assert await pinned(do_core) == public
    assert do_core.secrets.box.decrypt(await stored_ciphertext(do_core)) == private


async def test_crash_after_the_create_call_keeps_the_key_the_droplet_got(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
) -> None:
    # DigitalOcean creates the droplet but its answer never arrives: the bot "dies" there.
    fake_do.delay_next("POST", "/v2/droplets", 30, after=True)
    view = await do_core.provision("farm", Actor.cli())
    while not fake_do.droplets:
        await asyncio.sleep(0.02)
    await do_core.operations.shutdown()
    fake_do.clear_faults()
    async with cloud_init(fake_do, droplet_host):
        final = await provision(do_core)
    assert final.state is OpState.SUCCEEDED, final.error
    assert (await do_core.operations.get(view.id)).state is OpState.INTERRUPTED
    _, user_data = only_droplet(fake_do)
    _, public = host_key_from_user_data(user_data)
    assert await pinned(do_core) == public == await presented_key(droplet_host)


async def test_a_new_droplet_gets_a_new_key(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
) -> None:
    async with cloud_init(fake_do, droplet_host):
        assert (await provision(do_core)).state is OpState.SUCCEEDED
        first_id, first_data = only_droplet(fake_do)
        _, first = host_key_from_user_data(first_data)

        # Deleted through camreach: the record goes, the next droplet gets a new pair.
        view = await do_core.destroy_droplet("farm", ME)
        assert (await do_core.operations.wait(view.id)).state is OpState.SUCCEEDED
        while droplet_host.ssh_open:  # the machine is gone
            await asyncio.sleep(0.02)
        assert (await provision(do_core)).state is OpState.SUCCEEDED
        second_id, second_data = only_droplet(fake_do)
        _, second = host_key_from_user_data(second_data)
        assert second_id != first_id and second != first
        assert await pinned(do_core) == second == await presented_key(droplet_host)

        # Deleted behind camreach's back: the record stays, with its pin, until the next
        # droplet replaces it, pinned at once to that droplet's own new key (never cleared).
        do = await do_core.droplets.client()
        await do.destroy_droplet(second_id)
        while droplet_host.ssh_open:
            await asyncio.sleep(0.02)
        assert await pinned(do_core) == second
        assert (await provision(do_core)).state is OpState.SUCCEEDED
        third_id, third_data = only_droplet(fake_do)
        _, third = host_key_from_user_data(third_data)
        assert third not in (first, second)
        async with do_core.sessions() as s:
            row = (await s.execute(select(Droplet))).scalar_one()
        assert (row.do_id, row.ssh_host_key) == (third_id, third)
        assert await presented_key(droplet_host) == third


async def test_a_droplet_presenting_another_key_is_refused_and_sent_nothing(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
) -> None:
    # The stand-in boots without the key its user data gives: someone else's machine.
    async with cloud_init(fake_do, droplet_host, install_host_key=False):
        final = await provision(do_core)
    assert final.state is OpState.FAILED and final.error is not None
    _, user_data = only_droplet(fake_do)
    _, given = host_key_from_user_data(user_data)
    stranger = droplet_host.host_public_key
    assert stranger != given
    assert REFUSED in final.error and "camreach sent nothing" in final.error
    assert fingerprint(given) in final.error and fingerprint(stranger) in final.error
    assert "site destroy farm" in final.error
    # the pin is still the key camreach gave, not the one that answered
    assert await pinned(do_core) == given

    wg0 = droplet_host.wg_dir / "wg0.conf"
    conf_before = wg0.read_text()
    assert conf_before == wg_conf_from_user_data(user_data)  # as first boot wrote it
    live_before = droplet_host.run("wg show wg0 peers", check=True).stdout
    async with do_core.sessions() as s:
        peers_before = set((await s.execute(select(VpnPeer.name))).scalars())

    with pytest.raises(HostKeyMismatch, match=REFUSED) as refused:
        await do_core.add_peer("farm", "anna-phone", ME)
    assert "camreach sent nothing" in refused.value.user_message
    with pytest.raises(HostKeyMismatch, match=REFUSED):
        async with do_core.droplets.session("farm") as conn:
            await conn.run("touch /etc/wireguard/reached")  # never runs
    with pytest.raises(HostKeyMismatch, match=REFUSED):
        await do_core.list_peers("farm")

    # Nothing reached the stand-in: no file changed, no peer, no login, no command.
    assert wg0.read_text() == conf_before
    assert not (droplet_host.wg_dir / "reached").exists()
    assert droplet_host.run("wg show wg0 peers", check=True).stdout == live_before
    assert logins(droplet_host) == []
    # camreach did reach this sshd, which saw it leave during the key exchange
    refusals = [ln for ln in droplet_host.sshd_log.splitlines()
                if "Host key is not trusted" in ln]
    assert refusals and all(ln.endswith("[preauth]") for ln in refusals)
    async with do_core.sessions() as s:
        assert set((await s.execute(select(VpnPeer.name))).scalars()) == peers_before
    assert await pinned(do_core) == given


async def test_the_droplet_changing_its_key_later_is_refused(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
) -> None:
    async with cloud_init(fake_do, droplet_host):
        assert (await provision(do_core)).state is OpState.SUCCEEDED
    given = await pinned(do_core)
    other = HostKeyPair.generate()
    await asyncio.to_thread(droplet_host.set_host_key, other.private_openssh, other.public)
    with pytest.raises(HostKeyMismatch, match=REFUSED):
        async with do_core.droplets.session("farm"):
            pass
    final = await provision(do_core)
    assert final.state is OpState.FAILED and final.error is not None and REFUSED in final.error
    assert await pinned(do_core) == given


# -- pinning a droplet recorded before camreach made its keys ---------------------------------


async def legacy_droplet(core: Core, host: DropletHost, fake: FakeDigitalOcean) -> int:
    """A provisioned droplet, then made to look recorded by an older camreach: no pin, no
    host key secret. Returns the row id."""
    async with cloud_init(fake, host):
        assert (await provision(core)).state is OpState.SUCCEEDED
    await core.secrets.delete(host_key_secret_name("farm"))
    async with core.sessions.begin() as s:
        row = (await s.execute(select(Droplet))).scalar_one()
        row.ssh_host_key = None
        return row.id


async def test_two_pins_at_once_cannot_pin_two_keys(do_core: Core) -> None:  # noqa: F811
    async with do_core.sessions.begin() as s:
        site_id = (await s.execute(select(Site.id).where(Site.name == "farm"))).scalar_one()
        row = Droplet(site_id=site_id, name="camreach-farm", region="fra1",
                      size="s-1vcpu-512mb-10gb", image="ubuntu-24-04-x64", do_id=7,
                      public_ipv4="192.0.2.7")
        s.add(row)
    for _ in range(5):
        keys = [HostKeyPair.generate().public for _ in range(6)]
        async with do_core.sessions.begin() as s:
            (await s.get_one(Droplet, row.id)).ssh_host_key = None
        seen = await asyncio.gather(*(pin_host_key(do_core.sessions, row.id, 7, k)
                                      for k in keys))
        # exactly one won, and every contender reads the winner's key back
        assert len(set(seen)) == 1 and seen[0] in keys
        assert await pinned(do_core) == seen[0]
        # a pin stays: a later attempt with another key changes nothing
        assert await pin_host_key(do_core.sessions, row.id, 7, keys[-1]) == seen[0]
        # and a pin for another droplet than the record holds now is not taken
        assert await pin_host_key(do_core.sessions, row.id, 8, keys[-1]) is None


async def test_a_droplet_without_a_pin_is_pinned_on_first_contact(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
) -> None:
    await legacy_droplet(do_core, droplet_host, fake_do)
    async with do_core.droplets.session("farm") as conn:
        assert (await conn.run("echo ok")).stdout == "ok\n"
    assert await pinned(do_core) == droplet_host.host_public_key


async def test_a_first_contact_that_loses_the_pin_race_is_not_used(
    do_core: Core, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await legacy_droplet(do_core, droplet_host, fake_do)
    other = HostKeyPair.generate().public

    async def lose(sessions: object, droplet_id: int, do_id: int | None, key: str) -> str | None:
        # Another connection pins a different key just before this one.
        await pin_host_key(do_core.sessions, droplet_id, do_id, other)
        return await pin_host_key(do_core.sessions, droplet_id, do_id, key)

    monkeypatch.setattr(droplet_service, "pin_host_key", lose)
    before = droplet_host.sshd_log.count("Starting session")
    with pytest.raises(HostKeyMismatch, match="not the one camreach pinned"):
        async with do_core.droplets.session("farm") as conn:
            await conn.run("touch /etc/wireguard/reached")  # never runs
    assert not (droplet_host.wg_dir / "reached").exists()
    assert droplet_host.sshd_log.count("Starting session") == before
    assert await pinned(do_core) == other

