"""/droplet [SITE] shows the site's droplet; /droplet destroy [SITE] deletes it.

Deleting asks twice: a button, then the site name typed out, so neither a stray tap nor a
reply sent to the wrong chat can delete a running server.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import ClassVar

from telegram import Update
from telegram.error import BadRequest
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot import texts
from bot.core import DropletView
from bot.errors import CamreachError, NotFound
from handlers.context import CamreachContext
from handlers.menus import (
    Handlers,
    Menu,
    cancel_button,
    close_menu,
    conversation,
    current_menu,
    expired_menu,
    network_step,
    open_menu,
    pressed,
    resolve_site,
)
from handlers.operations import RETRY_CONFIRM_PREFIX, start_with_progress

CONFIRMING_DESTROY, TYPING_SITE_NAME = range(2)


@dataclass
class DestroyMenu(Menu):
    PREFIX: ClassVar[str] = "dd:"
    site: str = ""
    retry_of: int | None = None  # the interrupted destroy this confirmation retries


async def droplet_command(update: Update, context: CamreachContext) -> int:
    message = update.effective_message
    assert message is not None
    args = list(context.args or [])
    if args[:1] == ["destroy"] and len(args) <= 2:
        return await _ask_destroy(update, context, args[1] if len(args) > 1 else None)
    if args[:1] == ["status"]:
        args = args[1:]
    if len(args) > 1:
        await message.reply_text(texts.DROPLET_USAGE)
        return ConversationHandler.END
    site = await resolve_site(context, args[0] if args else None, "/droplet SITE")
    await message.reply_text(texts.droplet_text(site, await _droplet(context, site)))
    return ConversationHandler.END


async def _droplet(context: CamreachContext, site: str) -> DropletView:
    droplet = await context.core.describe_droplet(site)
    if droplet is None:
        raise NotFound(texts.no_droplet(site))
    return droplet


async def _ask_destroy(update: Update, context: CamreachContext, given: str | None,
                       retry_of: int | None = None) -> int:
    message = update.effective_message
    assert message is not None
    site = await resolve_site(context, given, "/droplet destroy SITE")
    droplet = await _droplet(context, site)
    price = droplet.price_monthly
    if price is None:  # recorded from DigitalOcean's answer; ask again if it is missing
        try:
            price = await context.core.monthly_price(droplet.size)
        except CamreachError:
            price = None  # the cost is a courtesy; the droplet can be deleted without it
    menu = open_menu(update, context, DestroyMenu(site=site, retry_of=retry_of))
    await message.reply_text(texts.destroy_confirm_text(site, droplet, price),
                             reply_markup=menu.confirm_keyboard(texts.BUTTON_DELETE))
    return CONFIRMING_DESTROY


async def on_confirm(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, DestroyMenu)
    if got is None:
        return None
    menu, _ = got
    assert update.callback_query is not None
    await update.callback_query.edit_message_text(texts.destroy_type_name(menu.site))
    return TYPING_SITE_NAME


async def on_typed_name(update: Update, context: CamreachContext) -> int:
    message = update.effective_message
    menu = current_menu(update, context, DestroyMenu)
    assert message is not None and menu is not None
    close_menu(update, context, DestroyMenu)
    if message.text != menu.site:
        await message.reply_text(texts.DESTROY_NOT_CONFIRMED)
        return ConversationHandler.END
    try:
        await start_with_progress(update, context, "destroy_droplet", site=menu.site,
                                  retry_of=menu.retry_of)
    except CamreachError as exc:  # e.g. another operation still runs on the site
        await message.reply_text(texts.error_text(exc.user_message))
    return ConversationHandler.END


async def on_retry_destroy(update: Update, context: CamreachContext) -> int:
    """Retry of an interrupted destroy: the same two confirmations as the first time."""
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    view = await context.core.operation(int(query.data.removeprefix(RETRY_CONFIRM_PREFIX)))
    with contextlib.suppress(BadRequest):  # already without keyboard
        await query.edit_message_reply_markup(None)
    if not view.retryable or view.site is None:
        raise NotFound(view.why_not_retryable)
    return await _ask_destroy(update, context, view.site, retry_of=view.id)


def build_droplet_conversation() -> ConversationHandler[CamreachContext]:
    return conversation(
        "droplet",
        entry_points=[
            CommandHandler("droplet", network_step(droplet_command), block=False),
            CallbackQueryHandler(network_step(on_retry_destroy),
                                 pattern=f"^{RETRY_CONFIRM_PREFIX}", block=False),
        ],
        states={
            CONFIRMING_DESTROY: [
                CallbackQueryHandler(on_confirm, pattern=DestroyMenu.pattern("yes"))],
            TYPING_SITE_NAME: [MessageHandler(
                filters.TEXT & ~filters.COMMAND & ~filters.UpdateType.EDITED, on_typed_name)],
        },
        fallbacks=[CallbackQueryHandler(cancel_button(DestroyMenu),
                                        pattern=DestroyMenu.pattern("cancel"))],
    )


def droplet_handlers() -> Handlers:
    return [build_droplet_conversation(),
            CallbackQueryHandler(expired_menu, pattern=f"^{DestroyMenu.PREFIX}")]
