"""One error, spelled for its surface: a terminal command in the CLI, a chat command in Telegram."""

from __future__ import annotations

import asyncio

from bot.actions import action, for_chat, for_terminal
from bot.core import Core
from bot.services.audit import Actor
from bot.settings import Settings
from bot.site import parse_site
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.test_crash_recovery import exe


def test_rendering_per_surface() -> None:
    text = f"Run {action('router detect', 'farmhouse')} first, or {action('setup', 'farmhouse')}."
    assert for_terminal(text) == ("Run `camreach router detect farmhouse` first, or "
                                  "`camreach site apply FILE`.")
    assert for_chat(text) == "Run /router detect farmhouse first, or /setup farmhouse."
    assert for_chat(f"{action('site list')} shows them") == "/status shows them"
    assert for_terminal("no marks here") == for_chat("no marks here") == "no marks here"


async def test_the_same_error_on_both_surfaces(core: Core, settings: Settings,
                                               cli_env: dict[str, str]) -> None:
    await core.apply_site(parse_site({"name": "farmhouse", "router": {"password_env": "P"}}),
                          Actor.cli())
    proc = await asyncio.create_subprocess_exec(
        exe(), "router", "push", "farmhouse", "--dry-run", env=cli_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    terminal = err.decode()
    assert "`camreach site apply FILE`" in terminal and "/setup" not in terminal
    assert "⟦" not in terminal

    async with FakeTelegramAPI() as api, running_bot(settings, api, core=core):
        api.inject_message(ADMIN_ID, "/router push farmhouse")
        call = await api.wait_for("sendMessage", lambda c: "no droplet yet" in c.params["text"])
        chat = call.params["text"]
    assert "/setup farmhouse" in chat and "camreach " not in chat and "⟦" not in chat
