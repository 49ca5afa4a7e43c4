"""The guided /setup from a phone, end to end, against the real parts.

The Bot API is the fake one (python-telegram-bot talks to it over HTTP); DigitalOcean is the
fake API (python-digitalocean talks to it), whose droplets come up as the droplet stand-in
(this machine's sshd and wireguard-go in a namespace, booted by tests.cloudsim from the
droplet's user data). The router is the real OpenWrt userland with dropbear, netifd,
userspace WireGuard and fw4, linked to the droplet by the "LTE" veth of
tests.test_router_tunnel and carrying the sysfs stand-in of an E3372h stick (the test rootfs
has every package that stick needs; the one test of a package install takes two away and
serves them from the signed offline feed of tests.test_router_feed_signing). The camera is
the fake HIKVision camera (real Digest) on the router's LAN (this machine's end of it), reached
as a site's cameras are: through the droplet and the tunnel (as in tests.test_health_probes),
or straight from this machine while the site has no droplet.

Each bot run opens its own Core on the test's database, so a bot restart is what it is in
production: the first process's operations are interrupted, the second starts afresh with only
the database. Outcomes are read where they land: the droplets in the fake DigitalOcean, the
router's files, uci and dropbear, the site in the database, the Bot API calls the bot made
(the photo's bytes against the camera's JPEG, secrets that never appear, deleted messages).
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest
from sqlalchemy import select

from bot import texts
from bot.core import Core
from bot.db.models import Camera, Router, Site
from bot.router.access import RouterTiming
from bot.services import identity
from bot.services.audit import Actor
from bot.services.setup_flow import modem_pin_secret
from bot.settings import Settings
from tests.botharness import bot_settings, running_bot
from tests.cloudsim import cloud_init
from tests.conftest import ADMIN_ID
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.fakes.hikvision_camera import FakeHikvisionCamera
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.droplet_host import DropletHost
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_crash_recovery import until
from tests.test_provisioning import FAST, fake_do  # noqa: F401
from tests.test_router_detect import plant_e3372h_stick, remove_packages
from tests.test_router_feed_signing import SignedFeed, signed_feed
from tests.test_router_packages import kernel_version
from tests.test_router_support import RELEASE
from tests.test_router_tunnel import link_router_to_droplet
from tests.test_tg_setup import (  # noqa: F401
    SMALLEST,
    WRONG_TOKEN,
    answered,
    api,
    edited,
    labels,
    outgoing_mentions,
    press,
    sent,
)

CAM_PASSWORD = "Cam-Pass-Wizard-1"
SIM_PIN = "73914682"  # long enough never to occur by chance in a button or key
REGION = "ams3"
ROUTER_TIMING = RouterTiming(connect_timeout=3, command_timeout=20, rollback_deadline=25,
                             confirm_grace=8)
# How long a step may take to answer at most (each wait returns as soon as it is answered).
STEP = 60.0
LONG = 150.0


@pytest.fixture
def tg(api: FakeTelegramAPI) -> FakeTelegramAPI:  # noqa: F811
    """The fake Bot API of tests.test_tg_setup (named so that helpers may say ``tg``)."""
    return api


@dataclass
class Lab:
    router: OpenWrtRouter
    droplet: DropletHost
    do: FakeDigitalOcean
    camera: FakeHikvisionCamera
    settings: Settings
    api: FakeTelegramAPI

    @property
    def lan(self) -> str:
        return self.router.addr.rsplit(".", 1)[0] + ".0/24"


def start_router(factory: Callable[..., OpenWrtRouter]) -> OpenWrtRouter:
    """A router fresh from flashing: root password set, nothing of camreach's on it."""
    router = factory(services=("log", "rpcd", "network", "dropbear", "firewall"))
    router.enable_userspace_wireguard()
    plant_e3372h_stick(router)
    return router


@pytest.fixture
async def lab(settings: Settings, openwrt_router_factory: Callable[..., OpenWrtRouter],
              droplet_host: DropletHost, fake_do: FakeDigitalOcean,  # noqa: F811
              tg: FakeTelegramAPI) -> AsyncIterator[Lab]:
    """The router, its LTE link to where the droplet will be, a camera on its LAN, and no
    DigitalOcean token anywhere (the settings have none)."""
    router = start_router(openwrt_router_factory)
    link_router_to_droplet(router, droplet_host)
    let_the_router_forward_tunnel_traffic(router)
    async with FakeHikvisionCamera(host=router.host_addr, port=80,
                                   password=CAM_PASSWORD) as camera:
        yield Lab(router, droplet_host, fake_do, camera, settings, tg)


def let_the_router_forward_tunnel_traffic(router: OpenWrtRouter) -> None:
    """As tests.test_health_probes does for a camera behind the router: OpenWrt turns
    forwarding on at boot (which the test router skips), and the camera here (this machine's
    end of the router's LAN) has another gateway, so the router masquerades tunnel traffic
    onto its LAN."""
    subprocess.run(["ip", "netns", "exec", router.netns, "sysctl", "-qw",
                    "net.ipv4.ip_forward=1"], check=True)
    router.run("nft add table ip camreach_test && nft 'add chain ip camreach_test post "
               "{ type nat hook postrouting priority 100 ; }' && "
               "nft add rule ip camreach_test post ip saddr 10.8.0.0/24 oifname eth0 "
               "masquerade")


def route_the_lan_into_the_tunnel(droplet: DropletHost, lan: str) -> None:
    """The droplet's route for the site's LAN: into wg0 (wg-quick's route for the router
    peer's AllowedIPs; the stand-in brings wg0 up without routes). Without it this stand-in
    would reach the LAN's addresses through the test machine, which no droplet can; with it,
    wireguard-go delivers them only if the droplet's router peer is allowed the LAN."""
    droplet.run(f"ip route replace {shlex.quote(lan)} dev wg0", check=True)


async def open_core(settings: Settings, tg: FakeTelegramAPI) -> Core:
    core = await Core.open(bot_settings(settings, tg))
    core.set_timing(FAST)
    core.router.timing = ROUTER_TIMING
    return core


@asynccontextmanager
async def bot(settings: Settings, tg: FakeTelegramAPI) -> AsyncIterator[Core]:
    """One run of the bot process: its own Core on the test's database, closed at the end
    (what is still running is interrupted, as on SIGTERM)."""
    core = await open_core(settings, tg)
    try:
        async with running_bot(settings, tg, core=core):
            yield core
    finally:
        await core.close()


# -- reading outcomes ----------------------------------------------------------------------------

def config_files(router: OpenWrtRouter) -> dict[str, bytes]:
    folder = router.root / "etc/config"
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def uci(router: OpenWrtRouter, key: str) -> str:
    return router.run(f"uci -q get {shlex.quote(key)}", check=False).stdout.strip()


def authorized_keys(router: OpenWrtRouter) -> str:
    path = router.root / "etc/dropbear/authorized_keys"
    return path.read_text() if path.exists() else ""


async def camreach_key(core: Core) -> str:
    return " ".join(identity.client_public_key(
        await identity.client_key(core.secrets)).split()[:2])


async def password_login_works(router: OpenWrtRouter) -> bool:
    """Whether dropbear still lets root in with the password (a real login attempt)."""
    try:
        async with asyncssh.connect(router.addr, username="root", password=router.root_password,
                                    known_hosts=None, client_keys=None, agent_path=None,
                                    preferred_auth="password,keyboard-interactive",
                                    connect_timeout=10):
            return True
    except asyncssh.PermissionDenied:
        return False


async def site_rows(core: Core, name: str) -> tuple[Router | None, list[Camera]]:
    async with core.sessions() as s:
        site = (await s.execute(select(Site).where(Site.name == name))).scalar_one()
        router = (await s.execute(select(Router).where(Router.site_id == site.id))).scalar()
        cams = list((await s.execute(select(Camera).where(Camera.site_id == site.id)
                                     .order_by(Camera.name))).scalars())
        return router, cams


def text_of(tg: FakeTelegramAPI, message_id: int) -> str:
    return tg.message(ADMIN_ID, message_id).content or ""


async def deleted(tg: FakeTelegramAPI, message_id: int) -> None:
    await tg.wait_for("deleteMessage", lambda c: c.params["message_id"] == message_id, STEP)


async def first_of(tg: FakeTelegramAPI, *needles: str, timeout: float = STEP) -> str:
    """The text of the next message the bot sends containing any of ``needles`` (to fail on
    an error's own words instead of waiting for an answer that will not come)."""
    call = await tg.wait_for(
        "sendMessage", lambda c: any(n in c.params["text"] for n in needles), timeout)
    return str(call.params["text"])


async def secret_answer(tg: FakeTelegramAPI, secret: str) -> int:
    """Type ``secret``; returns once the bot deleted the message carrying it."""
    msg = tg.inject_message(ADMIN_ID, secret)
    await deleted(tg, msg)
    return msg


# -- the conversation, step by step (each returns once the bot asks the next question) ----------

async def new_site_by_name(tg: FakeTelegramAPI, name: str) -> None:
    tg.inject_message(ADMIN_ID, "/setup")
    await sent(tg, texts.ASK_SITE_NAME, STEP)
    tg.inject_message(ADMIN_ID, name)
    await sent(tg, f"Site {name} created", STEP)


async def give_token(tg: FakeTelegramAPI, token: str) -> int:
    await sent(tg, "DigitalOcean API token", STEP)
    msg = await secret_answer(tg, token)
    await sent(tg, "Token accepted", STEP)
    return msg


async def pick_droplet(tg: FakeTelegramAPI, site: str) -> int:
    """Smallest size, REGION, Confirm; the id of the provisioning's progress message."""
    menu = await sent(tg, f"Droplet size for {site}", STEP)
    assert labels(tg, menu)[0].startswith(SMALLEST)
    press(tg, menu, SMALLEST)
    await edited(tg, menu, "Region for", STEP)
    press(tg, menu, REGION)
    summary = await edited(tg, menu, "will create", STEP)
    assert f"camreach-{site}, {SMALLEST}, {REGION}" in summary
    press(tg, menu, "Confirm")
    return await sent(tg, "provision_droplet", STEP)


async def router_question(tg: FakeTelegramAPI, site: str) -> int:
    ask = await sent(tg, f"Router of {site}: where can camreach reach it", STEP)
    assert labels(tg, ask) == ["192.168.1.1"]  # the default address, as a button
    return ask


async def connect_router(tg: FakeTelegramAPI, router: OpenWrtRouter, site: str) -> int:
    """Type the router's address and its root password; the password message's id."""
    tg.inject_message(ADMIN_ID, router.addr)
    await sent(tg, "The router's root password", STEP)
    pw = await secret_answer(tg, router.root_password)
    ready = await first_of(tg, f"Router of {site} connected", "❌", "refused",
                           "cannot reach", timeout=LONG)
    assert f"Router of {site} connected" in ready, ready
    assert "Huawei E3372h" in ready and "Missing packages" not in ready, ready
    return pw


async def choose_apn(tg: FakeTelegramAPI, operator: str, pin: str | None) -> int | None:
    """An APN preset button, then the PIN typed (its message's id) or No PIN."""
    ask = await sent(tg, texts.ASK_APN, STEP)
    assert labels(tg, ask) == ["Airtel India: airtelgprs.com", "Jio: jionet", "Vodafone Idea: www",
                                "BSNL: bsnlnet", texts.BUTTON_OTHER_APN]
    press(tg, ask, operator)
    pin_ask = await sent(tg, texts.ASK_PIN, STEP)
    assert labels(tg, pin_ask) == [texts.BUTTON_NO_PIN]
    if pin is None:
        press(tg, pin_ask, texts.BUTTON_NO_PIN)
        return None
    return await secret_answer(tg, pin)


async def review(tg: FakeTelegramAPI) -> int:
    """The router diff with its Apply button (after the droplet is ready)."""
    call = await tg.wait_for("sendMessage", lambda c: "Apply them?" in c.params["text"]
                              or "❌" in c.params["text"], LONG)
    assert "Apply them?" in call.params["text"], call.params["text"]
    msg = int(call.result["message_id"])
    assert labels(tg, msg) == [texts.BUTTON_APPLY, texts.BUTTON_CANCEL]
    return msg


async def apply_through_the_tunnel(tg: FakeTelegramAPI, lab: Lab, site: str) -> None:
    press(tg, await review(tg), texts.BUTTON_APPLY)
    stick = await sent(tg, "Is the LTE stick plugged", STEP)
    assert labels(tg, stick) == [texts.BUTTON_STICK_YES, texts.BUTTON_STICK_NO]
    route_the_lan_into_the_tunnel(lab.droplet, lab.lan)  # wg0 is up: the droplet is ready
    press(tg, stick, texts.BUTTON_STICK_YES)
    push = await sent(tg, "push_router_config", STEP)
    done = await edited(tg, push, "push router config", LONG)
    while "⏳" in done:
        done = await edited(tg, push, "push router config", LONG)
    assert "Done. Applied and confirmed" in done, done
    await sent(tg, f"The router of {site} is reachable through the tunnel", STEP)


async def pick_the_camera(tg: FakeTelegramAPI, lab: Lab, site: str) -> None:
    pick = await sent(tg, f"What answers on {site}'s LAN", LONG)
    found = labels(tg, pick)
    assert any(label.startswith(f"{lab.router.host_addr} · ") for label in found), found
    assert found[-1] == texts.BUTTON_SKIP
    press(tg, pick, lab.router.host_addr)
    user = await sent(tg, texts.ASK_CAMERA_USER, STEP)
    press(tg, user, "admin")
    await sent(tg, texts.ASK_CAMERA_PASSWORD, STEP)


async def skip_the_camera(tg: FakeTelegramAPI, site: str) -> None:
    pick = await sent(tg, f"What answers on {site}'s LAN", LONG)
    press(tg, pick, texts.BUTTON_SKIP)


def assert_pushed(lab: Lab, apn: str) -> None:
    """The router runs what the review showed: the modem, the tunnel to the droplet (live,
    handshaking), the firewall zone."""
    router = lab.router
    assert uci(router, "network.wwan.proto") == "ncm"
    assert uci(router, "network.wwan.apn") == apn
    assert uci(router, "network.wg0.proto") == "wireguard"
    assert uci(router, "network.camreach_droplet.endpoint_host") == lab.droplet.addr
    assert "camvpn" in (router.root / "etc/config/firewall").read_text()
    handshakes = router.run("wg show wg0 latest-handshakes").stdout.split()
    assert handshakes and handshakes[-1] != "0"


# -- 1: the whole conversation ---------------------------------------------------------------

async def test_the_whole_setup_from_nothing_to_a_camera_picture(lab: Lab) -> None:
    tg, router, do, camera = lab.api, lab.router, lab.do, lab.camera
    async with cloud_init(do, lab.droplet), bot(lab.settings, tg) as core:
        await new_site_by_name(tg, "farm")
        assert await core.site_names() == ["farm"]  # no YAML file: the chat made it
        token_msg = await give_token(tg, do.token)
        progress = await pick_droplet(tg, "farm")
        await router_question(tg, "farm")  # at once: the droplet is made meanwhile
        # A person answers in seconds; by then DigitalOcean has the droplet and its user data.
        await until(lambda: do.count("POST", "/v2/droplets") == 1, "no droplet was created")
        router_pw = await connect_router(tg, router, "farm")
        assert await camreach_key(core) in authorized_keys(router)
        assert not await password_login_works(router)
        pin_msg = await choose_apn(tg, "Airtel India", SIM_PIN)
        assert pin_msg is not None
        await apply_through_the_tunnel(tg, lab, "farm")
        assert "Done" in text_of(tg, progress)  # the review waited for the droplet

        # The push's outcomes, before the camera step begins.
        (droplet,) = do.droplets.values()
        assert (droplet.name, droplet.size, droplet.region) == (
            "camreach-farm", SMALLEST, REGION)
        assert do.count("POST", "/v2/droplets") == 1
        assert_pushed(lab, "airtelgprs.com")
        assert uci(router, "network.wwan.pincode") == SIM_PIN
        # The droplet delivers the site's LAN to the router: its router peer is allowed it.
        allowed = lab.droplet.run("wg show wg0 allowed-ips", check=True).stdout.split()[1:]
        assert lab.lan in allowed, (
            f"the droplet's router peer is allowed {allowed}, not the site's LAN {lab.lan}")

        await pick_the_camera(tg, lab, "farm")
        cam_pw = await secret_answer(tg, CAM_PASSWORD)
        said = await first_of(tg, "here is its first picture", "❌", timeout=LONG)
        assert "here is its first picture" in said, said
        photo = await tg.wait_for("sendPhoto", None, LONG)
        final = await first_of(tg, "Setup of farm finished")
        spec = await core.site_spec("farm")
        row, cams = await site_rows(core, "farm")
        progress_now = await core.setup_progress("farm")

    # The photo the bot uploaded is the picture the camera served; one login, no failure.
    assert photo.files["photo"].data == camera.last_jpeg
    assert camera.failed_logins == 0
    assert camera.model in said
    assert "$4 per month" in final and "Still to do" not in final
    assert do.count("POST", "/v2/droplets") == 1 and len(do.droplets) == 1

    # The site as the database has it.
    assert str(spec.router.host) == router.addr and str(spec.router.lan_subnet) == lab.lan
    assert spec.modem.apn == "airtelgprs.com"
    assert [(c.name, str(c.host), c.user) for c in spec.cameras] == [
        ("cam1", router.host_addr, "admin")]
    assert [(c.name, c.model, c.serial) for c in cams] == [
        ("cam1", camera.model, camera.serial)]
    assert row is not None and row.key_installed and row.last_push_at is not None
    assert progress_now.next_step is None

    # Secrets: none in any call the bot made; every message that carried one is deleted.
    for secret in (do.token, router.root_password, CAM_PASSWORD, SIM_PIN):
        assert outgoing_mentions(tg, secret) == [], secret
    secret_messages = {token_msg, router_pw, pin_msg, cam_pw}
    assert all(tg.message(ADMIN_ID, m).deleted for m in secret_messages)
    assert {c.params["message_id"] for c in tg.calls("deleteMessage")} == secret_messages


# -- 2: a bot restart in the middle ------------------------------------------------------------

async def test_a_restart_after_the_droplet_step_resumes_with_one_droplet(lab: Lab) -> None:
    tg, router, do = lab.api, lab.router, lab.do
    async with cloud_init(do, lab.droplet):
        async with bot(lab.settings, tg):
            await new_site_by_name(tg, "farm")
            await give_token(tg, do.token)
            progress = await pick_droplet(tg, "farm")
            await router_question(tg, "farm")
            await edited(tg, progress, "Done", LONG)
        # The bot restarts before the router question is answered.
        async with bot(lab.settings, tg) as core:
            tg.inject_message(ADMIN_ID, "/setup farm")
            checklist = await sent(tg, "Setup of farm", STEP)
            text = text_of(tg, checklist)
            assert f"✅ VPN server (droplet) — {lab.droplet.addr} ({REGION}, {SMALLEST})" in text
            assert "⬜ router" in text and "⬜ camera" in text
            assert labels(tg, checklist) == ["↻ Redo: VPN server (droplet)"]
            await router_question(tg, "farm")  # the first step left
            await connect_router(tg, router, "farm")
            await choose_apn(tg, "Jio", None)
            await apply_through_the_tunnel(tg, lab, "farm")
            await skip_the_camera(tg, "farm")
            final = await first_of(tg, "Setup of farm finished")
            spec = await core.site_spec("farm")
    assert "Still to do: camera" in final
    assert len(do.droplets) == 1 and do.count("POST", "/v2/droplets") == 1
    assert_pushed(lab, "jionet")
    assert spec.modem.apn == "jionet" and spec.cameras == []


async def interrupted_provisioning(settings: Settings, do: FakeDigitalOcean,
                                   tg: FakeTelegramAPI) -> int:
    """A bot run that is stopped while DigitalOcean still starts the droplet it created (at
    the router question); the id of that droplet."""
    do.stuck_in_new = True  # DigitalOcean keeps it starting until the restart
    async with bot(settings, tg):
        await new_site_by_name(tg, "farm")
        await give_token(tg, do.token)
        progress = await pick_droplet(tg, "farm")
        await router_question(tg, "farm")
        await edited(tg, progress, "step 5/6", STEP)  # created, starting
    assert "Interrupted at step 5/6" in text_of(tg, progress)
    do.stuck_in_new = False
    (created,) = do.droplets
    return created


async def test_a_restart_while_the_droplet_is_created_adopts_it(
    settings: Settings, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
    tg: FakeTelegramAPI,
) -> None:
    """The restart interrupts the provisioning; /setup SITE offers the droplet the site has
    (nothing new is created), and goes on with the router while it finishes."""
    do = fake_do
    async with cloud_init(do, droplet_host):
        created = await interrupted_provisioning(settings, do, tg)
        async with bot(settings, tg) as core:
            tg.inject_message(ADMIN_ID, "/setup farm")
            ask = await sent(tg, "farm already has droplet camreach-farm", STEP)
            assert f"#{created}" in text_of(tg, ask) and "nothing new is created" in text_of(
                tg, ask)
            press(tg, ask, "Confirm")
            again = await sent(tg, "provision_droplet", STEP)
            await router_question(tg, "farm")
            await edited(tg, again, "Done", LONG)
            p = await core.setup_progress("farm")
    assert p.droplet and p.droplet_address == droplet_host.addr
    assert list(do.droplets) == [created] and do.count("POST", "/v2/droplets") == 1


async def test_a_restart_offers_retry_for_the_interrupted_provisioning(
    settings: Settings, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
    tg: FakeTelegramAPI,
) -> None:
    """The provisioning the restart interrupted comes with a Retry button (README: "the bot
    announces interrupted operations with a Retry button"); the retry adopts the droplet and
    /setup SITE then shows it done and asks the router."""
    do = fake_do
    async with cloud_init(do, droplet_host):
        created = await interrupted_provisioning(settings, do, tg)
        async with bot(settings, tg):
            # The start-up announcements are made before the bot first polls for updates.
            retry = [(m.message_id, d) for m in tg.messages_to(ADMIN_ID)
                     for d in m.button_data() if d.startswith("op:retry")]
            assert len(retry) == 1, [m.content for m in tg.messages_to(ADMIN_ID)][-2:]
            tg.inject_callback(ADMIN_ID, retry[0][1], retry[0][0])
            await tg.wait_for("editMessageText", lambda c: "is ready" in c.params["text"], LONG)
            tg.inject_message(ADMIN_ID, "/setup farm")
            checklist = await sent(tg, "Setup of farm", STEP)
            assert "✅ VPN server (droplet)" in text_of(tg, checklist)
            await router_question(tg, "farm")
    assert list(do.droplets) == [created] and do.count("POST", "/v2/droplets") == 1


async def test_setup_again_while_the_droplet_is_being_made_goes_on_with_the_router(
    settings: Settings, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
    tg: FakeTelegramAPI,
) -> None:
    """/setup SITE while the site's provisioning still runs: the droplet is in progress (not
    asked again), and the next step is the router."""
    do = fake_do
    do.stuck_in_new = True
    async with cloud_init(do, droplet_host), bot(settings, tg):
        await new_site_by_name(tg, "farm")
        await give_token(tg, do.token)
        progress = await pick_droplet(tg, "farm")
        await router_question(tg, "farm")
        await edited(tg, progress, "step 5/6", STEP)  # created, starting
        tg.inject_message(ADMIN_ID, "/setup farm")
        # (A checklist may come first: the step that follows is what counts.)
        said = await first_of(tg, "already has droplet", "Droplet size for", "Router of farm")
        do.stuck_in_new = False
        await edited(tg, progress, "Done", LONG)
        assert "Router of farm: where can camreach reach it" in said, said
    assert len(do.droplets) == 1 and do.count("POST", "/v2/droplets") == 1


# -- 3: wrong answers are asked again with the reason ---------------------------------------

async def test_a_wrong_name_or_token_is_asked_again_and_cancel_forgets_the_new_site(
    settings: Settings, fake_do: FakeDigitalOcean, tg: FakeTelegramAPI,  # noqa: F811
) -> None:
    do = fake_do
    async with bot(settings, tg) as core:
        tg.inject_message(ADMIN_ID, "/setup")
        await sent(tg, texts.ASK_SITE_NAME, STEP)
        for bad in ("Farm House!", "-farm"):
            tg.inject_message(ADMIN_ID, bad)
            said = await first_of(tg, "cannot be a site name", "created")
            assert "cannot be a site name" in said and "e.g. farmhouse" in said, said
        assert await core.site_names() == []
        tg.inject_message(ADMIN_ID, "farm")
        await sent(tg, "Site farm created", STEP)
        await sent(tg, "DigitalOcean API token", STEP)
        wrong = await secret_answer(tg, WRONG_TOKEN)
        await sent(tg, "rejected that token", STEP)
        tg.inject_message(ADMIN_ID, "/cancel")
        said = await first_of(tg, "Cancelled")
        assert "the site farm is gone" in said, said
        assert await core.site_names() == []

        # Again, further: a good token, then Cancel on the region menu.
        await new_site_by_name(tg, "farm")
        await give_token(tg, do.token)
        menu = await sent(tg, "Droplet size for farm", STEP)
        press(tg, menu, SMALLEST)
        await edited(tg, menu, "Region for", STEP)
        press(tg, menu, texts.BUTTON_CANCEL)
        assert "the site farm is gone" in await edited(tg, menu, "Cancelled", STEP)
        assert await core.site_names() == []
        assert await core.has_do_token()  # the account's token stays; it is no site's
    assert tg.message(ADMIN_ID, wrong).deleted
    assert not do.droplets and do.count("POST", "/v2/droplets") == 0
    assert outgoing_mentions(tg, WRONG_TOKEN) == [] and outgoing_mentions(tg, do.token) == []


async def test_wrong_router_modem_and_camera_answers_are_asked_again(
    settings: Settings, openwrt_router_factory: Callable[..., OpenWrtRouter],
    tg: FakeTelegramAPI,
) -> None:
    """Step by step (``/setup SITE STEP``) on a site without a droplet yet: the router on the
    LAN, the modem, the camera straight from this machine."""
    router = start_router(openwrt_router_factory)
    prefix = router.addr.rsplit(".", 1)[0]
    async with FakeHikvisionCamera(host=router.host_addr, port=80,
                                   password=CAM_PASSWORD) as camera, \
            bot(settings, tg) as core:
        await core.create_site("farm", Actor.cli())

        # -- the router: malformed, public, nobody there, wrong password, then right.
        tg.inject_message(ADMIN_ID, "/setup farm router")
        await router_question(tg, "farm")
        for bad, reason in (("192.168.1.300", "is not an IPv4 address"),
                            ("router.local", "is not an IPv4 address"),
                            ("8.8.8.8", "is not a LAN address")):
            tg.inject_message(ADMIN_ID, bad)
            said = await first_of(tg, "❌", "root password")
            assert reason in said, said
        tg.inject_message(ADMIN_ID, f"{prefix}.3")  # a LAN address where nothing answers
        await sent(tg, f"The router's root password (the one you set after flashing, at "
                        f"{prefix}.3)", STEP)
        nowhere = await secret_answer(tg, router.root_password)
        said = await first_of(tg, "cannot reach the router", "connected", timeout=LONG)
        assert f"cannot reach the router at {prefix}.3" in said, said
        tg.inject_message(ADMIN_ID, router.addr)
        await sent(tg, "The router's root password", STEP)
        wrong_pw = await secret_answer(tg, "not-the-root-password")
        said = await first_of(tg, "refused that password", "connected", timeout=LONG)
        assert "Send the root password again" in said, said
        assert not authorized_keys(router)  # nothing installed with a refused login
        right_pw = await secret_answer(tg, router.root_password)
        said = await first_of(tg, "Router of farm connected", "❌", timeout=LONG)
        assert "Router of farm connected" in said, said
        await first_of(tg, "Setup of farm finished")
        assert await camreach_key(core) in authorized_keys(router)
        assert str((await core.site_spec("farm")).router.host) == router.addr

        # -- the modem: a malformed APN, a PIN too short and one too long, then right.
        tg.inject_message(ADMIN_ID, "/setup farm modem")
        ask = await sent(tg, texts.ASK_APN, STEP)
        press(tg, ask, texts.BUTTON_OTHER_APN)
        await sent(tg, texts.ASK_APN_TEXT, STEP)
        for bad in ("air tel!", "-internet"):
            tg.inject_message(ADMIN_ID, bad)
            said = await first_of(tg, "is not an APN", texts.ASK_PIN)
            assert f"{bad!r} is not an APN" in said, said
        tg.inject_message(ADMIN_ID, "internet.example")
        await sent(tg, texts.ASK_PIN, STEP)
        bad_pins = []
        for pin in ("12", "123456789", "12ab"):  # each answered before the next is typed
            bad_pins.append(await secret_answer(tg, pin))
            assert await first_of(tg, texts.PIN_INVALID, "finished") == texts.PIN_INVALID
        good_pin = await secret_answer(tg, SIM_PIN)
        await first_of(tg, "Setup of farm finished")
        spec = await core.site_spec("farm")
        assert spec.modem.apn == "internet.example" and spec.modem.pin_env
        assert await core.secrets.get(modem_pin_secret("farm")) == SIM_PIN

        # -- the camera: a wrong password (sent once), the same again (not sent), the right.
        tg.inject_message(ADMIN_ID, "/setup farm camera")
        pick = await sent(tg, "What answers on farm's LAN", LONG)
        assert any(label.startswith(f"{router.host_addr} · ")
                   for label in labels(tg, pick)), labels(tg, pick)
        press(tg, pick, router.host_addr)
        user = await sent(tg, texts.ASK_CAMERA_USER, STEP)
        press(tg, user, "admin")
        await sent(tg, texts.ASK_CAMERA_PASSWORD, STEP)
        wrong_cam = [await secret_answer(tg, "not-it")]
        said = await first_of(tg, "❌", "first picture", timeout=LONG)
        assert "refused" in said and texts.ASK_CAMERA_PASSWORD in said, said
        assert camera.failed_logins == 1 and await core.camera_views("farm") == []
        wrong_cam.append(await secret_answer(tg, "not-it"))
        said = await first_of(tg, "❌", "first picture", timeout=LONG)
        assert "does not send it again" in said and texts.ASK_CAMERA_PASSWORD in said, said
        right_cam = await secret_answer(tg, CAM_PASSWORD)
        said = await first_of(tg, "❌", "first picture", timeout=LONG)
        assert f"cam1 ({camera.model}) at farm: here is its first picture" in said, said
        photo = await tg.wait_for("sendPhoto", None, LONG)
        await first_of(tg, "Setup of farm finished")
        (view,) = await core.camera_views("farm")

    assert camera.failed_logins == 1  # one wrong attempt in all: the camera never locks out
    assert photo.files["photo"].data == camera.last_jpeg
    assert (view.name, view.host, view.via, view.model, view.serial) == (
        "cam1", router.host_addr, "direct", camera.model, camera.serial)
    for secret in (router.root_password, "not-the-root-password", CAM_PASSWORD, "not-it",
                   SIM_PIN):
        assert outgoing_mentions(tg, secret) == [], secret
    for msg in (nowhere, wrong_pw, right_pw, *bad_pins, good_pin, *wrong_cam, right_cam):
        assert tg.message(ADMIN_ID, msg).deleted


async def test_missing_modem_packages_are_installed_in_the_router_step(
    settings: Settings, openwrt_router_factory: Callable[..., OpenWrtRouter],
    tg: FakeTelegramAPI, tmp_path: Path,
) -> None:
    """Detection finds the stick's driver and its dial-up helper missing; the router step
    installs them as an operation (the router has no internet: from the offline feed)."""
    router = start_router(openwrt_router_factory)
    remove_packages(router, "comgt-ncm", "kmod-usb-net-huawei-cdc-ncm")
    kernel = kernel_version(router)
    async with signed_feed(tmp_path / "feed") as feed, bot(settings, tg) as core:
        serve_the_stick_packages(feed, kernel)
        core.router.feeds = feed.config()
        await core.create_site("farm", Actor.cli())
        tg.inject_message(ADMIN_ID, "/setup farm router")
        await router_question(tg, "farm")
        tg.inject_message(ADMIN_ID, router.addr)
        await sent(tg, "The router's root password", STEP)
        await secret_answer(tg, router.root_password)
        install = await sent(tg, "install_router_packages", LONG)
        done = await edited(tg, install, "install router packages", LONG)
        while "⏳" in done:
            done = await edited(tg, install, "install router packages", LONG)
        assert "Done" in done, done
        said = await first_of(tg, "Router of farm connected", "❌", timeout=LONG)
        await first_of(tg, "Setup of farm finished")
    assert "Router of farm connected" in said and "Missing packages" not in said, said
    installed = router.run("opkg list-installed").stdout
    assert "comgt-ncm - 1.0-1" in installed and "kmod-usb-net-huawei-cdc-ncm - " in installed


def serve_the_stick_packages(feed: SignedFeed, kernel: str) -> None:
    feed.add(f"{RELEASE}/targets/x86/64/packages", "kmod-usb-net-huawei-cdc-ncm",
             f"kernel (= {kernel})", version="5.15.137-1")
    feed.add(f"{RELEASE}/packages/x86_64/packages", "comgt-ncm", "libc")


async def test_a_router_on_the_desk_is_confirmed_on_the_lan_and_the_rest_is_for_the_site(
    settings: Settings, openwrt_router_factory: Callable[..., OpenWrtRouter],
    droplet_host: DropletHost, fake_do: FakeDigitalOcean,  # noqa: F811
    tg: FakeTelegramAPI,
) -> None:
    """"Not yet" at the stick question: no LTE link, so the push is confirmed on the LAN;
    the cameras wait for the site (they are reached through the tunnel)."""
    do, router = fake_do, start_router(openwrt_router_factory)  # no uplink at all
    async with cloud_init(do, droplet_host), bot(settings, tg) as core:
        await new_site_by_name(tg, "farm")
        await give_token(tg, do.token)
        await pick_droplet(tg, "farm")
        await router_question(tg, "farm")
        await connect_router(tg, router, "farm")
        await choose_apn(tg, "Vodafone Idea", None)
        press(tg, await review(tg), texts.BUTTON_APPLY)
        stick = await sent(tg, "Is the LTE stick plugged", STEP)
        press(tg, stick, texts.BUTTON_STICK_NO)
        push = await sent(tg, "push_router_config", STEP)
        done = await edited(tg, push, "push router config", LONG)
        while "⏳" in done:
            done = await edited(tg, push, "push router config", LONG)
        assert "Done. Applied and confirmed" in done, done
        await sent(tg, "Configured on the desk. At the site: plug the LTE stick", STEP)
        final = await first_of(tg, "Setup of farm finished")
        p = await core.setup_progress("farm")
    assert "router configured on the desk (LTE not yet)" in final
    assert "Still to do: camera" in final
    assert p.push and not p.camera
    assert uci(router, "network.wwan.apn") == "www"
    assert uci(router, "network.camreach_droplet.endpoint_host") == droplet_host.addr
    assert len(do.droplets) == 1 and do.count("POST", "/v2/droplets") == 1
    assert not [c for c in tg.calls("sendMessage") if "What answers on" in c.params["text"]]


# -- 4: /cancel once the droplet exists ------------------------------------------------------

async def test_cancel_at_the_review_names_the_droplet_and_pushes_nothing(lab: Lab) -> None:
    tg, router, do = lab.api, lab.router, lab.do
    async with cloud_init(do, lab.droplet), bot(lab.settings, tg) as core:
        await new_site_by_name(tg, "farm")
        await give_token(tg, do.token)
        await pick_droplet(tg, "farm")
        await router_question(tg, "farm")
        await connect_router(tg, router, "farm")
        before = config_files(router)
        await choose_apn(tg, "BSNL", None)
        diff = await review(tg)
        tg.inject_message(ADMIN_ID, "/cancel")
        said = await first_of(tg, "Cancelled")
        # The Apply left on the screen does nothing now.
        assert await answered(tg, press(tg, diff, texts.BUTTON_APPLY)) == texts.MENU_EXPIRED
        row, _ = await site_rows(core, "farm")
        names = await core.site_names()
    assert f"the droplet ({lab.droplet.addr}" in said and "/droplet destroy farm" in said, said
    assert "/setup farm continues" in said
    (droplet,) = do.droplets.values()
    assert droplet.name == "camreach-farm" and do.count("DELETE", "/v2/droplets") == 0
    assert names == ["farm"]
    assert config_files(router) == before  # nothing pushed
    assert uci(router, "network.wg0.proto") == "" and uci(router, "network.wwan.proto") == ""
    assert row is not None and row.last_push_at is None
    assert not [c for c in tg.calls("sendMessage") if "push_router_config" in c.params["text"]]


async def test_cancel_while_the_droplet_is_being_created_names_it(
    settings: Settings, fake_do: FakeDigitalOcean, droplet_host: DropletHost,  # noqa: F811
    tg: FakeTelegramAPI,
) -> None:
    """/cancel at the router question, while DigitalOcean is still starting the droplet
    (created and billed, no address yet)."""
    do = fake_do
    do.stuck_in_new = True
    async with cloud_init(do, droplet_host), bot(settings, tg) as core:
        await new_site_by_name(tg, "farm")
        await give_token(tg, do.token)
        progress = await pick_droplet(tg, "farm")
        await router_question(tg, "farm")
        await edited(tg, progress, "step 5/6", STEP)  # created, starting
        tg.inject_message(ADMIN_ID, "/cancel")
        said = await first_of(tg, "Cancelled")
        names = await core.site_names()
        do.stuck_in_new = False
        await edited(tg, progress, "Done", LONG)
    assert len(do.droplets) == 1 and names == ["farm"]
    assert "/droplet destroy farm" in said, said
