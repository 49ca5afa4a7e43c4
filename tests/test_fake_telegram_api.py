"""The fake Bot API must be faithful enough that a real PTB Application works against it."""

from __future__ import annotations

import asyncio
import datetime as dtm
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Conflict, InvalidToken, RetryAfter
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes

from tests.fakes.telegram_api import FakeTelegramAPI, running_application

USER_ID = 4242
CONF_BYTES = b"[Interface]\nPrivateKey = aGVsbG8=\nAddress = 10.8.0.2/32\n\x00\xff binary-safe\n"


@pytest.fixture
async def telegram_api() -> AsyncIterator[FakeTelegramAPI]:
    async with FakeTelegramAPI() as api:
        yield api


@pytest.fixture
async def bot(telegram_api: FakeTelegramAPI) -> AsyncIterator[Bot]:
    async with Bot(
        telegram_api.token,
        base_url=telegram_api.base_url,
        base_file_url=telegram_api.base_file_url,
    ) as b:
        yield b


async def test_start_command_roundtrip_through_polling(telegram_api: FakeTelegramAPI) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None and update.effective_user is not None
        await update.effective_message.reply_text(f"Hello {update.effective_user.first_name}")

    app = telegram_api.application_builder().build()
    app.add_handler(CommandHandler("start", start))
    async with running_application(app):
        await telegram_api.wait_for_polling()
        telegram_api.inject_message(USER_ID, "/start", first_name="Ada")
        call = await telegram_api.wait_for("sendMessage")
        # The poll after the batch carries the offset that confirms the update.
        await telegram_api.wait_for("getUpdates", lambda c: c.params.get("offset", 0) > 0)

    assert call.ok
    assert call.params["chat_id"] == USER_ID
    assert call.params["text"] == "Hello Ada"
    assert [m.text for m in telegram_api.messages_to(USER_ID)] == ["Hello Ada"]
    assert telegram_api.pending_update_count == 0
    assert telegram_api.calls("getMe"), "Application.initialize() must call getMe"
    assert telegram_api.server_errors == []


async def test_only_commands_reach_command_handler(telegram_api: FakeTelegramAPI) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text(f"args={context.args}")

    app = telegram_api.application_builder().build()
    app.add_handler(CommandHandler("start", start))
    async with running_application(app):
        telegram_api.inject_message(USER_ID, "start please")
        telegram_api.inject_message(USER_ID, "/start@camreach_test_bot deep-link")
        reply = await telegram_api.wait_for("sendMessage")

    # Updates are processed in order, so the plain text was handled (ignored) before.
    assert reply.params["text"] == "args=['deep-link']"
    assert len(telegram_api.calls("sendMessage")) == 1


async def test_callback_query_is_answered_and_message_edited(
    telegram_api: FakeTelegramAPI,
) -> None:
    async def menu(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        keyboard = [[InlineKeyboardButton("Provision", callback_data="provision:1")]]
        await update.effective_message.reply_text(
            "Choose:", reply_markup=InlineKeyboardMarkup(keyboard)
        )

    async def pressed(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer("Working…")
        await query.edit_message_text(f"<b>Done</b>: {query.data}", parse_mode="HTML")

    app = telegram_api.application_builder().build()
    app.add_handler(CommandHandler("menu", menu))
    app.add_handler(CallbackQueryHandler(pressed, pattern=r"^provision:"))
    async with running_application(app):
        telegram_api.inject_message(USER_ID, "/menu")
        sent = await telegram_api.wait_for("sendMessage")
        menu_id = sent.result["message_id"]
        assert telegram_api.message(USER_ID, menu_id).button_data() == ["provision:1"]

        with pytest.raises(AssertionError, match="no button"):
            telegram_api.inject_callback(USER_ID, "nope", menu_id)
        callback_id = telegram_api.inject_callback(USER_ID, "provision:1", menu_id)
        answer = await telegram_api.wait_for(
            "answerCallbackQuery", lambda c: c.params["callback_query_id"] == callback_id
        )
        edit = await telegram_api.wait_for("editMessageText")

    assert answer.ok and answer.params["text"] == "Working…"
    assert edit.ok and edit.params["message_id"] == menu_id
    stored = telegram_api.message(USER_ID, menu_id)
    assert stored.text == "<b>Done</b>: provision:1"
    assert stored.history == ["Choose:", "<b>Done</b>: provision:1"]
    assert stored.reply_markup is None, "editing without reply_markup drops the keyboard"


async def test_send_document_bytes_recorded_and_downloadable(
    telegram_api: FakeTelegramAPI, bot: Bot
) -> None:
    message = await bot.send_document(
        USER_ID, CONF_BYTES, filename="camreach-wg0.conf", caption="WireGuard config"
    )

    call = telegram_api.calls("sendDocument")[-1]
    uploaded = call.files["document"]
    assert uploaded.data == CONF_BYTES
    assert uploaded.filename == "camreach-wg0.conf"
    assert call.params["caption"] == "WireGuard config"
    assert message.document is not None
    assert message.document.file_name == "camreach-wg0.conf"
    assert message.document.file_size == len(CONF_BYTES)
    assert telegram_api.messages_to(USER_ID)[-1].document is uploaded

    # getFile + download exercise base_file_url.
    file = await bot.get_file(message.document.file_id)
    assert bytes(await file.download_as_bytearray()) == CONF_BYTES


async def test_send_photo_accepts_png_and_rejects_garbage(
    telegram_api: FakeTelegramAPI, bot: Bot
) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00\x00\x00\x00\x80" + b"\x00" * 16
    message = await bot.send_photo(USER_ID, png, caption="QR")
    assert message.photo[-1].width == 256 and message.photo[-1].height == 128
    assert telegram_api.calls("sendPhoto")[-1].files["photo"].data == png

    with pytest.raises(BadRequest, match=r"(?i)image_process_failed"):
        await bot.send_photo(USER_ID, b"definitely not an image")


async def test_edit_message_text_updates_stored_text(
    telegram_api: FakeTelegramAPI, bot: Bot
) -> None:
    progress = await bot.send_message(USER_ID, "Provisioning: 0%")
    for pct in (50, 100):
        await bot.edit_message_text(f"Provisioning: {pct}%", USER_ID, progress.message_id)

    stored = telegram_api.message(USER_ID, progress.message_id)
    assert stored.text == "Provisioning: 100%"
    assert stored.history == ["Provisioning: 0%", "Provisioning: 50%", "Provisioning: 100%"]
    assert stored.edit_date is not None

    with pytest.raises(BadRequest, match="not modified"):
        await bot.edit_message_text("Provisioning: 100%", USER_ID, progress.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to edit not found"):
        await bot.edit_message_text("x", USER_ID, progress.message_id + 100)

    second = await bot.send_message(USER_ID, "next")
    assert second.message_id == progress.message_id + 1
    assert await bot.delete_message(USER_ID, second.message_id)
    assert [m.message_id for m in telegram_api.messages_to(USER_ID)] == [progress.message_id]


async def test_realistic_validation_errors(bot: Bot) -> None:
    with pytest.raises(BadRequest, match=r"(?i)unsupported start tag"):
        await bot.send_message(USER_ID, "line<br>break", parse_mode="HTML")
    with pytest.raises(BadRequest, match=r"(?i)can't find end tag"):
        await bot.send_message(USER_ID, "<b>unclosed", parse_mode="HTML")
    with pytest.raises(BadRequest, match="too long"):
        await bot.send_message(USER_ID, "x" * 4097)
    # The limit applies to rendered text: markup does not count.
    await bot.send_message(USER_ID, f"<b>{'x' * 4090}</b> &amp;", parse_mode="HTML")
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="d" * 65)]])
    with pytest.raises(BadRequest, match=r"(?i)button_data_invalid"):
        await bot.send_message(USER_ID, "menu", reply_markup=too_long)
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query("123")


async def test_wrong_token_raises_invalid_token(telegram_api: FakeTelegramAPI) -> None:
    wrong = Bot("987654321:wrong-token", base_url=telegram_api.base_url)
    try:
        with pytest.raises(InvalidToken):
            await wrong.get_me()
    finally:
        # get_me() on a never-initialized Bot still opens a connection; close it.
        await wrong.request.shutdown()
    assert telegram_api.calls("getMe")[-1].status == 401


async def test_application_with_wrong_token_fails_to_initialize(
    telegram_api: FakeTelegramAPI,
) -> None:
    app = telegram_api.application_builder(token="987654321:wrong-token").build()
    with pytest.raises(InvalidToken):
        async with running_application(app):
            pytest.fail("must not start")
    assert telegram_api.get_updates_count == 0


async def test_commands_roundtrip(telegram_api: FakeTelegramAPI, bot: Bot) -> None:
    await bot.set_my_commands([("start", "Start"), ("status", "Show status")])
    assert [c.command for c in await bot.get_my_commands()] == ["start", "status"]
    assert telegram_api.calls("setMyCommands")[-1].params["commands"][1] == {
        "command": "status",
        "description": "Show status",
    }
    await bot.delete_my_commands()
    assert await bot.get_my_commands() == ()
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([("Bad-Name", "x")])


async def test_fail_next_retry_after(
    telegram_api: FakeTelegramAPI, bot: Bot, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without PTB_TIMEDELTA, PTB 22 emits a deprecation warning when it builds RetryAfter.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    telegram_api.fail_next("sendMessage", 429, retry_after=3)
    with pytest.raises(RetryAfter) as excinfo:
        await bot.send_message(USER_ID, "flood")
    assert excinfo.value.retry_after == dtm.timedelta(seconds=3)
    assert (await bot.send_message(USER_ID, "again")).text == "again"
    assert [c.status for c in telegram_api.calls("sendMessage")] == [429, 200]


async def test_get_updates_long_polls_and_wakes_on_injection(
    telegram_api: FakeTelegramAPI, bot: Bot
) -> None:
    poll = asyncio.create_task(bot.get_updates(timeout=10))
    await telegram_api.wait_for("getUpdates")
    started = time.monotonic()
    telegram_api.inject_message(USER_ID, "hi")
    updates = await asyncio.wait_for(poll, 2)
    assert time.monotonic() - started < 1.0
    assert [u.message.text for u in updates if u.message] == ["hi"]

    # Without an offset the update stays queued; the offset confirms it.
    assert len(await bot.get_updates(timeout=0)) == 1
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == ()
    assert telegram_api.pending_update_count == 0


async def test_get_updates_waits_for_timeout_when_idle(telegram_api: FakeTelegramAPI) -> None:
    url = f"{telegram_api.base_url}{telegram_api.token}/getUpdates"
    async with aiohttp.ClientSession() as session:
        started = time.monotonic()
        # JSON body (PTB uses form encoding) and a fractional timeout to keep the test short.
        async with session.post(url, json={"timeout": 0.3}) as resp:
            body: dict[str, Any] = await resp.json()
    assert body == {"ok": True, "result": []}
    assert 0.25 <= time.monotonic() - started < 2.0


async def test_second_poller_conflicts_with_first(telegram_api: FakeTelegramAPI, bot: Bot) -> None:
    # Two bot instances on one token; one Bot can't do this (its getUpdates pool has 1 slot).
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await telegram_api.wait_for("getUpdates")
    async with Bot(
        telegram_api.token, base_url=telegram_api.base_url, base_file_url=telegram_api.base_file_url
    ) as second:
        assert await second.get_updates(timeout=0) == ()
    with pytest.raises(Conflict):
        await asyncio.wait_for(first, 2)


async def test_unknown_method_recorded_and_ok(telegram_api: FakeTelegramAPI) -> None:
    url = f"{telegram_api.base_url}{telegram_api.token}/setMyDescription"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data={"description": "Camera access"}) as resp:
            assert resp.status == 200
            assert await resp.json() == {"ok": True, "result": True}
    assert telegram_api.calls("setMyDescription")[0].params == {"description": "Camera access"}


async def test_wait_for_timeout_lists_calls(telegram_api: FakeTelegramAPI, bot: Bot) -> None:
    await bot.send_message(USER_ID, "only this")
    with pytest.raises(AssertionError, match=r"(?s)no editMessageText.*sendMessage"):
        await telegram_api.wait_for("editMessageText", timeout=0.05)
    # wait_for consumes: the same call is not returned twice.
    await telegram_api.wait_for("sendMessage")
    with pytest.raises(AssertionError):
        await telegram_api.wait_for("sendMessage", timeout=0.05)
