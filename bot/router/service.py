"""RouterService: what the bot and the CLI call to reach, inspect and configure a router.

It ties the pure pieces of this package to the database (Router and Modem rows, the site's
WireGuard keys), the secrets (camreach's SSH key) and the droplet (the jump host).

Paths to the router:
- ``lan``: its LAN address from the site file (first contact, or a router on the bench);
- ``tunnel``: the droplet, then the router's tunnel address (after the first push).
``auto`` takes the tunnel once camreach has pushed a config and falls back to the LAN.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from bot.actions import action
from bot.adapters.ssh import SshConnection, ssh_session
from bot.db.models import ACTIVE_STATES, Modem, Operation, OpState, Router, Site
from bot.db.types import utcnow
from bot.errors import HostKeyMismatch, NotFound, Unreachable, ValidationFailed
from bot.leases import DEFAULT_LEASE_SECONDS, Owner, owner_is_dead
from bot.operations import PUSH_ROUTER_CONFIG, OpContext
from bot.render.model import RouterConfig
from bot.render.router import render_router_sections
from bot.router.access import (
    RouterCredentials,
    RouterTiming,
    install_client_key,
    lan_target,
    router_credentials,
    set_password_login,
    tunnel_target,
)
from bot.router.detect import Detection, detect
from bot.router.modem_status import ModemStatus, read_modem_status
from bot.router.packages import FeedConfig, InstallResult, install_packages
from bot.router.pool import ConnectionPool
from bot.router.push import (
    AdoptedPush,
    FindAdoptable,
    PushPlan,
    Record,
    Route,
    Steps,
    plan_push,
    push_config,
)
from bot.router.site_config import choose_modem, modem_secrets, router_config
from bot.services import identity
from bot.services.droplets import DropletService
from bot.services.secrets import SecretStore
from bot.services.vpn_keys import ensure_site_keys
from bot.site import SiteSpec

__all__ = ["FirstContact", "RouterService", "Via"]

log = logging.getLogger(__name__)

Via = Literal["auto", "lan", "tunnel"]


@dataclass(frozen=True)
class FirstContact:
    host_key: str
    pinned_now: bool  # False: the key was pinned before and matched
    key_added: bool  # False: camreach's key was already authorised
    password_login: bool = False  # dropbear's password login (root included) is now on
    password_changed: bool = False  # False: it already was as asked
    site: str = ""

    @property
    def message(self) -> str:
        pin = "pinned" if self.pinned_now else "matches the pinned key"
        key = "installed" if self.key_added else "was already installed"
        text = (f"Connected. The router's host key {pin}; camreach's SSH key {key}, so camreach "
                "logs in with its key from now on.")
        now = "is now" if self.password_changed else "stays"
        if self.password_login:
            return (f"{text} SSH password login {now} on, root included: the router accepts "
                    "its root password again until the next connect without --password.")
        site = self.site or "SITE"
        return (f"{text} SSH password login {now} off, root included: only keys get in. "
                f"`camreach router connect {site} --password` (on the command line) turns it "
                "back on.")


@dataclass(frozen=True)
class _View:
    """What the database says about a site, read once per call."""

    spec: SiteSpec
    pinned: str | None
    key_installed: bool
    pushed: bool
    modem_mode: str | None
    modem_device: str | None
    droplet_ip: str | None

    @property
    def name(self) -> str:
        return self.spec.name


class RouterService:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        secrets: SecretStore,
        droplets: DropletService,
        *,
        env: Mapping[str, str] | None = None,
        timing: RouterTiming | None = None,
        feeds: FeedConfig | None = None,
        hilink_host: str = "192.168.8.1",
    ) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._droplets = droplets
        self._env = env
        self.timing = timing or RouterTiming()
        self.feeds = feeds or FeedConfig()
        self.hilink_host = hilink_host
        self.pool = ConnectionPool()
        # The operation runner's lease (bot.leases), to judge a push operation's owner before
        # the runner does (the plan shown to the user); set it to the runner's when it differs.
        self.lease_seconds = DEFAULT_LEASE_SECONDS

    async def close(self) -> None:
        await self.pool.close()

    # -- database ------------------------------------------------------------------------
    async def _view(self, name: str) -> _View:
        async with self._sessions() as s:
            site = await _site(s, name)
            r, m, d = site.router, site.modem, site.droplet
            return _View(
                spec=SiteSpec.model_validate(site.spec),
                pinned=r.ssh_host_key if r else None,
                key_installed=bool(r and r.key_installed),
                pushed=bool(r and r.last_push_at),
                modem_mode=m.mode if m else None,
                modem_device=m.device if m else None,
                droplet_ip=d.public_ipv4 if d else None,
            )

    async def _pin(self, name: str, conn: SshConnection) -> bool:
        """Pin the router's host key on first contact; True if it was pinned now.

        Compare and set: of two first contacts at once (the bot and a CLI) one pins, and the
        other must then have met the same key, or it is refused as a mismatch."""
        async with self._sessions.begin() as s:
            site = await _site(s, name)
            if site.router is None:
                site.router = Router(host=site.spec["router"]["host"])
                await s.flush()
            router_id = site.router.id
        async with self._sessions.begin() as s:
            result = await s.execute(
                update(Router).where(Router.id == router_id, Router.ssh_host_key.is_(None))
                .values(ssh_host_key=conn.host_key))
            if getattr(result, "rowcount", 0) == 1:
                log.info("pinned the host key of the router of %s", name)
                return True
            pinned = (await s.execute(select(Router.ssh_host_key)
                                      .where(Router.id == router_id))).scalar_one()
        if pinned != conn.host_key:
            raise HostKeyMismatch(_mismatch(name))
        return False

    async def forget_host_key(self, name: str) -> bool:
        """Unpin, on purpose (the router was reflashed): the next contact pins afresh.
        False when there was no pin to forget."""
        async with self._sessions.begin() as s:
            site = await _site(s, name)
            had = site.router is not None and site.router.ssh_host_key is not None
            if site.router is not None:
                site.router.ssh_host_key = None
                site.router.key_installed = False
        for path in ("lan", "tunnel"):
            await self.pool.discard(f"{path}:{name}")
        return had

    # -- reaching the router ---------------------------------------------------------------
    def _lan(self, view: _View, key: str) -> Route:
        @asynccontextmanager
        async def opener() -> AsyncIterator[SshConnection]:
            target = lan_target(view.spec, client_key=key, pinned=view.pinned,
                                timing=self.timing)
            with _naming_forget_key(view.name):
                async with ssh_session(target) as conn:
                    await self._pin(view.name, conn)
                    yield conn

        return Route(opener, "over the LAN")

    def _tunnel(self, view: _View, key: str) -> Route:
        @asynccontextmanager
        async def opener() -> AsyncIterator[SshConnection]:
            if view.droplet_ip is None:
                raise NotFound(f"Site {view.name} has no droplet yet; run "
                               f"{action('setup', view.name)} first.")
            target = tunnel_target(view.spec, client_key=key, pinned=view.pinned,
                                   timing=self.timing)
            async with self._droplets.session(view.name) as jump:
                with _naming_forget_key(view.name):
                    async with ssh_session(target, tunnel=jump) as conn:
                        await self._pin(view.name, conn)
                        yield conn

        return Route(opener, "through the tunnel (via the droplet)")

    def _pooled(self, key: str, route: Route) -> Route:
        def opener() -> AbstractAsyncContextManager[SshConnection]:
            return self.pool.connection(key, route.open)

        return Route(opener, route.label)

    async def _routes(self, view: _View, via: Via) -> list[Route]:
        key = await identity.client_key(self._secrets)
        lan = self._pooled(f"lan:{view.name}", self._lan(view, key))
        tunnel = self._pooled(f"tunnel:{view.name}", self._tunnel(view, key))
        if via == "lan":
            return [lan]
        if via == "tunnel":
            return [tunnel]
        return [tunnel, lan] if view.pushed and view.droplet_ip else [lan]

    @asynccontextmanager
    async def session(self, name: str, via: Via = "auto") -> AsyncIterator[SshConnection]:
        """A (reused) connection to the router; ``auto`` falls back from tunnel to LAN."""
        view = await self._view(name)
        routes = await self._routes(view, via)
        async with AsyncExitStack() as stack:
            conn = None
            for i, route in enumerate(routes):
                try:
                    conn = await stack.enter_async_context(route.open())
                    break
                except Unreachable:
                    if i == len(routes) - 1:
                        raise
                    log.info("router of %s not reachable %s; trying the next way", name,
                             route.label)
            assert conn is not None
            yield conn

    # -- first contact -------------------------------------------------------------------
    async def first_contact(self, name: str, *, password_login: bool = False,
                            password: str | None = None) -> FirstContact:
        """Log in on the LAN with the site's password or key file, pin the host key, install
        camreach's key, and prove that the key alone now works. Then turn dropbear's password
        login off, root included (``password_login=True``: on again, e.g. before the router
        is handed over). The router keeps that change only if a new login with the key alone
        works after dropbear restarted; otherwise it is rolled back and RemoteFailed raised
        (the key stays installed)."""
        view = await self._view(name)
        # A password typed in chat is used for this login only: camreach's key replaces it.
        creds = RouterCredentials(password=password) if password else \
            router_credentials(view.spec, self._env)
        key = await identity.client_key(self._secrets)
        target = lan_target(view.spec, client_key=key, pinned=view.pinned, credentials=creds,
                            timing=self.timing)
        async with ssh_session(target) as conn:
            pinned_now = await self._pin(name, conn)
            added = await install_client_key(conn, identity.client_public_key(key))
            host_key = conn.host_key
        key_only = lan_target(view.spec, client_key=key, pinned=host_key, timing=self.timing)
        async with ssh_session(key_only) as conn:
            await conn.run("true")
            await self._key_installed(name)
            changed = await set_password_login(
                conn, password_login, lambda: ssh_session(key_only),
                deadline=max(self.timing.rollback_deadline, 30))
        await self.pool.discard(f"lan:{name}")
        return FirstContact(host_key, pinned_now, added, password_login=password_login,
                            password_changed=changed, site=name)

    async def _key_installed(self, name: str) -> None:
        async with self._sessions.begin() as s:
            site = await _site(s, name)
            assert site.router is not None
            site.router.key_installed = True

    # -- detection and packages ------------------------------------------------------------
    async def detect(self, name: str, via: Via = "auto") -> Detection:
        """One round trip; the result is also stored in the Router and Modem rows."""
        async with self.session(name, via) as conn:
            found = await detect(conn)
        await self._store_detection(name, found)
        return found

    async def _store_detection(self, name: str, found: Detection) -> None:
        f = found.facts
        async with self._sessions.begin() as s:
            site = await _site(s, name)
            if site.router is not None:
                site.router.openwrt_release = f"{f.release} {f.revision}"[:64]
                site.router.board = f.board_model[:128]
                site.router.arch = f.arch[:64]
            if site.modem is None:
                site.modem = Modem(protocol=site.spec.get("modem", {}).get("protocol", "auto"))
            m = found.modem
            site.modem.model = m.model[:128] if m else None
            site.modem.usb_id = m.usb_id if m else None
            site.modem.mode = m.mode if m else None
            site.modem.device = m.device if m else None

    async def install_missing(
        self, name: str, *, online: bool | None = None, steps: Steps | None = None,
        via: Via = "auto",
    ) -> InstallResult:
        """Install what the modem needs (online if the router can, else from this host)."""
        async with self.session(name, via) as conn:
            if steps is not None:
                await steps.step(1, 3, "Detecting what the router has")
            found = await detect(conn)
            if steps is not None:
                await steps.step(2, 3, "Installing " + (", ".join(found.missing_packages)
                                                        or "nothing"))
            result = await install_packages(conn, found.facts, found.missing_packages,
                                            self.feeds, online=online)
            if steps is not None:
                await steps.step(3, 3, "Detecting again")
            found = await detect(conn)
        await self._store_detection(name, found)
        return result

    async def install_operation(self, ctx: OpContext) -> str:
        """The ``install_router_packages`` operation (register it with the runner)."""
        if ctx.site is None:
            raise ValidationFailed("Which site?")
        return (await self.install_missing(ctx.site, steps=ctx)).message

    # -- config push ---------------------------------------------------------------------------
    async def router_config(self, name: str) -> RouterConfig:
        """The site's full router configuration (modem, tunnel, firewall)."""
        view = await self._view(name)
        if view.droplet_ip is None:
            raise NotFound(f"Site {name} has no droplet yet; the router needs its address. "
                           f"Run {action('setup', name)} first.")
        async with self._sessions.begin() as s:
            site = await _site(s, name)
            (server, _), (_, router_private) = await ensure_site_keys(
                s, self._secrets.box, site, view.spec)
            server_public = server.public_key
        choice = choose_modem(view.spec.modem, view.modem_mode, view.modem_device)
        stored_pin = await self._secrets.get(f"modem-pin:{name}")  # a PIN typed in /setup
        return router_config(
            view.spec, choice, modem_secrets(view.spec, self._env, pin=stored_pin),
            router_private_key=router_private, server_public_key=server_public,
            endpoint_host=view.droplet_ip,
        )

    async def plan_push(self, name: str, via: Via = "auto") -> PushPlan:
        """The diff to show before asking to confirm; ``no_changes`` when there is none.

        A push pending on the router that an interrupted push operation of this site recorded
        is not refused: the plan says it will be confirmed first (:attr:`PushPlan.adopt`).
        """
        sections = render_router_sections(await self.router_config(name))
        async with self.session(name, via) as conn:
            return await plan_push(conn, sections,
                                   adoptable=self._adoptable(name, current_op=None,
                                                             before_start=True))

    def _adoptable(self, name: str, *, current_op: int | None, before_start: bool
                   ) -> FindAdoptable:
        async def find(push_id: str) -> AdoptedPush | None:
            return await self._interrupted_push(name, push_id, current_op=current_op,
                                                before_start=before_start)

        return find

    async def _interrupted_push(self, name: str, push_id: str, *, current_op: int | None,
                                before_start: bool) -> AdoptedPush | None:
        """The interrupted push operation of site ``name`` that recorded ``push_id``; None when
        none did, or when a live operation did (it is still confirming that push itself).

        Inside an operation the runner has already marked every row of the site whose owner
        is gone as interrupted, so only ``interrupted`` counts. Before one starts (the plan
        shown to the user), an active row whose owner is dead by the lease rules counts too:
        the push's start marks it interrupted.
        """
        now = utcnow()
        me = Owner.this_process()
        async with self._sessions() as s:
            rows = (await s.execute(
                select(Operation).join(Site, Site.id == Operation.site_id)
                .where(Site.name == name, Operation.kind == PUSH_ROUTER_CONFIG,
                       Operation.state.in_([*ACTIVE_STATES, OpState.INTERRUPTED]))
                .order_by(Operation.id.desc()).limit(20)
            )).scalars().all()
        found: AdoptedPush | None = None
        for op in rows:
            params = op.params or {}
            if op.id == current_op or params.get("push_id") != push_id:
                continue
            if op.state in ACTIVE_STATES and not (before_start and owner_is_dead(
                    host=op.owner_host, pid=op.owner_pid, token=op.owner_token,
                    heartbeat_at=op.heartbeat_at, now=now, lease=self.lease_seconds, me=me)):
                log.info("push %s on %s belongs to operation #%s, which is still running",
                         push_id, name, op.id)
                return None
            if found is None:
                expect = params.get("expect")
                found = AdoptedPush(push_id, op.id, expect=str(expect) if expect else None)
        if found is not None:
            log.info("push %s pending on %s was recorded by interrupted operation #%s",
                     push_id, name, found.op_id)
        return found

    async def push(
        self, name: str, *, expect: str | None = None, steps: Steps | None = None,
        via: Via = "auto", confirm_via: Literal["tunnel", "lan"] = "tunnel",
        op_id: int | None = None, record: Record | None = None,
    ) -> str:
        """Apply with automatic rollback, confirmed over the tunnel (the path that must work
        afterwards). ``confirm_via="lan"`` only for a router on the bench whose uplink is not
        ready: the tunnel is then not proven.

        ``record`` stores the push id (in operation ``op_id``'s row) right before the apply.
        A push still pending on the router that an interrupted push operation of this site
        recorded is confirmed first (over ``confirm_via``), then the rest is pushed.
        """
        view = await self._view(name)
        sections = render_router_sections(await self.router_config(name))
        key = await identity.client_key(self._secrets)
        labels = [r.label for r in await self._routes(view, via)]
        apply_via = Route(lambda: self.session(name, via), " or ".join(labels))
        # Never pooled: the confirm must show that a new connection gets through.
        confirm = self._tunnel(view, key) if confirm_via == "tunnel" else self._lan(view, key)
        result = await push_config(
            apply_via, confirm, sections, deadline=self.timing.rollback_deadline,
            holdoff=self.timing.holdoff,
            expect=expect, steps=steps, grace=self.timing.confirm_grace,
            adoptable=self._adoptable(name, current_op=op_id, before_start=False),
            record=record,
        )
        if result.outcome in ("applied", "adopted"):
            async with self._sessions.begin() as s:
                site = await _site(s, name)
                if site.router is not None:
                    site.router.last_push_at = utcnow()
        return result.message

    async def push_operation(self, ctx: OpContext) -> str:
        """The ``push_router_config`` operation; params: ``expect`` (the fingerprint of the
        plan the user confirmed), optional ``confirm_via``. It records ``push_id`` in its row
        right before the apply, so that a later push can confirm that push should this run
        be killed before it could."""
        if ctx.site is None:
            raise ValidationFailed("Which site?")
        expect = ctx.params.get("expect")
        confirm_via = ctx.params.get("confirm_via", "tunnel")
        if confirm_via not in ("tunnel", "lan"):
            raise ValidationFailed("confirm_via must be 'tunnel' or 'lan'.")

        async def record(push_id: str) -> None:
            await ctx.remember("push_id", push_id)

        return await self.push(ctx.site, expect=str(expect) if expect else None, steps=ctx,
                               confirm_via=confirm_via, op_id=ctx.op_id, record=record)

    # -- modem status ---------------------------------------------------------------------
    async def modem_status(self, name: str, via: Via = "auto") -> ModemStatus:
        view = await self._view(name)
        try:
            choice = choose_modem(view.spec.modem, view.modem_mode, view.modem_device)
        except ValidationFailed as exc:
            return ModemStatus("none", problems=(exc.user_message,))
        async with self.session(name, via) as conn:
            return await read_modem_status(conn, choice.protocol, choice.device,
                                           hilink_host=self.hilink_host)


async def _site(s: AsyncSession, name: str) -> Site:
    site = (
        await s.execute(
            select(Site).where(Site.name == name).options(
                selectinload(Site.router), selectinload(Site.modem), selectinload(Site.droplet)
            )
        )
    ).scalar_one_or_none()
    if site is None:
        raise NotFound(f"There is no site named {name!r}.")
    return site


def _mismatch(site: str) -> str:
    return (f"The router of {site} answered with an SSH host key other than the one camreach "
            "pinned: someone may be intercepting the connection, so nothing was sent. If the "
            f"router was reflashed or replaced, forget its key on purpose: "
            f"{action('router forget-key', site)}, then {action('router connect', site)}.")


@contextmanager
def _naming_forget_key(site: str) -> Iterator[None]:
    """A host-key mismatch on the way to a router names the command that forgets the key."""
    try:
        yield
    except HostKeyMismatch as exc:
        raise HostKeyMismatch(_mismatch(site)) from exc
