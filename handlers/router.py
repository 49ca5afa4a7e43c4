"""/router connect|detect|install|push|modem [SITE]: the site's OpenWrt router.

A push shows the diff first and applies exactly what was shown (the plan's fingerprint goes
with the confirmation); the router rolls back by itself if camreach cannot reach it afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from telegram import Update
from telegram.ext import CallbackQueryHandler, CommandHandler, ConversationHandler

from bot import texts
from bot.actions import for_chat
from bot.errors import CamreachError
from handlers.context import CamreachContext
from handlers.menus import (
    Handlers,
    Menu,
    actor_of,
    cancel_button,
    confirmed,
    conversation,
    network_step,
    open_menu,
    resolve_site,
)
from handlers.operations import start_with_progress

CONFIRMING_PUSH = 0
VERBS = ("connect", "detect", "install", "push", "modem")


@dataclass
class PushMenu(Menu):
    PREFIX: ClassVar[str] = "rp:"
    site: str = ""
    fingerprint: str = ""


async def router_command(update: Update, context: CamreachContext) -> int:
    message = update.effective_message
    assert message is not None
    args = list(context.args or [])
    if not args or args[0] not in VERBS or len(args) > 2:
        await message.reply_text(texts.ROUTER_USAGE)
        return ConversationHandler.END
    verb, given = args[0], (args[1] if len(args) > 1 else None)
    site = await resolve_site(context, given, f"/router {verb} SITE")
    core = context.core
    if verb in ("connect", "detect", "modem"):
        # One message: "working" now, the answer (or what failed) edited in when it comes.
        progress = await message.reply_text(texts.WORKING)
        try:
            if verb == "connect":
                text = (await core.router_first_contact(site, actor_of(update))).message
            elif verb == "detect":
                text = (await core.router_detect(site, actor_of(update))).summary()
            else:
                text = (await core.modem_status(site)).summary()
        except CamreachError as exc:
            text = texts.error_text(exc.user_message)
        first, *rest = texts.split_message(for_chat(text))
        await progress.edit_text(first)
        for part in rest:
            await message.reply_text(part)
    elif verb == "install":
        await start_with_progress(update, context, "install_router_packages", site=site)
    else:
        return await _ask_push(update, context, site)
    return ConversationHandler.END


async def _ask_push(update: Update, context: CamreachContext, site: str) -> int:
    message = update.effective_message
    assert message is not None
    plan = await context.core.plan_router_push(site)
    if plan.no_changes:
        await message.reply_text(texts.ROUTER_NO_CHANGES)
        return ConversationHandler.END
    menu = open_menu(update, context, PushMenu(site=site, fingerprint=plan.fingerprint))
    parts = texts.split_message(texts.router_diff_text(site, list(plan.diff)))
    for part in parts[:-1]:
        await message.reply_text(part)
    await message.reply_text(parts[-1], reply_markup=menu.confirm_keyboard(texts.BUTTON_APPLY))
    return CONFIRMING_PUSH


async def on_confirm(update: Update, context: CamreachContext) -> int | None:
    menu = await confirmed(update, context, PushMenu)
    if menu is None:
        return None
    try:
        await start_with_progress(update, context, "push_router_config", site=menu.site,
                                  params={"expect": menu.fingerprint, "confirm_via": "tunnel"})
    except CamreachError as exc:  # e.g. another operation still runs on the site
        assert update.effective_chat is not None
        await context.bot.send_message(update.effective_chat.id,
                                       texts.error_text(exc.user_message))
    return ConversationHandler.END


def build_router_conversation() -> ConversationHandler[CamreachContext]:
    return conversation(
        "router",
        entry_points=[CommandHandler("router", network_step(router_command), block=False)],
        states={CONFIRMING_PUSH: [
            CallbackQueryHandler(on_confirm, pattern=PushMenu.pattern("yes"))]},
        fallbacks=[CallbackQueryHandler(cancel_button(PushMenu),
                                        pattern=PushMenu.pattern("cancel"))],
    )


def router_handlers() -> Handlers:
    return [build_router_conversation()]
