"""The kit the conversations share: site resolution and button menus.

Callback data is ``<prefix><nonce>:<action>:<index>``: always far below Telegram's 64 bytes,
whatever the site, size or peer names are, because the choices stay in the menu object.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest
from telegram.ext import BaseHandler, CommandHandler, ConversationHandler
from telegram.warnings import PTBUserWarning

from bot import texts
from bot.errors import NotFound
from bot.services.audit import Actor
from handlers import basic
from handlers.context import CamreachContext

# A forgotten prompt must not swallow (and maybe delete) a message typed hours later.
CONVERSATION_TIMEOUT = 15 * 60

Handlers = list[BaseHandler[Update, CamreachContext, Any]]
CancelResult = Coroutine[Any, Any, int | None]


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


async def confirmed(update: Update, context: CamreachContext, kind: type[M]) -> M | None:
    """A confirm press: this run's menu, now closed and with its buttons gone (so a second
    press cannot start a second run); None for an old keyboard."""
    got = await pressed(update, context, kind)
    if got is None:
        return None
    close_menu(update, context, kind)
    assert update.callback_query is not None
    with contextlib.suppress(BadRequest):  # already without keyboard
        await update.callback_query.edit_message_reply_markup(None)
    return got[0]


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


