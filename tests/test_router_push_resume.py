"""A push whose camreach process died after the apply: the next push of the site confirms it.

The router keeps a push pending until a confirm arrives or its deadline passes. When the
process that applied it is gone (``camreach router push`` killed with SIGKILL), the push
operation had recorded the push id in its row; the next push of the same site finds that the
pending push was an interrupted camreach operation's, confirms it over the confirm path and
pushes whatever remains. A pending push nobody interrupted recorded is still refused.

The assertions read the router's own files in its chroot (``/etc/config/*``, ``/etc/camreach``)
and camreach's operation rows.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from sqlalchemy import select

from bot.core import Core
from bot.db.models import Droplet, Operation, OpState, Router, Site
from bot.db.types import utcnow
from bot.operations import PUSH_ROUTER_CONFIG as PUSH_KIND
from bot.render.router import render_router_sections
from bot.render.uci import UciSection
from bot.router.access import RouterTiming
from bot.router.push import AdoptedPush, PushBlocked, RouterState, apply_push, make_plan, plan_push
from bot.router.service import RouterService
from bot.services.audit import Actor
from bot.services.vpn_keys import ensure_site_keys
from bot.settings import Settings
from bot.site import SiteSpec
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_detect import plant_e3372h_stick
from tests.test_router_support import uci_get, wait_until
from tests.test_router_tunnel import ROUTER_PW_ENV, site_spec

CONFIGS = ("etc/config/network", "etc/config/firewall")
PENDING = "etc/camreach/push"
REFUSED = "is still waiting for confirmation"
# Short enough that the tests see the router's own deadline pass.
DEADLINE = 8
TIMING = RouterTiming(connect_timeout=3, command_timeout=15, rollback_deadline=DEADLINE,
                      holdoff=1, confirm_grace=5)


def config_files(router: OpenWrtRouter) -> list[bytes]:
    return [(router.root / f).read_bytes() for f in CONFIGS]


def pending_id(router: OpenWrtRouter) -> str | None:
    path = router.root / PENDING / "id"
    return path.read_text().strip() if path.exists() else None


def last_line(router: OpenWrtRouter) -> str:
    return (router.root / "etc/camreach/last").read_text().strip()


def camreach_exe() -> str:
    return shutil.which("camreach", path=str(Path(sys.executable).parent)) or "camreach"


async def camreach(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(camreach_exe(), *args, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def add_site(core: Core, spec: SiteSpec, router: OpenWrtRouter) -> int:
    """A site whose "droplet" is the host side of the router's test link (nothing leaves)."""
    await core.apply_site(spec, Actor.cli())
    async with core.sessions.begin() as s:
        site = (await s.execute(select(Site).where(Site.name == spec.name))).scalar_one()
        s.add(Droplet(site_id=site.id, name=f"camreach-{spec.name}", region="fra1", size="s",
                      image="ubuntu-24-04-x64", status="active",
                      public_ipv4=router.host_addr))
        await ensure_site_keys(s, core.secrets.box, site, spec)
        return site.id


async def operations(core: Core) -> list[Operation]:
    async with core.sessions() as s:
        return list((await s.execute(select(Operation).order_by(Operation.id))).scalars())


async def add_operation(core: Core, site_id: int, *, push_id: str, state: OpState,
                        expect: str | None = None, live: bool = False) -> int:
    """A push operation row as another run left it (``live``: its owner is this process)."""
    now = utcnow()
    params: dict[str, Any] = {"confirm_via": "lan", "push_id": push_id}
    if expect is not None:
        params["expect"] = expect
    async with core.sessions.begin() as s:
        op = Operation(kind=PUSH_KIND, site_id=site_id, state=state, params=params,
                       started_at=now, heartbeat_at=now, message="Applying",
                       owner_host=socket.gethostname() if live else "elsewhere",
                       owner_pid=os.getpid() if live else 4242,
                       owner_token=secrets.token_hex(8), step=2, total_steps=4,
                       finished_at=None if live else now,
                       error=None if live else "camreach stopped before this finished")
        s.add(op)
        await s.flush()
        return op.id


@dataclass
class Bench:
    router: OpenWrtRouter
    env: dict[str, str]
    site_id: int


@pytest.fixture
async def bench(settings: Settings, cli_env: dict[str, str], openwrt_router: OpenWrtRouter
                ) -> Bench:
    """A router on the desk, connected and detected with the real CLI (as in the README)."""
    router = openwrt_router
    plant_e3372h_stick(router)
    core = await Core.open(settings)
    try:
        site_id = await add_site(core, site_spec(router), router)
    finally:
        await core.close()
    env = dict(cli_env, **{ROUTER_PW_ENV: router.root_password})
    for command in ("connect", "detect"):
        code, _, err = await camreach(env, "router", command, "farm")
        assert code == 0, err
    return Bench(router, env, site_id)


@pytest.fixture
async def service(core: Core, bench: Bench) -> AsyncIterator[RouterService]:
    """The push operation in this process, with a rollback deadline of a few seconds."""
    svc = RouterService(core.sessions, core.secrets, core.droplets,
                        env={ROUTER_PW_ENV: bench.router.root_password}, timing=TIMING)
    core.operations.register(PUSH_KIND, svc.push_operation)
    yield svc
    await svc.close()


async def apply_elsewhere(service: RouterService, sections: list[UciSection], *,
                          deadline: int) -> tuple[str, str]:
    """Apply as a run that then dies would: (push id, fingerprint of the plan it applied)."""
    push_id = secrets.token_hex(8)
    async with service.session("farm", "lan") as conn:
        plan = await plan_push(conn, sections)
        applied = await apply_push(conn, plan, deadline=deadline, holdoff=1, push_id=push_id)
    assert applied is not None
    return push_id, plan.fingerprint


async def site_sections(service: RouterService, **modem: Any) -> list[UciSection]:
    config = await service.router_config("farm")
    if modem:
        config = replace(config, modem=replace(config.modem, **modem))
    return render_router_sections(config)


# --- the issue: SIGKILL after the apply, then the same command -----------------------------


async def test_push_killed_after_the_apply_is_confirmed_by_the_same_command_again(
    bench: Bench, core: Core,
) -> None:
    router = bench.router
    before = config_files(router)
    command = ("router", "push", "farm", "--yes", "--confirm-via", "lan")

    proc = await asyncio.create_subprocess_exec(camreach_exe(), *command, env=bench.env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    try:
        # The router's own files show the moment the push took effect: kill camreach then,
        # in its holdoff before the confirm.
        await wait_until(lambda: all(a != b for a, b in zip(config_files(router), before,
                                                            strict=True)),
                         60, "the push to change the router's files")
    finally:
        proc.send_signal(signal.SIGKILL)
        _, first_err = await proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert "Confirmed" not in first_err.decode()
    await wait_until(lambda: (router.root / PENDING / "state").exists()
                     and (router.root / PENDING / "state").read_text().strip() == "applied",
                     15, "the router to finish the swap")
    killed_push = pending_id(router)
    assert killed_push is not None  # pending: the router rolls it back without a confirm
    new = config_files(router)
    assert new != before
    [killed] = await operations(core)
    assert killed.state == OpState.RUNNING and killed.owner_pid == proc.pid
    assert killed.params["push_id"] == killed_push  # recorded before the apply

    code, out, err = await camreach(bench.env, *command)

    assert code == 0, err
    assert "busy" not in err
    assert f"confirm push {killed_push}, which operation #{killed.id} applied" in out
    assert f"Confirmed the push the interrupted operation #{killed.id} had applied" in err
    assert not (router.root / PENDING).exists()
    assert last_line(router) == f"{killed_push} confirmed"
    assert "camreach-apply" not in router.run("ps w").stdout  # its rollback timer is gone
    # The deadline passes: what the timer would have run, then a reboot's boot hook.
    router.run(f"/etc/camreach/rollback {killed_push} deadline")
    router.run("/etc/rc.d/S18camreach-rollback boot")
    assert config_files(router) == new
    assert uci_get(router, "network.wg0.proto") == "wireguard"
    assert uci_get(router, "network.wwan.proto") == "ncm"
    code, out, err = await camreach(bench.env, "router", "push", "farm", "--dry-run")
    assert code == 0 and "No changes" in out, out + err

    first, second = await operations(core)
    assert (first.state, first.retried_by) == (OpState.INTERRUPTED, second.id)
    assert second.state == OpState.SUCCEEDED and second.params["push_id"] == killed_push
    async with core.sessions() as s:
        row = (await s.execute(select(Router))).scalar_one()
    assert row.last_push_at is not None


# --- adoption in the operation, with the router's real (short) deadline --------------------


async def test_remaining_changes_are_pushed_after_the_interrupted_push_is_confirmed(
    bench: Bench, core: Core, service: RouterService,
) -> None:
    router = bench.router
    # The interrupted run pushed an older version of the site (another APN).
    older = await site_sections(service, apn="old.example")
    killed_push, _ = await apply_elsewhere(service, older, deadline=DEADLINE)
    op_id = await add_operation(core, bench.site_id, push_id=killed_push,
                                state=OpState.INTERRUPTED)

    plan = await service.plan_push("farm", "lan")
    assert plan.adopt is not None and plan.adopt.op_id == op_id and not plan.no_changes
    assert plan.diff[0].startswith(f"! first: confirm push {killed_push}")
    assert plan.changes == ("network.wwan.apn: 'old.example' → 'internet'",)

    view = await core.operations.start(PUSH_KIND, site="farm",
                                       params={"expect": plan.fingerprint, "confirm_via": "lan"})
    done = await core.operations.wait(view.id)

    assert done.state == OpState.SUCCEEDED, done.error
    assert done.message.startswith(f"Confirmed the push the interrupted operation #{op_id} "
                                   "had applied, then applied and confirmed 1 changes to ")
    new_push = done.params["push_id"]
    assert new_push != killed_push
    # Past the deadline of both pushes (the second was applied after the first): nothing
    # rolls back.
    await asyncio.sleep(DEADLINE + 1)
    assert not (router.root / PENDING).exists()
    assert last_line(router) == f"{new_push} confirmed"
    assert uci_get(router, "network.wwan.apn") == "internet"
    async with service.session("farm", "lan") as conn:
        assert (await plan_push(conn, await site_sections(service))).no_changes


async def test_the_retry_button_confirms_the_push_its_operation_had_applied(
    bench: Bench, core: Core, service: RouterService,
) -> None:
    router = bench.router
    before = config_files(router)
    killed_push, approved = await apply_elsewhere(service, await site_sections(service),
                                                  deadline=DEADLINE)
    applied_at = asyncio.get_running_loop().time()
    new = config_files(router)
    assert new != before
    # The interrupted operation, with the fingerprint its user approved (before the apply).
    op_id = await add_operation(core, bench.site_id, push_id=killed_push,
                                state=OpState.INTERRUPTED, expect=approved)

    view = await core.retry_operation(op_id, Actor.cli())
    done = await core.operations.wait(view.id)

    assert done.state == OpState.SUCCEEDED, done.error
    assert done.message.startswith(
        f"Confirmed the push the interrupted operation #{op_id} had applied; the router keeps it")
    await asyncio.sleep(max(0.0, applied_at + DEADLINE + 2 - asyncio.get_running_loop().time()))
    assert config_files(router) == new
    assert last_line(router) == f"{killed_push} confirmed"
    assert not (router.root / PENDING).exists()


async def test_an_interrupted_push_left_half_done_is_undone_not_kept(
    bench: Bench, core: Core, service: RouterService,
) -> None:
    router = bench.router
    before = config_files(router)
    killed_push, _ = await apply_elsewhere(service, await site_sections(service), deadline=300)
    # Killed between arming and the end of the swap (a mix on disk, as test_router_push makes
    # it): the confirm path rolls such a push back instead of keeping it.
    router.run("cp -p /etc/camreach/push/backup/firewall /etc/config/firewall"
               " && echo armed > /etc/camreach/push/state")
    op_id = await add_operation(core, bench.site_id, push_id=killed_push,
                                state=OpState.INTERRUPTED)

    plan = await service.plan_push("farm", "lan")
    assert plan.adopt is not None and plan.adopt.op_id == op_id and not plan.adopt.applied
    assert plan.diff[0].startswith(f"! first: undo push {killed_push}")
    view = await core.operations.start(PUSH_KIND, site="farm",
                                       params={"expect": plan.fingerprint, "confirm_via": "lan"})
    done = await core.operations.wait(view.id)

    # The diff the user saw was against the mix: nothing more is applied without a new look.
    assert done.state == OpState.FAILED and done.error is not None
    assert f"did not keep push {killed_push}" in done.error and "not finished" in done.error
    assert config_files(router) == before
    assert not (router.root / PENDING).exists()
    assert last_line(router) == f"{killed_push} rolled-back incomplete"
    again = await service.plan_push("farm", "lan")
    assert again.adopt is None and not again.no_changes


# --- a pending push that no interrupted operation of the site recorded ---------------------


async def test_a_pending_push_no_interrupted_operation_recorded_is_still_refused(
    bench: Bench, core: Core, service: RouterService,
) -> None:
    router = bench.router
    foreign, _ = await apply_elsewhere(service, await site_sections(service, apn="x.example"),
                                       deadline=300)
    pending_files = config_files(router)

    async def refused_everywhere() -> None:
        with pytest.raises(PushBlocked, match=REFUSED):
            await service.plan_push("farm", "lan")
        code, out, err = await camreach(bench.env, "router", "push", "farm", "--yes",
                                        "--confirm-via", "lan")
        assert code == 1 and REFUSED in err, out + err
        assert f"An earlier push ({foreign})" in err
        assert pending_id(router) == foreign and config_files(router) == pending_files

    # Nobody recorded it (LuCI-style tools, another camreach database...).
    await refused_everywhere()
    view = await core.operations.start(PUSH_KIND, site="farm", params={"confirm_via": "lan"})
    done = await core.operations.wait(view.id)
    assert done.state == OpState.FAILED and done.error is not None and REFUSED in done.error
    assert pending_id(router) == foreign

    # A failed run recorded it: it gave up on it, it was not interrupted.
    async with core.sessions.begin() as s:
        failed = await s.get(Operation, view.id)
        assert failed is not None
        failed.params = {"push_id": foreign}
    await refused_everywhere()

    # An interrupted push of another site recorded it.
    other = SiteSpec.model_validate({**site_spec(router).to_json(), "name": "barn"})
    barn = await add_site(core, other, router)
    await add_operation(core, barn, push_id=foreign, state=OpState.INTERRUPTED)
    await refused_everywhere()

    # A live operation of this site recorded it (it is confirming that push right now).
    live = await add_operation(core, bench.site_id, push_id=foreign, state=OpState.RUNNING,
                               live=True)
    with pytest.raises(PushBlocked, match=REFUSED):
        await service.plan_push("farm", "lan")
    # ... and an interrupted one too: the live one still owns the push.
    await add_operation(core, bench.site_id, push_id=foreign, state=OpState.INTERRUPTED)
    with pytest.raises(PushBlocked, match=REFUSED):
        await service.plan_push("farm", "lan")
    async with core.sessions.begin() as s:
        row = await s.get(Operation, live)
        assert row is not None
        row.state = OpState.FAILED
    # Once only the interrupted one is left, the push is adopted.
    plan = await service.plan_push("farm", "lan")
    assert plan.adopt is not None and plan.adopt.push_id == foreign
    assert pending_id(router) == foreign and config_files(router) == pending_files


# --- the plan itself (pure) ----------------------------------------------------------------


def state(pending: str | None) -> RouterState:
    return RouterState(sums=MappingProxyType({"network": "a" * 32, "firewall": "b" * 32}),
                       current={}, uncommitted=MappingProxyType({}),
                       errors=MappingProxyType({}), pending=pending, last="")


def test_make_plan_adopts_only_the_recorded_pending_push() -> None:
    wanted = [UciSection("network", "interface", "camtest", {"proto": "none"})]
    adopt = AdoptedPush("0123456789abcdef", 7, expect="f" * 16)
    plain = make_plan(state(None), wanted, where="r")
    with pytest.raises(PushBlocked, match=REFUSED):
        make_plan(state("fedcba9876543210 applied"), wanted, where="r", adopt=adopt)
    with pytest.raises(PushBlocked, match=REFUSED):
        make_plan(state("0123456789abcdef applied"), wanted, where="r")

    plan = make_plan(state("0123456789abcdef applied"), wanted, where="r", adopt=adopt)
    assert plan.adopt == adopt and plan.changes == plain.diff
    assert plan.diff[0].startswith("! first: confirm push 0123456789abcdef, which operation #7")
    assert plan.fingerprint != plain.fingerprint  # approving it approves the confirm too
    assert plan.without_adoption().fingerprint == plain.fingerprint

    # Nothing else to change: still something to do (the confirm).
    nothing = make_plan(state("0123456789abcdef applied"), [], where="r", adopt=adopt)
    assert not nothing.no_changes and len(nothing.diff) == 1
    half = make_plan(state("0123456789abcdef armed"), [], where="r", adopt=adopt)
    assert half.adopt is not None and not half.adopt.applied
    assert half.diff[0].startswith("! first: undo push 0123456789abcdef")
    # Gone by the time the router was read: nothing to adopt.
    assert make_plan(state(None), wanted, where="r", adopt=adopt).adopt is None

