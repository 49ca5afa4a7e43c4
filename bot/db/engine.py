"""Async engine and session factory, plus running alembic migrations."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from alembic import command
from bot.errors import ConfigError


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    # WAL lets the CLI read while the bot writes.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def migrations_dir() -> Path:
    """The top-level ``alembic/`` folder next to the packages (source checkout or image)."""
    here = Path(__file__).resolve().parents[2] / "alembic"
    if here.is_dir():
        return here
    cwd = Path.cwd() / "alembic"
    if cwd.is_dir():
        return cwd
    raise ConfigError("The alembic/ migrations folder was not found next to camreach.")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # '%' must be doubled for configparser interpolation.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade to ``revision``. alembic's async env runs its own loop, so use a thread."""
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    await asyncio.to_thread(command.upgrade, alembic_config(url), revision)


async def current_revision(engine: AsyncEngine) -> str | None:
    def _read(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_read)
