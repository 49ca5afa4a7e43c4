"""How updates are run: concurrently, each conversation in order, its state saved after every
update so a restart continues it.

- :class:`OrderedUpdateProcessor`: updates run concurrently, but those of one chat and user
  (one conversation) one after another, in the order Telegram sent them.
- :class:`DatabasePersistence`: python-telegram-bot's persistence on the core's conversation
  store: conversation states and the flows' answers (menus, as JSON), never a secret.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from telegram import Update
from telegram.ext import BasePersistence, BaseUpdateProcessor, PersistenceInput
from telegram.ext._utils.types import CDCData, ConversationDict, ConversationKey

from handlers.menus import decode_flows, encode_flows

if TYPE_CHECKING:
    from bot.core import Core

log = logging.getLogger(__name__)

MAX_CONCURRENT_UPDATES = 64


def conversation_key(update: object) -> tuple[int, int] | None:
    if not isinstance(update, Update):
        return None
    chat, user = update.effective_chat, update.effective_user
    if chat is None and user is None:
        return None
    return (chat.id if chat else 0, user.id if user else 0)


class OrderedUpdateProcessor(BaseUpdateProcessor):
    """Concurrent across conversations, sequential within one.

    Tasks reach ``do_process_update`` in the order the updates arrived, and asyncio locks are
    fair (FIFO), so one conversation's updates keep their order. ``after_update`` (the
    persistence flush) runs before the next update of that conversation starts.
    """

    def __init__(self, max_concurrent_updates: int = MAX_CONCURRENT_UPDATES) -> None:
        super().__init__(max_concurrent_updates)
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}
        self._waiting: dict[tuple[int, int], int] = {}
        self.after_update: Callable[[], Awaitable[None]] | None = None

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        key = conversation_key(update)
        if key is None:
            await coroutine
            return
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            async with lock:
                await coroutine
                if self.after_update is not None:
                    try:
                        await self.after_update()
                    except Exception:
                        log.warning("could not save the conversation state", exc_info=True)
        finally:
            self._waiting[key] -= 1
            if not self._waiting[key]:  # nobody queued behind: the map stays small
                del self._waiting[key]
                self._locks.pop(key, None)

    async def initialize(self) -> None:
        return None

    async def shutdown(self) -> None:
        return None


class DatabasePersistence(BasePersistence[dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """Conversations and flow answers in the core's database; nothing else is persisted."""

    def __init__(self, core: Core, update_interval: float = 1.0) -> None:
        super().__init__(
            store_data=PersistenceInput(bot_data=False, chat_data=False, user_data=True,
                                        callback_data=False),
            update_interval=update_interval,
        )
        self._core = core

    async def get_conversations(self, name: str) -> ConversationDict:
        return dict(await self._core.conversation_states(name))

    async def update_conversation(self, name: str, key: ConversationKey,
                                  new_state: object | None) -> None:
        await self._core.save_conversation_state(name, tuple(key), new_state)

    async def get_user_data(self) -> dict[int, dict[Any, Any]]:
        return {uid: decode_flows(doc) for uid, doc in (await self._core.flow_data()).items()}

    async def update_user_data(self, user_id: int, data: dict[Any, Any]) -> None:
        await self._core.save_flow_data(user_id, encode_flows(data))

    async def drop_user_data(self, user_id: int) -> None:
        await self._core.save_flow_data(user_id, None)

    async def refresh_user_data(self, user_id: int, user_data: dict[Any, Any]) -> None:
        return None

    # Not persisted: chat data, bot data (the core object lives there) and callback data.
    async def get_chat_data(self) -> dict[int, dict[Any, Any]]:
        return {}

    async def update_chat_data(self, chat_id: int, data: dict[Any, Any]) -> None:
        return None

    async def drop_chat_data(self, chat_id: int) -> None:
        return None

    async def refresh_chat_data(self, chat_id: int, chat_data: dict[Any, Any]) -> None:
        return None

    async def get_bot_data(self) -> dict[Any, Any]:
        return {}

    async def update_bot_data(self, data: dict[Any, Any]) -> None:
        return None

    async def refresh_bot_data(self, bot_data: dict[Any, Any]) -> None:
        return None

    async def get_callback_data(self) -> CDCData | None:
        return None

    async def update_callback_data(self, data: CDCData) -> None:
        return None

    async def flush(self) -> None:
        return None
