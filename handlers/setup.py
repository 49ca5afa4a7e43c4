"""/setup [SITE] [STEP]: one guided conversation from nothing to a live camera picture.

Site (a new one from its name alone) -> DigitalOcean (token, size, region, confirm; the
droplet is provisioned while the conversation goes on) -> router (where to reach it, its root
password once; key, detection, missing packages) -> modem (APN presets, SIM PIN) -> review
(the diff, applied with the router's own rollback, confirmed through the tunnel or on the LAN)
-> camera (found on the LAN, credentials, a first picture) -> summary.

Which steps are done comes from the database, never from the conversation alone, so /setup
resumes where it stopped after a /cancel or a restart, shows done steps as done, and lets any
be redone; ``/setup SITE modem`` (droplet, router, camera) runs one step only.
"""

from __future__ import annotations

import logging
import re
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
from bot.actions import for_chat
from bot.core import SizeInfo
from bot.errors import AuthRejected, CamreachError, NotFound, Unreachable, ValidationFailed
from bot.services.setup_flow import APN_PRESETS, STEPS, SetupProgress
from bot.site import APN_RE
from handlers.context import CamreachContext
from handlers.menus import (
    Handlers,
    Menu,
    actor_of,
    close_menu,
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
TEXT = filters.TEXT & ~filters.COMMAND & ~EDITED

(CHOOSING_SITE, ASKING_TOKEN, CHOOSING_SIZE, CHOOSING_REGION, CONFIRMING, ASKING_NAME,
 CHECKLIST, ASKING_ROUTER_HOST, ASKING_ROUTER_PASSWORD, ASKING_APN, ASKING_PIN,
 CONFIRMING_PUSH, ASKING_STICK, PICKING_CAMERA, ASKING_CAMERA_USER,
 ASKING_CAMERA_PASSWORD) = range(16)

# DigitalOcean lists 100+ sizes; a WireGuard server needs the smallest, so offer the cheapest few.
MAX_SIZES = 6
# Long steps (a package install, a push with its confirmation, waiting for the droplet) show
# progress in their own message; the step itself may take this long.
LONG_STEP = 900.0
PIN_RE = re.compile(r"^\d{4,8}$")


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
    only: str | None = None  # /setup SITE STEP: this step, then stop
    passed: list[str] = field(default_factory=list)  # steps done or skipped in this run
    created: bool = False  # this run created the site (a /cancel may forget it)
    droplet_op: int | None = None  # the provisioning started in this run
    apn: str = ""
    fingerprint: str = ""
    hosts: list[str] = field(default_factory=list)
    host: str = ""
    user: str = ""
    done: list[str] = field(default_factory=list)  # for the summary


async def _send(update: Update, context: CamreachContext, text: str,
                markup: InlineKeyboardMarkup | None = None) -> int:
    assert update.effective_chat is not None
    msg = await context.bot.send_message(update.effective_chat.id, for_chat(text),
                                         reply_markup=markup)
    return msg.message_id


async def _delete_secret_message(update: Update, context: CamreachContext,
                                 not_deleted: str = texts.PASSWORD_NOT_DELETED) -> str:
    """The text of a message carrying a secret, deleted first whatever it turns out to be."""
    message = update.effective_message
    assert message is not None and update.effective_chat is not None
    value = (message.text or "").strip()
    try:
        await message.delete()
    except TelegramError:
        log.warning("could not delete a message carrying a secret in chat %s",
                    update.effective_chat.id)
        await _send(update, context, not_deleted)
    return value


async def _working(update: Update, context: CamreachContext, text: str,
                   message_id: int | None = None) -> int:
    """A "⏳ ..." line for a network step, edited as it goes (nothing looks frozen)."""
    assert update.effective_chat is not None
    if message_id is None:
        return await _send(update, context, f"⏳ {text}")
    try:
        await context.bot.edit_message_text(f"⏳ {text}", chat_id=update.effective_chat.id,
                                            message_id=message_id)
    except TelegramError:
        pass
    return message_id


def _menu(update: Update, context: CamreachContext) -> SetupMenu:
    menu = current_menu(update, context, SetupMenu)
    if menu is None:  # a state saved by an older version: start again
        raise NotFound("This setup was interrupted; send /setup to continue it.")
    return menu


# -- the site -----------------------------------------------------------------------------------
async def start_setup(update: Update, context: CamreachContext) -> int:
    args = list(context.args or [])
    if len(args) > 2 or (len(args) == 2 and args[1] not in STEPS) or \
            (len(args) == 2 and args[1] == "push"):
        await _send(update, context, texts.SETUP_USAGE)
        return ConversationHandler.END
    names = await context.core.site_names()
    if args:
        if args[0] not in names:
            menu = open_menu(update, context, SetupMenu())
            return await _create(update, context, menu, args[0])
        site = await resolve_site(context, args[0], "/setup SITE")
        menu = open_menu(update, context, SetupMenu(site=site,
                                                    only=args[1] if len(args) > 1 else None))
        if menu.only is not None:
            return await _run_step(update, context, menu, menu.only)
        return await _checklist(update, context, menu)
    menu = open_menu(update, context, SetupMenu(sites=names))
    if not names:
        await _send(update, context, texts.ASK_SITE_NAME)
        return ASKING_NAME
    if len(names) == 1:
        menu.site = names[0]
        return await _checklist(update, context, menu)
    rows = [[menu.button(name, "site", i)] for i, name in enumerate(names)]
    rows.append([menu.button(texts.BUTTON_NEW_SITE, "new")])
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
    return await _checklist(update, context, menu)


async def on_new_site_button(update: Update, context: CamreachContext) -> int | None:
    if await pressed(update, context, SetupMenu) is None:
        return None
    await _send(update, context, texts.ASK_SITE_NAME)
    return ASKING_NAME


async def on_site_name(update: Update, context: CamreachContext) -> int:
    assert update.effective_message is not None
    return await _create(update, context, _menu(update, context),
                         (update.effective_message.text or "").strip())


async def _create(update: Update, context: CamreachContext, menu: SetupMenu, name: str) -> int:
    try:
        await context.core.create_site(name, actor_of(update))
    except ValidationFailed as exc:
        await _send(update, context, texts.error_text(exc.user_message))
        return ASKING_NAME
    menu.site, menu.created = name, True
    await _send(update, context, texts.site_created(name))
    return await _next(update, context, menu)


# -- the checklist and moving on ---------------------------------------------------------------
def _details(p: SetupProgress) -> dict[str, str]:
    out: dict[str, str] = {}
    if p.droplet_address:
        out["droplet"] = f"{p.droplet_address} ({p.region}, {p.size})"
    elif p.droplet_op is not None:
        out["droplet"] = f"being created (operation #{p.droplet_op})"
    if p.router:
        out["router"] = p.router_host
    if p.apn:
        out["modem"] = f"APN {p.apn}"
    if p.cameras:
        out["camera"] = ", ".join(p.cameras)
    return out


async def _checklist(update: Update, context: CamreachContext, menu: SetupMenu) -> int:
    """Steps already done show as done, each with a Redo button (pressable at any point of
    the conversation); then the first step not done starts."""
    p = await context.core.setup_progress(menu.site)
    _adopt_running(menu, p)
    if any(p.done(s) for s in STEPS) or p.droplet_op is not None:
        rows = [[menu.button(texts.redo_button(s), "step", i)]
                for i, s in enumerate(STEPS) if p.done(s)]
        await _send(update, context, texts.setup_checklist(
            menu.site, {s: p.done(s) for s in STEPS}, _details(p)), InlineKeyboardMarkup(rows))
        if p.next_step is None:
            return CHECKLIST  # everything is done: a Redo, or /cancel
    return await _next(update, context, menu)


async def on_step_button(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu, index = got
    step = STEPS[index]
    if step in menu.passed:
        menu.passed.remove(step)
    return await _run_step(update, context, menu, step)


async def _next(update: Update, context: CamreachContext, menu: SetupMenu) -> int:
    """The first step neither done nor passed in this run; the summary when none is left."""
    if menu.only is not None:
        return await _finish(update, context, menu)
    p = await context.core.setup_progress(menu.site)
    _adopt_running(menu, p)
    step = next((s for s in STEPS if not p.done(s) and s not in menu.passed), None)
    if step is None:
        return await _finish(update, context, menu)
    return await _run_step(update, context, menu, step)


def _adopt_running(menu: SetupMenu, p: SetupProgress) -> None:
    """A provisioning already running (this run's, or one before a restart or a /cancel):
    the review waits for it rather than asking for the droplet again."""
    if p.droplet_op is not None and not p.droplet:
        menu.droplet_op = p.droplet_op
        _passed(menu, "droplet")


def _passed(menu: SetupMenu, step: str, note: str | None = None) -> None:
    if step not in menu.passed:
        menu.passed.append(step)
    if note:
        menu.done.append(note)


async def _run_step(update: Update, context: CamreachContext, menu: SetupMenu,
                    step: str) -> int:
    if step == "droplet":
        return await _start_droplet(update, context, menu)
    if step == "router":
        p = await context.core.setup_progress(menu.site)
        rows = [[menu.button(p.router_host, "host")]]
        await _send(update, context, texts.ask_router_host(menu.site, p.router_host),
                    InlineKeyboardMarkup(rows))
        return ASKING_ROUTER_HOST
    if step == "modem":
        rows = [[menu.button(f"{name}: {apn}", "apn", i)]
                for i, (name, apn) in enumerate(APN_PRESETS)]
        rows.append([menu.button(texts.BUTTON_OTHER_APN, "apntext")])
        await _send(update, context, texts.ASK_APN, InlineKeyboardMarkup(rows))
        return ASKING_APN
    if step == "push":
        return await _review(update, context, menu)
    return await _discover(update, context, menu)


# -- droplet -----------------------------------------------------------------------------------
async def _start_droplet(update: Update, context: CamreachContext, menu: SetupMenu) -> int:
    if not await context.core.has_do_token():
        await _send(update, context, texts.ASK_DO_TOKEN)
        return ASKING_TOKEN
    return await _after_token(update, context, menu)


async def on_token(update: Update, context: CamreachContext) -> int:
    token = await _delete_secret_message(update, context, texts.TOKEN_NOT_DELETED)
    try:
        account = await context.core.set_do_token(token, actor_of(update))
    except AuthRejected:
        await _send(update, context, texts.TOKEN_REJECTED)
        return ASKING_TOKEN
    except CamreachError as exc:  # DigitalOcean unreachable, account locked, ...
        await _send(update, context, texts.token_failed(exc.user_message))
        return ASKING_TOKEN
    await _send(update, context, texts.token_accepted(account.email))
    return await _after_token(update, context, _menu(update, context))


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
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu = got[0]
    assert update.callback_query is not None
    try:
        await update.callback_query.edit_message_reply_markup(None)  # no second run
    except TelegramError:
        pass
    try:
        if not menu.existing:
            assert menu.size is not None
            await context.core.choose_droplet(menu.site, menu.region, menu.size.slug,
                                              actor_of(update))
        view = await start_with_progress(update, context, "provision_droplet", site=menu.site)
    except CamreachError as exc:  # e.g. another operation still runs on the site
        await _send(update, context, texts.error_text(exc.user_message))
        return ConversationHandler.END
    # The droplet takes minutes; the router steps need only the LAN, so they go on now.
    menu.droplet_op = view.id
    _passed(menu, "droplet")
    return await _next(update, context, menu)


# -- router ------------------------------------------------------------------------------------
async def on_router_host_button(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    p = await context.core.setup_progress(got[0].site)
    return await _router_host(update, context, got[0], p.router_host)


async def on_router_host_text(update: Update, context: CamreachContext) -> int:
    assert update.effective_message is not None
    return await _router_host(update, context, _menu(update, context),
                              update.effective_message.text or "")


async def _router_host(update: Update, context: CamreachContext, menu: SetupMenu,
                       host: str) -> int:
    try:
        await context.core.set_router_host(menu.site, host, actor_of(update))
    except ValidationFailed as exc:
        await _send(update, context, texts.error_text(exc.user_message))
        return ASKING_ROUTER_HOST
    menu.host = host.strip()
    await _send(update, context, texts.ask_router_password(menu.host))
    return ASKING_ROUTER_PASSWORD


async def on_router_password(update: Update, context: CamreachContext) -> int:
    password = await _delete_secret_message(update, context)
    menu = _menu(update, context)
    core = context.core
    note = await _working(update, context, texts.ROUTER_CONNECTING)
    try:
        await core.router_connect_password(menu.site, password, actor_of(update))
    except AuthRejected:
        await _send(update, context, texts.router_password_refused())
        return ASKING_ROUTER_PASSWORD
    except Unreachable as exc:
        await _send(update, context, texts.router_unreachable(menu.host, exc.user_message))
        return ASKING_ROUTER_HOST
    await _working(update, context, texts.ROUTER_DETECTING, note)
    found = await core.router_detect(menu.site, actor_of(update))
    if found.missing_packages:
        view = await start_with_progress(update, context, "install_router_packages",
                                         site=menu.site)
        view = await core.wait_operation(view.id)
        if view.state.value != "succeeded":
            await _send(update, context, texts.error_text(view.error or "package install "
                                                          "failed"))
            return ConversationHandler.END
        found = await core.router_detect(menu.site, actor_of(update))
    proposal = (f"The modem will be driven by {found.modem.protocol}."
                if found.modem is not None and found.modem.protocol else
                "No modem recognised yet: plug the stick in before the review step.")
    await _send(update, context, texts.router_ready(menu.site, found.summary(), proposal))
    _passed(menu, "router", f"router at {menu.host}: camreach's key installed, password "
                            "login off")
    return await _next(update, context, menu)


# -- modem -------------------------------------------------------------------------------------
async def on_apn_button(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu, index = got
    menu.apn = APN_PRESETS[index][1]
    return await _ask_pin(update, context, menu)


async def on_apn_other(update: Update, context: CamreachContext) -> int | None:
    if await pressed(update, context, SetupMenu) is None:
        return None
    await _send(update, context, texts.ASK_APN_TEXT)
    return ASKING_APN


async def on_apn_text(update: Update, context: CamreachContext) -> int:
    assert update.effective_message is not None
    menu = _menu(update, context)
    apn = (update.effective_message.text or "").strip()
    if not re.fullmatch(APN_RE, apn):
        await _send(update, context, texts.apn_invalid(apn))
        return ASKING_APN
    menu.apn = apn
    return await _ask_pin(update, context, menu)


async def _ask_pin(update: Update, context: CamreachContext, menu: SetupMenu) -> int:
    await _send(update, context, texts.ASK_PIN,
                InlineKeyboardMarkup([[menu.button(texts.BUTTON_NO_PIN, "nopin")]]))
    return ASKING_PIN


async def on_no_pin(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    return await _set_modem(update, context, got[0], None)


async def on_pin(update: Update, context: CamreachContext) -> int:
    pin = await _delete_secret_message(update, context)
    if not PIN_RE.fullmatch(pin):
        await _send(update, context, texts.PIN_INVALID)
        return ASKING_PIN
    return await _set_modem(update, context, _menu(update, context), pin)


async def _set_modem(update: Update, context: CamreachContext, menu: SetupMenu,
                     pin: str | None) -> int:
    await context.core.set_modem(menu.site, menu.apn, actor_of(update), pin=pin)
    _passed(menu, "modem", f"modem APN {menu.apn}" + (" with SIM PIN" if pin else ""))
    return await _next(update, context, menu)


# -- review and apply --------------------------------------------------------------------------
async def _review(update: Update, context: CamreachContext, menu: SetupMenu) -> int:
    core = context.core
    if menu.droplet_op is not None:
        view = await core.operation(menu.droplet_op)
        if not view.done:
            await _send(update, context, texts.WAITING_FOR_DROPLET)
            view = await core.wait_operation(menu.droplet_op)
        if view.state.value != "succeeded":
            await _send(update, context, texts.error_text(
                f"The droplet is not ready ({view.error or view.state.value}). "
                f"/setup {menu.site} droplet tries again."))
            return ConversationHandler.END
        menu.droplet_op = None
        menu.done.append("VPN server (droplet) ready")
    await _working(update, context, texts.PLANNING_PUSH)
    await core.sync_router_lan(menu.site)  # a LAN chosen after the droplet was made
    plan = await core.plan_router_push(menu.site)
    if plan.no_changes:
        _passed(menu, "push")
        return await _next(update, context, menu)
    menu.fingerprint = plan.fingerprint
    parts = texts.split_message(texts.router_diff_text(menu.site, list(plan.diff)))
    for part in parts[:-1]:
        await _send(update, context, part)
    await _send(update, context, parts[-1], menu.confirm_keyboard(texts.BUTTON_APPLY))
    return CONFIRMING_PUSH


async def on_apply(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu = got[0]
    rows = [[menu.button(texts.BUTTON_STICK_YES, "stick", 1)],
            [menu.button(texts.BUTTON_STICK_NO, "stick", 0)]]
    await _send(update, context, texts.ASK_STICK, InlineKeyboardMarkup(rows))
    return ASKING_STICK


async def on_stick(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu, plugged = got
    assert update.callback_query is not None
    try:
        await update.callback_query.edit_message_reply_markup(None)
    except TelegramError:
        pass
    via = "tunnel" if plugged else "lan"
    view = await start_with_progress(update, context, "push_router_config", site=menu.site,
                                     params={"expect": menu.fingerprint, "confirm_via": via})
    view = await context.core.wait_operation(view.id)
    if view.state.value != "succeeded":
        await _send(update, context, texts.error_text(
            f"{view.error or 'The push failed'} (the router rolled back by itself). "
            f"/setup {menu.site} shows what is left."))
        return ConversationHandler.END
    if plugged:
        await _send(update, context, texts.tunnel_up(menu.site))
        _passed(menu, "push", "router configured, confirmed through the tunnel")
    else:
        await _send(update, context, texts.at_site_todo(menu.site))
        _passed(menu, "push", "router configured on the desk (LTE not yet)")
        # The cameras are reached through the tunnel: nothing to find before the site.
        _passed(menu, "camera")
    return await _next(update, context, menu)


# -- camera ------------------------------------------------------------------------------------
async def _discover(update: Update, context: CamreachContext, menu: SetupMenu) -> int:
    await _working(update, context, texts.LOOKING_FOR_CAMERAS)
    found = await context.core.discover_cameras(menu.site)
    cameras = [d for d in found if d.isapi and d.camera is None] or \
        [d for d in found if d.camera is None]
    menu.hosts = [d.ip for d in cameras]
    rows = [[menu.button(f"{d.ip} · {d.model or d.vendor or d.hostname or 'unknown'}", "cam", i)]
            for i, d in enumerate(cameras)]
    rows.append([menu.button(texts.BUTTON_SKIP, "skipcam")])
    await _send(update, context,
                texts.camera_pick(menu.site) if cameras else texts.NO_CAMERAS_FOUND,
                InlineKeyboardMarkup(rows))
    return PICKING_CAMERA


async def on_camera(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    menu, index = got
    menu.host = menu.hosts[index]
    await _send(update, context, texts.ASK_CAMERA_USER,
                InlineKeyboardMarkup([[menu.button("admin", "camuser")]]))
    return ASKING_CAMERA_USER


async def on_camera_user_button(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    got[0].user = "admin"
    await _send(update, context, texts.ASK_CAMERA_PASSWORD)
    return ASKING_CAMERA_PASSWORD


async def on_camera_user_text(update: Update, context: CamreachContext) -> int:
    assert update.effective_message is not None
    _menu(update, context).user = (update.effective_message.text or "").strip()[:64] or "admin"
    await _send(update, context, texts.ASK_CAMERA_PASSWORD)
    return ASKING_CAMERA_PASSWORD


async def on_camera_password(update: Update, context: CamreachContext) -> int:
    password = await _delete_secret_message(update, context)
    menu = _menu(update, context)
    core = context.core
    taken = set((await core.setup_progress(menu.site)).cameras)
    name = next(f"cam{i}" for i in range(1, 100) if f"cam{i}" not in taken)
    try:
        info = await core.add_camera_checked(menu.site, name, menu.host, menu.user, password,
                                             actor_of(update))
    except AuthRejected as exc:  # one attempt only: the camera counts toward its lockout
        await _send(update, context, texts.error_text(exc.user_message) + "\n"
                    + texts.ASK_CAMERA_PASSWORD)
        return ASKING_CAMERA_PASSWORD
    except CamreachError as exc:
        await _send(update, context, texts.error_text(exc.user_message))
        return await _discover(update, context, menu)
    from handlers.camera import take_snapshot

    await _send(update, context, texts.camera_proof(menu.site, name, info.model))
    try:
        await take_snapshot(update, context, menu.site, name)
    except CamreachError as exc:
        await _send(update, context, texts.error_text(exc.user_message))
    _passed(menu, "camera", f"camera {name} ({info.model}, {menu.host})")
    return await _next(update, context, menu)


async def on_skip_camera(update: Update, context: CamreachContext) -> int | None:
    got = await pressed(update, context, SetupMenu)
    if got is None:
        return None
    _passed(got[0], "camera")
    return await _next(update, context, got[0])


# -- the end ---------------------------------------------------------------------------------
async def _finish(update: Update, context: CamreachContext, menu: SetupMenu) -> int:
    p = await context.core.setup_progress(menu.site)
    lines = menu.done or [f"{texts.SETUP_STEP_NAMES[s]}: done" for s in STEPS if p.done(s)]
    left = [texts.SETUP_STEP_NAMES[s] for s in STEPS if not p.done(s)]
    text = texts.setup_summary(menu.site, lines, p.price_monthly)
    if left and menu.only is None:
        text += f"\nStill to do: {', '.join(left)} (/setup {menu.site})."
    await _send(update, context, text)
    close_menu(update, context, SetupMenu)
    return ConversationHandler.END


async def on_cancel(update: Update, context: CamreachContext) -> int | None:
    """/cancel or the Cancel button at any point: say what exists and how to remove it; a
    site made in this run with nothing outside camreach is forgotten."""
    menu = current_menu(update, context, SetupMenu)
    query = update.callback_query
    if query is not None:
        if await pressed(update, context, SetupMenu) is None:
            return None  # an older menu's Cancel: the conversation stays
    close_menu(update, context, SetupMenu)
    text = texts.CANCELLED
    if menu is not None and menu.site:
        core = context.core
        try:
            p = await core.setup_progress(menu.site)
        except NotFound:
            p = None
        if p is not None:
            left = core.setup_undo(p)
            forgot = menu.created and not left
            if forgot:
                await core.forget_site(menu.site, actor_of(update))
            text = texts.setup_cancelled(left, forgot, menu.site)
    if query is not None:
        await query.edit_message_text(for_chat(text))
    else:
        await _send(update, context, text)
    return ConversationHandler.END


def build_setup_conversation() -> ConversationHandler[CamreachContext]:
    button = SetupMenu.pattern

    def net(fn: object, timeout: float = 60.0) -> object:
        return network_step(fn, timeout=timeout)  # type: ignore[arg-type]

    def cb(fn: object, action: str, *, slow: bool = False,
           timeout: float = 60.0) -> CallbackQueryHandler[CamreachContext, object]:
        callback = net(fn, timeout) if slow else fn
        return CallbackQueryHandler(callback, pattern=button(action),  # type: ignore[arg-type]
                                    block=not slow)

    def text(fn: object, *, slow: bool = False, timeout: float = 60.0
             ) -> MessageHandler[CamreachContext, object]:
        callback = net(fn, timeout) if slow else fn
        return MessageHandler(TEXT, callback, block=not slow)  # type: ignore[arg-type]

    return conversation(
        "setup",
        entry_points=[CommandHandler("setup", private_only(network_step(start_setup)),
                                     block=False)],
        states={
            CHOOSING_SITE: [cb(on_site, "site", slow=True), cb(on_new_site_button, "new")],
            ASKING_NAME: [text(on_site_name, slow=True)],
            CHECKLIST: [cb(on_step_button, "step", slow=True, timeout=LONG_STEP)],
            ASKING_TOKEN: [text(on_token, slow=True)],
            CHOOSING_SIZE: [cb(on_size, "size", slow=True)],
            CHOOSING_REGION: [cb(on_region, "region")],
            CONFIRMING: [cb(on_confirm, "yes", slow=True)],
            ASKING_ROUTER_HOST: [cb(on_router_host_button, "host", slow=True),
                                 text(on_router_host_text, slow=True)],
            ASKING_ROUTER_PASSWORD: [text(on_router_password, slow=True, timeout=LONG_STEP)],
            ASKING_APN: [cb(on_apn_button, "apn", slow=True, timeout=LONG_STEP),
                         cb(on_apn_other, "apntext"), text(on_apn_text, slow=True,
                                                           timeout=LONG_STEP)],
            ASKING_PIN: [cb(on_no_pin, "nopin", slow=True, timeout=LONG_STEP),
                         text(on_pin, slow=True, timeout=LONG_STEP)],
            CONFIRMING_PUSH: [cb(on_apply, "yes")],
            ASKING_STICK: [cb(on_stick, "stick", slow=True, timeout=LONG_STEP)],
            PICKING_CAMERA: [cb(on_camera, "cam"), cb(on_skip_camera, "skipcam", slow=True)],
            ASKING_CAMERA_USER: [cb(on_camera_user_button, "camuser"),
                                 text(on_camera_user_text)],
            ASKING_CAMERA_PASSWORD: [text(on_camera_password, slow=True, timeout=LONG_STEP)],
        },
        fallbacks=[CallbackQueryHandler(on_cancel, pattern=button("cancel")),
                   cb(on_step_button, "step", slow=True, timeout=LONG_STEP),
                   CommandHandler("cancel", on_cancel)],
    )


def setup_handlers() -> Handlers:
    return [build_setup_conversation(),
            CallbackQueryHandler(expired_menu, pattern=f"^{SetupMenu.PREFIX}")]
