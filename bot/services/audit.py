"""Who did what, to which site, when, and how it ended."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import AuditLog


@dataclass(frozen=True)
class Actor:
    """The person or script behind an action."""

    user_id: int | None
    username: str | None = None
    source: str = "telegram"

    @classmethod
    def cli(cls) -> Actor:
        return cls(user_id=None, username="cli", source="cli")


class AuditTrail:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def record(
        self,
        actor: Actor,
        action: str,
        outcome: str,
        *,
        site: str | None = None,
        detail: str | None = None,
    ) -> None:
        async with self._sessions.begin() as s:
            s.add(
                AuditLog(
                    user_id=actor.user_id,
                    username=actor.username,
                    source=actor.source,
                    action=action[:128],
                    site_name=site,
                    outcome=outcome,
                    detail=detail,
                )
            )

    async def recent(self, limit: int = 50) -> list[AuditLog]:
        async with self._sessions() as s:
            rows = await s.execute(select(AuditLog).order_by(AuditLog.id.desc()).limit(limit))
            return list(rows.scalars())
