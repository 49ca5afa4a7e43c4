"""Named secrets, encrypted in the ``secrets`` table."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.crypto import SecretBox
from bot.db.models import Secret


class SecretStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], box: SecretBox) -> None:
        self._sessions = sessions
        self._box = box

    async def put(self, name: str, value: str) -> None:
        async with self._sessions.begin() as s:
            await put_secret(s, self._box, name, value)

    async def get(self, name: str) -> str | None:
        async with self._sessions() as s:
            return await get_secret(s, self._box, name)

    async def delete(self, name: str) -> None:
        async with self._sessions.begin() as s:
            await s.execute(delete(Secret).where(Secret.name == name))

    async def verify(self) -> None:
        """Decrypt one stored secret so a wrong key is reported at start, not mid-operation."""
        async with self._sessions() as s:
            row = (await s.execute(select(Secret).limit(1))).scalar_one_or_none()
            if row is not None:
                self._box.decrypt(row.ciphertext)

    @property
    def box(self) -> SecretBox:
        return self._box


async def put_secret(s: AsyncSession, box: SecretBox, name: str, value: str) -> None:
    """Within the caller's transaction, so a secret and the row using it land together."""
    row = (await s.execute(select(Secret).where(Secret.name == name))).scalar_one_or_none()
    if row is None:
        s.add(Secret(name=name, ciphertext=box.encrypt(value)))
    else:
        row.ciphertext = box.encrypt(value)


async def get_secret(s: AsyncSession, box: SecretBox, name: str) -> str | None:
    row = (await s.execute(select(Secret).where(Secret.name == name))).scalar_one_or_none()
    return None if row is None else box.decrypt(row.ciphertext)
