"""/flash: pick the router model, then get the TFTP recovery steps and the command to run."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, ConversationHandler

from bot.flash import guide
from handlers import basic
from handlers.context import CamreachContext

CHOOSING_MODEL = 0
PREFIX = "flash:"


async def ask_model(update: Update, context: CamreachContext) -> int:
    assert update.effective_message is not None
    rows = [[InlineKeyboardButton(label, callback_data=f"{PREFIX}{key}")]
            for key, label in guide.models_for_keyboard()]
    await update.effective_message.reply_text(
        "Which router are you flashing?", reply_markup=InlineKeyboardMarkup(rows)
    )
    return CHOOSING_MODEL


async def explain(update: Update, context: CamreachContext) -> int:
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    await query.edit_message_text(guide.flash_instructions(query.data.removeprefix(PREFIX)))
    return ConversationHandler.END


def build_flash_conversation() -> ConversationHandler[CamreachContext]:
    return ConversationHandler(
        entry_points=[CommandHandler("flash", ask_model)],
        states={CHOOSING_MODEL: [CallbackQueryHandler(explain, pattern=f"^{PREFIX}")]},
        fallbacks=[CommandHandler("cancel", basic.cancel)],
        per_message=False,
    )
