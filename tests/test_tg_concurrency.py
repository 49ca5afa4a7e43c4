"""The bot never waits on the network, and conversations survive a restart (fake Bot API)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot import texts
from bot.core import Core
from bot.services.audit import Actor
from bot.settings import Settings
from bot.site import parse_site
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.test_provisioning import FAST, do_settings, fake_do, site  # noqa: F401
from tests.test_tg_setup import api, edited, labels, press, sent  # noqa: F401

SMALLEST = "s-1vcpu-512mb-10gb"


class SilentPort:
    """A TCP port that accepts connections and never says a word (a hung router)."""

    def __init__(self) -> None:
        self.accepted = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SilentPort:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _hold(self, _: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)

    async def __aexit__(self, *exc: object) -> None:
        for w in self._writers:
            w.close()
        self._server.close()


@pytest.fixture
async def hung_router_core(settings: Settings) -> AsyncIterator[tuple[Core, SilentPort]]:
    async with SilentPort() as silent:
        core = await Core.open(settings)
        # The router is a silent port on 127.0.0.1 (a loopback router.host is allowed: an SSH
        # port forward), its LAN a private range.
        doc = {"name": "farm", "router": {"host": "127.0.0.1", "port": silent.port,
                                          "lan_subnet": "192.168.1.0/24",
                                          "password_env": "ROUTER_PASSWORD"}}
        await core.apply_site(parse_site(doc), Actor.cli())
        try:
            yield core, silent
        finally:
            await core.close()


async def test_status_help_and_cancel_answered_while_router_commands_hang(
    settings: Settings, hung_router_core: tuple[Core, SilentPort],
    api: FakeTelegramAPI,  # noqa: F811
) -> None:
    core, silent = hung_router_core
    async with running_bot(settings, api, core=core):
        api.inject_message(ADMIN_ID, "/router detect farm")
        for _ in range(4):  # more hanging commands, from the same admin
            api.inject_message(ADMIN_ID, "/router modem farm")
        deadline = time.monotonic() + 10
        while silent.accepted < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert silent.accepted >= 1  # the first really is stuck on the silent port
        t0 = time.monotonic()
        api.inject_message(ADMIN_ID, "/status")
        await sent(api, "farm", timeout=5)
        api.inject_message(ADMIN_ID, "/help")
        await sent(api, "camreach lets you reach", timeout=5)
        assert time.monotonic() - t0 < 5
        api.inject_message(ADMIN_ID, "/cancel")
        await sent(api, texts.CANCELLED, timeout=5)
        # Buttons and commands of everybody else are not held up either.
        api.inject_message(ADMIN_ID, "/nosuchcommand")
        await sent(api, texts.UNKNOWN_COMMAND, timeout=5)


async def test_unknown_command_points_to_help(settings: Settings,
                                              api: FakeTelegramAPI) -> None:  # noqa: F811
    async with running_bot(settings, api):
        api.inject_message(ADMIN_ID, "/statsu")
        reply = await sent(api, "/help")
        assert api.message(ADMIN_ID, reply).content == texts.UNKNOWN_COMMAND


async def test_setup_interrupted_by_a_restart_continues(
    do_settings: Settings, fake_do: FakeDigitalOcean, api: FakeTelegramAPI,  # noqa: F811
) -> None:
    core = await Core.open(do_settings)
    core.set_timing(FAST)
    await core.apply_site(parse_site(site("farm")), Actor.cli())
    try:
        async with running_bot(do_settings, api, core=core):
            api.inject_message(ADMIN_ID, "/setup farm")
            sizes = await sent(api, "Droplet size for farm")
            press(api, sizes, SMALLEST)
            await edited(api, sizes, "Region for")
        # A new process: a fresh core and application on the same database.
        await core.close()
        core = await Core.open(do_settings)
        core.set_timing(FAST)
        async with running_bot(do_settings, api, core=core):
            press(api, sizes, "ams3")  # the button of the old process's message still works
            summary = await edited(api, sizes, "will create")
            assert f"camreach-farm, {SMALLEST}, ams3, $4/month" in summary
            assert labels(api, sizes) == ["Confirm", "Cancel"]
        await core.close()
        core = await Core.open(do_settings)
        core.set_timing(FAST)
        async with running_bot(do_settings, api, core=core):
            press(api, sizes, "Confirm")
            progress = await sent(api, "provision_droplet")
            await edited(api, progress, "step", timeout=30)
    finally:
        await core.close()
    assert fake_do.count("POST", "/v2/droplets") == 1
    assert [(d.region, d.size) for d in fake_do.droplets.values()] == [("ams3", SMALLEST)]
