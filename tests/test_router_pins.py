"""Router host-key pins are never reset silently, and two first contacts pin one key."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass

import asyncssh
import pytest
from sqlalchemy import select, update

from bot.core import Core
from bot.db.models import Router
from bot.errors import HostKeyMismatch
from bot.services.audit import Actor
from bot.site import parse_site
from tests.test_crash_recovery import exe

DOC = {"name": "farm", "router": {"host": "192.168.1.1", "password_env": "PW"}}


def host_key() -> str:
    public = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    return " ".join(public.split()[:2])


@dataclass
class Answered:
    """What _pin reads of a connection: the host key the far end presented."""

    host_key: str


async def pin_of(core: Core) -> str | None:
    async with core.sessions() as s:
        return (await s.execute(select(Router.ssh_host_key))).scalar_one()


@pytest.fixture
async def farm(core: Core) -> Core:
    await core.apply_site(parse_site(DOC), Actor.cli())
    return core


async def test_a_new_address_keeps_the_pin(farm: Core) -> None:
    key = host_key()
    async with farm.sessions.begin() as s:
        await s.execute(update(Router).values(ssh_host_key=key))
    moved = {**DOC, "router": {**DOC["router"], "host": "192.168.1.2", "port": 2222}}
    await farm.apply_site(parse_site(moved), Actor.cli())
    assert await pin_of(farm) == key


async def test_two_first_contacts_pin_one_key(farm: Core) -> None:
    a, b = host_key(), host_key()
    results = await asyncio.gather(farm.router._pin("farm", Answered(a)),  # type: ignore[arg-type]
                                   farm.router._pin("farm", Answered(b)),  # type: ignore[arg-type]
                                   return_exceptions=True)
    pinned = await pin_of(farm)
    assert pinned in (a, b)
    winner = 0 if pinned == a else 1
    assert results[winner] is True
    loser = results[1 - winner]
    assert isinstance(loser, HostKeyMismatch) and "forget-key" in loser.user_message
    # The same key again is no mismatch.
    assert await farm.router._pin("farm", Answered(pinned)) is False  # type: ignore[arg-type]


async def test_forget_key_asks_then_forgets(farm: Core, cli_env: dict[str, str]) -> None:
    key = host_key()
    async with farm.sessions.begin() as s:
        await s.execute(update(Router).values(ssh_host_key=key, key_installed=True))
    refused = subprocess.run([exe(), "router", "forget-key", "farm"], env=cli_env,
                             stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert await pin_of(farm) == key
    said_no = subprocess.run([exe(), "router", "forget-key", "farm"], env=cli_env, input="n\n",
                             capture_output=True, text=True, timeout=60)
    assert said_no.returncode == 1 and await pin_of(farm) == key
    done = subprocess.run([exe(), "router", "forget-key", "farm"], env=cli_env, input="y\n",
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "camreach router connect farm" in done.stdout
    assert await pin_of(farm) is None
