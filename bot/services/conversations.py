"""Where Telegram conversations stand, kept in the database so a restart loses none.

Two kinds of rows: a conversation's state per (handler, key), and a user's flow data (the
answers so far, as JSON). Both are written as whole values; callers never store secrets here.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import ConversationState, FlowData

Key = tuple[int | str, ...]


def _encode_key(key: Key) -> str:
    return json.dumps(list(key), separators=(",", ":"))


def _decode_key(text: str) -> Key:
    return tuple(json.loads(text))


class ConversationStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def states(self, handler: str) -> dict[Key, Any]:
        async with self._sessions() as s:
            rows = (await s.execute(select(ConversationState.key, ConversationState.state)
                                    .where(ConversationState.handler == handler))).all()
        return {_decode_key(k): state for k, state in rows}

    async def set_state(self, handler: str, key: Key, state: Any | None) -> None:
        """``None`` ends the conversation (its row goes)."""
        text = _encode_key(key)
        async with self._sessions.begin() as s:
            await s.execute(delete(ConversationState).where(
                ConversationState.handler == handler, ConversationState.key == text))
            if state is not None:
                s.add(ConversationState(handler=handler, key=text, state=state))

    async def flow_data(self) -> dict[int, dict[str, Any]]:
        async with self._sessions() as s:
            rows = (await s.execute(select(FlowData.user_id, FlowData.data))).all()
        return {user_id: dict(data) for user_id, data in rows}

    async def set_flow_data(self, user_id: int, data: dict[str, Any] | None) -> None:
        async with self._sessions.begin() as s:
            row = await s.get(FlowData, user_id)
            if not data:
                if row is not None:
                    await s.delete(row)
            elif row is None:
                s.add(FlowData(user_id=user_id, data=data))
            else:
                row.data = data
