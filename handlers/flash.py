"""/flash: pick the router model, then get the TFTP recovery steps and the command to run."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import BaseHandler, CallbackQueryHandler, CommandHandler

from bot.flash import guide
from handlers.context import CamreachContext

PREFIX = "flash:"


async def ask_model(update: Update, context: CamreachContext) -> None:
    assert update.effective_message is not None
    rows = [[InlineKeyboardButton(label, callback_data=f"{PREFIX}{key}")]
            for key, label in guide.models_for_keyboard()]
    await update.effective_message.reply_text(
        "Which router are you flashing?", reply_markup=InlineKeyboardMarkup(rows)
    )


async def explain(update: Update, context: CamreachContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    await query.edit_message_text(guide.flash_instructions(query.data.removeprefix(PREFIX)))


def flash_handlers() -> list[BaseHandler[Update, CamreachContext, None]]:
    # Stateless: the button itself carries the model, so no conversation is needed.
    return [
        CommandHandler("flash", ask_model),
        CallbackQueryHandler(explain, pattern=f"^{PREFIX}"),
    ]
