from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest

from bot.core import Core
from bot.crypto import SecretBox, load_or_create_key
from bot.errors import ConfigError
from bot.logs import RedactingFilter
from bot.settings import Settings, to_async_url


def test_admins_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAMREACH_ADMINS", " 11, 22 ,")
    assert Settings(_env_file=None).admins == {11, 22}  # type: ignore[call-arg]
    monkeypatch.setenv("CAMREACH_ADMINS", "")
    with pytest.raises(ConfigError, match="user id"):
        Settings(_env_file=None).require_admins()  # type: ignore[call-arg]


def test_env_file_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("TELEGRAM_BOT_TOKEN=1:abc\nCAMREACH_ADMINS=5\n")
    monkeypatch.chdir(tmp_path)
    for var in ("TELEGRAM_BOT_TOKEN", "CAMREACH_ADMINS"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.require_bot_token() == "1:abc" and s.admins == {5}


def test_database_urls(tmp_path: Path) -> None:
    assert to_async_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert to_async_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    s = Settings(_env_file=None, camreach_data_dir=tmp_path)  # type: ignore[call-arg]
    assert s.async_database_url == f"sqlite+aiosqlite:///{tmp_path / 'camreach.db'}"


def test_key_generated_once_with_0600(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    key = load_or_create_key(None, tmp_path)
    path = tmp_path / "secret.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_key(None, tmp_path) == key
    assert sum("Generated a new secret key" in r.message for r in caplog.records) == 1
    assert key not in caplog.text


def test_wrong_key_is_a_clear_error() -> None:
    from cryptography.fernet import Fernet

    token = SecretBox(Fernet.generate_key()).encrypt("hunter2")
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        SecretBox(Fernet.generate_key()).decrypt(token)
    with pytest.raises(ConfigError, match="not a valid key"):
        SecretBox("short")


async def test_secrets_encrypted_at_rest(core: Core) -> None:
    from sqlalchemy import text

    await core.secrets.put("router-password", "s3cr3t-value")
    assert await core.secrets.get("router-password") == "s3cr3t-value"
    async with core.engine.connect() as conn:
        raw = (await conn.execute(text("SELECT ciphertext FROM secrets"))).scalar_one()
    assert b"s3cr3t-value" not in bytes(raw)
    await core.secrets.put("router-password", "new")
    assert await core.secrets.get("router-password") == "new"


def test_redaction() -> None:
    f = RedactingFilter()
    f.add("my-secret-value")
    line = "POST https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe"
    assert "AAHdq" not in f.redact(line)
    assert f.redact("password my-secret-value!") == "password ***!"
    assert "dop_v1" not in f.redact("token dop_v1_" + "ab" * 32)


def test_setup_logging_keeps_telegram_updates_out_of_debug_logs() -> None:
    from bot.logs import setup_logging

    root, tg = logging.getLogger(), logging.getLogger("telegram")
    saved = (root.handlers[:], root.level, tg.level)
    try:
        setup_logging("DEBUG")
        assert tg.getEffectiveLevel() == logging.INFO
        assert logging.getLogger("telegram.ext.Application").isEnabledFor(logging.DEBUG) is False
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
        tg.setLevel(saved[2])
    f = RedactingFilter()
    assert f.redact("token " + "ab12" * 16 + " end") == "token *** end"
