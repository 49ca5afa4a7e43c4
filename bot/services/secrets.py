"""Named secrets, encrypted in the ``secrets`` table.

Several processes (the bot, a CLI apply, a second CLI apply) may create the same secret at the
same moment, so nothing here reads "missing" and then inserts: creation is one
``INSERT … ON CONFLICT DO NOTHING`` (``get_or_create``, the loser reads the winner's value back)
and overwriting is one ``INSERT … ON CONFLICT DO UPDATE`` (``put``). Both are decided by the
database's unique index on ``secrets.name``, so they hold across processes, not just tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crypto import SecretBox
from bot.db.models import Secret
from bot.db.types import utcnow
from bot.errors import ConfigError

# How often get_or_create retries when the row it lost to is deleted before it is read back.
_ATTEMPTS = 5


class SecretStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], box: SecretBox) -> None:
        self._sessions = sessions
        self._box = box

    async def put(self, name: str, value: str) -> None:
        """Store ``value`` under ``name``, replacing any value there (an upsert)."""
        async with self._sessions.begin() as s:
            await put_secret(s, self._box, name, value)

    async def get(self, name: str) -> str | None:
        async with self._sessions() as s:
            return await get_secret(s, self._box, name)

    async def get_or_create(self, name: str, make: Callable[[], str]) -> str:
        """The value under ``name``; if there is none, ``make()`` one and store it.

        Race-free across processes: when several create ``name`` at once exactly one value is
        stored and every caller gets that one (``make`` may run in each, the losers' values
        are discarded).
        """
        async with self._sessions.begin() as s:
            return await get_or_create_secret(s, self._box, name, make)

    async def delete(self, name: str) -> None:
        async with self._sessions.begin() as s:
            await s.execute(delete(Secret).where(Secret.name == name))

    async def verify(self) -> None:
        """Decrypt one stored secret so a wrong key is reported at start, not mid-operation."""
        async with self._sessions() as s:
            row = (await s.execute(select(Secret.ciphertext).limit(1))).scalar_one_or_none()
            if row is not None:
                self._box.decrypt(row)

    @property
    def box(self) -> SecretBox:
        return self._box


def dialect_insert(s: AsyncSession, entity: Any) -> postgresql.Insert | sqlite.Insert:
    """``INSERT`` for the session's database, with its ``on_conflict_do_*`` methods."""
    name = s.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(entity)
    if name == "sqlite":
        return sqlite.insert(entity)
    raise ConfigError(f"camreach supports SQLite and PostgreSQL databases, not {name}: set "
                      "DATABASE_URL to one of those.")


async def put_secret(s: AsyncSession, box: SecretBox, name: str, value: str) -> None:
    """Within the caller's transaction, so a secret and the row using it land together."""
    ciphertext = box.encrypt(value)
    stmt = dialect_insert(s, Secret).values(name=name, ciphertext=ciphertext)
    # ON CONFLICT … DO UPDATE skips Column.onupdate, so updated_at is set here.
    await s.execute(stmt.on_conflict_do_update(
        index_elements=[Secret.name], set_={"ciphertext": ciphertext, "updated_at": utcnow()},
    ))


async def get_secret(s: AsyncSession, box: SecretBox, name: str) -> str | None:
    # The column, not the entity: an ORM object loaded earlier in this session would not see
    # an upsert made since (the identity map keeps the old attributes).
    ciphertext = (
        await s.execute(select(Secret.ciphertext).where(Secret.name == name))
    ).scalar_one_or_none()
    return None if ciphertext is None else box.decrypt(ciphertext)


async def get_or_create_secret(
    s: AsyncSession, box: SecretBox, name: str, make: Callable[[], str]
) -> str:
    """``SecretStore.get_or_create`` within the caller's transaction.

    PostgreSQL: an insert racing a concurrent uncommitted one waits for it, then does nothing
    and the next statement (READ COMMITTED) sees the winner's row. SQLite: writers take the
    database lock in turn, so the loser's insert runs after the winner committed.
    """
    made: str | None = None
    for _ in range(_ATTEMPTS):
        found = await get_secret(s, box, name)
        if found is not None:
            return found
        if made is None:
            made = make()
        stmt = dialect_insert(s, Secret).values(name=name, ciphertext=box.encrypt(made))
        result = await s.execute(stmt.on_conflict_do_nothing(index_elements=[Secret.name]))
        if getattr(result, "rowcount", 0) == 1:
            return made
        # Lost the race: read the winner's value (or retry, should it be gone already).
    raise RuntimeError(f"secret {name!r} kept vanishing while it was being created")
