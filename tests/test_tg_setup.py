"""/setup through the real Application: fake Bot API, fake DigitalOcean, real sshd stand-in."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator

import pytest

from bot import texts
from bot.core import Core
from bot.logs import install_redactor
from bot.services.audit import Actor
from bot.settings import Settings
from bot.site import parse_site
from tests.botharness import running_bot
from tests.cloudsim import cloud_init
from tests.conftest import ADMIN_ID, STRANGER_ID
from tests.fakes.digitalocean_api import REGIONS, SIZES, FakeDigitalOcean
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.droplet_host import DropletHost
from tests.test_peers import ready  # noqa: F401
from tests.test_provisioning import FAST, do_core, do_settings, fake_do, site  # noqa: F401

SMALLEST = "s-1vcpu-512mb-10gb"
WRONG_TOKEN = "dop_v1_" + "0bad" * 16  # the shape of a real token; the fake answers 401


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as fake:
        yield fake


@pytest.fixture
async def tokenless_core(settings: Settings,
                         fake_do: FakeDigitalOcean) -> AsyncIterator[Core]:  # noqa: F811
    """Two sites and no DigitalOcean token anywhere: /setup has to ask for one."""
    core = await Core.open(settings)
    core.set_timing(FAST)
    for name in ("farm", "barn"):
        await core.apply_site(parse_site(site(name)), Actor.cli())
    try:
        yield core
    finally:
        await core.close()


# -- helpers shared with the /peer and /droplet tests ------------------------------------------


def labels(api: FakeTelegramAPI, message_id: int) -> list[str]:
    return [str(b["text"]) for row in api.message(ADMIN_ID, message_id).inline_keyboard
            for b in row]


def press(api: FakeTelegramAPI, message_id: int, label: str) -> str:
    """Press the button whose label starts with ``label``, as the admin; the query's id."""
    keyboard = api.message(ADMIN_ID, message_id).inline_keyboard
    data = next(b["callback_data"] for row in keyboard for b in row
                if str(b["text"]).startswith(label))
    return api.inject_callback(ADMIN_ID, data, message_id)


async def answered(api: FakeTelegramAPI, query_id: str) -> str | None:
    """What the bot showed for that button press (None: just stopped the spinner)."""
    call = await api.wait_for("answerCallbackQuery",
                              lambda c: str(c.params["callback_query_id"]) == query_id)
    text = call.params.get("text")
    return None if text is None else str(text)


async def sent(api: FakeTelegramAPI, contains: str, timeout: float = 10) -> int:
    """The id of the next message the bot sends whose text contains ``contains``."""
    call = await api.wait_for("sendMessage", lambda c: contains in c.params["text"], timeout)
    return int(call.result["message_id"])


async def edited(api: FakeTelegramAPI, message_id: int, contains: str,
                 timeout: float = 10) -> str:
    call = await api.wait_for(
        "editMessageText",
        lambda c: c.params["message_id"] == message_id and contains in c.params["text"],
        timeout,
    )
    return str(call.params["text"])


def outgoing_mentions(api: FakeTelegramAPI, secret: str) -> list[str]:
    """Bot API calls (not the updates the bot receives) whose parameters contain ``secret``."""
    return [c.summary() for c in api.calls()
            if c.method != "getUpdates" and secret in json.dumps(c.params, ensure_ascii=False)]


# -- tests -------------------------------------------------------------------------------------


async def test_setup_end_to_end(
    settings: Settings, tokenless_core: Core, fake_do: FakeDigitalOcean,  # noqa: F811
    droplet_host: DropletHost, api: FakeTelegramAPI, caplog: pytest.LogCaptureFixture,
) -> None:
    install_redactor(caplog.handler)  # as setup_logging does for the real log handler
    caplog.set_level(logging.DEBUG)
    core = tokenless_core
    async with cloud_init(fake_do, droplet_host), running_bot(settings, api, core=core):
        api.inject_message(ADMIN_ID, "/setup")
        sites = await sent(api, texts.SETUP_PICK_SITE)
        assert labels(api, sites) == ["barn", "farm", "➕ New site", "Cancel"]
        press(api, sites, "farm")
        await sent(api, "DigitalOcean API token")

        token_msg = api.inject_message(ADMIN_ID, fake_do.token)
        await api.wait_for("deleteMessage", lambda c: c.params["message_id"] == token_msg)
        await sent(api, "Token accepted")

        # Sizes: the fake's live list, cheapest first, each with its monthly price.
        sizes = await sent(api, "Droplet size for farm")
        by_price = sorted(SIZES, key=lambda s: s["price_monthly"])
        assert [label.split(" · ")[0] for label in labels(api, sizes)] == [
            *(s["slug"] for s in by_price), "Cancel"]
        assert labels(api, sizes)[0] == f"{SMALLEST} · 512 MB · $4/month"
        press(api, sizes, SMALLEST)

        # Regions: only open ones that sell the size (not blr1: no 512 MB; not sfo1: closed).
        await edited(api, sizes, "Region for")
        offered = [label.split(" · ")[0] for label in labels(api, sizes)][:-1]
        assert offered == sorted(r["slug"] for r in REGIONS
                                 if r["available"] and SMALLEST in r["sizes"])
        assert "blr1" not in offered and "sfo1" not in offered
        press(api, sizes, "ams3")

        summary = await edited(api, sizes, "will create")
        assert f"camreach-farm, {SMALLEST}, ams3, $4/month" in summary
        assert labels(api, sizes) == ["Confirm", "Cancel"]
        press(api, sizes, "Confirm")

        progress = await sent(api, "provision_droplet")
        await edited(api, progress, "Done", timeout=60)
        assert labels(api, sizes) == []  # the Confirm button is gone: no second run

    droplets = list(fake_do.droplets.values())
    assert [(d.name, d.region, d.size) for d in droplets] == [("camreach-farm", "ams3", SMALLEST)]
    assert (await core.site_spec("farm")).droplet.region == "ams3"
    assert await core.has_do_token()
    assert api.message(ADMIN_ID, token_msg).deleted
    assert outgoing_mentions(api, fake_do.token) == []
    # The DEBUG capture did see the update carrying the token (PTB logs every update), masked.
    assert re.search(rf"Processing update .*message_id={token_msg},.* text='\*\*\*'",
                     caplog.text)
    assert fake_do.token not in caplog.text
    assert {"setup", "peer", "droplet"} <= {c["command"] for c in api.commands()}


async def test_setup_again_rechecks_the_droplet_it_has(
    ready: Core, do_settings: Settings, fake_do: FakeDigitalOcean,  # noqa: F811
    droplet_host: DropletHost, api: FakeTelegramAPI,
) -> None:
    (do_id,) = fake_do.droplets
    async with cloud_init(fake_do, droplet_host), running_bot(do_settings, api, core=ready):
        api.inject_message(ADMIN_ID, "/setup")
        checklist = await sent(api, "Setup of farm")
        text = api.message(ADMIN_ID, checklist).content or ""
        assert "✅ VPN server (droplet)" in text and "⬜ router" in text
        assert labels(api, checklist) == ["↻ Redo: VPN server (droplet)", "↻ Redo: camera"]
        await sent(api, "Router of farm: where can camreach reach it")  # the next step
        press(api, checklist, "↻ Redo: VPN server")
        ask = await sent(api, "already has droplet camreach-farm")
        assert f"#{do_id}" in (api.message(ADMIN_ID, ask).content or "")
        press(api, ask, "Confirm")
        progress = await sent(api, "provision_droplet")
        await edited(api, progress, "Done", timeout=60)
    assert list(fake_do.droplets) == [do_id] and fake_do.count("POST", "/v2/droplets") == 1


async def test_wrong_token_is_rejected_deleted_and_asked_again(
    settings: Settings, tokenless_core: Core, fake_do: FakeDigitalOcean,  # noqa: F811
    api: FakeTelegramAPI, caplog: pytest.LogCaptureFixture,
) -> None:
    install_redactor(caplog.handler)
    caplog.set_level(logging.DEBUG)
    async with running_bot(settings, api, core=tokenless_core):
        api.inject_message(ADMIN_ID, "/setup farm")  # the site named: no site menu
        await sent(api, "DigitalOcean API token")
        wrong = api.inject_message(ADMIN_ID, WRONG_TOKEN)
        await api.wait_for("deleteMessage", lambda c: c.params["message_id"] == wrong)
        await sent(api, "rejected that token")
        garbage = api.inject_message(ADMIN_ID, "my token is in the other chat")
        await api.wait_for("deleteMessage", lambda c: c.params["message_id"] == garbage)
        await sent(api, "rejected that token")  # still asking
        api.inject_message(ADMIN_ID, "/cancel")
        await sent(api, texts.CANCELLED)
        # The conversation is over: ordinary text is no longer taken (or deleted) as a token.
        later = api.inject_message(ADMIN_ID, "hello")
        api.inject_message(ADMIN_ID, "/help")
        await sent(api, "camreach lets you reach")

    deleted = {c.params["message_id"] for c in api.calls("deleteMessage")}
    assert deleted == {wrong, garbage} and later not in deleted
    assert api.message(ADMIN_ID, wrong).deleted
    assert not await tokenless_core.has_do_token()
    assert not fake_do.droplets and fake_do.count("POST", "/v2/droplets") == 0
    assert outgoing_mentions(api, WRONG_TOKEN) == []
    assert WRONG_TOKEN not in caplog.text


async def test_cancel_mid_flow_changes_nothing(
    do_settings: Settings, do_core: Core, fake_do: FakeDigitalOcean,  # noqa: F811
    api: FakeTelegramAPI,
) -> None:
    async with running_bot(do_settings, api, core=do_core):
        # One site and a token in the environment: straight to the sizes.
        api.inject_message(ADMIN_ID, "/setup")
        menu = await sent(api, "Droplet size for farm")
        press(api, menu, "s-1vcpu-1gb")
        await edited(api, menu, "Region for s-1vcpu-1gb")
        press(api, menu, "lon1")
        await edited(api, menu, "s-1vcpu-1gb, lon1, $6/month")
        api.inject_message(ADMIN_ID, "/cancel")
        await sent(api, texts.CANCELLED)
        # A press on the menu left behind is answered, and does nothing.
        assert await answered(api, press(api, menu, "Confirm")) == texts.MENU_EXPIRED
        await api.wait_for("editMessageReplyMarkup",
                           lambda c: c.params["message_id"] == menu)

    assert not fake_do.droplets and fake_do.count("POST", "/v2/droplets") == 0
    spec = await do_core.site_spec("farm")
    assert (spec.droplet.size, spec.droplet.region) == (SMALLEST, "fra1")
    assert all(st.last_operation is None for st in await do_core.statuses())


async def test_cancel_button_and_an_older_menu(
    do_settings: Settings, do_core: Core, fake_do: FakeDigitalOcean,  # noqa: F811
    api: FakeTelegramAPI,
) -> None:
    async with running_bot(do_settings, api, core=do_core):
        api.inject_message(ADMIN_ID, "/setup")
        old = await sent(api, "Droplet size for farm")
        api.inject_message(ADMIN_ID, "/setup")  # starts over with a new menu
        new = await sent(api, "Droplet size for farm")
        assert await answered(api, press(api, old, SMALLEST)) == texts.MENU_OUT_OF_DATE
        press(api, new, "Cancel")
        await edited(api, new, texts.CANCELLED)
    assert fake_do.count("POST", "/v2/droplets") == 0


async def test_stranger_cannot_run_the_flows(settings: Settings, api: FakeTelegramAPI) -> None:
    async with running_bot(settings, api) as bot:
        await bot.core.apply_site(parse_site(site()), Actor.cli())
        for command in ("/setup", "/peer list", "/peer remove anna", "/droplet destroy farm"):
            api.inject_message(STRANGER_ID, command)
        await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == STRANGER_ID)
        pasted = api.inject_message(STRANGER_ID, WRONG_TOKEN)
        api.inject_message(ADMIN_ID, "/help")  # a reply to this means the above were handled
        await sent(api, "camreach lets you reach")
        stranger_saw = [m.content for m in api.messages_to(STRANGER_ID)]
        spec = await bot.core.site_spec("farm")
    assert len(stranger_saw) == 1 and "only obeys its owners" in (stranger_saw[0] or "")
    assert not api.calls("deleteMessage") and not api.message(STRANGER_ID, pasted).deleted
    assert spec.droplet.region == "fra1"
