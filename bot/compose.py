"""The composition root: settings -> engine, secrets, services, operation runner and bodies.

The bot (``bot.app``), the CLI and workers all open their core here, so every process runs
the same operations under the same leases.
"""

from __future__ import annotations

from bot.core import Core
from bot.crypto import SecretBox, load_or_create_key
from bot.db import engine as db
from bot.logs import REDACTOR
from bot.settings import Settings
from jobs.bodies import operation_bodies
from jobs.operations import OperationRunner


async def open_core(settings: Settings, *, migrate: bool = True) -> Core:
    url = settings.async_database_url
    if migrate:
        await db.upgrade(url)
    key = load_or_create_key(
        settings.camreach_secret_key.get_secret_value() if settings.camreach_secret_key
        else None,
        settings.data_dir,
    )
    for secret in (settings.telegram_bot_token, settings.digitalocean_token):
        REDACTOR.add(secret.get_secret_value() if secret else None)
    engine = db.make_engine(url)
    core = Core(settings, engine, SecretBox(key))
    runner = OperationRunner(core.sessions, lease_seconds=settings.camreach_lease_seconds)
    core.attach_runner(runner)
    core.router.lease_seconds = settings.camreach_lease_seconds  # the same lease everywhere
    for kind, body in operation_bodies(core).items():
        runner.register(kind, body)
    await core.secrets.verify()
    return core
