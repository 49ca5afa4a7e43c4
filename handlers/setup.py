"""/setup [SITE]: the DigitalOcean token if none is stored, then size, region, confirm, provision.

Also the small kit the /peer and /droplet conversations share: site resolution and button
menus whose callback data is ``<prefix><nonce>:<action>:<index>`` (always far below Telegram's
64 bytes, whatever the site, size or peer names are: the choices stay in the menu object).
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import (
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import texts
from bot.core import SizeInfo
from bot.errors import AuthRejected, CamreachError, NotFound
from bot.services.audit import Actor
from handlers import basic
from handlers.context import CamreachContext
from handlers.operations import start_with_progress

log = logging.getLogger(__name__)

CHOOSING_SITE, ASKING_TOKEN, CHOOSING_SIZE, CHOOSING_REGION, CONFIRMING = range(5)

# DigitalOcean lists 100+ sizes; a WireGuard server needs the smallest, so offer the cheapest few.
MAX_SIZES = 6
# A forgotten token prompt must not swallow (and delete) a message typed hours later.
CONVERSATION_TIMEOUT = 15 * 60

Handlers = list[BaseHandler[Update, CamreachContext, Any]]
CancelResult = Coroutine[Any, Any, int | None]


# -- shared by the /setup, /peer and /droplet conversations -----------------------------------


def actor_of(update: Update) -> Actor:
    user = update.effective_user
    assert user is not None
    return Actor(user.id, user.username)


async def resolve_site(context: CamreachContext, given: str | None, example: str) -> str:
    """The site a command means: the one named, or the only one there is."""
    names = await context.core.site_names()
    if given is not None:
        if given not in names:
            raise NotFound(texts.unknown_site(given, names))
        return given
    if not names:
        raise NotFound(texts.NO_SITES)
    if len(names) > 1:
        raise NotFound(texts.several_sites(names, example.replace("SITE", names[0])))
    return names[0]


@dataclass
class Menu:
    """One run of a flow: the choices so far. Every button carries the run's nonce, so a press
    on an older keyboard cannot pick from this run's lists."""

    PREFIX: ClassVar[str]
    nonce: str = field(default_factory=lambda: secrets.token_hex(3))

    def button(self, label: str, action: str, index: int = 0) -> InlineKeyboardButton:
        data = f"{self.PREFIX}{self.nonce}:{action}:{index}"
        return InlineKeyboardButton(label, callback_data=data)

    def confirm_keyboard(self, confirm: str = texts.BUTTON_CONFIRM) -> InlineKeyboardMarkup:
        return InlineKeyboardMarkup([[self.button(confirm, "yes"),
                                      self.button(texts.BUTTON_CANCEL, "cancel")]])

    @classmethod
    def pattern(cls, action: str) -> str:
        return rf"^{re.escape(cls.PREFIX)}[0-9a-f]+:{action}:\d+$"


M = TypeVar("M", bound=Menu)


def _key(update: Update, kind: type[Menu]) -> tuple[str, int]:
    # Conversations are per chat and user; user_data is per user, so the chat goes in the key.
    assert update.effective_chat is not None
    return (kind.__name__, update.effective_chat.id)


def _store(context: CamreachContext) -> dict[Any, Any]:
    assert context.user_data is not None
    return context.user_data


def open_menu(update: Update, context: CamreachContext, menu: M) -> M:
    _store(context)[_key(update, type(menu))] = menu
    return menu


def current_menu(update: Update, context: CamreachContext, kind: type[M]) -> M | None:
    menu = _store(context).get(_key(update, kind))
    return menu if isinstance(menu, kind) else None


def close_menu(update: Update, context: CamreachContext, kind: type[Menu]) -> None:
    _store(context).pop(_key(update, kind), None)


async def pressed(update: Update, context: CamreachContext, kind: type[M]) -> tuple[M, int] | None:
    """Answer a button press: this run's menu and the chosen index, or None for an old keyboard."""
    query = update.callback_query
    assert query is not None and query.data is not None
    _, nonce, _, index = query.data.split(":")
    menu = current_menu(update, context, kind)
    if menu is None or nonce != menu.nonce:
        await query.answer(texts.MENU_OUT_OF_DATE)
        return None
    await query.answer()
    return menu, int(index)


def cancel_button(kind: type[Menu]) -> Callable[[Update, CamreachContext], CancelResult]:
    async def cancel(update: Update, context: CamreachContext) -> int | None:
        if await pressed(update, context, kind) is None:
            return None
        close_menu(update, context, kind)
        assert update.callback_query is not None
        await update.callback_query.edit_message_text(texts.CANCELLED)
        return ConversationHandler.END

    return cancel


async def expired_menu(update: Update, context: CamreachContext) -> None:
    """A button of a conversation that has ended: say so instead of leaving a spinner."""
    query = update.callback_query
    assert query is not None
    await query.answer(texts.MENU_EXPIRED)
    with contextlib.suppress(BadRequest):  # already without keyboard
        await query.edit_message_reply_markup(None)


def conversation(**kwargs: Any) -> ConversationHandler[CamreachContext]:
    """A ConversationHandler with camreach's defaults: /cancel always, re-entry, a timeout."""
    kwargs["fallbacks"] = [*kwargs.get("fallbacks", []), CommandHandler("cancel", basic.cancel)]
    with warnings.catch_warnings():
        # Buttons and typed text mix in one flow, so conversations are per chat and user (not
        # per message); PTB warns about exactly that choice.
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return ConversationHandler(allow_reentry=True, conversation_timeout=CONVERSATION_TIMEOUT,
                                   **kwargs)


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
    try:
        droplet = await context.core.droplets.describe(menu.site)
    except NotFound:
        droplet = None
    if droplet is not None and droplet.do_id is not None:
        menu.existing = True
        await _send(update, context, texts.setup_existing_text(menu.site, droplet),
                    menu.confirm_keyboard())
        return CONFIRMING
    do = await context.core.digitalocean()
    on_sale = [s for s in await do.list_sizes() if s.available and s.regions]
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
    do = await context.core.digitalocean()
    regions = await do.available_regions_for(size.slug)
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
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu, _ = got
    close_menu(update, context, SetupMenu)
    assert update.callback_query is not None
    # Keep the summary, drop the buttons: a second press must not start a second run.
    await update.callback_query.edit_message_reply_markup(None)
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
        entry_points=[CommandHandler("setup", start_setup)],
        states={
            CHOOSING_SITE: [CallbackQueryHandler(on_site, pattern=button("site"))],
            ASKING_TOKEN: [MessageHandler(filters.TEXT & ~filters.COMMAND, on_token)],
            CHOOSING_SIZE: [CallbackQueryHandler(on_size, pattern=button("size"))],
            CHOOSING_REGION: [CallbackQueryHandler(on_region, pattern=button("region"))],
            CONFIRMING: [CallbackQueryHandler(on_confirm, pattern=button("yes"))],
        },
        fallbacks=[CallbackQueryHandler(cancel_button(SetupMenu), pattern=button("cancel"))],
    )


def setup_handlers() -> Handlers:
    return [build_setup_conversation(),
            CallbackQueryHandler(expired_menu, pattern=f"^{SetupMenu.PREFIX}")]
