"""Secrets stay out of group chats, and edited messages are neither commands nor answers."""

from __future__ import annotations

import asyncio

from bot import texts
from bot.core import Core
from bot.settings import Settings
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.droplet_host import DropletHost
from tests.test_peers import ready  # noqa: F401
from tests.test_provisioning import do_core, do_settings, fake_do  # noqa: F401
from tests.test_tg_setup import api, edited, press, sent  # noqa: F401

GROUP = -100777


async def test_secret_commands_in_a_group_point_to_a_private_chat(
    ready: Core, do_settings: Settings, fake_do: FakeDigitalOcean,  # noqa: F811
    droplet_host: DropletHost, api: FakeTelegramAPI,  # noqa: F811
) -> None:
    peers_before = len(await ready.list_peers("farm"))
    async with running_bot(do_settings, api, core=ready):
        for command in ("/peer add anna", "/setup"):
            api.inject_message(ADMIN_ID, command, chat_id=GROUP, chat_type="supergroup")
            call = await api.wait_for("sendMessage", lambda c, cmd=command: c.params[
                "chat_id"] == GROUP and cmd.split()[0] in c.params["text"])
            assert "private chat" in call.params["text"]
            (row,) = call.params["reply_markup"]["inline_keyboard"]
            assert row[0]["url"].startswith("https://t.me/")
        # /peer list is no secret: it still answers in the group.
        api.inject_message(ADMIN_ID, "/peer list", chat_id=GROUP, chat_type="supergroup")
        await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == GROUP
                           and "farm" in c.params["text"] and "private" not in c.params["text"],
                           timeout=20)
    # Nothing with a key went to the group, and no peer was made.
    to_group = [c for c in api.calls() if c.params.get("chat_id") == GROUP]
    assert not [c for c in to_group if c.method in ("sendDocument", "sendPhoto")]
    assert len(await ready.list_peers("farm")) == peers_before


async def test_edited_messages_run_nothing(
    ready: Core, do_settings: Settings, fake_do: FakeDigitalOcean,  # noqa: F811
    droplet_host: DropletHost, api: FakeTelegramAPI,  # noqa: F811
) -> None:
    (do_id,) = fake_do.droplets
    async with running_bot(do_settings, api, core=ready):
        # An old message edited into a command runs nothing.
        old = api.inject_message(ADMIN_ID, "hello")
        api.inject_edit(ADMIN_ID, old, "/droplet destroy farm")
        api.inject_edit(ADMIN_ID, old, "/help")
        await asyncio.sleep(1.5)
        assert not [c for c in api.calls("sendMessage")], "an edit was taken as a command"
        # In the destroy flow, an edit of an earlier line into the site name is no answer.
        api.inject_message(ADMIN_ID, "/droplet destroy farm")
        ask = await sent(api, "This deletes farm's droplet")
        press(api, ask, "Delete it")
        await edited(api, ask, "type the site name")
        api.inject_edit(ADMIN_ID, old, "farm")
        await asyncio.sleep(1.5)
        assert list(fake_do.droplets) == [do_id]
        api.inject_message(ADMIN_ID, "/cancel")
        await sent(api, texts.CANCELLED)
    destroys = [c for c in api.calls("sendMessage") if "This deletes" in c.params["text"]]
    assert len(destroys) == 1  # the edited "/droplet destroy farm" did not ask
    assert fake_do.count("DELETE") == 0
