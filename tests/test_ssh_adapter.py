"""camreach's SSH adapter against a real sshd (the droplet stand-in)."""

from __future__ import annotations

import asyncssh
import pytest

from bot.adapters.ssh import SshTarget, generate_client_key, public_key_line, ssh_session
from bot.errors import AuthRejected, HostKeyMismatch, RemoteFailed, Unreachable
from tests.infra.droplet_host import DropletHost


def target_for(host: DropletHost, key: str, pinned: str | None = None) -> SshTarget:
    return SshTarget(host.addr, host.ssh_port, "root", "the droplet", pinned, key,
                     connect_timeout=5, command_timeout=10)


@pytest.fixture
def client_key(droplet_host: DropletHost) -> str:
    key = generate_client_key()
    droplet_host.authorize(public_key_line(asyncssh.import_private_key(key)))
    return key


async def test_first_contact_reports_key_then_pins(droplet_host: DropletHost,
                                                   client_key: str) -> None:
    async with ssh_session(target_for(droplet_host, client_key)) as conn:
        seen = conn.host_key
        res = await conn.run("echo hello; id -u")
    assert seen == droplet_host.host_public_key
    assert res.stdout.split() == ["hello", "0"]
    async with ssh_session(target_for(droplet_host, client_key, pinned=seen)) as conn:
        assert (await conn.run("true")).ok


async def test_changed_host_key_is_refused(droplet_host: DropletHost, client_key: str) -> None:
    other = public_key_line(asyncssh.generate_private_key("ssh-ed25519"))
    with pytest.raises(HostKeyMismatch, match="not the one camreach pinned"):
        async with ssh_session(target_for(droplet_host, client_key, pinned=other)) as conn:
            await conn.run("touch /tmp/should-not-run")


async def test_wrong_key_rejected(droplet_host: DropletHost) -> None:
    with pytest.raises(AuthRejected, match="refused the login"):
        async with ssh_session(target_for(droplet_host, generate_client_key())):
            pass


async def test_unreachable(droplet_host: DropletHost, client_key: str) -> None:
    t = SshTarget(droplet_host.addr, 2222, client_key=client_key, label="the droplet",
                  connect_timeout=3)
    with pytest.raises(Unreachable, match="Cannot connect to the droplet"):
        async with ssh_session(t):
            pass


async def test_failed_command_and_hostile_file_name(droplet_host: DropletHost,
                                                    client_key: str) -> None:
    async with ssh_session(target_for(droplet_host, client_key)) as conn:
        with pytest.raises(RemoteFailed, match="exit status 3") as err:
            await conn.run("echo oops >&2; exit 3")
        assert "oops" in (err.value.detail or "") and "oops" not in err.value.user_message
        hostile = "a'; touch pwned; echo '$(id)`id`;.conf"
        name = f"/etc/wireguard/{hostile}"
        await conn.write_file(name, b"data\n$(reboot)\n", mode=0o600)
        assert await conn.read_file(name) == "data\n$(reboot)\n"
    # exactly the one file, under its literal name; nothing ran
    assert [p.name for p in droplet_host.wg_dir.iterdir()] == [hostile]
