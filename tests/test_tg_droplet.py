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
from tests.test_tg_setup import answered, api, edited, labels, press, sent  # noqa: F401


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


async def test_retry_of_an_interrupted_destroy_asks_again(
    ready: Core, do_settings: Settings, fake_do: FakeDigitalOcean,  # noqa: F811
    droplet_host: DropletHost, api: FakeTelegramAPI,  # noqa: F811
) -> None:
    from bot.db.models import Operation, OpState, Site
    from handlers.operations import RETRY_CONFIRM_PREFIX, RETRY_PREFIX

    (do_id,) = fake_do.droplets
    # What a bot killed in the middle of a destroy leaves: a running row nobody renews.
    async with ready.sessions.begin() as s:
        site_id = (await s.execute(select(Site.id))).scalar_one()
        row = Operation(kind="destroy_droplet", site_id=site_id, state=OpState.RUNNING,
                        step=1, total_steps=2, message="Deleting", params={})
        s.add(row)
        await s.flush()
        op_id = row.id
    async with running_bot(do_settings, api, core=ready):
        note = await sent(api, "restarted")
        assert api.message(ADMIN_ID, note).button_data() == [f"{RETRY_CONFIRM_PREFIX}{op_id}"]
        # The plain Retry shortcut is refused for a destroy, whoever crafts the button.
        query = api.inject_callback(ADMIN_ID, f"{RETRY_PREFIX}{op_id}", note, check_button=False)
        assert "confirm it again" in (await answered(api, query) or "")
        assert list(fake_do.droplets) == [do_id]

        api.inject_callback(ADMIN_ID, f"{RETRY_CONFIRM_PREFIX}{op_id}", note)
        ask = await sent(api, "This deletes farm's droplet")
        press(api, ask, "Delete it")
        await edited(api, ask, "type the site name: farm")
        assert list(fake_do.droplets) == [do_id]  # nothing yet: the name is not typed
        api.inject_message(ADMIN_ID, "farm")
        progress = await sent(api, "destroy_droplet")
        await edited(api, progress, "Done", timeout=30)
        # The same Retry again: that run is over.
        again = api.inject_callback(ADMIN_ID, f"{RETRY_CONFIRM_PREFIX}{op_id}", note,
                                    check_button=False)
        await api.wait_for("answerCallbackQuery",
                           lambda c: str(c.params["callback_query_id"]) == again)
        await sent(api, "already run again")
    assert not fake_do.droplets and fake_do.count("DELETE", f"/v2/droplets/{do_id}") == 1
    assert (await ready.operation(op_id)).retried_by is not None
