"""Runs the real camreach Application against the fake Bot API for a test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pydantic import SecretStr

from bot.app import App, serve
from bot.core import Core
from bot.settings import Settings
from tests.fakes.telegram_api import FakeTelegramAPI


@dataclass
class Running:
    api: FakeTelegramAPI
    core: Core
    settings: Settings
    task: asyncio.Task[None]
    stop: asyncio.Event

    async def shutdown(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


def bot_settings(settings: Settings, api: FakeTelegramAPI) -> Settings:
    return settings.model_copy(
        update={"telegram_bot_token": SecretStr(api.token), "telegram_api_base_url": api.base_url}
    )


@asynccontextmanager
async def running_bot(
    settings: Settings,
    api: FakeTelegramAPI,
    *,
    core: Core | None = None,
    customize: Callable[[App], None] | None = None,
) -> AsyncIterator[Running]:
    """Start ``serve`` in the background; stop it (cleanly) on exit."""
    s = bot_settings(settings, api)
    own_core = core is None
    c = core or await Core.open(s)
    stop = asyncio.Event()
    polls_before = api.get_updates_count
    task = asyncio.create_task(serve(s, c, stop, customize))
    running = Running(api, c, s, task, stop)
    try:
        while api.get_updates_count == polls_before:
            if task.done():
                await task  # surface a start-up failure
            await asyncio.sleep(0.01)
        yield running
    finally:
        if not task.done():
            await running.shutdown()
        if own_core:
            await c.close()
