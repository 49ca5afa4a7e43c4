"""The operation runner: a database row per run, progress in place, leases, restart recovery.

An operation kind is a coroutine function ``run(ctx) -> str`` registered under a name. The
runner writes every step to the ``operations`` table before showing it, so after a crash the
database tells what was going on. Each row is leased to the process that runs it
(:mod:`bot.leases`): that process renews the heartbeat while the body runs, and a row whose
owner is gone is marked ``interrupted`` by whichever process looks next. Several processes
may share one database: the partial unique index on ``operations.site_id`` keeps one active
operation per site, and a retry claims its interrupted row in the same transaction that
inserts the new one, so two presses of one Retry button start one run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.db.models import ACTIVE_STATES, Operation, OpState, Site
from bot.db.types import utcnow
from bot.errors import Busy, CamreachError, NotFound
from bot.leases import DEFAULT_LEASE_SECONDS, Heartbeat, Owner, owner_is_dead
from bot.operations import OpContext, OperationFn, OperationView, ProgressSink

log = logging.getLogger(__name__)

FinishHook = Callable[[OperationView], Awaitable[None]]


class NotRetryable(CamreachError):
    """The operation a Retry was made for is running, done, or was retried already."""


class OperationRunner:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], *,
                 lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 owner: Owner | None = None) -> None:
        self._sessions = sessions
        self._kinds: dict[str, OperationFn] = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.lease_seconds = lease_seconds
        self.owner = owner or Owner.this_process()
        self._heartbeat = Heartbeat(self._renew, max(0.2, lease_seconds / 3))
        # Called once with the final view of every operation (the audit trail uses it).
        self.on_finished: FinishHook | None = None

    def register(self, kind: str, fn: OperationFn) -> None:
        self._kinds[kind] = fn

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(self._kinds)

    # -- starting ----------------------------------------------------------------------------
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
        retry_of: int | None = None,
    ) -> OperationView:
        """Record and launch an operation; :class:`Busy` when the site already has a live one.

        An interrupted run of the same kind on the same site is superseded by this one (running
        a command again is its retry); ``retry_of`` names the run a Retry button was made for,
        which must still be interrupted and not retried.
        """
        if kind not in self._kinds:
            raise NotFound(f"Unknown operation {kind!r}.")
        site_id = await self._site_id(site)
        if site_id is not None:
            await self.expire_stale(site_id=site_id)
        now = utcnow()
        try:
            async with self._sessions.begin() as s:
                op = Operation(
                    kind=kind, site_id=site_id, state=OpState.RUNNING, params=params or {},
                    requested_by=requested_by, chat_id=chat_id, message_id=message_id,
                    started_at=now, heartbeat_at=now, message="Starting",
                    owner_host=self.owner.host, owner_pid=self.owner.pid,
                    owner_token=self.owner.token, retry_of=retry_of,
                )
                s.add(op)
                await s.flush()
                await self._claim_retried(s, op, kind, site_id, retry_of)
                view = _view(op, site)
        except IntegrityError:
            raise await self._busy(site_id, site) from None
        self._tasks[view.id] = asyncio.create_task(
            self._run(view, sink), name=f"operation-{view.id}"
        )
        self._heartbeat.start()
        await self._notify(sink, view)
        return view

    async def _claim_retried(self, s: AsyncSession, op: Operation, kind: str,
                             site_id: int | None, retry_of: int | None) -> None:
        interrupted = (Operation.state == OpState.INTERRUPTED) & Operation.retried_by.is_(None)
        if retry_of is not None:
            claimed = await s.execute(
                update(Operation).where(Operation.id == retry_of, interrupted)
                .values(retried_by=op.id))
            if getattr(claimed, "rowcount", 0) != 1:
                old = await s.get(Operation, retry_of)
                raise NotRetryable(f"There is no operation #{retry_of}." if old is None
                                   else _view(old, None).why_not_retryable)
        if site_id is not None:
            # Running the same command again retries what an earlier run left interrupted.
            await s.execute(
                update(Operation).where(Operation.site_id == site_id, Operation.kind == kind,
                                        Operation.id != op.id, interrupted)
                .values(retried_by=op.id))

    async def _site_id(self, site: str | None) -> int | None:
        if site is None:
            return None
        async with self._sessions() as s:
            site_id = (await s.execute(select(Site.id).where(Site.name == site))
                       ).scalar_one_or_none()
        if site_id is None:
            raise NotFound(f"There is no site named {site!r}.")
        return site_id

    async def _busy(self, site_id: int | None, site: str | None) -> Busy:
        async with self._sessions() as s:
            busy = (await s.execute(select(Operation).where(
                Operation.site_id == site_id, Operation.state.in_(ACTIVE_STATES)))
            ).scalars().first()
        if busy is None:  # it ended in between: a clear message all the same
            return Busy(f"Another operation was just started on {site}. Try again in a moment.")
        where = f" by {busy.owner_host}:{busy.owner_pid}" if busy.owner_host else ""
        return Busy(
            f"{site} is busy: operation #{busy.id} ({busy.kind.replace('_', ' ')}) is running"
            f"{where}, at step {busy.step}/{busy.total_steps}. Wait for it to finish, then "
            "try again."
        )

    async def retry(
        self, op_id: int, *, requested_by: int | None, sink: ProgressSink | None = None,
        chat_id: int | None = None, message_id: int | None = None,
    ) -> OperationView:
        """Run an interrupted operation again, once (the row is claimed atomically)."""
        await self.expire_stale()
        old = await self.get(op_id)
        if not old.retryable:
            raise NotRetryable(old.why_not_retryable)
        return await self.start(
            old.kind, site=old.site, params=old.params, requested_by=requested_by, sink=sink,
            chat_id=chat_id, message_id=message_id, retry_of=op_id,
        )

    # -- reading -----------------------------------------------------------------------------
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

    async def list_views(self, *, site: str | None = None, limit: int = 50,
                   retryable_only: bool = False) -> list[OperationView]:
        """The newest operations first (of one site when given)."""
        async with self._sessions() as s:
            q = select(Operation, Site.name).outerjoin(Site, Site.id == Operation.site_id)
            if site is not None:
                q = q.where(Site.name == site)
            if retryable_only:
                q = q.where(Operation.state == OpState.INTERRUPTED,
                            Operation.retried_by.is_(None))
            rows = (await s.execute(q.order_by(Operation.id.desc()).limit(limit))).all()
        return [_view(op, name) for op, name in rows]

    # -- leases ------------------------------------------------------------------------------
    async def expire_stale(self, *, site_id: int | None = None) -> list[OperationView]:
        """Mark active rows whose owner is gone as interrupted; return those rows.

        A row is taken over only if it still has the heartbeat we judged it by (compare and
        set), so a renew that lands in between keeps the owner's row.
        """
        now = utcnow()
        async with self._sessions() as s:
            q = select(Operation).where(Operation.state.in_(ACTIVE_STATES))
            if site_id is not None:
                q = q.where(Operation.site_id == site_id)
            rows = (await s.execute(q)).scalars().all()
        running = frozenset(self._tasks)
        dead = [op for op in rows if owner_is_dead(
            host=op.owner_host, pid=op.owner_pid, token=op.owner_token,
            heartbeat_at=op.heartbeat_at, now=now, lease=self.lease_seconds, me=self.owner,
            mine_alive=functools.partial(operator.contains, running, op.id))]
        taken: list[OperationView] = []
        for op in dead:
            async with self._sessions.begin() as s:
                guard = (Operation.heartbeat_at.is_(None) if op.heartbeat_at is None
                         else Operation.heartbeat_at == op.heartbeat_at)
                result = await s.execute(
                    update(Operation).where(Operation.id == op.id,
                                            Operation.state.in_(ACTIVE_STATES), guard)
                    .values(state=OpState.INTERRUPTED, finished_at=now,
                            error=f"camreach stopped before this finished "
                                  f"({op.owner_host or 'an older version'}"
                                  f"{':' + str(op.owner_pid) if op.owner_pid else ''} "
                                  "stopped answering)"))
                if getattr(result, "rowcount", 0) == 1:
                    fresh = await s.get(Operation, op.id, populate_existing=True)
                    assert fresh is not None
                    taken.append(_view(fresh, await _site_name(s, fresh.site_id)))
        for view in taken:
            log.warning("operation #%s (%s) lost its owner %s: interrupted", view.id,
                        view.kind, view.owner)
        return taken

    async def recover_interrupted(self) -> list[OperationView]:
        """Start-up: what other processes left behind (never a live owner's row)."""
        return await self.expire_stale()

    async def _renew(self) -> None:
        ids = list(self._tasks)
        if not ids:
            return
        async with self._sessions.begin() as s:
            result = await s.execute(
                update(Operation).where(Operation.id.in_(ids),
                                        Operation.owner_token == self.owner.token,
                                        Operation.state.in_(ACTIVE_STATES))
                .values(heartbeat_at=utcnow()).returning(Operation.id))
            kept = set(result.scalars().all())
        for op_id in set(ids) - kept:
            # Someone judged this process dead (it stalled past the lease) and took the row
            # over: stop the work, another run may already be going.
            task = self._tasks.get(op_id)
            if task is not None:
                log.warning("operation #%s lost its lease; stopping it here", op_id)
                task.cancel()

    # -- running -----------------------------------------------------------------------------
    async def _run(self, view: OperationView, sink: ProgressSink | None) -> None:
        async def report(op_id: int, **changes: Any) -> OperationView:
            new = await self._save(op_id, **changes)
            await self._notify(sink, new)
            return new

        async def remember(key: str, value: Any) -> None:
            async with self._sessions.begin() as s:
                op = await s.get(Operation, view.id)
                assert op is not None
                op.params = {**(op.params or {}), key: value}

        ctx = OpContext(view, report, remember)
        try:
            result = await self._kinds[view.kind](ctx)
        except asyncio.CancelledError:
            final = await self._save(
                view.id, state=OpState.INTERRUPTED, error="camreach was stopped during this step",
                finished_at=utcnow(),
            )
            self._tasks.pop(view.id, None)
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
            if op.state not in ACTIVE_STATES:
                # Taken over while this process stalled: a finished row is final.
                return _view(op, await _site_name(s, op.site_id))
            for key, value in changes.items():
                setattr(op, key, value)
            op.heartbeat_at = utcnow()
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

    def running_here(self) -> frozenset[int]:
        return frozenset(self._tasks)

    async def shutdown(self) -> None:
        """Cancel what still runs; each task records itself as interrupted on the way out."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._heartbeat.stop()


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
        owner=f"{op.owner_host}:{op.owner_pid}" if op.owner_host else None,
        heartbeat_at=op.heartbeat_at,
        created_at=op.created_at,
        started_at=op.started_at,
        finished_at=op.finished_at,
        retry_of=op.retry_of,
        retried_by=op.retried_by,
    )
