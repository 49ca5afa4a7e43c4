"""The core facade: every operation camreach can do, for the CLI and the bot alike."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.crypto import SecretBox, load_or_create_key
from bot.db import engine as db
from bot.logs import REDACTOR
from bot.services import sites
from bot.services.audit import Actor, AuditTrail
from bot.services.secrets import SecretStore
from bot.settings import Settings
from bot.site import SiteSpec
from jobs.operations import OperationRunner

log = logging.getLogger(__name__)


class Core:
    """Holds the engine, secrets and operation runner; built once by the composition root."""

    def __init__(self, settings: Settings, engine: AsyncEngine, box: SecretBox) -> None:
        self.settings = settings
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self.secrets = SecretStore(self.sessions, box)
        self.audit = AuditTrail(self.sessions)
        self.operations = OperationRunner(self.sessions)

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True) -> Core:
        url = settings.async_database_url
        if migrate:
            await db.upgrade(url)
        key = load_or_create_key(
            settings.camreach_secret_key.get_secret_value()
            if settings.camreach_secret_key
            else None,
            settings.data_dir,
        )
        for secret in (settings.telegram_bot_token, settings.digitalocean_token):
            REDACTOR.add(secret.get_secret_value() if secret else None)
        core = cls(settings, db.make_engine(url), SecretBox(key))
        await core.secrets.verify()
        return core

    async def close(self) -> None:
        await self.operations.shutdown()
        await self.engine.dispose()

    # -- sites -------------------------------------------------------------------------
    async def apply_site(
        self, spec: SiteSpec, actor: Actor, *, dry_run: bool = False
    ) -> sites.ApplyResult:
        result = await sites.apply_site(self.sessions, spec, dry_run=dry_run)
        if not dry_run:
            await self.audit.record(
                actor, "site.apply", result.action, site=spec.name,
                detail="; ".join(result.changes)[:2000] or None,
            )
        return result

    async def statuses(self, name: str | None = None) -> list[sites.SiteStatus]:
        return await sites.site_statuses(self.sessions, name)

    async def site_names(self) -> list[str]:
        return await sites.list_site_names(self.sessions)

    async def site_spec(self, name: str) -> SiteSpec:
        return await sites.get_spec(self.sessions, name)
