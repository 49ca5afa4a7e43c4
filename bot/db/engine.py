"""Async engine and session factory, plus running alembic migrations."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, event
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from alembic import command
from bot.errors import ConfigError


def make_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    # orjson reads the JSON columns (health figures: thousands per /status) several times
    # faster than the standard library; writing stays with json (it takes any key type).
    engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"),
                                 json_deserializer=_json_loads)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _json_loads(value: object) -> object:
    # SQLite's NUMERIC affinity hands a JSON column holding a bare number back as that
    # number, already decoded.
    if isinstance(value, str | bytes | bytearray | memoryview):
        return orjson.loads(value)
    return value


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    # WAL lets the CLI read while the bot writes.
    cur.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL is still safe against a killed process (only power loss can undo
    # the last commits) and spares every commit an fsync: sweeps commit many times a second.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split(":///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def migrations_dir() -> Path:
    """The alembic migrations: ``bot/migrations`` inside an installed wheel (the build maps the
    top-level ``alembic/`` folder there), else that ``alembic/`` folder of the source checkout
    (an editable install, or running from the checkout).

    Only a folder with an ``env.py`` counts: next to an installed ``bot`` package,
    ``site-packages/alembic`` is the alembic library itself, not the migrations.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "migrations", package.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise ConfigError(
        f"camreach's migrations were not found (looked for {package / 'migrations'} and "
        f"{package.parent / 'alembic'}): reinstall camreach."
    )


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    # '%' must be doubled for configparser interpolation.
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["configure_logger"] = False
    return cfg


async def upgrade(url: str, revision: str = "head", *, announce: bool = True) -> str | None:
    """Upgrade the database to ``revision`` when it is not there yet, without alembic's INFO
    chatter. alembic's async env runs its own loop, so it runs in a thread.

    Returns the new revision when a migration really ran (and, with ``announce``, says so in
    one line on stderr), None when the database already was at ``revision``.
    """
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    cfg = alembic_config(url)
    with _quiet_alembic():
        before = await _current_heads(url)
        if before == _target_revisions(cfg, revision):
            return None
        await asyncio.to_thread(command.upgrade, cfg, revision)
        after = await _current_heads(url)
    if after == before:
        return None
    now = ", ".join(sorted(after))
    if announce:
        print(f"Database upgraded to revision {now}.", file=sys.stderr, flush=True)
    return now


def _target_revisions(cfg: Config, revision: str) -> set[str] | None:
    """The revision ids ``revision`` names; None for a relative one (``+1``): just run it."""
    try:
        found = ScriptDirectory.from_config(cfg).get_revisions(revision)
    except CommandError:
        return None
    return {s.revision for s in found if s is not None}


async def _current_heads(url: str) -> set[str]:
    def _read(conn: Connection) -> set[str]:
        return set(MigrationContext.configure(conn).get_current_heads())

    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_read)
    finally:
        await engine.dispose()


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Mute alembic's INFO lines ("Context impl ...", "Running upgrade ...") unless someone
    set the ``alembic`` logger's level on purpose."""
    logger = logging.getLogger("alembic")
    if logger.level != logging.NOTSET:
        yield
        return
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(logging.NOTSET)


async def current_revision(engine: AsyncEngine) -> str | None:
    def _read(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    with _quiet_alembic():
        async with engine.connect() as conn:
            return await conn.run_sync(_read)
