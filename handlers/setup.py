"""/setup [SITE]: the DigitalOcean token if none is stored, then size, region, confirm, go."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

from telegram import InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot import texts
from bot.core import SizeInfo
from bot.errors import AuthRejected, CamreachError, NotFound
from handlers.context import CamreachContext
from handlers.menus import (
    Handlers,
    Menu,
    actor_of,
    cancel_button,
    confirmed,
    conversation,
    current_menu,
    expired_menu,
    network_step,
    open_menu,
    pressed,
    private_only,
    resolve_site,
)
from handlers.operations import start_with_progress

log = logging.getLogger(__name__)

EDITED = filters.UpdateType.EDITED

CHOOSING_SITE, ASKING_TOKEN, CHOOSING_SIZE, CHOOSING_REGION, CONFIRMING = range(5)

# DigitalOcean lists 100+ sizes; a WireGuard server needs the smallest, so offer the cheapest few.
MAX_SIZES = 6


# -- /setup -------------------------------------------------------------------------------------


@dataclass
class SetupMenu(Menu):
    PREFIX: ClassVar[str] = "su:"
    sites: list[str] = field(default_factory=list)
    site: str = ""
    sizes: list[SizeInfo] = field(default_factory=list)
    size: SizeInfo | None = None
    regions: list[str] = field(default_factory=list)
    region: str = ""
    existing: bool = False  # the site has a droplet: confirm re-checks it, creates nothing


async def start_setup(update: Update, context: CamreachContext) -> int:
    if context.args:
        site = await resolve_site(context, context.args[0], "/setup SITE")
        menu = open_menu(update, context, SetupMenu(site=site))
        return await _after_site(update, context, menu)
    names = await context.core.site_names()
    if not names:
        raise NotFound(texts.NO_SITES)
    menu = open_menu(update, context, SetupMenu(sites=names))
    if len(menu.sites) == 1:
        menu.site = menu.sites[0]
        return await _after_site(update, context, menu)
    rows = [[menu.button(name, "site", i)] for i, name in enumerate(menu.sites)]
    rows.append([menu.button(texts.BUTTON_CANCEL, "cancel")])
    await _send(update, context, texts.SETUP_PICK_SITE, InlineKeyboardMarkup(rows))
    return CHOOSING_SITE


async def on_site(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu, index = got
    menu.site = menu.sites[index]
    assert update.callback_query is not None
    await update.callback_query.edit_message_text(texts.setup_site_chosen(menu.site))
    return await _after_site(update, context, menu)


async def _after_site(update: Update, context: CamreachContext, menu: SetupMenu) -> int:
    if not await context.core.has_do_token():
        await _send(update, context, texts.ASK_DO_TOKEN)
        return ASKING_TOKEN
    return await _after_token(update, context, menu)


async def on_token(update: Update, context: CamreachContext) -> int:
    message = update.effective_message
    assert message is not None and update.effective_chat is not None
    token = (message.text or "").strip()
    # Delete first, whatever the token turns out to be: it must not stay in the chat history.
    try:
        await message.delete()
    except TelegramError:
        log.warning("could not delete the message with a DigitalOcean token in chat %s",
                    update.effective_chat.id)
        await _send(update, context, texts.TOKEN_NOT_DELETED)
    try:
        account = await context.core.set_do_token(token, actor_of(update))
    except AuthRejected:
        await _send(update, context, texts.TOKEN_REJECTED)
        return ASKING_TOKEN
    except CamreachError as exc:  # DigitalOcean unreachable, account locked, ...
        await _send(update, context, texts.token_failed(exc.user_message))
        return ASKING_TOKEN
    await _send(update, context, texts.token_accepted(account.email))
    menu = current_menu(update, context, SetupMenu)
    assert menu is not None
    return await _after_token(update, context, menu)


async def _after_token(update: Update, context: CamreachContext, menu: SetupMenu) -> int:
    droplet = await context.core.describe_droplet(menu.site)
    if droplet is not None and droplet.do_id is not None:
        menu.existing = True
        await _send(update, context, texts.setup_existing_text(menu.site, droplet),
                    menu.confirm_keyboard())
        return CONFIRMING
    on_sale = [s for s in await context.core.droplet_sizes() if s.available and s.regions]
    # The same order as DigitalOceanClient.smallest_size: the first button is the smallest.
    menu.sizes = sorted(on_sale, key=lambda s: (s.price_monthly, s.memory_mb, s.slug))[:MAX_SIZES]
    if not menu.sizes:
        raise NotFound(texts.NO_SIZES)
    await _send(update, context, texts.setup_sizes_text(menu.site, menu.sizes[0]),
                _sizes_keyboard(menu))
    return CHOOSING_SIZE


def _sizes_keyboard(menu: SetupMenu) -> InlineKeyboardMarkup:
    rows = [[menu.button(texts.size_button(s), "size", i)] for i, s in enumerate(menu.sizes)]
    rows.append([menu.button(texts.BUTTON_CANCEL, "cancel")])
    return InlineKeyboardMarkup(rows)


async def on_size(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu, index = got
    size = menu.sizes[index]
    query = update.callback_query
    assert query is not None
    regions = await context.core.droplet_regions(size.slug)
    if not regions:
        await query.edit_message_text(texts.no_region_for(size.slug),
                                      reply_markup=_sizes_keyboard(menu))
        return CHOOSING_SIZE
    menu.size, menu.regions = size, [r.slug for r in regions]
    rows = [[menu.button(texts.region_button(r), "region", i)] for i, r in enumerate(regions)]
    rows.append([menu.button(texts.BUTTON_CANCEL, "cancel")])
    await query.edit_message_text(texts.setup_regions_text(size.slug),
                                  reply_markup=InlineKeyboardMarkup(rows))
    return CHOOSING_REGION


async def on_region(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu, index = got
    assert menu.size is not None and update.callback_query is not None
    menu.region = menu.regions[index]
    await update.callback_query.edit_message_text(
        texts.setup_confirm_text(menu.site, menu.size.slug, menu.region, menu.size.price_monthly),
        reply_markup=menu.confirm_keyboard(),
    )
    return CONFIRMING


async def on_confirm(update: Update, context: CamreachContext) -> int | None:
    menu = await confirmed(update, context, SetupMenu)
    if menu is None:
        return None
    try:
        if not menu.existing:
            assert menu.size is not None
            await context.core.choose_droplet(menu.site, menu.region, menu.size.slug,
                                              actor_of(update))
        await start_with_progress(update, context, "provision_droplet", site=menu.site)
    except CamreachError as exc:  # e.g. another operation still runs on the site
        await _send(update, context, texts.error_text(exc.user_message))
    return ConversationHandler.END


async def _send(update: Update, context: CamreachContext, text: str,
                markup: InlineKeyboardMarkup | None = None) -> None:
    assert update.effective_chat is not None
    await context.bot.send_message(update.effective_chat.id, text, reply_markup=markup)


def build_setup_conversation() -> ConversationHandler[CamreachContext]:
    button = SetupMenu.pattern
    return conversation(
        "setup",
        entry_points=[CommandHandler("setup", private_only(network_step(start_setup)),
                                     block=False)],
        states={
            CHOOSING_SITE: [CallbackQueryHandler(network_step(on_site), pattern=button("site"),
                                                 block=False)],
            ASKING_TOKEN: [MessageHandler(filters.TEXT & ~filters.COMMAND & ~EDITED,
                                          network_step(on_token), block=False)],
            CHOOSING_SIZE: [CallbackQueryHandler(network_step(on_size), pattern=button("size"),
                                                 block=False)],
            CHOOSING_REGION: [CallbackQueryHandler(on_region, pattern=button("region"))],
            CONFIRMING: [CallbackQueryHandler(on_confirm, pattern=button("yes"))],
        },
        fallbacks=[CallbackQueryHandler(cancel_button(SetupMenu), pattern=button("cancel"))],
    )


def setup_handlers() -> Handlers:
    return [build_setup_conversation(),
            CallbackQueryHandler(expired_menu, pattern=f"^{SetupMenu.PREFIX}")]
