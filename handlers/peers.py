"""/peer add NAME [SITE], /peer list [SITE], /peer remove NAME [SITE] (remove asks first)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from telegram import Update
from telegram.constants import ChatAction
from telegram.ext import CallbackQueryHandler, CommandHandler, ConversationHandler

from bot import texts
from bot.errors import CamreachError
from handlers.context import CamreachContext
from handlers.menus import (
    Handlers,
    Menu,
    actor_of,
    cancel_button,
    close_menu,
    conversation,
    expired_menu,
    network_step,
    open_menu,
    pressed,
    refused_outside_private,
    resolve_site,
)

CONFIRMING_REMOVE = 0


@dataclass
class RemoveMenu(Menu):
    PREFIX: ClassVar[str] = "pr:"
    site: str = ""
    name: str = ""


async def peer_command(update: Update, context: CamreachContext) -> int:
    message = update.effective_message
    assert message is not None
    sub, rest = (context.args[0], context.args[1:]) if context.args else ("", [])
    if sub == "add" and 1 <= len(rest) <= 2:
        if await refused_outside_private(update, context):
            return ConversationHandler.END
        await _add(update, context, rest[0], rest[1] if len(rest) > 1 else None)
    elif sub == "list" and len(rest) <= 1:
        site = await resolve_site(context, rest[0] if rest else None, "/peer list SITE")
        listing = texts.peer_list_text(site, await context.core.list_peers(site))
        for part in texts.split_message(listing):  # a /24 holds 250+ peers: over one message
            await message.reply_text(part)
    elif sub == "remove" and 1 <= len(rest) <= 2:
        return await _ask_remove(update, context, rest[0], rest[1] if len(rest) > 1 else None)
    else:
        await message.reply_text(texts.PEER_USAGE)
    return ConversationHandler.END


async def _add(update: Update, context: CamreachContext, name: str, given: str | None) -> None:
    message = update.effective_message
    assert message is not None
    site = await resolve_site(context, given, f"/peer add {name} SITE")
    await message.reply_chat_action(ChatAction.UPLOAD_DOCUMENT)  # SSH to the droplet takes a bit
    peer = await context.core.add_peer(site, name, actor_of(update))
    # The file is what the WireGuard app imports; the config is never shown as chat text.
    await message.reply_document(peer.config.encode(), filename=f"{peer.name}.conf",
                                 caption=texts.peer_conf_caption(peer.name, site))
    await message.reply_photo(peer.qr_png, caption=texts.peer_qr_caption(peer.name))


async def _ask_remove(update: Update, context: CamreachContext, name: str,
                      given: str | None) -> int:
    message = update.effective_message
    assert message is not None
    site = await resolve_site(context, given, f"/peer remove {name} SITE")
    peer = next((p for p in await context.core.list_peers(site) if p.name == name), None)
    if peer is None:
        await message.reply_text(texts.peer_not_found(name, site))
        return ConversationHandler.END
    menu = open_menu(update, context, RemoveMenu(site=site, name=name))
    await message.reply_text(texts.peer_remove_confirm(site, peer),
                             reply_markup=menu.confirm_keyboard(texts.BUTTON_REMOVE))
    return CONFIRMING_REMOVE


async def on_remove(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, RemoveMenu)
    if got is None:
        return None
    menu, _ = got
    close_menu(update, context, RemoveMenu)
    query = update.callback_query
    assert query is not None
    try:
        await context.core.remove_peer(menu.site, menu.name, actor_of(update))
    except CamreachError as exc:
        await query.edit_message_text(texts.error_text(exc.user_message))
    else:
        await query.edit_message_text(texts.peer_removed(menu.name, menu.site))
    return ConversationHandler.END


def build_peer_conversation() -> ConversationHandler[CamreachContext]:
    return conversation(
        "peer",
        entry_points=[CommandHandler("peer", network_step(peer_command), block=False)],
        states={
            CONFIRMING_REMOVE: [CallbackQueryHandler(network_step(on_remove),
                                                     pattern=RemoveMenu.pattern("yes"),
                                                     block=False)],
        },
        fallbacks=[CallbackQueryHandler(cancel_button(RemoveMenu),
                                        pattern=RemoveMenu.pattern("cancel"))],
    )


def peer_handlers() -> Handlers:
    return [build_peer_conversation(),
            CallbackQueryHandler(expired_menu, pattern=f"^{RemoveMenu.PREFIX}")]
