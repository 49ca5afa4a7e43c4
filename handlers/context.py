"""A typed callback context: handlers reach the core as ``context.core``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telegram.ext import Application, CallbackContext, ExtBot

if TYPE_CHECKING:
    from bot.core import Core

_CORE_KEY = "camreach.core"

BotData = dict[Any, Any]


class CamreachContext(CallbackContext[ExtBot[None], BotData, BotData, BotData]):
    @property
    def core(self) -> Core:
        core: Core = self.application.bot_data[_CORE_KEY]
        return core


def attach_core(app: Application[Any, Any, Any, Any, Any, Any], core: Core) -> None:
    app.bot_data[_CORE_KEY] = core
