"""/status, /mute, /unmute, /uptime, and the alerts the sweeps leave in the outbox.

/status answers at once from what is stored; its Refresh button asks for a sweep and edits
the message in place when that is done. Alerts carry stateless buttons (Status, Mute 2 h,
Snapshot) so that they still work days later and after restarts.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, TelegramError
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import texts
from bot.core import Core, PendingAlert, SiteHealth
from bot.errors import CamreachError
from bot.render.health_text import status_detail, status_overview, uptime_text
from handlers.context import CamreachContext
from handlers.menus import actor_of, network_step, resolve_site

log = logging.getLogger(__name__)

REFRESH, STATUS, MUTE, SNAPSHOT = "hr", "hs", "hm", "hp"
ALERT_MUTE = "2h"
_CALLBACK_LIMIT = 64  # bytes of callback_data Telegram keeps


def _data(action: str, site: str | None) -> str:
    """``hr:`` (every site) or ``hs:farm``; a name too long for Telegram's 64 bytes goes as a
    hash of it (``hs#...``), matched against the sites when pressed."""
    if site is None:
        return f"{action}:"
    plain = f"{action}:{site}"
    if len(plain.encode()) <= _CALLBACK_LIMIT:
        return plain
    return f"{action}#{hashlib.sha256(site.encode()).hexdigest()[:20]}"


async def _site_of(context: CamreachContext, data: str) -> str | None:
    if "#" in data:
        digest = data.split("#", 1)[1]
        for name in await context.core.site_names():
            if hashlib.sha256(name.encode()).hexdigest()[:20] == digest:
                return name
        return None
    return data.split(":", 1)[1] or None


def refresh_keyboard(site: str | None) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(texts.BUTTON_REFRESH,
                                                       callback_data=_data(REFRESH, site))]])


def alert_keyboard(alert: PendingAlert) -> InlineKeyboardMarkup:
    row = [InlineKeyboardButton(texts.BUTTON_STATUS, callback_data=_data(STATUS, alert.site)),
           InlineKeyboardButton(texts.BUTTON_MUTE_2H, callback_data=_data(MUTE, alert.site))]
    if alert.has_camera:
        row.append(InlineKeyboardButton(texts.BUTTON_SNAPSHOT,
                                        callback_data=_data(SNAPSHOT, alert.site)))
    return InlineKeyboardMarkup([row])


def _now() -> datetime:
    return datetime.now(UTC)


def _render(health: list[SiteHealth], site: str | None) -> str:
    return status_detail(health[0], _now()) if site is not None else \
        status_overview(health, _now())


async def status(update: Update, context: CamreachContext) -> None:
    """/status [SITE]: answered at once from the stored results."""
    assert update.effective_message is not None
    site = context.args[0] if context.args else None
    if site is not None:
        site = await resolve_site(context, site, "/status SITE")
    health = await context.core.health([site] if site else None)
    text = _render(health, site)
    if site is not None:  # what the database knows besides health: droplet, router, cameras
        text += "\n\n" + texts.site_status_text(await context.core.statuses(site))
    parts = texts.split_message(text)
    for i, part in enumerate(parts):
        markup = refresh_keyboard(site) if i == len(parts) - 1 else None
        await update.effective_message.reply_text(part, reply_markup=markup)


async def on_refresh(update: Update, context: CamreachContext) -> None:
    """Refresh: sweep the sites now and edit the message in place when that is done."""
    query = update.callback_query
    assert query is not None and query.data is not None
    site = await _site_of(context, query.data)
    await query.answer(texts.CHECKING)
    try:
        health = await context.core.refresh_health([site] if site else None)
        text = texts.split_message(_render(health, site))[0]
    except CamreachError as exc:
        text = texts.error_text(exc.user_message)
    try:
        await query.edit_message_text(text, reply_markup=refresh_keyboard(site))
    except BadRequest as exc:  # nothing changed since: Telegram refuses an identical edit
        if "not modified" not in str(exc).lower():
            raise


async def on_status_button(update: Update, context: CamreachContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_chat is not None
    await query.answer()
    site = await _site_of(context, query.data)
    if site is None:
        return
    health = await context.core.health([site])
    await context.bot.send_message(update.effective_chat.id, _render(health, site)[:4096],
                                   reply_markup=refresh_keyboard(site))


async def on_mute_button(update: Update, context: CamreachContext) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None and update.effective_chat is not None
    site = await _site_of(context, query.data)
    if site is None:
        await query.answer()
        return
    await context.core.mute(site, ALERT_MUTE, actor_of(update))
    await query.answer(texts.muted(site, ALERT_MUTE))
    await context.bot.send_message(update.effective_chat.id, texts.muted(site, ALERT_MUTE))


async def on_snapshot_button(update: Update, context: CamreachContext) -> None:
    from handlers.camera import take_snapshot

    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer()
    site = await _site_of(context, query.data)
    if site is not None:
        await take_snapshot(update, context, site, None)


async def mute(update: Update, context: CamreachContext) -> None:
    """/mute SITE [DURATION]: alerts recorded, not sent."""
    assert update.effective_message is not None
    args = list(context.args or [])
    if len(args) > 2:
        await update.effective_message.reply_text(texts.MUTE_USAGE)
        return
    site = await resolve_site(context, args[0] if args else None, "/mute SITE 2h")
    duration = args[1] if len(args) > 1 else None
    await context.core.mute(site, duration, actor_of(update))
    await update.effective_message.reply_text(texts.muted(site, duration))


async def unmute(update: Update, context: CamreachContext) -> None:
    assert update.effective_message is not None
    args = list(context.args or [])
    site = await resolve_site(context, args[0] if args else None, "/unmute SITE")
    await context.core.unmute(site, actor_of(update))
    await update.effective_message.reply_text(texts.unmuted(site))


async def uptime(update: Update, context: CamreachContext) -> None:
    """/uptime SITE: availability over 24 h and 7 days, and a chart of the last 24 h."""
    assert update.effective_message is not None
    args = list(context.args or [])
    site = await resolve_site(context, args[0] if args else None, "/uptime SITE")
    rows = await context.core.uptime_hours(site, 7)
    await update.effective_message.reply_text(uptime_text(site, rows, _now()))
    chart = await context.core.uptime_chart(site)
    await update.effective_message.reply_photo(chart, caption=texts.uptime_caption(site))


async def send_alerts(bot: Bot, core: Core) -> int:
    """Send what the outbox holds: to every admin's private chat and the alert chats. An
    alert no chat could take stays queued for the next round. Returns alerts sent."""
    sent = 0
    for alert in await core.pending_alerts():
        delivered = False
        for chat in core.alert_chats(alert):
            try:
                await bot.send_message(chat, alert.text, reply_markup=alert_keyboard(alert))
                delivered = True
            except TelegramError:
                log.warning("could not send the %s alert of %s to chat %s", alert.kind,
                            alert.site, chat, exc_info=True)
        await core.alert_done(alert, sent=delivered)
        sent += delivered
    return sent


def health_handlers() -> list[object]:
    return [
        CommandHandler("mute", mute),
        CommandHandler("unmute", unmute),
        CommandHandler("uptime", uptime, block=False),
        CallbackQueryHandler(network_step(on_refresh), pattern=rf"^{REFRESH}[:#]", block=False),
        CallbackQueryHandler(on_status_button, pattern=rf"^{STATUS}[:#]"),
        CallbackQueryHandler(on_mute_button, pattern=rf"^{MUTE}[:#]"),
        CallbackQueryHandler(network_step(on_snapshot_button), pattern=rf"^{SNAPSHOT}[:#]",
                             block=False),
    ]
