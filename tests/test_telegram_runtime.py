"""The real Application against the fake Bot API: access control, help, errors, operations."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from telegram import Update
from telegram.ext import CommandHandler

from bot.app import App
from bot.core import Core
from bot.db.models import AuditLog, Operation, OpState
from bot.errors import RemoteFailed
from bot.operations import OpContext
from bot.services.audit import Actor
from bot.settings import Settings
from bot.site import parse_site
from handlers.context import CamreachContext
from handlers.operations import RETRY_PREFIX, start_with_progress
from tests.botharness import running_bot
from tests.conftest import ADMIN_ID, STRANGER_ID
from tests.fakes.telegram_api import FakeTelegramAPI

GROUP_ID = -100500


@pytest.fixture
async def api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as fake:
        yield fake


def texts_to(api: FakeTelegramAPI, chat_id: int) -> list[str]:
    return [m.content or "" for m in api.messages_to(chat_id)]


async def audit_rows(core: Core) -> list[AuditLog]:
    async with core.sessions() as s:
        return list((await s.execute(select(AuditLog).order_by(AuditLog.id))).scalars())


async def test_admin_gets_help_and_commands_registered(settings: Settings,
                                                       api: FakeTelegramAPI) -> None:
    async with running_bot(settings, api):
        api.inject_message(ADMIN_ID, "/start")
        call = await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == ADMIN_ID)
        assert "camreach lets you reach IP cameras" in call.params["text"]
        assert "/status" in call.params["text"]
        api.inject_message(ADMIN_ID, "/help")
        await api.wait_for("sendMessage", lambda c: "/flash" in c.params["text"])
    names = [c["command"] for c in api.commands()]
    assert {"start", "help", "status", "flash"} <= set(names)


async def test_stranger_refused_once_per_hour_with_audit(settings: Settings,
                                                         api: FakeTelegramAPI) -> None:
    async with running_bot(settings, api) as bot:
        api.inject_message(STRANGER_ID, "/status", username="mallory")
        call = await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == STRANGER_ID)
        assert str(STRANGER_ID) in call.params["text"]
        assert "CAMREACH_ADMINS" in call.params["text"]
        api.inject_message(STRANGER_ID, "/start")
        api.inject_message(ADMIN_ID, "/start")  # processed after the stranger's second try
        await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == ADMIN_ID)
        await asyncio.sleep(0.2)
        assert len(texts_to(api, STRANGER_ID)) == 1  # one refusal, not two
        rows = await audit_rows(bot.core)
    refused = [r for r in rows if r.outcome == "refused"]
    assert len(refused) == 1
    assert (refused[0].user_id, refused[0].username, refused[0].action) == (
        STRANGER_ID, "mallory", "refused /status")
    # the admin's command is in the audit trail too
    assert [(r.user_id, r.action, r.outcome) for r in rows if r.user_id == ADMIN_ID] == [
        (ADMIN_ID, "/start", "received")]


async def test_groups_obey_admins_only(settings: Settings, api: FakeTelegramAPI) -> None:
    async with running_bot(settings, api):
        api.inject_message(STRANGER_ID, "/start", chat_id=GROUP_ID, chat_type="group")
        refusal = await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == GROUP_ID)
        assert "only obeys its owners" in refusal.params["text"]
        api.inject_message(ADMIN_ID, "/start", chat_id=GROUP_ID, chat_type="group")
        reply = await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == GROUP_ID)
        assert "camreach lets you reach" in reply.params["text"]


async def test_stranger_callback_refused(settings: Settings, api: FakeTelegramAPI) -> None:
    async with running_bot(settings, api) as bot:
        await bot.core.apply_site(parse_site({"name": "farm", "router": {
            "password_env": "P"}}), Actor.cli())
        # An admin's /flash shows model buttons; a stranger presses one.
        api.inject_message(ADMIN_ID, "/flash")
        menu = await api.wait_for("sendMessage", lambda c: "reply_markup" in c.params)
        msg_id = menu.result["message_id"]
        data = api.message(ADMIN_ID, msg_id).button_data()[0]
        api.inject_callback(STRANGER_ID, data, msg_id, chat_id=ADMIN_ID)
        answer = await api.wait_for("answerCallbackQuery")
        assert "not one of this bot's admins" in answer.params["text"]
        await asyncio.sleep(0.2)
        # the menu was not acted on
        assert api.message(ADMIN_ID, msg_id).content == "Which router are you flashing?"
        # the admin's own press works
        api.inject_callback(ADMIN_ID, data, msg_id)
        await api.wait_for("editMessageText", lambda c: c.params["message_id"] == msg_id)
        assert "camreach flash" in (api.message(ADMIN_ID, msg_id).content or "")


def demo_command(gate: asyncio.Event, started: asyncio.Event):  # type: ignore[no-untyped-def]
    """A test-only command that starts a registered demo operation with progress."""

    async def demo(update: Update, context: CamreachContext) -> None:
        await start_with_progress(update, context, "demo", site="farm", params={"n": 3})

    def customize(app: App) -> None:
        core: Core = app.bot_data["camreach.core"]

        async def work(ctx: OpContext) -> str:
            for i in range(1, ctx.params["n"] + 1):
                await ctx.step(i, ctx.params["n"] + 1, f"step {i} of the demo")
                if i == 2:
                    started.set()
                    await gate.wait()
            return "demo finished"

        core.operations.register("demo", work)
        app.add_handler(CommandHandler("demo", demo))

    return customize


async def test_operation_progress_edited_in_place(settings: Settings,
                                                  api: FakeTelegramAPI) -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    async with running_bot(settings, api, customize=demo_command(gate, started)) as bot:
        await bot.core.apply_site(parse_site({"name": "farm", "router": {
            "password_env": "P"}}), Actor.cli())
        api.inject_message(ADMIN_ID, "/demo")
        await asyncio.wait_for(started.wait(), 10)
        # A second operation on the same site is refused with a clear message.
        api.inject_message(ADMIN_ID, "/demo")
        busy = await api.wait_for("sendMessage", lambda c: "is busy" in c.params["text"])
        assert "farm" in busy.params["text"]
        # The progress message shows the bar and the current step while the work waits.
        mid = await api.wait_for("editMessageText",
                                 lambda c: "step 2 of the demo" in c.params["text"], timeout=10)
        assert "[█████░░░░░] step 2/4" in mid.params["text"]
        gate.set()
        await api.wait_for("editMessageText", lambda c: "Done" in c.params["text"], timeout=10)
        progress = [m for m in api.messages_to(ADMIN_ID)
                    if (m.content or "").startswith(("⏳ demo", "✅ demo"))]
    assert len(progress) == 1  # one message, edited in place
    assert progress[0].message_id == mid.params["message_id"]
    assert progress[0].content is not None and "demo finished" in progress[0].content


async def test_stop_mid_operation_then_restart_offers_retry(settings: Settings,
                                                             api: FakeTelegramAPI) -> None:
    gate, started = asyncio.Event(), asyncio.Event()
    custom = demo_command(gate, started)
    async with running_bot(settings, api, customize=custom) as bot:
        await bot.core.apply_site(parse_site({"name": "farm", "router": {
            "password_env": "P"}}), Actor.cli())
        api.inject_message(ADMIN_ID, "/demo")
        await asyncio.wait_for(started.wait(), 10)
        await bot.shutdown()  # SIGTERM path: running work is recorded as interrupted
        async with bot.core.sessions() as s:
            op = (await s.execute(select(Operation))).scalar_one()
        assert op.state is OpState.INTERRUPTED and op.step == 2
    # A crash leaves a row 'running' whose owner renews it no more; simulate that directly.
    async with running_bot(settings, api) as bot2:
        pass
    core = await Core.open(bot2.settings)
    try:
        async with core.engine.begin() as conn:
            await conn.execute(text("UPDATE operations SET state='running', finished_at=NULL, "
                                    "heartbeat_at=NULL"))
        started.clear()
        async with running_bot(settings, api, core=core, customize=custom):
            note = await api.wait_for("sendMessage", lambda c: "restarted" in c.params["text"])
            assert f"#{op.id}" in note.params["text"] and "step 2/4" in note.params["text"]
            msg_id = note.result["message_id"]
            assert api.message(ADMIN_ID, msg_id).button_data() == [f"{RETRY_PREFIX}{op.id}"]
            api.inject_callback(ADMIN_ID, f"{RETRY_PREFIX}{op.id}", msg_id)
            await asyncio.wait_for(started.wait(), 10)
            gate.set()
            await api.wait_for("editMessageText", lambda c: "demo finished" in c.params["text"],
                               timeout=10)
        async with core.sessions() as s:
            states = [o.state for o in (await s.execute(
                select(Operation).order_by(Operation.id))).scalars()]
        assert states == [OpState.INTERRUPTED, OpState.SUCCEEDED]
    finally:
        await core.close()


async def test_error_handler_reports_without_secrets(settings: Settings, api: FakeTelegramAPI,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from bot.logs import REDACTOR

    caplog.handler.addFilter(REDACTOR)
    caplog.set_level(logging.DEBUG)

    async def boom(update: Update, context: CamreachContext) -> None:
        raise RuntimeError(f"internal failure with token {context.bot.token}")

    async def expected(update: Update, context: CamreachContext) -> None:
        raise RemoteFailed("The router did not accept the config.")

    def customize(app: App) -> None:
        app.add_handler(CommandHandler("boom", boom))
        app.add_handler(CommandHandler("expected", expected))

    async with running_bot(settings, api, customize=customize) as bot:
        api.inject_message(ADMIN_ID, "/boom")
        generic = await api.wait_for("sendMessage", lambda c: "went wrong" in c.params["text"])
        api.inject_message(ADMIN_ID, "/expected")
        specific = await api.wait_for("sendMessage",
                                      lambda c: "did not accept" in c.params["text"])
        token = bot.settings.require_bot_token()
    assert token not in generic.params["text"] and token not in specific.params["text"]
    assert "Traceback" in caplog.text and "RuntimeError" in caplog.text
    assert token not in caplog.text
    assert token.split(":")[1] not in caplog.text


async def test_rate_limited_send_is_retried(settings: Settings, api: FakeTelegramAPI) -> None:
    async with running_bot(settings, api):
        api.fail_next("sendMessage", 429, retry_after=1)
        api.inject_message(ADMIN_ID, "/start")
        ok = await api.wait_for("sendMessage", lambda c: c.ok, timeout=10)
    failed = [c for c in api.calls("sendMessage") if not c.ok]
    assert len(failed) == 1 and failed[0].status == 429
    assert "camreach lets you reach" in ok.params["text"]


async def test_wrong_token_is_clear(settings: Settings, api: FakeTelegramAPI) -> None:
    from bot.app import run_bot
    from bot.errors import ConfigError

    s = settings.model_copy(update={"telegram_bot_token": SecretStr("999:wrong"),
                                    "telegram_api_base_url": api.base_url})
    with pytest.raises(ConfigError, match=r"Telegram rejected TELEGRAM_BOT_TOKEN.*@BotFather"):
        await run_bot(s, asyncio.Event())


async def test_status_lists_sites_and_details(settings: Settings, api: FakeTelegramAPI) -> None:
    async with running_bot(settings, api) as bot:
        for name in ("farm", "shop"):
            await bot.core.apply_site(parse_site({"name": name, "router": {
                "password_env": "P"}, "cameras": [{"name": "porch", "host": "192.168.1.64"}]}),
                Actor.cli())
        api.inject_message(ADMIN_ID, "/status")
        both = await api.wait_for("sendMessage", lambda c: "farm" in c.params["text"])
        lines = both.params["text"].splitlines()
        assert [ln.split(":")[0] for ln in lines[:2]] == ["farm", "shop"]  # a line per site
        api.inject_message(ADMIN_ID, "/status shop")
        one = await api.wait_for("sendMessage", lambda c: "shop" in c.params["text"])
        assert "farm" not in one.params["text"] and "cameras: porch" in one.params["text"]
        assert "droplet: not created yet" in one.params["text"]
        assert "not checked yet" in one.params["text"]
        api.inject_message(ADMIN_ID, "/status nowhere")
        err = await api.wait_for("sendMessage", lambda c: "nowhere" in c.params["text"])
        assert "There is no site named 'nowhere'" in err.params["text"]
