"""Pushing config to the real OpenWrt userland: diff, apply, confirm, rollback.

Every assertion reads the router's own ``/etc/config/network`` and ``/etc/config/firewall``
(as its ``uci`` wrote them) or asks its ``uci``; none looks at the commands camreach sent.
Deadlines are a few seconds so the rollback tests stay fast.
"""

from __future__ import annotations

import asyncio

import pytest

from bot.adapters.ssh import ssh_session
from bot.errors import CamreachError, ValidationFailed
from bot.render.uci import UciSection
from bot.router.push import (
    PushBlocked,
    PushRolledBack,
    Route,
    apply_push,
    confirm_push,
    plan_push,
    push_config,
)
from bot.site import parse_site
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_support import (
    config_sums,
    first_contact,
    lan_path,
    sections,
    target,
    uci_get,
    wait_until,
)


def unreachable_path(router: OpenWrtRouter, key: str, pinned: str) -> Route:
    """A path that never works (nothing listens there): the confirm never comes."""
    t = target(router, key, pinned, timeout=1)

    def opener():  # type: ignore[no-untyped-def]
        return ssh_session(type(t)(t.host, 2222, t.user, "nowhere", pinned, key,
                                   connect_timeout=1, command_timeout=1))

    return Route(opener, "over a path that does not work")


async def test_push_applies_and_confirms_then_same_spec_changes_nothing(
    openwrt_router: OpenWrtRouter,
) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    path = lan_path(router, key, pinned)

    result = await push_config(path, path, sections(), deadline=5, holdoff=1, grace=2)

    assert result.outcome == "applied" and result.changed == ("network", "firewall")
    assert uci_get(router, "network.wwan.proto") == "ncm"
    assert uci_get(router, "network.wwan.device") == "/dev/cdc-wdm0"
    assert uci_get(router, "network.wg0.addresses") == "10.8.0.2/24"
    assert uci_get(router, "firewall.camreach_vpn.name") == "camvpn"
    network = (router.root / "etc/config/network").read_text()
    assert "config interface 'wwan'" in network and "option apn 'airtelgprs.com'" in network
    assert "config interface 'lan'" in network  # the rest of the file is kept
    assert (router.root / "etc/camreach/last").read_text() == f"{result.push_id} confirmed\n"
    assert not (router.root / "etc/camreach/push").exists()
    # The confirm stopped the rollback timer (and with no push pending it would do nothing).
    assert "camreach-apply" not in router.run("ps w").stdout
    after = config_sums(router)

    files = [router.root / "etc/config/network", router.root / "etc/config/firewall"]
    stamps = [f.stat().st_mtime_ns for f in files]
    again = await push_config(path, path, sections(), deadline=5, holdoff=1, grace=2)
    assert again.outcome == "unchanged" and again.message.startswith("No changes")
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert config_sums(router) == after
    assert (router.root / "etc/camreach/last").read_text() == f"{result.push_id} confirmed\n"
    assert not list((router.root / "etc/camreach").glob("stage-*"))


async def test_plan_shows_the_diff_and_hides_secrets_without_touching_anything(
    openwrt_router: OpenWrtRouter,
) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    before = config_sums(router)
    async with lan_path(router, key, pinned).open() as conn:
        plan = await plan_push(conn, sections(pin="4321"))
    assert not plan.no_changes
    assert "+ network.wwan (interface)" in plan.diff
    assert "+ network.wwan.proto: 'ncm'" in plan.diff
    assert "+ network.wwan.pincode: (secret)" in plan.diff
    assert not any("4321" in line for line in plan.diff)
    assert "4321" not in repr(plan)
    assert config_sums(router) == before
    assert not (router.root / "etc/camreach").exists()


async def test_hostile_values_are_stored_literally_and_nothing_runs(
    openwrt_router: OpenWrtRouter,
) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    path = lan_path(router, key, pinned)
    # What ModemConfig lets through for a password and a user name ('"' and control
    # characters it refuses), and a peer description.
    password = "p'w;$(touch /tmp/pwned-1)`touch /tmp/pwned-2`\\#"
    username = "user' ; touch /tmp/pwned-4 ; '"
    description = "cam'era; $(touch /tmp/pwned-5) `touch /tmp/pwned-6` & echo"
    # Newlines and leading/trailing blanks reach uci through the same one quoting function.
    raw = UciSection("network", "interface", "camtest", {
        "proto": "none",
        "description": "line one\n$(touch /tmp/pwned-7)\n'; touch /tmp/pwned-8; '\n\ttab ",
    })
    wanted = [*sections(username=username, password=password, auth="pap",
                        description=description), raw]

    result = await push_config(path, path, wanted, deadline=5, holdoff=1, grace=2)

    assert result.outcome == "applied"
    assert uci_get(router, "network.wwan.password") == password
    assert uci_get(router, "network.wwan.username") == username
    assert uci_get(router, "network.camreach_droplet.description") == description
    assert uci_get(router, "network.camtest.description") == raw.options["description"]
    network = (router.root / "etc/config/network").read_text()
    assert "option password 'p'\\''w;$(touch /tmp/pwned-1)`touch /tmp/pwned-2`" in network
    assert "option description 'line one\n$(touch /tmp/pwned-7)\n'\\''; touch" in network
    assert not list((router.root / "tmp").glob("pwned-*"))
    # The diff of a re-plan reads the values back through `uci show` and finds no change.
    async with path.open() as conn:
        assert (await plan_push(conn, wanted)).no_changes

    # What cannot be a value at all is refused before anything is sent: an APN is a DNS-like
    # name, a section name an identifier.
    after = config_sums(router)
    for hostile in ("inet';reboot;'", "a$(reboot)", "x`id`", "apn\nset network.lan=x"):
        with pytest.raises(ValidationFailed, match="APN"):
            sections(apn=hostile)
        with pytest.raises(ValidationFailed, match="not a valid UCI section name"):
            UciSection("network", "interface", hostile, {"proto": "none"})
    with pytest.raises(ValidationFailed, match="site file is invalid"):
        parse_site({"name": "x", "router": {"password_env": "P"},
                    "modem": {"protocol": "ncm", "apn": "inet';reboot;'"}})
    assert config_sums(router) == after


async def test_a_push_that_is_never_confirmed_is_rolled_back_by_the_router(
    openwrt_router: OpenWrtRouter,
) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    before = config_sums(router)

    with pytest.raises(PushRolledBack) as failed:
        await push_config(lan_path(router, key, pinned), unreachable_path(router, key, pinned),
                          sections(), deadline=3, holdoff=1, grace=3)

    assert "restored its previous configuration by itself" in failed.value.user_message
    assert "over a path that does not work" in failed.value.user_message
    assert "checked over the LAN" in failed.value.user_message
    assert config_sums(router) == before
    assert uci_get(router, "network.wwan") is None
    last = (router.root / "etc/camreach/last").read_text().split()
    assert last[1:] == ["rolled-back", "deadline"]
    assert not (router.root / "etc/camreach/push").exists()


async def test_apply_without_confirm_rolls_back_on_its_own_and_late_confirm_is_refused(
    openwrt_router: OpenWrtRouter,
) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    path = lan_path(router, key, pinned)
    before = config_sums(router)
    async with path.open() as conn:
        plan = await plan_push(conn, sections())
        applied = await apply_push(conn, plan, deadline=2, holdoff=1)
    assert applied is not None
    new = config_sums(router)
    assert new != before and uci_get(router, "network.wwan.proto") == "ncm"
    assert (router.root / "etc/rc.d/S18camreach-rollback").exists()  # the boot hook

    await wait_until(lambda: config_sums(router) == before, 10, "the rollback")
    async with path.open() as conn:
        late = await confirm_push(conn, applied.push_id)
    assert late.outcome == "rolled-back" and late.reason == "deadline"
    assert config_sums(router) == before


async def test_power_cut_during_the_window_is_undone_at_boot(
    openwrt_router: OpenWrtRouter,
) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    before = config_sums(router)
    async with lan_path(router, key, pinned).open() as conn:
        applied = await apply_push(conn, await plan_push(conn, sections()), deadline=300)
    assert applied is not None and config_sums(router) != before
    # A power cut kills the timer with everything else; what remains is the flash.
    router.run("for p in $(pgrep -f camreach-apply); do kill -9 $p; done; pkill -9 -x sleep",
               check=False)
    assert "camreach-apply" not in router.run("ps w").stdout
    # procd runs /etc/rc.d/S* with "boot" when the router starts again.
    router.run("/etc/rc.d/S18camreach-rollback boot")
    assert config_sums(router) == before
    assert (router.root / "etc/camreach/last").read_text().split()[1:] == ["rolled-back", "boot"]


async def test_an_apply_interrupted_on_the_router_is_undone_by_the_confirm(
    openwrt_router: OpenWrtRouter,
) -> None:
    """The router was cut off between arming and the end of the swap: a mix on disk. The
    confirm must not keep it."""
    router = openwrt_router
    key, pinned = await first_contact(router)
    path = lan_path(router, key, pinned)
    before = config_sums(router)
    async with path.open() as conn:
        applied = await apply_push(conn, await plan_push(conn, sections()), deadline=300)
    assert applied is not None
    # Re-create the half-way state: only network swapped, firewall still old, state "armed".
    router.run("cp -p /etc/camreach/push/backup/firewall /etc/config/firewall"
               " && echo armed > /etc/camreach/push/state")
    assert config_sums(router)[1] == before[1] and config_sums(router)[0] != before[0]
    async with path.open() as conn:
        answer = await confirm_push(conn, applied.push_id)
    assert answer.outcome == "rolled-back" and answer.reason == "incomplete"
    assert config_sums(router) == before


async def test_a_config_changed_since_the_plan_is_not_overwritten(
    openwrt_router: OpenWrtRouter,
) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    async with lan_path(router, key, pinned).open() as conn:
        plan = await plan_push(conn, sections())
        router.run("uci set network.lan.ipaddr=10.199.250.1 && uci commit network")
        edited = config_sums(router)
        with pytest.raises(PushBlocked, match="changed since the diff"):
            await apply_push(conn, plan, deadline=5, holdoff=1)
    assert config_sums(router) == edited
    assert uci_get(router, "network.wwan") is None


async def test_unsaved_luci_changes_block_the_push(openwrt_router: OpenWrtRouter) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    router.run("uci set network.lan.ipaddr=10.199.250.1")  # staged, not committed
    before = config_sums(router)
    with pytest.raises(PushBlocked, match="unsaved changes to network"):
        path = lan_path(router, key, pinned)
        await push_config(path, path, sections(), deadline=5, holdoff=1)
    assert config_sums(router) == before
    assert "10.199.250.1" in router.run("uci changes network").stdout  # the user's edit stays


async def test_a_refused_batch_changes_nothing(openwrt_router: OpenWrtRouter) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    before = config_sums(router)
    # A section of a package uci has no file for: uci batch reports an error.
    bogus = [*sections(), UciSection("network", "interface", "fine", {"proto": "none"})]
    async with lan_path(router, key, pinned).open() as conn:
        plan = await plan_push(conn, bogus)
        broken = type(plan)(plan.diff, plan.sums, plan.batch + "set nosuchpkg.x=y\n")
        with pytest.raises(Exception, match="refused the new configuration"):
            await apply_push(conn, broken, deadline=5, holdoff=1)
    assert config_sums(router) == before
    assert not list((router.root / "etc/camreach").glob("stage-*"))
    assert not (router.root / "etc/camreach/push").exists()


# --- a lost connection in the middle -------------------------------------------------------


def has_camreach(router: OpenWrtRouter) -> tuple[bool, bool]:
    """Whether network and firewall each hold camreach's sections (new) or not (old)."""
    return (uci_get(router, "network.wwan") == "interface",
            uci_get(router, "firewall.camreach_vpn") == "zone")


# (where the link is cut, seconds until it comes back, the outcome that must follow)
CUTS = {
    # before the apply is sent: nothing reaches the router
    "after-plan": ("planned", 9.0, "old"),
    # while the apply command is on its way (150 ms latency, cut 0.25 s in)
    "apply-in-flight": ("in-flight", 4.5, "old"),
    # the router ran the apply but its answer is lost; the link returns before the deadline
    "answer-lost-short": ("router-armed", 1.0, "new"),
    # ... and only after the deadline: the router has rolled back by then
    "answer-lost-long": ("router-armed", 4.5, "old"),
    # after the answer arrived, for longer than the deadline
    "after-apply": ("applied", 4.5, "old"),
    # during the confirm, back before the deadline
    "during-confirm": ("confirming", 1.0, "new"),
}


@pytest.mark.parametrize("case", list(CUTS))
async def test_a_cut_link_leaves_old_or_new_never_a_mix(
    openwrt_router: OpenWrtRouter, case: str
) -> None:
    router = openwrt_router
    key, pinned = await first_contact(router)
    path = lan_path(router, key, pinned, timeout=2)
    before = config_sums(router)
    trigger, restore_after, expected = CUTS[case]
    deadline = 4
    tasks: list[asyncio.Task[None]] = []
    push_dir = router.root / "etc/camreach/push"

    async def cut_then_restore(delay: float = 0.0) -> None:
        await asyncio.sleep(delay)
        router.cut_link()
        await asyncio.sleep(restore_after)
        router.restore_link()

    async def cut_when_armed() -> None:
        # The router's own state shows the moment it armed the rollback; cut right then,
        # before its answer can come back.
        while not push_dir.exists():
            await asyncio.sleep(0.002)
        await cut_then_restore()

    async def on_stage(name: str) -> None:
        if name != "planned" and name != trigger:
            return
        if name == "planned" and trigger == "in-flight":
            router.add_latency(150)
            tasks.append(asyncio.create_task(cut_then_restore(0.25)))
        elif name == "planned" and trigger == "router-armed":
            router.add_latency(100)  # time for the cut before the answer is back
            tasks.append(asyncio.create_task(cut_when_armed()))
        elif name == trigger:
            tasks.append(asyncio.create_task(cut_then_restore()))

    try:
        await push_config(path, path, sections(), deadline=deadline, holdoff=1, grace=6,
                          on_stage=on_stage)
        outcome = "new"
    except CamreachError as exc:
        outcome = "old"
        message = exc.user_message
    finally:
        for task in tasks:
            await task
        router.clear_latency()
        router.restore_link()

    # Whatever camreach said, the router ends on one whole configuration.
    await wait_until(lambda: not push_dir.exists(), deadline + 5,
                     "the push to be confirmed or rolled back")
    network_new, firewall_new = has_camreach(router)
    assert network_new == firewall_new, "network and firewall disagree: a mix"
    assert outcome == expected, message if outcome == "old" else outcome
    if outcome == "new":
        assert network_new
    else:
        assert not network_new and config_sums(router) == before, message
        assert "previous" in message


async def test_what_a_push_leaves_on_the_router_is_private(
    openwrt_router: OpenWrtRouter,
) -> None:
    """The batch, the staged copies and the backups hold keys and the SIM PIN: 0600/0700."""
    router = openwrt_router
    key, pinned = await first_contact(router)
    path = lan_path(router, key, pinned)
    async with path.open() as conn:
        plan = await plan_push(conn, sections())
        applied = await apply_push(conn, plan, deadline=30, holdoff=1)
    assert applied is not None
    kept = [p for p in (router.root / "etc/camreach").rglob("*") if not p.is_symlink()]
    assert any(p.name == "network" for p in kept)  # the backup of the old file is there
    loose = {str(p.relative_to(router.root)): oct(p.stat().st_mode & 0o777) for p in kept
             if p.stat().st_mode & 0o077 and p.name != "rollback"}
    assert loose == {}
    for pkg in applied.changed:
        assert (router.root / "etc/config" / pkg).stat().st_mode & 0o077 == 0
    # Scripts leave no predictable scratch directory behind in /tmp either.
    assert not list((router.root / "tmp").glob("camreach-*"))
    await asyncio.sleep(1.5)  # past the holdoff: the router takes confirmations again
    async with path.open() as conn:
        assert (await confirm_push(conn, applied.push_id)).outcome == "confirmed"
