"""The durable operation runner against a real database."""

from __future__ import annotations

import asyncio

import pytest

from bot.core import Core
from bot.db.models import OpState
from bot.errors import Busy, RemoteFailed
from bot.operations import OpContext, OperationView
from bot.services.audit import Actor
from bot.site import parse_site
from jobs.operations import OperationRunner


class Recorder:
    def __init__(self) -> None:
        self.views: list[OperationView] = []

    async def update(self, view: OperationView) -> None:
        self.views.append(view)


def site_doc(name: str = "farm") -> dict:
    return {"name": name, "router": {"password_env": "ROUTER_PASSWORD"}}


@pytest.fixture
async def with_site(core: Core) -> Core:
    await core.apply_site(parse_site(site_doc()), Actor.cli())
    return core


async def test_progress_and_success(with_site: Core) -> None:
    core = with_site

    async def work(ctx: OpContext) -> str:
        for i in range(1, 4):
            await ctx.step(i, 3, f"doing {i} with {ctx.params['x']}")
        return "all good"

    core.operations.register("demo", work)
    sink = Recorder()
    view = await core.operations.start("demo", site="farm", params={"x": 7}, sink=sink)
    final = await core.operations.wait(view.id)
    assert final.state is OpState.SUCCEEDED and final.message == "all good"
    assert [v.step for v in sink.views] == [0, 1, 2, 3, 3]
    assert sink.views[2].message == "doing 2 with 7"
    statuses = await core.statuses("farm")
    assert statuses[0].last_operation is not None
    assert statuses[0].last_operation.state == "succeeded"


async def test_second_operation_on_same_site_is_refused(with_site: Core) -> None:
    core = with_site
    gate = asyncio.Event()

    async def slow(ctx: OpContext) -> str:
        await ctx.step(1, 2, "waiting")
        await gate.wait()
        return "done"

    core.operations.register("slow", slow)
    first = await core.operations.start("slow", site="farm")
    with pytest.raises(Busy, match=f"#{first.id}"):
        await core.operations.start("slow", site="farm")
    # another site is not blocked
    await core.apply_site(parse_site(site_doc("shop")), Actor.cli())
    other = await core.operations.start("slow", site="shop")
    gate.set()
    assert (await core.operations.wait(first.id)).state is OpState.SUCCEEDED
    assert (await core.operations.wait(other.id)).state is OpState.SUCCEEDED
    # once finished, the site is free again
    third = await core.operations.start("slow", site="farm")
    assert (await core.operations.wait(third.id)).state is OpState.SUCCEEDED


async def test_failure_keeps_user_message(with_site: Core) -> None:
    core = with_site

    async def bad(ctx: OpContext) -> str:
        await ctx.step(2, 4, "pushing")
        raise RemoteFailed("The router refused the config. Check the APN.")

    async def crash(ctx: OpContext) -> str:
        raise ZeroDivisionError("internal detail")

    core.operations.register("bad", bad)
    core.operations.register("crash", crash)
    v = await core.operations.wait((await core.operations.start("bad", site="farm")).id)
    assert v.state is OpState.FAILED and v.step == 2
    assert v.error == "The router refused the config. Check the APN."
    v = await core.operations.wait((await core.operations.start("crash", site="farm")).id)
    assert v.state is OpState.FAILED
    assert v.error is not None and "internal detail" not in v.error and f"#{v.id}" in v.error


async def test_restart_recovery(with_site: Core) -> None:
    core = with_site
    started = asyncio.Event()

    async def hang(ctx: OpContext) -> str:
        await ctx.step(1, 5, "provisioning")
        started.set()
        await asyncio.Event().wait()
        return "never"

    core.operations.register("hang", hang)
    view = await core.operations.start("hang", site="farm", params={"a": 1})
    await started.wait()
    # A second process (the restarted bot) looks while the owner is alive: nothing changes.
    other = OperationRunner(core.sessions)
    assert await other.recover_interrupted() == []
    assert (await other.get(view.id)).state is OpState.RUNNING
    # The owner stops; now its row is interrupted and a retry runs the same kind and params.
    await core.operations.shutdown()
    assert (await other.get(view.id)).state is OpState.INTERRUPTED
    other.register("hang", hang)
    started.clear()
    again = await other.retry(view.id, requested_by=1)
    await started.wait()
    assert again.kind == "hang" and again.params == {"a": 1} and again.id != view.id
    assert again.retry_of == view.id and (await other.get(view.id)).retried_by == again.id
    await other.shutdown()
    assert (await other.get(again.id)).state is OpState.INTERRUPTED


async def test_shutdown_marks_running_interrupted(with_site: Core) -> None:
    core = with_site
    started = asyncio.Event()
    sink = Recorder()

    async def hang(ctx: OpContext) -> str:
        await ctx.step(1, 2, "waiting for droplet")
        started.set()
        await asyncio.sleep(3600)
        return "never"

    core.operations.register("hang", hang)
    view = await core.operations.start("hang", site="farm", sink=sink)
    await started.wait()
    await core.operations.shutdown()
    final = await core.operations.get(view.id)
    assert final.state is OpState.INTERRUPTED
    assert sink.views[-1].state is OpState.INTERRUPTED


async def test_operations_are_audited(with_site: Core) -> None:
    from sqlalchemy import select

    from bot.db.models import AuditLog

    core = with_site

    async def ok(ctx: OpContext) -> str:
        return "fine"

    core.operations.register("ok", ok)
    view = await core.operations.start("ok", site="farm", requested_by=77)
    await core.operations.wait(view.id)
    async with core.sessions() as s:
        rows = (await s.execute(select(AuditLog).where(AuditLog.action == "ok"))).scalars().all()
    assert [(r.user_id, r.site_name, r.outcome) for r in rows] == [(77, "farm", "succeeded")]
    assert rows[0].detail == f"operation #{view.id}: fine"
