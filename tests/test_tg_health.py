"""/status, Refresh, alerts with their buttons, /mute, /unmute and /uptime through the real
Application against the fake Bot API. The network is a scripted prober (what each part of
the site answers); sweeps, the outbox and the bot's sending are the real ones."""

from __future__ import annotations

from sqlalchemy import select

from bot.core import Core
from bot.db.models import SiteSweep
from bot.settings import Settings
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID
from tests.fakes.telegram_api import FakeTelegramAPI
from tests.test_health_sweep import (
    ALL_OK,
    TUNNEL_DOWN,
    Clock,
    Scripted,
    add_site,
    sweep_until_idle,
    sweeper,
)
from tests.test_tg_setup import api  # noqa: F401

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GROUP = -100777


async def test_an_outage_alerts_once_with_buttons_and_mute_holds_the_next(
        core: Core, settings: Settings, api: FakeTelegramAPI) -> None:  # noqa: F811
    await add_site(core, "farmhouse")
    prober, clock = Scripted(), Clock()
    core.health_service.prober = prober
    sw = sweeper(core, prober, clock)
    s = settings.model_copy(update={"camreach_alert_chat": GROUP})
    core.settings = s
    async with running_bot(s, api, core=core):
        await sweep_until_idle(sw, clock, 70)
        prober.now["farmhouse"] = TUNNEL_DOWN
        await sweep_until_idle(sw, clock, 300)
        alert = await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == ADMIN_ID
                                   and "tunnel down" in c.params["text"], timeout=10)
        group = await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == GROUP,
                                   timeout=10)
        assert group.params["text"] == alert.params["text"]
        text = alert.params["text"]
        assert text.startswith("farmhouse: tunnel down since") and "RSRP -112 dBm" in text
        message = api.message(ADMIN_ID, alert.result["message_id"])
        assert message.button_data() == ["hs:farmhouse", "hm:farmhouse", "hp:farmhouse"]

        api.inject_callback(ADMIN_ID, "hs:farmhouse", alert.result["message_id"])
        detail = await api.wait_for("sendMessage", lambda c: "hr:farmhouse" in str(
            c.params.get("reply_markup")), timeout=10)
        assert "tunnel" in detail.params["text"] and "down" in detail.params["text"]

        api.inject_callback(ADMIN_ID, "hm:farmhouse", alert.result["message_id"])
        await api.wait_for("sendMessage", lambda c: "muted for 2h" in c.params["text"],
                           timeout=10)
        async with core.sessions() as session:
            row = (await session.execute(select(SiteSweep))).scalar_one()
        assert row.muted_until is not None
        assert (row.muted_until - clock()).total_seconds() > 3600

        # Back up while muted: the recovery is recorded, not sent.
        prober.now["farmhouse"] = ALL_OK
        await sweep_until_idle(sw, clock, 300)
        await api.wait_for("getUpdates", timeout=10)
        await api.wait_for("getUpdates", timeout=10)
    texts_sent = [c.params["text"] for c in api.calls("sendMessage")
                  if c.params["chat_id"] == ADMIN_ID]
    assert sum(t.startswith("farmhouse: tunnel down since") for t in texts_sent) == 1
    assert not [t for t in texts_sent if t.startswith(("farmhouse: router", "farmhouse: modem",
                                                       "farmhouse: camera"))]
    assert not [t for t in texts_sent if "back up" in t]


async def test_status_answers_at_once_and_refresh_edits_it_in_place(
        core: Core, settings: Settings, api: FakeTelegramAPI) -> None:  # noqa: F811
    await add_site(core, "farm")
    prober = Scripted()
    core.health_service.prober = prober
    async with running_bot(settings, api, core=core):
        api.inject_message(ADMIN_ID, "/status")
        first = await api.wait_for("sendMessage", lambda c: "farm" in c.params["text"],
                                   timeout=10)
        assert "not checked yet" in first.params["text"]
        assert prober.calls == []  # answered from the database, no probe
        api.inject_callback(ADMIN_ID, "hr:", first.result["message_id"])
        edit = await api.wait_for("editMessageText", timeout=15)
        assert edit.params["message_id"] == first.result["message_id"]
        assert "✅" in edit.params["text"] and "RSRP -112 dBm" in edit.params["text"]
        assert prober.calls == ["farm"]

        prober.now["farm"] = {**ALL_OK, "camera:gate": False}
        api.inject_message(ADMIN_ID, "/status farm")
        detail = await api.wait_for("sendMessage", lambda c: "hr:farm" in str(
            c.params.get("reply_markup")), timeout=10)
        assert "camera" in detail.params["text"]
        api.inject_callback(ADMIN_ID, "hr:farm", detail.result["message_id"])
        edit = await api.wait_for("editMessageText", timeout=15)
        assert "failing" in edit.params["text"] or "⚠" in edit.params["text"]


async def test_mute_unmute_and_uptime(core: Core, settings: Settings,
                                      api: FakeTelegramAPI) -> None:  # noqa: F811
    await add_site(core, "farm")
    prober, clock = Scripted(), Clock()
    sw = sweeper(core, prober, clock)
    await sweep_until_idle(sw, clock, 200)
    async with running_bot(settings, api, core=core):
        api.inject_message(ADMIN_ID, "/mute farm soon")
        await api.wait_for("sendMessage", lambda c: "not a duration" in c.params["text"],
                           timeout=10)
        api.inject_message(ADMIN_ID, "/mute farm")
        await api.wait_for("sendMessage", lambda c: "until /unmute" in c.params["text"],
                           timeout=10)
        (health,) = await core.health(["farm"])
        assert health.muted_until is not None and health.muted_until.year == 9999
        api.inject_message(ADMIN_ID, "/status")
        line = await api.wait_for("sendMessage", lambda c: "muted" in c.params["text"]
                                  and "farm" in c.params["text"], timeout=10)
        assert "farm (muted until /unmute)" in line.params["text"]
        api.inject_message(ADMIN_ID, "/unmute farm")
        await api.wait_for("sendMessage", lambda c: "sent again" in c.params["text"],
                           timeout=10)
        assert (await core.health(["farm"]))[0].muted_until is None

        api.inject_message(ADMIN_ID, "/uptime farm")
        text = await api.wait_for("sendMessage", lambda c: "24 h" in c.params["text"],
                                  timeout=10)
        assert "100" in text.params["text"]  # every check of this day was up
        photo = await api.wait_for("sendPhoto", timeout=20)
        picture = api.message(ADMIN_ID, photo.result["message_id"]).photo
        assert picture is not None and picture.data.startswith(PNG_MAGIC)

