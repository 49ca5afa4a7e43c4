"""/snapshot and `camreach snapshot` end to end: fake Bot API, the droplet stand-in's real sshd
forwarding to the fake HIKVision camera, the photo's bytes compared with what it served."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.core import Core
from bot.services.audit import Actor
from bot.settings import Settings
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID
from tests.fakes.digitalocean_api import FakeDigitalOcean
from tests.fakes.hikvision_camera import FakeHikvisionCamera
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.infra.droplet_host import DropletHost
from tests.test_crash_recovery import exe
from tests.test_peers import ready  # noqa: F401
from tests.test_provisioning import do_core, do_settings, fake_do  # noqa: F401
from tests.test_tg_setup import api, press, sent  # noqa: F401

PASSWORD = "Cam-Pass-1"
ENV = "CAMREACH_TEST_CAM_PASSWORD"


@pytest.fixture
async def cams(ready: Core, droplet_host: DropletHost,  # noqa: F811
               monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[FakeHikvisionCamera]]:
    """Two cameras where the droplet's sshd reaches them (the host side of its veth), on the
    site's LAN as the site file says."""
    monkeypatch.setenv(ENV, PASSWORD)
    lan = droplet_host.host_addr.rsplit(".", 1)[0] + ".0/24"
    doc = (await ready.site_spec("farm")).to_json()
    doc["router"]["lan_subnet"] = lan
    doc["router"]["host"] = droplet_host.host_addr.rsplit(".", 1)[0] + ".254"
    doc["cameras"] = []  # the provisioning site's example camera is not on this LAN
    from bot.site import SiteSpec

    await ready.apply_site(SiteSpec.model_validate(doc), Actor.cli())
    async with FakeHikvisionCamera(host=droplet_host.host_addr, password=PASSWORD,
                                   main_bytes=300_000) as porch, \
            FakeHikvisionCamera(host=droplet_host.host_addr, password=PASSWORD) as gate:
        for name, cam in (("porch", porch), ("gate", gate)):
            await ready.add_camera("farm", {"name": name, "host": droplet_host.host_addr,
                                            "port": cam.port, "password_env": ENV}, Actor.cli())
        yield [porch, gate]


async def test_snapshot_photo_has_the_cameras_bytes(
    ready: Core, do_settings: Settings, cams: list[FakeHikvisionCamera],  # noqa: F811
    api: FakeTelegramAPI,  # noqa: F811
) -> None:
    porch, gate = cams
    async with running_bot(do_settings, api, core=ready):
        api.inject_message(ADMIN_ID, "/snapshot farm porch")
        call = await api.wait_for("sendPhoto", timeout=20)
        photo = api.message(ADMIN_ID, call.result["message_id"])
        assert photo.photo is not None and photo.photo.data == porch.last_jpeg
        assert len(photo.photo.data) == 300_000
        assert (photo.caption or "").startswith("porch · farm · ")
        assert api.calls("sendChatAction")  # "sending photo…" while it was fetched
        # The button takes another: a new picture, other bytes.
        first = photo.photo.data
        press(api, photo.message_id, "📷 Another")
        again = await api.wait_for("sendPhoto", lambda c: c.result["message_id"]
                                   != photo.message_id, timeout=20)
        second = api.message(ADMIN_ID, again.result["message_id"]).photo
        assert second is not None and second.data == porch.last_jpeg != first

        # Both cameras: an album with each camera's own bytes.
        api.inject_message(ADMIN_ID, "/snapshot farm")
        await sent(api, "2 pictures", timeout=20)
        album = [m for m in api.messages_to(ADMIN_ID) if m.photo is not None][-2:]
        assert sorted(m.photo.data for m in album if m.photo) == sorted(
            [porch.last_jpeg, gate.last_jpeg])
    assert porch.basic_attempts == 0 and gate.basic_attempts == 0


async def test_wrong_password_one_attempt_then_never_again(
    ready: Core, do_settings: Settings, cams: list[FakeHikvisionCamera],  # noqa: F811
    api: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    porch, _ = cams
    monkeypatch.setenv(ENV, "not-the-password")
    async with running_bot(do_settings, api, core=ready):
        api.inject_message(ADMIN_ID, "/snapshot farm porch")
        refused = await sent(api, "refused the password", timeout=20)
        assert "more attempt" in (api.message(ADMIN_ID, refused).content or "")
        assert porch.credential_attempts == 1
        api.inject_message(ADMIN_ID, "/snapshot farm porch")
        await sent(api, "does not send it again", timeout=20)
    assert porch.credential_attempts == 1  # no second try, whoever asks
    monkeypatch.setenv(ENV, PASSWORD)  # the user gives the right one: tried again, works
    (picture,) = await ready.snapshots("farm", "porch")
    assert picture.data == porch.last_jpeg


async def test_cli_snapshot_writes_the_jpeg_and_names_the_hop(
    ready: Core, cams: list[FakeHikvisionCamera], cli_env: dict[str, str],  # noqa: F811
    fake_do: FakeDigitalOcean, tmp_path: Path,  # noqa: F811
) -> None:
    porch, _ = cams
    env = dict(cli_env, **{ENV: PASSWORD})
    out = tmp_path / "porch.jpg"
    proc = await asyncio.create_subprocess_exec(
        exe(), "snapshot", "farm", "--camera", "porch", "-o", str(out), env=env,
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.read_bytes() == porch.last_jpeg

    await porch.stop()  # the camera is down: the message names it, within 20 s
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        exe(), "snapshot", "farm", "--camera", "porch", "-o", str(out), env=env,
        stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0 and "Camera porch" in err.decode()
    assert time.monotonic() - began < 20


async def test_camera_password_typed_in_chat_is_deleted_stored_and_used(
    ready: Core, do_settings: Settings, cams: list[FakeHikvisionCamera],  # noqa: F811
    api: FakeTelegramAPI, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    from sqlalchemy import select

    from bot.db.models import Secret

    porch, _ = cams
    monkeypatch.delenv(ENV)
    async with running_bot(do_settings, api, core=ready):
        api.inject_message(ADMIN_ID, "/camera rtsp porch farm")
        rtsp = await sent(api, "rtsp://", timeout=20)
        text = api.message(ADMIN_ID, rtsp).content or ""
        assert "rtsp://admin:PASSWORD@" in text and "/Streaming/Channels/101" in text
        api.inject_message(ADMIN_ID, "/camera password porch farm")
        await sent(api, "Send the password", timeout=20)
        typed = api.inject_message(ADMIN_ID, PASSWORD)
        await api.wait_for("deleteMessage", lambda c: c.params["message_id"] == typed)
        await sent(api, "Stored (encrypted)")
        api.inject_message(ADMIN_ID, "/snapshot farm porch")
        call = await api.wait_for("sendPhoto", timeout=20)
        assert api.message(ADMIN_ID, call.result["message_id"]).photo.data == porch.last_jpeg  # type: ignore[union-attr]
    async with ready.sessions() as s:
        blobs = (await s.execute(select(Secret.ciphertext))).scalars().all()
    assert all(PASSWORD.encode() not in b for b in blobs)
    assert not [c for c in api.calls() if c.method != "getUpdates" and PASSWORD in str(c.params)]


async def test_camera_daily_sets_and_clears_the_time(
    ready: Core, do_settings: Settings, cams: list[FakeHikvisionCamera],  # noqa: F811
    api: FakeTelegramAPI,  # noqa: F811
) -> None:
    async with running_bot(do_settings, api, core=ready):
        api.inject_message(ADMIN_ID, "/camera daily porch 08:00 farm")
        await sent(api, "every day at 08:00", timeout=20)
        spec = await ready.site_spec("farm")
        assert {c.name: c.daily_snapshot for c in spec.cameras}["porch"] == "08:00"
        assert [d.camera for d in await ready.daily_cameras()] == ["porch"]
        api.inject_message(ADMIN_ID, "/camera daily porch 25:99 farm")
        await sent(api, "not a time of day", timeout=20)
        api.inject_message(ADMIN_ID, "/camera daily porch off farm")
        await sent(api, "No more daily picture", timeout=20)
    assert await ready.daily_cameras() == []


async def test_camera_remove_asks_then_removes(
    ready: Core, do_settings: Settings, cams: list[FakeHikvisionCamera],  # noqa: F811
    api: FakeTelegramAPI,  # noqa: F811
) -> None:
    async with running_bot(do_settings, api, core=ready):
        api.inject_message(ADMIN_ID, "/camera remove gate farm")
        ask = await sent(api, "Remove camera gate", timeout=20)
        assert [c.name for c in await ready.camera_views("farm")] == ["gate", "porch"]
        press(api, ask, "Remove")
        await api.wait_for("editMessageText", lambda c: "removed from farm" in c.params["text"])
    assert [c.name for c in await ready.camera_views("farm")] == ["porch"]
    assert [c.name for c in (await ready.site_spec("farm")).cameras] == ["porch"]


async def test_a_picture_over_telegrams_photo_limit_goes_as_a_document(
    ready: Core, do_settings: Settings, droplet_host: DropletHost,  # noqa: F811
    cams: list[FakeHikvisionCamera], api: FakeTelegramAPI,  # noqa: F811
) -> None:
    async with FakeHikvisionCamera(host=droplet_host.host_addr, password=PASSWORD,
                                   main_bytes=11 * 1024 * 1024) as big:
        await ready.add_camera("farm", {"name": "big", "host": droplet_host.host_addr,
                                        "port": big.port, "password_env": ENV}, Actor.cli())
        async with running_bot(do_settings, api, core=ready):
            api.inject_message(ADMIN_ID, "/snapshot farm big")
            call = await api.wait_for("sendDocument", timeout=30)
            doc = api.message(ADMIN_ID, call.result["message_id"]).document
            assert doc is not None and doc.data == big.last_jpeg and doc.filename == "big.jpg"
    assert not api.calls("sendPhoto")


async def test_the_daily_picture_reaches_the_admins_at_the_sites_time(
    ready: Core, do_settings: Settings, cams: list[FakeHikvisionCamera],  # noqa: F811
    api: FakeTelegramAPI,  # noqa: F811
) -> None:
    from datetime import UTC, datetime

    from bot.app import DAILY_KEY, App

    porch, _ = cams
    doc = (await ready.site_spec("farm")).to_json()
    doc["timezone"] = "Asia/Kolkata"  # UTC+5:30
    from bot.site import SiteSpec

    await ready.apply_site(SiteSpec.model_validate(doc), Actor.cli())
    await ready.set_daily_snapshot("farm", "porch", "08:00", Actor.cli())
    apps: list[App] = []
    async with running_bot(do_settings, api, core=ready, customize=apps.append):
        daily = apps[0].bot_data[DAILY_KEY]
        assert await daily.tick(datetime(2026, 12, 2, 2, 0, tzinfo=UTC)) == []  # 07:30 there
        sent_now = await daily.tick(datetime(2026, 12, 2, 2, 30, tzinfo=UTC))  # 08:00 there
        assert [c.camera for c in sent_now] == ["porch"]
        call = await api.wait_for("sendPhoto", timeout=20)
        assert call.params["chat_id"] == ADMIN_ID
        photo = api.message(ADMIN_ID, call.result["message_id"])
        assert photo.photo is not None and photo.photo.data == porch.last_jpeg
        assert (photo.caption or "").startswith("☀️ porch · farm · 2026-")
        assert "IST" in (photo.caption or "")  # the site's time zone
        assert await daily.tick(datetime(2026, 12, 2, 3, 0, tzinfo=UTC)) == []  # once a day
