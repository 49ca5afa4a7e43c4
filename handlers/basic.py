"""/start, /help and the global error handler."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ConversationHandler

from bot import texts
from bot.errors import CamreachError
from handlers.context import CamreachContext

log = logging.getLogger(__name__)


async def start(update: Update, context: CamreachContext) -> None:
    assert update.effective_message is not None
    await update.effective_message.reply_text(texts.help_text())


async def cancel(update: Update, context: CamreachContext) -> int:
    if update.effective_message is not None:
        await update.effective_message.reply_text("Cancelled. Nothing was changed.")
    return ConversationHandler.END


async def unknown_command(update: Update, context: CamreachContext) -> None:
    if update.effective_message is not None:
        await update.effective_message.reply_text(texts.UNKNOWN_COMMAND)


async def on_error(update: object, context: CamreachContext) -> None:
    """Tell the admin what failed in one short line; the traceback goes to the log only."""
    err = context.error
    if isinstance(err, CamreachError):
        log.warning("handler failed: %s", err.user_message)
        text = texts.error_text(err.user_message)
    else:
        log.error("unhandled error while handling an update", exc_info=err)
        text = texts.GENERIC_ERROR
    chat_ids: list[int]
    if isinstance(update, Update) and update.effective_chat is not None:
        chat_ids = [update.effective_chat.id]
    else:
        chat_ids = sorted(context.core.admin_ids())
    for chat_id in chat_ids:
        try:
            await context.bot.send_message(chat_id, text)
        except Exception:
            log.warning("could not report an error to chat %s", chat_id, exc_info=True)
