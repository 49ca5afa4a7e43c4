"""In-process fake of the Telegram Bot API, for driving a *real* PTB ``Application`` in tests.

The fake is an aiohttp server on 127.0.0.1 (ephemeral port). PTB is pointed at it with
``base_url``/``base_file_url``; everything PTB does then goes over real HTTP, so request
encoding, error mapping, long polling and shutdown are exercised as in production.

Usage::

    async with FakeTelegramAPI() as api:
        app = api.application_builder().build()
        app.add_handler(CommandHandler("start", start))
        async with running_application(app):
            api.inject_message(user_id=42, text="/start")
            call = await api.wait_for("sendMessage", lambda c: c.params["chat_id"] == 42)
            assert "Welcome" in call.params["text"]

Behaviour mirrors the real Bot API where it is cheap to do so (error codes and descriptions,
"message is not modified", keyboard removal on edit, 64-byte callback_data limit, HTML
parse-mode validation, getUpdates conflicts), because a lenient fake hides exactly the bugs
that show up in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import logging
import re
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiohttp import web
from telegram.ext import Application

if TYPE_CHECKING:
    from telegram.ext._applicationbuilder import InitApplicationBuilder

__all__ = [
    "DEFAULT_TOKEN",
    "ApiCall",
    "FakeTelegramAPI",
    "StoredMessage",
    "UploadedFile",
    "running_application",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_TOKEN = "123456789:AAFakeTokenForCamreachTests_0123456"

JSONDict = dict[str, Any]
Predicate = Callable[["ApiCall"], bool]

# Form values that are plain strings in the Bot API; everything else is JSON-decoded, because
# PTB sends non-string values (ints, bools, reply_markup, commands...) JSON-encoded.
_STRING_PARAMS = frozenset(
    (
        "text caption parse_mode callback_query_id inline_message_id url description "
        "short_description name title language_code action emoji query file_id "
        "business_connection_id message_effect_id secret_token ip_address custom_title "
        "first_name last_name phone_number address question explanation payload currency "
        "start_parameter next_offset invite_link document photo"
    ).split()
)

_CHAT_ACTIONS = frozenset(
    (
        "typing upload_photo record_video upload_video record_voice upload_voice "
        "upload_document choose_sticker find_location record_video_note upload_video_note"
    ).split()
)

_HTML_TAGS = frozenset(
    ("a b strong i em u ins s strike del span tg-spoiler tg-emoji code pre blockquote").split()
)
_HTML_TAG_RE = re.compile(r"<(/?)([^\s/>]*)[^>]*(>?)")
_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"RIFF")

_MAX_TEXT = 4096
_MAX_CAPTION = 1024
_NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup "
    "are exactly the same as a current content and reply markup of the message"
)
_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
}


@dataclass
class UploadedFile:
    """A file the bot uploaded (multipart part), kept so tests can assert on its bytes."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes
    file_id: str = ""
    file_unique_id: str = ""


@dataclass
class ApiCall:
    """One HTTP call to the fake. ``response`` is ``None`` while the call is still in flight."""

    index: int
    method: str
    params: JSONDict
    files: dict[str, UploadedFile]
    token: str
    timestamp: float  # time.monotonic() at arrival, comparable with benchmark clocks
    status: int | None = None
    response: JSONDict | None = None
    started: float = 0.0  # time.monotonic() when the request's headers arrived (upload start)

    @property
    def ok(self) -> bool:
        return bool(self.response and self.response.get("ok"))

    @property
    def result(self) -> Any:
        return None if self.response is None else self.response.get("result")

    def summary(self) -> str:
        params = json.dumps(self.params, default=str, ensure_ascii=False)
        if len(params) > 200:
            params = params[:197] + "..."
        files = f" files={sorted(self.files)}" if self.files else ""
        return f"#{self.index} {self.method} -> {self.status} {params}{files}"


@dataclass
class StoredMessage:
    """Current state of a message in a chat, plus the history of its text/caption."""

    chat_id: int
    message_id: int
    sender: JSONDict
    from_bot: bool
    date: int
    text: str | None = None
    caption: str | None = None
    parse_mode: str | None = None
    reply_markup: JSONDict | None = None
    document: UploadedFile | None = None
    photo: UploadedFile | None = None
    entities: list[JSONDict] = field(default_factory=list)
    reply_to: StoredMessage | None = None
    edit_date: int | None = None
    deleted: bool = False
    # Successive text (or caption) values, the original first: progress messages are
    # asserted on through this.
    history: list[str | None] = field(default_factory=list)

    @property
    def content(self) -> str | None:
        return self.text if self.text is not None else self.caption

    @property
    def inline_keyboard(self) -> list[list[JSONDict]]:
        markup = self.reply_markup or {}
        keyboard: list[list[JSONDict]] = markup.get("inline_keyboard", [])
        return keyboard

    def button_data(self) -> list[str]:
        """All callback_data values of the current inline keyboard, row by row."""
        return [
            b["callback_data"] for row in self.inline_keyboard for b in row if "callback_data" in b
        ]


@dataclass
class _Fault:
    error_code: int
    description: str
    parameters: JSONDict | None


class _ApiError(Exception):
    def __init__(self, code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters

    def body(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body


class _Signal:
    """Wake every current waiter; waiters re-check their condition (no lost wake-ups because
    the event is captured before awaiting, within a single event loop)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)


def _decode_param(name: str, value: Any) -> Any:
    if not isinstance(value, str) or name in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value  # e.g. chat_id="@channel", file ids, URLs


def _utf16_len(text: str) -> int:
    # Telegram entity offsets/lengths are in UTF-16 code units.
    return len(text.encode("utf-16-le")) // 2


def _entity_error(detail: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: can't parse entities: {detail}")


def _check_html(text: str) -> None:
    """Subset of tdlib's HTML parser checks: unknown tags and bad nesting are rejected."""
    stack: list[str] = []
    for match in _HTML_TAG_RE.finditer(text):
        offset = len(text[: match.start()].encode())  # tdlib reports UTF-8 byte offsets
        closing, tag, terminated = match.group(1), match.group(2).lower(), match.group(3)
        if not terminated:
            raise _entity_error(f"Unclosed start tag at byte offset {offset}")
        if not closing:
            if tag not in _HTML_TAGS:
                raise _entity_error(f'Unsupported start tag "{tag}" at byte offset {offset}')
            stack.append(tag)
            continue
        if not stack:
            raise _entity_error(f"Unexpected end tag at byte offset {offset}")
        expected = stack.pop()
        if tag != expected:
            raise _entity_error(
                f'Unmatched end tag at byte offset {offset}, expected "</{expected}>", '
                f'found "</{tag}>"'
            )
    if stack:
        raise _entity_error(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')


def _image_size(data: bytes) -> tuple[int, int]:
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 1, 1  # other formats: dimensions are not worth parsing for tests


class FakeTelegramAPI:
    """Fake Bot API server. Use as ``async with FakeTelegramAPI() as api: ...``."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "camreach_test_bot",
        bot_first_name: str = "camreach",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.host = host
        self._requested_port = port
        self.port = 0
        bot_id_part = token.split(":", 1)[0]
        self.bot_user: JSONDict = {
            "id": int(bot_id_part) if bot_id_part.isdigit() else 1,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.server_errors: list[BaseException] = []

        self._runner: web.AppRunner | None = None
        self._closing = False
        self._calls: list[ApiCall] = []
        self._consumed: set[int] = set()
        self._calls_signal = _Signal()
        self._updates: list[JSONDict] = []
        self._updates_signal = _Signal()
        self._update_ids = itertools.count(1000)
        self._poll_generation = 0
        self._webhook_url = ""
        self._faults: dict[str, list[_Fault]] = {}
        self._chats: dict[int, JSONDict] = {}
        self._channel_ids: dict[str, int] = {}
        self._next_message_id: dict[int, int] = {}
        self._messages: dict[tuple[int, int], StoredMessage] = {}
        self._callbacks: dict[str, bool] = {}  # callback query id -> answered
        self._callback_ids = itertools.count(4_000_000_000_000_000_001)
        self._file_ids = itertools.count(1)
        self._files: dict[str, UploadedFile] = {}
        self._file_paths: dict[str, UploadedFile] = {}
        self._commands: dict[str, list[JSONDict]] = {}

        self._handlers: dict[str, Callable[[JSONDict, dict[str, UploadedFile]], Awaitable[Any]]]
        self._handlers = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendDocument": self._send_document,
            "sendPhoto": self._send_photo,
            "sendMediaGroup": self._send_media_group,
            "sendChatAction": self._send_chat_action,
            "getFile": self._get_file,
            "close": self._true,
            "logOut": self._true,
        }
        # The Bot API treats method names case-insensitively.
        self._canonical = {name.lower(): name for name in self._handlers}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeTelegramAPI:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # Bot API upload limit is 50MB
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_route("GET", "/file/bot{token}/{path:.+}", self._handle_file)
        # handler_cancellation: a long poll PTB abandons must not keep a handler alive;
        # a short shutdown_timeout keeps stop() fast even if a client misbehaves.
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._requested_port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        self._closing = False
        return self

    async def stop(self) -> None:
        self._closing = True
        self._updates_signal.notify()  # release pending long polls so shutdown is instant
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegramAPI:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        """For PTB's ``base_url``: PTB appends the token itself (``.../bot`` + token)."""
        return f"http://{self.host}:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://{self.host}:{self.port}/file/bot"

    def application_builder(self, token: str | None = None) -> InitApplicationBuilder:
        """An ``ApplicationBuilder`` already pointed at this fake."""
        return (
            Application.builder()
            .token(token or self.token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
        )

    # ------------------------------------------------------------------ inspection

    def calls(self, method: str | None = None) -> list[ApiCall]:
        if method is None:
            return list(self._calls)
        method = self._canonical.get(method.lower(), method)
        return [c for c in self._calls if c.method == method]

    async def wait_for(
        self, method: str, predicate: Predicate | None = None, timeout: float = 5.0
    ) -> ApiCall:
        """First call of ``method`` matching ``predicate`` not returned by an earlier wait_for.

        Returns as soon as the call arrives, so ``response`` may still be ``None`` for a
        getUpdates long poll; for all other methods it is already set.
        """
        method = self._canonical.get(method.lower(), method)
        deadline = time.monotonic() + timeout
        while True:
            for call in self._calls:
                if call.index in self._consumed or call.method != method:
                    continue
                if predicate is None or predicate(call):
                    self._consumed.add(call.index)
                    return call
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                seen = "\n".join(c.summary() for c in self._calls) or "(none)"
                raise AssertionError(
                    f"no {method} call{' matching predicate' if predicate else ''} "
                    f"within {timeout}s; calls seen so far:\n{seen}"
                )
            await self._calls_signal.wait(remaining)

    @property
    def get_updates_count(self) -> int:
        return sum(1 for c in self._calls if c.method == "getUpdates")

    async def wait_for_polling(self, timeout: float = 5.0) -> float:
        """Wait for the first getUpdates and return its arrival time (``time.monotonic()``)."""
        deadline = time.monotonic() + timeout
        while True:
            for call in self._calls:
                if call.method == "getUpdates":
                    return call.timestamp
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no getUpdates within {timeout}s")
            await self._calls_signal.wait(remaining)

    @property
    def pending_update_count(self) -> int:
        """Injected updates not yet confirmed by a getUpdates ``offset``."""
        return len(self._updates)

    def messages_to(self, chat_id: int, *, include_deleted: bool = False) -> list[StoredMessage]:
        """Messages the bot sent to ``chat_id``, oldest first, in their current state."""
        return [
            m
            for (cid, _), m in sorted(self._messages.items())
            if cid == chat_id and m.from_bot and (include_deleted or not m.deleted)
        ]

    def message(self, chat_id: int, message_id: int) -> StoredMessage:
        return self._messages[(chat_id, message_id)]

    def commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        return list(self._commands.get(self._commands_key(scope, language_code), []))

    def file(self, file_id: str) -> UploadedFile:
        return self._files[file_id]

    # ------------------------------------------------------------------ injection

    def inject_message(
        self,
        user_id: int,
        text: str,
        chat_id: int | None = None,
        chat_type: str = "private",
        first_name: str = "Tester",
        username: str | None = None,
        *,
        reply_to_message_id: int | None = None,
    ) -> int:
        """Queue an incoming text message; returns its message_id."""
        user = self._user(user_id, first_name, username)
        chat_id = self._register_chat(user, chat_id, chat_type)
        entities: list[JSONDict] = []
        if text.startswith("/"):
            # CommandHandler only matches messages with a bot_command entity at offset 0.
            command = text.split(maxsplit=1)[0]
            entities.append({"type": "bot_command", "offset": 0, "length": _utf16_len(command)})
        reply_to = None
        if reply_to_message_id is not None:
            reply_to = self.message(chat_id, reply_to_message_id)
        msg = self._store_message(
            chat_id, sender=user, from_bot=False, text=text, entities=entities, reply_to=reply_to
        )
        self._enqueue({"message": self._message_json(msg)})
        return msg.message_id

    def inject_edit(self, user_id: int, message_id: int, text: str,
                    chat_id: int | None = None) -> None:
        """The user edits a message they sent: Telegram delivers an ``edited_message``."""
        chat_id = user_id if chat_id is None else chat_id
        msg = self.message(chat_id, message_id)
        msg.text = text
        entities: list[JSONDict] = []
        if text.startswith("/"):
            command = text.split(maxsplit=1)[0]
            entities.append({"type": "bot_command", "offset": 0, "length": _utf16_len(command)})
        body = self._message_json(msg)
        body.update(text=text, entities=entities, edit_date=int(time.time()))
        self._enqueue({"edited_message": body})

    def inject_callback(
        self,
        user_id: int,
        data: str,
        message_id: int,
        chat_id: int | None = None,
        *,
        first_name: str = "Tester",
        username: str | None = None,
        check_button: bool = True,
    ) -> str:
        """Press an inline button on a message the bot sent; returns the callback query id.

        With ``check_button`` (default) the button must exist in the message's *current*
        keyboard, as a real client can only press what it shows.
        """
        chat_id = user_id if chat_id is None else chat_id
        msg = self._messages.get((chat_id, message_id))
        if msg is None or msg.deleted:
            raise AssertionError(f"no live message {message_id} in chat {chat_id}")
        if check_button and data not in msg.button_data():
            raise AssertionError(
                f"message {message_id} has no button with callback_data={data!r}; "
                f"current buttons: {msg.button_data()}"
            )
        callback_id = str(next(self._callback_ids))
        self._callbacks[callback_id] = False
        self._enqueue(
            {
                "callback_query": {
                    "id": callback_id,
                    "from": self._user(user_id, first_name, username),
                    "message": self._message_json(msg),
                    "chat_instance": str(abs(chat_id) * 7919),
                    "data": data,
                }
            }
        )
        return callback_id

    def fail_next(
        self,
        method: str,
        error_code: int,
        description: str | None = None,
        retry_after: int | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail like Telegram would."""
        method = self._canonical.get(method.lower(), method)
        parameters = None
        if retry_after is not None:
            parameters = {"retry_after": retry_after}
            description = description or f"Too Many Requests: retry after {retry_after}"
        if description is None:
            description = _DEFAULT_DESCRIPTIONS.get(error_code, "Error")
        fault = _Fault(error_code, description, parameters)
        self._faults.setdefault(method, []).extend([fault] * times)

    # ------------------------------------------------------------------ HTTP plumbing

    async def _handle_method(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        raw_method = request.match_info["method"]
        method = self._canonical.get(raw_method.lower(), raw_method)
        started = time.monotonic()
        try:
            params, files = await self._read_params(request)
        except ValueError as exc:
            body: JSONDict = {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"}
            return web.json_response(body, status=400)

        call = ApiCall(len(self._calls), method, params, files, token, time.monotonic(),
                       started=started)
        self._calls.append(call)
        self._calls_signal.notify()

        status = 200
        if token != self.token:
            status, body = 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        else:
            try:
                faults = self._faults.get(method)
                if faults:
                    fault = faults.pop(0)
                    raise _ApiError(fault.error_code, fault.description, fault.parameters)
                handler = self._handlers.get(method)
                result = await handler(params, files) if handler else True
                body = {"ok": True, "result": result}
            except _ApiError as err:
                status, body = err.code, err.body()
            except Exception as exc:  # a bug in the fake: surface it, don't hang the bot
                _LOGGER.exception("fake Telegram API failed on %s", method)
                self.server_errors.append(exc)
                status = 500
                body = {"ok": False, "error_code": 500, "description": f"Fake error: {exc!r}"}
        call.status, call.response = status, body
        self._calls_signal.notify()
        return web.json_response(body, status=status)

    async def _handle_file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        uploaded = self._file_paths.get(request.match_info["path"])
        if uploaded is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        return web.Response(body=uploaded.data, content_type="application/octet-stream")

    async def _read_params(self, request: web.Request) -> tuple[JSONDict, dict[str, UploadedFile]]:
        raw: JSONDict = dict(request.query)
        files: dict[str, UploadedFile] = {}
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("JSON body must be an object")
            raw.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            form = await request.post()
            for name, value in form.items():
                if isinstance(value, web.FileField):
                    files[name] = UploadedFile(
                        field=name,
                        filename=value.filename,
                        content_type=value.content_type,
                        data=value.file.read(),
                    )
                else:
                    raw[name] = value if isinstance(value, str) else bytes(value).decode()
        return {name: _decode_param(name, value) for name, value in raw.items()}, files

    # ------------------------------------------------------------------ state helpers

    def _enqueue(self, payload: JSONDict) -> None:
        update_id = next(self._update_ids)
        self._updates.append({"update_id": update_id, **payload})
        self._updates_signal.notify()

    @staticmethod
    def _user(user_id: int, first_name: str, username: str | None) -> JSONDict:
        user: JSONDict = {"id": user_id, "is_bot": False, "first_name": first_name}
        if username:
            user["username"] = username
        user["language_code"] = "en"
        return user

    def _register_chat(self, user: JSONDict, chat_id: int | None, chat_type: str) -> int:
        if chat_type == "private":
            chat_id = user["id"] if chat_id is None else chat_id
            chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
            if "username" in user:
                chat["username"] = user["username"]
        elif chat_type in ("group", "supergroup"):
            if chat_id is None:
                raise ValueError(f"chat_id is required for chat_type={chat_type!r}")
            chat = {"id": chat_id, "type": chat_type, "title": f"Test {chat_type} {chat_id}"}
        else:
            raise ValueError(f"unsupported chat_type {chat_type!r}")
        self._chats[chat_id] = chat
        return chat_id

    def _chat_json(self, chat_id: int) -> JSONDict:
        if chat_id not in self._chats:
            # A chat the bot never saw an update from: synthesize something PTB can parse.
            if chat_id > 0:
                self._chats[chat_id] = {"id": chat_id, "type": "private", "first_name": "User"}
            else:
                kind = "supergroup" if str(chat_id).startswith("-100") else "group"
                self._chats[chat_id] = {"id": chat_id, "type": kind, "title": f"Chat {chat_id}"}
        return self._chats[chat_id]

    def _chat_id(self, params: JSONDict) -> int:
        value = params.get("chat_id")
        if value is None or value == "":
            raise _ApiError(400, "Bad Request: chat_id is empty")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.startswith("@"):
            # Channel usernames: give each a stable fake supergroup-style id.
            if value not in self._channel_ids:
                chat_id = -1001000000000 - len(self._channel_ids)
                self._channel_ids[value] = chat_id
                self._chats[chat_id] = {"id": chat_id, "type": "channel", "title": value[1:]}
            return self._channel_ids[value]
        raise _ApiError(400, "Bad Request: chat not found")

    def _store_message(
        self,
        chat_id: int,
        *,
        sender: JSONDict,
        from_bot: bool,
        text: str | None = None,
        caption: str | None = None,
        parse_mode: str | None = None,
        reply_markup: JSONDict | None = None,
        entities: list[JSONDict] | None = None,
        document: UploadedFile | None = None,
        photo: UploadedFile | None = None,
        reply_to: StoredMessage | None = None,
    ) -> StoredMessage:
        self._chat_json(chat_id)
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        msg = StoredMessage(
            chat_id=chat_id,
            message_id=message_id,
            sender=sender,
            from_bot=from_bot,
            date=int(time.time()),
            text=text,
            caption=caption,
            parse_mode=parse_mode,
            reply_markup=reply_markup,
            entities=entities or [],
            document=document,
            photo=photo,
            reply_to=reply_to,
        )
        msg.history.append(msg.content)
        self._messages[(chat_id, message_id)] = msg
        return msg

    def _message_json(self, msg: StoredMessage, *, nested: bool = False) -> JSONDict:
        data: JSONDict = {
            "message_id": msg.message_id,
            "from": msg.sender,
            "chat": self._chat_json(msg.chat_id),
            "date": msg.date,
        }
        if msg.text is not None:
            data["text"] = msg.text
        if msg.caption is not None:
            data["caption"] = msg.caption
        if msg.entities:
            data["entities"] = msg.entities
        if msg.edit_date is not None:
            data["edit_date"] = msg.edit_date
        if msg.document is not None:
            data["document"] = self._file_json(msg.document) | {
                "file_name": msg.document.filename,
                "mime_type": msg.document.content_type or "application/octet-stream",
            }
        if msg.photo is not None:
            width, height = _image_size(msg.photo.data)
            data["photo"] = [self._file_json(msg.photo) | {"width": width, "height": height}]
        # Real messages only carry inline keyboards in reply_markup.
        if msg.reply_markup and "inline_keyboard" in msg.reply_markup:
            data["reply_markup"] = msg.reply_markup
        if msg.reply_to is not None and not nested:
            data["reply_to_message"] = self._message_json(msg.reply_to, nested=True)
        return data

    @staticmethod
    def _file_json(uploaded: UploadedFile) -> JSONDict:
        return {
            "file_id": uploaded.file_id,
            "file_unique_id": uploaded.file_unique_id,
            "file_size": len(uploaded.data),
        }

    def _register_file(self, uploaded: UploadedFile) -> UploadedFile:
        number = next(self._file_ids)
        uploaded.file_id = f"FAKEFILE{number:06d}-{uploaded.field}"
        uploaded.file_unique_id = f"FAKEUNIQ{number:06d}"
        self._files[uploaded.file_id] = uploaded
        return uploaded

    def _target_message(self, params: JSONDict, action: str) -> StoredMessage | None:
        """The message an edit/delete addresses; ``None`` for inline messages."""
        if params.get("inline_message_id"):
            return None
        chat_id = self._chat_id(params)
        message_id = params.get("message_id")
        if message_id is None:
            raise _ApiError(400, "Bad Request: message identifier is not specified")
        msg = self._messages.get((chat_id, message_id))
        if msg is None or msg.deleted:
            raise _ApiError(400, f"Bad Request: message to {action} not found")
        if not msg.from_bot:
            # Bots may delete incoming messages in private chats only, and never edit them.
            if action != "delete":
                raise _ApiError(400, "Bad Request: message can't be edited")
            if self._chat_json(chat_id)["type"] != "private":
                raise _ApiError(400, "Bad Request: message can't be deleted")
        return msg

    @staticmethod
    def _check_text(text: Any, parse_mode: Any, *, limit: int, caption: bool) -> None:
        visible = text
        if isinstance(parse_mode, str) and parse_mode.lower() == "html":
            _check_html(text)
            # Telegram applies the limit to the rendered text, not to the markup.
            visible = html.unescape(_HTML_TAG_RE.sub("", text))
        if len(visible) > limit:
            what = "message caption is too long" if caption else "message is too long"
            raise _ApiError(400, f"Bad Request: {what}")

    @staticmethod
    def _check_markup(markup: Any) -> JSONDict | None:
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
        for row in markup.get("inline_keyboard", []):
            for button in row:
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode()) <= 64:
                    raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
        return markup

    def _input_file(
        self, params: JSONDict, files: dict[str, UploadedFile], field_name: str
    ) -> UploadedFile:
        value = params.get(field_name)
        if isinstance(value, str) and value.startswith("attach://"):
            value = files.get(value.removeprefix("attach://"))
        elif value is None:
            value = files.get(field_name)
        if isinstance(value, UploadedFile):
            return self._register_file(value)
        if isinstance(value, str):
            if value in self._files:
                return self._files[value]
            if value.startswith(("http://", "https://")):
                name = value.rsplit("/", 1)[-1] or None
                return self._register_file(UploadedFile(field_name, name, None, b""))
            raise _ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        raise _ApiError(400, f"Bad Request: there is no {field_name} in the request")

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> str:
        scope = scope or {"type": "default"}
        return json.dumps([scope, language_code or ""], sort_keys=True)

    # ------------------------------------------------------------------ Bot API methods

    async def _true(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        return True

    async def _get_me(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        return self.bot_user

    async def _get_updates(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> list[JSONDict]:
        if self._webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        offset = params.get("offset")
        if isinstance(offset, int) and offset > 0:
            # An offset confirms (forgets) every update below it, as on Telegram.
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif isinstance(offset, int) and offset < 0:
            self._updates = self._updates[offset:]
        limit = params.get("limit") or 100
        timeout = float(params.get("timeout") or 0)

        # A newer getUpdates terminates an older pending one with 409, like the real server:
        # this is what two bot instances polling one token look like.
        self._poll_generation += 1
        generation = self._poll_generation
        self._updates_signal.notify()

        deadline = time.monotonic() + timeout
        while not self._updates and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self._updates_signal.wait(remaining)
            if generation != self._poll_generation:
                raise _ApiError(409, _DEFAULT_DESCRIPTIONS[409])
        return list(self._updates[: int(limit)])

    async def _set_webhook(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        self._webhook_url = str(params.get("url") or "")
        return True

    async def _delete_webhook(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        self._webhook_url = ""
        if params.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        return {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _set_my_commands(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _ApiError(400, "Bad Request: can't parse commands JSON object")
        for command in commands:
            if not _COMMAND_RE.match(str(command.get("command", ""))):
                raise _ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", ""))) <= 256:
                raise _ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        self._commands[key] = commands
        return True

    async def _get_my_commands(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> list[JSONDict]:
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        return self._commands.get(key, [])

    async def _delete_my_commands(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        self._commands.pop(key, None)
        return True

    async def _send_message(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        chat_id = self._chat_id(params)
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        parse_mode = params.get("parse_mode")
        self._check_text(text, parse_mode, limit=_MAX_TEXT, caption=False)
        msg = self._store_message(
            chat_id,
            sender=self.bot_user,
            from_bot=True,
            text=text,
            parse_mode=parse_mode,
            reply_markup=self._check_markup(params.get("reply_markup")),
        )
        return self._message_json(msg)

    async def _edit_message_text(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> JSONDict | bool:
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        parse_mode = params.get("parse_mode")
        self._check_text(text, parse_mode, limit=_MAX_TEXT, caption=False)
        # Omitting reply_markup in an edit removes the inline keyboard on real Telegram.
        markup = self._check_markup(params.get("reply_markup"))
        msg = self._target_message(params, "edit")
        if msg is None:
            return True
        if msg.text is None:
            raise _ApiError(400, "Bad Request: there is no text in the message to edit")
        if (text, parse_mode, markup) == (msg.text, msg.parse_mode, msg.reply_markup):
            raise _ApiError(400, _NOT_MODIFIED)
        msg.text, msg.parse_mode, msg.reply_markup = text, parse_mode, markup
        return self._mark_edited(msg)

    async def _edit_message_caption(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> JSONDict | bool:
        caption = params.get("caption")
        parse_mode = params.get("parse_mode")
        if isinstance(caption, str):
            self._check_text(caption, parse_mode, limit=_MAX_CAPTION, caption=True)
        markup = self._check_markup(params.get("reply_markup"))
        msg = self._target_message(params, "edit")
        if msg is None:
            return True
        if msg.text is not None:
            raise _ApiError(400, "Bad Request: there is no caption in the message to edit")
        if (caption, parse_mode, markup) == (msg.caption, msg.parse_mode, msg.reply_markup):
            raise _ApiError(400, _NOT_MODIFIED)
        msg.caption, msg.parse_mode, msg.reply_markup = caption, parse_mode, markup
        return self._mark_edited(msg)

    async def _edit_message_reply_markup(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> JSONDict | bool:
        markup = self._check_markup(params.get("reply_markup"))
        msg = self._target_message(params, "edit")
        if msg is None:
            return True
        if markup == msg.reply_markup:
            raise _ApiError(400, _NOT_MODIFIED)
        msg.reply_markup = markup
        return self._mark_edited(msg, record_history=False)

    def _mark_edited(self, msg: StoredMessage, *, record_history: bool = True) -> JSONDict:
        msg.edit_date = int(time.time())
        if record_history:
            msg.history.append(msg.content)
        return self._message_json(msg)

    async def _delete_message(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        msg = self._target_message(params, "delete")
        if msg is not None:
            msg.deleted = True
        return True

    async def _answer_callback_query(
        self, params: JSONDict, files: dict[str, UploadedFile]
    ) -> bool:
        callback_id = str(params.get("callback_query_id"))
        if self._callbacks.get(callback_id, True):  # unknown or already answered
            raise _ApiError(
                400,
                "Bad Request: query is too old and response timeout expired or query ID is invalid",
            )
        if len(str(params.get("text") or "")) > 200:
            raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        self._callbacks[callback_id] = True
        return True

    async def _send_document(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        chat_id = self._chat_id(params)
        document = self._input_file(params, files, "document")
        return self._send_media(chat_id, params, document=document)

    async def _send_photo(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        chat_id = self._chat_id(params)
        photo = self._input_file(params, files, "photo")
        if photo.data and not photo.data.startswith(_IMAGE_MAGIC):
            raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
        return self._send_media(chat_id, params, photo=photo)

    async def _send_media_group(self, params: JSONDict,
                                files: dict[str, UploadedFile]) -> list[JSONDict]:
        """An album: 2-10 photos, each a message of its own (as Telegram stores them)."""
        chat_id = self._chat_id(params)
        media = params.get("media")
        if isinstance(media, str):
            media = json.loads(media)
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: wrong number of media in the album")
        sent = []
        for item in media:
            if not isinstance(item, dict) or item.get("type") != "photo":
                raise _ApiError(400, "Bad Request: only photos in this album")
            photo = self._input_file(item, files, "media")
            if photo.data and not photo.data.startswith(_IMAGE_MAGIC):
                raise _ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED")
            if "reply_markup" in item:
                raise _ApiError(400, "Bad Request: an album has no buttons")
            sent.append(self._send_media(chat_id, {"caption": item.get("caption")}, photo=photo))
        return sent

    def _send_media(
        self,
        chat_id: int,
        params: JSONDict,
        *,
        document: UploadedFile | None = None,
        photo: UploadedFile | None = None,
    ) -> JSONDict:
        caption = params.get("caption")
        parse_mode = params.get("parse_mode")
        if isinstance(caption, str):
            self._check_text(caption, parse_mode, limit=_MAX_CAPTION, caption=True)
        msg = self._store_message(
            chat_id,
            sender=self.bot_user,
            from_bot=True,
            caption=caption if isinstance(caption, str) else None,
            parse_mode=parse_mode,
            reply_markup=self._check_markup(params.get("reply_markup")),
            document=document,
            photo=photo,
        )
        return self._message_json(msg)

    async def _send_chat_action(self, params: JSONDict, files: dict[str, UploadedFile]) -> bool:
        self._chat_id(params)
        if params.get("action") not in _CHAT_ACTIONS:
            raise _ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _get_file(self, params: JSONDict, files: dict[str, UploadedFile]) -> JSONDict:
        uploaded = self._files.get(str(params.get("file_id")))
        if uploaded is None:
            raise _ApiError(400, "Bad Request: invalid file_id")
        path = f"{uploaded.field}s/{uploaded.file_unique_id}_{uploaded.filename or 'file'}"
        self._file_paths[path] = uploaded
        return self._file_json(uploaded) | {"file_path": path}


@contextlib.asynccontextmanager
async def running_application(
    app: Application[Any, Any, Any, Any, Any, Any], **polling_kwargs: Any
) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    """Initialize, start and poll ``app``; stop and shut it down cleanly on exit.

    ``poll_interval=0`` so the next getUpdates follows each batch immediately.
    """
    if app.updater is None:
        raise ValueError("application has no updater; build it without .updater(None)")
    polling_kwargs.setdefault("poll_interval", 0)
    try:
        await app.initialize()
    except BaseException:
        # A failed initialize (e.g. InvalidToken) leaves app.shutdown() a no-op but the
        # bot's HTTP pools open; close them so no socket leaks into later tests.
        await app.bot.shutdown()
        raise
    try:
        await app.start()
        await app.updater.start_polling(**polling_kwargs)
        yield app
    finally:
        if app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()
