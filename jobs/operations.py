"""Durable long-running operations: a row per run, progress in place, restart recovery.

An operation kind is a coroutine function ``run(ctx) -> str`` registered under a name. The
runner writes every step to the ``operations`` table before showing it, so after a crash the
database tells what was going on; on start, rows left ``running`` become ``interrupted`` and the
admins are offered a retry (the kind and its JSON params are enough to run it again).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import ACTIVE_STATES, Operation, OpState, Site
from bot.db.types import utcnow
from bot.errors import Busy, CamreachError, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperationView:
    """A snapshot of an operation row, safe to hand to renderers."""

    id: int
    kind: str
    site: str | None
    state: OpState
    step: int
    total_steps: int
    message: str
    error: str | None
    chat_id: int | None = None
    message_id: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    requested_by: int | None = None

    @property
    def done(self) -> bool:
        return self.state not in ACTIVE_STATES


class ProgressSink(Protocol):
    """Where progress goes: a Telegram message edited in place, or the terminal."""

    async def update(self, view: OperationView) -> None: ...


class OpContext:
    """What a running operation gets: its params and a way to report steps."""

    def __init__(self, runner: OperationRunner, view: OperationView, sink: ProgressSink | None):
        self._runner = runner
        self._view = view
        self._sink = sink
        self.params = dict(view.params)

    @property
    def op_id(self) -> int:
        return self._view.id

    @property
    def site(self) -> str | None:
        return self._view.site

    async def step(self, number: int, total: int, message: str) -> None:
        self._view = await self._runner._save(
            self._view.id, step=number, total_steps=total, message=message
        )
        await self._runner._notify(self._sink, self._view)

    async def note(self, message: str) -> None:
        """Update the current step's text without moving the bar (e.g. a wait's progress)."""
        await self.step(self._view.step, self._view.total_steps, message)


OperationFn = Callable[[OpContext], Awaitable[str]]
FinishHook = Callable[[OperationView], Awaitable[None]]


class OperationRunner:
    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions
        self._kinds: dict[str, OperationFn] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        # Called once with the final view of every operation (the audit trail uses it).
        self.on_finished: FinishHook | None = None

    def register(self, kind: str, fn: OperationFn) -> None:
        self._kinds[kind] = fn

    async def start(
        self,
        kind: str,
        *,
        site: str | None = None,
        params: dict[str, Any] | None = None,
        requested_by: int | None = None,
        sink: ProgressSink | None = None,
        chat_id: int | None = None,
        message_id: int | None = None,
    ) -> OperationView:
        """Record and launch an operation; refuses when the site already has one running."""
        if kind not in self._kinds:
            raise NotFound(f"Unknown operation {kind!r}.")
        async with self._lock, self._sessions.begin() as s:
            site_id = None
            if site is not None:
                site_id = (
                    await s.execute(select(Site.id).where(Site.name == site))
                ).scalar_one_or_none()
                if site_id is None:
                    raise NotFound(f"There is no site named {site!r}.")
                busy = (
                    await s.execute(
                        select(Operation).where(
                            Operation.site_id == site_id, Operation.state.in_(ACTIVE_STATES)
                        )
                    )
                ).scalars().first()
                if busy is not None:
                    raise Busy(
                        f"Operation #{busy.id} ({busy.kind}) is still running on {site}. "
                        "Wait for it to finish, then try again."
                    )
            op = Operation(
                kind=kind,
                site_id=site_id,
                state=OpState.RUNNING,
                params=params or {},
                requested_by=requested_by,
                chat_id=chat_id,
                message_id=message_id,
                started_at=utcnow(),
                message="Starting",
            )
            s.add(op)
            await s.flush()
            view = _view(op, site)
        self._tasks[view.id] = asyncio.create_task(
            self._run(view, sink), name=f"operation-{view.id}"
        )
        await self._notify(sink, view)
        return view

    async def wait(self, op_id: int) -> OperationView:
        task = self._tasks.get(op_id)
        if task is not None:
            await asyncio.shield(task)
        return await self.get(op_id)

    async def get(self, op_id: int) -> OperationView:
        async with self._sessions() as s:
            op = await s.get(Operation, op_id)
            if op is None:
                raise NotFound(f"There is no operation #{op_id}.")
            return _view(op, await _site_name(s, op.site_id))

    async def _run(self, view: OperationView, sink: ProgressSink | None) -> None:
        ctx = OpContext(self, view, sink)
        try:
            result = await self._kinds[view.kind](ctx)
        except asyncio.CancelledError:
            final = await self._save(
                view.id, state=OpState.INTERRUPTED, error="camreach was stopped during this step",
                finished_at=utcnow(),
            )
            await self._notify(sink, final)
            await self._finished(final)
            raise
        except CamreachError as exc:
            log.warning("operation #%s (%s) failed: %s", view.id, view.kind, exc.user_message)
            final = await self._save(
                view.id, state=OpState.FAILED, error=exc.user_message, finished_at=utcnow()
            )
        except Exception:
            log.exception("operation #%s (%s) crashed", view.id, view.kind)
            final = await self._save(
                view.id,
                state=OpState.FAILED,
                error=f"Unexpected error; the log has details (operation #{view.id}).",
                finished_at=utcnow(),
            )
        else:
            final = await self._save(
                view.id, state=OpState.SUCCEEDED, message=result, finished_at=utcnow()
            )
        finally:
            self._tasks.pop(view.id, None)
        await self._notify(sink, final)
        await self._finished(final)

    async def _finished(self, final: OperationView) -> None:
        if self.on_finished is None:
            return
        try:
            await self.on_finished(final)
        except Exception:
            log.warning("could not record the end of operation #%s", final.id, exc_info=True)

    async def _save(self, op_id: int, **changes: Any) -> OperationView:
        async with self._sessions.begin() as s:
            op = await s.get(Operation, op_id)
            assert op is not None
            for key, value in changes.items():
                setattr(op, key, value)
            await s.flush()
            return _view(op, await _site_name(s, op.site_id))

    async def _notify(self, sink: ProgressSink | None, view: OperationView) -> None:
        if sink is None:
            return
        try:
            await sink.update(view)
        except Exception:
            # Showing progress must never break the work itself.
            log.warning("could not show progress of operation #%s", view.id, exc_info=True)

    async def recover_interrupted(self) -> list[OperationView]:
        """Mark what a previous process left running as interrupted; return those rows."""
        async with self._sessions.begin() as s:
            rows = (
                await s.execute(select(Operation).where(Operation.state.in_(ACTIVE_STATES)))
            ).scalars().all()
            views = []
            for op in rows:
                if op.id in self._tasks:
                    continue
                op.state = OpState.INTERRUPTED
                op.error = "camreach stopped before this finished"
                op.finished_at = utcnow()
                views.append(_view(op, await _site_name(s, op.site_id)))
            return views

    async def retry(
        self, op_id: int, *, requested_by: int | None, sink: ProgressSink | None = None,
        chat_id: int | None = None, message_id: int | None = None,
    ) -> OperationView:
        old = await self.get(op_id)
        if not old.done:
            raise Busy(f"Operation #{op_id} is still running.")
        return await self.start(
            old.kind, site=old.site, params=old.params, requested_by=requested_by, sink=sink,
            chat_id=chat_id, message_id=message_id,
        )

    async def shutdown(self) -> None:
        """Cancel what still runs; each task records itself as interrupted on the way out."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _site_name(s: AsyncSession, site_id: int | None) -> str | None:
    if site_id is None:
        return None
    return (await s.execute(select(Site.name).where(Site.id == site_id))).scalar_one_or_none()


def _view(op: Operation, site: str | None) -> OperationView:
    return OperationView(
        id=op.id,
        kind=op.kind,
        site=site,
        state=op.state,
        step=op.step,
        total_steps=op.total_steps,
        message=op.message,
        error=op.error,
        chat_id=op.chat_id,
        message_id=op.message_id,
        params=dict(op.params or {}),
        requested_by=op.requested_by,
    )
