"""The ``camreach`` command line. Each command calls the same core functions as the bot."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from bot import __version__
from bot.core import Core
from bot.db import engine as db
from bot.errors import CamreachError, ValidationFailed
from bot.flash.cli import flash
from bot.logs import setup_logging
from bot.services.audit import Actor
from bot.settings import Settings, load_settings
from bot.site import load_site_file

T = TypeVar("T")


def run_async(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command; turn camreach errors into a message and exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(fn(*args, **kwargs))
        except ValidationFailed as exc:
            click.echo(exc.user_message, err=True)
            sys.exit(2)
        except CamreachError as exc:
            click.echo(f"Error: {exc.user_message}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


async def with_core(settings: Settings, fn: Callable[[Core], Awaitable[T]]) -> T:
    core = await Core.open(settings)
    try:
        return await fn(core)
    finally:
        await core.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="camreach")
@click.pass_context
def main(ctx: click.Context) -> None:
    """camreach: reach IP cameras behind carrier-grade NAT through a WireGuard droplet."""
    ctx.ensure_object(dict)


def settings_from(ctx: click.Context) -> Settings:
    obj = ctx.ensure_object(dict)
    if "settings" not in obj:
        try:
            obj["settings"] = load_settings()
        except CamreachError as exc:
            click.echo(f"Error: {exc.user_message}", err=True)
            sys.exit(2)
        setup_logging(obj["settings"].camreach_log_level)
    settings: Settings = obj["settings"]
    return settings


@main.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Upgrade the database, then run the Telegram bot and its scheduler until stopped."""
    from bot.app import run_bot

    settings = settings_from(ctx)
    run_async(run_bot)(settings)


@main.group("db")
def db_group() -> None:
    """Database migrations."""


@db_group.command("upgrade")
@click.pass_context
@run_async
async def db_upgrade(ctx: click.Context) -> None:
    """Upgrade the database to the newest migration."""
    settings = settings_from(ctx)
    await db.upgrade(settings.async_database_url)
    click.echo("Database is at the newest migration.")


@db_group.command("current")
@click.pass_context
@run_async
async def db_current(ctx: click.Context) -> None:
    """Show the database's current migration."""
    settings = settings_from(ctx)
    engine = db.make_engine(settings.async_database_url)
    try:
        rev = await db.current_revision(engine)
    finally:
        await engine.dispose()
    click.echo(rev or "(empty database: run `camreach db upgrade`)")


@main.group("site")
def site_group() -> None:
    """Sites: one remote location each, described in a YAML file (see examples/site.yaml)."""


@site_group.command("apply")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.pass_context
@run_async
async def site_apply(ctx: click.Context, file: Path, dry_run: bool) -> None:
    """Validate FILE and store the site it describes."""
    spec = load_site_file(file)  # fails before the database is touched
    settings = settings_from(ctx)
    result = await with_core(settings, lambda c: c.apply_site(spec, Actor.cli(), dry_run=dry_run))
    verb = {"created": "would create", "updated": "would update", "unchanged": "unchanged"}
    head = verb[result.action] if dry_run else result.action
    click.echo(f"{result.site}: {head}")
    for line in result.changes:
        click.echo(f"  {line}")


@site_group.command("list")
@click.pass_context
@run_async
async def site_list(ctx: click.Context) -> None:
    """List the stored sites."""
    names = await with_core(settings_from(ctx), lambda c: c.site_names())
    for name in names:
        click.echo(name)
    if not names:
        click.echo("No sites yet. Create one with `camreach site apply FILE.yaml`.", err=True)


@site_group.command("show")
@click.argument("name")
@click.pass_context
@run_async
async def site_show(ctx: click.Context, name: str) -> None:
    """Print the stored spec of site NAME as YAML."""
    import yaml

    spec = await with_core(settings_from(ctx), lambda c: c.site_spec(name))
    click.echo(yaml.safe_dump(spec.to_json(), sort_keys=False).rstrip())


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.pass_context
@run_async
async def status(ctx: click.Context, as_json: bool) -> None:
    """What the database knows about each site."""
    from bot.texts import site_status_text

    statuses = await with_core(settings_from(ctx), lambda c: c.statuses())
    if as_json:
        click.echo(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        click.echo(site_status_text(statuses))


main.add_command(flash)
