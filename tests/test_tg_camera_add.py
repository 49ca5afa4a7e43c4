"""/camera add from a phone: the cameras found on the router's LAN as buttons, the login, one
attempt per password (a refused one is never sent again), the model and serial shown."""

from __future__ import annotations

import pytest

from bot.core import Core
from bot.services.audit import Actor
from bot.settings import Settings
from bot.site import parse_site
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID
from tests.fakes.hikvision_camera import FakeHikvisionCamera
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.openwrt_router import OpenWrtRouter
from tests.test_tg_setup import api, labels, press, sent  # noqa: F401

PW_ENV = "CAMREACH_TEST_ROUTER_PW_ADD"
PASSWORD = "Cam-Pass-1"


async def test_camera_add_finds_logs_in_and_stores(
    core: Core, settings: Settings, openwrt_router: OpenWrtRouter,
    api: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    router = openwrt_router
    prefix = router.addr.rsplit(".", 1)[0]
    await core.apply_site(parse_site({
        "name": "farm",
        "router": {"host": router.addr, "password_env": PW_ENV, "lan_subnet": f"{prefix}.0/24"},
    }), Actor.cli())
    monkeypatch.setenv(PW_ENV, router.root_password)
    await core.router_first_contact("farm", Actor.cli())
    async with FakeHikvisionCamera(host=router.host_addr, port=80, password=PASSWORD) as cam, \
            running_bot(settings, api, core=core):
        api.inject_message(ADMIN_ID, "/camera add farm")
        pick = await sent(api, "Looking for cameras", timeout=20)
        await api.wait_for("editMessageText", lambda c: c.params["message_id"] == pick
                           and "Which one" in c.params["text"], timeout=60)
        assert any(label.startswith(f"{router.host_addr} · ") and "ISAPI" in label
                   for label in labels(api, pick))
        press(api, pick, router.host_addr)
        await api.wait_for("editMessageText", lambda c: "login user name" in c.params["text"])
        press(api, pick, "admin")
        await sent(api, "Send the password")

        wrong = api.inject_message(ADMIN_ID, "not-it")
        await api.wait_for("deleteMessage", lambda c: c.params["message_id"] == wrong)
        await sent(api, "refused the password", timeout=30)
        assert await core.camera_views("farm") == []  # nothing stored after a refusal
        again = api.inject_message(ADMIN_ID, "not-it")  # the same wrong one: not sent again
        await api.wait_for("deleteMessage", lambda c: c.params["message_id"] == again)
        await sent(api, "does not send it", timeout=30)
        assert cam.credential_attempts == 1

        right = api.inject_message(ADMIN_ID, PASSWORD)
        await api.wait_for("deleteMessage", lambda c: c.params["message_id"] == right)
        done = await sent(api, "added to farm", timeout=30)
        text = api.message(ADMIN_ID, done).content or ""
        assert cam.model in text and cam.serial in text
    (view,) = await core.camera_views("farm")
    assert (view.host, view.user, view.via, view.password) == (
        router.host_addr, "admin", "direct", "stored")
    assert view.model == cam.model and view.serial == cam.serial
    assert not [c for c in api.calls() if c.method != "getUpdates"
                and PASSWORD in str(c.params)]
