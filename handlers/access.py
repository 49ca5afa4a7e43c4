"""Only admins are obeyed; strangers get one refusal an hour that shows their user id."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from telegram import Update
from telegram.ext import ApplicationHandlerStop

from bot import texts
from bot.services.audit import Actor
from handlers.context import CamreachContext

REFUSAL_INTERVAL = 3600.0
# Strangers remembered at most (a flood of new accounts must not grow memory for ever).
MAX_REMEMBERED = 4096


class RefusalMemory:
    """When each stranger was last refused, bounded: entries older than the interval are
    forgotten, and past ``capacity`` the oldest go (that stranger may get one refusal more,
    never a flood: the capacity is far above what an hour of strangers normally holds)."""

    def __init__(self, interval: float = REFUSAL_INTERVAL,
                 capacity: int = MAX_REMEMBERED) -> None:
        self._interval = interval
        self._capacity = capacity
        self._at: OrderedDict[int, float] = OrderedDict()  # oldest first

    def due(self, user_id: int, now: float) -> bool:
        """Should ``user_id`` be told now? Records the refusal when it should."""
        last = self._at.get(user_id)
        if last is not None and now - last < self._interval:
            return False
        self._at.pop(user_id, None)
        self._at[user_id] = now
        while self._at:
            oldest, at = next(iter(self._at.items()))
            if now - at < self._interval and len(self._at) <= self._capacity:
                break
            del self._at[oldest]
        return True

    def __len__(self) -> int:
        return len(self._at)


class AccessGuard:
    """Runs before every other handler (group -1) and stops updates from non-admins."""

    def __init__(
        self, admins: frozenset[int], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._admins = admins
        self._clock = clock
        self._refusals = RefusalMemory()

    def is_admin(self, user_id: int) -> bool:
        return user_id in self._admins

    async def __call__(self, update: Update, context: CamreachContext) -> None:
        if update.edited_message is not None or update.edited_channel_post is not None:
            # An edit is neither a command nor an answer in a flow: a typo fixed in an old
            # "/droplet destroy" must not run it again, nor an edited line count as the name.
            raise ApplicationHandlerStop
        user = update.effective_user
        if user is not None and user.id in self._admins:
            msg = update.effective_message
            if update.callback_query is None and msg is not None and msg.text \
                    and msg.text.startswith("/"):
                # Commands are actions; their arguments may hold names, never secrets.
                await context.core.record(
                    Actor(user.id, user.username), _describe(update), "received")
            return
        if user is None:  # channel posts and the like: nobody to obey
            raise ApplicationHandlerStop
        query = update.callback_query
        if query is not None:
            # Always answer, or the stranger's client shows a spinner forever.
            await query.answer(texts.CALLBACK_REFUSAL, show_alert=True)
        if self._refusals.due(user.id, self._clock()):
            if query is None and update.effective_message is not None:
                await update.effective_message.reply_text(texts.refusal(user.id))
            what = "callback" if query is not None else _describe(update)
            await context.core.record(
                Actor(user.id, user.username), f"refused {what}", "refused"
            )
        raise ApplicationHandlerStop


def _describe(update: Update) -> str:
    msg = update.effective_message
    if msg is not None and msg.text and msg.text.startswith("/"):
        return msg.text.split()[0][:64]
    return "message"
