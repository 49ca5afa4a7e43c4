"""Migrations and models agree, and upgrade from empty works (SQLite and PostgreSQL)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from bot.db import engine as db
from bot.db.models import Base


async def test_upgrade_from_empty_matches_models(database_url: str) -> None:
    await db.upgrade(database_url)
    engine = db.make_engine(database_url)
    try:
        def diff(conn: Connection) -> list[object]:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return list(compare_metadata(ctx, Base.metadata))

        def tables(conn: Connection) -> set[str]:
            return set(inspect(conn).get_table_names())

        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
            found = await conn.run_sync(tables)
        assert await db.current_revision(engine) == "0005"
    finally:
        await engine.dispose()
    expected = {"sites", "droplets", "routers", "modems", "vpn_peers", "cameras", "secrets",
                "component_health", "health_hours", "site_sweeps", "alert_outbox",
                "incidents", "operations", "audit_log", "alembic_version",
                "conversation_states", "flow_data"}
    assert expected <= found


async def test_upgrade_is_idempotent(database_url: str) -> None:
    await db.upgrade(database_url)
    await db.upgrade(database_url)
    engine = db.make_engine(database_url)
    try:
        assert await db.current_revision(engine) == "0005"
    finally:
        await engine.dispose()
