"""The composition root: settings -> core -> Telegram application, scheduler and handlers."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from typing import Any

from telegram import BotCommand, Update
from telegram.error import InvalidToken, NetworkError
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import texts
from bot.core import Core
from bot.errors import ConfigError, Unreachable
from bot.operations import OperationView
from bot.services.cameras import DailyCamera
from bot.settings import BOTFATHER_HELP, Settings
from handlers import basic, health, operations
from handlers.access import AccessGuard
from handlers.context import CamreachContext, attach_core
from handlers.runtime import DatabasePersistence, OrderedUpdateProcessor
from jobs.daily import DailySnapshots
from jobs.scheduler import schedule_jobs

log = logging.getLogger(__name__)

App = Application[Any, CamreachContext, Any, Any, Any, Any]
DAILY_KEY = "camreach.daily"


def build_application(settings: Settings, core: Core) -> App:
    token = settings.require_bot_token()
    admins = settings.require_admins()
    # Concurrent updates, each conversation's in order and saved before its next one.
    processor = OrderedUpdateProcessor()
    builder = (
        Application.builder()
        .token(token)
        .context_types(ContextTypes(context=CamreachContext))
        .rate_limiter(AIORateLimiter(max_retries=3))
        .concurrent_updates(processor)
        .persistence(DatabasePersistence(core))
    )
    if settings.telegram_api_base_url:
        base = settings.telegram_api_base_url
        builder = builder.base_url(base).base_file_url(_file_url(base))
    app: App = builder.build()
    processor.after_update = app.update_persistence
    attach_core(app, core)
    guard = AccessGuard(admins)
    app.add_handler(TypeHandler(Update, guard), group=-1)
    app.add_handler(CommandHandler(["start", "help"], basic.start))
    app.add_handler(CommandHandler("status", health.status))
    app.add_handler(
        CallbackQueryHandler(operations.on_retry, pattern=f"^{operations.RETRY_PREFIX}")
    )
    for handler in _feature_handlers():
        app.add_handler(handler)
    app.add_error_handler(basic.on_error)
    assert app.job_queue is not None, "python-telegram-bot[job-queue] is required"

    async def on_abandoned(views: list[OperationView]) -> None:
        await operations.announce_interrupted(app.bot, core.admin_ids(), views)

    async def send_daily(cam: DailyCamera) -> None:
        from handlers.camera import send_daily

        await send_daily(app.bot, core.admin_ids(), await core.snapshots(cam.site, cam.camera))

    daily = DailySnapshots(core.daily_cameras, send_daily)
    app.bot_data[DAILY_KEY] = daily  # the scheduler ticks it; tests may tick it at a set time
    async def send_alerts() -> None:
        await health.send_alerts(app.bot, core)

    schedule_jobs(app.job_queue, core, on_abandoned,
                  lease_check_every=core.settings.camreach_lease_seconds, daily=daily,
                  send_alerts=send_alerts)
    return app


def _feature_handlers() -> list[Any]:
    from handlers import camera, droplet, flash, health, peers, router, setup

    return [
        *health.health_handlers(),
        *camera.camera_handlers(),
        *flash.flash_handlers(),
        *setup.setup_handlers(),
        *peers.peer_handlers(),
        *droplet.droplet_handlers(),
        *router.router_handlers(),
        # Last: /cancel when no conversation is running still gets an answer.
        CommandHandler("cancel", basic.cancel),
    ]


def _file_url(base: str) -> str:
    """``http://host/bot`` -> ``http://host/file/bot`` (how the Bot API lays out files)."""
    if base.endswith("bot"):
        return base[: -len("bot")] + "file/bot"
    return base.rstrip("/") + "/file/bot"


async def on_startup(app: App, core: Core) -> None:
    await app.bot.set_my_commands([BotCommand(name, desc) for name, desc in texts.COMMANDS])
    # What other processes left behind; a live CLI operation keeps running untouched.
    interrupted = await core.expire_stale_operations()
    if interrupted:
        await operations.announce_interrupted(app.bot, core.admin_ids(), interrupted)


async def run_bot(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGINT/SIGTERM (or ``stop`` is set), then shut down cleanly."""
    settings.require_bot_token()
    settings.require_admins()
    core = await Core.open(settings)
    try:
        await serve(settings, core, stop or _signal_event())
    finally:
        await core.close()


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """``camreach worker``: sweep until SIGINT/SIGTERM; it sends no alerts (the bot does)."""
    core = await Core.open(settings)
    stop = stop or _signal_event()
    try:
        background = await start_health(core, stop, sweep=True)
        log.info("camreach worker %s is sweeping", core.health_service.sweeper().owner.label)
        try:
            await stop.wait()
        finally:
            await background.close()
    finally:
        await core.close()


async def serve(
    settings: Settings,
    core: Core,
    stop: asyncio.Event,
    customize: Callable[[App], None] | None = None,
) -> None:
    """Run the bot on an opened core until ``stop`` is set (``customize`` adds handlers)."""
    app = build_application(settings, core)
    if customize is not None:
        customize(app)
    # Last: a command nobody knows (a typo, or one from a newer version) still gets an answer.
    app.add_handler(MessageHandler(filters.COMMAND & ~filters.UpdateType.EDITED,
                                   basic.unknown_command))
    try:
        await app.initialize()
    except InvalidToken as exc:
        raise ConfigError("Telegram rejected TELEGRAM_BOT_TOKEN. " + BOTFATHER_HELP) from exc
    except NetworkError as exc:
        raise Unreachable(
            "Cannot reach the Telegram Bot API. Check this machine's internet connection"
            " (and TELEGRAM_API_BASE_URL if you set it), then start camreach again."
        ) from exc
    try:
        await _serve(app, core, stop)
    finally:
        await app.shutdown()


async def _serve(app: App, core: Core, stop: asyncio.Event) -> None:
    await on_startup(app, core)
    assert app.updater is not None
    await app.updater.start_polling(allowed_updates=Update.ALL_TYPES)
    await app.start()
    log.info("camreach is running as @%s", app.bot.username)
    background = await start_health(core, stop)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await background.close()
        await app.updater.stop()
        # Interrupt running operations while the bot can still edit their messages.
        await core.operations.shutdown()
        await app.stop()


class Background:
    """What runs beside the bot or a worker: the health sweeps and the /metrics server."""

    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[None]] = []
        self.servers: list[Any] = []

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for server in self.servers:
            await server.close()


async def start_health(core: Core, stop: asyncio.Event, *, sweep: bool | None = None
                       ) -> Background:
    """Start sweeping (unless CAMREACH_SWEEP_IN_BOT is off) and serve /metrics when
    CAMREACH_METRICS_PORT is set."""
    out = Background()
    settings = core.settings
    if settings.camreach_metrics_port is not None:
        out.servers.append(await core.metrics.serve(settings.camreach_metrics_port))
        log.info("metrics at :%d/metrics", settings.camreach_metrics_port)
    if sweep if sweep is not None else settings.camreach_sweep_in_bot:
        out.tasks.append(asyncio.create_task(core.sweep_forever(stop), name="health-sweeps"))
    return out


def _signal_event() -> asyncio.Event:
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, event.set)
    return event
