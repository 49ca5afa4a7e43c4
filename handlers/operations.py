"""Operation progress shown in one Telegram message, and the Retry button."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot import texts
from bot.actions import for_chat
from bot.errors import CamreachError
from bot.operations import CONFIRM_AGAIN, OperationView
from bot.services.audit import Actor
from handlers.context import CamreachContext

log = logging.getLogger(__name__)

RETRY_PREFIX = "op:retry:"
# A destructive operation's Retry asks the same confirmation again (handlers.droplet).
RETRY_CONFIRM_PREFIX = "op:retry-confirm:"


class MessageProgress:
    """Edits one message in place; intermediate edits are coalesced to ``min_interval``."""

    def __init__(self, bot: Bot, chat_id: int, message_id: int, min_interval: float = 1.0):
        self._bot = bot
        self._chat_id = chat_id
        self._message_id = message_id
        self._min_interval = min_interval
        self._last_sent = 0.0
        self._last_text = ""
        self._pending: OperationView | None = None
        self._flush: asyncio.Task[None] | None = None

    async def update(self, view: OperationView) -> None:
        wait = self._min_interval - (time.monotonic() - self._last_sent)
        if view.done or wait <= 0:
            if self._flush is not None:
                self._flush.cancel()
                self._flush = None
            await self._send(view)
            return
        self._pending = view
        if self._flush is None:
            self._flush = asyncio.create_task(self._flush_later(wait))

    async def _flush_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._flush = None
        if self._pending is not None:
            await self._send(self._pending)

    async def _send(self, view: OperationView) -> None:
        self._pending = None
        text = for_chat(texts.operation_text(view))
        if text == self._last_text:
            return
        self._last_sent = time.monotonic()
        self._last_text = text
        # Interrupted (the bot stopped, or its process died): the Retry button goes with it.
        markup = retry_keyboard(view) if view.retryable else None
        try:
            await self._bot.edit_message_text(text, chat_id=self._chat_id,
                                              message_id=self._message_id,
                                              reply_markup=markup)
        except BadRequest as exc:
            if "not modified" not in str(exc).lower():
                raise


def retry_keyboard(view: OperationView) -> InlineKeyboardMarkup:
    prefix = RETRY_CONFIRM_PREFIX if view.kind in CONFIRM_AGAIN else RETRY_PREFIX
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton("Retry", callback_data=f"{prefix}{view.id}")]]
    )


async def start_with_progress(
    update: Update,
    context: CamreachContext,
    kind: str,
    *,
    site: str | None,
    params: dict[str, object] | None = None,
    retry_of: int | None = None,
) -> OperationView:
    """Post the progress message, then start ``kind`` with that message as its sink."""
    assert update.effective_chat is not None and update.effective_user is not None
    msg = await context.bot.send_message(update.effective_chat.id, f"⏳ {kind} — starting…")
    sink = MessageProgress(context.bot, msg.chat_id, msg.message_id)
    user = update.effective_user
    try:
        return await context.core.start_operation(
            kind, site, Actor(user.id, user.username), sink, params=dict(params or {}),
            chat_id=msg.chat_id, message_id=msg.message_id, retry_of=retry_of,
        )
    except Exception:
        await msg.delete()
        raise


async def on_retry(update: Update, context: CamreachContext) -> None:
    """Retry exactly the operation the button was made for, once, while it is interrupted."""
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_user is not None
    assert update.effective_chat is not None
    op_id = int(query.data.removeprefix(RETRY_PREFIX))
    user = update.effective_user
    msg = await context.bot.send_message(update.effective_chat.id, f"⏳ retry of #{op_id}…")
    sink = MessageProgress(context.bot, msg.chat_id, msg.message_id)
    try:
        await context.core.retry_operation(op_id, Actor(user.id, user.username), sink,
                                           chat_id=msg.chat_id, message_id=msg.message_id)
    except CamreachError as exc:
        await msg.delete()
        await query.answer(exc.user_message, show_alert=True)
    else:
        await query.answer()
    with contextlib.suppress(BadRequest):  # already without keyboard
        await query.edit_message_reply_markup(None)


async def announce_interrupted(
    bot: Bot, admins: frozenset[int], views: list[OperationView]
) -> None:
    for view in views:
        for admin in sorted(admins):
            try:
                await bot.send_message(admin, for_chat(texts.interrupted_text(view)),
                                       reply_markup=retry_keyboard(view))
            except Exception:
                log.warning("could not tell admin %s about operation #%s", admin, view.id,
                            exc_info=True)
