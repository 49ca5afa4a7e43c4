"""/status: what camreach knows about each site."""

from __future__ import annotations

from telegram import Update

from bot import texts
from handlers.context import CamreachContext


async def status(update: Update, context: CamreachContext) -> None:
    assert update.effective_message is not None
    name = context.args[0] if context.args else None
    statuses = await context.core.statuses(name)
    for part in texts.split_message(texts.site_status_text(statuses)):
        await update.effective_message.reply_text(part)
