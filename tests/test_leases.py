"""Leased operations shared by several processes on one database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest

from bot.core import Core
from bot.db.models import Operation, OpState
from bot.db.types import utcnow
from bot.errors import Busy
from bot.leases import Owner, owner_is_dead
from bot.operations import OpContext
from bot.services.audit import Actor
from bot.settings import Settings
from bot.site import parse_site
from jobs.operations import NotRetryable, OperationRunner

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
async def farm(core: Core) -> Core:
    await core.apply_site(parse_site({"name": "farm", "router": {"password_env": "PW"}}),
                          Actor.cli())
    return core


def holder() -> tuple[asyncio.Event, asyncio.Event, object]:
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(ctx: OpContext) -> str:
        await ctx.step(1, 2, "holding")
        started.set()
        await release.wait()
        return "released"

    return started, release, hold


def test_owner_is_dead_rules() -> None:
    me = Owner("here", 10, "mine")
    now = utcnow()
    fresh, old = now - timedelta(seconds=5), now - timedelta(seconds=31)
    alive_pid = os.getpid()
    args = {"now": now, "lease": 30.0, "me": me}
    # Another host: judged by the heartbeat alone.
    assert not owner_is_dead(host="there", pid=1, token="x", heartbeat_at=fresh, **args)
    assert owner_is_dead(host="there", pid=1, token="x", heartbeat_at=old, **args)
    assert owner_is_dead(host="there", pid=1, token="x", heartbeat_at=None, **args)
    # This host: a live pid keeps its lease; a gone pid is dead at once.
    assert not owner_is_dead(host="here", pid=alive_pid, token="x", heartbeat_at=fresh, **args)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert owner_is_dead(host="here", pid=proc.pid, token="x", heartbeat_at=fresh, **args)
    # This very process: alive while its work runs, whatever the heartbeat says.
    assert not owner_is_dead(host="here", pid=10, token="mine", heartbeat_at=old,
                             mine_alive=lambda: True, **args)
    assert owner_is_dead(host="here", pid=10, token="mine", heartbeat_at=fresh,
                         mine_alive=lambda: False, **args)


async def test_heartbeat_keeps_a_live_owner_whoever_looks(farm: Core) -> None:
    owner = OperationRunner(farm.sessions, lease_seconds=1.0,
                            owner=Owner("elsewhere", 1, "theirs"))
    started, release, hold = holder()
    owner.register("hold", hold)  # type: ignore[arg-type]
    view = await owner.start("hold", site="farm")
    await started.wait()
    other = OperationRunner(farm.sessions, lease_seconds=1.0)
    other.register("hold", hold)  # type: ignore[arg-type]
    for _ in range(5):  # 2.5 lease periods: only the heartbeat keeps the row
        await asyncio.sleep(0.5)
        assert await other.expire_stale() == []
    with pytest.raises(Busy) as busy:
        await other.start("hold", site="farm")
    assert f"#{view.id}" in busy.value.user_message and "elsewhere:1" in busy.value.user_message
    release.set()
    assert (await owner.wait(view.id)).state is OpState.SUCCEEDED
    await owner.shutdown()


async def test_lease_run_out_is_interrupted_by_the_next_start(farm: Core) -> None:
    _, release, hold = holder()
    # What a process on another host left when it died: a running row, heartbeat gone quiet.
    async with farm.sessions.begin() as s:
        site_id = (await farm.operations._site_id("farm"))
        row = Operation(kind="hold", site_id=site_id, state=OpState.RUNNING, step=1,
                        total_steps=2, owner_host="gone", owner_pid=1, owner_token="ghost",
                        heartbeat_at=utcnow() - timedelta(seconds=5), started_at=utcnow())
        s.add(row)
        await s.flush()
        view_id = row.id
    me = OperationRunner(farm.sessions, lease_seconds=1.0)
    me.register("hold", hold)  # type: ignore[arg-type]
    release.set()
    again = await me.start("hold", site="farm")
    old = await me.get(view_id)
    assert old.state is OpState.INTERRUPTED and "gone:1" in (old.error or "")
    # Running the same command again is the retry: the old row points at the new one.
    assert old.retried_by == again.id
    assert (await me.wait(again.id)).state is OpState.SUCCEEDED
    await me.shutdown()


async def test_retry_only_once_and_only_when_interrupted(farm: Core) -> None:
    started, release, hold = holder()
    farm.operations.register("hold", hold)  # type: ignore[arg-type]
    view = await farm.operations.start("hold", site="farm")
    await started.wait()
    with pytest.raises(NotRetryable, match="still running"):
        await farm.operations.retry(view.id, requested_by=1)
    await farm.operations.shutdown()
    release.set()
    results = await asyncio.gather(
        farm.retry_operation(view.id, Actor(1)), farm.retry_operation(view.id, Actor(2)),
        return_exceptions=True)
    started_runs = [r for r in results if not isinstance(r, BaseException)]
    assert len(started_runs) == 1, results
    await farm.operations.wait(started_runs[0].id)
    with pytest.raises(NotRetryable, match="already run again"):
        await farm.retry_operation(view.id, Actor(1))
    with pytest.raises(NotRetryable, match="succeeded"):
        await farm.retry_operation(started_runs[0].id, Actor(1))


async def test_two_runners_at_the_same_instant_one_runs(farm: Core,
                                                        settings: Settings) -> None:
    """Separate engines (as separate processes have), no shared lock: the index decides."""
    second = await Core.open(settings, migrate=False)
    try:
        _, release, hold = holder()
        for c in (farm, second):
            c.operations.register("hold", hold)  # type: ignore[arg-type]
        for _ in range(5):
            results = await asyncio.gather(
                farm.operations.start("hold", site="farm"),
                second.operations.start("hold", site="farm"), return_exceptions=True)
            ran = [r for r in results if not isinstance(r, BaseException)]
            busy = [r for r in results if isinstance(r, Busy)]
            assert len(ran) == 1 and len(busy) == 1, results
            release.set()
            for c in (farm, second):
                if ran[0].id in c.operations.running_here():
                    await c.operations.wait(ran[0].id)
            release.clear()
    finally:
        await second.close()


RACER = textwrap.dedent("""
    import asyncio, json, sys, time
    from bot.compose import open_core
    from bot.errors import Busy
    from bot.settings import Settings

    async def main(at: float) -> None:
        core = await open_core(Settings(), migrate=False)
        async def hold(ctx):
            await asyncio.sleep(1.5)
            return "held"
        core.operations.register("hold", hold)
        await asyncio.sleep(max(0.0, at - time.time()))
        try:
            view = await core.operations.start("hold", site="farm")
        except Busy as exc:
            print(json.dumps({"busy": exc.user_message}))
        else:
            print(json.dumps({"ran": view.id}))
            await core.operations.wait(view.id)
        await core.close()

    asyncio.run(main(float(sys.argv[1])))
""")


async def test_two_processes_at_the_same_instant_one_runs(farm: Core,
                                                          cli_env: dict[str, str]) -> None:
    at = time.time() + 2.5  # both are imported and connected by then
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", RACER, str(at), env=cli_env, cwd=str(ROOT),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE) for _ in range(2)]
    outs = []
    for p in procs:
        out, err = await asyncio.wait_for(p.communicate(), 60)
        assert p.returncode == 0, err.decode()
        outs.append(json.loads(out.decode().strip().splitlines()[-1]))
    assert sorted(next(iter(o)) for o in outs) == ["busy", "ran"], outs
    busy = next(o["busy"] for o in outs if "busy" in o)
    assert "farm is busy" in busy and "Wait for it to finish" in busy
    ops = await farm.list_operations("farm")
    assert [(o.kind, o.state) for o in ops] == [("hold", OpState.SUCCEEDED)]
