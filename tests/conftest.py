"""Shared fixtures: a fresh database per test (SQLite, or PostgreSQL when asked) and settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bot.core import Core
from bot.settings import Settings

pytest_plugins = ("tests.infra.droplet_host", "tests.infra.openwrt_router")

POSTGRES_URL = os.environ.get("CAMREACH_TEST_POSTGRES_URL")
ADMIN_ID = 1001
STRANGER_ID = 2002
BOT_TOKEN = "123456789:AAHfakeTokenForTestsOnly_abcdefghijk"


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str]:
    """A brand-new empty database for one test."""
    if not POSTGRES_URL:
        yield f"sqlite+aiosqlite:///{tmp_path / 'camreach.db'}"
        return
    import asyncpg

    admin_dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"camreach_t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0]
    yield f"postgresql+asyncpg://{base.split('://', 1)[1]}/{name}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def secret_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, secret_key: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        telegram_bot_token=BOT_TOKEN,
        camreach_admins=str(ADMIN_ID),
        database_url=database_url,
        camreach_data_dir=tmp_path / "data",
        camreach_secret_key=secret_key,
        # Health sweeps would probe whatever stand-ins a test sets up, at their own times;
        # the tests of sweeps turn them on (or run a Sweeper) themselves.
        camreach_sweep_in_bot=False,
    )


@pytest.fixture
def cli_env(settings: Settings, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for running `camreach` as a subprocess against the test database."""
    assert settings.camreach_secret_key is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAMREACH_", "TELEGRAM_"))}
    env.update(
        DATABASE_URL=settings.async_database_url,
        CAMREACH_DATA_DIR=str(settings.data_dir),
        CAMREACH_SECRET_KEY=settings.camreach_secret_key.get_secret_value(),
        CAMREACH_ADMINS=str(ADMIN_ID),
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
    )
    yield env


@pytest.fixture
async def core(settings: Settings) -> AsyncIterator[Core]:
    c = await Core.open(settings)
    try:
        yield c
    finally:
        await c.close()
