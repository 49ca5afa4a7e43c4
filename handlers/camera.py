"""/snapshot [SITE] [CAMERA]: a fresh picture, as a photo (several: an album), with a button
that takes another; the picture is sent exactly as the camera sent it. /camera list, /camera
rtsp NAME (the stream URLs for a video app), /camera password NAME (typed once, deleted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import ClassVar

from telegram import Bot, InlineKeyboardMarkup, InputMediaPhoto, Update
from telegram.constants import ChatAction
from telegram.error import TelegramError
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ConversationHandler,
    MessageHandler,
    filters,
)

from bot import texts
from bot.core import Picture
from bot.errors import AuthRejected, NotFound
from handlers.context import CamreachContext
from handlers.menus import (
    Handlers,
    Menu,
    actor_of,
    cancel_button,
    close_menu,
    confirmed,
    conversation,
    current_menu,
    network_step,
    open_menu,
    pressed,
    refused_outside_private,
    resolve_site,
)

log = logging.getLogger(__name__)

PHOTO_LIMIT = 10 * 1024 * 1024  # Telegram's limit for a photo; bigger goes as a document
ALBUM_LIMIT = 10  # photos in one media group


@dataclass
class SnapshotMenu(Menu):
    PREFIX: ClassVar[str] = "sn:"
    site: str = ""
    camera: str | None = None


async def snapshot_command(update: Update, context: CamreachContext) -> None:
    args = list(context.args or [])
    if len(args) > 2:
        assert update.effective_message is not None
        await update.effective_message.reply_text(texts.SNAPSHOT_USAGE)
        return
    given_site = args[0] if args else None
    camera = args[1] if len(args) > 1 else None
    site = await resolve_site(context, given_site, "/snapshot SITE")
    await take_snapshot(update, context, site, camera)


async def on_another(update: Update, context: CamreachContext) -> None:
    got = await pressed(update, context, SnapshotMenu)
    if got is not None:
        await take_snapshot(update, context, got[0].site, got[0].camera)


async def take_snapshot(update: Update, context: CamreachContext, site: str,
                camera: str | None) -> None:
    chat = update.effective_chat
    assert chat is not None
    typing = asyncio.create_task(_keep_showing(context, chat.id))
    try:
        pictures = await context.core.snapshots(site, camera)
    finally:
        typing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await typing
    menu = open_menu(update, context, SnapshotMenu(site=site, camera=camera))
    again = InlineKeyboardMarkup([[menu.button(texts.BUTTON_ANOTHER, "again")]])
    await _send(context, chat.id, pictures, again)


async def _keep_showing(context: CamreachContext, chat_id: int) -> None:
    """The "sending photo…" status lasts 5 s; keep it up while the camera is asked."""
    while True:
        with contextlib.suppress(Exception):
            await context.bot.send_chat_action(chat_id, ChatAction.UPLOAD_PHOTO)
        await asyncio.sleep(4)


async def _send(context: CamreachContext, chat_id: int, pictures: list[Picture],
                again: InlineKeyboardMarkup) -> None:
    photos = [p for p in pictures if len(p.data) <= PHOTO_LIMIT]
    large = [p for p in pictures if len(p.data) > PHOTO_LIMIT]
    for p in large:
        await context.bot.send_document(chat_id, p.data, filename=f"{p.camera}.jpg",
                                        caption=p.caption,
                                        reply_markup=again if len(pictures) == 1 else None)
    if len(photos) == 1:
        await context.bot.send_photo(chat_id, photos[0].data, caption=photos[0].caption,
                                     reply_markup=again)
        return
    for start in range(0, len(photos), ALBUM_LIMIT):
        group = photos[start:start + ALBUM_LIMIT]
        if len(group) == 1:
            await context.bot.send_photo(chat_id, group[0].data, caption=group[0].caption)
        else:
            await context.bot.send_media_group(
                chat_id, [InputMediaPhoto(p.data, caption=p.caption) for p in group])
    if len(pictures) > 1:
        await context.bot.send_message(chat_id, texts.snapshot_album_done(len(pictures)),
                                       reply_markup=again)


# -- /camera list | rtsp NAME | password NAME [SITE] ---------------------------------------

ASKING_PASSWORD, PICKING_DEVICE, ASKING_USER, ASKING_NEW_PASSWORD, CONFIRMING_REMOVE = range(5)
MAX_DEVICES = 12


@dataclass
class RemoveCameraMenu(Menu):
    PREFIX: ClassVar[str] = "cr:"
    site: str = ""
    camera: str = ""


@dataclass
class AddMenu(Menu):
    """/camera add: the addresses found, then the one picked; the password never goes here."""

    PREFIX: ClassVar[str] = "ca:"
    site: str = ""
    found: list[str] = field(default_factory=list)  # "ip|label"
    host: str = ""
    name: str = ""
    user: str = "admin"


@dataclass
class PasswordMenu(Menu):
    PREFIX: ClassVar[str] = "cp:"
    site: str = ""
    camera: str = ""


async def camera_command(update: Update, context: CamreachContext) -> int:
    message = update.effective_message
    assert message is not None
    args = list(context.args or [])
    verb, rest = (args[0], args[1:]) if args else ("list", [])
    if verb == "list" and len(rest) <= 1:
        site = await resolve_site(context, rest[0] if rest else None, "/camera list SITE")
        await message.reply_text(texts.camera_list_text(site, await context.core.camera_views(
            site)))
    elif verb == "rtsp" and 1 <= len(rest) <= 2:
        site = await resolve_site(context, rest[1] if len(rest) > 1 else None,
                                  f"/camera rtsp {rest[0]} SITE")
        view = next((v for v in await context.core.camera_views(site) if v.name == rest[0]),
                    None)
        if view is None:
            raise NotFound(f"{site} has no camera named {rest[0]!r}.")
        await message.reply_text(texts.rtsp_text(site, view))
    elif verb == "daily" and 2 <= len(rest) <= 3:
        site = await resolve_site(context, rest[2] if len(rest) > 2 else None,
                                  f"/camera daily {rest[0]} {rest[1]} SITE")
        at = None if rest[1].lower() == "off" else rest[1]
        await context.core.set_daily_snapshot(site, rest[0], at, actor_of(update))
        await message.reply_text(texts.daily_set(site, rest[0], at))
    elif verb == "remove" and 1 <= len(rest) <= 2:
        site = await resolve_site(context, rest[1] if len(rest) > 1 else None,
                                  f"/camera remove {rest[0]} SITE")
        if rest[0] not in {v.name for v in await context.core.camera_views(site)}:
            raise NotFound(f"{site} has no camera named {rest[0]!r}.")
        menu = open_menu(update, context, RemoveCameraMenu(site=site, camera=rest[0]))
        await message.reply_text(texts.camera_remove_confirm(site, rest[0]),
                                 reply_markup=menu.confirm_keyboard(texts.BUTTON_REMOVE))
        return CONFIRMING_REMOVE
    elif verb == "add" and len(rest) <= 1:
        if await refused_outside_private(update, context):
            return ConversationHandler.END
        return await _start_add(update, context,
                                await resolve_site(context, rest[0] if rest else None,
                                                   "/camera add SITE"))
    elif verb == "password" and 1 <= len(rest) <= 2:
        if await refused_outside_private(update, context):
            return ConversationHandler.END
        site = await resolve_site(context, rest[1] if len(rest) > 1 else None,
                                  f"/camera password {rest[0]} SITE")
        if rest[0] not in {v.name for v in await context.core.camera_views(site)}:
            raise NotFound(f"{site} has no camera named {rest[0]!r}.")
        open_menu(update, context, PasswordMenu(site=site, camera=rest[0]))
        await message.reply_text(texts.ask_camera_password(rest[0]))
        return ASKING_PASSWORD
    else:
        await message.reply_text(texts.CAMERA_USAGE)
    return ConversationHandler.END


async def on_password(update: Update, context: CamreachContext) -> int:
    message = update.effective_message
    menu = current_menu(update, context, PasswordMenu)
    assert message is not None and menu is not None
    password = message.text or ""
    # Delete first, whatever it is: a password must not stay in the chat history.
    try:
        await message.delete()
    except TelegramError:
        await message.reply_text(texts.PASSWORD_NOT_DELETED)
    close_menu(update, context, PasswordMenu)
    if not password.strip():
        await context.bot.send_message(message.chat_id, texts.CANCELLED)
        return ConversationHandler.END
    await context.core.set_camera_password(menu.site, menu.camera, password, actor_of(update))
    await context.bot.send_message(message.chat_id, texts.camera_password_stored(menu.camera))
    return ConversationHandler.END


async def _start_add(update: Update, context: CamreachContext, site: str) -> int:
    message = update.effective_message
    assert message is not None
    progress = await message.reply_text(texts.CAMERA_LOOKING)
    found = await context.core.discover_cameras(site)
    candidates = sorted((d for d in found if d.camera is None),
                        key=lambda d: (not d.isapi, d.ip))[:MAX_DEVICES]
    if not candidates:
        await progress.edit_text(texts.camera_none_found(site))
        return ConversationHandler.END
    menu = open_menu(update, context, AddMenu(site=site, found=[
        f"{d.ip}|{texts.device_label(d.ip, d.vendor, d.isapi, d.model)}" for d in candidates]))
    rows = [[menu.button(entry.split("|", 1)[1], "dev", i)] for i, entry in
            enumerate(menu.found)]
    rows.append([menu.button(texts.BUTTON_CANCEL, "cancel")])
    await progress.edit_text(texts.camera_pick(site), reply_markup=InlineKeyboardMarkup(rows))
    return PICKING_DEVICE


async def on_device(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, AddMenu)
    if got is None:
        return None
    menu, index = got
    menu.host = menu.found[index].split("|", 1)[0]
    taken = {v.name for v in await context.core.camera_views(menu.site)}
    base = f"cam-{menu.host.rsplit('.', 1)[-1]}"
    menu.name = next(n for n in (base, *(f"{base}-{i}" for i in range(2, 99)))
                     if n not in taken)
    assert update.callback_query is not None
    await update.callback_query.edit_message_text(
        texts.camera_ask_user(menu.host, menu.name),
        reply_markup=InlineKeyboardMarkup([[menu.button("admin", "user")]]))
    return ASKING_USER


async def on_user_button(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, AddMenu)
    if got is None:
        return None
    return await _ask_new_password(update, context, got[0], "admin")


async def on_user_text(update: Update, context: CamreachContext) -> int | None:
    menu = current_menu(update, context, AddMenu)
    message = update.effective_message
    assert message is not None
    if menu is None:
        return ConversationHandler.END
    user = (message.text or "").strip()
    if not user or len(user) > 64 or any(c.isspace() for c in user):
        await message.reply_text(texts.CAMERA_BAD_USER)
        return ASKING_USER
    return await _ask_new_password(update, context, menu, user)


async def _ask_new_password(update: Update, context: CamreachContext, menu: AddMenu,
                            user: str) -> int:
    menu.user = user
    assert update.effective_chat is not None
    await context.bot.send_message(update.effective_chat.id, texts.ask_camera_password(menu.name))
    return ASKING_NEW_PASSWORD


async def on_new_password(update: Update, context: CamreachContext) -> int:
    message = update.effective_message
    menu = current_menu(update, context, AddMenu)
    assert message is not None
    if menu is None:
        return ConversationHandler.END
    password = message.text or ""
    try:
        await message.delete()
    except TelegramError:
        await message.reply_text(texts.PASSWORD_NOT_DELETED)
    try:
        info = await context.core.add_camera_checked(menu.site, menu.name, menu.host,
                                                     menu.user, password, actor_of(update))
    except AuthRejected as exc:  # refused, or refused before: ask again, nothing stored
        await context.bot.send_message(message.chat_id, texts.camera_try_again(exc.user_message))
        return ASKING_NEW_PASSWORD
    close_menu(update, context, AddMenu)
    await context.bot.send_message(message.chat_id, texts.camera_added(
        menu.site, menu.name, menu.host, info.model, info.serial))
    return ConversationHandler.END


async def on_remove(update: Update, context: CamreachContext) -> int | None:
    menu = await confirmed(update, context, RemoveCameraMenu)
    if menu is None:
        return None
    await context.core.remove_camera(menu.site, menu.camera, actor_of(update))
    assert update.callback_query is not None
    await update.callback_query.edit_message_text(texts.camera_removed(menu.site, menu.camera))
    return ConversationHandler.END


async def send_daily(bot: Bot, admins: frozenset[int], pictures: list[Picture]) -> None:
    """A daily picture to every admin's private chat."""
    for picture in pictures:
        for admin in sorted(admins):
            try:
                await bot.send_photo(admin, picture.data, caption=f"☀️ {picture.caption}")
            except TelegramError:
                log.warning("could not send the daily picture to %s", admin, exc_info=True)


def build_camera_conversation() -> ConversationHandler[CamreachContext]:
    return conversation(
        "camera",
        entry_points=[CommandHandler("camera", network_step(camera_command), block=False)],
        states={
            ASKING_PASSWORD: [MessageHandler(filters.TEXT & ~filters.COMMAND, on_password)],
            PICKING_DEVICE: [CallbackQueryHandler(on_device, pattern=AddMenu.pattern("dev"))],
            ASKING_USER: [
                CallbackQueryHandler(on_user_button, pattern=AddMenu.pattern("user")),
                MessageHandler(filters.TEXT & ~filters.COMMAND, on_user_text)],
            ASKING_NEW_PASSWORD: [MessageHandler(filters.TEXT & ~filters.COMMAND,
                                                 network_step(on_new_password), block=False)],
            CONFIRMING_REMOVE: [CallbackQueryHandler(on_remove,
                                                     pattern=RemoveCameraMenu.pattern("yes"))],
        },
        fallbacks=[
            CallbackQueryHandler(cancel_button(AddMenu), pattern=AddMenu.pattern("cancel")),
            CallbackQueryHandler(cancel_button(RemoveCameraMenu),
                                 pattern=RemoveCameraMenu.pattern("cancel")),
        ],
    )


def camera_handlers() -> Handlers:
    return [
        build_camera_conversation(),
        CommandHandler("snapshot", network_step(snapshot_command), block=False),
        CallbackQueryHandler(network_step(on_another), pattern=SnapshotMenu.pattern("again"),
                             block=False),
    ]
