"""The kit the conversations share: site resolution and button menus.

Callback data is ``<prefix><nonce>:<action>:<index>``: always far below Telegram's 64 bytes,
whatever the site, size or peer names are, because the choices stay in the menu object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import warnings
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import TypeAdapter
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ChatType
from telegram.error import BadRequest
from telegram.ext import BaseHandler, CommandHandler, ConversationHandler
from telegram.warnings import PTBUserWarning

from bot import texts
from bot.errors import CamreachError, NotFound
from bot.services.audit import Actor
from handlers import basic
from handlers.context import CamreachContext

log = logging.getLogger(__name__)

# A forgotten prompt must not swallow (and maybe delete) a message typed hours later.
CONVERSATION_TIMEOUT = 15 * 60
# A step that waits on the network answers within this, whatever the far end does.
NETWORK_TIMEOUT = 60.0

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
    KINDS: ClassVar[dict[str, type[Menu]]] = {}
    nonce: str = field(default_factory=lambda: secrets.token_hex(3))

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Menu.KINDS[cls.__name__] = cls  # so a saved flow comes back as its own class

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


def _key(update: Update, kind: type[Menu]) -> str:
    # Conversations are per chat and user; user_data is per user, so the chat goes in the key.
    assert update.effective_chat is not None
    return f"{kind.__name__}:{update.effective_chat.id}"


def encode_flows(user_data: dict[Any, Any]) -> dict[str, Any]:
    """A user's open menus as JSON (for the database); anything else in user_data is dropped."""
    out: dict[str, Any] = {}
    for key, menu in user_data.items():
        if isinstance(key, str) and isinstance(menu, Menu):
            kind = type(menu)
            out[key] = {"kind": kind.__name__,
                        "data": TypeAdapter(kind).dump_python(menu, mode="json")}
    return out


def decode_flows(doc: dict[str, Any]) -> dict[Any, Any]:
    menus: dict[Any, Any] = {}
    for key, entry in doc.items():
        kind = Menu.KINDS.get(entry.get("kind", ""))
        if kind is None:  # a flow of an older version: dropped, its buttons say "expired"
            continue
        try:
            menus[key] = TypeAdapter(kind).validate_python(entry["data"])
        except ValueError:
            log.warning("dropping a saved %s that no longer fits", kind.__name__)
    return menus


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


Step = Callable[[Update, CamreachContext], Coroutine[Any, Any, object]]
# In-process only: lets /cancel stop this process's own waiting step (nothing shared).
_waiting: dict[tuple[int, int], asyncio.Event] = {}


def _conv_key(update: Update) -> tuple[int, int]:
    chat, user = update.effective_chat, update.effective_user
    return (chat.id if chat else 0, user.id if user else 0)


async def refused_outside_private(update: Update, context: CamreachContext) -> bool:
    """Commands that send or take a secret (a phone's private key, an API token) work in a
    private chat only; in a group this answers with a button that opens one (True)."""
    chat = update.effective_chat
    if chat is None or chat.type == ChatType.PRIVATE:
        return False
    message = update.effective_message
    command = (message.text or "/start").split()[0].split("@")[0] if message else "/start"
    url = f"https://t.me/{context.bot.username}?start=private"
    await reply(update, context, texts.private_only(command), InlineKeyboardMarkup(
        [[InlineKeyboardButton(texts.BUTTON_OPEN_PRIVATE, url=url)]]))
    return True


def private_only(fn: Step) -> Step:
    """A conversation entry that only runs in a private chat (see above)."""

    async def step(update: Update, context: CamreachContext) -> object:
        if await refused_outside_private(update, context):
            return ConversationHandler.END
        return await fn(update, context)

    step.__name__ = getattr(fn, "__name__", "step")
    return step


def network_step(fn: Step, *, timeout: float = NETWORK_TIMEOUT) -> Step:
    """A conversation step that waits on the network (SSH, DigitalOcean): registered with
    ``block=False`` it runs beside the update loop, so other commands (``/status``, and
    ``/cancel`` for this very step) are answered meanwhile. It ends within ``timeout``."""

    async def step(update: Update, context: CamreachContext) -> object:
        key = _conv_key(update)
        cancelled = asyncio.Event()
        _waiting[key] = cancelled
        work = asyncio.ensure_future(fn(update, context))
        stop = asyncio.ensure_future(cancelled.wait())
        try:
            done, _ = await asyncio.wait({work, stop}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if _waiting.get(key) is cancelled:
                del _waiting[key]
        if work in done:
            return work.result()
        work.cancel()
        if cancelled.is_set():
            return ConversationHandler.END
        await reply(update, context, texts.step_timed_out(int(timeout)))
        return None

    step.__name__ = getattr(fn, "__name__", "step")
    step.__doc__ = fn.__doc__
    return step


async def cancel_waiting(update: Update, context: CamreachContext) -> None:
    """/cancel (or a Cancel button) while a step still waits on the network: stop it."""
    event = _waiting.get(_conv_key(update))
    if event is not None:
        event.set()
    if update.callback_query is not None:
        await update.callback_query.answer()
    await reply(update, context, texts.CANCELLED)


async def reply(update: Update, context: CamreachContext, text: str,
                markup: InlineKeyboardMarkup | None = None) -> None:
    assert update.effective_chat is not None
    await context.bot.send_message(update.effective_chat.id, text, reply_markup=markup)


async def report_error(update: Update, context: CamreachContext, exc: CamreachError) -> None:
    await reply(update, context, texts.error_text(exc.user_message))


def conversation(name: str, **kwargs: Any) -> ConversationHandler[CamreachContext]:
    """A ConversationHandler with camreach's defaults: /cancel always (also while a step
    waits on the network), re-entry, a timeout, and its state kept in the database."""
    kwargs["fallbacks"] = [*kwargs.get("fallbacks", []), CommandHandler("cancel", basic.cancel)]
    states = dict(kwargs.pop("states"))
    states[ConversationHandler.WAITING] = [CommandHandler("cancel", cancel_waiting)]
    with warnings.catch_warnings():
        # Buttons and typed text mix in one flow, so conversations are per chat and user (not
        # per message); PTB warns about exactly that choice.
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        return ConversationHandler(allow_reentry=True, conversation_timeout=CONVERSATION_TIMEOUT,
                                   name=name, persistent=True, states=states, **kwargs)
