"""The ``camreach`` command line. Each command calls the same core functions as the bot."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import select
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from bot import __version__
from bot.actions import action, for_terminal
from bot.core import Core, SiteHealth
from bot.db import engine as db
from bot.db.models import OpState
from bot.errors import CamreachError, NotFound, ValidationFailed
from bot.flash.cli import flash
from bot.logs import setup_logging
from bot.operations import OperationView
from bot.services.audit import Actor
from bot.services.sites import ApplyResult, SiteStatus
from bot.settings import Settings, load_settings
from bot.site import SiteSpec, load_site_file
from bot.texts import interrupted_notice

T = TypeVar("T")


def run_async(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command; turn camreach errors into a message and exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(fn(*args, **kwargs))
        except ValidationFailed as exc:
            click.echo(for_terminal(exc.user_message), err=True)
            sys.exit(2)
        except CamreachError as exc:
            click.echo(f"Error: {for_terminal(exc.user_message)}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)

    return wrapper


class TerminalProgress:
    """Operation progress on the terminal: one line per change, on stderr."""

    def __init__(self) -> None:
        self._last = ""

    async def update(self, view: OperationView) -> None:
        from bot.texts import operation_text

        text = for_terminal(operation_text(view)).replace("\n", " | ")
        if text != self._last:
            self._last = text
            click.echo(text, err=True)


async def run_operation(core: Core, view: OperationView) -> None:
    """Wait for an operation started from the CLI; a failure is a non-zero exit."""
    final = await core.wait_operation(view.id)
    if final.state is not OpState.SUCCEEDED:
        raise OperationFailed(final.error or "The operation did not finish.")


class OperationFailed(CamreachError):
    """An operation run from the CLI ended without success (its message says why)."""


async def with_core(settings: Settings, fn: Callable[[Core], Awaitable[T]], *,
                    site: str | None = None) -> T:
    """Open the core, tell what an earlier run left interrupted on ``site``, run ``fn``."""
    core = await Core.open(settings)
    try:
        if site is not None:
            await report_interrupted(core, site)
        return await fn(core)
    finally:
        await core.close()


async def report_interrupted(core: Core, site: str) -> None:
    """Interrupted operations of ``site`` (a killed command, a stopped bot), said once per
    command until they are run again; running the same command again retries them."""
    await core.expire_stale_operations()  # a just-killed command's row is judged now
    try:
        left = await core.interrupted_operations(site)
    except NotFound:  # a site being created
        return
    for view in left:
        click.echo(for_terminal(interrupted_notice(view)), err=True)


# -- confirmations --------------------------------------------------------------------------
# Every command that changes a remote machine asks through these: the answer comes from stdin,
# typed or piped; when stdin ends without one (a script, `< /dev/null`) the command refuses at
# once, changing nothing, and names the flag that skips the question.

NO_ANSWER_EXIT = 2
"""Exit code when standard input ended before a confirmation was answered (see README)."""
REFUSED_EXIT = 1
"""Exit code when the confirmation was answered no (or a wrong name was typed)."""


async def ask(prompt: str) -> str | None:
    """One answer line from stdin, stripped; ``None`` when stdin ended without one.

    The prompt goes to stderr, so stdout keeps only the command's report (the diff).
    """
    click.echo(prompt, nl=False, err=True)
    line = await _stdin_line()
    if line is None:
        click.echo(err=True)
        return None
    if not _stdin_is_tty():
        click.echo(line.rstrip("\r\n"), err=True)  # a piped answer, shown as if typed
    return line.strip()


async def confirm(question: str, *, nothing: str = "nothing was changed",
                  skip: str = "--yes") -> None:
    """Return only after a yes on stdin; otherwise exit, having changed nothing.

    No (or just Enter) exits ``REFUSED_EXIT`` saying ``nothing``; the end of stdin exits
    ``NO_ANSWER_EXIT`` and names ``skip``, the flag that runs the command without asking.
    """
    while True:
        answer = await ask(f"{question} [y/N]: ")
        if answer is None:
            refuse_without_answer(nothing, skip)
        if answer.lower() in ("y", "yes"):
            return
        if answer.lower() in ("", "n", "no"):
            click.echo(f"{nothing[:1].upper()}{nothing[1:]}.", err=True)
            sys.exit(REFUSED_EXIT)
        click.echo("Please answer y or n.", err=True)


def refuse_without_answer(nothing: str, skip: str) -> NoReturn:
    click.echo(f"No answer on standard input: {nothing}. Add {skip} to run without asking.",
               err=True)
    sys.exit(NO_ANSWER_EXIT)


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # closed
        return False


async def _stdin_line() -> str | None:
    """Read one line in a daemon thread: the event loop keeps running (SSH connections stay
    served, Ctrl-C cancels at once) and nothing waits for the thread when the command exits."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str | None] = loop.create_future()

    def settle(line: str | None, error: Exception | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(line)

    def read() -> None:
        line: str | None = None
        error: Exception | None = None
        try:
            line = _read_stdin_line()
        except Exception as exc:  # handed to the awaiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: the command was cancelled
            loop.call_soon_threadsafe(settle, line, error)

    threading.Thread(target=read, name="camreach-stdin", daemon=True).start()
    return await done


def _read_stdin_line() -> str | None:
    """Block until a whole line (or the end of stdin, a TTY's Ctrl-D included) arrives."""
    stream = sys.stdin
    if stream is None:
        return None
    try:
        fd = stream.fileno()
    except (OSError, ValueError):  # a file object without a descriptor (click's CliRunner)
        return stream.readline() or None
    data = bytearray()
    while not data.endswith(b"\n"):
        try:
            chunk = os.read(fd, 1)  # a byte at a time: never consume more than the answer
        except BlockingIOError:
            select.select([fd], [], [])
            continue
        except OSError:  # closed (`<&-`) or unreadable: no answer
            break
        if not chunk:
            break
        data += chunk
    return data.decode(getattr(stream, "encoding", None) or "utf-8", errors="replace") or None


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


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Sweep health checks until stopped, beside the bot and other workers on one database
    (PostgreSQL): each worker leases a batch of due sites; the bot sends the alerts."""
    from bot.app import run_worker

    run_async(run_worker)(settings_from(ctx))


@main.command()
@click.argument("site")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.pass_context
@run_async
async def check(ctx: click.Context, site: str, as_json: bool) -> None:
    """Check every part of SITE now; exit 0 when every part is ok, 1 otherwise."""
    from bot.render.health_text import status_detail

    checked = await with_core(settings_from(ctx), lambda c: c.check_site(site))
    parts = checked.health.components
    if as_json:
        figures = {p.component: dict(p.figures) for p in checked.probes}
        doc = {name: {"state": view.state, "summary": view.summary,
                      **(figures.get(name) or dict(view.figures))}
               for name, view in parts.items()}
        click.echo(json.dumps(doc, indent=2, default=str))
    else:
        click.echo(for_terminal(status_detail(checked.health, datetime.now(UTC))))
    sys.exit(0 if parts and all(v.state == "ok" for v in parts.values()) else 1)


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
@click.option("--store-only", is_flag=True,
              help="Store the site but do not create its droplet.")
@click.option("--yes", is_flag=True,
              help="Do not ask for confirmation before the droplet step.")
@click.pass_context
@run_async
async def site_apply(ctx: click.Context, file: Path, dry_run: bool, store_only: bool,
                     yes: bool) -> None:
    """Validate FILE, store the site, and create (or find) its droplet.

    The droplet step runs when a DigitalOcean token is available (DIGITALOCEAN_TOKEN, or one
    given in Telegram's /setup); it never creates a second droplet for a site. Before it, the
    droplet's region, size and image are checked against what DigitalOcean sells (nothing is
    stored when they are not, nor when DigitalOcean refuses the droplet), then the changes and
    the droplet's price are shown and a confirmation is read from stdin, unless nothing would
    change (--yes skips it; without a token, or with --store-only, nothing remote is touched
    and nothing is asked).
    """
    spec = load_site_file(file)  # fails before the database is touched
    settings = settings_from(ctx)

    async def work(core: Core) -> None:
        from bot.operations import PROVISION_DROPLET
        from bot.services.sites import UNDO_PARAM, undo_record

        provision = not (dry_run or store_only) and await core.has_do_token()
        if provision:
            # Before anything is stored or asked: a region, size or image DigitalOcean does not
            # sell (or a rejected token) fails here, naming the field.
            await core.check_droplet_choice(spec)
        if dry_run or (provision and not yes):
            preview = await core.apply_site(spec, Actor.cli(), dry_run=True)
            _echo_apply(preview)
            if dry_run:
                return
            price = await _echo_droplet(core, spec)  # a rejected token fails before asking
            await _confirm_apply(core, preview, price)
            result = await core.apply_site(spec, Actor.cli())
            if result.changes != preview.changes:  # the stored site changed meanwhile
                _echo_apply(result)
            elif result.action != "unchanged":
                click.echo(f"{result.site}: {result.action}")
        else:
            result = await core.apply_site(spec, Actor.cli())
            _echo_apply(result)
            if not provision:
                if not store_only:
                    click.echo("No DigitalOcean token (DIGITALOCEAN_TOKEN): the droplet was not"
                               " created. Set it and apply again, or use /setup in Telegram.",
                               err=True)
                return
            await _echo_droplet(core, spec)
        # Should DigitalOcean still refuse the droplet, the run undoes what this apply stored
        # (a new site is removed again, an updated one gets its previous spec back).
        record = undo_record(result)
        await run_operation(core, await core.start_operation(
            PROVISION_DROPLET, spec.name, Actor.cli(), TerminalProgress(),
            params=None if record is None else {UNDO_PARAM: record}))

    await with_core(settings, work, site=spec.name)


def _echo_apply(result: ApplyResult) -> None:
    verb = {"created": "would create", "updated": "would update", "unchanged": "unchanged"}
    click.echo(f"{result.site}: {verb[result.action] if result.dry_run else result.action}")
    for line in result.changes:
        click.echo(f"  {line}")


async def _echo_droplet(core: Core, spec: SiteSpec) -> float:
    price = await core.monthly_price(spec.droplet.size)
    click.echo(f"Droplet: {spec.droplet.size} in {spec.droplet.region}, ${price:g}/month")
    return price


async def _confirm_apply(core: Core, preview: ApplyResult, price: float) -> None:
    """Ask before an apply that changes the site or creates its droplet; not for a no-op."""
    try:
        droplet = await core.describe_droplet(preview.site)
    except NotFound:  # a new site
        droplet = None
    has_droplet = droplet is not None and droplet.do_id is not None
    if has_droplet and preview.action == "unchanged":
        return
    if has_droplet:
        question = "Apply these changes?"
    elif preview.action == "unchanged":
        question = f"Create the droplet (${price:g}/month)?"
    else:
        question = f"Apply these changes and create the droplet (${price:g}/month)?"
    await confirm(question)


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


@site_group.command("export")
@click.argument("name")
@click.pass_context
@run_async
async def site_export(ctx: click.Context, name: str) -> None:
    """Print site NAME as a site file that `site apply` takes back (secrets only as *_env)."""
    click.echo(await with_core(settings_from(ctx), lambda c: c.export_site(name)), nl=False)


@site_group.command("destroy")
@click.argument("name")
@click.option("--confirm", "confirm_name", metavar="NAME",
              help="Skip the prompt by giving the site name again (for scripts).")
@click.pass_context
@run_async
async def site_destroy(ctx: click.Context, name: str, confirm_name: str | None) -> None:
    """Delete site NAME's droplet after you type NAME on stdin. The site itself is kept."""

    async def work(core: Core) -> None:
        d = await core.describe_droplet(name)
        if d is None:
            raise NotFound(f"Site {name} has no droplet.")
        price = f"${d.price_monthly:g}/month" if d.price_monthly is not None else "unknown cost"
        click.echo(f"This deletes droplet {d.name} (#{d.do_id}, {d.public_ipv4 or 'no address'},"
                   f" {d.region}, {d.size}, {price}). The VPN of {name} stops working.")
        typed = confirm_name
        if typed is None:
            typed = await ask("Type the site name to confirm: ")
            if typed is None:
                refuse_without_answer("nothing was deleted", f"--confirm {name}")
        if typed != name:
            click.echo("Not confirmed: nothing was deleted.", err=True)
            sys.exit(REFUSED_EXIT)
        await run_operation(core, await core.destroy_droplet(name, Actor.cli(),
                                                             TerminalProgress()))

    await with_core(settings_from(ctx), work, site=name)


@main.group("peer")
def peer_group() -> None:
    """VPN peers (phones, laptops) of a site's WireGuard server."""


@peer_group.command("add")
@click.argument("site")
@click.argument("name")
@click.option("--dns", help="DNS server for the client config (left out by default).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the client config here (mode 0600) instead of printing it.")
@click.option("--qr", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the config as a QR code PNG here.")
@click.pass_context
@run_async
async def peer_add(ctx: click.Context, site: str, name: str, dns: str | None, out: Path | None,
                   qr: Path | None) -> None:
    """Add peer NAME to SITE's VPN and output its WireGuard client config."""
    peer = await with_core(settings_from(ctx), lambda c: c.add_peer(site, name, Actor.cli(),
                                                                     dns=dns), site=site)
    if out is not None:
        _write_private(out, peer.config.encode())
        click.echo(f"{name}: {peer.address}; config written to {out}", err=True)
    else:
        click.echo(peer.config, nl=False)
    if qr is not None:
        _write_private(qr, peer.qr_png)


def _write_private(path: Path, data: bytes) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


@peer_group.command("list")
@click.argument("site")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@run_async
async def peer_list(ctx: click.Context, site: str, as_json: bool) -> None:
    """List SITE's VPN peers with their last handshake and traffic."""
    from bot.texts import peer_line

    peers = await with_core(settings_from(ctx), lambda c: c.list_peers(site))
    if as_json:
        click.echo(json.dumps([{
            "name": p.name, "kind": p.kind, "address": p.address, "public_key": p.public_key,
            "endpoint": p.endpoint,
            "latest_handshake": p.latest_handshake.isoformat() if p.latest_handshake else None,
            "rx_bytes": p.rx_bytes, "tx_bytes": p.tx_bytes} for p in peers], indent=2))
        return
    for p in peers:
        click.echo(peer_line(p))


@peer_group.command("remove")
@click.argument("site")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@run_async
async def peer_remove(ctx: click.Context, site: str, name: str, yes: bool) -> None:
    """Remove peer NAME from SITE's VPN."""
    if not yes:
        await confirm(f"Remove {name} from {site}'s VPN?", nothing="nothing was removed")
    await with_core(settings_from(ctx), lambda c: c.remove_peer(site, name, Actor.cli()), site=site)
    click.echo(f"{name} removed from {site}.")


@main.group("router")
def router_group() -> None:
    """The site's OpenWrt router: first contact, detection, packages, config push."""


@router_group.command("connect")
@click.argument("site")
@click.option("--password", "password_login", is_flag=True,
              help="Turn SSH password login back on (root included) instead of off, e.g. "
                   "before handing the router over. On a router that was reset it is the "
                   "first contact with the password, and password login stays on.")
@click.pass_context
@run_async
async def router_connect(ctx: click.Context, site: str, password_login: bool) -> None:
    """First contact on the LAN: pin the host key, install camreach's SSH key, then turn
    SSH password login off (root included).

    Logs in with the root password the site file names (camreach's key, once installed, is
    tried first), or with the site's key file. Password login is turned off only after a
    login with the key alone worked, and kept off only if camreach gets in again after
    dropbear restarted (otherwise the router restores its previous setting). Running it again
    is harmless. With --password the router accepts its root password again, until the next
    connect without it.
    """
    result = await with_core(
        settings_from(ctx),
        lambda c: c.router_first_contact(site, Actor.cli(), password_login=password_login),
        site=site)
    click.echo(result.message)


@router_group.command("detect")
@click.argument("site")
@click.pass_context
@run_async
async def router_detect(ctx: click.Context, site: str) -> None:
    """Show the router's release, resources, USB modem, proposed protocol and uplink."""
    found = await with_core(settings_from(ctx), lambda c: c.router_detect(site, Actor.cli()),
                            site=site)
    click.echo(found.summary())


@router_group.command("install")
@click.argument("site")
@click.pass_context
@run_async
async def router_install(ctx: click.Context, site: str) -> None:
    """Install the packages the modem needs (from this machine when the router is offline)."""

    async def work(core: Core) -> None:
        await run_operation(core, await core.install_router_packages(
            site, Actor.cli(), TerminalProgress()))

    await with_core(settings_from(ctx), work, site=site)


@router_group.command("push")
@click.argument("site")
@click.option("--dry-run", is_flag=True, help="Show the changes; change nothing.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--confirm-via", type=click.Choice(["tunnel", "lan"]), default="tunnel",
              show_default=True,
              help="The path that must work after the push; the router rolls back otherwise. "
                   "'lan' only for a router on your desk whose uplink is not ready.")
@click.pass_context
@run_async
async def router_push(ctx: click.Context, site: str, dry_run: bool, yes: bool,
                      confirm_via: str) -> None:
    """Push the modem, WireGuard and firewall config, with automatic rollback."""

    async def work(core: Core) -> None:
        plan = await core.plan_router_push(site)
        if plan.no_changes:
            click.echo("No changes: the router already has this configuration.")
            return
        click.echo("Changes on the router:")
        for line in plan.diff:
            click.echo(f"  {line}")
        if dry_run:
            return
        if not yes:
            await confirm("Apply them (the router rolls back by itself if camreach cannot "
                          "reach it afterwards)?")
        await run_operation(core, await core.push_router(
            site, Actor.cli(), plan.fingerprint, TerminalProgress(), confirm_via=confirm_via))

    await with_core(settings_from(ctx), work, site=site)


@router_group.command("forget-key")
@click.argument("site")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@run_async
async def router_forget_key(ctx: click.Context, site: str, yes: bool) -> None:
    """Forget the router's pinned SSH host key (after a reflash or a replacement)."""

    async def work(core: Core) -> bool:
        await core.site_spec(site)
        if not yes:
            await confirm(f"Forget the SSH host key camreach pinned for {site}'s router? Do "
                          "this only if you reflashed or replaced it: the next connection will "
                          "trust whatever answers")
        return await core.router_forget_key(site, Actor.cli())

    had = await with_core(settings_from(ctx), work, site=site)
    click.echo(for_terminal(
        f"Forgotten. Next: {action('router connect', site)} pins the router's key again."
        if had else f"{site}'s router had no pinned key."))


@router_group.command("modem")
@click.argument("site")
@click.pass_context
@run_async
async def router_modem(ctx: click.Context, site: str) -> None:
    """Signal, operator and registration of the site's modem."""
    status = await with_core(settings_from(ctx), lambda c: c.modem_status(site), site=site)
    click.echo(status.summary())


@main.command("snapshot")
@click.argument("site")
@click.option("--camera", help="The camera (needed when the site has several).")
@click.option("--channel", type=click.Choice(["main", "sub"]), default="main", show_default=True,
              help="main: full resolution; sub: the smaller sub stream.")
@click.option("-o", "--output", "out", required=True,
              type=click.Path(path_type=Path, dir_okay=False), help="Where to write the JPEG.")
@click.pass_context
@run_async
async def snapshot(ctx: click.Context, site: str, camera: str | None, channel: str,
                   out: Path) -> None:
    """A fresh picture from a camera of SITE, written to FILE exactly as the camera sent it."""

    async def work(core: Core) -> bytes:
        if camera is None:
            names = [c.name for c in await core.camera_views(site)]
            if len(names) > 1:
                raise ValidationFailed(f"{site} has {len(names)} cameras ({', '.join(names)}): "
                                       "name one with --camera.")
        (picture,) = await core.snapshots(site, camera, "sub" if channel == "sub" else "main")
        return picture.data

    data = await with_core(settings_from(ctx), work, site=site)
    await asyncio.to_thread(out.write_bytes, data)
    click.echo(f"{out}: {len(data)} bytes", err=True)


@main.group("camera")
def camera_group() -> None:
    """The cameras of a site: add, list, remove."""


@camera_group.command("add")
@click.argument("site")
@click.argument("name")
@click.option("--host", required=True, help="The camera's LAN address.")
@click.option("--port", type=int, default=80, show_default=True)
@click.option("--user", default="admin", show_default=True)
@click.option("--password-env", help="Environment variable that holds its password.")
@click.option("--kind", type=click.Choice(["hikvision", "generic"]), default="hikvision",
              show_default=True)
@click.option("--snapshot-url", help="generic cameras: the picture's path, e.g. /snap.jpg")
@click.option("--via", type=click.Choice(["droplet", "direct"]), default="droplet",
              show_default=True, help="How camreach reaches it (see README).")
@click.pass_context
@run_async
async def camera_add(ctx: click.Context, site: str, name: str, host: str, port: int, user: str,
                     password_env: str | None, kind: str, snapshot_url: str | None,
                     via: str) -> None:
    """Add camera NAME to SITE (or replace the one of that name)."""
    camera: dict[str, Any] = {"name": name, "host": host, "port": port, "user": user,
                              "password_env": password_env, "kind": kind,
                              "snapshot_url": snapshot_url, "via": via}
    await with_core(settings_from(ctx), lambda c: c.add_camera(site, camera, Actor.cli()),
                    site=site)
    click.echo(f"{site}: camera {name} at {host}:{port} ({kind}, via {via}).")


@camera_group.command("list")
@click.argument("site")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.pass_context
@run_async
async def camera_list(ctx: click.Context, site: str, as_json: bool) -> None:
    """The cameras of SITE, with what they said about themselves."""
    views = await with_core(settings_from(ctx), lambda c: c.camera_views(site), site=site)
    if as_json:
        click.echo(json.dumps([v.to_json() for v in views], indent=2))
        return
    for v in views:
        about = " ".join(x for x in (v.model, v.serial) if x) or "not asked yet"
        flag = "  (password refused: give a new one)" if v.refused else ""
        click.echo(f"{v.name}: {v.host}:{v.port} {v.kind} via {v.via}, {about}{flag}")
    if not views:
        click.echo(f"{site} has no cameras.")


@camera_group.command("discover")
@click.argument("site")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.pass_context
@run_async
async def camera_discover(ctx: click.Context, site: str, as_json: bool) -> None:
    """What SITE's router sees on its LAN, and which devices answer as ISAPI cameras."""
    found = await with_core(settings_from(ctx), lambda c: c.discover_cameras(site), site=site)
    if as_json:
        click.echo(json.dumps([d.to_json() for d in found], indent=2))
        return
    if not found:
        click.echo(f"{site}: the router sees nothing else on its LAN.")
        return
    table = [("IP", "MAC", "VENDOR", "HOSTNAME", "ISAPI", "MODEL", "CAMERA")] + [
        (d.ip, d.mac, (d.vendor or "-")[:32], d.hostname or "-", "yes" if d.isapi else "no",
         d.model or "-", d.camera or "-") for d in found]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                   .rstrip())


@camera_group.command("remove")
@click.argument("site")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
@run_async
async def camera_remove(ctx: click.Context, site: str, name: str, yes: bool) -> None:
    """Remove camera NAME from SITE (and its stored password)."""
    if not yes:
        await confirm(f"Remove camera {name} from {site}?", nothing="nothing was removed")
    await with_core(settings_from(ctx), lambda c: c.remove_camera(site, name, Actor.cli()),
                    site=site)
    click.echo(f"{site}: camera {name} removed.")


@main.group("op")
def op_group() -> None:
    """Operations: what ran, runs or was interrupted, by which process."""


@op_group.command("list")
@click.option("--site", help="Only this site's operations.")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.pass_context
@run_async
async def op_list(ctx: click.Context, site: str | None, limit: int, as_json: bool) -> None:
    """The newest operations first, with owner, state, step and times."""
    from bot.texts import operation_line

    async def work(core: Core) -> list[OperationView]:
        await core.expire_stale_operations()  # show the truth, not a dead process's "running"
        return await core.list_operations(site, limit=limit)

    views = await with_core(settings_from(ctx), work)
    if as_json:
        click.echo(json.dumps([v.to_json() for v in views], indent=2))
    elif not views:
        click.echo("No operations yet.")
    else:
        for view in views:
            click.echo(operation_line(view))


@op_group.command("show")
@click.argument("op_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.pass_context
@run_async
async def op_show(ctx: click.Context, op_id: int, as_json: bool) -> None:
    """One operation in full: state, step, message or error, owner, heartbeat, times."""
    from bot.texts import operation_detail

    async def work(core: Core) -> OperationView:
        await core.expire_stale_operations()
        return await core.operation(op_id)

    view = await with_core(settings_from(ctx), work)
    if as_json:
        click.echo(json.dumps(view.to_json(), indent=2))
    else:
        click.echo(for_terminal(operation_detail(view)))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (see README).")
@click.pass_context
@run_async
async def status(ctx: click.Context, as_json: bool) -> None:
    """What the database knows about each site."""
    from bot.texts import site_status_text

    async def work(core: Core) -> tuple[list[SiteStatus], list[SiteHealth]]:
        return await core.statuses(), await core.health()

    statuses, health = await with_core(settings_from(ctx), work)
    if as_json:
        by_site = {h.site: h for h in health}

        def doc(s: SiteStatus) -> dict[str, Any]:
            h = by_site.get(s.name)
            parts = h.components.items() if h else ()
            return {**s.to_json(), "health": {name: v.to_json() for name, v in parts}}

        click.echo(json.dumps([doc(s) for s in statuses], indent=2))
    else:
        click.echo(site_status_text(statuses))


main.add_command(flash)
