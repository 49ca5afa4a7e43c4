"""/droplet and /droplet destroy through the real Application, fake DigitalOcean, stand-in."""

from __future__ import annotations

from sqlalchemy import select

from bot import texts
from bot.core import Core
from bot.db.models import Droplet
from bot.settings import Settings
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.droplet_host import DropletHost
from tests.test_peers import ready  # noqa: F401
from tests.test_provisioning import do_core, do_settings, fake_do  # noqa: F401
from tests.test_tg_setup import api, edited, labels, press, sent  # noqa: F401


async def droplet_rows(core: Core) -> list[Droplet]:
    async with core.sessions() as s:
        return list((await s.execute(select(Droplet))).scalars())


async def test_destroy_needs_the_button_and_the_exact_name(
    ready: Core, do_settings: Settings, fake_do: FakeDigitalOcean,  # noqa: F811
    droplet_host: DropletHost, api: FakeTelegramAPI,  # noqa: F811
) -> None:
    (do_id,) = fake_do.droplets
    async with running_bot(do_settings, api, core=ready):
        api.inject_message(ADMIN_ID, "/droplet")
        status = await api.wait_for("sendMessage", lambda c: "camreach-farm" in c.params["text"])
        assert "is active in fra1" in status.params["text"]

        api.inject_message(ADMIN_ID, "/droplet destroy")
        ask = await sent(api, "This deletes farm's droplet")
        shown = api.message(ADMIN_ID, ask).content or ""
        for fact in ("camreach-farm", str(do_id), droplet_host.addr, "fra1",
                     "s-1vcpu-512mb-10gb", "$4/month"):
            assert fact in shown
        assert labels(api, ask) == ["Delete it", "Cancel"]
        press(api, ask, "Delete it")
        await edited(api, ask, "type the site name: farm")
        api.inject_message(ADMIN_ID, "Farm")  # close is not enough
        await sent(api, texts.DESTROY_NOT_CONFIRMED)
        # The conversation is over: typing the right name now does not delete anything.
        api.inject_message(ADMIN_ID, "farm")
        api.inject_message(ADMIN_ID, "/help")
        await sent(api, "camreach lets you reach")
        assert list(fake_do.droplets) == [do_id] and fake_do.count("DELETE") == 0
        assert len(await droplet_rows(ready)) == 1

        api.inject_message(ADMIN_ID, "/droplet destroy farm")
        ask = await sent(api, "This deletes farm's droplet")
        press(api, ask, "Delete it")
        await edited(api, ask, "type the site name")
        api.inject_message(ADMIN_ID, "farm")
        progress = await sent(api, "destroy_droplet")
        await edited(api, progress, "Done", timeout=30)

    assert not fake_do.droplets and fake_do.count("DELETE", f"/v2/droplets/{do_id}") == 1
    assert await droplet_rows(ready) == []


async def test_destroy_without_a_droplet(
    do_core: Core, do_settings: Settings, api: FakeTelegramAPI,  # noqa: F811
) -> None:
    async with running_bot(do_settings, api, core=do_core):
        api.inject_message(ADMIN_ID, "/droplet destroy")
        await sent(api, "Site farm has no droplet")
