"""SSH rules on the real OpenWrt userland: who reaches the router's SSH, and password login.

After ``router connect`` dropbear takes no passwords (root included) and, once the config is
pushed, fw4 lets SSH in over the tunnel only from the droplet's tunnel address. A phone is
played by a second address (10.8.0.10) on the droplet stand-in's wg0: its packets reach the
router through the real WireGuard tunnel with the phone's address as their source, exactly as
a phone's packets forwarded by the droplet do. ``router connect --password`` (the core call
the CLI makes) turns password login back on. A dropbear change that would lock camreach out
is rolled back, by camreach at once or by the router itself.

Assertions read the router: its ``/etc/config/dropbear`` (uci), the flags procd runs dropbear
with, fw4's counters, and real connection attempts.
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncssh
import pytest
from sqlalchemy import select

from bot.adapters.ssh import SshConnection, ssh_session
from bot.core import Core
from bot.db.models import AuditLog, Droplet, Router, Site
from bot.errors import AuthRejected, RemoteFailed
from bot.render.wg_conf import server_conf
from bot.router.access import PASSWORD_LOGIN_SCRIPT, RouterTiming, set_password_login
from bot.router.service import RouterService
from bot.services import identity
from bot.services.audit import Actor
from bot.services.droplets import server_config
from bot.services.vpn_keys import ensure_site_keys
from tests.infra.droplet_host import DropletHost
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_router_detect import plant_e3372h_stick
from tests.test_router_support import target, uci_get, wait_until
from tests.test_router_tunnel import ROUTER_PW_ENV, link_router_to_droplet, site_spec

DROPLET_TUNNEL = "10.8.0.1"  # the site's vpn server address (10.8.0.0/24)
ROUTER_TUNNEL = "10.8.0.2"
PHONE = "10.8.0.10"
TIMING = RouterTiming(connect_timeout=3, command_timeout=20, rollback_deadline=20,
                      confirm_grace=8)

# Run inside the droplet stand-in's network namespace: one TCP or ICMP attempt from a chosen
# source address. Prints "banner TEXT", "refused", "timeout", "echo-reply" or "error N".
PROBE = r"""
import os, socket, struct, sys
kind, src, dst, port, timeout = sys.argv[1:6]
timeout = float(timeout)
if kind == "tcp":
    s = socket.socket()
    s.settimeout(timeout)
    s.bind((src, 0))
    try:
        s.connect((dst, int(port)))
        print("banner", s.recv(64).decode(errors="replace").strip())
    except ConnectionRefusedError:
        print("refused")
    except TimeoutError:
        print("timeout")
    except OSError as exc:
        print("error", exc.errno)
    sys.exit(0)
def checksum(data):
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
ident = os.getpid() & 0xFFFF
body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"camreach"
packet = struct.pack("!BBHHH", 8, 0, checksum(body), ident, 1) + b"camreach"
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.bind((src, 0))
s.settimeout(timeout)
s.sendto(packet, (dst, 0))
try:
    while True:
        data, addr = s.recvfrom(2048)
        head = (data[0] & 0x0F) * 4
        kind_, _, _, rid, _ = struct.unpack("!BBHHH", data[head:head + 8])
        if addr[0] == dst and kind_ == 0 and rid == ident:
            print("echo-reply")
            break
except TimeoutError:
    print("timeout")
"""


def probe(droplet: DropletHost, kind: str, src: str, dst: str, port: int = 0,
          timeout: float = 3.0) -> str:
    res = subprocess.run(
        ["ip", "netns", "exec", droplet.netns, sys.executable, "-c", PROBE, kind, src, dst,
         str(port), str(timeout)],
        capture_output=True, text=True, timeout=timeout + 10, check=True)
    return res.stdout.strip()


def dropbear_options(router: OpenWrtRouter) -> tuple[str | None, str | None]:
    """PasswordAuth and RootPasswordAuth as /etc/config/dropbear has them."""
    return (uci_get(router, "dropbear.@dropbear[0].PasswordAuth"),
            uci_get(router, "dropbear.@dropbear[0].RootPasswordAuth"))


def dropbear_commands(router: OpenWrtRouter) -> list[list[str]]:
    """The command lines procd runs dropbear's instances with (what is live, not the file)."""
    out = router.run("ubus call service list '{\"name\":\"dropbear\"}'").stdout
    instances = json.loads(out)["dropbear"]["instances"]
    return [i["command"] for i in instances.values() if i.get("running")]


def password_flags(router: OpenWrtRouter) -> list[str] | None:
    """dropbear's -s (no password logins) and -g (none for root) flags that procd runs it
    with; None when no dropbear instance runs."""
    commands = dropbear_commands(router)
    if not commands:
        return None
    return sorted({flag for c in commands for flag in c if flag in ("-s", "-g")})


def passwords_refused(router: OpenWrtRouter) -> bool:
    return password_flags(router) == ["-g", "-s"]


async def password_login_works(router: OpenWrtRouter, host: str | None = None) -> bool:
    """Root with the right password and no key at all (asyncssh, as any SSH client)."""
    try:
        async with asyncssh.connect(
            host or router.addr, router.ssh_port, username="root",
            password=router.root_password, client_keys=[], known_hosts=None, agent_path=None,
            config=[], preferred_auth="password,keyboard-interactive", connect_timeout=5,
        ) as conn:
            return (await conn.run("echo in", check=False)).stdout == "in\n"
    except asyncssh.PermissionDenied:
        return False


async def key_login_works(router: OpenWrtRouter, key: str, pinned: str) -> bool:
    async with ssh_session(target(router, key, pinned)) as conn:
        return (await conn.run("echo in")).stdout == "in\n"


def fw4_counter(router: OpenWrtRouter, chain: str, needle: str) -> int:
    """Packets counted by the rule of fw4's ``chain`` whose text contains ``needle``."""
    listed = router.run(f"nft list chain inet fw4 {shlex.quote(chain)}").stdout
    for line in listed.splitlines():
        if needle in line and "counter packets" in line:
            return int(line.split("counter packets", 1)[1].split()[0])
    raise AssertionError(f"no counted rule with {needle!r} in {chain}:\n{listed}")


@dataclass
class Lab:
    router: OpenWrtRouter
    service: RouterService
    key: str
    droplet: DropletHost | None = None


@pytest.fixture
async def lab(
    core: Core, openwrt_router_factory: Any, droplet_host: DropletHost
) -> AsyncIterator[Lab]:
    """The router (fw4 running, userspace WireGuard) linked to the droplet stand-in, as in
    test_router_tunnel; the droplet's wg0 has the site's server config."""
    router: OpenWrtRouter = openwrt_router_factory(
        services=("log", "rpcd", "network", "dropbear", "firewall"))
    router.enable_userspace_wireguard()
    plant_e3372h_stick(router)
    link_router_to_droplet(router, droplet_host)
    spec = site_spec(router)
    assert str(spec.vpn.server_address) == DROPLET_TUNNEL
    assert str(spec.vpn.router_address) == ROUTER_TUNNEL
    await core.apply_site(spec, Actor.cli())
    async with core.sessions.begin() as s:
        site = (await s.execute(select(Site).where(Site.name == "farm"))).scalar_one()
        s.add(Droplet(site_id=site.id, name="camreach-farm", region="blr1", size="s-1vcpu",
                      image="ubuntu-24-04-x64", status="active", public_ipv4=droplet_host.addr))
        (_, server_private), (router_peer, _) = await ensure_site_keys(
            s, core.secrets.box, site, spec)
    droplet_host.bring_up_wg0(server_conf(server_config(spec, server_private, router_peer, [])))
    key = await identity.client_key(core.secrets)
    droplet_host.authorize(identity.client_public_key(key))
    service = RouterService(core.sessions, core.secrets, core.droplets,
                            env={ROUTER_PW_ENV: router.root_password}, timing=TIMING)
    yield Lab(router, service, key, droplet_host)
    await service.close()


async def test_connect_turns_passwords_off_and_only_the_droplet_reaches_ssh_over_the_tunnel(
    core: Core, lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    router, droplet, service = lab.router, lab.droplet, lab.service
    assert droplet is not None
    assert dropbear_options(router) == ("on", "on")  # a freshly flashed router
    assert await password_login_works(router)

    # -- connect: the key goes in, then password login goes off (root included) -------------
    first = await service.first_contact("farm")
    assert first.key_added and first.password_changed and not first.password_login
    assert "password login is now off" in first.message
    assert "camreach router connect farm --password" in first.message
    assert dropbear_options(router) == ("off", "off")
    assert passwords_refused(router)  # dropbear restarted with -s -g
    assert not await password_login_works(router)  # (3) the right password, refused
    assert await key_login_works(router, lab.key, first.host_key)
    assert router.run("cat /etc/camreach/ssh/last").stdout.split()[1:] == ["confirmed"]
    # Its state is root's alone, not in world-writable /tmp (another user could plant it).
    assert (router.root / "etc/camreach/ssh").stat().st_mode & 0o777 == 0o700
    assert not list((router.root / "tmp").glob("camreach-*"))
    # The confirm stopped the router's rollback timer.
    await wait_until(lambda: "sleep" not in router.run("ps w").stdout, 5, "the timer stopped")

    # -- the firewall, pushed and confirmed through the tunnel ------------------------------
    await service.detect("farm")
    plan = await service.plan_push("farm")
    assert f"+ firewall.camreach_vpn_ssh.src_ip: '{DROPLET_TUNNEL}/32'" in plan.diff
    message = await service.push("farm", expect=plan.fingerprint)
    assert message.startswith("Applied and confirmed"), message
    assert uci_get(router, "firewall.camreach_vpn_ssh.src_ip") == f"{DROPLET_TUNNEL}/32"
    handshakes = router.run("wg show wg0 latest-handshakes").stdout.split()
    assert handshakes and handshakes[-1] != "0"

    # A phone: its own address on the droplet's wg0; what it sends crosses the tunnel with
    # that address as the source. The router's LAN address is routed into the tunnel as well
    # (a phone's config lists the site's LAN).
    droplet.run(f"ip addr add {shlex.quote(PHONE)}/32 dev wg0", check=True)
    droplet.run(f"ip route add {shlex.quote(router.addr)}/32 dev wg0", check=True)

    # (1) From the droplet's tunnel address the router's SSH answers, at either address.
    assert probe(droplet, "tcp", DROPLET_TUNNEL, ROUTER_TUNNEL, 22).startswith("banner SSH-2.0-")
    assert probe(droplet, "tcp", DROPLET_TUNNEL, router.addr, 22).startswith("banner SSH-2.0-")

    # (2) From the phone's address it does not: fw4 refuses at once (a TCP reset).
    accepted = fw4_counter(router, "input_camvpn", "tcp dport 22")
    rejected = fw4_counter(router, "reject_from_camvpn", "handle_reject")
    began = time.monotonic()
    assert probe(droplet, "tcp", PHONE, ROUTER_TUNNEL, 22) == "refused"
    assert probe(droplet, "tcp", PHONE, router.addr, 22) == "refused"
    assert time.monotonic() - began < 3  # refused at once, not left to time out
    assert fw4_counter(router, "input_camvpn", "tcp dport 22") == accepted
    assert fw4_counter(router, "reject_from_camvpn", "handle_reject") >= rejected + 2
    # ... while the phone's packets do reach the router and come back: ping is open to the
    # whole tunnel, so the refusal above is the SSH rule, not routing.
    assert probe(droplet, "icmp", PHONE, ROUTER_TUNNEL) == "echo-reply"
    # The droplet's SSH still works after the phone's attempts.
    assert probe(droplet, "tcp", DROPLET_TUNNEL, ROUTER_TUNNEL, 22).startswith("banner SSH-2.0-")

    # -- (4) `router connect farm --password`: the core call the CLI makes -------------------
    monkeypatch.setenv(ROUTER_PW_ENV, router.root_password)
    back = await core.router_first_contact("farm", Actor.cli(), password_login=True)
    assert back.password_login and back.password_changed and not back.key_added
    assert "password login is now on" in back.message
    assert dropbear_options(router) == ("on", "on")
    assert password_flags(router) == []
    assert await password_login_works(router)
    assert await key_login_works(router, lab.key, first.host_key)  # the key stays
    async with core.sessions() as s:
        audit = (await s.execute(select(AuditLog).where(AuditLog.action == "router.connect")
                                 .order_by(AuditLog.id.desc()))).scalars().first()
    assert audit is not None and audit.detail == "password login on"

    # A plain connect turns it off again; once more changes nothing.
    off = await core.router_first_contact("farm", Actor.cli())
    assert off.password_changed and not off.password_login
    assert dropbear_options(router) == ("off", "off") and passwords_refused(router)
    assert not await password_login_works(router)
    again = await service.first_contact("farm")
    assert not again.password_changed and "password login stays off" in again.message
    async with core.sessions() as s:
        row = (await s.execute(select(Router).join(Site).where(Site.name == "farm"))
               ).scalar_one()
    assert row.key_installed


# -- never locked out ----------------------------------------------------------------------

@pytest.fixture
async def bench(core: Core, openwrt_router: OpenWrtRouter) -> AsyncIterator[Lab]:
    """The router on the LAN only (no tunnel needed): the site, and camreach's key."""
    spec = site_spec(openwrt_router)
    await core.apply_site(spec, Actor.cli())
    service = RouterService(core.sessions, core.secrets, core.droplets,
                            env={ROUTER_PW_ENV: openwrt_router.root_password}, timing=TIMING)
    key = await identity.client_key(core.secrets)
    yield Lab(openwrt_router, service, key)
    await service.close()


def break_dropbear_reload(router: OpenWrtRouter) -> None:
    """``/etc/init.d/dropbear reload`` does nothing: dropbear keeps its old flags."""
    script = router.root / "etc/init.d/dropbear"
    lines = script.read_text().splitlines(keepends=True)
    script.write_text(lines[0] + '[ "$action" = reload ] && exit 0\n' + "".join(lines[1:]))


async def test_a_dropbear_that_does_not_take_the_change_gets_the_old_setting_back(
    core: Core, bench: Lab
) -> None:
    router, service = bench.router, bench.service
    before = (router.root / "etc/config/dropbear").read_bytes()
    break_dropbear_reload(router)

    with pytest.raises(RemoteFailed, match="did not come back with the new setting"):
        await service.first_contact("farm")

    assert (router.root / "etc/config/dropbear").read_bytes() == before
    assert dropbear_options(router) == ("on", "on")
    assert await password_login_works(router)
    assert not (router.root / "etc/camreach/ssh/pending").exists()
    assert "rolled-back not-running" in router.run("cat /etc/camreach/ssh/last").stdout
    # The key was proven before the attempt, and stays installed and recorded.
    async with core.sessions() as s:
        row = (await s.execute(select(Router).join(Site).where(Site.name == "farm"))
               ).scalar_one()
    assert row.key_installed and row.ssh_host_key is not None
    assert await key_login_works(router, bench.key, row.ssh_host_key)


async def test_a_key_refused_after_the_restart_is_rolled_back_at_once(bench: Lab) -> None:
    router = bench.router
    contact = await bench.service.first_contact("farm", password_login=True)
    assert not contact.password_changed  # a fresh router has password login already
    pinned = contact.host_key

    @asynccontextmanager
    async def refused() -> AsyncIterator[SshConnection]:
        raise AuthRejected("the router refused the login")
        yield  # pragma: no cover

    async with ssh_session(target(router, bench.key, pinned)) as conn:
        with pytest.raises(RemoteFailed, match="the router put the previous setting back"):
            await set_password_login(conn, False, refused, deadline=60)
    assert dropbear_options(router) == ("on", "on")
    await wait_until(lambda: password_flags(router) == [], 15,
                     "dropbear back with password login")
    assert await password_login_works(router)
    assert "rolled-back no-login" in router.run("cat /etc/camreach/ssh/last").stdout


async def test_the_router_rolls_back_by_itself_when_camreach_never_confirms(
    bench: Lab
) -> None:
    router = bench.router
    pinned = (await bench.service.first_contact("farm", password_login=True)).host_key
    op = secrets.token_hex(8)
    command = "sh -c " + shlex.quote(PASSWORD_LOGIN_SCRIPT) + " camreach-ssh " + " ".join(
        shlex.quote(a) for a in ("apply", op, "off", "5"))

    # camreach applies, then is gone (closed laptop) before it could confirm.
    async with ssh_session(target(router, bench.key, pinned)) as conn:
        assert (await conn.run(command)).stdout.strip() == f"applied {op}"
    assert dropbear_options(router) == ("off", "off") and passwords_refused(router)
    assert not await password_login_works(router)

    await wait_until(lambda: dropbear_options(router) == ("on", "on"), 15,
                     "the router's own rollback")
    await wait_until(lambda: password_flags(router) == [], 15,
                     "dropbear restarted with password login")
    assert await password_login_works(router)
    assert router.run("cat /etc/camreach/ssh/last").stdout.split() == [op, "rolled-back",
                                                                       "deadline"]



async def test_a_change_a_reboot_left_unconfirmed_is_undone_by_the_next_connect(
    bench: Lab
) -> None:
    router = bench.router
    pinned = (await bench.service.first_contact("farm", password_login=True)).host_key
    before = (router.root / "etc/config/dropbear").read_bytes()
    op = secrets.token_hex(8)
    command = "sh -c " + shlex.quote(PASSWORD_LOGIN_SCRIPT) + " camreach-ssh " + " ".join(
        shlex.quote(a) for a in ("apply", op, "off", "600"))
    async with ssh_session(target(router, bench.key, pinned)) as conn:
        assert (await conn.run(command)).stdout.strip() == f"applied {op}"
    # A power cut inside the window: the timer is gone and the router booted anew.
    pending = router.root / "etc/camreach/ssh/pending"
    router.run(f"kill $(cat {shlex.quote('/etc/camreach/ssh/pending/timer')})")
    (pending / "boot").write_text("another-boot\n")

    # A connect asking for password login is not refused as "busy": the stale change is
    # undone first (the previous file back), then this one applies.
    contact = await bench.service.first_contact("farm", password_login=True)
    assert contact.password_login
    assert (router.root / "etc/config/dropbear").read_bytes() == before
    assert dropbear_options(router) == ("on", "on")
    assert not pending.exists()
    assert "rolled back (stale)" in router.run("logread").stdout
    await wait_until(lambda: password_flags(router) == [], 15, "dropbear with password login")
    assert await password_login_works(router)
